/* merchantd's stored segments (merchantd/segment_store.c): a Cap committed in a batch (after
 * the channel's Pays) stores the pair, moves the channel row to the new segment's base point and
 * writes an outbox row; a restart loads the channel in that segment with its pairs; Pays after
 * the Cap in the same batch move the row on; a row naming a segment whose pair is missing stops
 * the load; outbox rows are counted, found in order and marked. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "segment_store.h"
#include "stmt.h"
#include "store.h"
#include "../check_run.h"
#include "clock.h"

/* The stores stamp rows with protocol time: a clock at offset 0. */
static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-mseg-XXXXXX"
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

struct cert {
	uint8_t id[MP_ID_LEN], root[MP_HASH_LEN], owner[MP_PK_LEN];
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
	memcpy(c->owner, key.pk, MP_PK_LEN);
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

static struct batch_entry pay_entry(const struct cert *c, uint32_t seg, uint32_t j)
{
	static const uint8_t ref[4] = {1, 2, 3, 4};
	struct batch_entry e = {.kind = ENTRY_PAY,
				.seg_seq = seg,
				.j = j,
				.order_ref_len = 4,
				.code = MP_ST(UNDERPAID),
				.credit = j};
	memcpy(e.channel_id, c->id, MP_ID_LEN);
	memset(e.w, (int)j, MP_HASH_LEN);
	memcpy(e.order_ref, ref, 4);
	return e;
}

/* Pair seg (the store keeps the bytes as they are: any will do here). */
static void make_row(struct segment_row *r, uint32_t seg, uint32_t start)
{
	memset(r, 0, sizeof(*r));
	r->seg_seq = seg;
	r->start = start;
	r->len = 100 - start;
	r->declared_last = start;
	ck_assert(mp_random_bytes(r->nonce, MP_NONCE_LEN));
	ck_assert(mp_random_bytes(r->root, MP_HASH_LEN));
	ck_assert(mp_random_bytes(r->owner_pk, MP_PK_LEN));
	ck_assert(mp_random_bytes(r->transfer_hash, MP_HASH_LEN));
	ck_assert(mp_random_bytes(r->w_cap, MP_HASH_LEN));
	r->transfer_len = 40;
	r->cap_len = 30;
	r->transfer = malloc(r->transfer_len);
	r->cap = malloc(r->cap_len);
	ck_assert(r->transfer && r->cap);
	memset(r->transfer, 0x70 + (int)seg, r->transfer_len);
	memset(r->cap, 0x80 + (int)seg, r->cap_len);
}

static struct batch_entry cap_entry(const struct cert *c, struct segment_row *r)
{
	struct batch_entry e = {.kind = ENTRY_CAP, .seg = r};
	memcpy(e.channel_id, c->id, MP_ID_LEN);
	return e;
}

static struct channel *load_one(struct store *s, struct table *t, const struct cert *c)
{
	ck_assert(table_init(t, 16));
	ck_assert(store_load_channels(s, t));
	struct channel *ch = channel_find(t, c->id);
	ck_assert_ptr_nonnull(ch);
	return ch;
}

START_TEST(cap_moves_the_channel_and_survives_restart)
{
	struct cert c;
	make_cert(&c);
	struct segment_row r1, r2;
	make_row(&r1, 1, 3);
	make_row(&r2, 2, 5);
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	/* Pays of segment 0 before the Cap leave the row to it; a Pay after it moves it on. */
	struct batch_entry first[] = {open_entry(&c), pay_entry(&c, 0, 2), pay_entry(&c, 0, 3),
				      cap_entry(&c, &r1), pay_entry(&c, 1, 4)};
	ck_assert(store_commit_batch(s, first, 5));
	ck_assert_int_eq(cap_outbox_count(s, CAP_OUTBOX_PENDING), 1);
	struct batch_entry second[] = {cap_entry(&c, &r2)};
	ck_assert(store_commit_batch(s, second, 1));
	ck_assert_int_eq(cap_outbox_count(s, CAP_OUTBOX_PENDING), 2);
	store_close(s);

	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct table t;
	struct channel *ch = load_one(s, &t, &c);
	ck_assert_uint_eq(ch->seg_seq, 2);
	ck_assert_uint_eq(ch->seg_start, 5);
	ck_assert_uint_eq(ch->durable_seg, 2);
	ck_assert_uint_eq(ch->last, 5);
	ck_assert_uint_eq(ch->credit, 0);
	ck_assert_mem_eq(ch->w_last, r2.root, MP_HASH_LEN);
	ck_assert_mem_eq(ch->root, r2.root, MP_HASH_LEN);
	ck_assert_mem_eq(ch->nonce, r2.nonce, MP_NONCE_LEN);
	ck_assert_mem_eq(ch->owner_pk, r2.owner_pk, MP_PK_LEN);
	ck_assert_mem_eq(ch->seg_head, r2.transfer_hash, MP_HASH_LEN);
	ck_assert_mem_eq(ch->owner0_pk, c.owner, MP_PK_LEN);
	ck_assert_mem_eq(ch->segs[0].cap, r1.cap, r1.cap_len);
	ck_assert_mem_eq(ch->segs[1].transfer, r2.transfer, r2.transfer_len);
	ck_assert_uint_eq(ch->segs[0].start, 3);
	ck_assert_mem_eq(ch->segs[0].w_cap, r1.w_cap, MP_HASH_LEN);
	ck_assert_mem_eq(channel_segment_owner(ch, 1), r1.owner_pk, MP_PK_LEN);
	ck_assert_ptr_null(channel_segment_owner(ch, 3));
	struct stored_pay sp;
	ck_assert(store_find_pay(s, c.id, 0, 1, 4, &sp));
	ck_assert(!store_find_pay(s, c.id, 0, 0, 4, &sp)); /* by segment */

	/* The outbox in order; a marked row is no longer pending. */
	uint8_t id[MP_ID_LEN];
	uint32_t seg;
	int64_t rowid;
	ck_assert(cap_outbox_next(s, 0, id, &seg, &rowid));
	ck_assert_uint_eq(seg, 1);
	ck_assert_mem_eq(id, c.id, MP_ID_LEN);
	ck_assert(cap_outbox_mark(s, id, 1, CAP_OUTBOX_DELIVERED, "OK"));
	ck_assert(cap_outbox_next(s, 0, id, &seg, &rowid));
	ck_assert_uint_eq(seg, 2);
	ck_assert(!cap_outbox_next(s, rowid, id, &seg, &rowid));
	ck_assert(cap_outbox_mark(s, id, 2, CAP_OUTBOX_CONFLICT, "another Cap"));
	ck_assert_int_eq(cap_outbox_count(s, CAP_OUTBOX_PENDING), 0);
	ck_assert_int_eq(cap_outbox_count(s, CAP_OUTBOX_CONFLICT), 1);
	table_free_channels(&t);
	store_close(s);
	segment_row_clear(&r1);
	segment_row_clear(&r2);
	free(c.bytes);
}
END_TEST

/* A Pay after the Cap in the same batch: the row ends at that Pay, in the new segment. */
START_TEST(pay_after_cap_in_one_batch)
{
	struct cert c;
	make_cert(&c);
	struct segment_row r1;
	make_row(&r1, 1, 0);
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct batch_entry e[] = {open_entry(&c), cap_entry(&c, &r1), pay_entry(&c, 1, 2)};
	ck_assert(store_commit_batch(s, e, 3));
	store_close(s);
	s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct table t;
	struct channel *ch = load_one(s, &t, &c);
	ck_assert_uint_eq(ch->seg_seq, 1);
	ck_assert_uint_eq(ch->seg_start, 0);
	ck_assert_uint_eq(ch->last, 2);
	ck_assert_uint_eq(ch->credit, 2);
	table_free_channels(&t);
	store_close(s);
	segment_row_clear(&r1);
	free(c.bytes);
}
END_TEST

/* A channel row naming a segment whose pair is not stored: the store refuses to load. */
START_TEST(missing_pair_stops_the_load)
{
	struct cert c;
	make_cert(&c);
	struct segment_row r1;
	make_row(&r1, 1, 3);
	struct store *s = store_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct batch_entry e[] = {open_entry(&c), cap_entry(&c, &r1)};
	ck_assert(store_commit_batch(s, e, 2));
	ck_assert_int_eq(
	    sqlite3_exec(store_db(s), "UPDATE channels SET seg_seq = 2", NULL, NULL, NULL),
	    SQLITE_OK);
	struct table t;
	ck_assert(table_init(&t, 16));
	ck_assert(!store_load_channels(s, &t));
	table_free_channels(&t);
	store_close(s);
	segment_row_clear(&r1);
	free(c.bytes);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("merchantd_segment_store");
	TCase *tc = tcase_create("segment_store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, cap_moves_the_channel_and_survives_restart);
	tcase_add_test(tc, pay_after_cap_in_one_batch);
	tcase_add_test(tc, missing_pair_stops_the_load);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
