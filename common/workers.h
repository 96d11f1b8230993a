/* A small fixed pool of worker threads for CPU-heavy work that must not stall an event loop
 * (long hash-chain walks, Ed25519 over large statements). A job's work function runs on a
 * worker thread; its done function runs afterwards on the loop thread, from an event of the
 * loop's base, never from a worker.
 *
 * Job life:  submitted -> QUEUED -> RUNNING -> FINISHED -> done(arg, MP_JOB_DONE) on the loop
 *                           |                     (the loop drains finished jobs in order)
 *                           +-> pool freed before a worker took it -> done(arg, MP_JOB_CANCELLED)
 * A RUNNING job when the pool is freed sees *stop become true; it should return early, and its
 * done is then called with MP_JOB_CANCELLED too. Every submitted job gets exactly one done.
 *
 * The work function owns what its arg points to while it runs: give it copies of what it needs,
 * never state the loop may change meanwhile. Nothing here knows which daemon it runs in. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct mp_workers;

enum mp_job_outcome {
	MP_JOB_DONE,	  /* the work function ran to its end */
	MP_JOB_CANCELLED, /* the pool was freed first: the work did not run, or was told to stop */
};

/* Runs on a worker thread. Long work polls *stop and returns early when it is true. */
typedef void (*mp_work_fn)(void *arg, const atomic_bool *stop);
/* Runs on the loop thread (or inside mp_workers_free, also on the loop thread). */
typedef void (*mp_job_done_fn)(void *arg, enum mp_job_outcome outcome);

/* threads >= 1 workers; at most queue_max jobs waiting for a worker. NULL on failure (logged). */
struct mp_workers *mp_workers_new(struct event_base *base, unsigned threads, unsigned queue_max);

/* Queue a job. False, with nothing queued and done never called, when queue_max jobs are
 * already waiting or memory is short: the caller refuses the request that needed the work. */
bool mp_workers_submit(struct mp_workers *w, mp_work_fn work, mp_job_done_fn done, void *arg);

/* Jobs waiting for a worker, and jobs running or finished but not yet handed back. */
unsigned mp_workers_queued(struct mp_workers *w);
unsigned mp_workers_busy(struct mp_workers *w);

/* Stop: running jobs are told to stop and joined, then every job not yet handed back gets its
 * done (MP_JOB_CANCELLED unless it had finished), on the calling (loop) thread. */
void mp_workers_free(struct mp_workers *w);
