/* Transfer/Cap pairs in custody chains (common/custody_segments.c, mp_custody_verify_all).
 * A channel of n = 100 held by M1: A transfers to B at index 20 (Cap 1 by M1 in epoch 0), M1
 * hands off to M2 at index 30 of B's segment, B transfers to C at index 40 (Cap 2 by M2 in
 * epoch 1). Then every rule of a pair broken one at a time, each with its typed result. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody.h"
#include "stmt.h"
#include "util.h"
#include "../check_run.h"

#define N 100

static struct mp_hasher *hasher;
static struct mp_key owner[3]; /* A, B, C: the owners of segments 0, 1, 2 */
static struct mp_key mkey[3];  /* M1, M2 at 1, 2 */
static uint8_t mid[3][MP_ID_LEN];
static uint8_t seed[3][MP_SEED_LEN], nonce[3][MP_NONCE_LEN];
static uint32_t len[3] = {N, 80, 60};
static uint8_t cert_hash[MP_HASH_LEN], chan_id[MP_ID_LEN];
static struct mp_custody_segment seg0;
static struct mp_custody_channel ch;
static const uint64_t key_until = 1800000000;

/* Absolute index j of segment s (start c) is u_{j-c} of that segment's chain. */
static void word(int s, uint32_t c, uint32_t j, uint8_t out[MP_HASH_LEN])
{
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(hasher, seed[s], nonce[s], top);
	mp_chain_walk(hasher, nonce[s], len[s], top, j - c, out);
}

static bool lookup_key(void *arg, const uint8_t merchant_id[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	(void)arg;
	ck_assert_uint_eq(valid_until, key_until);
	for (int m = 1; m <= 2; m++)
		if (memcmp(merchant_id, mid[m], MP_ID_LEN) == 0) {
			memcpy(pk, mkey[m].pk, MP_PK_LEN);
			return true;
		}
	return false;
}

/* What the test means to sign; the valid scenario comes from specs_init. */
struct tspec {
	const struct mp_key *signer;
	uint32_t seg, holder_epoch, declared_last, new_len;
	int to; /* owner number */
	uint8_t prev[MP_HASH_LEN];
};
struct cspec {
	const struct mp_key *signer;
	uint32_t seg, hseq, index, point_seg;
	uint8_t w[MP_HASH_LEN];
	bool bad_transfer_hash;
};
static struct tspec tsp[2];
static struct cspec csp[2];
static MpSigned *stmts[4]; /* Transfer 1, Cap 1, Transfer 2, Cap 2 */
static MpSigned *handoff;  /* Handoff 1: M1 -> M2 at (1, 30) */
static uint32_t handoff_seg = 1, handoff_index = 30;

static MpSigned *build_transfer(const struct tspec *t)
{
	Micropay__V1__Transfer m = MICROPAY__V1__TRANSFER__INIT;
	uint8_t root[MP_HASH_LEN];
	word(t->to, 0, 0, root);
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, chan_id};
	m.new_seg_seq = t->seg;
	m.holder_epoch = t->holder_epoch;
	m.declared_last = t->declared_last;
	m.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, owner[t->to].pk};
	m.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, nonce[t->to]};
	m.new_root = (ProtobufCBinaryData){MP_HASH_LEN, root};
	m.new_len = t->new_len;
	m.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)t->prev};
	m.valid_until = 1700000000;
	MpSigned *s = mp_stmt_sign(t->signer, MP_STMT_TRANSFER, &m.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

static MpSigned *build_cap(const struct cspec *c, const MpSigned *transfer)
{
	Micropay__V1__Cap m = MICROPAY__V1__CAP__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	uint8_t th[MP_HASH_LEN];
	mp_stmt_hash(transfer, th);
	th[0] ^= c->bad_transfer_hash;
	pt.seg_seq = c->point_seg;
	pt.index = c->index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)c->w};
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, chan_id};
	m.new_seg_seq = c->seg;
	m.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, th};
	m.hseq = c->hseq;
	m.point = &pt;
	MpSigned *s = mp_stmt_sign(c->signer, MP_STMT_CAP, &m.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

static MpSigned *build_handoff(const uint8_t head[MP_HASH_LEN])
{
	Micropay__V1__Handoff m = MICROPAY__V1__HANDOFF__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	static uint8_t move_hash[MP_HASH_LEN] = {0x4d};
	uint8_t w[MP_HASH_LEN];
	word(handoff_seg, handoff_seg ? 20 : 0, handoff_index, w);
	pt.seg_seq = handoff_seg;
	pt.index = handoff_index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w};
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, chan_id};
	m.hseq = 1;
	m.from_mid = (ProtobufCBinaryData){MP_ID_LEN, mid[1]};
	m.to_mid = (ProtobufCBinaryData){MP_ID_LEN, mid[2]};
	m.point = &pt;
	m.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)head};
	m.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, cert_hash};
	m.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	MpSigned *s = mp_stmt_sign(&mkey[1], MP_STMT_HANDOFF, &m.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void free_all(void)
{
	for (int i = 0; i < 4; i++)
		mp_stmt_free(stmts[i]), stmts[i] = NULL;
	mp_stmt_free(handoff), handoff = NULL;
}

/* Sign everything from the specs; prev_seg_hash of Transfer 2 follows Transfer 1 as built. */
static void build_all(void)
{
	free_all();
	stmts[0] = build_transfer(&tsp[0]);
	stmts[1] = build_cap(&csp[0], stmts[0]);
	uint8_t h1[MP_HASH_LEN];
	mp_stmt_hash(stmts[0], h1);
	memcpy(tsp[1].prev, h1, MP_HASH_LEN);
	stmts[2] = build_transfer(&tsp[1]);
	stmts[3] = build_cap(&csp[1], stmts[2]);
	handoff = build_handoff(h1);
}

static void specs_init(void)
{
	tsp[0] = (struct tspec){&owner[0], 1, 0, 20, 80, 1, {0}};
	memcpy(tsp[0].prev, cert_hash, MP_HASH_LEN);
	tsp[1] = (struct tspec){&owner[1], 2, 1, 40, 60, 2, {0}};
	csp[0] = (struct cspec){&mkey[1], 1, 0, 20, 0, {0}, false};
	word(0, 0, 20, csp[0].w);
	csp[1] = (struct cspec){&mkey[2], 2, 1, 40, 1, {0}, false};
	word(1, 20, 40, csp[1].w);
	handoff_seg = 1, handoff_index = 30;
}

static void setup(void)
{
	hasher = mp_hasher_new();
	ck_assert_ptr_nonnull(hasher);
	for (int i = 0; i < 3; i++) {
		uint8_t sk[MP_SK_LEN];
		memset(sk, 0x10 + i, sizeof(sk));
		ck_assert(mp_key_from_seed(&owner[i], sk));
		memset(sk, 0x30 + i, sizeof(sk));
		ck_assert(mp_key_from_seed(&mkey[i], sk));
		memset(mid[i], 0xa0 + i, MP_ID_LEN);
		memset(seed[i], 0x50 + i, MP_SEED_LEN);
		memset(nonce[i], 0x70 + i, MP_NONCE_LEN);
	}
	memset(cert_hash, 0xce, sizeof(cert_hash));
	memset(chan_id, 0xc1, sizeof(chan_id));
	seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = N};
	memcpy(seg0.nonce, nonce[0], MP_NONCE_LEN);
	word(0, 0, 0, seg0.root);
	memcpy(seg0.head, cert_hash, MP_HASH_LEN);
	memcpy(seg0.owner_pk, owner[0].pk, MP_PK_LEN);
	ch = (struct mp_custody_channel){
	    .n = N, .key_valid_until = key_until, .segments = &seg0, .n_segments = 1};
	memcpy(ch.channel_id, chan_id, MP_ID_LEN);
	memcpy(ch.cert_hash, cert_hash, MP_HASH_LEN);
	memcpy(ch.holder0, mid[1], MP_ID_LEN);
	specs_init();
	build_all();
}

static void teardown(void)
{
	free_all();
	for (int i = 0; i < 3; i++)
		mp_key_free(&owner[i]), mp_key_free(&mkey[i]);
	mp_hasher_free(hasher);
}

static struct mp_custody_event events[3];
static struct mp_custody_segment segs[MP_MAX_SEGMENTS];
static struct mp_custody_cap caps[MP_MAX_SEGMENTS];
static struct mp_custody_result res;

static enum mp_custody_rule run(size_t n_handoffs, size_t n_stmts)
{
	struct mp_custody_evidence ev = {&handoff, n_handoffs, stmts, n_stmts};
	return mp_custody_verify_all(&ch, &ev, lookup_key, NULL, hasher, NULL, events, segs, caps,
				     &res);
}

static void expect(enum mp_custody_rule rule, uint32_t seg, const char *detail_part)
{
	build_all();
	ck_assert_msg(run(1, 4) == rule, "got %s (%s), want %s", mp_custody_rule_name(res.rule),
		      res.detail, mp_custody_rule_name(rule));
	ck_assert_uint_eq(res.seg_seq, seg);
	ck_assert_msg(strstr(res.detail, detail_part), "detail '%s' lacks '%s'", res.detail,
		      detail_part);
}

START_TEST(valid_two_transfers_around_a_handoff)
{
	ck_assert_int_eq(run(1, 4), MP_CUSTODY_OK);
	ck_assert_str_eq(res.detail, "1 handoffs and 2 transfers verified");
	ck_assert_mem_eq(events[1].merchant_id, mid[2], MP_ID_LEN);
	static const uint32_t start[3] = {0, 20, 40};
	for (uint32_t s = 0; s < 3; s++) {
		ck_assert_uint_eq(segs[s].seg_seq, s);
		ck_assert_uint_eq(segs[s].start, start[s]);
		ck_assert_uint_eq(segs[s].len, len[s]);
		ck_assert_mem_eq(segs[s].owner_pk, owner[s].pk, MP_PK_LEN);
		ck_assert(segs[s].capped == (s < 2));
	}
	ck_assert_uint_eq(mp_custody_segment_end(&segs[0], N), 20);
	ck_assert_uint_eq(mp_custody_segment_end(&segs[1], N), 40);
	ck_assert_uint_eq(mp_custody_segment_end(&segs[2], N), N);
	uint8_t h2[MP_HASH_LEN];
	mp_stmt_hash(stmts[2], h2);
	ck_assert_mem_eq(segs[2].head, h2, MP_HASH_LEN);
	ck_assert_uint_eq(caps[0].hseq, 0);
	ck_assert_mem_eq(caps[0].holder, mid[1], MP_ID_LEN);
	ck_assert_uint_eq(caps[1].hseq, 1);
	ck_assert_mem_eq(caps[1].holder, mid[2], MP_ID_LEN);
	ck_assert_uint_eq(caps[1].point.index, 40);
	/* Points: C's chain from index 40; A's segment ends at its cap. */
	struct mp_custody_point pt = {.seg_seq = 2, .index = 50};
	word(2, 40, 50, pt.w);
	ck_assert_int_eq(mp_custody_point_verify(&segs[2], NULL, 0, &pt, hasher, NULL, NULL),
			 MP_POINT_VALID);
	pt = (struct mp_custody_point){.seg_seq = 0, .index = 30};
	word(0, 0, 30, pt.w);
	ck_assert_int_eq(mp_custody_point_verify(&segs[0], NULL, 0, &pt, hasher, NULL, NULL),
			 MP_POINT_INVALID);
	/* A prefix: Transfer 1 alone, before any Handoff. */
	ck_assert_int_eq(run(0, 2), MP_CUSTODY_OK);
}
END_TEST

START_TEST(transfer_rules)
{
	tsp[0].signer = &owner[1];
	expect(MP_CUSTODY_SIGNER, 1, "transfer 1: signer_pk");
	specs_init();
	tsp[0].prev[0] ^= 1;
	expect(MP_CUSTODY_PREV_SEG_HASH, 1, "not the head of segment 0");
	specs_init();
	tsp[0].seg = 2;
	expect(MP_CUSTODY_SEG_SEQ, 1, "new_seg_seq 2");
	specs_init();
	tsp[0].new_len = 79;
	expect(MP_CUSTODY_TRANSFER_SHORT, 1, "new_len 79");
	specs_init();
	tsp[1].signer = &owner[0]; /* A signing for B's segment */
	expect(MP_CUSTODY_SIGNER, 2, "transfer 2: signer_pk");
}
END_TEST

START_TEST(cap_rules)
{
	csp[0].signer = &mkey[2];
	expect(MP_CUSTODY_SIGNER, 1, "cap 1: signer_pk");
	specs_init();
	csp[0].w[0] ^= 1;
	expect(MP_CUSTODY_W_CAP, 1, "does not verify in segment 0");
	specs_init();
	csp[0].index = 21; /* above declared_last 20 */
	word(0, 0, 21, csp[0].w);
	expect(MP_CUSTODY_CAP_RANGE, 1, "above declared_last 20");
	specs_init();
	csp[0].bad_transfer_hash = true;
	expect(MP_CUSTODY_CAP_LINK, 1, "does not link");
	specs_init();
	tsp[0].holder_epoch = 1;
	expect(MP_CUSTODY_CAP_LINK, 1, "does not link");
	specs_init();
	csp[1].point_seg = 0;
	expect(MP_CUSTODY_SEG_SEQ, 2, "point in segment 0");
	specs_init();
	csp[1].hseq = 0; /* Cap 2 claims epoch 0 (M1's), signed by M2 */
	expect(MP_CUSTODY_SIGNER, 2, "cap 2: signer_pk");
}
END_TEST

START_TEST(order_rules)
{
	/* Cap 1 claims epoch 1: the Handoff in B's segment comes before any Cap made it exist. */
	csp[0].hseq = 1, csp[0].signer = &mkey[2];
	expect(MP_CUSTODY_SEGMENT_ORDER, 0, "the latest is 0");
	/* A Handoff in A's segment after the Cap that ended it. */
	specs_init();
	handoff_seg = 0, handoff_index = 20;
	expect(MP_CUSTODY_SEGMENT_ORDER, 0, "the latest is 1");
	/* Pairs alone whose Cap names an epoch the chain does not reach. */
	specs_init();
	build_all();
	ck_assert_int_eq(run(0, 4), MP_CUSTODY_CAP_EPOCH);
	ck_assert_uint_eq(res.seg_seq, 2);
	/* Not pairs; too many pairs (before anything else). */
	ck_assert_int_eq(run(1, 3), MP_CUSTODY_SEGMENTS_ODD);
	MpSigned *many[2 * MP_MAX_SEGMENTS] = {0};
	struct mp_custody_evidence ev = {&handoff, 1, many, 2 * MP_MAX_SEGMENTS};
	ck_assert_int_eq(mp_custody_verify_all(&ch, &ev, lookup_key, NULL, hasher, NULL, events,
					       segs, caps, &res),
			 MP_CUSTODY_TOO_MANY);
}
END_TEST

/* A channel issued without holder0 and transferred through the broker before any Bind: the
 * broker's Cap at index 0 starts B's segment; elsewhere a broker's Cap is refused. */
START_TEST(broker_cap_of_an_unbound_channel)
{
	struct mp_key broker;
	uint8_t sk[MP_SK_LEN];
	memset(sk, 0x99, sizeof(sk));
	ck_assert(mp_key_from_seed(&broker, sk));
	tsp[0].declared_last = 0, tsp[0].new_len = N;
	len[1] = N;
	csp[0].signer = &broker, csp[0].index = 0;
	word(0, 0, 0, csp[0].w);
	build_all();
	/* Not issued unbound: the broker is not the holder of epoch 0. */
	ck_assert_int_eq(run(0, 2), MP_CUSTODY_SIGNER);
	ch.issued_unbound = true;
	memcpy(ch.broker_pk, broker.pk, MP_PK_LEN);
	memset(ch.holder0, 0, MP_ID_LEN); /* no Bind yet */
	ck_assert_msg(run(0, 2) == MP_CUSTODY_OK, "%s", res.detail);
	ck_assert(caps[0].by_broker);
	ck_assert_uint_eq(segs[1].start, 0);
	ck_assert_mem_eq(segs[1].owner_pk, owner[1].pk, MP_PK_LEN);
	/* The broker caps only where nothing was paid. */
	csp[0].index = 0;
	tsp[0].declared_last = 5;
	build_all();
	ck_assert_int_eq(run(0, 2), MP_CUSTODY_OK);
	csp[0].index = 5;
	word(0, 0, 5, csp[0].w);
	build_all();
	ck_assert_int_eq(run(0, 2), MP_CUSTODY_CAP_RANGE);
	ck_assert_msg(strstr(res.detail, "only at index 0"), "%s", res.detail);
	len[1] = 80;
	mp_key_free(&broker);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("custody_segments");
	TCase *tc = tcase_create("pairs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_two_transfers_around_a_handoff);
	tcase_add_test(tc, transfer_rules);
	tcase_add_test(tc, cap_rules);
	tcase_add_test(tc, order_rules);
	tcase_add_test(tc, broker_cap_of_an_unbound_channel);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
