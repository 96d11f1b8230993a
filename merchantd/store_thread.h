/* The store thread: every write of merchantd's durable state while it serves (group commits,
 * channel and order records, the redemption outbox, our MerchantCert, compaction) runs here, on
 * the thread's own SQLite connection, so fsyncs and lock waits never run on the event loop. Jobs
 * run one at a time in submission order (so a batch committed after a channel's record sees that
 * record); their completion is handed back to the loop through an eventfd watched by libevent.
 *
 * A job's life:
 *
 *   (caller's) --store_thread_submit--> QUEUED --thread--> RUNNING: run(store, job)
 *        ^                                                      |
 *        |                                                      v
 *        +----------- loop: done(job) <------------ DONE (eventfd signalled)
 *
 * The queue holds caller-owned jobs; its length is bounded by the callers (at most one batch
 * committing, one compaction step and one write of the redeemer or of registration: see
 * batch.c, compact.c and store_writes.h). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct mp_clock;

struct event_base;
struct store;
struct store_thread;
struct wal_checkpoint_totals;

struct st_job {
	/* On the store thread, with the thread's own connection. */
	void (*run)(struct store *s, struct st_job *job);
	/* Back on the loop thread, after run returned. */
	void (*done)(struct st_job *job);
	void *arg;
	struct st_job *next; /* queue link, owned by the store thread while queued */
};

/* Open the thread's own connection to the store at path and start the thread. */
struct store_thread *store_thread_start(struct event_base *base, const char *path,
					const struct mp_clock *clock, char *err, size_t errlen);
void store_thread_submit(struct store_thread *t, struct st_job *job);
/* The WAL checkpointer's counters (wal_checkpointer.h): it runs beside this thread. */
const struct wal_checkpoint_totals *store_thread_wal_totals(const struct store_thread *t);
/* Outside the loop (shutdown): wait until no job is queued or running, running each finished
 * job's done callback here, including the jobs those callbacks submit. */
void store_thread_sync(struct store_thread *t);
/* store_thread_sync, then stop and join the thread and close its connection. */
void store_thread_stop(struct store_thread *t);
