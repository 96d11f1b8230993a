#include "harness_custody.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness_ledger.h"

#define MAX_CLAIMS 8

static void broker_of(const struct net *n, char ca[700], char ep[128])
{
	net_path(n, "tls/ca.crt", ca, 700);
	net_read(n, "broker", "endpoint", ep, 128);
}

void tchan_register_wallet(const struct net *n, struct twallet *tw)
{
	char ca[700], ep[128];
	struct wire b;
	broker_of(n, ca, ep);
	ck_assert(wire_connect(&b, ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	wire_close(&b);
}

void channel_issue_funded(const struct net *n, struct twallet *tw, struct tchannel *ch,
			  uint32_t n_units, const uint8_t holder0[MP_ID_LEN])
{
	char ca[700], ep[128];
	struct wire b;
	broker_of(n, ca, ep);
	ck_assert(wire_connect(&b, ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	net_fund_id(n, tw->account_id, n_units);
	tchannel_make(ch, tw, n_units, 1, holder0);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
}

void tchan_issue(const struct net *n, struct tchan *c, uint32_t n_units,
		 const struct tmerchant *holder0)
{
	channel_issue_funded(n, &c->tw, &c->ch, n_units, holder0->mid);
	tchannel_id(&c->ch, c->id);
	mp_stmt_hash(c->ch.cert, c->cert_hash);
}

void tchan_release(struct tchan *c)
{
	tchannel_free(&c->ch);
	mp_key_free(&c->tw.account);
}

MpSigned *tchan_handoff(const struct tchan *c, uint32_t hseq, const struct tmerchant *from,
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

MpSigned *cclaim_redeem(const struct tmerchant *tm, const struct cclaim *claims, size_t count)
{
	MpPoint points[MAX_CLAIMS];
	Micropay__V1__Claim items[MAX_CLAIMS], *ptrs[MAX_CLAIMS];
	uint8_t words[MAX_CLAIMS][MP_HASH_LEN], redeem_id[MP_ID_LEN];
	ck_assert_uint_le(count, MAX_CLAIMS);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	for (size_t i = 0; i < count; i++) {
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
	rd.n_claims = count;
	MpSigned *s = mp_stmt_sign(&tm->key, MP_STMT_REDEEM, &rd.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

MpEnvelope *redeem_as(const struct net *n, const struct tmerchant *tm, const MpSigned *stmt)
{
	char ca[700], ep[128];
	struct wire w;
	broker_of(n, ca, ep);
	tmerchant_connect(tm, &w, ep, ca);
	MpEnvelope *resp = redeem_call(&w, stmt);
	wire_close(&w);
	return resp;
}

void expect_claim_result(const MpEnvelope *resp, size_t i, MpCode status, uint64_t amount,
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

void cclaim_redeem_expect(const struct net *n, const struct tmerchant *tm,
			  const struct cclaim *claims, size_t count, const MpCode *status,
			  const uint64_t *amount)
{
	MpSigned *s = cclaim_redeem(tm, claims, count);
	for (int round = 0; round < 2; round++) {
		MpEnvelope *resp = redeem_as(n, tm, s);
		ck_assert_int_eq(resp->redeem_resp->status->code,
				 round ? MP_ST(DUPLICATE_OK) : MP_ST(OK));
		ck_assert_uint_eq(resp->redeem_resp->n_results, count);
		for (size_t i = 0; i < count; i++)
			expect_claim_result(resp, i, status[i], amount[i], NULL);
		micropay__v1__envelope__free_unpacked(resp, NULL);
	}
	mp_stmt_free(s);
}

json_t *channel_conflicts(const struct net *n, const uint8_t channel_id[MP_ID_LEN])
{
	json_t *all = admin_ok(n, "broker", "conflicts", NULL);
	json_t *list = json_object_get(all, "conflicts");
	ck_assert(json_is_array(list));
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(channel_id, MP_ID_LEN, hex);
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

void expect_conflict(json_t *list, const char *kind, uint32_t hseq, const struct tmerchant *liable)
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

json_t *channel_segments(const struct net *n, const uint8_t channel_id[MP_ID_LEN])
{
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(channel_id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", hex);
	json_t *all = admin_ok(n, "broker", "channel.segments", params);
	json_t *list = json_object_get(all, "segments");
	ck_assert(json_is_array(list));
	json_incref(list);
	json_decref(all);
	return list;
}

void stmts_free(MpSigned **s, size_t count)
{
	for (size_t i = 0; i < count; i++)
		mp_stmt_free(s[i]);
}

void tseg_make(struct tseg *s, uint32_t len)
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

void tseg_word(const struct tseg *s, uint32_t k, uint8_t out[MP_HASH_LEN])
{
	struct mp_hasher *h = mp_hasher_new();
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, s->seed, s->nonce, top);
	mp_chain_walk(h, s->nonce, s->len, top, k, out);
	mp_hasher_free(h);
}

MpSigned *transfer_sign(const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq, uint32_t epoch,
			uint32_t declared_last, const struct tseg *to, const struct mp_key *signer,
			const uint8_t prev_hash[MP_HASH_LEN])
{
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)channel_id};
	t.new_seg_seq = seg_seq;
	t.holder_epoch = epoch;
	t.declared_last = declared_last;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)to->owner.pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, (uint8_t *)to->nonce};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)to->root};
	t.new_len = to->len;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)prev_hash};
	t.valid_until = (uint64_t)mp_wall_clock_s() + 3600;
	MpSigned *s = mp_stmt_sign(signer, MP_STMT_TRANSFER, &t.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

MpSigned *tchan_transfer(const struct tchan *c, uint32_t seg_seq, uint32_t epoch,
			 uint32_t declared_last, const struct tseg *to, const struct mp_key *signer,
			 const MpSigned *prev)
{
	uint8_t prev_hash[MP_HASH_LEN];
	if (prev)
		mp_stmt_hash(prev, prev_hash);
	else
		memcpy(prev_hash, c->cert_hash, MP_HASH_LEN);
	return transfer_sign(c->id, seg_seq, epoch, declared_last, to, signer, prev_hash);
}

MpSigned *tchan_cap(const struct tchan *c, const MpSigned *t, uint32_t seg_seq, uint32_t hseq,
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

/* The status of an answer's Status into code; its evidence's stmt_hash into evidence. */
static MpCode status_evidence(const MpStatus *st, uint8_t evidence[MP_HASH_LEN])
{
	if (evidence) {
		memset(evidence, 0, MP_HASH_LEN);
		if (st->evidence)
			mp_stmt_hash(st->evidence, evidence);
	}
	return st->code;
}

MpCode cap_notice(const struct net *n, const struct tmerchant *tm, MpSigned *t, MpSigned *cp,
		  MpSigned **pairs, size_t n_pairs, uint8_t evidence[MP_HASH_LEN])
{
	char ca[700], ep[128];
	struct wire w;
	broker_of(n, ca, ep);
	if (tm)
		tmerchant_connect(tm, &w, ep, ca);
	else
		ck_assert(wire_connect(&w, ep, ca, NULL, NULL));
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
	MpCode code = status_evidence(resp->cap_notice_resp->status, evidence);
	ck_assert_uint_gt(resp->cap_notice_resp->broker_time, 0);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

MpSigned *segment_claim_sign(const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			     const MpSigned *t, const MpSigned *cp, const uint8_t payout[MP_ID_LEN],
			     const struct mp_key *signer)
{
	Micropay__V1__SegmentClaim sc = MICROPAY__V1__SEGMENT_CLAIM__INIT;
	sc.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)channel_id};
	sc.seg_seq = seg_seq;
	sc.transfer = (MpSigned *)t;
	sc.cap = (MpSigned *)cp;
	sc.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)payout};
	MpSigned *s = mp_stmt_sign(signer, MP_STMT_SEGMENT_CLAIM, &sc.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

MpCode segment_claim_send(const struct net *n, MpSigned *stmt, MpSigned **pairs, size_t n_pairs,
			  uint8_t evidence[MP_HASH_LEN], char *detail, size_t detail_len)
{
	char ca[700], ep[128];
	struct wire w;
	broker_of(n, ca, ep);
	ck_assert(wire_connect(&w, ep, ca, NULL, NULL));
	Micropay__V1__SegmentClaimReq req = MICROPAY__V1__SEGMENT_CLAIM_REQ__INIT;
	req.stmt = stmt;
	req.segments = pairs;
	req.n_segments = n_pairs;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(SEGMENT_CLAIM_REQ);
	env.segment_claim_req = &req;
	MpEnvelope *resp = wire_call(&w, &env);
	wire_close(&w);
	ck_assert(resp && resp->body_case == MP_BODY(SEGMENT_CLAIM_RESP));
	const MpStatus *st = resp->segment_claim_resp->status;
	MpCode code = status_evidence(st, evidence);
	if (detail)
		snprintf(detail, detail_len, "%s", st->detail ? st->detail : "");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

void expect_broker_cap(const MpSigned *cap, const MpSigned *t, uint32_t seg_seq,
		       const uint8_t root0[MP_HASH_LEN], const uint8_t channel_id[MP_ID_LEN],
		       const uint8_t broker_pk[MP_PK_LEN])
{
	ck_assert_ptr_nonnull(cap);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(
	    mp_stmt_open(cap, MP_STMT_CAP, broker_pk, &micropay__v1__cap__descriptor, &body),
	    MP_ST(OK));
	const Micropay__V1__Cap *c = (const Micropay__V1__Cap *)body;
	uint8_t t_hash[MP_HASH_LEN];
	mp_stmt_hash(t, t_hash);
	ck_assert(mp_bytes_len_is(c->channel_id, MP_ID_LEN) &&
		  memcmp(c->channel_id.data, channel_id, MP_ID_LEN) == 0);
	ck_assert_uint_eq(c->new_seg_seq, seg_seq);
	ck_assert(mp_bytes_len_is(c->transfer_hash, MP_HASH_LEN) &&
		  memcmp(c->transfer_hash.data, t_hash, MP_HASH_LEN) == 0);
	ck_assert_uint_eq(c->hseq, 0);
	ck_assert_ptr_nonnull(c->point);
	ck_assert_uint_eq(c->point->seg_seq, seg_seq - 1);
	ck_assert_uint_eq(c->point->index, 0);
	ck_assert(mp_bytes_len_is(c->point->w, MP_HASH_LEN) &&
		  memcmp(c->point->w.data, root0, MP_HASH_LEN) == 0);
	protobuf_c_message_free_unpacked(body, NULL);
}
