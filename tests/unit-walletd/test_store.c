/* walletd's store (walletd/store.c): a private file, one walletd per store, and everything the
 * wallet must find again after a restart (account, channel with its exact request bytes,
 * checkpoints, in-flight Pays, progress, the budget of channels buy issued); a parameter that
 * cannot be bound is an error, never a NULL that finds nothing. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stmt.h"
#include "store.h"
#include "store_budget.h"
#include "wallet.h"
#include "../check_run.h"
#include "clock.h"

/* The stores stamp rows with protocol time: a clock at offset 0. */
static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-wstore-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/w.db", dir);
}

static void teardown(void)
{
	char p[sizeof(path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

static unsigned file_mode(const char *p)
{
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_mode & 0777;
}

START_TEST(private_and_exclusive)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	uint8_t seed[MP_SK_LEN] = {1, 2, 3};
	ck_assert(wstore_set_account_seed(s, seed));
	ck_assert_uint_eq(file_mode(path), 0600);
	char wal[sizeof(path) + 8];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (access(wal, F_OK) == 0)
		ck_assert_uint_eq(file_mode(wal), 0600);
	/* A second walletd on the same store is refused while the first runs. */
	struct wstore *second = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_ptr_null(second);
	ck_assert_msg(strstr(err, "locked") || strstr(err, "another walletd"), "%s", err);
	wstore_close(s);
	/* A store others may read is refused, like a key file, and left as it is. */
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_ptr_null(wstore_open(path, &test_clock, err, sizeof(err)));
	ck_assert_msg(strstr(err, "mode 0640 lets other users read the store: chmod 600"), "%s",
		      err);
	ck_assert_uint_eq(file_mode(path), 0640);
	ck_assert_int_eq(chmod(path, 0600), 0);
	/* So is one whose WAL others may read. */
	FILE *f = fopen(wal, "a");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(chmod(wal, 0604), 0);
	ck_assert_ptr_null(wstore_open(path, &test_clock, err, sizeof(err)));
	ck_assert_msg(strstr(err, "-wal: mode 0604 lets other users read the store"), "%s", err);
	ck_assert_int_eq(chmod(wal, 0600), 0);
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	wstore_close(s);
}
END_TEST

/* SQLite's heap, recorded: each block carries its size in a header; a block freed while it
 * still holds the test's seed pattern is counted. */
static uint8_t pattern[MP_SK_LEN];
static int freed_with_seed;

/* Blocks start zeroed, like tests/secret_heap.h's: memmem at free never reads uninitialised
 * bytes (valgrind), and MALLOC_PERTURB_'s fill byte never matches the pattern. */
static void *rec_malloc(int n)
{
	uint64_t *p = calloc(1, (size_t)n + 16);
	if (!p)
		return NULL;
	p[0] = (uint64_t)n;
	return p + 2;
}

static void rec_free(void *q)
{
	if (!q)
		return;
	uint64_t *p = (uint64_t *)q - 2;
	if (memmem(q, (size_t)p[0], pattern, sizeof(pattern)))
		freed_with_seed++;
	free(p);
}

static int rec_size(void *q)
{
	return q ? (int)((uint64_t *)q - 2)[0] : 0;
}

static void *rec_realloc(void *q, int n)
{
	void *r = rec_malloc(n);
	if (r && q) {
		int have = rec_size(q);
		memcpy(r, q, (size_t)(have < n ? have : n));
		rec_free(q);
	}
	return r;
}

static int rec_roundup(int n)
{
	return (n + 7) & ~7;
}

static int rec_init(void *arg)
{
	return SQLITE_OK;
}

static void rec_shutdown(void *arg)
{
}

/* The account seed written and read again under the recording allocator (wiped or not): how
 * many freed blocks still held it. */
static int seed_left_in_freed_memory(bool wipe)
{
	static const sqlite3_mem_methods rec = {rec_malloc,  rec_free, rec_realloc,  rec_size,
						rec_roundup, rec_init, rec_shutdown, NULL};
	ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_MALLOC, &rec), SQLITE_OK);
	if (wipe)
		ck_assert(wstore_wipe_freed_memory());
	memset(pattern, 0xa7, sizeof(pattern));
	freed_with_seed = 0;
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(wstore_set_account_seed(s, pattern));
	wstore_close(s);
	s = wstore_open(path, &test_clock, err, sizeof(err));
	uint8_t got[MP_SK_LEN];
	ck_assert_int_eq(wstore_account_seed(s, got), 1);
	ck_assert_mem_eq(got, pattern, sizeof(got));
	wstore_close(s);
	sqlite3_shutdown();
	return freed_with_seed;
}

/* The control: without the wiping allocator SQLite frees blocks holding the seed (so the test
 * can see it)... */
START_TEST(sqlite_frees_the_seed_unwiped_by_default)
{
	ck_assert_int_gt(seed_left_in_freed_memory(false), 0);
}
END_TEST

/* ... and with it (walletd installs it at start) no freed block holds it. */
START_TEST(freed_sqlite_memory_is_wiped)
{
	ck_assert_int_eq(seed_left_in_freed_memory(true), 0);
}
END_TEST

START_TEST(account_round_trip)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	uint8_t seed[MP_SK_LEN], id[MP_ID_LEN], got_seed[MP_SK_LEN], got_id[MP_ID_LEN];
	ck_assert_int_eq(wstore_account_seed(s, got_seed), 0);
	ck_assert_int_eq(wstore_account_id(s, got_id), 0);
	memset(seed, 0xab, sizeof(seed));
	memset(id, 0xcd, sizeof(id));
	ck_assert(wstore_set_account_seed(s, seed));
	ck_assert(wstore_set_account_id(s, id));
	wstore_close(s);
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_int_eq(wstore_account_seed(s, got_seed), 1);
	ck_assert_int_eq(wstore_account_id(s, got_id), 1);
	ck_assert_mem_eq(got_seed, seed, sizeof(seed));
	ck_assert_mem_eq(got_id, id, sizeof(id));
	wstore_close(s);
}
END_TEST

static struct wchannel *loaded;

static void keep(void *arg, struct wchannel *ch)
{
	ck_assert_ptr_null(loaded);
	loaded = ch;
}

static struct wchannel *make_channel(struct mp_key *account)
{
	struct wchannel *ch = calloc(1, sizeof(*ch));
	ck_assert_ptr_nonnull(ch);
	memset(ch->channel_id, 1, MP_ID_LEN);
	memset(ch->issue_req_id, 2, MP_ID_LEN);
	memset(ch->holder0, 3, MP_ID_LEN);
	memset(ch->nonce, 4, MP_NONCE_LEN);
	ch->n = 1000;
	ch->days = 7;
	ch->interval = 256;
	ch->unit_value = 5;
	memcpy(ch->currency, "EUR", 4);
	ch->state = WCH_ISSUING;
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){MP_ID_LEN, ch->issue_req_id};
	r.n = ch->n;
	r.currency = "EUR";
	ch->request = mp_stmt_sign(account, MP_STMT_ISSUE_REQUEST, &r.base);
	ck_assert_ptr_nonnull(ch->request);
	return ch;
}

START_TEST(channel_and_inflight_survive_restart)
{
	uint8_t seed[MP_SK_LEN];
	struct mp_key account;
	ck_assert(mp_key_generate(&account, seed));
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct wchannel *ch = make_channel(&account);
	uint8_t chain_seed[MP_SEED_LEN] = {9}, owner_seed[MP_SK_LEN] = {8}, w[MP_HASH_LEN];
	ck_assert(wstore_begin(s));
	memset(w, 0x11, sizeof(w));
	ck_assert(wstore_checkpoint_put(s, ch->channel_id, 0, w));
	memset(w, 0x22, sizeof(w));
	ck_assert(wstore_checkpoint_put(s, ch->channel_id, 256, w));
	ck_assert(wstore_channel_insert(s, ch, chain_seed, owner_seed));
	ck_assert(wstore_commit(s));
	/* A rolled-back transaction leaves nothing. */
	ck_assert(wstore_begin(s));
	ck_assert(wstore_checkpoint_put(s, ch->channel_id, 512, w));
	wstore_rollback(s);
	ck_assert(!wstore_checkpoint_get(s, ch->channel_id, 512, w));
	ck_assert(wstore_checkpoint_get(s, ch->channel_id, 256, w));
	ck_assert_uint_eq(w[0], 0x22);

	struct wstore_pay p1 = {.j = 7, .order_ref = {0xaa}, .order_ref_len = 1};
	struct wstore_pay p2 = {.j = 9, .order_ref = {0xbb, 0xcc}, .order_ref_len = 2};
	memset(p1.w, 0x71, MP_HASH_LEN);
	memset(p2.w, 0x72, MP_HASH_LEN);
	ck_assert(wstore_inflight_add(s, ch->channel_id, &p1));
	ck_assert(wstore_inflight_add(s, ch->channel_id, &p2));
	ck_assert(!wstore_inflight_add(s, ch->channel_id, &p1)); /* one j once */
	ck_assert(wstore_inflight_done(s, ch->channel_id, 7, 7, 35));
	ck_assert(wstore_channel_set_state(s, ch->channel_id, "ISSUING", "broker unreachable"));
	wstore_close(s);

	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	loaded = NULL;
	ck_assert(wstore_channels_load(s, keep, NULL));
	ck_assert_ptr_nonnull(loaded);
	ck_assert_mem_eq(loaded->channel_id, ch->channel_id, MP_ID_LEN);
	ck_assert_int_eq(loaded->state, WCH_ISSUING);
	ck_assert_str_eq(loaded->detail, "broker unreachable");
	ck_assert_uint_eq(loaded->n, 1000);
	ck_assert_uint_eq(loaded->interval, 256);
	ck_assert_uint_eq(loaded->last, 7);
	ck_assert_uint_eq(loaded->sent, 9);
	ck_assert_uint_eq(loaded->credit, 35);
	ck_assert_uint_eq(loaded->inflight, 1);
	/* The exact request bytes come back. */
	size_t a_len, b_len;
	uint8_t *a = mp_stmt_encode(ch->request, &a_len),
		*b = mp_stmt_encode(loaded->request, &b_len);
	ck_assert_uint_eq(a_len, b_len);
	ck_assert_mem_eq(a, b, a_len);
	free(a);
	free(b);
	struct wstore_pay *list;
	ck_assert_int_eq(wstore_inflight_list(s, ch->channel_id, &list), 1);
	ck_assert_uint_eq(list[0].j, 9);
	ck_assert_uint_eq(list[0].order_ref_len, 2);
	ck_assert_mem_eq(list[0].w, p2.w, MP_HASH_LEN);
	ck_assert_mem_eq(list[0].order_ref, p2.order_ref, 2);
	free(list);

	/* Activation stores the cert and the times. */
	loaded->cert = mp_stmt_copy(loaded->request);
	loaded->issued_at = 3600;
	loaded->pay_until = 3600 + 86400;
	loaded->redeem_until = loaded->pay_until + 1;
	ck_assert(wstore_channel_activate(s, loaded));
	wallet_channel_free(loaded);
	wstore_close(s);
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	loaded = NULL;
	ck_assert(wstore_channels_load(s, keep, NULL));
	ck_assert_int_eq(loaded->state, WCH_ACTIVE);
	ck_assert_ptr_nonnull(loaded->cert);
	ck_assert_ptr_null(loaded->detail);
	ck_assert_uint_eq(loaded->pay_until, 3600 + 86400);
	wallet_channel_free(loaded);
	wallet_channel_free(ch);
	wstore_close(s);
	mp_key_free(&account);
}
END_TEST

/* The store's connection, caught as SQLite opens it (an automatic extension), so that a test can
 * lower its limits. */
static sqlite3 *opened;

static int catch_connection(sqlite3 *db, const char **msg, const void *api)
{
	opened = db;
	return SQLITE_OK;
}

/* With every blob and string over 8 bytes refused, reading the account key or the in-flight
 * Pays is an error (-1), not "none stored": a wallet told "none" would make a new account key or
 * forget the Pays it must resend. */
START_TEST(failed_bind_is_an_error)
{
	ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))catch_connection), SQLITE_OK);
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	sqlite3_cancel_auto_extension((void (*)(void))catch_connection);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_ptr_nonnull(opened);
	uint8_t seed[MP_SK_LEN], id[MP_ID_LEN] = {7};
	memset(seed, 0xab, sizeof(seed));
	ck_assert(wstore_set_account_seed(s, seed));
	struct wstore_pay pay = {.j = 3, .order_ref = {1}, .order_ref_len = 1};
	ck_assert(wstore_inflight_add(s, id, &pay));

	int limit = sqlite3_limit(opened, SQLITE_LIMIT_LENGTH, 8);
	uint8_t got[MP_SK_LEN];
	ck_assert_int_eq(wstore_account_seed(s, got), -1);
	struct wstore_pay *list = NULL;
	ck_assert_int_eq(wstore_inflight_list(s, id, &list), -1);
	ck_assert_ptr_null(list);
	ck_assert(!wstore_set_account_id(s, id));
	sqlite3_limit(opened, SQLITE_LIMIT_LENGTH, limit);

	ck_assert_int_eq(wstore_account_seed(s, got), 1);
	ck_assert_int_eq(wstore_inflight_list(s, id, &list), 1);
	free(list);
	wstore_close(s);
	opened = NULL;
}
END_TEST

/* ---- the budget of channels buy issues (store_budget.c) ---- */

static int budget_rows;
static uint64_t budget_failed_escrow;

static void count_row(void *arg, const struct wbudget_row *r)
{
	budget_rows++;
	ck_assert_str_eq(r->item, "song");
	ck_assert_uint_eq(r->merchant_id[0], 3);
	if (r->state && !strcmp(r->state, "FAILED"))
		budget_failed_escrow += r->amount;
}

/* A channel and its budget row in one transaction, as buy_budget.c stores them. */
static void insert_with_budget(struct wstore *s, struct wchannel *ch, uint64_t escrow, bool commit)
{
	uint8_t chain_seed[MP_SEED_LEN] = {9}, owner_seed[MP_SK_LEN] = {8}, mid[MP_ID_LEN];
	memset(mid, 3, MP_ID_LEN);
	ck_assert(wstore_begin(s));
	ck_assert(wstore_channel_insert(s, ch, chain_seed, owner_seed));
	ck_assert(wstore_budget_add(s, ch->channel_id, mid, escrow, "song"));
	if (commit)
		ck_assert(wstore_commit(s));
	else
		wstore_rollback(s);
}

START_TEST(budget_is_durable_and_failed_issues_free_it)
{
	uint8_t seed[MP_SK_LEN];
	struct mp_key account;
	ck_assert(mp_key_generate(&account, seed));
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	uint64_t committed = 1;
	ck_assert(wstore_budget_committed(s, &committed));
	ck_assert_uint_eq(committed, 0);
	struct wchannel *a = make_channel(&account), *b = make_channel(&account);
	memset(b->channel_id, 5, MP_ID_LEN);
	memset(b->issue_req_id, 6, MP_ID_LEN);
	insert_with_budget(s, a, 30, true);
	insert_with_budget(s, b, 14, false); /* rolled back: neither the channel nor its row */
	ck_assert_int_eq(wstore_budget_has(s, a->channel_id), 1);
	ck_assert_int_eq(wstore_budget_has(s, b->channel_id), 0);
	insert_with_budget(s, b, 14, true);
	ck_assert(wstore_budget_committed(s, &committed));
	ck_assert_uint_eq(committed, 44);
	/* The broker refused b: its escrow is no longer committed. */
	ck_assert(wstore_channel_set_state(s, b->channel_id, "FAILED", "INSUFFICIENT_FUNDS"));
	ck_assert(wstore_budget_committed(s, &committed));
	ck_assert_uint_eq(committed, 30);
	wstore_close(s);
	/* After a restart: the same rows and sum. */
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(wstore_budget_committed(s, &committed));
	ck_assert_uint_eq(committed, 30);
	budget_rows = 0;
	budget_failed_escrow = 0;
	ck_assert(wstore_budget_each(s, count_row, NULL));
	ck_assert_int_eq(budget_rows, 2);
	ck_assert_uint_eq(budget_failed_escrow, 14);
	wstore_close(s);
	wallet_channel_free(a);
	wallet_channel_free(b);
	mp_key_free(&account);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("walletd store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, private_and_exclusive);
	tcase_add_test(tc, account_round_trip);
	tcase_add_test(tc, channel_and_inflight_survive_restart);
	tcase_add_test(tc, failed_bind_is_an_error);
	tcase_add_test(tc, budget_is_durable_and_failed_issues_free_it);
	tcase_add_test(tc, sqlite_frees_the_seed_unwiped_by_default);
	tcase_add_test(tc, freed_sqlite_memory_is_wiped);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
