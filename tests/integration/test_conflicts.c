/* Conflicts at the broker (protocol.md section 7; docs/custody.md "Conflicts"), with the real
 * daemons (deploy/mpnet): the test acts as merchants m1, m2 and m3 at the wire level, signs what
 * an honest merchant would (and what a cheating one does) and checks what the broker records
 * and pays, to the unit, with the audit clean after each case. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness.h"
#include "harness_custody.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static struct tmerchant m1, m2, m3, m4;

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m4"), 0);
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	tmerchant_load(&m3, &net, "m3");
	tmerchant_load(&m4, &net, "m4");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	tmerchant_free(&m3);
	tmerchant_free(&m4);
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* A customer transfer of c's segment 0 capped by m1 in epoch 0 at `at` (A's true word). */
struct tcap {
	struct tseg b;
	MpSigned *pair[2]; /* Transfer 1, Cap 1 */
};

static void cap_by_m1(struct tcap *x, const struct tchan *c, uint32_t at)
{
	uint8_t w[MP_HASH_LEN];
	tseg_make(&x->b, N);
	x->pair[0] = tchan_transfer(c, 1, 0, at, &x->b, &c->ch.owner, NULL);
	tchannel_word(&c->ch, at, w);
	x->pair[1] = tchan_cap(c, x->pair[0], 1, 0, at, w, &m1);
}

static void tcap_free(struct tcap *x)
{
	stmts_free(x->pair, 2);
	mp_key_free(&x->b.owner);
}

/* B's SegmentClaimReq for segment 1 (its payout account: a fresh wallet's); the status. */
static MpCode b_claims(const struct tcap *x, const struct tchan *c, uint8_t ev[MP_HASH_LEN])
{
	struct twallet wb;
	tchan_register_wallet(&net, &wb);
	MpSigned *stmt =
	    segment_claim_sign(c->id, 1, x->pair[0], x->pair[1], wb.account_id, &x->b.owner);
	MpCode code = segment_claim_send(&net, stmt, NULL, 0, ev, NULL, 0);
	mp_stmt_free(stmt);
	mp_key_free(&wb.account);
	return code;
}

/* Exactly one conflict for c: cap_after_handoff in epoch 0 against m1, the Cap as stmt_a. */
static void expect_cap_after_handoff(const struct tchan *c, const MpSigned *cp)
{
	json_t *conf = channel_conflicts(&net, c->id);
	ck_assert_uint_eq(json_array_size(conf), 1);
	expect_conflict(conf, "cap_after_handoff", 0, &m1);
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(cp, &len);
	ck_assert_ptr_nonnull(bytes);
	char *hex = malloc(2 * len + 1);
	mp_hex_encode(bytes, len, hex);
	ck_assert_str_eq(json_str(json_array_get(conf, 0), "stmt_a"), hex);
	free(hex);
	free(bytes);
	json_decref(conf);
}

static void expect_segment_1_void(const struct tchan *c)
{
	json_t *segs = channel_segments(&net, c->id);
	ck_assert_uint_eq(json_array_size(segs), 2);
	ck_assert(json_is_false(json_object_get(json_array_get(segs, 0), "voided")));
	ck_assert(json_is_true(json_object_get(json_array_get(segs, 1), "voided")));
	json_decref(segs);
}

/* m1 claims epoch 0 at (seg_seq 1, index) of x's segment (B's true word), carrying the pair
 * and custody; returns the claim's result status (nothing may be credited). */
static MpCode m1_claims_in_segment_1(const struct tchan *c, struct tcap *x, uint32_t index,
				     MpSigned **custody, size_t n_custody)
{
	uint8_t w[MP_HASH_LEN], rid[MP_ID_LEN];
	tseg_word(&x->b, index - 20, w);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = 1;
	pt.index = index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w};
	Micropay__V1__Claim cl = MICROPAY__V1__CLAIM__INIT, *cls[1] = {&cl};
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	cl.point = &pt;
	cl.custody = custody;
	cl.n_custody = n_custody;
	cl.segments = x->pair;
	cl.n_segments = 2;
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, rid};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	rd.claims = cls;
	rd.n_claims = 1;
	MpSigned *s = mp_stmt_sign(&m1.key, MP_STMT_REDEEM, &rd.base);
	ck_assert_ptr_nonnull(s);
	MpEnvelope *resp = redeem_as(&net, &m1, s);
	ck_assert_uint_eq(resp->redeem_resp->n_results, 1);
	const Micropay__V1__ClaimResult *r = resp->redeem_resp->results[0];
	MpCode code = r->status;
	ck_assert_uint_eq(r->credited_amount, 0);
	fprintf(stderr, "m1 in void segment 1 at %u: %s (%s)\n", index, mp_code_name(code),
		r->detail);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	return code;
}

/* m1 caps a transfer of segment 0 at 20 in epoch 0 and hands off to m2 at 10 in segment 0;
 * the broker learns of neither. One Redeem carrying both (m1's claim in segment 1 with the
 * pair and its own Handoff) fails verification at the Handoff, which leaves out the segment
 * the Cap started, and the pair is recorded against m1 as cap_after_handoff (the Cap, then
 * the Handoff), once however often it comes; nothing of segment 1 is recorded or credited,
 * and m2 is paid its range. */
START_TEST(cap_and_own_handoff_in_one_redeem_are_recorded)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	struct tcap x;
	cap_by_m1(&x, &c, 20);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(h[0], &len);
	ck_assert_ptr_nonnull(bytes);
	char *h_hex = malloc(2 * len + 1);
	mp_hex_encode(bytes, len, h_hex);
	free(bytes);
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(m1_claims_in_segment_1(&c, &x, 25, h, 1), MP_ST(MALFORMED));
		expect_cap_after_handoff(&c, x.pair[1]);
		json_t *conf = channel_conflicts(&net, c.id);
		ck_assert_str_eq(json_str(json_array_get(conf, 0), "stmt_b"), h_hex);
		json_decref(conf);
	}
	free(h_hex);
	json_t *segs = channel_segments(&net, c.id);
	ck_assert_uint_eq(json_array_size(segs), 1);
	json_decref(segs);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), before1);
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	tcap_free(&x);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* m1 hands off to m2 at 10, then caps a transfer of segment 0 in its old epoch at 5: the
 * Handoff (point in segment 0) does not include the Transfer. The broker learns the Handoff
 * first (m2's Redeem), then the Cap (m1's notice, B's claim). */
START_TEST(cap_after_own_handoff_handoff_first)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct tcap x;
	cap_by_m1(&x, &c, 5);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	mp_stmt_hash(h[0], want);
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(cap_notice(&net, &m1, x.pair[0], x.pair[1], NULL, 0, ev),
				 MP_ST(CONFLICT));
		ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	}
	ck_assert_int_eq(b_claims(&x, &c, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	expect_cap_after_handoff(&c, x.pair[1]);
	expect_segment_1_void(&c);
	/* The honest successor is paid past the void cap; m1 its own range. */
	struct cclaim more[] = {{&c, 1, 60, h, 1}};
	cclaim_redeem_expect(&net, &m2, more, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	cclaim_redeem_expect(&net, &m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 50);
	expect_cap_after_handoff(&c, x.pair[1]);
	tcap_free(&x);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* The same misbehaviour learned in the other order: m1's Cap at 20 first (notice and B's claim
 * acknowledged), then m2's Redeem with m1's Handoff 1 at 10. The segment is voided then. */
START_TEST(cap_after_own_handoff_cap_first)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	struct tcap x;
	cap_by_m1(&x, &c, 20);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	ck_assert_int_eq(cap_notice(&net, &m1, x.pair[0], x.pair[1], NULL, 0, NULL), MP_ST(OK));
	ck_assert_int_eq(b_claims(&x, &c, ev), MP_ST(OK));
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* m2 is paid above the void cap at 20: its Handoff defines its segment. */
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	expect_cap_after_handoff(&c, x.pair[1]);
	expect_segment_1_void(&c);
	/* The Cap again: CONFLICT with the Handoff; recorded once. */
	mp_stmt_hash(h[0], want);
	ck_assert_int_eq(cap_notice(&net, &m1, x.pair[0], x.pair[1], NULL, 0, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	expect_cap_after_handoff(&c, x.pair[1]);
	/* m1 cannot be paid in the void segment: without its Handoff the claim is above that
	 * Handoff; with it, the evidence contradicts itself (the Handoff's point is in segment 0
	 * while the Cap before it started segment 1). */
	ck_assert_int_eq(m1_claims_in_segment_1(&c, &x, 25, NULL, 0), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(m1_claims_in_segment_1(&c, &x, 25, h, 1), MP_ST(MALFORMED));
	/* m1's own range only. */
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	cclaim_redeem_expect(&net, &m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	tcap_free(&x);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* A Cap consistent with the signer's later Handoff (the Handoff's point in the new segment,
 * at or above the cap): no conflict, nothing void. */
START_TEST(cap_before_own_handoff_is_consistent)
{
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	struct tcap x;
	cap_by_m1(&x, &c, 20);
	ck_assert_int_eq(cap_notice(&net, &m1, x.pair[0], x.pair[1], NULL, 0, NULL), MP_ST(OK));
	/* Handoff 1 from m1 to m2 at B's index 30 in segment 1. */
	uint8_t word[MP_HASH_LEN], prev_hash[MP_HASH_LEN], move_hash[MP_HASH_LEN],
	    head[MP_HASH_LEN];
	tseg_word(&x.b, 10, word);
	memcpy(prev_hash, c.cert_hash, MP_HASH_LEN);
	memset(move_hash, 0x4d, sizeof(move_hash));
	mp_stmt_hash(x.pair[0], head);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = 1;
	pt.index = 30;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Handoff hb = MICROPAY__V1__HANDOFF__INIT;
	hb.channel_id = (ProtobufCBinaryData){MP_ID_LEN, c.id};
	hb.hseq = 1;
	hb.from_mid = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	hb.to_mid = (ProtobufCBinaryData){MP_ID_LEN, m2.mid};
	hb.point = &pt;
	hb.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, head};
	hb.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, prev_hash};
	hb.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	MpSigned *h = mp_stmt_sign(&m1.key, MP_STMT_HANDOFF, &hb.base);
	ck_assert_ptr_nonnull(h);
	int64_t before2 = net_pending(&net, m2.mid_hex);
	MpSigned *custody[1] = {h};
	uint8_t w40[MP_HASH_LEN];
	tseg_word(&x.b, 20, w40);
	MpPoint p40 = MICROPAY__V1__POINT__INIT;
	p40.seg_seq = 1;
	p40.index = 40;
	p40.w = (ProtobufCBinaryData){MP_HASH_LEN, w40};
	Micropay__V1__Claim cl = MICROPAY__V1__CLAIM__INIT, *cls[1] = {&cl};
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, c.id};
	cl.hseq_in = 1;
	cl.point = &p40;
	cl.custody = custody;
	cl.n_custody = 1;
	cl.segments = x.pair;
	cl.n_segments = 2;
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, rid};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m2.mid};
	rd.claims = cls;
	rd.n_claims = 1;
	MpSigned *s = mp_stmt_sign(&m2.key, MP_STMT_REDEEM, &rd.base);
	MpEnvelope *resp = redeem_as(&net, &m2, s);
	expect_claim_result(resp, 0, MP_ST(OK), 10, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 10);
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	json_t *segs = channel_segments(&net, c.id);
	ck_assert(json_is_false(json_object_get(json_array_get(segs, 1), "voided")));
	json_decref(segs);
	mp_stmt_free(s);
	mp_stmt_free(h);
	tcap_free(&x);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* merchantd resends a Redeem verbatim; one it signed before its Handoff cannot list that
 * Handoff. Neither its replay nor its late first delivery is an omitted custody statement. */
START_TEST(redeem_signed_before_own_handoff_is_no_omission)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	/* m1 signs two Redeems of epoch 0 (at 5 and at 10) with its complete record then: no
	 * Handoff. It sends the first; then it hands off at 10. */
	struct cclaim at5[] = {{&c, 0, 5, NULL, 0}}, at10[] = {{&c, 0, 10, NULL, 0}};
	MpSigned *r5 = cclaim_redeem(&m1, at5, 1), *r10 = cclaim_redeem(&m1, at10, 1);
	MpEnvelope *resp = redeem_as(&net, &m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_claim_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* m2 redeems first with the Handoff: the broker stores it. */
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* The replay of the first Redeem and the first delivery of the second. */
	resp = redeem_as(&net, &m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	expect_claim_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	resp = redeem_as(&net, &m1, r10);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_claim_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_msg(json_array_size(conf) == 0, "conflicts recorded against honest merchants");
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	/* A claim that relies on holding past the omitted Handoff is still the conflict, with the
	 * claim above it; nothing more is paid. */
	struct cclaim past[] = {{&c, 0, 11, NULL, 0}};
	MpSigned *s = cclaim_redeem(&m1, past, 1);
	resp = redeem_as(&net, &m1, s);
	expect_claim_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 1");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 2);
	expect_conflict(conf, "omitted_custody", 1, &m1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	mp_stmt_free(r5);
	mp_stmt_free(r10);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* A Redeem of a later epoch signed before the claimant's next Handoff: the chain M1 -> M2 ->
 * M1, m1 claims epoch 2 with custody 1..2; the broker then learns m1's Handoff 3 to m3. */
START_TEST(later_epoch_redeem_before_next_handoff_is_no_omission)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *h[3];
	h[0] = tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = tchan_handoff(&c, 2, &m2, &m1, 20, h[0], NULL);
	struct cclaim mine[] = {{&c, 0, 10, h, 2}, {&c, 2, 40, h, 2}};
	MpSigned *r = cclaim_redeem(&m1, mine, 2);
	h[2] = tchan_handoff(&c, 3, &m1, &m3, 40, h[1], NULL);
	struct cclaim c3[] = {{&c, 3, 60, h, 3}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	MpEnvelope *resp = redeem_as(&net, &m1, r);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_claim_result(resp, 0, MP_ST(OK), 10, NULL);
	expect_claim_result(resp, 1, MP_ST(OK), 20, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 20);
	mp_stmt_free(r);
	stmts_free(h, 3);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* ---- Forks: both branches honoured (docs/custody.md "Forks") ---- */

static char *new_id_hex(char out[MP_HEX_ID_LEN + 1])
{
	uint8_t id[MP_ID_LEN];
	ck_assert(mp_random_bytes(id, MP_ID_LEN));
	mp_hex_encode(id, MP_ID_LEN, out);
	return out;
}

static int64_t loss_reserve(void)
{
	char *v = sql_value(&net, "SELECT balance FROM accounts WHERE kind = 'loss_reserve'");
	int64_t out = strtoll(v, NULL, 10);
	free(v);
	return out;
}

static int64_t escrow_of(const struct tchan *c)
{
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", hex);
	json_t *ch = admin_ok(&net, "broker", "channel.show", params);
	int64_t out = json_int(ch, "escrow_balance");
	json_decref(ch);
	return out;
}

/* What the liabilities of c collected: "pending bond reserve" summed. */
static char *collected_of(const struct tchan *c)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	return sql_value(
	    &net,
	    "SELECT coalesce(sum(from_pending), 0) || ' ' || coalesce(sum(from_bond), 0)"
	    " || ' ' || coalesce(sum(from_reserve), 0) FROM liabilities"
	    " WHERE channel_id = '\\x%s'",
	    hex);
}

/* m4 (the double signer, acting through this test) holds c from issue and signs Handoff 1
 * twice at 10: to m2 and to m3. Both successors take payments and redeem; both are credited
 * in full. The units credited on both branches (the excess) are paid from m4's pending credit
 * (6, earned on another channel), then its bond (4), then the loss reserve; while those cannot
 * cover an excess the claim waits (INSUFFICIENT_FUNDS, nothing moves) until the operator funds
 * the reserve. The escrow pays each unit once. */
START_TEST(fork_both_branches_paid_excess_from_pending_bond_reserve)
{
	ck_assert_int_eq(loss_reserve(), 0);
	/* m4 earns 6 of pending credit on channel d, and posts a bond of 4. */
	struct tchan d, c;
	tchan_issue(&net, &d, N, &m4);
	struct cclaim own[] = {{&d, 0, 6, NULL, 0}};
	cclaim_redeem_expect(&net, &m4, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){6});
	net_post_bond(&net, m4.mid_hex, 4);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex), 6);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 4);
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);

	tchan_issue(&net, &c, N, &m4);
	MpSigned *a[1] = {tchan_handoff(&c, 1, &m4, &m2, 10, NULL, NULL)};
	MpSigned *b[1] = {tchan_handoff(&c, 1, &m4, &m3, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, a, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* m3's branch: (10, 32] overlaps m2's (10, 30] by 20 units; 6 + 4 + 0 cannot cover. */
	struct cclaim c3[] = {{&c, 1, 32, b, 1}};
	MpSigned *r3 = cclaim_redeem(&m3, c3, 1);
	MpEnvelope *resp = redeem_as(&net, &m3, r3);
	expect_claim_result(resp, 0, MP_ST(INSUFFICIENT_FUNDS), 0, "fork excess of 20 not covered");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(r3);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m4);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex), before3);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex), 6);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 4);
	ck_assert_int_eq(escrow_of(&c), N - 20);
	audit_clean();

	/* The operator funds the loss reserve; m3 claims again: 2 units from the escrow, 20 of
	 * excess from m4's pending (6), its bond (4) and the reserve (10). */
	char params[128], id[MP_HEX_ID_LEN + 1];
	snprintf(params, sizeof(params), "{\"amount\":15,\"fund_id\":\"%s\"}", new_id_hex(id));
	json_decref(admin_ok(&net, "broker", "loss_reserve.fund", params));
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){22});
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 22);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex), 0);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 0);
	ck_assert_int_eq(loss_reserve(), 5);
	ck_assert_int_eq(escrow_of(&c), N - 22);
	char *col = collected_of(&c);
	ck_assert_str_eq(col, "6 4 10");
	free(col);
	audit_clean();

	/* m4 owes the reserve 10: its bond cannot be released below that. */
	net_post_bond(&net, m4.mid_hex, 20);
	snprintf(params, sizeof(params), "{\"merchant\":\"%s\",\"amount\":11,\"op_id\":\"%s\"}",
		 m4.mid_hex, new_id_hex(id));
	char err[512];
	ck_assert_ptr_null(admin(&net, "broker", "bond.release", params, err, sizeof(err)));
	ck_assert_msg(strstr(err, "below the merchant's unsettled liabilities of 10"), "%s", err);
	snprintf(params, sizeof(params), "{\"merchant\":\"%s\",\"amount\":10,\"op_id\":\"%s\"}",
		 m4.mid_hex, new_id_hex(id));
	json_decref(admin_ok(&net, "broker", "bond.release", params));
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 10);

	/* m2 goes on to 40: (30, 32] were credited on m3's branch (2 from the bond), (32, 40]
	 * come from the escrow. Each successor has its whole range. */
	struct cclaim more[] = {{&c, 1, 40, a, 1}};
	cclaim_redeem_expect(&net, &m2, more, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 22);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 8);
	ck_assert_int_eq(escrow_of(&c), N - 30);
	col = collected_of(&c);
	ck_assert_str_eq(col, "6 6 10");
	free(col);
	stmts_free(a, 1);
	stmts_free(b, 1);
	tchan_release(&c);
	tchan_release(&d);
	audit_clean();
}
END_TEST

/* What the liabilities of c collected in all. */
static int64_t collected_total(const struct tchan *c)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	char *v = sql_value(&net,
			    "SELECT coalesce(sum(amount), 0) FROM liabilities"
			    " WHERE channel_id = '\\x%s'",
			    hex);
	int64_t out = strtoll(v, NULL, 10);
	free(v);
	return out;
}

/* m1 signs Handoff 1 at 10 twice: to m2 (the first branch) and to m3, who hands the channel on
 * to m4 at 20 (Handoff 2 of the second branch). Every holder on the second branch is paid its
 * range: m4 with its custody (1', 2'), m3 with its complete record (1' received, 2' signed),
 * not above its own Handoff 2'; the units also credited on the first branch (m2's (10, 30])
 * come from m1 (its bond covers them), the escrow pays each unit once. */
START_TEST(fork_whole_second_branch_paid)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex),
		before4 = net_pending(&net, m4.mid_hex);
	net_post_bond(&net, m1.mid_hex, 40);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *a[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *b[2];
	b[0] = tchan_handoff(&c, 1, &m1, &m3, 10, NULL, NULL);
	b[1] = tchan_handoff(&c, 2, &m3, &m4, 20, b[0], NULL);
	struct cclaim c2[] = {{&c, 1, 30, a, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* m4, two Handoffs down the second branch: (20, 40], of which (20, 30] is excess. */
	struct cclaim c4[] = {{&c, 2, 40, b, 2}};
	cclaim_redeem_expect(&net, &m4, c4, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(escrow_of(&c), N - 30);
	ck_assert_int_eq(collected_total(&c), 10);
	audit_clean();
	/* m3: not above its own Handoff 2' (the broker has it from m4's claim), then its range. */
	struct cclaim above[] = {{&c, 1, 25, b, 1}};
	cclaim_redeem_expect(&net, &m3, above, 1, (MpCode[]){MP_ST(OUT_OF_RANGE)}, (uint64_t[]){0});
	struct cclaim c3[] = {{&c, 1, 20, b, 2}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(escrow_of(&c), N - 30);
	ck_assert_int_eq(collected_total(&c), 20);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 10);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex) - before4, 20);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m1);
	json_decref(conf);
	audit_clean();

	stmts_free(a, 1);
	stmts_free(b, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* What the liabilities of c collected from merchant tm. */
static int64_t collected_from(const struct tchan *c, const struct tmerchant *tm)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	char *v = sql_value(&net,
			    "SELECT coalesce(sum(amount), 0) FROM liabilities"
			    " WHERE channel_id = '\\x%s' AND liable_mid = '\\x%s'",
			    hex, tm->mid_hex);
	int64_t out = strtoll(v, NULL, 10);
	free(v);
	return out;
}

/* The conflicts of c of this kind. */
static size_t conflicts_of_kind(const struct tchan *c, const char *kind)
{
	json_t *conf = channel_conflicts(&net, c->id);
	size_t n = 0, i;
	json_t *x;
	json_array_foreach(conf, i, x) n += strcmp(json_str(x, "kind"), kind) == 0;
	json_decref(conf);
	return n;
}

/* c issued to m1; m1's Handoff 1 at 10 to m2 (a: the first branch, m2 credited (10, 30]) and
 * to m3 (b[0]); m3's Handoff 2 at 20 to m4 on that second branch (b[1]: m4 credited (20, 40],
 * the 10 units also credited to m2 collected from m1). */
static void fork_m2_and_m3_to_m4(struct tchan *c, MpSigned *a[1], MpSigned *b[2])
{
	tchan_issue(&net, c, N, &m1);
	a[0] = tchan_handoff(c, 1, &m1, &m2, 10, NULL, NULL);
	b[0] = tchan_handoff(c, 1, &m1, &m3, 10, NULL, NULL);
	b[1] = tchan_handoff(c, 2, &m3, &m4, 20, b[0], NULL);
	struct cclaim c2[] = {{c, 1, 30, a, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct cclaim c4[] = {{c, 2, 40, b, 2}};
	cclaim_redeem_expect(&net, &m4, c4, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(escrow_of(c), N - 30);
}

/* m1 signs Handoff 1 at 10 to m2 (the first branch) and to m3; m3 signs Handoff 2 on that
 * second branch twice: to m4 at 20 and to m2 at 25 (a fork within the second branch). Each
 * holder is paid its range: m2 its epoch 2 on the new branch (25, 35], all of it also credited
 * on other branches, collected from m3 (the double signer of Handoff 2); then m2 hands on to m4
 * (Handoff 3 on the new branch, at 45), m4 is paid (45, 50] from the escrow and m2 the rest of
 * its range, (35, 45], of which (35, 40] was credited to m4 on the other branch (collected
 * from m3). A claim of m2 above its own Handoff 3 is refused and recorded. The escrow pays each
 * unit once, the audit is clean. */
START_TEST(fork_within_second_branch_paid)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before4 = net_pending(&net, m4.mid_hex);
	net_post_bond(&net, m1.mid_hex, 40);
	net_post_bond(&net, m3.mid_hex, 40);
	struct tchan c;
	MpSigned *a[1], *b[2], *d[3];
	fork_m2_and_m3_to_m4(&c, a, b);
	d[0] = b[0];
	d[1] = tchan_handoff(&c, 2, &m3, &m2, 25, b[0], NULL);
	d[2] = tchan_handoff(&c, 3, &m2, &m4, 45, d[1], NULL);
	ck_assert_int_eq(collected_from(&c, &m1), 10);

	/* m2 on the branch within the branch: (25, 35], credited on m4's (20, 40] already. */
	struct cclaim sub[] = {{&c, 2, 35, d, 2}};
	cclaim_redeem_expect(&net, &m2, sub, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(escrow_of(&c), N - 30);
	ck_assert_int_eq(collected_from(&c, &m3), 10);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m1);
	expect_conflict(conf, "double_handoff", 2, &m3);
	json_decref(conf);
	audit_clean();

	/* Further down the new branch: m4 after m2's Handoff 3, then m2 up to it. */
	struct cclaim c4b[] = {{&c, 3, 50, d, 3}};
	cclaim_redeem_expect(&net, &m4, c4b, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){5});
	struct cclaim above[] = {{&c, 2, 48, d, 2}};
	cclaim_redeem_expect(&net, &m2, above, 1, (MpCode[]){MP_ST(OUT_OF_RANGE)}, (uint64_t[]){0});
	ck_assert_uint_eq(conflicts_of_kind(&c, "claim_above_handoff"), 1);
	struct cclaim rest[] = {{&c, 2, 45, d, 3}};
	cclaim_redeem_expect(&net, &m2, rest, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 40);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex) - before4, 25);
	ck_assert_int_eq(escrow_of(&c), N - 40);
	ck_assert_int_eq(collected_from(&c, &m3), 15);
	ck_assert_int_eq(collected_from(&c, &m1), 10);
	mp_stmt_free(d[1]);
	mp_stmt_free(d[2]);
	stmts_free(a, 1);
	stmts_free(b, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* On a second branch (m1 -> m3 at 10 beside m1 -> m2; m3 -> m4 at 20), m3's claim above its
 * own Handoff 2, which the broker has from m4's claim while m3's custody leaves it out, is
 * refused and recorded as claim_above_handoff against m3, once (the replay records nothing);
 * m3 is then paid its range. On a second channel the order is reversed: m3 is credited up to
 * 25 first, and m4's claim bringing m3's Handoff 2 at 20 records m3's claim above it. */
START_TEST(second_branch_claim_above_own_handoff_is_recorded)
{
	int64_t before3 = net_pending(&net, m3.mid_hex);
	net_post_bond(&net, m1.mid_hex, 60);
	struct tchan c, e;
	MpSigned *a[1], *b[2];
	fork_m2_and_m3_to_m4(&c, a, b);
	tchan_issue(&net, &e, N, &m1);
	struct cclaim above[] = {{&c, 1, 25, b, 1}};
	cclaim_redeem_expect(&net, &m3, above, 1, (MpCode[]){MP_ST(OUT_OF_RANGE)}, (uint64_t[]){0});
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "claim_above_handoff", 1, &m3);
	json_decref(conf);
	ck_assert_uint_eq(conflicts_of_kind(&c, "claim_above_handoff"), 1);
	struct cclaim c3[] = {{&c, 1, 20, b, 2}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 10);
	ck_assert_int_eq(escrow_of(&c), N - 30);
	audit_clean();

	/* m3 first, above the Handoff 2 the broker does not know yet; m4's claim brings it. */
	MpSigned *x[1] = {tchan_handoff(&e, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *y[2];
	y[0] = tchan_handoff(&e, 1, &m1, &m3, 10, NULL, NULL);
	y[1] = tchan_handoff(&e, 2, &m3, &m4, 20, y[0], NULL);
	struct cclaim e2[] = {{&e, 1, 30, x, 1}};
	cclaim_redeem_expect(&net, &m2, e2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct cclaim e3[] = {{&e, 1, 25, y, 1}};
	cclaim_redeem_expect(&net, &m3, e3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){15});
	ck_assert_uint_eq(conflicts_of_kind(&e, "claim_above_handoff"), 0);
	struct cclaim e4[] = {{&e, 2, 40, y, 2}};
	cclaim_redeem_expect(&net, &m4, e4, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	conf = channel_conflicts(&net, e.id);
	expect_conflict(conf, "claim_above_handoff", 1, &m3);
	json_decref(conf);
	ck_assert_uint_eq(conflicts_of_kind(&e, "claim_above_handoff"), 1);
	stmts_free(a, 1);
	stmts_free(b, 2);
	stmts_free(x, 1);
	stmts_free(y, 2);
	tchan_release(&c);
	tchan_release(&e);
	audit_clean();
}
END_TEST

/* m1 signs Handoff 1 twice, both to m2 (at 10 and at 15): m2 holds one epoch 1, defined by the
 * first the broker stores; m2's claims with either Handoff are credited within it, and so is
 * the next holder m3, whose Handoff 2 from m2 links to the second. The double handoff is
 * recorded against m1 (once), no unit is paid twice, nothing is collected, and m1 keeps its own
 * range. */
START_TEST(double_handoff_to_one_merchant_pays_its_epoch)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *a[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *b[2];
	b[0] = tchan_handoff(&c, 1, &m1, &m2, 15, NULL, NULL);
	b[1] = tchan_handoff(&c, 2, &m2, &m3, 40, b[0], NULL);
	struct cclaim first[] = {{&c, 1, 20, a, 1}};
	cclaim_redeem_expect(&net, &m2, first, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	struct cclaim second[] = {{&c, 1, 35, b, 1}};
	cclaim_redeem_expect(&net, &m2, second, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){15});
	struct cclaim again[] = {{&c, 1, 30, b, 1}};
	cclaim_redeem_expect(&net, &m2, again, 1, (MpCode[]){MP_ST(DUPLICATE_OK)}, (uint64_t[]){0});
	/* m3 after m2 on the chain through the second Handoff 1; m2 up to its own Handoff 2. */
	struct cclaim c3[] = {{&c, 2, 50, b, 2}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	struct cclaim rest[] = {{&c, 1, 40, b, 2}};
	cclaim_redeem_expect(&net, &m2, rest, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){5});
	struct cclaim own[] = {{&c, 0, 10, a, 1}};
	cclaim_redeem_expect(&net, &m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 1);
	expect_conflict(conf, "double_handoff", 1, &m1);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 10);
	ck_assert_int_eq(escrow_of(&c), N - 50);
	ck_assert_int_eq(collected_total(&c), 0);
	stmts_free(a, 1);
	stmts_free(b, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* m4's epochs of hseq 2 on c: "credited_end:first_branch" of each, the first branch's first. */
static char *m4_epochs_2(const struct tchan *c)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	return sql_value(&net,
			 "SELECT string_agg(credited_end || ':' || (fork_of IS NULL),"
			 " ' ' ORDER BY fork_of IS NULL DESC) FROM epochs"
			 " WHERE channel_id = '\\x%s' AND hseq = 2 AND merchant_id = '\\x%s'",
			 hex, m4.mid_hex);
}

/* m1 signs Handoff 1 at 10 twice: to m2 (the first branch) and to m3; each hands the channel
 * on to m4 with its own Handoff 2 (m2's at 20, m3's at 25), so m4 holds epoch 2 on both
 * branches and is credited its range on each, exactly once: (20, 40] on the first branch;
 * (25, 35] on the second (all of it credited on the first already: collected from m1); then,
 * in one Redeem, (40, 45] on the first and (35, 50] on the second (10 collected). m3 gets
 * (10, 25], all collected. Repeats are DUPLICATE_OK; the escrow pays each unit once. */
START_TEST(merchant_on_both_branches_credited_on_each)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex),
		before4 = net_pending(&net, m4.mid_hex);
	net_post_bond(&net, m1.mid_hex, 60);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *a[2], *b[2];
	a[0] = tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	a[1] = tchan_handoff(&c, 2, &m2, &m4, 20, a[0], NULL);
	b[0] = tchan_handoff(&c, 1, &m1, &m3, 10, NULL, NULL);
	b[1] = tchan_handoff(&c, 2, &m3, &m4, 25, b[0], NULL);
	struct cclaim c2[] = {{&c, 1, 20, a, 2}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	struct cclaim first[] = {{&c, 2, 40, a, 2}};
	cclaim_redeem_expect(&net, &m4, first, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(escrow_of(&c), N - 30);

	/* On the second branch, below its first-branch credited end: a credit of its own. */
	struct cclaim second[] = {{&c, 2, 35, b, 2}};
	cclaim_redeem_expect(&net, &m4, second, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(escrow_of(&c), N - 30);
	ck_assert_int_eq(collected_from(&c, &m1), 10);
	audit_clean();

	/* One Redeem, one claim per branch: (40, 45] from the escrow, then (35, 50] of which
	 * (35, 45] is credited on the first branch (collected) and (45, 50] from the escrow. */
	struct cclaim both[] = {{&c, 2, 45, a, 2}, {&c, 2, 50, b, 2}};
	cclaim_redeem_expect(&net, &m4, both, 2, (MpCode[]){MP_ST(OK), MP_ST(OK)},
			     (uint64_t[]){5, 15});
	ck_assert_int_eq(escrow_of(&c), N - 40);
	ck_assert_int_eq(collected_from(&c, &m1), 20);
	char *ep = m4_epochs_2(&c);
	ck_assert_str_eq(ep, "45:true 50:false");
	free(ep);
	cclaim_redeem_expect(&net, &m4, both, 2,
			     (MpCode[]){MP_ST(DUPLICATE_OK), MP_ST(DUPLICATE_OK)},
			     (uint64_t[]){0, 0});

	/* m3 up to its own Handoff 2: all of (10, 25] was credited on the first branch. */
	struct cclaim c3[] = {{&c, 1, 25, b, 2}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){15});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 10);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 15);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex) - before4, 50);
	ck_assert_int_eq(escrow_of(&c), N - 40);
	ck_assert_int_eq(collected_total(&c), 35);
	ck_assert_int_eq(collected_from(&c, &m1), 35);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m1);
	json_decref(conf);
	stmts_free(a, 2);
	stmts_free(b, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* One Redeem carrying two chains that split inside a second branch, each followed on its own
 * branch. m1's Handoff 1 at 10 goes to m2 (the first branch) and to m3 (branch B); on B m3
 * signs Handoff 2 to m4 at 20 and to m2 at 25 (B'); on B' m2 signs Handoff 3 at 45 twice: to
 * m4 (Q) and to m1 (R). m2's one Redeem carries its complete record twice, once with each of
 * its Handoffs 3: both are followed on B' (the second one recorded as m2's double handoff, a
 * branch B'' of its own), so m1's claim on R is paid with the excess collected from m2. */
START_TEST(one_redeem_two_chains_split_in_a_second_branch)
{
	int64_t before4 = net_pending(&net, m4.mid_hex);
	net_post_bond(&net, m1.mid_hex, 40);
	net_post_bond(&net, m2.mid_hex, 40);
	net_post_bond(&net, m3.mid_hex, 40);
	struct tchan c;
	MpSigned *a[1], *b[2], *q[3], *r[3];
	fork_m2_and_m3_to_m4(&c, a, b);
	q[0] = r[0] = b[0];
	q[1] = r[1] = tchan_handoff(&c, 2, &m3, &m2, 25, b[0], NULL);
	q[2] = tchan_handoff(&c, 3, &m2, &m4, 45, q[1], NULL);
	r[2] = tchan_handoff(&c, 3, &m2, &m1, 45, q[1], NULL);
	ck_assert_int_eq(collected_from(&c, &m1), 10);

	/* (25, 35] on B', all credited on other branches: collected from m3. */
	struct cclaim both[] = {{&c, 2, 35, q, 3}, {&c, 2, 35, r, 3}};
	cclaim_redeem_expect(&net, &m2, both, 2, (MpCode[]){MP_ST(OK), MP_ST(DUPLICATE_OK)},
			     (uint64_t[]){10, 0});
	ck_assert_int_eq(collected_from(&c, &m3), 10);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m1);
	expect_conflict(conf, "double_handoff", 2, &m3);
	expect_conflict(conf, "double_handoff", 3, &m2);
	json_decref(conf);
	audit_clean();

	/* m4 on Q: (45, 55] from the escrow; m1 on R: the same units, collected from m2. */
	struct cclaim c4[] = {{&c, 3, 55, q, 3}};
	cclaim_redeem_expect(&net, &m4, c4, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	struct cclaim c1[] = {{&c, 3, 55, r, 3}};
	cclaim_redeem_expect(&net, &m1, c1, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(collected_from(&c, &m2), 10);
	ck_assert_int_eq(collected_from(&c, &m3), 10);
	ck_assert_int_eq(collected_from(&c, &m1), 10);
	ck_assert_int_eq(escrow_of(&c), N - 40);
	ck_assert_int_eq(net_pending(&net, m4.mid_hex) - before4, 30);
	mp_stmt_free(q[1]);
	mp_stmt_free(q[2]);
	mp_stmt_free(r[2]);
	stmts_free(a, 1);
	stmts_free(b, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

static Suite *conflicts_suite(void)
{
	Suite *s = suite_create("conflicts");
	TCase *tc = tcase_create("conflicts");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, redeem_signed_before_own_handoff_is_no_omission);
	tcase_add_test(tc, later_epoch_redeem_before_next_handoff_is_no_omission);
	tcase_add_test(tc, cap_after_own_handoff_handoff_first);
	tcase_add_test(tc, cap_after_own_handoff_cap_first);
	tcase_add_test(tc, cap_before_own_handoff_is_consistent);
	tcase_add_test(tc, cap_and_own_handoff_in_one_redeem_are_recorded);
	tcase_add_test(tc, fork_both_branches_paid_excess_from_pending_bond_reserve);
	tcase_add_test(tc, fork_whole_second_branch_paid);
	tcase_add_test(tc, double_handoff_to_one_merchant_pays_its_epoch);
	tcase_add_test(tc, fork_within_second_branch_paid);
	tcase_add_test(tc, second_branch_claim_above_own_handoff_is_recorded);
	tcase_add_test(tc, merchant_on_both_branches_credited_on_each);
	tcase_add_test(tc, one_redeem_two_chains_split_in_a_second_branch);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(conflicts_suite());
}
