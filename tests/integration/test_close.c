/* Early close at the holder (protocol.md sections 5, 6 "Close", 10; docs/close.md) against the
 * real daemons (deploy/mpnet: brokerd, merchants m1 and m2, walletd w1):
 * - the holder's side, byte by byte with a test wallet: CloseRequests that are forged, for
 *   another epoch or an unknown segment are refused with a typed error and change nothing; the
 *   owner's CloseRequest gets a Close at the last accepted index, the same request again the
 *   same bytes; afterwards Pay and Transfer get CLOSED, a HandoffReq and an Open get CLOSED
 *   carrying the Close; m1 still redeems everything up to final_index (its claims carry the
 *   Close as custody evidence) and is credited; the broker refuses a claim above final_index
 *   with that Close, and a Close not signed by the holder;
 * - walletd's `close`: a half-spent channel closes at its holder (CLOSED at the wallet and at
 *   m1, the wallet pays no more, a repeat answers the stored Close);
 * - walletd asks for the early refund on its own right after the Close (REFUNDED, the exact
 *   unspent rest, CLOSED_EARLY at the broker); another Close of the channel gets CONFLICT;
 *   finalisation later pays nothing more;
 * - the holder crashes (MP_FAULT=close_after_commit, merchantd/fault.h) strictly between
 *   committing the Close and answering it: the wallet stays CLOSING; after the restart its
 *   retry gets exactly the bytes in m1's store.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_settle.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], m1_hex[64], m1_ep[128], account_w1[64];
static struct tmerchant m1, m2;

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);	/* the last test finalises */
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* sweeps when the test asks */
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account_w1, sizeof(account_w1), "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	net_down(&net);
}

/* ---- helpers ---- */

/* m1's `channels` entry of a channel (hex id): its state and last into out. */
static void m1_channel(const char *hex, char *state, size_t len, int64_t *last)
{
	json_t *r = admin_ok(&net, "m1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	bool found = false;
	for (size_t i = 0; i < json_array_size(list) && !found; i++) {
		json_t *c = json_array_get(list, i);
		if (strcmp(json_str(c, "channel_id"), hex))
			continue;
		found = true;
		snprintf(state, len, "%s", json_str(c, "state"));
		*last = json_int(c, "last");
	}
	json_decref(r);
	ck_assert_msg(found, "m1 does not know channel %s", hex);
}

/* The call fails and its error contains want. */
static void refused(const char *who, const char *method, const char *params, const char *want)
{
	char err[1024];
	json_t *r = admin(&net, who, method, params, err, sizeof(err));
	ck_assert_msg(r == NULL, "%s %s(%.200s) succeeded", who, method, params);
	ck_assert_msg(strstr(err, want) != NULL, "%s %s: expected '%s' in: %s", who, method, want,
		      err);
}

static uint8_t *encoded(const MpSigned *s, size_t *len)
{
	uint8_t *b = mp_stmt_encode(s, len);
	ck_assert(b != NULL);
	return b;
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	size_t la, lb;
	uint8_t *ea = encoded(a, &la), *eb = encoded(b, &lb);
	bool same = la == lb && !memcmp(ea, eb, la);
	free(ea);
	free(eb);
	return same;
}

/* ---- the holder's side, with a test wallet ---- */

struct setup {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
};

/* A channel of n units of 1 issued with holder0 = m1. */
static void make_channel(struct setup *s, uint32_t n)
{
	struct wire broker;
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&s->tw, &broker);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(s->tw.account_id, MP_ID_LEN, hex);
	net_fund(&net, hex, n);
	tchannel_make(&s->ch, &s->tw, n, 1, m1.mid);
	ck_assert_int_eq(tchannel_issue(&s->ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&s->ch, s->id);
	mp_hex_encode(s->id, MP_ID_LEN, s->hex);
}

static void free_setup(struct setup *s)
{
	tchannel_free(&s->ch);
	mp_key_free(&s->tw.account);
}

static MpCode pay(struct setup *s, struct wire *w, uint32_t j)
{
	static const uint8_t ref[4] = {1, 2, 3, 4};
	MpEnvelope *e = tchannel_pay(&s->ch, w, j, ref, sizeof(ref));
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck for j=%u", j);
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

static bool accepted(MpCode c)
{
	return c == MP_ST(OK) || c == MP_ST(UNDERPAID);
}

static MpSigned *close_request(const struct mp_key *key, const uint8_t id[MP_ID_LEN],
			       uint32_t seg_seq, uint32_t epoch)
{
	Micropay__V1__CloseRequest r = MICROPAY__V1__CLOSE_REQUEST__INIT;
	r.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	r.seg_seq = seg_seq;
	r.epoch = epoch;
	MpSigned *s = mp_stmt_sign(key, MP_STMT_CLOSE_REQUEST, &r.base);
	ck_assert(s != NULL);
	return s;
}

/* A CloseReq to m1 on connection w; its CloseResp (the test fails on anything else). */
static MpEnvelope *close_call(struct wire *w, const MpSigned *request)
{
	Micropay__V1__CloseReq req = MICROPAY__V1__CLOSE_REQ__INIT;
	req.request = (MpSigned *)request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CLOSE_REQ);
	env.close_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(CLOSE_RESP), "no CloseResp");
	return e;
}

static MpCode close_code(struct wire *w, const MpSigned *request)
{
	MpEnvelope *e = close_call(w, request);
	MpCode code = e->close_resp->status->code;
	ck_assert_msg(e->close_resp->close == NULL, "a refusal (%s) carries a Close",
		      mp_code_name(code));
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* A Transfer of the channel's rest (segment 1) signed by the owner, to a fresh key. */
static MpSigned *sign_transfer(const struct setup *s, uint32_t declared_last)
{
	uint8_t pk[MP_PK_LEN], nonce[MP_NONCE_LEN], root[MP_HASH_LEN], head[MP_HASH_LEN];
	ck_assert(mp_random_bytes(pk, sizeof(pk)) && mp_random_bytes(nonce, sizeof(nonce)) &&
		  mp_random_bytes(root, sizeof(root)));
	mp_stmt_hash(s->ch.cert, head);
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->id};
	t.new_seg_seq = 1;
	t.holder_epoch = 0;
	t.declared_last = declared_last;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, nonce};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, root};
	t.new_len = s->ch.n;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, head};
	t.valid_until = UINT64_MAX / 2;
	MpSigned *st = mp_stmt_sign(&s->ch.owner, MP_STMT_TRANSFER, &t.base);
	ck_assert(st != NULL);
	return st;
}

/* The Close as m1 signed it: m1's key, channel, epoch 0, (0, final_index, our word). */
static void check_close(const struct setup *s, const MpSigned *close, uint32_t final_index)
{
	ck_assert(close != NULL);
	ck_assert_int_eq(close->type, MP_STMT_CLOSE);
	ck_assert(close->signer_pk.len == MP_PK_LEN &&
		  !memcmp(close->signer_pk.data, m1.key.pk, MP_PK_LEN));
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(
	    mp_stmt_open(close, MP_STMT_CLOSE, m1.key.pk, &micropay__v1__close__descriptor, &body),
	    MP_ST(OK));
	Micropay__V1__Close *cl = (Micropay__V1__Close *)body;
	uint8_t word[MP_HASH_LEN];
	tchannel_word(&s->ch, final_index, word);
	ck_assert(!memcmp(cl->channel_id.data, s->id, MP_ID_LEN));
	ck_assert_int_eq(cl->hseq, 0);
	ck_assert(cl->point != NULL);
	ck_assert_int_eq(cl->point->seg_seq, 0);
	ck_assert_int_eq(cl->point->index, final_index);
	ck_assert(cl->point->w.len == MP_HASH_LEN && !memcmp(cl->point->w.data, word, MP_HASH_LEN));
	protobuf_c_message_free_unpacked(body, NULL);
}

START_TEST(forged_close_requests_change_nothing)
{
	struct setup s = {0};
	make_channel(&s, 20);
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(&s.ch, &w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(accepted(pay(&s, &w, 2)));

	struct mp_key stranger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&stranger, seed));
	MpSigned *forged = close_request(&stranger, s.id, 0, 0);
	ck_assert_int_eq(close_code(&w, forged), MP_ST(BAD_SIG));
	MpSigned *by_m1 = close_request(&m1.key, s.id, 0, 0); /* the holder is not the owner */
	ck_assert_int_eq(close_code(&w, by_m1), MP_ST(BAD_SIG));
	MpSigned *other_epoch = close_request(&s.ch.owner, s.id, 0, 1);
	ck_assert_int_eq(close_code(&w, other_epoch), MP_ST(NOT_HOLDER));
	MpSigned *other_segment = close_request(&s.ch.owner, s.id, 1, 0);
	ck_assert_int_eq(close_code(&w, other_segment), MP_ST(STALE_SEGMENT));
	MpSigned *wrong_type = close_request(&s.ch.owner, s.id, 0, 0);
	wrong_type->type = MP_STMT_MOVE; /* read as a CloseRequest only if its type says so */
	ck_assert_int_eq(close_code(&w, wrong_type), MP_ST(MALFORMED));

	char state[32];
	int64_t last;
	m1_channel(s.hex, state, sizeof(state), &last);
	ck_assert_str_eq(state, "HELD");
	ck_assert_int_eq(last, 2);
	json_t *st = admin_ok(&net, "m1", "status", NULL);
	ck_assert_int_eq(json_int(json_object_get(st, "counters"), "closes_signed"), 0);
	ck_assert_int_eq(json_int(json_object_get(st, "counters"), "close_refusals"), 5);
	json_decref(st);
	ck_assert(accepted(pay(&s, &w, 3))); /* still paying: nothing changed */
	m1_channel(s.hex, state, sizeof(state), &last);
	ck_assert_str_eq(state, "HELD");
	ck_assert_int_eq(last, 3);
	wire_close(&w);
	mp_stmt_free(forged);
	mp_stmt_free(by_m1);
	mp_stmt_free(other_epoch);
	mp_stmt_free(other_segment);
	mp_stmt_free(wrong_type);
	mp_key_free(&stranger);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

/* A Redeem by m1 of one claim on epoch 0, segment 0 at index j, its custody the given Close;
 * the claim's status (and credited_end). */
static MpCode redeem_with_close(const struct setup *s, uint32_t j, const MpSigned *close,
				uint32_t *credited_end)
{
	uint8_t word[MP_HASH_LEN], redeem_id[MP_ID_LEN];
	tchannel_word(&s->ch, j, word);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = j;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Claim claim = MICROPAY__V1__CLAIM__INIT;
	claim.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->id};
	claim.point = &pt;
	MpSigned *custody[1] = {(MpSigned *)close};
	claim.custody = custody;
	claim.n_custody = 1;
	Micropay__V1__Claim *claims[1] = {&claim};
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	rd.claims = claims;
	rd.n_claims = 1;
	MpSigned *stmt = mp_stmt_sign(&m1.key, MP_STMT_REDEEM, &rd.base);
	ck_assert(stmt != NULL);
	struct wire w;
	tmerchant_connect(&m1, &w, broker_ep, ca);
	MpEnvelope *e = redeem_call(&w, stmt);
	wire_close(&w);
	ck_assert_int_eq(e->redeem_resp->n_results, 1);
	MpCode code = e->redeem_resp->results[0]->status;
	*credited_end = e->redeem_resp->results[0]->credited_end;
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(stmt);
	return code;
}

/* A Close of the channel as m2 would sign it (not the holder). */
static MpSigned *close_by_m2(const struct setup *s, uint32_t final_index)
{
	uint8_t word[MP_HASH_LEN];
	tchannel_word(&s->ch, final_index, word);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = final_index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Close cl = MICROPAY__V1__CLOSE__INIT;
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->id};
	cl.point = &pt;
	MpSigned *st = mp_stmt_sign(&m2.key, MP_STMT_CLOSE, &cl.base);
	ck_assert(st != NULL);
	return st;
}

START_TEST(holder_closes_refuses_after_and_redeems_to_final_index)
{
	struct setup s = {0};
	make_channel(&s, 20);
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* what earlier tests left */
	int64_t before = net_pending(&net, m1_hex);
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(&s.ch, &w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(accepted(pay(&s, &w, 3)));
	ck_assert(accepted(pay(&s, &w, 8)));

	MpSigned *request = close_request(&s.ch.owner, s.id, 0, 0);
	e = close_call(&w, request);
	ck_assert_msg(e->close_resp->status->code == MP_ST(OK), "close: %s %s",
		      mp_code_name(e->close_resp->status->code), e->close_resp->status->detail);
	check_close(&s, e->close_resp->close, 8);
	ck_assert_uint_eq(e->close_resp->n_custody, 0);	       /* epoch 0: the cert names m1 */
	ck_assert_uint_ge(e->close_resp->n_merchant_certs, 1); /* m1's own */
	MpSigned *close = mp_stmt_copy(e->close_resp->close);
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* the same request again, on another connection: the same bytes */
	struct wire w2;
	ck_assert(wire_connect(&w2, m1_ep, ca, NULL, NULL));
	e = close_call(&w2, request);
	ck_assert_int_eq(e->close_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->close_resp->close, close));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w2);

	/* later Pay, Transfer, HandoffReq and Open */
	ck_assert_int_eq(pay(&s, &w, 9), MP_ST(CLOSED));
	ck_assert_int_eq(pay(&s, &w, 8), MP_ST(CLOSED));
	MpSigned *transfer = sign_transfer(&s, 8);
	Micropay__V1__TransferReq tr = MICROPAY__V1__TRANSFER_REQ__INIT;
	tr.transfer = transfer;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &tr;
	e = wire_call(&w, &env);
	ck_assert(e && e->body_case == MP_BODY(TRANSFER_RESP));
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(CLOSED));
	ck_assert(e->transfer_resp->cap == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);

	MpSigned *move = sign_move(&s.ch.owner, s.id, 0, m2.mid);
	struct wire wm;
	ck_assert(wire_connect(&wm, m1_ep, ca, m2.cert, m2.tls_key));
	Micropay__V1__HandoffReq hr = MICROPAY__V1__HANDOFF_REQ__INIT;
	hr.move = move;
	env = (MpEnvelope)MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &hr;
	e = wire_call(&wm, &env);
	ck_assert(e && e->body_case == MP_BODY(HANDOFF_RESP));
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(CLOSED));
	ck_assert(e->handoff_resp->handoff == NULL);
	ck_assert_msg(e->handoff_resp->status->evidence &&
			  same_stmt(e->handoff_resp->status->evidence, close),
		      "the HandoffResp does not carry the Close");
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&wm);

	e = tchannel_open(&s.ch, &w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(CLOSED));
	ck_assert(e->open_ack->status->evidence && same_stmt(e->open_ack->status->evidence, close));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);

	char state[32];
	int64_t last;
	m1_channel(s.hex, state, sizeof(state), &last);
	ck_assert_str_eq(state, "CLOSED");
	ck_assert_int_eq(last, 8);

	/* m1 redeems its epoch up to final_index and is credited for all of it */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 8);
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* nothing more, nothing twice */
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 8);

	/* the broker reads the Close in the custody evidence as the end of m1's epoch */
	uint32_t end = 0;
	ck_assert_int_eq(redeem_with_close(&s, 8, close, &end), MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(end, 8);
	ck_assert_int_eq(redeem_with_close(&s, 10, close, &end), MP_ST(OUT_OF_RANGE));
	MpSigned *forged = close_by_m2(&s, 10);
	ck_assert_int_eq(redeem_with_close(&s, 10, forged, &end), MP_ST(BAD_SIG));
	mp_stmt_free(forged);
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 8);

	mp_stmt_free(transfer);
	mp_stmt_free(move);
	mp_stmt_free(close);
	mp_stmt_free(request);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

/* ---- walletd ---- */

static void issue_w1(uint32_t n, char *channel, size_t len)
{
	char params[200];
	net_fund(&net, account_w1, n);
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":1,\"days\":1}", m1_hex, n);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	ck_assert_str_eq(json_str(r, "status"), "ACTIVE");
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}

static json_t *pay_w1(const char *channel, unsigned units, char *err, size_t errlen)
{
	char params[400], order[80];
	net_new_order(&net, "m1", units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, m1_ep, units, order);
	return admin(&net, "w1", "pay", params, err, errlen);
}

static const char *w1_state(const char *channel, char *out, size_t len)
{
	json_t *r = admin_ok(&net, "w1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	out[0] = 0;
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), channel))
			snprintf(out, len, "%s", json_str(json_array_get(list, i), "state"));
	json_decref(r);
	return out;
}

/* A closed channel's state at the wallet once its early refund was answered: REFUNDED (the
 * wallet asks on its own right after the Close, docs/close.md "The refund"). */
static void w1_refunded_soon(const char *channel)
{
	char state[32] = "";
	for (int i = 0; i < 100 && strcmp(w1_state(channel, state, sizeof(state)), "REFUNDED"); i++)
		usleep(100 * 1000);
	ck_assert_msg(!strcmp(state, "REFUNDED"), "channel %s is %s at w1, not REFUNDED", channel,
		      state);
}

/* m1's stored Close of a channel (malloc'd), or NULL. */
static uint8_t *stored_close(const char *hex, size_t *len)
{
	uint8_t id[MP_ID_LEN];
	hex_to_bytes(hex, id, MP_ID_LEN);
	char path[700];
	net_path(&net, "m1/merchant.db", path, sizeof(path));
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t *out = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "SELECT stmt FROM closes WHERE channel_id = ?", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*len = (size_t)sqlite3_column_bytes(st, 0);
		out = malloc(*len);
		ck_assert(out != NULL);
		memcpy(out, sqlite3_column_blob(st, 0), *len);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

/* The "close" of a wallet answer decoded (base64 of the Signed Close's bytes). */
static uint8_t *answer_close(json_t *r, size_t *len)
{
	const char *text = json_str(r, "close");
	size_t tl = strlen(text);
	uint8_t *out = malloc(tl);
	ck_assert(out != NULL);
	int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)tl);
	ck_assert_int_gt(n, 0);
	size_t pad = (tl >= 1 && text[tl - 1] == '=') + (tl >= 2 && text[tl - 2] == '=');
	*len = (size_t)n - pad;
	return out;
}

START_TEST(wallet_closes_a_half_spent_channel)
{
	char channel[64], params[200], err[1024], state[32];
	issue_w1(20, channel, sizeof(channel));
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* what earlier tests left */
	int64_t before = net_pending(&net, m1_hex);
	json_t *r = pay_w1(channel, 9, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay: %s", err);
	json_decref(r);
	refused("w1", "close", "{\"channel_id\":\"00112233445566778899aabbccddeeff\"}",
		"no such channel in this wallet");
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	r = admin_ok(&net, "w1", "close", params);
	ck_assert_str_eq(json_str(r, "state"), "CLOSED");
	ck_assert_int_eq(json_int(r, "final_index"), 9);
	ck_assert_int_eq(json_int(r, "epoch"), 0);
	ck_assert_int_eq(json_int(r, "refund_units"), 11);
	size_t len, stored_len;
	uint8_t *got = answer_close(r, &len), *stored = stored_close(channel, &stored_len);
	ck_assert(stored && len == stored_len && !memcmp(got, stored, len));
	json_decref(r);
	r = admin_ok(&net, "w1", "close", params); /* again: the stored Close */
	size_t len2;
	uint8_t *again = answer_close(r, &len2);
	ck_assert(len2 == len && !memcmp(again, got, len));
	json_decref(r);
	w1_refunded_soon(channel);
	int64_t last;
	m1_channel(channel, state, sizeof(state), &last);
	ck_assert_str_eq(state, "CLOSED");
	ck_assert_int_eq(last, 9);
	r = pay_w1(channel, 1, err, sizeof(err));
	ck_assert_msg(r == NULL && strstr(err, "CLOSED"), "paid after the close: %s", err);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 9);
	free(got);
	free(again);
	free(stored);
	net_audit_clean(&net);
}
END_TEST

/* mp_refund_early (brokerd/sql/0017-early-refund.sql) called directly with another Close of
 * the channel (its hash here a made-up one) and a new refund_id: the status, refund and spent. */
static char *refund_early(const char *channel, const uint8_t *close, size_t close_len,
			  const char *stmt, uint8_t hash_byte)
{
	uint8_t id[MP_ID_LEN], rid[MP_ID_LEN], hash[MP_HASH_LEN], chash[MP_HASH_LEN];
	hex_to_bytes(channel, id, MP_ID_LEN);
	memset(rid, 0x5a, sizeof(rid));
	memset(hash, hash_byte, sizeof(hash));
	memset(chash, 0xc1, sizeof(chash));
	char b_id[64], b_rid[64], b_hash[96], b_chash[96], b_stmt[256],
	    *b_close = malloc(2 * close_len + 16);
	ck_assert(b_close != NULL);
	char *out = sql_value(
	    &net,
	    "SELECT status || ',' || coalesce(refund, -1) || ',' || coalesce(spent, -1) FROM "
	    "mp_refund_early(%s, %s, 0, %s, %s, NULL, %s, %s, 0, 9, 1000)",
	    sql_bytea(rid, MP_ID_LEN, b_rid, sizeof(b_rid)),
	    sql_bytea(id, MP_ID_LEN, b_id, sizeof(b_id)),
	    sql_bytea(hash, MP_HASH_LEN, b_hash, sizeof(b_hash)),
	    sql_bytea((const uint8_t *)stmt, strlen(stmt), b_stmt, sizeof(b_stmt)),
	    sql_bytea(chash, MP_HASH_LEN, b_chash, sizeof(b_chash)),
	    sql_bytea(close, close_len, b_close, 2 * close_len + 16));
	free(b_close);
	return out;
}

static char *broker_channel(const char *channel)
{
	return sql_value(&net,
			 "SELECT state || ',' || coalesce(close_index, -1) || ',' || early_refund "
			 "FROM channels WHERE channel_id = '\\x%s'::bytea",
			 channel);
}

START_TEST(early_refund_pays_the_unspent_rest_once)
{
	char channel[64], params[200], err[1024];
	issue_w1(20, channel, sizeof(channel));
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* what earlier tests left */
	int64_t pending = net_pending(&net, m1_hex);
	json_t *r = pay_w1(channel, 9, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay: %s", err);
	json_decref(r);
	int64_t before = net_balance(&net, account_w1);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	r = admin_ok(&net, "w1", "close", params);
	ck_assert_int_eq(json_int(r, "final_index"), 9);
	size_t len;
	uint8_t *close = answer_close(r, &len);
	json_decref(r);
	/* walletd asks for the early refund on its own, with the Close */
	w1_refunded_soon(channel);
	ck_assert_int_eq(net_balance(&net, account_w1) - before, 11);
	char *got = broker_channel(channel);
	ck_assert_str_eq(got, "CLOSED_EARLY,9,11");
	free(got);
	/* another Close of the channel (another refund_id): CONFLICT, nothing moves */
	got = refund_early(channel, close, len, "request", 0x11);
	ck_assert_str_eq(got, "16,-1,-1");
	free(got);
	got = broker_channel(channel);
	ck_assert_str_eq(got, "CLOSED_EARLY,9,11");
	free(got);
	ck_assert_int_eq(net_balance(&net, account_w1) - before, 11);
	net_audit_clean(&net);
	/* the holder's claims up to final_index are still credited */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex) - pending, 9);
	ck_assert_int_eq(net_balance(&net, account_w1) - before, 11);
	/* finalisation subtracts the early refund: nothing more to refund, nothing unclaimed */
	json_t *s = settle_channel(&net, channel);
	settle_advance_to(&net, (uint64_t)json_int(s, "finalize_at"));
	json_decref(s);
	json_decref(settle_sweep(&net));
	s = settle_channel(&net, channel);
	ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
	json_t *f = json_object_get(s, "finalization");
	ck_assert_int_eq(json_int(f, "spent"), 9);
	ck_assert_int_eq(json_int(f, "refund"), 0);
	ck_assert_int_eq(json_int(f, "unclaimed"), 0);
	ck_assert_int_eq(json_int(f, "credited"), 9);
	json_decref(s);
	/* (w1's channels of the earlier tests were refunded too: count this one's transfers) */
	got = sql_value(&net,
			"SELECT count(*) FILTER (WHERE kind = 'refund') || ',' || count(*) FILTER "
			"(WHERE kind = 'early_refund') FROM transfers WHERE ref = '\\x%s'::bytea",
			channel);
	ck_assert_str_eq(got, "0,1");
	free(got);
	free(close);
	net_audit_clean(&net);
}
END_TEST

START_TEST(holder_crash_after_commit_then_the_retry_gets_the_stored_close)
{
	char channel[64], params[200], err[1024], state[32];
	issue_w1(20, channel, sizeof(channel));
	json_t *r = pay_w1(channel, 5, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay: %s", err);
	json_decref(r);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0);
	ck_assert_int_eq(setenv("MP_FAULT", "close_after_commit", 1), 0);
	int started = net_cmd(&net, "start", "m1");
	unsetenv("MP_FAULT");
	ck_assert_int_eq(started, 0);

	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	refused("w1", "close", params, "closed");
	ck_assert_str_eq(w1_state(channel, state, sizeof(state)), "CLOSING");
	size_t stored_len = 0;
	uint8_t *stored = stored_close(channel, &stored_len);
	ck_assert_msg(stored != NULL, "the Close was not committed before the crash");
	char pay_params[300]; /* m1 is down: the wallet refuses before it connects */
	snprintf(pay_params, sizeof(pay_params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":1,\"order_ref\":\"0102\"}",
		 channel, m1_ep);
	refused("w1", "pay", pay_params, "CLOSING");

	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	for (int retry = 0; retry < 2; retry++) {
		r = admin_ok(&net, "w1", "close", params);
		ck_assert_str_eq(json_str(r, "state"), "CLOSED");
		ck_assert_int_eq(json_int(r, "final_index"), 5);
		size_t len;
		uint8_t *got = answer_close(r, &len);
		ck_assert_msg(len == stored_len && !memcmp(got, stored, len),
			      "retry %d: not the stored Close bytes", retry);
		free(got);
		json_decref(r);
	}
	w1_refunded_soon(channel);
	int64_t last;
	m1_channel(channel, state, sizeof(state), &last);
	ck_assert_str_eq(state, "CLOSED");
	ck_assert_int_eq(last, 5);
	free(stored);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("close");
	TCase *tc = tcase_create("close");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, forged_close_requests_change_nothing);
	tcase_add_test(tc, holder_closes_refuses_after_and_redeems_to_final_index);
	tcase_add_test(tc, wallet_closes_a_half_spent_channel);
	tcase_add_test(tc, holder_crash_after_commit_then_the_retry_gets_the_stored_close);
	tcase_add_test(tc, early_refund_pays_the_unspent_rest_once); /* last: moves the clock */
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
