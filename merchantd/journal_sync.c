/* A fold of the paid channels' rows once batches stop (journal_sync.h):
 *
 *   IDLE --a batch with Pays committed--> ARMED (timer: twice JOURNAL_SYNC_MS)
 *   ARMED --another such batch--> ARMED, the timer pushed back (under load the batches fold,
 *        JOURNAL_FOLD_PER_BATCH channels each: a fold of everything here would undo that)
 *   ARMED --timer: no Pays for that long--> RUNNING: store_sync_heads_some on the store
 *        thread, JOURNAL_IDLE_FOLD_PER_JOB channels (nothing to do, and no transaction, if the
 *        batches folded everything)
 *   RUNNING --such a batch--> RUNNING, noted
 *   RUNNING --done, channels left, not noted--> RUNNING: the next part queued at once
 *   RUNNING --done--> IDLE, or ARMED if noted or if it failed (logged; tried again then)
 *
 * In parts, so that a Pay arriving after a pause waits behind one part at most (at 100,000
 * channels, 10 s of paid channels could be 100,000 row writes). At most one job is queued or
 * running, so the store thread's queue stays bounded. */
#include "journal_sync.h"

#include <event2/event.h>
#include <stdlib.h>

#include "journal_chain.h"
#include "log.h"
#include "merchant.h"
#include "store.h"
#include "store_thread.h"

struct journal_sync {
	struct merchant *m;
	struct event *timer;
	struct st_job job;
	bool running;
	bool noted; /* a batch with Pays committed while running */
	bool ok;    /* written by the store thread, read by the loop after it */
	bool more;  /* the same: channels are left to fold */
};

/* Channels one idle fold job takes: about the cost of a few batches' folds. */
#define JOURNAL_IDLE_FOLD_PER_JOB 4096

/* Store thread. */
static void run_sync(struct store *s, struct st_job *job)
{
	struct journal_sync *js = job->arg;
	js->ok = store_sync_heads_some(s, JOURNAL_IDLE_FOLD_PER_JOB, &js->more);
}

/* Loop. */
static void sync_done(struct st_job *job)
{
	struct journal_sync *js = job->arg;
	if (js->ok && js->more && !js->noted) {
		store_thread_submit(js->m->store_thread, &js->job); /* the next part */
		return;
	}
	js->running = false;
	if (!js->ok)
		log_err(
		    "store: bringing the paid channels' rows up to date from the journal failed; "
		    "tried again in %d ms (nothing is lost: the next start folds them too)",
		    2 * JOURNAL_SYNC_MS);
	if (js->noted || !js->ok) {
		js->noted = false;
		journal_sync_note(js->m);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct journal_sync *js = arg;
	js->running = true;
	store_thread_submit(js->m->store_thread, &js->job);
}

bool journal_sync_start(struct merchant *m)
{
	struct journal_sync *js = calloc(1, sizeof(*js));
	if (!js)
		return false;
	js->m = m;
	js->job = (struct st_job){.run = run_sync, .done = sync_done, .arg = js};
	js->timer = evtimer_new(m->base, on_timer, js);
	m->journal_sync = js;
	return js->timer != NULL;
}

void journal_sync_note(struct merchant *m)
{
	struct journal_sync *js = m->journal_sync;
	if (!js)
		return;
	if (js->running) {
		js->noted = true;
		return;
	}
	struct timeval tv = {0, 2 * JOURNAL_SYNC_MS * 1000};
	tv.tv_sec = tv.tv_usec / 1000000;
	tv.tv_usec %= 1000000;
	if (evtimer_add(js->timer, &tv) != 0)
		log_err("store: cannot arm the timer that folds the journal into the channel rows; "
			"the next batch does it");
}

void journal_sync_free(struct merchant *m)
{
	struct journal_sync *js = m->journal_sync;
	if (!js)
		return;
	if (js->timer)
		event_free(js->timer);
	free(js);
	m->journal_sync = NULL;
}
