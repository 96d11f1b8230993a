/* The goods step of store compaction (merchantd/compact_goods.c) on a real store: offers whose
 * deadline is before the cutoff and finished purchases started before it are deleted; newer
 * offers, newer purchases and unfinished purchases (a sent chunk may be unpaid) are kept; a
 * full batch asks for another step. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compact_goods.h"
#include "store.h"
#include "../check_run.h"
#include "clock.h"

static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-mgoods-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];
static struct store *s;

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.db", dir);
	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
}

static void teardown(void)
{
	store_close(s);
	char p[sizeof(path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void sql(const char *fmt, int a, int b, int c)
{
	char text[1024];
	snprintf(text, sizeof(text), fmt, a, b, c);
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(store_db(s), text, NULL, NULL, &msg) == SQLITE_OK, "%s: %s",
		      text, msg ? msg : "");
}

/* Offer number n with that deadline; purchase number n started at `at` with paid of 4. */
static void offer_row(int n, int deadline)
{
	sql("INSERT INTO offers (order_ref, channel_id, seg_seq, item, path, size, mtime_ns, "
	    "chunk_size, chunks, key, nonce_prefix, after_index, pay_index, price, deadline, "
	    "offer, "
	    "paid, created_at) VALUES (x'000000000000000000000000000000%02x', zeroblob(16), 0, "
	    "'song', '/x', 10, 0, 1024, 1, zeroblob(32), zeroblob(8), 1, 2, 3, %d, x'00', 1, 0)",
	    n, deadline, 0);
}

static void purchase_row(int n, int at, int paid)
{
	sql("INSERT INTO purchases (purchase_id, channel_id, seg_seq, item, path, size, "
	    "chunk_size, chunks, price, metered, total, paid, created_at) VALUES ("
	    "x'000000000000000000000000000000%02x', zeroblob(16), 0, 'meter', '/x', 4096, 1024, 4, "
	    "1, 1, 4, %d, %d)",
	    n, paid, at);
}

static int count(const char *table)
{
	char text[128];
	snprintf(text, sizeof(text), "SELECT count(*) FROM %s", table);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(s), text, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

static bool present(const char *table, const char *key, int n)
{
	char text[160];
	snprintf(text, sizeof(text),
		 "SELECT 1 FROM %s WHERE %s = x'000000000000000000000000000000%02x'", table, key,
		 n);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(s), text, -1, &st, NULL), SQLITE_OK);
	bool found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

START_TEST(old_offers_and_finished_purchases_go)
{
	offer_row(1, 100);	  /* before the cutoff: deleted */
	offer_row(2, 1000);	  /* after: kept */
	purchase_row(1, 100, 4);  /* finished, old: deleted */
	purchase_row(2, 100, 3);  /* unfinished, old: kept */
	purchase_row(3, 1000, 4); /* finished, new: kept */
	uint64_t deleted = 0;
	bool more = true;
	ck_assert_msg(compact_goods_step(store_db(s), 500, 10, &deleted, &more, err, sizeof(err)),
		      "%s", err);
	ck_assert_uint_eq(deleted, 2);
	ck_assert(!more);
	ck_assert(!present("offers", "order_ref", 1) && present("offers", "order_ref", 2));
	ck_assert(!present("purchases", "purchase_id", 1));
	ck_assert(present("purchases", "purchase_id", 2) && present("purchases", "purchase_id", 3));
	/* Again: nothing more. */
	ck_assert(compact_goods_step(store_db(s), 500, 10, &deleted, &more, err, sizeof(err)));
	ck_assert_uint_eq(deleted, 2);
}
END_TEST

START_TEST(a_full_batch_asks_for_another_step)
{
	for (int n = 1; n <= 5; n++)
		offer_row(n, 100);
	uint64_t deleted = 0;
	bool more = false;
	ck_assert(compact_goods_step(store_db(s), 500, 3, &deleted, &more, err, sizeof(err)));
	ck_assert_uint_eq(deleted, 3);
	ck_assert(more);
	ck_assert(compact_goods_step(store_db(s), 500, 3, &deleted, &more, err, sizeof(err)));
	ck_assert_uint_eq(deleted, 5);
	ck_assert(!more);
	ck_assert_int_eq(count("offers"), 0);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("merchantd_compact_goods");
	TCase *tc = tcase_create("compact_goods");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, old_offers_and_finished_purchases_go);
	tcase_add_test(tc, a_full_batch_asks_for_another_step);
	suite_add_tcase(su, tc);
	return mp_check_run(su);
}
