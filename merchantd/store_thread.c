#include "store_thread.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "store.h"
#include "wal_checkpointer.h"

/* The writer's connection keeps the pages a batch touches (each channel's row, the journal
 * index's leaf of each channel) in its cache instead of reading them back (pread) each batch.
 * Memory: up to the cache size (grown only as pages are used). */
static const char writer_pragmas[] = "PRAGMA cache_size=-32768;"; /* KiB */

/* wal_checkpointer.h: the thread copies the WAL into the database once 4,096 frames (16 MiB
 * of 4 KiB pages) are not yet copied, and the writer the few batches' frames appended
 * meanwhile; if the thread fails or a reader holds the WAL, the writer copies everything at
 * 16,384 frames (64 MiB). Other steps tried: docs/performance.md, "The WAL checkpoint off the
 * commit". */
static const struct wal_checkpointer_limits wal_limits = {.step_pages = 4096, .limit_pages = 16384};

struct job_list {
	struct st_job *head, *tail;
};

struct store_thread {
	struct store *store; /* used by the thread only */
	struct wal_checkpointer *checkpointer;
	pthread_t tid;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* a job was queued, or stop */
	pthread_cond_t idle; /* a job finished */
	struct job_list queued, finished;
	bool running; /* a job is between dequeue and finish */
	bool stop;
	int efd;
	struct event *ev;
};

static void list_push(struct job_list *l, struct st_job *job)
{
	job->next = NULL;
	if (l->tail)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
}

static struct st_job *list_take_all(struct job_list *l)
{
	struct st_job *all = l->head;
	l->head = l->tail = NULL;
	return all;
}

static void *thread_main(void *arg)
{
	struct store_thread *t = arg;
	pthread_mutex_lock(&t->mu);
	for (;;) {
		while (!t->queued.head && !t->stop)
			pthread_cond_wait(&t->wake, &t->mu);
		struct st_job *job = t->queued.head;
		if (!job)
			break; /* stop, and nothing left to run */
		t->queued.head = job->next;
		if (!t->queued.head)
			t->queued.tail = NULL;
		t->running = true;
		pthread_mutex_unlock(&t->mu);
		job->run(t->store, job);
		pthread_mutex_lock(&t->mu);
		list_push(&t->finished, job);
		t->running = false;
		pthread_cond_broadcast(&t->idle);
		uint64_t one = 1;
		if (write(t->efd, &one, sizeof(one)) != (ssize_t)sizeof(one) && errno != EAGAIN)
			log_err("store thread: cannot signal the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* Run the done callbacks of every finished job, in the order the jobs ran. */
static void run_finished(struct store_thread *t)
{
	pthread_mutex_lock(&t->mu);
	struct st_job *job = list_take_all(&t->finished);
	pthread_mutex_unlock(&t->mu);
	while (job) {
		struct st_job *next = job->next;
		job->done(job);
		job = next;
	}
}

static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct store_thread *t = arg;
	uint64_t count;
	if (read(t->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_err("store thread: reading the completion eventfd: %s", strerror(errno));
	run_finished(t);
}

static void thread_free(struct store_thread *t)
{
	if (t->ev)
		event_free(t->ev);
	if (t->efd >= 0)
		close(t->efd);
	store_close(t->store);			/* its last commit may wake the checkpointer */
	wal_checkpointer_stop(t->checkpointer); /* so only after */
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->wake);
	pthread_cond_destroy(&t->idle);
	free(t);
}

struct store_thread *store_thread_start(struct event_base *base, const char *path,
					const struct mp_clock *clock, char *err, size_t errlen)
{
	struct store_thread *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->efd = -1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->wake, NULL);
	pthread_cond_init(&t->idle, NULL);
	t->store = store_open_unshared(path, clock, err, errlen);
	if (!t->store) {
		thread_free(t);
		return NULL;
	}
	if (sqlite3_exec(store_db(t->store), writer_pragmas, NULL, NULL, NULL) != SQLITE_OK)
		log_err("store thread %s: cannot size its cache: %s", path,
			sqlite3_errmsg(store_db(t->store)));
	t->checkpointer = wal_checkpointer_start(path, &wal_limits, err, errlen);
	if (!t->checkpointer) {
		thread_free(t);
		return NULL;
	}
	store_attach_checkpointer(t->store, t->checkpointer);
	t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->efd >= 0)
		t->ev = event_new(base, t->efd, EV_READ | EV_PERSIST, on_finished, t);
	if (!t->ev || event_add(t->ev, NULL) != 0) {
		snprintf(err, errlen, "store thread: cannot watch an eventfd: %s", strerror(errno));
		thread_free(t);
		return NULL;
	}
	int rc = pthread_create(&t->tid, NULL, thread_main, t);
	if (rc != 0) {
		snprintf(err, errlen, "store thread: cannot start: %s", strerror(rc));
		thread_free(t);
		return NULL;
	}
	t->started = true;
	return t;
}

const struct wal_checkpoint_totals *store_thread_wal_totals(const struct store_thread *t)
{
	return wal_checkpointer_totals(t->checkpointer);
}

void store_thread_submit(struct store_thread *t, struct st_job *job)
{
	pthread_mutex_lock(&t->mu);
	list_push(&t->queued, job);
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->mu);
}

void store_thread_sync(struct store_thread *t)
{
	for (;;) {
		pthread_mutex_lock(&t->mu);
		while (t->queued.head || t->running)
			pthread_cond_wait(&t->idle, &t->mu);
		bool any = t->finished.head != NULL;
		pthread_mutex_unlock(&t->mu);
		if (!any)
			return;
		run_finished(t); /* may queue more (the next batch, the next compaction step) */
	}
}

void store_thread_stop(struct store_thread *t)
{
	if (!t)
		return;
	if (t->started) {
		store_thread_sync(t);
		pthread_mutex_lock(&t->mu);
		t->stop = true;
		pthread_cond_signal(&t->wake);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->tid, NULL);
	}
	thread_free(t);
}
