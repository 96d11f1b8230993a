/* The WAL checkpointer: copies the store's write-ahead log into the database file on a thread
 * of its own, so a group commit does not pay for it.
 *
 * SQLite's default checkpoints run inside the commit that crosses wal_autocheckpoint: that
 * batch copies every page the WAL holds (up to 32 MiB here) and syncs the database file before
 * its Pays are answered, which was the 1,000-channel p999 (docs/performance.md, "The WAL
 * checkpoint off the commit"). SQLite starts the WAL over (writes it again from its start)
 * only when a write begins with every frame copied; under steady batches a checkpoint on
 * another thread always finishes a few commits behind the writer, so the writer still has to
 * run the last, short checkpoint of each pass. The writer's connection has a WAL hook instead
 * of the autocheckpoint; per commit, with P frames in the WAL (one generation: one pass of
 * the WAL from its start) and C of them copied by the thread in this generation:
 *
 *   P - C >= step_pages, the thread not already woken and still running
 *        --> wake the thread: PASSIVE checkpoint on its own connection, beside the commits;
 *            it reports (generation, C = frames copied); a failed or busy run is woken again
 *   thread reported for this generation, not yet finished after that report
 *        --> the writer's own PASSIVE checkpoint, in the hook: the frames appended while the
 *            thread copied (a few batches'); the next commit starts the WAL over (generation+1)
 *   P >= limit_pages (the thread failed or fell behind, or a reader held the WAL)
 *        --> the writer's own checkpoint of everything not copied, as SQLite's would be
 *
 * So the WAL stays below limit_pages plus a batch whatever the thread does (unless a reader
 * holds an old snapshot, which stops any checkpoint, SQLite's own too), and the writer's share
 * is the tail of each pass. A checkpoint that finds another running gets SQLITE_BUSY at once
 * and is not a failure. A generation is told by the WAL's size falling from one commit to the
 * next: a first commit after the restart larger than the whole previous pass is missed, and
 * then the thread is woken later or the writer finishes early (the limit still holds).
 *
 * Threads: wal_checkpointer_start/stop on the loop (at start and shutdown); the hook on the
 * store thread; the checkpoints on the checkpointer's thread. The counters are atomics read by
 * the metrics. */
#pragma once
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct sqlite3;

struct wal_checkpointer_limits {
	int step_pages;	 /* frames not yet copied that wake the thread */
	int limit_pages; /* frames at which the writer checkpoints everything itself */
};

struct wal_checkpoint_totals {
	_Atomic uint64_t runs;	      /* checkpoints run by the thread */
	_Atomic uint64_t writer_runs; /* the writer's, finishing a generation the thread copied */
	_Atomic uint64_t limit_runs;  /* the writer's, at limit_pages */
	_Atomic uint64_t failures;    /* checkpoints that failed (not counting busy) */
	_Atomic uint64_t wal_frames;  /* the WAL's size after the last commit, in frames */
};

struct wal_checkpointer;

/* Open a connection of its own to the store at path (WAL mode already set, else refused) and
 * start the thread. NULL on failure, with err set. */
struct wal_checkpointer *wal_checkpointer_start(const char *path,
						const struct wal_checkpointer_limits *limits,
						char *err, size_t errlen);
/* Install the hook on the writer's connection (replaces SQLite's autocheckpoint). The
 * checkpointer must outlive every commit on writer, or be detached first. */
void wal_checkpointer_attach(struct wal_checkpointer *c, struct sqlite3 *writer);
/* A checkpoint on db (the writer's connection) in mode (SQLITE_CHECKPOINT_*), once the
 * thread's running checkpoint, if any, has ended (SQLite would answer SQLITE_BUSY at once
 * instead): compaction's TRUNCATE. The caller waits meanwhile (the store thread, never the
 * loop). c NULL: db's checkpoint alone. */
int wal_checkpointer_run_after_thread(struct wal_checkpointer *c, struct sqlite3 *db, int mode,
				      int *log_frames, int *copied);
const struct wal_checkpoint_totals *wal_checkpointer_totals(const struct wal_checkpointer *c);
/* Stop and join the thread (a checkpoint running is finished first), close its connection. */
void wal_checkpointer_stop(struct wal_checkpointer *c);
