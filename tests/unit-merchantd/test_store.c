/* merchantd's store (merchantd/store.c): a batch is one transaction (channel and order records,
 * journalled Pays, the channel row with its last Pay's answer) that a restart finds again; a
 * batch that fails leaves nothing; a store from before the channel row kept its last answer is
 * migrated and converted to incremental auto-vacuum (its journal rows linked into each
 * channel's chain, the old per-row index dropped); a parameter that cannot be bound is an
 * error, never a NULL; the journal's lookups walk each channel's chain (journal_chain.h): with
 * two channels' rows interleaved over many batches, 1- and 7-unit steps and a second segment,
 * every journalled Pay is found by store_find_pay and receipt_store_find and no other,
 * store_word_at_or_above answers as a scan of the rows would for every index, the redemption
 * lag is the first unredeemed row's time, and one row in each block of 64 indices (and each
 * segment's first) is marked. */
#include <check.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receipt_store.h"
#include "stmt.h"
#include "store.h"
#include "store_redeem.h"
#include "journal_chain.h"
#include "../check_run.h"
#include "clock.h"

/* The stores stamp rows with protocol time: a clock at offset 0. */
static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-mstore-XXXXXX"
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
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* A decodable signed ChannelCert (the store never checks its signature: it is our own). */
struct cert {
	uint8_t id[MP_ID_LEN], root[MP_HASH_LEN];
	uint8_t *bytes;
	size_t len;
};

static void make_cert(struct cert *c)
{
	struct mp_key key;
	uint8_t seed[MP_SK_LEN], nonce[MP_NONCE_LEN], holder0[MP_ID_LEN];
	ck_assert(mp_key_generate(&key, seed));
	ck_assert(mp_random_bytes(holder0, MP_ID_LEN));
	ck_assert(mp_random_bytes(c->id, MP_ID_LEN));
	ck_assert(mp_random_bytes(c->root, MP_HASH_LEN));
	ck_assert(mp_random_bytes(nonce, MP_NONCE_LEN));
	Micropay__V1__ChannelCert cc = MICROPAY__V1__CHANNEL_CERT__INIT;
	cc.channel_id = (ProtobufCBinaryData){MP_ID_LEN, c->id};
	cc.chain_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, nonce};
	cc.root = (ProtobufCBinaryData){MP_HASH_LEN, c->root};
	cc.owner_pk = (ProtobufCBinaryData){MP_PK_LEN, key.pk};
	cc.holder0 = (ProtobufCBinaryData){MP_ID_LEN, holder0};
	cc.n = 100;
	cc.unit_value = 1;
	cc.pay_until = 2000000000;
	cc.redeem_until = 2000172800;
	MpSigned *s = mp_stmt_sign(&key, MP_STMT_CHANNEL_CERT, &cc.base);
	ck_assert_ptr_nonnull(s);
	c->bytes = mp_stmt_encode(s, &c->len);
	ck_assert_ptr_nonnull(c->bytes);
	mp_stmt_free(s);
	mp_key_free(&key);
}

static struct batch_entry open_entry(const struct cert *c)
{
	struct batch_entry e = {.kind = ENTRY_OPEN, .insert = true};
	memcpy(e.channel_id, c->id, MP_ID_LEN);
	memcpy(e.row.id, c->id, MP_ID_LEN);
	e.row.cert = c->bytes;
	e.row.cert_len = c->len;
	e.row.state = CHANNEL_HELD;
	memcpy(e.row.w_last, c->root, MP_HASH_LEN);
	e.row.redeem_until = 2000172800;
	return e;
}

static struct batch_entry pay_entry(const struct cert *c, uint32_t j, const uint8_t ref[4],
				    MpCode code, uint64_t credit, uint64_t price)
{
	struct batch_entry e = {.kind = ENTRY_PAY,
				.j = j,
				.order_ref_len = 4,
				.code = code,
				.credit = credit,
				.price = price};
	memcpy(e.channel_id, c->id, MP_ID_LEN);
	memset(e.w, (int)j, MP_HASH_LEN);
	memcpy(e.order_ref, ref, 4);
	return e;
}

static struct batch_entry order_entry(const uint8_t ref[4], uint64_t price)
{
	struct batch_entry e = {.kind = ENTRY_ORDER, .order_ref_len = 4, .price = price};
	memcpy(e.order_ref, ref, 4);
	return e;
}

static unsigned file_mode(const char *p)
{
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_mode & 07777;
}

/* The store (its journal holds paywords) is created 0600 and refused, like a key file, while
 * others may read it or its WAL; nothing is changed then. */
START_TEST(private_store)
{
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_uint_eq(file_mode(path), 0600);
	store_close(s);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_ptr_null(store_open(path, &test_clock, err, sizeof(err)));
	ck_assert_msg(strstr(err, "mode 0644 lets other users read the store: chmod 600"), "%s",
		      err);
	ck_assert_uint_eq(file_mode(path), 0644);
	ck_assert_int_eq(chmod(path, 0600), 0);
	char wal[sizeof(path) + 8];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	FILE *f = fopen(wal, "a");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(chmod(wal, 0660), 0);
	ck_assert_ptr_null(store_open(path, &test_clock, err, sizeof(err)));
	ck_assert_msg(strstr(err, "-wal: mode 0660"), "%s", err);
	ck_assert_int_eq(chmod(wal, 0600), 0);
	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	store_close(s);
}
END_TEST

START_TEST(batch_survives_restart)
{
	struct cert c;
	make_cert(&c);
	const uint8_t ref[4] = {'o', 'r', 'd', '1'};
	struct batch_entry entries[] = {
	    open_entry(&c),
	    order_entry(ref, 5),
	    pay_entry(&c, 2, ref, MP_ST(UNDERPAID), 2, 0),
	    pay_entry(&c, 7, ref, MP_ST(OK), 2, 5),
	};
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(store_commit_batch(s, entries, 4));
	store_close(s);

	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct table channels, orders;
	ck_assert(table_init(&channels, 16) && table_init(&orders, 16));
	ck_assert(store_load_channels(s, &channels));
	ck_assert(store_load_orders(s, &orders));
	struct channel *ch = channel_find(&channels, c.id);
	ck_assert_ptr_nonnull(ch);
	ck_assert(ch->recorded);
	ck_assert_uint_eq(ch->n, 100);
	ck_assert_uint_eq(ch->last, 7);
	ck_assert_uint_eq(ch->durable_last, 7);
	ck_assert_uint_eq(ch->durable_credit, 2);
	ck_assert_int_eq(ch->durable_code, MP_ST(OK));
	ck_assert_uint_eq(ch->durable_price, 5);
	ck_assert_uint_eq(ch->durable_order_ref_len, 4);
	ck_assert_mem_eq(ch->durable_order_ref, ref, 4);
	ck_assert_mem_eq(ch->durable_w, entries[3].w, MP_HASH_LEN);
	struct order *o = order_find(&orders, ref, 4);
	ck_assert_ptr_nonnull(o);
	ck_assert(o->recorded && o->paid && o->paid_durable);
	ck_assert_uint_eq(o->price, 5);
	struct stored_pay sp;
	ck_assert(store_find_pay(s, c.id, 0, 0, 2, &sp));
	ck_assert_int_eq(sp.code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(sp.credit, 2);
	ck_assert_mem_eq(sp.w, entries[2].w, MP_HASH_LEN);
	ck_assert(!store_find_pay(s, c.id, 0, 0, 3, &sp));
	table_free_channels(&channels);
	table_free_orders(&orders);
	store_close(s);
	free(c.bytes);
}
END_TEST

START_TEST(failed_batch_leaves_nothing)
{
	struct cert c;
	make_cert(&c);
	const uint8_t ref[4] = {'o', 'r', 'd', '2'};
	struct batch_entry first[] = {open_entry(&c)};
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(store_commit_batch(s, first, 1));
	/* A Pay, then a second record of the same channel: the batch fails as a whole. */
	struct batch_entry second[] = {pay_entry(&c, 3, ref, MP_ST(UNDERPAID), 3, 0),
				       open_entry(&c)};
	ck_assert(!store_commit_batch(s, second, 2));
	struct stored_pay sp;
	ck_assert(!store_find_pay(s, c.id, 0, 0, 3, &sp));
	/* The connection is usable again: the next batch commits. */
	ck_assert(store_commit_batch(s, second, 1));
	ck_assert(store_find_pay(s, c.id, 0, 0, 3, &sp));
	store_close(s);
	free(c.bytes);
}
END_TEST

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	ck_assert(in && out);
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	ck_assert_int_eq(chmod(to, 0600), 0);
}

static int64_t count_of(struct store *s, const char *sql, const uint8_t id[MP_ID_LEN]);

/* What a process killed now leaves (every batch committed, nothing folded at close): the store
 * and its WAL copied to dir/crash.db, whose path goes to crashed. */
static void crash_copy(char crashed[sizeof(path) + 16])
{
	char from[sizeof(path) + 16 + 8], to[sizeof(from)];
	snprintf(crashed, sizeof(path) + 16, "%s/crash.db", dir);
	copy_file(path, crashed);
	snprintf(from, sizeof(from), "%s-wal", path);
	snprintf(to, sizeof(to), "%s-wal", crashed);
	copy_file(from, to);
}

/* s killed now (crash_copy), closed, and its copy opened: what the next start finds. */
static struct store *crash_and_reopen(struct store *s, char crashed[sizeof(path) + 16])
{
	crash_copy(crashed);
	store_close(s);
	s = store_open(crashed, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	return s;
}

static void crash_remove(const char *crashed)
{
	char p[sizeof(path) + 16 + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", crashed, suffixes[i]);
		unlink(p);
	}
}

/* The channel c as a restart of the store at p loads it (table freed by the caller). */
static struct channel *load_channel(struct store *s, struct table *channels, const struct cert *c)
{
	ck_assert(table_init(channels, 16));
	ck_assert(store_load_channels(s, channels));
	struct channel *ch = channel_find(channels, c->id);
	ck_assert_ptr_nonnull(ch);
	return ch;
}

/* A channel row is written lazily (journal_chain.h): a batch journals its Pays only, until a
 * checkpoint. A crash before it (the files copied as they are after a commit: what a killed
 * process leaves) loses nothing: the next open folds the journal into the row. Meanwhile
 * another connection (the loop's) finds the newest Pay through the head the loop knows, the
 * writer through its own heads, and a new segment's row is not overwritten by an older Pay. */
START_TEST(channel_rows_lag_and_are_recovered)
{
	struct cert c;
	make_cert(&c);
	const uint8_t ref[4] = {'o', 'r', 'd', '3'};
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	/* The first batch checkpoints (none ran before); the second is within JOURNAL_FOLD_MS. */
	struct batch_entry first[] = {open_entry(&c),
				      pay_entry(&c, 2, ref, MP_ST(UNDERPAID), 2, 0)};
	ck_assert(store_commit_batch(s, first, 2));
	/* The loop's connection, open before (an open folds what no checkpoint did). */
	struct store *reader = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(reader != NULL, "%s", err);
	struct batch_entry second[] = {pay_entry(&c, 5, ref, MP_ST(UNDERPAID), 5, 0),
				       pay_entry(&c, 9, ref, MP_ST(OK), 9, 7)};
	ck_assert(store_commit_batch(s, second, 2));
	ck_assert_int_gt(second[1].journal_seq, second[0].journal_seq);
	ck_assert_int_eq(count_of(s, "SELECT last FROM channels WHERE channel_id = ?", c.id), 2);
	struct stored_pay sp;
	ck_assert(store_find_pay(s, c.id, 0, 0, 9, &sp)); /* the writer's own heads */

	ck_assert(!store_find_pay(reader, c.id, 0, 0, 9, &sp)); /* the row's head is behind */
	ck_assert(store_find_pay(reader, c.id, second[1].journal_seq, 0, 9, &sp));
	ck_assert_uint_eq(sp.credit, 9);
	ck_assert(store_find_pay(reader, c.id, second[1].journal_seq, 0, 5, &sp));
	store_close(reader);

	char crashed[sizeof(path) + 16];
	s = crash_and_reopen(s, crashed);
	struct table channels;
	struct channel *ch = load_channel(s, &channels, &c);
	ck_assert_uint_eq(ch->durable_last, 9);
	ck_assert_uint_eq(ch->durable_credit, 9);
	ck_assert_uint_eq(ch->durable_price, 7);
	ck_assert_int_eq(ch->durable_code, MP_ST(OK));
	ck_assert_mem_eq(ch->durable_w, second[1].w, MP_HASH_LEN);
	ck_assert(store_find_pay(s, c.id, 0, 0, 9, &sp));
	/* A Pay after the recovery links to the recovered head. */
	struct batch_entry third[] = {pay_entry(&c, 11, ref, MP_ST(UNDERPAID), 11, 0)};
	ck_assert(store_commit_batch(s, third, 1));
	ck_assert_int_eq(count_of(s,
				  "SELECT prev_seq FROM pay_journal WHERE channel_id = ? "
				  "AND j = 11",
				  c.id),
			 second[1].journal_seq);
	table_free_channels(&channels);
	store_close(s);
	crash_remove(crashed);
	free(c.bytes);
}
END_TEST

static int64_t synced_seq(struct store *s)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(
			     store_db(s), "SELECT value FROM meta WHERE key = 'journal_synced_seq'",
			     -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t rows_at(struct store *s, uint32_t last)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(s),
					    "SELECT count(*) FROM channels WHERE last = ?", -1, &st,
					    NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(st, 1, last);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

#define SPREAD_CHANNELS (2 * JOURNAL_FOLD_PER_BATCH + 76)

/* A fold of more channels than JOURNAL_FOLD_PER_BATCH is spread over the next batches, oldest
 * first; journal_synced_seq stays just below the oldest row left unfolded, and a channel paid
 * again during the fold waits for the next one. The files of a process killed meanwhile
 * reopen with every Pay in its row. */
START_TEST(a_fold_of_many_channels_is_spread_over_batches)
{
	static struct cert c[SPREAD_CHANNELS];
	static struct batch_entry b[2 * SPREAD_CHANNELS];
	const uint8_t ref[4] = {'o', 'r', 'd', '5'};
	for (int i = 0; i < SPREAD_CHANNELS; i++) {
		make_cert(&c[i]);
		b[2 * i] = open_entry(&c[i]);
		b[2 * i + 1] = pay_entry(&c[i], 1, ref, MP_ST(UNDERPAID), 1, 0);
	}
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(store_commit_batch(s, b, 2 * SPREAD_CHANNELS)); /* the first fold starts */
	ck_assert_int_eq(rows_at(s, 1), JOURNAL_FOLD_PER_BATCH);
	ck_assert_int_eq(synced_seq(s), b[2 * JOURNAL_FOLD_PER_BATCH + 1].journal_seq - 1);
	struct batch_entry again[] = {pay_entry(&c[0], 2, ref, MP_ST(UNDERPAID), 2, 0)};
	ck_assert(store_commit_batch(s, again, 1));
	ck_assert_int_eq(rows_at(s, 1), 2 * JOURNAL_FOLD_PER_BATCH);
	struct batch_entry more[] = {pay_entry(&c[1], 2, ref, MP_ST(UNDERPAID), 2, 0)};
	ck_assert(store_commit_batch(s, more, 1)); /* the fold ends; c[0] and c[1] wait */
	ck_assert_int_eq(rows_at(s, 1), SPREAD_CHANNELS);
	ck_assert_int_eq(rows_at(s, 2), 0);
	ck_assert_int_eq(synced_seq(s), again[0].journal_seq - 1);

	char crashed[sizeof(path) + 16];
	s = crash_and_reopen(s, crashed);
	ck_assert_int_eq(rows_at(s, 2), 2);
	ck_assert_int_eq(rows_at(s, 1), SPREAD_CHANNELS - 2);
	store_close(s);
	crash_remove(crashed);
	for (int i = 0; i < SPREAD_CHANNELS; i++)
		free(c[i].bytes);
}
END_TEST

/* The fold when Pays stop (journal_sync.c) goes in parts of a given size, oldest first, each
 * its own transaction; journal_synced_seq follows, and the last part says nothing is left. */
START_TEST(an_idle_fold_goes_in_parts)
{
	static struct cert c[SPREAD_CHANNELS];
	static struct batch_entry b[2 * SPREAD_CHANNELS];
	const uint8_t ref[4] = {'o', 'r', 'd', '6'};
	for (int i = 0; i < SPREAD_CHANNELS; i++) {
		make_cert(&c[i]);
		b[2 * i] = open_entry(&c[i]);
		b[2 * i + 1] = pay_entry(&c[i], 1, ref, MP_ST(UNDERPAID), 1, 0);
	}
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(store_commit_batch(s, b, 2 * SPREAD_CHANNELS)); /* folds the first part */
	ck_assert_int_eq(rows_at(s, 1), JOURNAL_FOLD_PER_BATCH);
	bool more;
	ck_assert(store_sync_heads_some(s, 500, &more));
	ck_assert(more);
	ck_assert_int_eq(rows_at(s, 1), JOURNAL_FOLD_PER_BATCH + 500);
	ck_assert_int_eq(synced_seq(s), b[2 * (JOURNAL_FOLD_PER_BATCH + 500) + 1].journal_seq - 1);
	ck_assert(store_sync_heads_some(s, 500, &more));
	ck_assert(!more);
	ck_assert_int_eq(rows_at(s, 1), SPREAD_CHANNELS);
	ck_assert_int_eq(synced_seq(s), b[2 * SPREAD_CHANNELS - 1].journal_seq);
	ck_assert(store_sync_heads_some(s, 500, &more)); /* nothing left: no transaction */
	ck_assert(!more);
	store_close(s);
	for (int i = 0; i < SPREAD_CHANNELS; i++)
		free(c[i].bytes);
}
END_TEST

/* A store from before lazy channel rows whose compaction deleted the journal's newest rows: a
 * channel row's head_seq names a seq above every row, and SQLite gives that seq again. A Pay
 * of that channel after the upgrade, not yet folded at a crash, is still folded at the next
 * open (review finding: the head_seq comparison alone skipped it). */
START_TEST(upgraded_store_with_a_head_above_the_journal)
{
	struct cert c, d;
	make_cert(&c);
	make_cert(&d);
	const uint8_t ref[4] = {'o', 'r', 'd', '4'};
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct batch_entry open[] = {open_entry(&c), open_entry(&d),
				     pay_entry(&c, 40, ref, MP_ST(UNDERPAID), 40, 0)};
	ck_assert(store_commit_batch(s, open, 3));
	store_close(s); /* folded at close */
	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(store_exec(s, "DELETE FROM pay_journal; UPDATE channels SET head_seq = 5000;"
				"DELETE FROM meta WHERE key = 'journal_synced_seq';"));
	store_close(s);

	s = store_open(path, &test_clock, err, sizeof(err)); /* the upgrade */
	ck_assert_msg(s != NULL, "%s", err);
	struct batch_entry first[] = {pay_entry(&d, 3, ref, MP_ST(UNDERPAID), 3, 0)};
	ck_assert(store_commit_batch(s, first, 1)); /* checkpoints */
	struct batch_entry second[] = {pay_entry(&c, 41, ref, MP_ST(UNDERPAID), 41, 0)};
	ck_assert(store_commit_batch(s, second, 1)); /* does not */
	ck_assert_int_lt(second[0].journal_seq, 5000);
	char crashed[sizeof(path) + 16];
	s = crash_and_reopen(s, crashed);
	struct table channels;
	struct channel *ch = load_channel(s, &channels, &c);
	ck_assert_uint_eq(ch->durable_last, 41);
	ck_assert_uint_eq(ch->durable_credit, 41);
	struct stored_pay sp;
	ck_assert(store_find_pay(s, c.id, 0, 0, 41, &sp));
	table_free_channels(&channels);
	store_close(s);
	crash_remove(crashed);
	free(c.bytes);
	free(d.bytes);
}
END_TEST

/* The schema of the walking skeleton, before the channel row kept its last answer. */
static const char old_schema[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE channels ("
    " channel_id BLOB PRIMARY KEY, cert BLOB NOT NULL, state INTEGER NOT NULL,"
    " hseq INTEGER NOT NULL, seg_seq INTEGER NOT NULL, seg_start INTEGER NOT NULL,"
    " last INTEGER NOT NULL, w_last BLOB NOT NULL, credit INTEGER NOT NULL,"
    " last_order_ref BLOB NOT NULL, redeemed_end INTEGER NOT NULL DEFAULT 0,"
    " redeem_until INTEGER NOT NULL);"
    "CREATE TABLE pay_journal ("
    " seq INTEGER PRIMARY KEY, channel_id BLOB NOT NULL, seg_seq INTEGER NOT NULL,"
    " j INTEGER NOT NULL, w BLOB NOT NULL, order_ref BLOB NOT NULL, code INTEGER NOT NULL,"
    " credit INTEGER NOT NULL, price INTEGER NOT NULL, at INTEGER NOT NULL);"
    "CREATE INDEX pay_journal_channel ON pay_journal (channel_id, j);"
    "CREATE TABLE orders ("
    " order_ref BLOB PRIMARY KEY, price INTEGER NOT NULL, paid INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE redeem_outbox ("
    " redeem_id BLOB PRIMARY KEY, stmt BLOB NOT NULL, created_at INTEGER NOT NULL,"
    " answered_at INTEGER);";

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
		      msg ? msg : "?");
}

static int pragma(const char *name)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA %s", name);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	ck_assert_int_eq(chmod(path, 0600), 0); /* sqlite3_open created it under the umask */
	return v;
}

START_TEST(old_store_is_migrated)
{
	struct cert c;
	make_cert(&c);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode=WAL");
	exec_ok(db, old_schema);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "INSERT INTO channels VALUES (?, ?, 1, 0, 0, 0, 3, "
					    "zeroblob(32), 1, x'6f726431', 0, 2000172800)",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, c.id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, c.bytes, (int)c.len, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	for (int j = 1; j <= 3; j++) {
		ck_assert_int_eq(
		    sqlite3_prepare_v2(db,
				       "INSERT INTO pay_journal (channel_id, seg_seq, j, w, "
				       "order_ref, code, credit, price, at) VALUES (?, 0, ?, "
				       "zeroblob(32), x'6f726431', ?, ?, ?, 1)",
				       -1, &st, NULL),
		    SQLITE_OK);
		sqlite3_bind_blob(st, 1, c.id, MP_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, j);
		sqlite3_bind_int(st, 3, j == 3 ? MP_ST(OK) : MP_ST(UNDERPAID));
		sqlite3_bind_int(st, 4, j == 3 ? 1 : j);
		sqlite3_bind_int(st, 5, j == 3 ? 2 : 0);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	ck_assert_int_eq(pragma("auto_vacuum"), 0);

	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct table channels;
	ck_assert(table_init(&channels, 16));
	ck_assert(store_load_channels(s, &channels));
	struct channel *ch = channel_find(&channels, c.id);
	ck_assert_ptr_nonnull(ch);
	ck_assert_uint_eq(ch->durable_last, 3);
	ck_assert_int_eq(ch->durable_code, MP_ST(OK)); /* from the journal row of j = 3 */
	ck_assert_uint_eq(ch->durable_price, 2);
	ck_assert_uint_eq(ch->durable_credit, 1);
	struct stored_pay sp;
	for (uint32_t j = 1; j <= 3; j++) { /* the old rows, through the chain */
		ck_assert(store_find_pay(s, c.id, 0, 0, j, &sp));
		ck_assert_uint_eq(sp.credit, j == 3 ? 1 : j);
	}
	ck_assert(!store_find_pay(s, c.id, 0, 0, 4, &sp));
	sqlite3_stmt *idx;
	ck_assert_int_eq(
	    sqlite3_prepare_v2(store_db(s),
			       "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
			       "AND name = 'pay_journal_channel'",
			       -1, &idx, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(idx), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(idx, 0), 0);
	sqlite3_finalize(idx);
	table_free_channels(&channels);
	store_close(s);
	ck_assert_int_eq(pragma("auto_vacuum"), 2); /* incremental */
	free(c.bytes);
}
END_TEST

/* Channel c's journal in this test: j by steps of 1 and 7, segment 1 from CHAIN_SEG1_AT. */
#define CHAIN_TOP     400
#define CHAIN_SEG1_AT 250
#define CHAIN_BATCH   9

static bool chain_paid(uint32_t j)
{
	/* 1..99 every index, then every seventh: both dense blocks and blocks with few rows */
	return j >= 1 && j <= CHAIN_TOP && (j < 100 || j % 7 == 0);
}

static uint32_t chain_seg(uint32_t j)
{
	return j >= CHAIN_SEG1_AT ? 1 : 0;
}

static int64_t count_of(struct store *s, const char *sql, const uint8_t id[MP_ID_LEN])
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* Commits c's Pays (and one of d's after each) in batches of CHAIN_BATCH, the protocol time
 * one second later for each batch; the first batch's time in *first_at. */
static void chain_commit(struct store *s, const struct cert *c, const struct cert *d,
			 uint64_t *first_at)
{
	const uint8_t ref[4] = {'o', 'r', 'd', '1'};
	struct batch_entry open[2] = {open_entry(c), open_entry(d)};
	ck_assert(store_commit_batch(s, open, 2));
	struct batch_entry b[2 * CHAIN_BATCH];
	size_t n = 0;
	*first_at = 0;
	for (uint32_t j = 1; j <= CHAIN_TOP + 1; j++) {
		if (chain_paid(j)) {
			b[n] = pay_entry(c, j, ref, MP_ST(UNDERPAID), j, 0);
			b[n].seg_seq = chain_seg(j);
			b[n + 1] = pay_entry(d, j, ref, MP_ST(UNDERPAID), j, 0);
			n += 2;
		}
		if (n == 2 * CHAIN_BATCH || (j == CHAIN_TOP + 1 && n)) {
			if (!*first_at)
				*first_at = mp_clock_now(&test_clock);
			ck_assert(store_commit_batch(s, b, n));
			atomic_fetch_add(&test_clock.offset, 1);
			n = 0;
		}
	}
}

/* The redemption lag over the channels as a restart loads them. */
static uint64_t oldest_unredeemed(struct store *s)
{
	struct table channels;
	ck_assert(store_sync_heads(s));
	ck_assert(table_init(&channels, 16));
	ck_assert(store_load_channels(s, &channels));
	uint64_t oldest = 0;
	ck_assert(store_load_unredeemed_since(s, &channels));
	TABLE_FOREACH(&channels, struct channel, ch)
	{
		uint64_t at = ch->unredeemed_since;
		if (ch->durable_last > ch->redeemed_end && at && (!oldest || at < oldest))
			oldest = at;
	}
	table_free_channels(&channels);
	return oldest;
}

START_TEST(journal_lookups_walk_the_chain)
{
	struct cert c, d;
	make_cert(&c);
	make_cert(&d);
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	uint64_t first_at;
	chain_commit(s, &c, &d, &first_at);
	struct channel loop_c = {0}; /* as the loop holds it, its journal head unknown */
	memcpy(loop_c.id, c.id, MP_ID_LEN);
	struct stored_pay sp;
	struct journalled_pay jp;
	for (uint32_t j = 0; j <= CHAIN_TOP + 2; j++) {
		for (uint32_t seg = 0; seg <= 1; seg++) {
			if (seg != chain_seg(j) && j % 5) /* the other segment: a sample */
				continue;
			bool here = chain_paid(j) && chain_seg(j) == seg;
			ck_assert_msg(store_find_pay(s, c.id, 0, seg, j, &sp) == here,
				      "j %u seg %u", j, seg);
			ck_assert(receipt_store_find(s, c.id, 0, seg, j, &jp) == here);
			if (here) {
				ck_assert_uint_eq(sp.credit, j);
				ck_assert_uint_eq(sp.w[0], (uint8_t)j);
				ck_assert_uint_eq(jp.w[0], (uint8_t)j);
			}
			uint32_t want = 0, got = 0;
			uint8_t w[MP_HASH_LEN];
			for (uint32_t k = j; k <= CHAIN_TOP && !want; k++)
				if (chain_paid(k) && chain_seg(k) == seg)
					want = k;
			bool found = store_word_at_or_above(s, &loop_c, seg, j, &got, w);
			ck_assert_msg(found == (want != 0) && got == want,
				      "word at or above %u in segment %u: %u, expected %u", j, seg,
				      got, want);
		}
	}
	/* Marks: the first row of each block of 64 indices and of each segment. */
	int64_t blocks = 0;
	for (uint32_t j = 1, last = UINT32_MAX; j <= CHAIN_TOP; j++)
		if (chain_paid(j)) {
			uint32_t key = chain_seg(j) * 1000 + j / 64;
			blocks += key != last;
			last = key;
		}
	ck_assert_int_eq(
	    count_of(s, "SELECT count(*) FROM pay_journal WHERE channel_id = ? AND mark = 1", c.id),
	    blocks);
	uint64_t oldest = oldest_unredeemed(s);
	ck_assert_uint_eq(oldest, first_at);
	/* Redeemed up to 150: the lag is the time of the batch that journalled 154. */
	ck_assert(store_exec(s, "UPDATE channels SET redeemed_end = 150"));
	oldest = oldest_unredeemed(s);
	ck_assert_uint_gt(oldest, first_at);
	ck_assert_int_eq(
	    count_of(s, "SELECT at FROM pay_journal WHERE channel_id = ? AND j = 154", c.id),
	    (int64_t)oldest);
	store_close(s);
	free(c.bytes);
	free(d.bytes);
}
END_TEST

/* A parameter SQLite cannot bind (here: blobs over the connection's length limit) fails the
 * statement instead of running it with NULL there, which matched no row and reported success. */
START_TEST(failed_bind_is_an_error)
{
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct cert c;
	make_cert(&c);
	struct batch_entry e = open_entry(&c);
	ck_assert(store_commit_batch(s, &e, 1));
	uint8_t rid[MP_ID_LEN], stmt[40] = {1};
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	ck_assert(store_outbox_put(s, rid, stmt, sizeof(stmt)));

	int limit = sqlite3_limit(store_db(s), SQLITE_LIMIT_LENGTH, MP_ID_LEN - 1);
	struct redeemed_claim claim = {.credited_end = 5};
	memcpy(claim.channel_id, c.id, MP_ID_LEN);
	ck_assert_msg(!store_outbox_answered(s, rid, &claim, 1),
		      "answered reported although nothing could be bound");
	ck_assert(!store_meta_put(s, "k", rid, MP_ID_LEN));
	sqlite3_limit(store_db(s), SQLITE_LIMIT_LENGTH, limit);

	uint8_t next_id[MP_ID_LEN], *bytes = NULL;
	size_t len = 0;
	ck_assert(store_outbox_next(s, next_id, &bytes, &len)); /* still unanswered */
	ck_assert_mem_eq(next_id, rid, MP_ID_LEN);
	free(bytes);
	ck_assert(store_outbox_answered(s, rid, &claim, 1));
	ck_assert(!store_outbox_next(s, next_id, &bytes, &len));
	store_close(s);
	free(c.bytes);
}
END_TEST

START_TEST(new_store_is_incremental)
{
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	store_close(s);
	ck_assert_int_eq(pragma("auto_vacuum"), 2);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("merchantd store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, private_store);
	tcase_add_test(tc, batch_survives_restart);
	tcase_add_test(tc, failed_batch_leaves_nothing);
	tcase_add_test(tc, channel_rows_lag_and_are_recovered);
	tcase_add_test(tc, upgraded_store_with_a_head_above_the_journal);
	tcase_add_test(tc, a_fold_of_many_channels_is_spread_over_batches);
	tcase_add_test(tc, an_idle_fold_goes_in_parts);
	tcase_add_test(tc, old_store_is_migrated);
	tcase_add_test(tc, new_store_is_incremental);
	tcase_add_test(tc, failed_bind_is_an_error);
	suite_add_tcase(s, tc);
	/* Hundreds of lookups: seconds under the sanitizers, more under valgrind. */
	TCase *chain = tcase_create("journal chain");
	tcase_add_checked_fixture(chain, setup, teardown);
	tcase_set_timeout(chain, 120);
	tcase_add_test(chain, journal_lookups_walk_the_chain);
	suite_add_tcase(s, chain);
	return s;
}

int main(void)
{
	return mp_check_run(store_suite());
}
