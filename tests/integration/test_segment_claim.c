/* Customer-to-customer transfers at the broker (docs/transfer.md "The broker"), with the real
 * daemons (deploy/mpnet) and PostgreSQL. The test acts at the wire level as customer A (signs
 * Transfers with the channel's owner key), as customer B (its own segment chain and key, signs
 * SegmentClaims, no client certificate) and as the holder m1 (signs Caps, sends CapNoticeReq
 * and Redeems over mutual TLS), and checks what brokerd records, refuses and credits. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness.h"
#include "harness_custody.h"
#include "harness_ledger.h"
#include "harness_db.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static struct tmerchant m1, m2;

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	net_down(&net);
}

/* The honest Cap of segment 0 at index at (A's own word). */
static MpSigned *cap0(const struct tchan *c, const MpSigned *t, uint32_t at)
{
	uint8_t w[MP_HASH_LEN];
	tchannel_word(&c->ch, at, w);
	return tchan_cap(c, t, 1, 0, at, w, &m1);
}

/* Rows the broker stored for c's transfers (segments beyond 0 and segment_transfers). */
static void expect_stored(const struct tchan *c, int segments)
{
	char lit[2 * MP_ID_LEN + 32];
	sql_bytea(c->id, MP_ID_LEN, lit, sizeof(lit));
	char *a = sql_value(&net, "SELECT count(*) FROM segments WHERE channel_id = %s", lit);
	char *b =
	    sql_value(&net, "SELECT count(*) FROM segment_transfers WHERE channel_id = %s", lit);
	ck_assert_int_eq(atoi(a), segments + 1);
	ck_assert_int_eq(atoi(b), segments);
	free(a);
	free(b);
}

static void hash_of(const MpSigned *s, uint8_t out[MP_HASH_LEN])
{
	mp_stmt_hash(s, out);
}

static void hex_of(const uint8_t *data, size_t len, char *out)
{
	mp_hex_encode(data, len, out);
}

START_TEST(cap_notice_records_the_segment)
{
	struct tchan c;
	struct tseg b;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	MpSigned *t = tchan_transfer(&c, 1, 0, 30, &b, &c.ch.owner, NULL);
	MpSigned *cp = cap0(&c, t, 30);
	/* Only a merchant may send it. */
	ck_assert_int_eq(cap_notice(&net, NULL, t, cp, NULL, 0, NULL), MP_ST(BAD_SIG));
	expect_stored(&c, 0);
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, NULL, 0, NULL), MP_ST(OK));
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, NULL, 0, NULL), MP_ST(DUPLICATE_OK));
	/* Segments holding the pair itself after the ones before it: the same evidence. Any
	 * other pair beyond segment s-1 is not. */
	MpSigned *self[2] = {t, cp}, *odd[2] = {cp, t};
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, self, 2, NULL), MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, odd, 2, NULL), MP_ST(MALFORMED));
	expect_stored(&c, 1);
	json_t *segs = channel_segments(&net, c.id);
	ck_assert_uint_eq(json_array_size(segs), 2);
	json_t *s0 = json_array_get(segs, 0), *s1 = json_array_get(segs, 1);
	char pk[2 * MP_PK_LEN + 1], acct[MP_HEX_ID_LEN + 1];
	ck_assert_int_eq(json_int(s0, "start"), 0);
	ck_assert_int_eq(json_int(s0, "cap_index"), 30);
	hex_of(c.tw.account_id, MP_ID_LEN, acct);
	ck_assert_str_eq(json_str(s0, "payout_account"), acct);
	ck_assert_int_eq(json_int(s1, "seg_seq"), 1);
	ck_assert_int_eq(json_int(s1, "start"), 30);
	ck_assert_int_eq(json_int(s1, "len"), N);
	hex_of(b.owner.pk, MP_PK_LEN, pk);
	ck_assert_str_eq(json_str(s1, "owner_pk"), pk);
	ck_assert_str_eq(json_str(s1, "holder"), m1.mid_hex);
	ck_assert_int_eq(json_int(s1, "cap_hseq"), 0);
	ck_assert(json_is_null(json_object_get(s1, "cap_index")));
	ck_assert(json_is_integer(json_object_get(s1, "noticed")));
	ck_assert(json_is_null(json_object_get(s1, "claimed")));
	ck_assert(json_is_null(json_object_get(s1, "payout_account")));
	json_decref(segs);
	mp_stmt_free(t);
	mp_stmt_free(cp);
	mp_key_free(&b.owner);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

START_TEST(segment_claim_records_the_payout_account)
{
	struct tchan c;
	struct tseg b;
	struct twallet wb, wc;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, 80);
	tchan_register_wallet(&net, &wb);
	tchan_register_wallet(&net, &wc);
	MpSigned *t = tchan_transfer(&c, 1, 0, 25, &b, &c.ch.owner, NULL);
	MpSigned *cp = cap0(&c, t, 25);
	MpSigned *sc = segment_claim_sign(c.id, 1, t, cp, wb.account_id, &b.owner);
	/* The broker learns the segment from the claim itself, before any CapNotice. */
	char detail[200];
	ck_assert_int_eq(segment_claim_send(&net, sc, NULL, 0, NULL, detail, sizeof(detail)),
			 MP_ST(OK));
	ck_assert_int_eq(segment_claim_send(&net, sc, NULL, 0, NULL, detail, sizeof(detail)),
			 MP_ST(DUPLICATE_OK));
	/* Another SegmentClaim for the claimed segment: CONFLICT with the stored one. */
	MpSigned *other = segment_claim_sign(c.id, 1, t, cp, wc.account_id, &b.owner);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	ck_assert_int_eq(segment_claim_send(&net, other, NULL, 0, ev, detail, sizeof(detail)),
			 MP_ST(CONFLICT));
	hash_of(sc, want);
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	/* The holder's notice comes later: the segment was recorded already. */
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, NULL, 0, NULL), MP_ST(DUPLICATE_OK));
	expect_stored(&c, 1);
	json_t *segs = channel_segments(&net, c.id);
	json_t *s1 = json_array_get(segs, 1);
	char acct[MP_HEX_ID_LEN + 1];
	hex_of(wb.account_id, MP_ID_LEN, acct);
	ck_assert_str_eq(json_str(s1, "payout_account"), acct);
	ck_assert(json_is_integer(json_object_get(s1, "claimed")));
	ck_assert(json_is_integer(json_object_get(s1, "noticed")));
	ck_assert_int_eq(json_int(s1, "start"), 25);
	json_decref(segs);
	mp_stmt_free(t);
	mp_stmt_free(cp);
	mp_stmt_free(sc);
	mp_stmt_free(other);
	mp_key_free(&b.owner);
	mp_key_free(&wb.account);
	mp_key_free(&wc.account);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

/* One bad hand-over, refused with want and nothing stored. */
struct bad_case {
	const char *name;
	MpSigned *t, *cp;
	MpCode want;
	const char *detail_part; /* in the SegmentClaim answer's detail, or NULL */
};

static void expect_refused(const struct tchan *c, const struct tseg *b, const struct twallet *wb,
			   const struct bad_case *bc)
{
	ck_assert_msg(cap_notice(&net, &m1, bc->t, bc->cp, NULL, 0, NULL) == bc->want,
		      "%s: CapNotice not %s", bc->name, mp_code_name(bc->want));
	MpSigned *sc = segment_claim_sign(c->id, 1, bc->t, bc->cp, wb->account_id, &b->owner);
	char detail[200];
	MpCode got = segment_claim_send(&net, sc, NULL, 0, NULL, detail, sizeof(detail));
	ck_assert_msg(got == bc->want, "%s: SegmentClaim %s (%s), want %s", bc->name,
		      mp_code_name(got), detail, mp_code_name(bc->want));
	if (bc->detail_part)
		ck_assert_msg(strstr(detail, bc->detail_part), "%s: detail '%s' lacks '%s'",
			      bc->name, detail, bc->detail_part);
	mp_stmt_free(sc);
	expect_stored(c, 0);
}

START_TEST(bad_hand_overs_are_refused_and_change_nothing)
{
	struct tchan c;
	struct tseg b;
	struct twallet wb;
	struct mp_key stranger;
	uint8_t seed[MP_SK_LEN], junk[MP_HASH_LEN];
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	tchan_register_wallet(&net, &wb);
	ck_assert(mp_key_generate(&stranger, seed));
	memset(junk, 0x5a, sizeof(junk));
	MpSigned *honest = tchan_transfer(&c, 1, 0, 30, &b, &c.ch.owner, NULL);
	MpSigned *forged_t = tchan_transfer(&c, 1, 0, 30, &b, &stranger, NULL);
	MpSigned *epoch1 = tchan_transfer(&c, 1, 1, 30, &b, &c.ch.owner, NULL);
	uint8_t w30[MP_HASH_LEN], w35[MP_HASH_LEN];
	tchannel_word(&c.ch, 30, w30);
	tchannel_word(&c.ch, 35, w35);
	/* B's new nonce is the nonce of segment 0: reused. */
	struct tseg reuse = b;
	memcpy(reuse.nonce, c.ch.nonce, MP_NONCE_LEN);
	MpSigned *reused = tchan_transfer(&c, 1, 0, 30, &reuse, &c.ch.owner, NULL);
	struct bad_case cases[] = {
	    {"forged Transfer", forged_t, tchan_cap(&c, forged_t, 1, 0, 30, w30, &m1),
	     MP_ST(BAD_SIG), NULL},
	    {"forged Cap", honest, tchan_cap(&c, honest, 1, 0, 30, w30, &m2), MP_ST(BAD_SIG), NULL},
	    {"wrong epoch", epoch1, tchan_cap(&c, epoch1, 1, 1, 30, w30, &m1), MP_ST(NOT_HOLDER),
	     NULL},
	    {"w_cap not verifying", honest, tchan_cap(&c, honest, 1, 0, 30, junk, &m1),
	     MP_ST(BAD_CHAIN), NULL},
	    {"cap_index above declared_last", honest, tchan_cap(&c, honest, 1, 0, 35, w35, &m1),
	     MP_ST(OUT_OF_RANGE), NULL},
	    {"reused nonce", reused, tchan_cap(&c, reused, 1, 0, 30, w30, &m1), MP_ST(MALFORMED),
	     "reused"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(cases[i].want != MP_ST(OK), "%s", cases[i].name);
		expect_refused(&c, &b, &wb, &cases[i]);
		mp_stmt_free(cases[i].cp);
	}
	/* A SegmentClaim not signed by the Transfer's new owner, or naming an unknown payout
	 * account: refused, nothing stored (not even the valid pair it carries). */
	MpSigned *cp = cap0(&c, honest, 30);
	MpSigned *by_a = segment_claim_sign(c.id, 1, honest, cp, wb.account_id, &c.ch.owner);
	ck_assert_int_eq(segment_claim_send(&net, by_a, NULL, 0, NULL, NULL, 0), MP_ST(BAD_SIG));
	uint8_t nobody[MP_ID_LEN];
	ck_assert(mp_random_bytes(nobody, MP_ID_LEN));
	MpSigned *unknown = segment_claim_sign(c.id, 1, honest, cp, nobody, &b.owner);
	ck_assert_int_eq(segment_claim_send(&net, unknown, NULL, 0, NULL, NULL, 0),
			 MP_ST(UNKNOWN_ACCOUNT));
	expect_stored(&c, 0);
	/* The honest pair is then accepted. */
	MpSigned *good = segment_claim_sign(c.id, 1, honest, cp, wb.account_id, &b.owner);
	ck_assert_int_eq(segment_claim_send(&net, good, NULL, 0, NULL, NULL, 0), MP_ST(OK));
	expect_stored(&c, 1);
	mp_stmt_free(by_a);
	mp_stmt_free(unknown);
	mp_stmt_free(good);
	mp_stmt_free(cp);
	mp_stmt_free(honest);
	mp_stmt_free(forged_t);
	mp_stmt_free(epoch1);
	mp_stmt_free(reused);
	mp_key_free(&stranger);
	mp_key_free(&b.owner);
	mp_key_free(&wb.account);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

START_TEST(second_cap_for_a_segment_is_a_conflict)
{
	struct tchan c;
	struct tseg b, b2;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	tseg_make(&b2, N);
	MpSigned *t = tchan_transfer(&c, 1, 0, 30, &b, &c.ch.owner, NULL);
	MpSigned *cp = cap0(&c, t, 30);
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, NULL, 0, NULL), MP_ST(OK));
	/* The holder caps another Transfer for segment 1, and the same one again lower. */
	MpSigned *t2 = tchan_transfer(&c, 1, 0, 40, &b2, &c.ch.owner, NULL);
	MpSigned *cp2 = cap0(&c, t2, 40);
	MpSigned *cp3 = cap0(&c, t, 20);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	hash_of(cp, want);
	ck_assert_int_eq(cap_notice(&net, &m1, t2, cp2, NULL, 0, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp3, NULL, 0, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *k = json_array_get(conf, i);
		ck_assert_str_eq(json_str(k, "kind"), "double_cap");
		ck_assert_str_eq(json_str(k, "liable"), m1.mid_hex);
		ck_assert_int_eq(json_int(k, "hseq"), 0);
		ck_assert(json_is_string(json_object_get(k, "stmt_b")));
	}
	json_decref(conf);
	/* Replayed: recorded once. */
	ck_assert_int_eq(cap_notice(&net, &m1, t2, cp2, NULL, 0, NULL), MP_ST(CONFLICT));
	conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 2);
	json_decref(conf);
	/* The first pair stays. */
	json_t *segs = channel_segments(&net, c.id);
	ck_assert_int_eq(json_int(json_array_get(segs, 1), "start"), 30);
	json_decref(segs);
	expect_stored(&c, 1);
	mp_stmt_free(t), mp_stmt_free(cp), mp_stmt_free(t2), mp_stmt_free(cp2), mp_stmt_free(cp3);
	mp_key_free(&b.owner);
	mp_key_free(&b2.owner);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

/* A claim of m1 in epoch 0 at (seg_seq, index, w) carrying segments. */
struct sclaim {
	const struct tchan *c;
	uint32_t seg_seq, index;
	uint8_t w[MP_HASH_LEN];
	MpSigned **segments;
	size_t n_segments;
};

static MpEnvelope *redeem_claims(const struct sclaim *claims, size_t n)
{
	MpPoint points[4];
	Micropay__V1__Claim items[4], *ptrs[4];
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert_uint_le(n, 4);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	for (size_t i = 0; i < n; i++) {
		micropay__v1__point__init(&points[i]);
		points[i].seg_seq = claims[i].seg_seq;
		points[i].index = claims[i].index;
		points[i].w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)claims[i].w};
		micropay__v1__claim__init(&items[i]);
		items[i].channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)claims[i].c->id};
		items[i].point = &points[i];
		items[i].segments = claims[i].segments;
		items[i].n_segments = claims[i].n_segments;
		ptrs[i] = &items[i];
	}
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	rd.claims = ptrs;
	rd.n_claims = n;
	MpSigned *s = mp_stmt_sign(&m1.key, MP_STMT_REDEEM, &rd.base);
	ck_assert_ptr_nonnull(s);
	MpEnvelope *resp = redeem_as(&net, &m1, s);
	mp_stmt_free(s);
	ck_assert_uint_eq(resp->redeem_resp->n_results, n);
	return resp;
}

START_TEST(redeem_across_segments_is_exact)
{
	int64_t before = net_pending(&net, m1.mid_hex);
	struct tchan c;
	struct tseg b;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	MpSigned *pair[2];
	pair[0] = tchan_transfer(&c, 1, 0, 30, &b, &c.ch.owner, NULL);
	pair[1] = cap0(&c, pair[0], 30);
	ck_assert_int_eq(cap_notice(&net, &m1, pair[0], pair[1], NULL, 0, NULL), MP_ST(OK));
	/* Segment 0 above its cap, a segment nobody knows, then B's index 50 (u_20 of B's
	 * chain): the units of both segments in epoch 0, 30 + 20. */
	struct sclaim cl[3] = {
	    {&c, 0, 40, {0}, NULL, 0}, {&c, 2, 60, {0}, NULL, 0}, {&c, 1, 50, {0}, pair, 2}};
	tchannel_word(&c.ch, 40, cl[0].w);
	memset(cl[1].w, 0x33, MP_HASH_LEN);
	tseg_word(&b, 20, cl[2].w);
	MpEnvelope *resp = redeem_claims(cl, 3);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_claim_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "index outside its segment");
	expect_claim_result(resp, 1, MP_ST(TOO_EARLY), 0, "segment unknown");
	expect_claim_result(resp, 2, MP_ST(OK), 50, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	/* A false word in segment 1, then the next honest one: 10 more. */
	struct sclaim more[2] = {{&c, 1, 55, {0}, NULL, 0}, {&c, 1, 60, {0}, NULL, 0}};
	tseg_word(&b, 24, more[0].w); /* the word of 54, not 55 */
	tseg_word(&b, 30, more[1].w);
	resp = redeem_claims(more, 2);
	expect_claim_result(resp, 0, MP_ST(BAD_CHAIN), 0, NULL);
	expect_claim_result(resp, 1, MP_ST(OK), 10, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before, 60);
	mp_stmt_free(pair[0]);
	mp_stmt_free(pair[1]);
	mp_key_free(&b.owner);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

START_TEST(redeem_records_segments_the_broker_did_not_know)
{
	int64_t before = net_pending(&net, m1.mid_hex);
	struct tchan c;
	struct tseg b, b2;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	tseg_make(&b2, N);
	/* A gives the rest to B at 20, B gives its rest to B2 at 45; no CapNotice reached the
	 * broker. m1 claims index 70 of segment 2 with both pairs. */
	MpSigned *pairs[4];
	pairs[0] = tchan_transfer(&c, 1, 0, 20, &b, &c.ch.owner, NULL);
	pairs[1] = cap0(&c, pairs[0], 20);
	pairs[2] = tchan_transfer(&c, 2, 0, 45, &b2, &b.owner, pairs[0]);
	uint8_t w45[MP_HASH_LEN];
	tseg_word(&b, 25, w45);
	pairs[3] = tchan_cap(&c, pairs[2], 2, 0, 45, w45, &m1);
	struct sclaim cl[1] = {{&c, 2, 70, {0}, pairs, 4}};
	tseg_word(&b2, 25, cl[0].w);
	MpEnvelope *resp = redeem_claims(cl, 1);
	expect_claim_result(resp, 0, MP_ST(OK), 70, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before, 70);
	expect_stored(&c, 2);
	json_t *segs = channel_segments(&net, c.id);
	ck_assert_int_eq(json_int(json_array_get(segs, 1), "start"), 20);
	ck_assert_int_eq(json_int(json_array_get(segs, 1), "cap_index"), 45);
	ck_assert_int_eq(json_int(json_array_get(segs, 2), "start"), 45);
	ck_assert(json_is_null(json_object_get(json_array_get(segs, 2), "noticed")));
	json_decref(segs);
	/* B2's SegmentClaim for segment 2 is then acknowledged from the recorded pairs. */
	struct twallet w2;
	tchan_register_wallet(&net, &w2);
	MpSigned *sc = segment_claim_sign(c.id, 2, pairs[2], pairs[3], w2.account_id, &b2.owner);
	ck_assert_int_eq(segment_claim_send(&net, sc, NULL, 0, NULL, NULL, 0), MP_ST(OK));
	mp_stmt_free(sc);
	mp_key_free(&w2.account);
	for (size_t i = 0; i < 4; i++)
		mp_stmt_free(pairs[i]);
	mp_key_free(&b.owner);
	mp_key_free(&b2.owner);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

START_TEST(segment_claim_carries_the_pairs_before_it)
{
	struct tchan c;
	struct tseg b, b2;
	struct twallet w2;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	tseg_make(&b2, N);
	tchan_register_wallet(&net, &w2);
	MpSigned *pairs[2];
	pairs[0] = tchan_transfer(&c, 1, 0, 10, &b, &c.ch.owner, NULL);
	pairs[1] = cap0(&c, pairs[0], 10);
	MpSigned *t2 = tchan_transfer(&c, 2, 0, 40, &b2, &b.owner, pairs[0]);
	uint8_t w40[MP_HASH_LEN];
	tseg_word(&b, 30, w40);
	MpSigned *c2 = tchan_cap(&c, t2, 2, 0, 40, w40, &m1);
	MpSigned *sc = segment_claim_sign(c.id, 2, t2, c2, w2.account_id, &b2.owner);
	/* Without the pair before it the broker cannot know segment 1's owner. */
	ck_assert_int_eq(segment_claim_send(&net, sc, NULL, 0, NULL, NULL, 0), MP_ST(TOO_EARLY));
	expect_stored(&c, 0);
	ck_assert_int_eq(segment_claim_send(&net, sc, pairs, 2, NULL, NULL, 0), MP_ST(OK));
	expect_stored(&c, 2);
	json_t *segs = channel_segments(&net, c.id);
	char acct[MP_HEX_ID_LEN + 1];
	hex_of(w2.account_id, MP_ID_LEN, acct);
	ck_assert_str_eq(json_str(json_array_get(segs, 2), "payout_account"), acct);
	ck_assert(json_is_null(json_object_get(json_array_get(segs, 1), "payout_account")));
	json_decref(segs);
	mp_stmt_free(sc), mp_stmt_free(t2), mp_stmt_free(c2);
	mp_stmt_free(pairs[0]), mp_stmt_free(pairs[1]);
	mp_key_free(&b.owner);
	mp_key_free(&b2.owner);
	mp_key_free(&w2.account);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

/* Whether the audit's segments_backed_by_transfers check names segment seg_seq of c. */
static bool audit_names_segment(const struct tchan *c, uint32_t seg_seq)
{
	json_t *audit = admin_ok(&net, "broker", "audit", NULL);
	json_t *checks = json_object_get(audit, "checks");
	char want[MP_HEX_ID_LEN + 16], hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	snprintf(want, sizeof(want), "%s/%u", hex, seg_seq);
	bool found = false, seen = false;
	size_t i, k;
	json_t *item, *id;
	json_array_foreach(checks, i, item)
	{
		if (strcmp(json_str(item, "check"), "segments_backed_by_transfers") != 0)
			continue;
		seen = true;
		json_array_foreach(json_object_get(item, "offenders"), k, id)
		{
			found = found || strcmp(json_string_value(id), want) == 0;
		}
	}
	json_decref(audit);
	ck_assert_msg(seen, "the audit has no segments_backed_by_transfers check");
	return found;
}

START_TEST(audit_checks_segments_and_limit_is_enforced)
{
	struct tchan c;
	struct tseg b;
	tchan_issue(&net, &c, N, &m1);
	tseg_make(&b, N);
	/* A 16th segment is refused before anything is verified. */
	MpSigned *t16 = tchan_transfer(&c, 16, 0, 30, &b, &c.ch.owner, NULL);
	MpSigned *c16 = tchan_cap(&c, t16, 16, 0, 30, b.root, &m1);
	ck_assert_int_eq(cap_notice(&net, &m1, t16, c16, NULL, 0, NULL), MP_ST(LIMIT));
	expect_stored(&c, 0);
	MpSigned *t = tchan_transfer(&c, 1, 0, 30, &b, &c.ch.owner, NULL);
	MpSigned *cp = cap0(&c, t, 30);
	ck_assert_int_eq(cap_notice(&net, &m1, t, cp, NULL, 0, NULL), MP_ST(OK));
	ck_assert(!audit_names_segment(&c, 1));
	/* A segment whose start is not its Cap's index is named by the audit. */
	char lit[2 * MP_ID_LEN + 32];
	sql_bytea(c.id, MP_ID_LEN, lit, sizeof(lit));
	sql_exec(&net,
		 "UPDATE segment_transfers SET cap_index = cap_index - 1 WHERE channel_id = %s",
		 lit);
	ck_assert(audit_names_segment(&c, 1));
	sql_exec(&net,
		 "UPDATE segment_transfers SET cap_index = cap_index + 1 WHERE channel_id = %s",
		 lit);
	ck_assert(!audit_names_segment(&c, 1));
	mp_stmt_free(t16), mp_stmt_free(c16), mp_stmt_free(t), mp_stmt_free(cp);
	mp_key_free(&b.owner);
	tchan_release(&c);
	net_audit_clean(&net);
}
END_TEST

static Suite *segment_claim_suite(void)
{
	Suite *s = suite_create("segment_claim");
	TCase *tc = tcase_create("segments");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, cap_notice_records_the_segment);
	tcase_add_test(tc, segment_claim_records_the_payout_account);
	tcase_add_test(tc, bad_hand_overs_are_refused_and_change_nothing);
	tcase_add_test(tc, second_cap_for_a_segment_is_a_conflict);
	tcase_add_test(tc, redeem_across_segments_is_exact);
	tcase_add_test(tc, redeem_records_segments_the_broker_did_not_know);
	tcase_add_test(tc, segment_claim_carries_the_pairs_before_it);
	tcase_add_test(tc, audit_checks_segments_and_limit_is_enforced);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(segment_claim_suite());
}
