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
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant m1, m2, m3;

static void setup_net(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	tmerchant_load(&m3, &net, "m3");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	tmerchant_free(&m3);
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

static int64_t pending_of(const struct tmerchant *tm)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", tm->mid_hex);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	json_t *rel = json_array_get(json_object_get(acc, "related"), 0);
	ck_assert_str_eq(json_str(rel, "kind"), "merchant_pending");
	int64_t b = json_int(rel, "balance");
	json_decref(acc);
	return b;
}

/* A funded wallet's channel of N units of 1, holder0 = m1. */
struct tchan {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	uint8_t cert_hash[MP_HASH_LEN];
};

static void issue_held_by(struct tchan *c, const struct tmerchant *holder0);

static void issue(struct tchan *c)
{
	issue_held_by(c, &m1);
}

static void issue_held_by(struct tchan *c, const struct tmerchant *holder0)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&c->tw, &b);
	char hex[MP_HEX_ID_LEN + 1], params[200], fund_hex[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	mp_hex_encode(c->tw.account_id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%d,\"fund_id\":\"%s\"}",
		 hex, N, fund_hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
	tchannel_make(&c->ch, &c->tw, N, 1, holder0->mid);
	ck_assert_int_eq(tchannel_issue(&c->ch, &b), MP_ST(OK));
	wire_close(&b);
	tchannel_id(&c->ch, c->id);
	mp_stmt_hash(c->ch.cert, c->cert_hash);
}

static void release(struct tchan *c)
{
	tchannel_free(&c->ch);
	mp_key_free(&c->tw.account);
}

/* Handoff hseq from `from` (the signer) to `to` at index at, linked to prev (NULL: the cert).
 * w: the word at `at`, or NULL for the channel's true word. */
static MpSigned *handoff(const struct tchan *c, uint32_t hseq, const struct tmerchant *from,
			 const struct tmerchant *to, uint32_t at, const MpSigned *prev,
			 const uint8_t *w)
{
	uint8_t word[MP_HASH_LEN], prev_hash[MP_HASH_LEN], move_hash[MP_HASH_LEN];
	if (w)
		memcpy(word, w, MP_HASH_LEN);
	else
		tchannel_word(&c->ch, at, word);
	if (prev)
		mp_stmt_hash(prev, prev_hash);
	else
		memcpy(prev_hash, c->cert_hash, MP_HASH_LEN);
	memset(move_hash, 0x4d, sizeof(move_hash)); /* the broker does not see Moves */
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = at;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Handoff h = MICROPAY__V1__HANDOFF__INIT;
	h.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	h.hseq = hseq;
	h.from_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)from->mid};
	h.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to->mid};
	h.point = &pt;
	h.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)c->cert_hash};
	h.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, prev_hash};
	h.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	MpSigned *s = mp_stmt_sign(&from->key, MP_STMT_HANDOFF, &h.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* One claim with its custody evidence. */
struct cclaim {
	const struct tchan *c;
	uint32_t hseq, index;
	MpSigned **custody;
	size_t n_custody;
};

static MpSigned *redeem_stmt(const struct tmerchant *tm, const struct cclaim *claims, size_t n)
{
	MpPoint points[8];
	Micropay__V1__Claim items[8], *ptrs[8];
	uint8_t words[8][MP_HASH_LEN], redeem_id[MP_ID_LEN];
	ck_assert_uint_le(n, 8);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	for (size_t i = 0; i < n; i++) {
		tchannel_word(&claims[i].c->ch, claims[i].index, words[i]);
		micropay__v1__point__init(&points[i]);
		points[i].index = claims[i].index;
		points[i].w = (ProtobufCBinaryData){MP_HASH_LEN, words[i]};
		micropay__v1__claim__init(&items[i]);
		items[i].channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)claims[i].c->id};
		items[i].hseq_in = claims[i].hseq;
		items[i].point = &points[i];
		items[i].custody = claims[i].custody;
		items[i].n_custody = claims[i].n_custody;
		ptrs[i] = &items[i];
	}
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)tm->mid};
	rd.claims = ptrs;
	rd.n_claims = n;
	MpSigned *s = mp_stmt_sign(&tm->key, MP_STMT_REDEEM, &rd.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Redeem as tm over mutual TLS; returns the answer (the caller frees it). */
static MpEnvelope *redeem_as(const struct tmerchant *tm, const MpSigned *stmt)
{
	struct wire w;
	tmerchant_connect(tm, &w, broker_ep, ca);
	MpEnvelope *resp = redeem_call(&w, stmt);
	wire_close(&w);
	return resp;
}

/* Claim result i must have this status and credited amount. */
static void expect_result(const MpEnvelope *resp, size_t i, MpCode status, uint64_t amount,
			  const char *detail_part)
{
	const Micropay__V1__RedeemResp *r = resp->redeem_resp;
	ck_assert_uint_gt(r->n_results, i);
	const Micropay__V1__ClaimResult *cr = r->results[i];
	ck_assert_msg(cr->status == status, "claim %zu: %s (%s), want %s", i,
		      mp_code_name(cr->status), cr->detail, mp_code_name(status));
	ck_assert_uint_eq(cr->credited_amount, amount);
	if (detail_part)
		ck_assert_msg(strstr(cr->detail, detail_part), "claim %zu: detail '%s' lacks '%s'",
			      i, cr->detail, detail_part);
}

/* Redeem, expect every claim's status and amount; replay it, expect DUPLICATE_OK with the same
 * results. */
static void redeem_expect(const struct tmerchant *tm, const struct cclaim *claims, size_t n,
			  const MpCode *status, const uint64_t *amount)
{
	MpSigned *s = redeem_stmt(tm, claims, n);
	for (int round = 0; round < 2; round++) {
		MpEnvelope *resp = redeem_as(tm, s);
		ck_assert_int_eq(resp->redeem_resp->status->code,
				 round ? MP_ST(DUPLICATE_OK) : MP_ST(OK));
		ck_assert_uint_eq(resp->redeem_resp->n_results, n);
		for (size_t i = 0; i < n; i++)
			expect_result(resp, i, status[i], amount[i], NULL);
		micropay__v1__envelope__free_unpacked(resp, NULL);
	}
	mp_stmt_free(s);
}

/* The recorded conflicts of a channel, as the admin method lists them. */
static json_t *conflicts_of(const struct tchan *c)
{
	json_t *all = admin_ok(&net, "broker", "conflicts", NULL);
	json_t *list = json_object_get(all, "conflicts");
	ck_assert(json_is_array(list));
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	json_t *mine = json_array();
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		if (strcmp(json_str(item, "channel"), hex) == 0)
			json_array_append(mine, item);
	}
	json_decref(all);
	return mine;
}

static void expect_conflict(json_t *list, const char *kind, uint32_t hseq,
			    const struct tmerchant *liable)
{
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		if (strcmp(json_str(item, "kind"), kind) == 0 && json_int(item, "hseq") == hseq &&
		    strcmp(json_str(item, "liable"), liable->mid_hex) == 0) {
			ck_assert(strlen(json_str(item, "stmt_a")) > 0);
			ck_assert(json_is_string(json_object_get(item, "stmt_b")));
			return;
		}
	}
	char *text = json_dumps(list, JSON_COMPACT);
	ck_abort_msg("no %s conflict at hseq %u against %s in %s", kind, hseq, liable->mid_hex,
		     text);
	free(text);
}

static void free_all(MpSigned **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mp_stmt_free(s[i]);
}

/* A new owner's segment material (what B's offer carries) and its key. */
struct tseg {
	struct mp_key owner;
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN], root[MP_HASH_LEN];
	uint32_t len;
};

static void seg_make(struct tseg *s, uint32_t len)
{
	uint8_t owner_seed[MP_SK_LEN];
	ck_assert(mp_random_bytes(s->seed, sizeof(s->seed)));
	ck_assert(mp_random_bytes(s->nonce, sizeof(s->nonce)));
	ck_assert(mp_key_generate(&s->owner, owner_seed));
	s->len = len;
	struct mp_hasher *h = mp_hasher_new();
	ck_assert_int_eq(mp_chain_generate(h, s->seed, s->nonce, len, 0, NULL, NULL, s->root), 0);
	mp_hasher_free(h);
}

/* The word of chain-relative index k of s. */
static void seg_word(const struct tseg *s, uint32_t k, uint8_t out[MP_HASH_LEN])
{
	struct mp_hasher *h = mp_hasher_new();
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, s->seed, s->nonce, top);
	mp_chain_walk(h, s->nonce, s->len, top, k, out);
	mp_hasher_free(h);
}

/* Transfer seg_seq of c to `to`, signed by `signer`; prev: Transfer seg_seq-1 (NULL: cert). */
static MpSigned *transfer(const struct tchan *c, uint32_t seg_seq, uint32_t epoch,
			  uint32_t declared_last, const struct tseg *to,
			  const struct mp_key *signer, const MpSigned *prev)
{
	uint8_t prev_hash[MP_HASH_LEN];
	if (prev)
		mp_stmt_hash(prev, prev_hash);
	else
		memcpy(prev_hash, c->cert_hash, MP_HASH_LEN);
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	t.new_seg_seq = seg_seq;
	t.holder_epoch = epoch;
	t.declared_last = declared_last;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)to->owner.pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, (uint8_t *)to->nonce};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)to->root};
	t.new_len = to->len;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, prev_hash};
	t.valid_until = (uint64_t)mp_wall_clock_s() + 3600;
	MpSigned *s = mp_stmt_sign(signer, MP_STMT_TRANSFER, &t.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Cap of Transfer t signed by `by` in epoch hseq at point (seg_seq - 1, at, w). */
static MpSigned *cap(const struct tchan *c, const MpSigned *t, uint32_t seg_seq, uint32_t hseq,
		     uint32_t at, const uint8_t w[MP_HASH_LEN], const struct tmerchant *by)
{
	uint8_t t_hash[MP_HASH_LEN], word[MP_HASH_LEN];
	mp_stmt_hash(t, t_hash);
	memcpy(word, w, MP_HASH_LEN);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = seg_seq - 1;
	pt.index = at;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Cap cp = MICROPAY__V1__CAP__INIT;
	cp.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	cp.new_seg_seq = seg_seq;
	cp.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, t_hash};
	cp.hseq = hseq;
	cp.point = &pt;
	MpSigned *s = mp_stmt_sign(&by->key, MP_STMT_CAP, &cp.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* A CapNoticeReq as merchant tm (NULL: no client certificate); returns the status code, the
 * evidence's stmt_hash into evidence (if not NULL; zeros when none). */
static MpCode cap_notice(const struct tmerchant *tm, MpSigned *t, MpSigned *cp, MpSigned **pairs,
			 size_t n_pairs, uint8_t evidence[MP_HASH_LEN])
{
	struct wire w;
	if (tm)
		tmerchant_connect(tm, &w, broker_ep, ca);
	else
		ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	Micropay__V1__CapNoticeReq req = MICROPAY__V1__CAP_NOTICE_REQ__INIT;
	req.transfer = t;
	req.cap = cp;
	req.segments = pairs;
	req.n_segments = n_pairs;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CAP_NOTICE_REQ);
	env.cap_notice_req = &req;
	MpEnvelope *resp = wire_call(&w, &env);
	wire_close(&w);
	ck_assert(resp && resp->body_case == MP_BODY(CAP_NOTICE_RESP));
	const MpStatus *st = resp->cap_notice_resp->status;
	MpCode code = st->code;
	if (evidence) {
		memset(evidence, 0, MP_HASH_LEN);
		if (st->evidence)
			mp_stmt_hash(st->evidence, evidence);
	}
	ck_assert_uint_gt(resp->cap_notice_resp->broker_time, 0);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

static json_t *segments_of(const struct tchan *c)
{
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", hex);
	json_t *all = admin_ok(&net, "broker", "channel.segments", params);
	json_t *list = json_object_get(all, "segments");
	ck_assert(json_is_array(list));
	json_incref(list);
	json_decref(all);
	return list;
}

/* A customer transfer of c's segment 0 capped by m1 in epoch 0 at `at` (A's true word). */
struct tcap {
	struct tseg b;
	MpSigned *pair[2]; /* Transfer 1, Cap 1 */
};

static void cap_by_m1(struct tcap *x, const struct tchan *c, uint32_t at)
{
	uint8_t w[MP_HASH_LEN];
	seg_make(&x->b, N);
	x->pair[0] = transfer(c, 1, 0, at, &x->b, &c->ch.owner, NULL);
	tchannel_word(&c->ch, at, w);
	x->pair[1] = cap(c, x->pair[0], 1, 0, at, w, &m1);
}

static void tcap_free(struct tcap *x)
{
	free_all(x->pair, 2);
	mp_key_free(&x->b.owner);
}

/* B's SegmentClaimReq for segment 1 (its payout account: a fresh wallet's); the status. */
static MpCode b_claims(const struct tcap *x, const struct tchan *c, uint8_t ev[MP_HASH_LEN])
{
	struct twallet wb;
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	twallet_register(&wb, &w);
	wire_close(&w);
	Micropay__V1__SegmentClaim sc = MICROPAY__V1__SEGMENT_CLAIM__INIT;
	sc.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	sc.seg_seq = 1;
	sc.transfer = x->pair[0];
	sc.cap = x->pair[1];
	sc.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, wb.account_id};
	MpSigned *stmt = mp_stmt_sign(&x->b.owner, MP_STMT_SEGMENT_CLAIM, &sc.base);
	ck_assert_ptr_nonnull(stmt);
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	Micropay__V1__SegmentClaimReq req = MICROPAY__V1__SEGMENT_CLAIM_REQ__INIT;
	req.stmt = stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(SEGMENT_CLAIM_REQ);
	env.segment_claim_req = &req;
	MpEnvelope *resp = wire_call(&w, &env);
	wire_close(&w);
	ck_assert(resp && resp->body_case == MP_BODY(SEGMENT_CLAIM_RESP));
	const MpStatus *st = resp->segment_claim_resp->status;
	MpCode code = st->code;
	memset(ev, 0, MP_HASH_LEN);
	if (st->evidence)
		mp_stmt_hash(st->evidence, ev);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(stmt);
	mp_key_free(&wb.account);
	return code;
}

/* Exactly one conflict for c: cap_after_handoff in epoch 0 against m1, the Cap as stmt_a. */
static void expect_cap_after_handoff(const struct tchan *c, const MpSigned *cp)
{
	json_t *conf = conflicts_of(c);
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
	json_t *segs = segments_of(c);
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
	seg_word(&x->b, index - 20, w);
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
	MpEnvelope *resp = redeem_as(&m1, s);
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

/* m1 hands off to m2 at 10, then caps a transfer of segment 0 in its old epoch at 5: the
 * Handoff (point in segment 0) does not include the Transfer. The broker learns the Handoff
 * first (m2's Redeem), then the Cap (m1's notice, B's claim). */
START_TEST(cap_after_own_handoff_handoff_first)
{
	int64_t before1 = pending_of(&m1), before2 = pending_of(&m2);
	struct tchan c;
	issue(&c);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct tcap x;
	cap_by_m1(&x, &c, 5);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	mp_stmt_hash(h[0], want);
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(cap_notice(&m1, x.pair[0], x.pair[1], NULL, 0, ev),
				 MP_ST(CONFLICT));
		ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	}
	ck_assert_int_eq(b_claims(&x, &c, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	expect_cap_after_handoff(&c, x.pair[1]);
	expect_segment_1_void(&c);
	/* The honest successor is paid past the void cap; m1 its own range. */
	struct cclaim more[] = {{&c, 1, 60, h, 1}};
	redeem_expect(&m2, more, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	redeem_expect(&m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	ck_assert_int_eq(pending_of(&m2) - before2, 50);
	expect_cap_after_handoff(&c, x.pair[1]);
	tcap_free(&x);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

/* The same misbehaviour learned in the other order: m1's Cap at 20 first (notice and B's claim
 * acknowledged), then m2's Redeem with m1's Handoff 1 at 10. The segment is voided then. */
START_TEST(cap_after_own_handoff_cap_first)
{
	int64_t before1 = pending_of(&m1), before2 = pending_of(&m2);
	struct tchan c;
	issue(&c);
	struct tcap x;
	cap_by_m1(&x, &c, 20);
	uint8_t ev[MP_HASH_LEN], want[MP_HASH_LEN];
	ck_assert_int_eq(cap_notice(&m1, x.pair[0], x.pair[1], NULL, 0, NULL), MP_ST(OK));
	ck_assert_int_eq(b_claims(&x, &c, ev), MP_ST(OK));
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* m2 is paid above the void cap at 20: its Handoff defines its segment. */
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	expect_cap_after_handoff(&c, x.pair[1]);
	expect_segment_1_void(&c);
	/* The Cap again: CONFLICT with the Handoff; recorded once. */
	mp_stmt_hash(h[0], want);
	ck_assert_int_eq(cap_notice(&m1, x.pair[0], x.pair[1], NULL, 0, ev), MP_ST(CONFLICT));
	ck_assert_mem_eq(ev, want, MP_HASH_LEN);
	expect_cap_after_handoff(&c, x.pair[1]);
	/* m1 cannot be paid in the void segment: without its Handoff the claim is above that
	 * Handoff; with it, the evidence contradicts itself (the Handoff's point is in segment 0
	 * while the Cap before it started segment 1). */
	ck_assert_int_eq(m1_claims_in_segment_1(&c, &x, 25, NULL, 0), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(m1_claims_in_segment_1(&c, &x, 25, h, 1), MP_ST(MALFORMED));
	/* m1's own range only. */
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	redeem_expect(&m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	ck_assert_int_eq(pending_of(&m2) - before2, 20);
	tcap_free(&x);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

/* A Cap consistent with the signer's later Handoff (the Handoff's point in the new segment,
 * at or above the cap): no conflict, nothing void. */
START_TEST(cap_before_own_handoff_is_consistent)
{
	struct tchan c;
	issue(&c);
	struct tcap x;
	cap_by_m1(&x, &c, 20);
	ck_assert_int_eq(cap_notice(&m1, x.pair[0], x.pair[1], NULL, 0, NULL), MP_ST(OK));
	/* Handoff 1 from m1 to m2 at B's index 30 in segment 1. */
	uint8_t word[MP_HASH_LEN], prev_hash[MP_HASH_LEN], move_hash[MP_HASH_LEN],
	    head[MP_HASH_LEN];
	seg_word(&x.b, 10, word);
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
	int64_t before2 = pending_of(&m2);
	MpSigned *custody[1] = {h};
	uint8_t w40[MP_HASH_LEN];
	seg_word(&x.b, 20, w40);
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
	MpEnvelope *resp = redeem_as(&m2, s);
	expect_result(resp, 0, MP_ST(OK), 10, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	ck_assert_int_eq(pending_of(&m2) - before2, 10);
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	json_t *segs = segments_of(&c);
	ck_assert(json_is_false(json_object_get(json_array_get(segs, 1), "voided")));
	json_decref(segs);
	mp_stmt_free(s);
	mp_stmt_free(h);
	tcap_free(&x);
	release(&c);
	audit_clean();
}
END_TEST

/* merchantd resends a Redeem verbatim; one it signed before its Handoff cannot list that
 * Handoff. Neither its replay nor its late first delivery is an omitted custody statement. */
START_TEST(redeem_signed_before_own_handoff_is_no_omission)
{
	int64_t before1 = pending_of(&m1), before2 = pending_of(&m2);
	struct tchan c;
	issue(&c);
	/* m1 signs two Redeems of epoch 0 (at 5 and at 10) with its complete record then: no
	 * Handoff. It sends the first; then it hands off at 10. */
	struct cclaim at5[] = {{&c, 0, 5, NULL, 0}}, at10[] = {{&c, 0, 10, NULL, 0}};
	MpSigned *r5 = redeem_stmt(&m1, at5, 1), *r10 = redeem_stmt(&m1, at10, 1);
	MpEnvelope *resp = redeem_as(&m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* m2 redeems first with the Handoff: the broker stores it. */
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* The replay of the first Redeem and the first delivery of the second. */
	resp = redeem_as(&m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	resp = redeem_as(&m1, r10);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = conflicts_of(&c);
	ck_assert_msg(json_array_size(conf) == 0, "conflicts recorded against honest merchants");
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	ck_assert_int_eq(pending_of(&m2) - before2, 20);
	/* A claim that relies on holding past the omitted Handoff is still the conflict, with the
	 * claim above it; nothing more is paid. */
	struct cclaim past[] = {{&c, 0, 11, NULL, 0}};
	MpSigned *s = redeem_stmt(&m1, past, 1);
	resp = redeem_as(&m1, s);
	expect_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 1");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 2);
	expect_conflict(conf, "omitted_custody", 1, &m1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	mp_stmt_free(r5);
	mp_stmt_free(r10);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

/* A Redeem of a later epoch signed before the claimant's next Handoff: the chain M1 -> M2 ->
 * M1, m1 claims epoch 2 with custody 1..2; the broker then learns m1's Handoff 3 to m3. */
START_TEST(later_epoch_redeem_before_next_handoff_is_no_omission)
{
	int64_t before1 = pending_of(&m1), before3 = pending_of(&m3);
	struct tchan c;
	issue(&c);
	MpSigned *h[3];
	h[0] = handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = handoff(&c, 2, &m2, &m1, 20, h[0], NULL);
	struct cclaim mine[] = {{&c, 0, 10, h, 2}, {&c, 2, 40, h, 2}};
	MpSigned *r = redeem_stmt(&m1, mine, 2);
	h[2] = handoff(&c, 3, &m1, &m3, 40, h[1], NULL);
	struct cclaim c3[] = {{&c, 3, 60, h, 3}};
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	MpEnvelope *resp = redeem_as(&m1, r);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 10, NULL);
	expect_result(resp, 1, MP_ST(OK), 20, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 30);
	ck_assert_int_eq(pending_of(&m3) - before3, 20);
	mp_stmt_free(r);
	free_all(h, 3);
	release(&c);
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
	struct tmerchant m4;
	ck_assert_int_eq(net_cmd(&net, "merchant", "m4"), 0);
	tmerchant_load(&m4, &net, "m4");
	ck_assert_int_eq(loss_reserve(), 0);
	/* m4 earns 6 of pending credit on channel d, and posts a bond of 4. */
	struct tchan d, c;
	issue_held_by(&d, &m4);
	struct cclaim own[] = {{&d, 0, 6, NULL, 0}};
	redeem_expect(&m4, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){6});
	net_post_bond(&net, m4.mid_hex, 4);
	ck_assert_int_eq(pending_of(&m4), 6);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 4);
	int64_t before2 = pending_of(&m2), before3 = pending_of(&m3);

	issue_held_by(&c, &m4);
	MpSigned *a[1] = {handoff(&c, 1, &m4, &m2, 10, NULL, NULL)};
	MpSigned *b[1] = {handoff(&c, 1, &m4, &m3, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, a, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* m3's branch: (10, 32] overlaps m2's (10, 30] by 20 units; 6 + 4 + 0 cannot cover. */
	struct cclaim c3[] = {{&c, 1, 32, b, 1}};
	MpSigned *r3 = redeem_stmt(&m3, c3, 1);
	MpEnvelope *resp = redeem_as(&m3, r3);
	expect_result(resp, 0, MP_ST(INSUFFICIENT_FUNDS), 0, "fork excess of 20 not covered");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(r3);
	json_t *conf = conflicts_of(&c);
	expect_conflict(conf, "double_handoff", 1, &m4);
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m3), before3);
	ck_assert_int_eq(pending_of(&m4), 6);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 4);
	ck_assert_int_eq(escrow_of(&c), N - 20);
	audit_clean();

	/* The operator funds the loss reserve; m3 claims again: 2 units from the escrow, 20 of
	 * excess from m4's pending (6), its bond (4) and the reserve (10). */
	char params[128], id[MP_HEX_ID_LEN + 1];
	snprintf(params, sizeof(params), "{\"amount\":15,\"fund_id\":\"%s\"}", new_id_hex(id));
	json_decref(admin_ok(&net, "broker", "loss_reserve.fund", params));
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){22});
	ck_assert_int_eq(pending_of(&m3) - before3, 22);
	ck_assert_int_eq(pending_of(&m4), 0);
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
	redeem_expect(&m2, more, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(pending_of(&m2) - before2, 30);
	ck_assert_int_eq(pending_of(&m3) - before3, 22);
	ck_assert_int_eq(net_merchant_balance(&net, m4.mid_hex, "merchant_bond"), 8);
	ck_assert_int_eq(escrow_of(&c), N - 30);
	col = collected_of(&c);
	ck_assert_str_eq(col, "6 6 10");
	free(col);
	free_all(a, 1);
	free_all(b, 1);
	release(&c);
	release(&d);
	tmerchant_free(&m4);
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
	tcase_add_test(tc, fork_both_branches_paid_excess_from_pending_bond_reserve);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(conflicts_suite());
}
