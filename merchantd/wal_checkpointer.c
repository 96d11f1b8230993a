#include "wal_checkpointer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

/* The hook's own view, on the store thread only. A generation is one pass of the WAL from its
 * start: it begins when the WAL's size falls (SQLite started it over). */
struct writer_view {
	uint32_t gen;
	int last_pages;
	uint64_t woken_at; /* runs_ended (below) when the thread was last woken */
	bool woken;	   /* the thread was woken at least once */
	uint64_t finished; /* the report the writer last finished a generation after */
	bool failing;	   /* the writer's last checkpoint failed (logged once) */
};

struct wal_checkpointer {
	struct wal_checkpointer_limits limits;
	char path[512];
	sqlite3 *db; /* the thread's own connection */
	pthread_t tid;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	bool wanted;		/* under mu: the hook asked for a checkpoint */
	uint32_t wake_gen;	/* under mu: the generation it asked in */
	bool stop;		/* under mu */
	pthread_mutex_t run_mu; /* held by the thread while it checkpoints (and by
				   wal_checkpointer_run_after_thread) */
	/* The thread's last checkpoint that succeeded: generation << 32 | frames copied, and the
	 * number of runs that ended, whatever their result. Written by the thread, read by the
	 * hook. */
	_Atomic uint64_t report;
	_Atomic uint64_t runs_ended;
	bool thread_failing; /* checkpointer thread only: the last run failed (logged once) */
	struct writer_view writer;
	struct wal_checkpoint_totals totals;
};

static uint64_t report_of(uint32_t gen, int copied)
{
	return (uint64_t)gen << 32 | (uint32_t)copied;
}

/* PASSIVE: copies what no reader still needs, never waits for the writer or a reader. Busy
 * (another checkpoint running, the writer's or compaction's) is not a failure. */
static int checkpoint(sqlite3 *db, int *log_frames, int *copied)
{
	*log_frames = *copied = 0;
	return sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, log_frames, copied);
}

/* Log a failure once, and the recovery after it. */
static void note_result(struct wal_checkpointer *c, bool *failing, const char *who, int rc,
			sqlite3 *db)
{
	bool failed = rc != SQLITE_OK && rc != SQLITE_BUSY;
	if (failed) {
		atomic_fetch_add(&c->totals.failures, 1);
		if (!*failing)
			log_err("store %s: WAL checkpoint by the %s failed: %s (tried again; the "
				"writer copies the WAL at %d frames meanwhile)",
				c->path, who, sqlite3_errmsg(db), c->limits.limit_pages);
	} else if (*failing) {
		log_info("store %s: WAL checkpoint by the %s succeeds again", c->path, who);
	}
	*failing = failed;
}

static void run_once(struct wal_checkpointer *c, uint32_t gen)
{
	int log_frames, copied;
	pthread_mutex_lock(&c->run_mu);
	int rc = checkpoint(c->db, &log_frames, &copied);
	pthread_mutex_unlock(&c->run_mu);
	note_result(c, &c->thread_failing, "checkpointer thread", rc, c->db);
	if (rc == SQLITE_OK) {
		atomic_store(&c->report, report_of(gen, copied));
		atomic_fetch_add(&c->totals.runs, 1);
	}
	atomic_fetch_add(&c->runs_ended, 1); /* a failed run may be woken again */
}

static void *thread_main(void *arg)
{
	struct wal_checkpointer *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->wanted && !c->stop)
			pthread_cond_wait(&c->wake, &c->mu);
		if (c->stop)
			break;
		c->wanted = false;
		uint32_t gen = c->wake_gen;
		pthread_mutex_unlock(&c->mu);
		run_once(c, gen);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void wake_thread(struct wal_checkpointer *c, uint32_t gen)
{
	pthread_mutex_lock(&c->mu);
	c->wanted = true;
	c->wake_gen = gen;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

static void writer_checkpoint(struct wal_checkpointer *c, sqlite3 *db, _Atomic uint64_t *count)
{
	int log_frames, copied;
	int rc = checkpoint(db, &log_frames, &copied);
	note_result(c, &c->writer.failing, "writer", rc, db);
	if (rc == SQLITE_OK)
		atomic_fetch_add(count, 1);
}

/* The writer's WAL hook, after each commit: pages is the WAL's size in frames. */
static int on_commit(void *arg, sqlite3 *db, const char *schema, int pages)
{
	struct wal_checkpointer *c = arg;
	struct writer_view *v = &c->writer;
	(void)schema;
	atomic_store(&c->totals.wal_frames, (uint64_t)pages);
	if (pages < v->last_pages)
		v->gen++;
	v->last_pages = pages;
	uint64_t report = atomic_load(&c->report);
	bool thread_copied = report >> 32 == v->gen; /* in this generation */
	int copied = thread_copied ? (int)(uint32_t)report : 0;
	if (!thread_copied)
		report = report_of(v->gen, 0);
	if (pages >= c->limits.limit_pages) {
		writer_checkpoint(c, db, &c->totals.limit_runs);
	} else if (thread_copied && report != v->finished) {
		v->finished = report; /* once per report: a failure waits for the limit */
		writer_checkpoint(c, db, &c->totals.writer_runs);
	} else if (pages - copied >= c->limits.step_pages) {
		uint64_t ended = atomic_load(&c->runs_ended);
		if (ended != v->woken_at || !v->woken) { /* not while woken and not yet done */
			v->woken_at = ended;
			v->woken = true;
			wake_thread(c, v->gen);
		}
	}
	return SQLITE_OK; /* the commit itself is done either way */
}

/* A connection finds the WAL only once it has read the database: until then a checkpoint
 * does nothing (and says so with -1 frames). Reading the journal mode does both. Its syncs
 * are what make starting the WAL over safe: FULL, as the store's own connections. */
static bool prepare_connection(struct wal_checkpointer *c, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *mode = NULL;
	if (sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(c->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		mode = sqlite3_column_text(st, 0);
	bool wal = mode && strcmp((const char *)mode, "wal") == 0;
	if (!mode)
		snprintf(err, errlen, "WAL checkpointer: %s: %s", c->path, sqlite3_errmsg(c->db));
	else if (!wal)
		snprintf(err, errlen, "WAL checkpointer: %s is not in WAL mode (%s)", c->path,
			 (const char *)mode);
	sqlite3_finalize(st);
	return wal;
}

static void checkpointer_free(struct wal_checkpointer *c)
{
	sqlite3_close(c->db);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->run_mu);
	pthread_cond_destroy(&c->wake);
	free(c);
}

struct wal_checkpointer *wal_checkpointer_start(const char *path,
						const struct wal_checkpointer_limits *limits,
						char *err, size_t errlen)
{
	struct wal_checkpointer *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "WAL checkpointer: out of memory");
		return NULL;
	}
	c->limits = *limits;
	c->writer.gen = 1; /* the empty report (generation 0) is no generation's */
	snprintf(c->path, sizeof(c->path), "%s", path);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->run_mu, NULL);
	pthread_cond_init(&c->wake, NULL);
	/* The file exists (the store opened it first): no create, so its mode stays private. */
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "WAL checkpointer: %s: %s", path,
			 c->db ? sqlite3_errmsg(c->db) : "cannot open");
		checkpointer_free(c);
		return NULL;
	}
	if (!prepare_connection(c, err, errlen)) {
		checkpointer_free(c);
		return NULL;
	}
	int rc = pthread_create(&c->tid, NULL, thread_main, c);
	if (rc != 0) {
		snprintf(err, errlen, "WAL checkpointer: cannot start: %s", strerror(rc));
		checkpointer_free(c);
		return NULL;
	}
	c->started = true;
	return c;
}

void wal_checkpointer_attach(struct wal_checkpointer *c, sqlite3 *writer)
{
	sqlite3_wal_hook(writer, on_commit, c);
}

int wal_checkpointer_run_after_thread(struct wal_checkpointer *c, sqlite3 *db, int mode,
				      int *log_frames, int *copied)
{
	if (!c)
		return sqlite3_wal_checkpoint_v2(db, NULL, mode, log_frames, copied);
	pthread_mutex_lock(&c->run_mu);
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, mode, log_frames, copied);
	pthread_mutex_unlock(&c->run_mu);
	return rc;
}

const struct wal_checkpoint_totals *wal_checkpointer_totals(const struct wal_checkpointer *c)
{
	return &c->totals;
}

void wal_checkpointer_stop(struct wal_checkpointer *c)
{
	if (!c)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->tid, NULL);
	}
	checkpointer_free(c);
}
