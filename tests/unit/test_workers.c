/* The worker pool (common/workers.c) with a real libevent loop and real threads: jobs run off
 * the loop thread and come back on it, the queue bound refuses the excess, the loop keeps
 * running while a job works, and freeing the pool hands every job back exactly once. */
#include <check.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"
#include "../check_run.h"

struct tjob {
	pthread_t loop_thread;
	/* written by the worker */
	pthread_t ran_on;
	atomic_bool ran;
	uint64_t input, output;
	/* a job that holds its worker until released (or told to stop) */
	atomic_bool *release;
	/* written on the loop */
	int done_calls;
	enum mp_job_outcome outcome;
	bool done_on_loop;
};

static void square(void *arg, const atomic_bool *stop)
{
	struct tjob *j = arg;
	j->ran_on = pthread_self();
	atomic_store(&j->ran, true);
	j->output = j->input * j->input;
}

static void hold(void *arg, const atomic_bool *stop)
{
	struct tjob *j = arg;
	j->ran_on = pthread_self();
	atomic_store(&j->ran, true);
	while (!atomic_load(j->release) && !atomic_load(stop))
		usleep(1000);
}

static void on_done(void *arg, enum mp_job_outcome outcome)
{
	struct tjob *j = arg;
	j->done_calls++;
	j->outcome = outcome;
	j->done_on_loop = pthread_equal(pthread_self(), j->loop_thread);
}

static int done_count(const struct tjob *jobs, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += jobs[i].done_calls;
	return k;
}

/* Run the loop until n jobs are handed back, at most 10 s. */
static void run_until_done(struct event_base *base, const struct tjob *jobs, int n)
{
	time_t until = time(NULL) + 10;
	while (done_count(jobs, n) < n && time(NULL) < until) {
		struct timeval tick = {0, 10000};
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	ck_assert_int_eq(done_count(jobs, n), n);
}

static void init_jobs(struct tjob *jobs, int n, atomic_bool *release)
{
	memset(jobs, 0, sizeof(*jobs) * (size_t)n);
	for (int i = 0; i < n; i++) {
		jobs[i].loop_thread = pthread_self();
		jobs[i].input = (uint64_t)i + 1;
		jobs[i].release = release;
	}
}

START_TEST(jobs_complete_and_come_back_on_the_loop)
{
	struct event_base *base = event_base_new();
	struct mp_workers *w = mp_workers_new(base, 2, 100);
	ck_assert(w != NULL);
	enum { N = 50 };
	struct tjob jobs[N];
	init_jobs(jobs, N, NULL);
	for (int i = 0; i < N; i++)
		ck_assert(mp_workers_submit(w, square, on_done, &jobs[i]));
	run_until_done(base, jobs, N);
	for (int i = 0; i < N; i++) {
		ck_assert(jobs[i].ran);
		ck_assert_uint_eq(jobs[i].output, (uint64_t)(i + 1) * (uint64_t)(i + 1));
		ck_assert(!pthread_equal(jobs[i].ran_on, jobs[i].loop_thread));
		ck_assert(jobs[i].done_on_loop);
		ck_assert_int_eq(jobs[i].done_calls, 1);
		ck_assert_int_eq(jobs[i].outcome, MP_JOB_DONE);
	}
	ck_assert_uint_eq(mp_workers_queued(w), 0);
	ck_assert_uint_eq(mp_workers_busy(w), 0);
	mp_workers_free(w);
	event_base_free(base);
}
END_TEST

static void count_tick(evutil_socket_t fd, short what, void *arg)
{
	(*(int *)arg)++;
}

/* Wait (without the loop) until a job is running on a worker. */
static void wait_running(struct mp_workers *w, const struct tjob *j)
{
	for (int k = 0; k < 5000 && !(atomic_load(&j->ran) && mp_workers_queued(w) == 0); k++)
		usleep(1000);
	ck_assert(j->ran);
}

START_TEST(loop_runs_while_a_job_works)
{
	struct event_base *base = event_base_new();
	struct mp_workers *w = mp_workers_new(base, 1, 4);
	atomic_bool release = false;
	struct tjob job;
	init_jobs(&job, 1, &release);
	ck_assert(mp_workers_submit(w, hold, on_done, &job));
	int ticks = 0;
	struct event *tick = event_new(base, -1, EV_PERSIST, count_tick, &ticks);
	struct timeval every = {0, 5000};
	event_add(tick, &every);
	struct timeval for_a_while = {0, 200000};
	event_base_loopexit(base, &for_a_while);
	event_base_dispatch(base);
	ck_assert_int_ge(ticks, 10);	     /* the loop kept serving its timer */
	ck_assert_int_eq(job.done_calls, 0); /* while the job still holds its worker */
	atomic_store(&release, true);
	event_free(tick);
	run_until_done(base, &job, 1);
	ck_assert_int_eq(job.outcome, MP_JOB_DONE);
	mp_workers_free(w);
	event_base_free(base);
}
END_TEST

START_TEST(queue_bound_refuses_when_full)
{
	struct event_base *base = event_base_new();
	struct mp_workers *w = mp_workers_new(base, 1, 2);
	atomic_bool release = false;
	struct tjob jobs[4];
	init_jobs(jobs, 4, &release);
	ck_assert(mp_workers_submit(w, hold, on_done, &jobs[0]));
	wait_running(w, &jobs[0]); /* the only worker is taken */
	ck_assert(mp_workers_submit(w, square, on_done, &jobs[1]));
	ck_assert(mp_workers_submit(w, square, on_done, &jobs[2]));
	ck_assert_uint_eq(mp_workers_queued(w), 2);
	ck_assert(!mp_workers_submit(w, square, on_done, &jobs[3])); /* refused: queue full */
	atomic_store(&release, true);
	run_until_done(base, jobs, 3);
	ck_assert_int_eq(jobs[3].done_calls, 0); /* a refused job is never handed back */
	ck_assert(!jobs[3].ran);
	ck_assert_uint_eq(jobs[2].output, 9);
	/* Room again once the queue drained. */
	ck_assert(mp_workers_submit(w, square, on_done, &jobs[3]));
	run_until_done(base, jobs, 4);
	mp_workers_free(w);
	event_base_free(base);
}
END_TEST

START_TEST(free_with_jobs_pending_hands_each_back_once)
{
	struct event_base *base = event_base_new();
	struct mp_workers *w = mp_workers_new(base, 1, 8);
	atomic_bool release = false;
	struct tjob jobs[5];
	init_jobs(jobs, 5, &release);
	/* jobs[0] finishes but is not handed back (the loop does not run). */
	ck_assert(mp_workers_submit(w, square, on_done, &jobs[0]));
	for (int k = 0; k < 5000 && !jobs[0].ran; k++)
		usleep(1000);
	ck_assert(jobs[0].ran);
	/* jobs[1] holds the worker until told to stop; jobs[2..4] wait behind it. */
	ck_assert(mp_workers_submit(w, hold, on_done, &jobs[1]));
	wait_running(w, &jobs[1]);
	for (int i = 2; i < 5; i++)
		ck_assert(mp_workers_submit(w, square, on_done, &jobs[i]));
	mp_workers_free(w); /* must return: the running job sees stop */
	ck_assert_int_eq(jobs[0].done_calls, 1);
	ck_assert_int_eq(jobs[0].outcome, MP_JOB_DONE);
	ck_assert_int_eq(jobs[1].done_calls, 1);
	ck_assert_int_eq(jobs[1].outcome, MP_JOB_CANCELLED);
	for (int i = 2; i < 5; i++) {
		ck_assert_int_eq(jobs[i].done_calls, 1);
		ck_assert_int_eq(jobs[i].outcome, MP_JOB_CANCELLED);
		ck_assert(!jobs[i].ran);
		ck_assert(jobs[i].done_on_loop);
	}
	event_base_free(base);
}
END_TEST

START_TEST(zero_threads_refused)
{
	struct event_base *base = event_base_new();
	ck_assert(mp_workers_new(base, 0, 4) == NULL);
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("workers");
	TCase *tc = tcase_create("pool");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, jobs_complete_and_come_back_on_the_loop);
	tcase_add_test(tc, loop_runs_while_a_job_works);
	tcase_add_test(tc, queue_bound_refuses_when_full);
	tcase_add_test(tc, free_with_jobs_pending_hands_each_back_once);
	tcase_add_test(tc, zero_threads_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
