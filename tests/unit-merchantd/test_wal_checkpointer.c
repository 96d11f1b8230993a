/* merchantd's WAL checkpointer (merchantd/wal_checkpointer.c) on a real SQLite file: once
 * step_pages frames are not yet copied the thread checkpoints beside the writer and the WAL
 * starts over without the limit; when a reader kept the thread from copying a pass's newest
 * frames, the writer copies them and the next commit starts the WAL over, pass after pass
 * (each pass's start seen); a reader holding the WAL for good gets the thread woken again
 * after each run; with the thread never woken, the writer checkpoints at limit_pages and the
 * WAL file stays below the limit plus one commit; every row written is there after a reopen;
 * stop joins the thread after the writer closed; a store missing or not in WAL mode is refused
 * at start (a connection that never read the file would find no WAL to copy). No timing is
 * asserted: the waits have deadlines only so that a broken checkpointer fails instead of
 * hanging. */
#include <check.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wal_checkpointer.h"
#include "../check_run.h"

#define DIR_TEMPLATE "/tmp/mp-test-walckpt-XXXXXX"
#define ROW_BYTES    4000 /* about one page per row */
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.db", dir);
}

static void teardown(void)
{
	char p[sizeof(path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
}

/* A writer as the store thread's: WAL mode, a full sync per commit, no autocheckpoint of its
 * own once the hook is attached. */
static sqlite3 *open_writer(void)
{
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		 "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
	return db;
}

/* One commit of one row of ROW_BYTES. */
static void commit_row(sqlite3 *db, int k)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, zeroblob(?))", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int(st, 1, k);
	sqlite3_bind_int(st, 2, ROW_BYTES);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static int64_t rows_in(const char *file)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open(file, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static off_t file_size(const char *suffix)
{
	char p[sizeof(path) + 8];
	snprintf(p, sizeof(p), "%s%s", path, suffix);
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A checkpointer with these limits, attached to writer. */
static struct wal_checkpointer *start_on(sqlite3 *writer, int step_pages, int limit_pages)
{
	struct wal_checkpointer_limits limits = {.step_pages = step_pages,
						 .limit_pages = limit_pages};
	struct wal_checkpointer *c = wal_checkpointer_start(path, &limits, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	wal_checkpointer_attach(c, writer);
	return c;
}

/* Stop it, close the writer, and find every row written in the file. */
static void stop_and_count(struct wal_checkpointer *c, sqlite3 *writer, int rows)
{
	wal_checkpointer_stop(c);
	sqlite3_close(writer);
	ck_assert_int_eq(rows_in(path), rows);
}

START_TEST(thread_checkpoints_beside_the_writer)
{
	sqlite3 *writer = open_writer();
	struct wal_checkpointer *c = start_on(writer, 16, 1 << 20);
	const struct wal_checkpoint_totals *tot = wal_checkpointer_totals(c);
	off_t db_before = file_size("");
	/* Commits go on until the WAL has started over twice (30 s at most: a deadline, not a
	 * timing): the thread copied, the writer finished the pass, the next commit began anew. */
	int k = 0, restarts = 0;
	uint64_t frames = 0;
	for (int waited = 0; restarts < 2 && waited < 30000; waited++) {
		commit_row(writer, k++);
		uint64_t now = atomic_load(&tot->wal_frames);
		restarts += now < frames;
		frames = now;
		sleep_ms(1);
	}
	ck_assert_int_ge(restarts, 2);
	ck_assert_uint_ge(atomic_load(&tot->runs), 2);
	ck_assert_uint_eq(atomic_load(&tot->limit_runs), 0);
	ck_assert_uint_eq(atomic_load(&tot->failures), 0);
	/* The database file itself received pages: a checkpoint copied them. */
	ck_assert_int_gt(file_size(""), db_before);
	stop_and_count(c, writer, k);
}
END_TEST

static void wait_for_runs(const struct wal_checkpoint_totals *tot, uint64_t n)
{
	for (int waited = 0; atomic_load(&tot->runs) < n && waited < 30000; waited++)
		sleep_ms(1);
	ck_assert_uint_ge(atomic_load(&tot->runs), n);
}

#define STEP 64 /* frames: a handful of commits stay below it */

/* One pass of the WAL whose newest frames a reader's snapshot keeps the thread from copying,
 * so the pass is not finished when the thread reports: the writer's next commit copies the
 * rest and the commit after it starts the WAL over. Pass n: the thread's nth run. */
static void pass_with_a_pinned_tail(sqlite3 *writer, const struct wal_checkpoint_totals *tot,
				    int *k, uint64_t n)
{
	commit_row(writer, (*k)++);
	commit_row(writer, (*k)++);
	sqlite3 *reader = NULL;
	ck_assert_int_eq(sqlite3_open(path, &reader), SQLITE_OK);
	exec(reader, "BEGIN; SELECT count(*) FROM t");
	while (atomic_load(&tot->wal_frames) < STEP)
		commit_row(writer, (*k)++); /* the last one wakes the thread */
	wait_for_runs(tot, n);
	ck_assert_uint_eq(atomic_load(&tot->writer_runs), n - 1);
	exec(reader, "COMMIT");
	sqlite3_close(reader);
	uint64_t frames = atomic_load(&tot->wal_frames);
	commit_row(writer, (*k)++);
	ck_assert_uint_eq(atomic_load(&tot->writer_runs), n);
	ck_assert_uint_gt(atomic_load(&tot->wal_frames), frames); /* not yet started over */
	commit_row(writer, (*k)++);
	ck_assert_uint_lt(atomic_load(&tot->wal_frames), frames); /* started over */
}

/* Twice: the second pass wakes the thread at STEP frames again (its start was seen), not
 * STEP frames past what the thread copied in the first. */
START_TEST(writer_finishes_each_pass_the_thread_copied)
{
	sqlite3 *writer = open_writer();
	struct wal_checkpointer *c = start_on(writer, STEP, 1 << 20);
	const struct wal_checkpoint_totals *tot = wal_checkpointer_totals(c);
	int k = 0;
	pass_with_a_pinned_tail(writer, tot, &k, 1);
	pass_with_a_pinned_tail(writer, tot, &k, 2);
	ck_assert_uint_eq(atomic_load(&tot->limit_runs), 0);
	ck_assert_uint_eq(atomic_load(&tot->failures), 0);
	stop_and_count(c, writer, k);
}
END_TEST

/* A reader holds the WAL for good: each run copies the same frames and reports the same; the
 * thread is still woken again after each run (not left to the limit). */
START_TEST(thread_woken_again_while_a_reader_holds_the_wal)
{
	sqlite3 *writer = open_writer();
	struct wal_checkpointer *c = start_on(writer, STEP, 1 << 20);
	const struct wal_checkpoint_totals *tot = wal_checkpointer_totals(c);
	int k = 0;
	commit_row(writer, k++);
	sqlite3 *reader = NULL;
	ck_assert_int_eq(sqlite3_open(path, &reader), SQLITE_OK);
	exec(reader, "BEGIN; SELECT count(*) FROM t");
	for (int waited = 0; atomic_load(&tot->runs) < 3 && waited < 30000; waited++) {
		commit_row(writer, k++);
		sleep_ms(1);
	}
	ck_assert_uint_ge(atomic_load(&tot->runs), 3);
	ck_assert_uint_eq(atomic_load(&tot->limit_runs), 0);
	exec(reader, "COMMIT");
	sqlite3_close(reader);
	stop_and_count(c, writer, k);
}
END_TEST

START_TEST(writer_bounds_the_wal_when_the_thread_is_not_woken)
{
	sqlite3 *writer = open_writer();
	struct wal_checkpointer *c = start_on(writer, 1 << 30, 64);
	const struct wal_checkpoint_totals *tot = wal_checkpointer_totals(c);
	const int rows = 400; /* more than 800 frames: over twelve times the limit */
	for (int k = 0; k < rows; k++)
		commit_row(writer, k);
	ck_assert_uint_eq(atomic_load(&tot->runs), 0);
	ck_assert_uint_eq(atomic_load(&tot->writer_runs), 0);
	ck_assert_uint_ge(atomic_load(&tot->limit_runs), 5);
	ck_assert_uint_eq(atomic_load(&tot->failures), 0);
	ck_assert_uint_lt(atomic_load(&tot->wal_frames), 64 + 8);
	/* The file restarted instead of growing: header + frames of (4 KiB page + 24 B). */
	off_t wal = file_size("-wal");
	ck_assert_int_le(wal, 32 + (64 + 8) * (4096 + 24));
	stop_and_count(c, writer, rows);
}
END_TEST

/* As store_thread.c stops: the writer closed (its last commits may have woken the thread),
 * then the checkpointer, which joins its thread whether it is running, woken or idle. */
START_TEST(stop_after_the_writer_closed)
{
	sqlite3 *writer = open_writer();
	struct wal_checkpointer *c = start_on(writer, 1, 1 << 20);
	for (int k = 0; k < 20; k++)
		commit_row(writer, k); /* the thread woken again whenever its run ended */
	sqlite3_close(writer);
	wal_checkpointer_stop(c);
	ck_assert_int_eq(rows_in(path), 20);
}
END_TEST

START_TEST(start_fails_on_a_missing_store)
{
	char missing[sizeof(path) + 16];
	snprintf(missing, sizeof(missing), "%s/absent.db", dir);
	struct wal_checkpointer_limits limits = {.step_pages = 16, .limit_pages = 64};
	ck_assert_ptr_null(wal_checkpointer_start(missing, &limits, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "absent.db"));
	ck_assert_int_eq(access(missing, F_OK), -1); /* never created */
}
END_TEST

START_TEST(start_fails_on_a_store_not_in_wal_mode)
{
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY)"); /* rollback journal: the default */
	sqlite3_close(db);
	struct wal_checkpointer_limits limits = {.step_pages = 16, .limit_pages = 64};
	ck_assert_ptr_null(wal_checkpointer_start(path, &limits, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not in WAL mode"));
}
END_TEST

static Suite *checkpointer_suite(void)
{
	Suite *s = suite_create("merchantd WAL checkpointer");
	TCase *tc = tcase_create("checkpointer");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, thread_checkpoints_beside_the_writer);
	tcase_add_test(tc, writer_finishes_each_pass_the_thread_copied);
	tcase_add_test(tc, thread_woken_again_while_a_reader_holds_the_wal);
	tcase_add_test(tc, writer_bounds_the_wal_when_the_thread_is_not_woken);
	tcase_add_test(tc, stop_after_the_writer_closed);
	tcase_add_test(tc, start_fails_on_a_missing_store);
	tcase_add_test(tc, start_fails_on_a_store_not_in_wal_mode);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(checkpointer_suite());
}
