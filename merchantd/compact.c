/* One compaction run, a step at a time on the store thread (each step is one short
 * transaction, so batch commits interleave with it and wait at most one step):
 *
 *   IDLE --timer | store.compact--> JOURNAL: delete the eligible rows among the next
 *        STEP_ROWS journal rows (by seq) --window empty, or all of it newer than T_dedupe-->
 *   OUTBOX: delete up to STEP_ROWS answered Redeems past retention --fewer left-->
 *   GOODS: delete up to STEP_ROWS offers and finished purchases past goods_retention
 *     (compact_goods.c) --fewer left-->
 *   VACUUM: give up to VACUUM_PAGES free pages back --freelist empty-->
 *   CHECKPOINT: wal_checkpoint(TRUNCATE) (PASSIVE if a reader holds the WAL) --> IDLE
 *   any step failing --> IDLE, reported and logged (nothing acknowledged depends on it)
 *   compactor_stop --> IDLE after the current step
 *
 * Callers who ask while a run is under way are answered by the next run, so every answer
 * covers everything eligible at the time of the call. */
#include "compact.h"

#include <event2/event.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compact_goods.h"
#include "log.h"
#include "store.h"
#include "store_thread.h"

#define STEP_ROWS    2000
#define VACUUM_PAGES 1024
#define MAX_WAITERS  8

enum compact_phase {
	PHASE_JOURNAL,
	PHASE_OUTBOX,
	PHASE_GOODS,
	PHASE_VACUUM,
	PHASE_CHECKPOINT,
	PHASE_DONE
};

struct waiter {
	compact_done_fn done;
	void *arg;
};

struct waiters {
	struct waiter w[MAX_WAITERS];
	size_t n;
};

/* Written by the store thread only while its step runs; read by the loop in between. */
struct compact_run_state {
	enum compact_phase phase;
	int64_t cursor; /* the last journal seq examined */
	int64_t journal_cutoff, outbox_cutoff, goods_cutoff;
	bool failed;
	char error[256];
	struct compact_report report;
};

struct compactor {
	struct merchant *m;
	struct compact_run_state run;
	struct st_job job;
	bool running, stopping;
	struct waiters current, next;
	struct event *timer;
	struct compact_totals totals;
};

/* ---- store thread ---- */

static bool fail(struct compact_run_state *r, sqlite3 *db, const char *what)
{
	snprintf(r->error, sizeof(r->error), "%s: %s", what, sqlite3_errmsg(db));
	r->failed = true;
	return false;
}

static int64_t pragma_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t file_size(const char *path, const char *suffix)
{
	char p[600];
	struct stat st;
	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* The next window of at most STEP_ROWS journal rows after the cursor: its last seq, and
 * whether any row in it is older than the cutoff. False when the journal is exhausted. */
static bool journal_window(sqlite3 *db, struct compact_run_state *r, int64_t *end, bool *old)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT max(seq), min(at) FROM (SELECT seq, at FROM pay_journal "
			       "WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
			       -1, &st, NULL) != SQLITE_OK)
		return fail(r, db, "journal window");
	if ((sqlite3_bind_int64(st, 1, r->cursor) | sqlite3_bind_int(st, 2, STEP_ROWS)) !=
	    SQLITE_OK) {
		fail(r, db, "journal window: binding");
		sqlite3_finalize(st);
		return false;
	}
	bool found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
	if (found) {
		*end = sqlite3_column_int64(st, 0);
		*old = sqlite3_column_int64(st, 1) < r->journal_cutoff;
	}
	sqlite3_finalize(st);
	return found;
}

static void journal_step(sqlite3 *db, struct compact_run_state *r)
{
	int64_t end;
	bool old;
	if (!journal_window(db, r, &end, &old) || !old) {
		r->phase = r->failed ? PHASE_DONE : PHASE_OUTBOX;
		return;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
		db,
		"DELETE FROM pay_journal WHERE seq > ?1 AND seq <= ?2 AND at < ?3 "
		"AND j <= (SELECT c.redeemed_end FROM channels c "
		"WHERE c.channel_id = pay_journal.channel_id) "
		/* journal_chain.h: the rows no checkpoint folded into their channel
		 * rows stay, and the newest, so that no seq is given twice */
		"AND seq <= (SELECT value FROM meta WHERE key = 'journal_synced_seq') "
		"AND seq < (SELECT max(seq) FROM pay_journal)",
		-1, &st, NULL) != SQLITE_OK) {
		fail(r, db, "journal delete");
		r->phase = PHASE_DONE;
		return;
	}
	int rcs = sqlite3_bind_int64(st, 1, r->cursor) | sqlite3_bind_int64(st, 2, end) |
		  sqlite3_bind_int64(st, 3, r->journal_cutoff);
	if (rcs == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE) {
		r->report.journal_rows += (uint64_t)sqlite3_changes(db);
		r->cursor = end;
	} else {
		fail(r, db, "journal delete");
		r->phase = PHASE_DONE;
	}
	sqlite3_finalize(st);
}

static void outbox_step(sqlite3 *db, struct compact_run_state *r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "DELETE FROM redeem_outbox WHERE rowid IN (SELECT rowid FROM "
			       "redeem_outbox WHERE answered_at IS NOT NULL AND answered_at < ?1 "
			       "LIMIT ?2)",
			       -1, &st, NULL) != SQLITE_OK) {
		fail(r, db, "outbox delete");
		r->phase = PHASE_DONE;
		return;
	}
	int rcs = sqlite3_bind_int64(st, 1, r->outbox_cutoff) | sqlite3_bind_int(st, 2, STEP_ROWS);
	if (rcs == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE) {
		int n = sqlite3_changes(db);
		r->report.outbox_rows += (uint64_t)n;
		if (n < STEP_ROWS)
			r->phase = PHASE_GOODS;
	} else {
		fail(r, db, "outbox delete");
		r->phase = PHASE_DONE;
	}
	sqlite3_finalize(st);
}

static void goods_step(sqlite3 *db, struct compact_run_state *r)
{
	bool more = false;
	if (!compact_goods_step(db, r->goods_cutoff, STEP_ROWS, &r->report.goods_rows, &more,
				r->error, sizeof(r->error))) {
		r->failed = true;
		r->phase = PHASE_DONE;
	} else if (!more) {
		r->phase = PHASE_VACUUM;
	}
}

static void vacuum_step(sqlite3 *db, struct compact_run_state *r)
{
	int64_t free_before = pragma_int(db, "PRAGMA freelist_count");
	if (free_before <= 0) {
		r->phase = PHASE_CHECKPOINT;
		return;
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", VACUUM_PAGES);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail(r, db, "incremental vacuum");
		r->phase = PHASE_DONE;
		return;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		; /* each step frees a page */
	sqlite3_finalize(st);
	int64_t free_after = pragma_int(db, "PRAGMA freelist_count");
	if (rc != SQLITE_DONE || free_after < 0 || free_after >= free_before) {
		fail(r, db, "incremental vacuum");
		r->phase = PHASE_DONE;
		return;
	}
	r->report.pages_freed += (uint64_t)(free_before - free_after);
}

/* After the WAL checkpointer's running checkpoint, if any (store_checkpoint). */
static void checkpoint_step(struct store *s, struct compact_run_state *r)
{
	sqlite3 *db = store_db(s);
	const char *path = store_path(s);
	int rc = store_checkpoint(s, SQLITE_CHECKPOINT_TRUNCATE);
	r->report.checkpointed = rc == SQLITE_OK;
	if (rc == SQLITE_BUSY)
		rc = store_checkpoint(s, SQLITE_CHECKPOINT_PASSIVE);
	if (rc != SQLITE_OK)
		fail(r, db, "wal checkpoint");
	r->report.pages_after = (uint64_t)pragma_int(db, "PRAGMA page_count");
	r->report.file_bytes_after = file_size(path, "");
	r->report.wal_bytes_after = file_size(path, "-wal");
	r->phase = PHASE_DONE;
}

static void run_step(struct store *s, struct st_job *job)
{
	struct compactor *c = job->arg;
	struct compact_run_state *r = &c->run;
	sqlite3 *db = store_db(s);
	if (r->report.steps++ == 0) {
		r->report.pages_before = (uint64_t)pragma_int(db, "PRAGMA page_count");
		r->report.file_bytes_before = file_size(store_path(s), "");
		r->report.wal_bytes_before = file_size(store_path(s), "-wal");
	}
	switch (r->phase) {
	case PHASE_JOURNAL:
		journal_step(db, r);
		return;
	case PHASE_OUTBOX:
		outbox_step(db, r);
		return;
	case PHASE_GOODS:
		goods_step(db, r);
		return;
	case PHASE_VACUUM:
		vacuum_step(db, r);
		return;
	case PHASE_CHECKPOINT:
		checkpoint_step(s, r);
		return;
	case PHASE_DONE:
		return;
	}
}

/* ---- loop ---- */

static void start_run(struct compactor *c);

static void answer(struct waiters *ws, bool ok, const struct compact_report *r, const char *detail)
{
	for (size_t i = 0; i < ws->n; i++)
		ws->w[i].done(ws->w[i].arg, ok, r, detail);
	ws->n = 0;
}

static void finish_run(struct compactor *c)
{
	const struct compact_run_state *r = &c->run;
	const struct compact_report *rep = &r->report;
	bool ok = !r->failed && r->phase == PHASE_DONE;
	const char *detail = r->failed ? r->error
			     : ok      ? ""
				       : "stopped: the daemon is shutting down";
	c->running = false;
	c->totals.runs++;
	c->totals.journal_rows += rep->journal_rows;
	c->totals.outbox_rows += rep->outbox_rows;
	c->totals.goods_rows += rep->goods_rows;
	c->totals.pages_freed += rep->pages_freed;
	if (ok)
		log_info("store compaction: %llu journal rows folded, %llu outbox rows and %llu "
			 "offer or purchase rows deleted, %llu pages freed, file %lld -> %lld "
			 "bytes, WAL %lld -> %lld bytes%s, %u steps",
			 (unsigned long long)rep->journal_rows,
			 (unsigned long long)rep->outbox_rows, (unsigned long long)rep->goods_rows,
			 (unsigned long long)rep->pages_freed, (long long)rep->file_bytes_before,
			 (long long)rep->file_bytes_after, (long long)rep->wal_bytes_before,
			 (long long)rep->wal_bytes_after,
			 rep->checkpointed ? "" : " (not truncated: a reader held it)", rep->steps);
	else
		log_err("store compaction: %s (after %llu journal rows, %llu outbox rows)", detail,
			(unsigned long long)rep->journal_rows,
			(unsigned long long)rep->outbox_rows);
	answer(&c->current, ok, rep, detail);
	if (c->next.n && !c->stopping) {
		c->current = c->next;
		c->next.n = 0;
		start_run(c);
	} else {
		answer(&c->next, false, rep, "stopped: the daemon is shutting down");
	}
}

static void on_step(struct st_job *job)
{
	struct compactor *c = job->arg;
	if (c->run.phase == PHASE_DONE || c->stopping) {
		finish_run(c);
		return;
	}
	store_thread_submit(c->m->store_thread, &c->job);
}

static void start_run(struct compactor *c)
{
	uint64_t now = mp_clock_now(&c->m->clock);
	const struct merchant_config *cfg = &c->m->cfg;
	c->run = (struct compact_run_state){
	    .phase = PHASE_JOURNAL,
	    .journal_cutoff = (int64_t)(now - (cfg->t_dedupe < now ? cfg->t_dedupe : now)),
	    .outbox_cutoff =
		(int64_t)(now - (cfg->outbox_retention < now ? cfg->outbox_retention : now)),
	    .goods_cutoff =
		(int64_t)(now - (cfg->goods_retention < now ? cfg->goods_retention : now)),
	};
	c->running = true;
	c->job = (struct st_job){.run = run_step, .done = on_step, .arg = c};
	store_thread_submit(c->m->store_thread, &c->job);
}

bool compact_run(struct merchant *m, compact_done_fn done, void *arg)
{
	struct compactor *c = m->compactor;
	if (c->stopping)
		return false;
	struct waiters *ws = c->running ? &c->next : &c->current;
	if (done) {
		if (ws->n == MAX_WAITERS)
			return false;
		ws->w[ws->n++] = (struct waiter){done, arg};
	}
	if (!c->running)
		start_run(c);
	return true;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct compactor *c = arg;
	if (!c->running && !c->stopping)
		start_run(c);
}

bool compactor_start(struct merchant *m)
{
	struct compactor *c = calloc(1, sizeof(*c));
	if (!c)
		return false;
	c->m = m;
	m->compactor = c;
	if (!m->cfg.compact_interval)
		return true;
	c->timer = event_new(m->base, -1, EV_PERSIST, on_timer, c);
	struct timeval tv = {(time_t)m->cfg.compact_interval, 0};
	return c->timer && event_add(c->timer, &tv) == 0;
}

void compactor_stop(struct merchant *m)
{
	if (m->compactor)
		m->compactor->stopping = true;
}

void compactor_free(struct merchant *m)
{
	struct compactor *c = m->compactor;
	if (!c)
		return;
	if (c->timer)
		event_free(c->timer);
	free(c);
	m->compactor = NULL;
}

const struct compact_totals *compact_totals(const struct merchant *m)
{
	return &m->compactor->totals;
}
