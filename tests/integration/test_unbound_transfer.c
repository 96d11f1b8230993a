/* Transfer of a channel no merchant holds yet, through the broker (docs/transfer.md "Unbound
 * channels"; protocol.md section 6), against the real daemons (deploy/mpnet) and PostgreSQL.
 * Byte by byte, acting as wallets A and B towards brokerd (no client certificate) and as
 * merchants (mutual TLS): the broker caps segment 0 at index 0 with its own key and records the
 * pair as a CapNotice would; a retry gets the same bytes, another Transfer for that segment the
 * stored pair (CONFLICT), a forged Transfer, a wrong seg_seq or a wrong epoch change nothing;
 * B's SegmentClaim verifies the broker's Cap; a Bind needs B's consent in segment 1 (A's Move
 * binds nothing); once bound, the broker refuses the next Transfer with NOT_HOLDER carrying
 * the Bind, and still answers a resend of the Transfer it capped with the stored Cap. Every
 * test ends with the broker's audit clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"
#include "harness_custody.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_peer.h"
#include "../check_run.h"

#define N 100

static struct net net;
static char ca[700], broker_ep[128];
static uint8_t broker_pk[MP_PK_LEN];
static struct tmerchant tm[3]; /* 1..2 */
static char ep[3][128], account[3][64];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	for (int w = 1; w <= 2; w++) {
		char name[8];
		snprintf(name, sizeof(name), "w%d", w);
		json_t *r = admin_ok(&net, name, "register", NULL);
		snprintf(account[w], sizeof(account[w]), "%s", json_str(r, "account_id"));
		json_decref(r);
	}
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	char pk_hex[80];
	net_read(&net, "broker", "broker_pk", pk_hex, sizeof(pk_hex));
	hex_to_bytes(pk_hex, broker_pk, MP_PK_LEN);
	for (int i = 1; i <= 2; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
	}
}

static void teardown_net(void)
{
	for (int i = 1; i <= 2; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

static char *sql_of_channel(const char *what, const char *table, const char *channel_hex)
{
	return sql_value(&net, "SELECT %s FROM %s WHERE channel_id = '\\x%s'::bytea", what, table,
			 channel_hex);
}

static void expect_sql(const char *what, const char *table, const char *channel_hex,
		       const char *expected)
{
	char *v = sql_of_channel(what, table, channel_hex);
	ck_assert_msg(v && strcmp(v, expected) == 0, "%s of %s: %s, expected %s", what, table,
		      v ? v : "(none)", expected);
	free(v);
}

/* ---- wallets A and B at the wire level ---- */

struct unbound {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN], cert_hash[MP_HASH_LEN];
	char hex[MP_HEX_ID_LEN + 1];
};

/* An IssueRequest with no holder0, signed by the test wallet's account key, issued. */
static void make_unbound(struct unbound *u)
{
	struct wire broker;
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&u->tw, &broker);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(u->tw.account_id, MP_ID_LEN, hex);
	net_fund(&net, hex, N);
	tchannel_make(&u->ch, &u->tw, N, 1, NULL);
	ck_assert_int_eq(tchannel_issue(&u->ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&u->ch, u->id);
	mp_hex_encode(u->id, MP_ID_LEN, u->hex);
	mp_stmt_hash(u->ch.cert, u->cert_hash);
}

static void free_unbound(struct unbound *u)
{
	tchannel_free(&u->ch);
	mp_key_free(&u->tw.account);
}

/* TransferReq to the broker without a client certificate; the answer (caller frees). */
static MpEnvelope *transfer_req(MpSigned *t)
{
	return twallet_transfer_call(broker_ep, ca, t);
}

static MpCode transfer_code(MpSigned *t)
{
	MpEnvelope *e = transfer_req(t);
	MpCode code = e->transfer_resp->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	size_t la, lb;
	uint8_t *x = a ? mp_stmt_encode(a, &la) : NULL, *y = b ? mp_stmt_encode(b, &lb) : NULL;
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static MpCode segment_claim(const struct unbound *u, uint32_t seg_seq, MpSigned *t, MpSigned *cp,
			    const struct twallet *payout, const struct mp_key *signer,
			    MpSigned **pairs, size_t n_pairs)
{
	MpSigned *stmt = segment_claim_sign(u->id, seg_seq, t, cp, payout->account_id, signer);
	MpCode code = segment_claim_send(&net, stmt, pairs, n_pairs, NULL, NULL, 0);
	mp_stmt_free(stmt);
	return code;
}

/* BindReq from merchant m with a Move (seg_seq, from_epoch 0, to m) signed by key. */
static MpEnvelope *bind_as(int m, const struct unbound *u, const struct mp_key *key,
			   uint32_t seg_seq)
{
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)u->id};
	mv.seg_seq = seg_seq;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, tm[m].mid};
	MpSigned *move = mp_stmt_sign(key, MP_STMT_MOVE, &mv.base);
	ck_assert_ptr_nonnull(move);
	struct wire w;
	tmerchant_connect(&tm[m], &w, broker_ep, ca);
	Micropay__V1__BindReq req = MICROPAY__V1__BIND_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)u->id};
	req.move = move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(BIND_REQ);
	env.bind_req = &req;
	ck_assert(wire_send(&w, &env));
	MpEnvelope *e = wire_recv(&w);
	wire_close(&w);
	mp_stmt_free(move);
	ck_assert_msg(e && e->body_case == MP_BODY(BIND_RESP), "no BindResp");
	return e;
}

static MpCode bind_code(int m, const struct unbound *u, const struct mp_key *key, uint32_t seg)
{
	MpEnvelope *e = bind_as(m, u, key, seg);
	MpCode code = e->bind_resp->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* A Move of u to merchant m in segment seg_seq (epoch 0), signed by key. */
static MpSigned *move_to(int m, const struct unbound *u, const struct mp_key *key, uint32_t seg_seq)
{
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)u->id};
	mv.seg_seq = seg_seq;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, tm[m].mid};
	MpSigned *move = mp_stmt_sign(key, MP_STMT_MOVE, &mv.base);
	ck_assert_ptr_nonnull(move);
	return move;
}

/* A wallet's Open at merchant m with the cert, these segment statements and a Move; the
 * OpenAck (caller frees). */
static MpEnvelope *open_with(int m, const struct unbound *u, MpSigned **segs, size_t n_segs,
			     MpSigned *move)
{
	struct wire w;
	ck_assert(wire_connect(&w, ep[m], ca, NULL, NULL));
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = u->ch.cert;
	req.segments = segs;
	req.n_segments = n_segs;
	req.move = move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	MpEnvelope *resp = wire_call(&w, &env);
	wire_close(&w);
	ck_assert_msg(resp && resp->body_case == MP_BODY(OPEN_ACK) && resp->open_ack->status,
		      "no OpenAck");
	return resp;
}

/* The Open is refused with `want` and binds nothing: no Bind at the broker, nothing held at
 * any merchant. */
static void open_refused(int m, const struct unbound *u, MpSigned **segs, size_t n_segs,
			 MpSigned *move, MpCode want, const char *what)
{
	MpEnvelope *e = open_with(m, u, segs, n_segs, move);
	const MpStatus *st = e->open_ack->status;
	fprintf(stderr, "unbound_transfer: open with %s: %s %s\n", what, mp_code_name(st->code),
		st->detail ? st->detail : "");
	ck_assert_msg(st->code == want, "open with %s: %s, expected %s", what,
		      mp_code_name(st->code), mp_code_name(want));
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_sql("count(*)", "binds", u->hex, "0");
	for (int i = 1; i <= 2; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_t *r = admin_ok(&net, name, "channels", NULL);
		json_t *list = json_object_get(r, "channels");
		for (size_t k = 0; k < json_array_size(list); k++)
			ck_assert_str_ne(json_str(json_array_get(list, k), "channel_id"), u->hex);
		json_decref(r);
	}
}

/* A's Transfer to B through the broker: the broker's Cap (caller frees both). */
static void broker_transfer(const struct unbound *u, uint32_t seg_seq, const struct tseg *to,
			    const struct mp_key *signer, const uint8_t prev[MP_HASH_LEN],
			    MpSigned **t, MpSigned **cap)
{
	*t = transfer_sign(u->id, seg_seq, 0, 0, to, signer, prev);
	MpEnvelope *e = transfer_req(*t);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(OK));
	*cap = mp_stmt_copy(e->transfer_resp->cap);
	ck_assert_ptr_nonnull(*cap);
	micropay__v1__envelope__free_unpacked(e, NULL);
}

/* A Cap with the broker Cap's body signed by another key. */
static MpSigned *recap(const MpSigned *cap, const struct mp_key *key)
{
	Micropay__V1__Cap *c = (Micropay__V1__Cap *)mp_strict_unpack(&micropay__v1__cap__descriptor,
								     cap->body.data, cap->body.len);
	ck_assert_ptr_nonnull(c);
	MpSigned *s = mp_stmt_sign(key, MP_STMT_CAP, &c->base);
	micropay__v1__cap__free_unpacked(c, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Merchant m adopts a channel transferred twice through the broker before any Bind (A -> B ->
 * C): an Open whose segments are forged, inconsistent, or older than the broker's, or whose
 * Move is not the last owner's, is refused with a typed error and binds nothing; the full list
 * with C's Move binds the channel to m1, which holds it in segment 2 from index 0. */
START_TEST(merchant_adopts_broker_capped_segments)
{
	struct unbound u;
	make_unbound(&u);
	struct tseg b, c, forger;
	tseg_make(&b, N);
	tseg_make(&c, N);
	tseg_make(&forger, N);
	MpSigned *t1, *cap1, *t2, *cap2;
	broker_transfer(&u, 1, &b, &u.ch.owner, u.cert_hash, &t1, &cap1);
	uint8_t head1[MP_HASH_LEN];
	mp_stmt_hash(t1, head1);

	/* Segment 1 is B's: forged and mismatching lists first. */
	MpSigned *forged_cap = recap(cap1, &forger.owner);
	MpSigned *t1c =
	    transfer_sign(u.id, 1, 0, 0, &c, &u.ch.owner, u.cert_hash); /* not what cap1 caps */
	MpSigned *b_move = move_to(1, &u, &b.owner, 1), *a_move = move_to(1, &u, &u.ch.owner, 0);
	MpSigned *b_move0 = move_to(1, &u, &b.owner, 0), *b_move_m2 = move_to(2, &u, &b.owner, 1);
	MpSigned *forged[] = {t1, forged_cap}, *odd[] = {t1}, *mismatch[] = {t1c, cap1},
		 *good1[] = {t1, cap1};
	open_refused(1, &u, forged, 2, b_move, MP_ST(BAD_SIG), "a Cap not signed by the broker");
	open_refused(1, &u, odd, 1, b_move, MP_ST(MALFORMED), "a Transfer without its Cap");
	open_refused(1, &u, mismatch, 2, b_move, MP_ST(MALFORMED), "a Cap of another Transfer");
	open_refused(1, &u, good1, 2, a_move, MP_ST(BAD_SIG), "the old owner's Move");
	open_refused(1, &u, good1, 2, b_move0, MP_ST(STALE_SEGMENT),
		     "a Move for segment 0 signed by the new owner");
	open_refused(1, &u, good1, 2, b_move_m2, MP_ST(MALFORMED), "a Move to another merchant");

	/* B gives it to C through the broker: B's list (segment 1) is now older than the
	 * broker's. m1 verifies it, the broker refuses the Bind (B's Move is not the current
	 * owner's consent), nothing is bound. */
	broker_transfer(&u, 2, &c, &b.owner, head1, &t2, &cap2);
	open_refused(1, &u, good1, 2, b_move, MP_ST(BAD_SIG), "a list older than the broker's");
	expect_sql("count(*)", "segment_transfers", u.hex, "2");

	/* The full list with C's Move: bound to m1, held in segment 2 from (0, C's root). */
	MpSigned *c_move = move_to(1, &u, &c.owner, 2);
	MpSigned *good2[] = {t1, cap1, t2, cap2};
	MpEnvelope *e = open_with(1, &u, good2, 4, c_move);
	const Micropay__V1__OpenAck *ack = e->open_ack;
	ck_assert_msg(ack->status->code == MP_ST(OK), "open: %s %s",
		      mp_code_name(ack->status->code), ack->status->detail);
	ck_assert_uint_eq(ack->hseq, 0);
	ck_assert_ptr_nonnull(ack->point);
	ck_assert_uint_eq(ack->point->seg_seq, 2);
	ck_assert_uint_eq(ack->point->index, 0);
	ck_assert(mp_bytes_len_is(ack->point->w, MP_HASH_LEN) &&
		  memcmp(ack->point->w.data, c.root, MP_HASH_LEN) == 0);
	ck_assert_ptr_nonnull(ack->custody_event);
	ck_assert_uint_eq(ack->custody_event->type, MP_STMT_BIND);
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_sql("encode(merchant_id, 'hex')", "binds", u.hex, tm[1].mid_hex);
	/* The same Open again: the same answer from the record. */
	e = open_with(1, &u, good2, 4, c_move);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->open_ack->point->seg_seq, 2);
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* m1 restarted: the segments were stored with the channel before the OpenAck. */
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	json_t *r = admin_ok(&net, "m1", "channels", NULL);
	json_t *list = json_object_get(r, "channels"), *held = NULL;
	for (size_t k = 0; k < json_array_size(list); k++)
		if (!strcmp(json_str(json_array_get(list, k), "channel_id"), u.hex))
			held = json_array_get(list, k);
	ck_assert_msg(held != NULL, "m1 does not hold the channel after a restart");
	ck_assert_str_eq(json_str(held, "state"), "HELD");
	ck_assert_int_eq(json_int(held, "segment"), 2);
	ck_assert_int_eq(json_int(held, "seg_start"), 0);
	json_decref(r);
	e = open_with(1, &u, good2, 4, c_move);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->open_ack->point->seg_seq, 2);
	micropay__v1__envelope__free_unpacked(e, NULL);

	MpSigned *all[] = {t1,	   cap1,   t2,	    cap2,      forged_cap, t1c,
			   b_move, a_move, b_move0, b_move_m2, c_move};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		mp_stmt_free(all[i]);
	mp_key_free(&b.owner);
	mp_key_free(&c.owner);
	mp_key_free(&forger.owner);
	free_unbound(&u);
	net_audit_clean(&net);
}
END_TEST

START_TEST(broker_caps_an_unbound_channel)
{
	struct unbound u;
	make_unbound(&u);
	struct tseg b, c, forger;
	tseg_make(&b, N);
	tseg_make(&c, N);
	tseg_make(&forger, N);

	/* Refusals change nothing: a Transfer signed by another key, for segment 2, in epoch 1,
	 * with a chain too short to reach n, naming another segment head. */
	MpSigned *forged = transfer_sign(u.id, 1, 0, 0, &b, &forger.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(forged), MP_ST(BAD_SIG));
	MpSigned *t2 = transfer_sign(u.id, 2, 0, 0, &b, &u.ch.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(t2), MP_ST(MALFORMED));
	MpSigned *e1 = transfer_sign(u.id, 1, 1, 0, &b, &u.ch.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(e1), MP_ST(NOT_HOLDER));
	struct tseg short_seg;
	tseg_make(&short_seg, N - 1);
	MpSigned *too_short = transfer_sign(u.id, 1, 0, 0, &short_seg, &u.ch.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(too_short), MP_ST(OUT_OF_RANGE));
	MpSigned *bad_prev = transfer_sign(u.id, 1, 0, 0, &b, &u.ch.owner, b.root);
	ck_assert_int_eq(transfer_code(bad_prev), MP_ST(MALFORMED));
	expect_sql("count(*)", "segment_transfers", u.hex, "0");
	expect_sql("count(*)", "segments", u.hex, "1");

	/* A's Transfer to B: the broker's Cap at (0, 0, root of segment 0), recorded. */
	MpSigned *t1 = transfer_sign(u.id, 1, 0, 0, &b, &u.ch.owner, u.cert_hash);
	MpEnvelope *ok = transfer_req(t1);
	ck_assert_int_eq(ok->transfer_resp->status->code, MP_ST(OK));
	ck_assert(same_stmt(ok->transfer_resp->transfer, t1));
	expect_broker_cap(ok->transfer_resp->cap, t1, 1, u.ch.root, u.id, broker_pk);
	ck_assert_uint_eq(ok->transfer_resp->n_segments, 0);
	MpSigned *cap1 = mp_stmt_copy(ok->transfer_resp->cap);
	micropay__v1__envelope__free_unpacked(ok, NULL);
	expect_sql("count(*)", "segment_transfers", u.hex, "1");
	expect_sql("by_broker::text || '/' || cap_index || '/' || cap_hseq || '/' || "
		   "encode(holder_mid, 'hex')",
		   "segment_transfers", u.hex, "true/0/0/00000000000000000000000000000000");
	expect_sql("string_agg(seg_seq || ':' || seg_start || ':' || len, ',' ORDER BY seg_seq)",
		   "segments", u.hex, "0:0:100,1:0:100");

	/* The same Transfer again: the stored Cap, byte for byte. */
	MpEnvelope *dup = transfer_req(t1);
	ck_assert_int_eq(dup->transfer_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(dup->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(dup, NULL);

	/* Another Transfer of segment 0 (A to C): CONFLICT with the stored pair. */
	MpSigned *t1c = transfer_sign(u.id, 1, 0, 0, &c, &u.ch.owner, u.cert_hash);
	MpEnvelope *conf = transfer_req(t1c);
	ck_assert_int_eq(conf->transfer_resp->status->code, MP_ST(CONFLICT));
	ck_assert(same_stmt(conf->transfer_resp->transfer, t1));
	ck_assert(same_stmt(conf->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(conf, NULL);
	/* ... and A can no longer sign segment 2's Transfer. */
	uint8_t head1[MP_HASH_LEN];
	mp_stmt_hash(t1, head1);
	MpSigned *t2a = transfer_sign(u.id, 2, 0, 0, &c, &u.ch.owner, head1);
	ck_assert_int_eq(transfer_code(t2a), MP_ST(BAD_SIG));
	expect_sql("count(*)", "segment_transfers", u.hex, "1");

	/* B's SegmentClaim: the broker's Cap verifies; B is recorded for the refund. */
	struct twallet tb;
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	twallet_register(&tb, &w);
	wire_close(&w);
	ck_assert_int_eq(segment_claim(&u, 1, t1, cap1, &tb, &b.owner, NULL, 0), MP_ST(OK));
	ck_assert_int_eq(segment_claim(&u, 1, t1, cap1, &tb, &b.owner, NULL, 0),
			 MP_ST(DUPLICATE_OK));
	char tb_hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tb.account_id, MP_ID_LEN, tb_hex);
	expect_sql("encode(payout_account_id, 'hex')", "segment_transfers", u.hex, tb_hex);

	/* A Bind needs the current owner's consent: A's Move (segment 0) binds nothing. */
	ck_assert_int_eq(bind_code(1, &u, &u.ch.owner, 0), MP_ST(BAD_SIG));
	ck_assert_int_eq(bind_code(1, &u, &u.ch.owner, 1), MP_ST(BAD_SIG));
	expect_sql("count(*)", "binds", u.hex, "0");
	ck_assert_int_eq(bind_code(1, &u, &b.owner, 1), MP_ST(OK));
	expect_sql("encode(holder0, 'hex')", "channels", u.hex, tm[1].mid_hex);

	/* Bound: B's Transfer to C goes to the holder; the broker answers NOT_HOLDER + the Bind. */
	MpSigned *t2b = transfer_sign(u.id, 2, 0, 0, &c, &b.owner, head1);
	MpEnvelope *nh = transfer_req(t2b);
	ck_assert_int_eq(nh->transfer_resp->status->code, MP_ST(NOT_HOLDER));
	const MpSigned *bind = nh->transfer_resp->status->evidence;
	ck_assert_ptr_nonnull(bind);
	ck_assert_uint_eq(bind->type, MP_STMT_BIND);
	ProtobufCMessage *bind_body = NULL;
	ck_assert_int_eq(mp_stmt_open(bind, MP_STMT_BIND, broker_pk,
				      &micropay__v1__bind__descriptor, &bind_body),
			 MP_ST(OK));
	protobuf_c_message_free_unpacked(bind_body, NULL);
	micropay__v1__envelope__free_unpacked(nh, NULL);
	expect_sql("count(*)", "segment_transfers", u.hex, "1");
	/* ... but the Transfer the broker capped before the Bind, resent, still gets its stored
	 * Cap byte for byte (protocol.md section 5; found by the chaos test's end replays), and
	 * another Transfer for that segment the stored pair. */
	dup = transfer_req(t1);
	ck_assert_msg(dup->transfer_resp->status->code == MP_ST(DUPLICATE_OK),
		      "resent after the Bind: %s", mp_code_name(dup->transfer_resp->status->code));
	ck_assert(same_stmt(dup->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(dup, NULL);
	conf = transfer_req(t1c);
	ck_assert_int_eq(conf->transfer_resp->status->code, MP_ST(CONFLICT));
	ck_assert(same_stmt(conf->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(conf, NULL);
	expect_sql("count(*)", "segment_transfers", u.hex, "1");

	MpSigned *all[] = {forged, t2, e1, too_short, bad_prev, t1, cap1, t1c, t2a, t2b};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		mp_stmt_free(all[i]);
	mp_key_free(&b.owner);
	mp_key_free(&c.owner);
	mp_key_free(&forger.owner);
	mp_key_free(&short_seg.owner);
	mp_key_free(&tb.account);
	free_unbound(&u);
	net_audit_clean(&net);
}
END_TEST

/* A channel whose cert names holder0 is never capped by the broker. */
START_TEST(broker_refuses_a_channel_with_holder0)
{
	struct unbound u;
	struct wire broker;
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&u.tw, &broker);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(u.tw.account_id, MP_ID_LEN, hex);
	net_fund(&net, hex, N);
	tchannel_make(&u.ch, &u.tw, N, 1, tm[1].mid);
	ck_assert_int_eq(tchannel_issue(&u.ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&u.ch, u.id);
	mp_hex_encode(u.id, MP_ID_LEN, u.hex);
	mp_stmt_hash(u.ch.cert, u.cert_hash);
	struct tseg b;
	tseg_make(&b, N);
	MpSigned *t1 = transfer_sign(u.id, 1, 0, 0, &b, &u.ch.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(t1), MP_ST(NOT_HOLDER));
	expect_sql("count(*)", "segment_transfers", u.hex, "0");
	/* An unknown channel. */
	u.id[0] ^= 1;
	MpSigned *tu = transfer_sign(u.id, 1, 0, 0, &b, &u.ch.owner, u.cert_hash);
	ck_assert_int_eq(transfer_code(tu), MP_ST(UNKNOWN_CHANNEL));
	mp_stmt_free(t1);
	mp_stmt_free(tu);
	mp_key_free(&b.owner);
	free_unbound(&u);
	net_audit_clean(&net);
}
END_TEST

/* ---- through walletd (admin calls, as mpctl) ---- */

static char *issue_unbound(void)
{
	net_fund(&net, account[1], N);
	json_t *r = admin_ok(&net, "w1", "issue", "{\"n\":100,\"unit_value\":1,\"days\":1}");
	char *channel = strdup(json_str(r, "channel_id"));
	json_decref(r);
	return channel;
}

static json_t *wallet_pay(int w, const char *channel, int m, unsigned units, char *err,
			  size_t errlen)
{
	char params[500], name[8], mname[8];
	snprintf(mname, sizeof(mname), "m%d", m);
	char price[40];
	snprintf(price, sizeof(price), "{\"price\":%u}", units);
	json_t *o = admin_ok(&net, mname, "order.create", price);
	snprintf(name, sizeof(name), "w%d", w);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, tm[m].mid_hex, ep[m], units, json_str(o, "order_ref"));
	json_decref(o);
	return admin(&net, name, "pay", params, err, errlen);
}

/* Merchant m's record of a channel (admin `channels`). */
static json_t *merchant_channel(int m, const char *channel)
{
	char name[8];
	snprintf(name, sizeof(name), "m%d", m);
	json_t *r = admin_ok(&net, name, "channels", NULL);
	json_t *list = json_object_get(r, "channels"), *found = NULL;
	for (size_t i = 0; i < json_array_size(list) && !found; i++)
		if (strcmp(json_str(json_array_get(list, i), "channel_id"), channel) == 0)
			found = json_incref(json_array_get(list, i));
	json_decref(r);
	ck_assert_msg(found != NULL, "m%d does not hold channel %s", m, channel);
	return found;
}

static char *call_str(int w, const char *method, const char *params, const char *field)
{
	char name[8];
	snprintf(name, sizeof(name), "w%d", w);
	json_t *r = admin_ok(&net, name, method, params);
	char *out = strdup(json_str(r, field));
	json_decref(r);
	return out;
}

static json_t *wallet_channel(int w, const char *channel)
{
	char name[8];
	snprintf(name, sizeof(name), "w%d", w);
	json_t *r = admin_ok(&net, name, "channels", NULL);
	json_t *list = json_object_get(r, "channels"), *found = NULL;
	for (size_t i = 0; i < json_array_size(list) && !found; i++)
		if (strcmp(json_str(json_array_get(list, i), "channel_id"), channel) == 0)
			found = json_incref(json_array_get(list, i));
	json_decref(r);
	ck_assert_msg(found != NULL, "w%d does not list channel %s", w, channel);
	return found;
}

/* w2 offers, w1 sends: the bundle (a retry of send gets the same one). */
static char *offer_and_send(const char *channel)
{
	char params[4096];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	char *offer = call_str(2, "transfer.offer", params, "offer");
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	free(offer);
	char *bundle = call_str(1, "transfer.send", params, "bundle");
	char *again = call_str(1, "transfer.send", params, "bundle");
	ck_assert_str_eq(bundle, again);
	free(again);
	json_t *a = wallet_channel(1, channel);
	ck_assert_str_eq(json_str(a, "state"), "TRANSFERRED_OUT");
	json_decref(a);
	return bundle;
}

/* w2 accepts (twice: the same answer), the broker acknowledged its SegmentClaim. */
static void accept_bundle(const char *channel, const char *bundle, int64_t spendable)
{
	char *params = malloc(strlen(bundle) + 32);
	ck_assert_ptr_nonnull(params);
	sprintf(params, "{\"bundle\":\"%s\"}", bundle);
	for (int i = 0; i < 2; i++) {
		json_t *r = admin_ok(&net, "w2", "transfer.accept", params);
		ck_assert_str_eq(json_str(r, "channel_id"), channel);
		ck_assert_int_eq(json_int(r, "seg_seq"), 1);
		ck_assert_int_eq(json_int(r, "spendable"), spendable);
		ck_assert(json_is_true(json_object_get(r, "broker_ack")));
		json_decref(r);
	}
	free(params);
}

START_TEST(wallets_transfer_an_unbound_channel_through_the_broker)
{
	char *channel = issue_unbound();
	char *bundle = offer_and_send(channel);
	/* The broker signed the Cap and recorded segment 1 at index 0, nothing bound. */
	expect_sql("by_broker::text || '/' || cap_index", "segment_transfers", channel, "true/0");
	expect_sql("count(*)", "binds", channel, "0");
	accept_bundle(channel, bundle, N);
	free(bundle);
	char acc2[80];
	snprintf(acc2, sizeof(acc2), "%s", account[2]);
	expect_sql("encode(payout_account_id, 'hex')", "segment_transfers", channel, acc2);
	json_t *b = wallet_channel(2, channel);
	ck_assert_str_eq(json_str(b, "state"), "ACTIVE");
	ck_assert_int_eq(json_int(json_object_get(b, "segment"), "seg_seq"), 1);
	ck_assert_int_eq(json_int(json_object_get(b, "segment"), "start"), 0);
	json_decref(b);

	/* w1 gave it away: it cannot pay, and its attempt binds nothing. */
	char err[512];
	json_t *r = wallet_pay(1, channel, 1, 1, err, sizeof(err));
	ck_assert_msg(r == NULL, "w1 paid after giving the channel away");
	fprintf(stderr, "unbound_transfer: w1's pay refused: %s\n", err);
	/* w2 pays at m1: m1 verifies the broker-capped pair, the broker binds the channel to
	 * m1, which holds it in segment 1 from index 0. */
	int64_t before1 = net_pending(&net, tm[1].mid_hex);
	int64_t before2 = net_pending(&net, tm[2].mid_hex);
	r = wallet_pay(2, channel, 1, 3, err, sizeof(err));
	ck_assert_msg(r != NULL, "w2: pay at m1 failed: %s", err);
	json_decref(r);
	expect_sql("encode(merchant_id, 'hex')", "binds", channel, tm[1].mid_hex);
	expect_sql("count(*)", "segment_transfers", channel, "1");
	json_t *held = merchant_channel(1, channel);
	ck_assert_int_eq(json_int(held, "segment"), 1);
	ck_assert_int_eq(json_int(held, "last"), 3);
	json_decref(held);
	/* m1 redeems: credited exactly w2's 3 units (its claim carries the broker's pair). */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before1, 3);
	/* w2 pays at m2: m1's Handoff carries the segments, m2 takes payments. */
	r = wallet_pay(2, channel, 2, 4, err, sizeof(err));
	ck_assert_msg(r != NULL, "w2: pay at m2 failed: %s", err);
	json_decref(r);
	held = merchant_channel(2, channel);
	ck_assert_int_eq(json_int(held, "segment"), 1);
	ck_assert_int_eq(json_int(held, "epoch"), 1);
	ck_assert_int_eq(json_int(held, "last"), 7);
	json_decref(held);
	r = wallet_pay(1, channel, 2, 1, err, sizeof(err));
	ck_assert_msg(r == NULL, "w1 paid at m2 after giving the channel away");
	for (int m = 1; m <= 2; m++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", m);
		json_decref(admin_ok(&net, name, "redeem", NULL));
	}
	int64_t got1 = net_pending(&net, tm[1].mid_hex) - before1;
	int64_t got2 = net_pending(&net, tm[2].mid_hex) - before2;
	fprintf(stderr, "unbound_transfer: credited m1 %lld, m2 %lld of 7 paid by w2\n",
		(long long)got1, (long long)got2);
	ck_assert_int_eq(got1, 3);
	ck_assert_int_eq(got2, 4);
	free(channel);
	net_audit_clean(&net);
}
END_TEST

/* Another copy of w1's owner key (the test reads it from w1's store, as a second device of
 * the same customer would have it) binds the channel to m1 with a wire-level Open; w1 does not
 * know. Its transfer.send goes to the broker, which answers NOT_HOLDER with the Bind: w1
 * records m1 as the holder and sends it the same stored Transfer (holder_epoch 0), at once when
 * it has m1's endpoint, else on the retry it asks for. m1 caps it; w2 accepts and pays at m1. */
START_TEST(bound_while_transferring_sends_the_same_transfer_to_the_holder)
{
	char *channel = issue_unbound();
	size_t cert_len, seed_len;
	uint8_t *cert_bytes = twallet_blob(
	    &net, "w1", "SELECT cert FROM channels WHERE channel_id = ?1", channel, &cert_len);
	uint8_t *seed =
	    twallet_blob(&net, "w1", "SELECT owner_seed FROM channels WHERE channel_id = ?1",
			 channel, &seed_len);
	ck_assert_uint_eq(seed_len, MP_SK_LEN);
	struct unbound u = {0};
	u.ch.cert = mp_stmt_decode(cert_bytes, cert_len);
	ck_assert_ptr_nonnull(u.ch.cert);
	hex_to_bytes(channel, u.id, MP_ID_LEN);
	snprintf(u.hex, sizeof(u.hex), "%s", channel);
	struct mp_key owner;
	ck_assert(mp_key_from_seed(&owner, seed));
	MpSigned *move = move_to(1, &u, &owner, 0);
	MpEnvelope *e = open_with(1, &u, NULL, 0, move);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_sql("encode(merchant_id, 'hex')", "binds", channel, tm[1].mid_hex);

	/* w1 still sees no holder: transfer.send without an endpoint goes to the broker, which
	 * names m1; w1 stays TRANSFERRING and asks for m1's endpoint. */
	char params[4096], err[1024];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	char *offer = call_str(2, "transfer.offer", params, "offer");
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	json_t *r = admin(&net, "w1", "transfer.send", params, err, sizeof(err));
	ck_assert_msg(r == NULL, "transfer.send went through the broker of a bound channel");
	fprintf(stderr, "unbound_transfer: send while bound: %s\n", err);
	ck_assert_msg(strstr(err, "bound") && strstr(err, tm[1].mid_hex), "%s", err);
	json_t *a = wallet_channel(1, channel);
	ck_assert_str_eq(json_str(a, "state"), "TRANSFERRING");
	json_decref(a);
	size_t stored_len;
	uint8_t *stored =
	    twallet_blob(&net, "w1", "SELECT transfer FROM transfers_out WHERE channel_id = ?1",
			 channel, &stored_len);

	/* The retry with m1's endpoint: the same Transfer, capped by m1 in epoch 0. */
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"offer\":\"%s\",\"endpoint\":\"%s\"}", channel, offer,
		 ep[1]);
	char *bundle = call_str(1, "transfer.send", params, "bundle");
	size_t blen;
	uint8_t *bb = tmp_b64_decode(bundle, &blen);
	Micropay__V1__TransferBundle *tb = (Micropay__V1__TransferBundle *)mp_strict_unpack(
	    &micropay__v1__transfer_bundle__descriptor, bb, blen);
	ck_assert_ptr_nonnull(tb);
	ck_assert_uint_eq(tb->n_segments, 2);
	size_t sent_len;
	uint8_t *sent = mp_stmt_encode(tb->segments[0], &sent_len);
	ck_assert(sent && sent_len == stored_len && !memcmp(sent, stored, sent_len));
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(tb->segments[1], MP_STMT_CAP, tm[1].key.pk,
				      &micropay__v1__cap__descriptor, &body),
			 MP_ST(OK));
	ck_assert_uint_eq(((Micropay__V1__Cap *)body)->hseq, 0);
	protobuf_c_message_free_unpacked(body, NULL);
	micropay__v1__transfer_bundle__free_unpacked(tb, NULL);
	a = wallet_channel(1, channel);
	ck_assert_str_eq(json_str(a, "state"), "TRANSFERRED_OUT");
	json_decref(a);

	/* w2 takes it and pays at m1; m1 is credited exactly that. */
	accept_bundle(channel, bundle, N);
	/* m1's credit from the earlier tests first (a range ending at a transfer is claimed at
	 * its Cap's point since the redemption fix), so the difference below is this channel's. */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	int64_t before = net_pending(&net, tm[1].mid_hex);
	r = wallet_pay(2, channel, 1, 2, err, sizeof(err));
	ck_assert_msg(r != NULL, "w2: pay at m1 failed: %s", err);
	json_decref(r);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before, 2);

	free(sent);
	free(bb);
	free(bundle);
	free(stored);
	free(offer);
	mp_stmt_free(move);
	mp_key_free(&owner);
	mp_stmt_free(u.ch.cert);
	free(cert_bytes);
	free(seed);
	free(channel);
	net_audit_clean(&net);
}
END_TEST

/* A channel bound by its first pay: transfer.send goes to the holder, as before. */
START_TEST(bound_channel_transfers_through_the_holder)
{
	char *channel = issue_unbound();
	char err[512];
	json_t *r = wallet_pay(1, channel, 1, 2, err, sizeof(err));
	ck_assert_msg(r != NULL, "w1: pay at m1 failed: %s", err);
	json_decref(r);
	expect_sql("encode(merchant_id, 'hex')", "binds", channel, tm[1].mid_hex);
	char *bundle = offer_and_send(channel);
	/* The Cap is m1's (after its outbox told the broker), not the broker's. */
	char *v = NULL;
	for (int tries = 0; tries < 100; tries++) {
		free(v);
		v = sql_of_channel("by_broker::text || '/' || encode(holder_mid, 'hex')",
				   "segment_transfers", channel);
		if (v && *v)
			break;
		usleep(100000);
	}
	char want[80];
	snprintf(want, sizeof(want), "false/%s", tm[1].mid_hex);
	ck_assert_msg(v && strcmp(v, want) == 0, "segment 1: %s, expected %s", v ? v : "?", want);
	free(v);
	accept_bundle(channel, bundle, N - 2);
	free(bundle);
	free(channel);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("unbound_transfer");
	TCase *tc = tcase_create("broker");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, broker_caps_an_unbound_channel);
	tcase_add_test(tc, broker_refuses_a_channel_with_holder0);
	tcase_add_test(tc, merchant_adopts_broker_capped_segments);
	suite_add_tcase(s, tc);
	TCase *tw = tcase_create("wallets");
	tcase_add_unchecked_fixture(tw, setup_net, teardown_net);
	tcase_set_timeout(tw, 300);
	tcase_add_test(tw, wallets_transfer_an_unbound_channel_through_the_broker);
	tcase_add_test(tw, bound_channel_transfers_through_the_holder);
	tcase_add_test(tw, bound_while_transferring_sends_the_same_transfer_to_the_holder);
	suite_add_tcase(s, tw);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
