#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct job {
	mp_work_fn work;
	mp_job_done_fn done;
	void *arg;
	enum mp_job_outcome outcome;
	struct job *next;
};

struct job_list {
	struct job *head, *tail;
	unsigned n;
};

struct mp_workers {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* Under lock: */
	struct job_list waiting, finished;
	unsigned running;
	bool signalled; /* a byte is in the pipe for the loop */
	atomic_bool stop;
	unsigned queue_max;
	pthread_t *threads;
	unsigned n_threads;
	int pipe_rd, pipe_wr;
	struct event *ev;
};

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
}

static struct job *list_pop(struct job_list *l)
{
	struct job *j = l->head;
	if (!j)
		return NULL;
	l->head = j->next;
	if (!l->head)
		l->tail = NULL;
	l->n--;
	return j;
}

/* Under lock: wake the loop once for any number of finished jobs. */
static void signal_loop(struct mp_workers *w)
{
	if (w->signalled)
		return;
	w->signalled = true;
	ssize_t rc;
	do
		rc = write(w->pipe_wr, "j", 1);
	while (rc < 0 && errno == EINTR);
	if (rc != 1)
		log_err("workers: cannot wake the event loop: %s", strerror(errno));
}

static void *worker_main(void *arg)
{
	struct mp_workers *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!atomic_load(&w->stop) && !w->waiting.head)
			pthread_cond_wait(&w->wake, &w->lock);
		if (atomic_load(&w->stop))
			break;
		struct job *j = list_pop(&w->waiting);
		w->running++;
		pthread_mutex_unlock(&w->lock);
		j->work(j->arg, &w->stop);
		pthread_mutex_lock(&w->lock);
		w->running--;
		j->outcome = atomic_load(&w->stop) ? MP_JOB_CANCELLED : MP_JOB_DONE;
		list_push(&w->finished, j);
		signal_loop(w);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void deliver(struct job_list *l)
{
	struct job *j;
	while ((j = list_pop(l))) {
		j->done(j->arg, j->outcome);
		free(j);
	}
}

/* On the loop: hand every finished job back, in the order they finished. */
static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct mp_workers *w = arg;
	char buf[64];
	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
	pthread_mutex_lock(&w->lock);
	struct job_list done = w->finished;
	w->finished = (struct job_list){0};
	w->signalled = false;
	pthread_mutex_unlock(&w->lock);
	deliver(&done);
}

static bool start_threads(struct mp_workers *w, unsigned threads)
{
	/* Signals stay with the loop thread: workers block them all. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; w->n_threads < threads; w->n_threads++) {
		int rc = pthread_create(&w->threads[w->n_threads], NULL, worker_main, w);
		if (rc != 0) {
			log_err("workers: cannot start thread %u of %u: %s", w->n_threads + 1,
				threads, strerror(rc));
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return w->n_threads == threads;
}

struct mp_workers *mp_workers_new(struct event_base *base, unsigned threads, unsigned queue_max)
{
	if (threads == 0) {
		log_err("workers: at least one thread is needed");
		return NULL;
	}
	struct mp_workers *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	int fds[2] = {-1, -1};
	w->pipe_rd = w->pipe_wr = -1;
	w->queue_max = queue_max;
	atomic_init(&w->stop, false);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		log_err("workers: pipe: %s", strerror(errno));
		mp_workers_free(w);
		return NULL;
	}
	w->pipe_rd = fds[0];
	w->pipe_wr = fds[1];
	w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, on_finished, w);
	w->threads = calloc(threads, sizeof(*w->threads));
	if (!w->ev || event_add(w->ev, NULL) != 0 || !w->threads || !start_threads(w, threads)) {
		log_err("workers: cannot start a pool of %u threads", threads);
		mp_workers_free(w);
		return NULL;
	}
	return w;
}

bool mp_workers_submit(struct mp_workers *w, mp_work_fn work, mp_job_done_fn done, void *arg)
{
	struct job *j = malloc(sizeof(*j));
	if (!j)
		return false;
	*j = (struct job){work, done, arg, MP_JOB_CANCELLED, NULL};
	pthread_mutex_lock(&w->lock);
	bool queued = !atomic_load(&w->stop) && w->waiting.n < w->queue_max;
	if (queued) {
		list_push(&w->waiting, j);
		pthread_cond_signal(&w->wake);
	}
	pthread_mutex_unlock(&w->lock);
	if (!queued)
		free(j);
	return queued;
}

unsigned mp_workers_queued(struct mp_workers *w)
{
	pthread_mutex_lock(&w->lock);
	unsigned n = w->waiting.n;
	pthread_mutex_unlock(&w->lock);
	return n;
}

unsigned mp_workers_busy(struct mp_workers *w)
{
	pthread_mutex_lock(&w->lock);
	unsigned n = w->running + w->finished.n;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void mp_workers_free(struct mp_workers *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->stop, true);
	pthread_cond_broadcast(&w->wake);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	/* Single-threaded from here: finished jobs first, then those no worker took. */
	deliver(&w->finished);
	deliver(&w->waiting);
	if (w->ev)
		event_free(w->ev);
	if (w->pipe_rd >= 0)
		close(w->pipe_rd);
	if (w->pipe_wr >= 0)
		close(w->pipe_wr);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w->threads);
	free(w);
}
