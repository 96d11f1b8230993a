/* merchantd's signatures off its event loop (docs/keys.md, "Threads and the token"), with the
 * merchant's key in a PKCS#11 token (SoftHSM2; deploy/mpnet MP_PKCS11_*), against the real
 * daemons (brokerd, merchants m1 and m2):
 *  - a Close, a Cap (TransferReq), a Handoff (HandoffReq from m2) and a Receipt are each signed
 *    on the worker pool: micropay_merchant_signatures_total{where="worker"} moves by exactly
 *    one per statement; each request sent again is answered DUPLICATE_OK with the stored
 *    statement byte for byte (the Receipt: the same bytes); the Redeems of all that are
 *    signed on the redeemer's worker too (the counter moves by the Redeems sent) and credit;
 *  - a CloseReq and two Pays of the same channel in one write, several times: the Close is at
 *    the index paid before, no Pay behind it is credited (each answered LIMIT while the Close
 *    is signed, or CLOSED after), and m1's channel stays at that index;
 *  - in the same write, a Pay of another channel is accepted while the first one's Close is at
 *    the worker;
 *  - a peer that hangs up right after sending CloseReqs of several channels only loses the
 *    answers: each sent again on another connection gets the Close at the index paid (OK, or
 *    DUPLICATE_OK for those already stored), each channel CLOSED;
 *  - with one worker and a queue of one job, CloseReqs of many channels in one write: some are
 *    answered LIMIT (signing queue full), those channels are still HELD and paid nowhere else,
 *    and each of them sent again later is closed OK.
 * The broker's audit is clean at the end of every test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_handoff.h"
#include "harness_net.h"
#include "harness_merchant.h"
#include "harness_token.h"
#include "../check_run.h"

#define SIGNED_BY_WORKER "micropay_merchant_signatures_total{where=\"worker\"}"
#define ROUNDS		 6
#define BURST		 16
#define CONNS_GONE	 8

static struct net net;
static char token_dir[64] = "/tmp/mpmsignpool.XXXXXX";
static char ca[700], m1_ep[128];
static uint8_t m1_mid[MP_ID_LEN], m2_mid[MP_ID_LEN];
static char m2_cert[700], m2_key[700];

static void read_mid(const char *name, uint8_t mid[MP_ID_LEN], char *hex, size_t len)
{
	net_read(&net, name, "merchant_id", hex, len);
	hex_to_bytes(hex, mid, MP_ID_LEN);
}

static void setup_net(void)
{
	token_suppress_leaks();
	token_make(token_dir);
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	char hex[64];
	read_mid("m1", m1_mid, hex, sizeof(hex));
	read_mid("m2", m2_mid, hex, sizeof(hex));
	snprintf(m2_cert, sizeof(m2_cert), "%s/tls/m-%s.crt", net.dir, hex);
	snprintf(m2_key, sizeof(m2_key), "%s/tls/m-%s.key", net.dir, hex);
	char config[600];
	net_path(&net, "m1/config.ini", config, sizeof(config));
	ck_assert_msg(token_holds_key(config), "m1's key is not in the token");
}

static void teardown_net(void)
{
	net_down(&net);
	token_remove(token_dir);
}

/* ---- helpers ---- */

struct chan {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
};

/* A funded channel of n units held by m1, opened on w. */
static void chan_open(struct chan *c, struct wire *w, uint32_t n)
{
	channel_issue_funded(&net, &c->tw, &c->ch, n, m1_mid);
	tchannel_id(&c->ch, c->id);
	mp_hex_encode(c->id, MP_ID_LEN, c->hex);
	MpEnvelope *e = tchannel_open(&c->ch, w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
}

static void chan_free(struct chan *c)
{
	tchannel_free(&c->ch);
	mp_key_free(&c->tw.account);
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	size_t la = 0, lb = 0;
	uint8_t *ea = a ? mp_stmt_encode(a, &la) : NULL, *eb = b ? mp_stmt_encode(b, &lb) : NULL;
	bool same = ea && eb && la == lb && !memcmp(ea, eb, la);
	free(ea);
	free(eb);
	return same;
}

static MpSigned *close_request(const struct chan *c)
{
	Micropay__V1__CloseRequest r = MICROPAY__V1__CLOSE_REQUEST__INIT;
	r.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	MpSigned *s = mp_stmt_sign(&c->ch.owner, MP_STMT_CLOSE_REQUEST, &r.base);
	ck_assert(s != NULL);
	return s;
}

/* The Envelope of a CloseReq (points into req; request stays the caller's). */
static MpEnvelope close_env(Micropay__V1__CloseReq *req, MpSigned *request)
{
	micropay__v1__close_req__init(req);
	req->request = request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CLOSE_REQ);
	env.close_req = req;
	return env;
}

static MpEnvelope *close_call(struct wire *w, MpSigned *request)
{
	Micropay__V1__CloseReq req;
	MpEnvelope env = close_env(&req, request);
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(CLOSE_RESP), "no CloseResp");
	return e;
}

/* A Pay envelope of index j (points into req, word and id). */
struct pay_msg {
	Micropay__V1__PayReq req;
	uint8_t w[MP_HASH_LEN];
	MpEnvelope env;
};

static void pay_msg(struct pay_msg *p, const struct chan *c, uint32_t j)
{
	static uint8_t ref[1] = {1};
	tchannel_word(&c->ch, j, p->w);
	micropay__v1__pay_req__init(&p->req);
	p->req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	p->req.j = j;
	p->req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, p->w};
	p->req.order_ref = (ProtobufCBinaryData){1, ref};
	p->env = (MpEnvelope)MICROPAY__V1__ENVELOPE__INIT;
	p->env.body_case = MP_BODY(PAY_REQ);
	p->env.pay_req = &p->req;
}

/* n answers on w into resp[request_id - first_id]. */
static void read_answers(struct wire *w, MpEnvelope **resp, size_t n, uint64_t first_id)
{
	for (size_t got = 0; got < n; got++) {
		MpEnvelope *e = wire_recv_within(w, 300000);
		ck_assert_msg(e != NULL, "answer %zu of %zu missing", got + 1, n);
		ck_assert(e->request_id >= first_id && e->request_id < first_id + n);
		ck_assert(resp[e->request_id - first_id] == NULL);
		resp[e->request_id - first_id] = e;
	}
}

static void free_answers(MpEnvelope **resp, size_t n)
{
	for (size_t i = 0; i < n; i++)
		micropay__v1__envelope__free_unpacked(resp[i], NULL);
}

/* The Close's point index (it verifies under its signer, m1's key in the token). */
static uint32_t close_index(const MpSigned *close)
{
	ck_assert(close != NULL && close->signer_pk.len == MP_PK_LEN);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(close, MP_STMT_CLOSE, close->signer_pk.data,
				      &micropay__v1__close__descriptor, &body),
			 MP_ST(OK));
	uint32_t index = ((Micropay__V1__Close *)body)->point->index;
	protobuf_c_message_free_unpacked(body, NULL);
	return index;
}

static void expect_m1(const struct chan *c, const char *state, int64_t last)
{
	char st[32];
	int64_t epoch, got;
	ck_assert(merchant_channel_state(&net, "m1", c->hex, st, sizeof(st), &epoch, &got));
	ck_assert_msg(!strcmp(st, state) && got == last,
		      "m1: channel %s %s at %lld, expected %s at %lld", c->hex, st, (long long)got,
		      state, (long long)last);
}

/* ---- statements signed on the pool, replays byte for byte ---- */

static void close_and_replay(struct wire *w)
{
	struct chan c = {0};
	chan_open(&c, w, 20);
	ck_assert(pay_accepted(pay_status(&c.ch, w, 3)));
	MpSigned *req = close_request(&c);
	MpEnvelope *e = close_call(w, req);
	ck_assert_int_eq(e->close_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(close_index(e->close_resp->close), 3);
	MpEnvelope *again = close_call(w, req);
	ck_assert_int_eq(again->close_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->close_resp->close, again->close_resp->close));
	micropay__v1__envelope__free_unpacked(e, NULL);
	micropay__v1__envelope__free_unpacked(again, NULL);
	mp_stmt_free(req);
	chan_free(&c);
}

/* A Transfer of the channel's rest (segment 1) signed by the owner, to a fresh key. */
static MpSigned *sign_transfer(const struct chan *c, uint32_t declared_last)
{
	uint8_t pk[MP_PK_LEN], nonce[MP_NONCE_LEN], root[MP_HASH_LEN], head[MP_HASH_LEN];
	ck_assert(mp_random_bytes(pk, sizeof(pk)) && mp_random_bytes(nonce, sizeof(nonce)) &&
		  mp_random_bytes(root, sizeof(root)));
	mp_stmt_hash(c->ch.cert, head);
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	t.new_seg_seq = 1;
	t.declared_last = declared_last;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, nonce};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, root};
	t.new_len = c->ch.n;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, head};
	t.valid_until = UINT64_MAX / 2;
	MpSigned *st = mp_stmt_sign(&c->ch.owner, MP_STMT_TRANSFER, &t.base);
	ck_assert(st != NULL);
	return st;
}

static MpEnvelope *transfer_call(struct wire *w, MpSigned *transfer)
{
	Micropay__V1__TransferReq tr = MICROPAY__V1__TRANSFER_REQ__INIT;
	tr.transfer = transfer;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &tr;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(TRANSFER_RESP), "no TransferResp");
	return e;
}

static void transfer_and_replay(struct wire *w)
{
	struct chan c = {0};
	chan_open(&c, w, 20);
	ck_assert(pay_accepted(pay_status(&c.ch, w, 4)));
	MpSigned *t = sign_transfer(&c, 4);
	MpEnvelope *e = transfer_call(w, t);
	ck_assert_msg(e->transfer_resp->status->code == MP_ST(OK), "transfer: %s %s",
		      mp_code_name(e->transfer_resp->status->code),
		      e->transfer_resp->status->detail);
	ck_assert(e->transfer_resp->cap && e->transfer_resp->cap->type == MP_STMT_CAP);
	MpEnvelope *again = transfer_call(w, t);
	ck_assert_int_eq(again->transfer_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->transfer_resp->cap, again->transfer_resp->cap));
	micropay__v1__envelope__free_unpacked(e, NULL);
	micropay__v1__envelope__free_unpacked(again, NULL);
	mp_stmt_free(t);
	chan_free(&c);
}

static MpEnvelope *handoff_call(struct wire *wm, MpSigned *move)
{
	Micropay__V1__HandoffReq hr = MICROPAY__V1__HANDOFF_REQ__INIT;
	hr.move = move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &hr;
	MpEnvelope *e = wire_call(wm, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(HANDOFF_RESP), "no HandoffResp");
	return e;
}

static void handoff_and_replay(struct wire *w)
{
	struct chan c = {0};
	chan_open(&c, w, 20);
	ck_assert(pay_accepted(pay_status(&c.ch, w, 5)));
	MpSigned *move = sign_move(&c.ch.owner, c.id, 0, m2_mid);
	struct wire wm;
	ck_assert(wire_connect(&wm, m1_ep, ca, m2_cert, m2_key));
	MpEnvelope *e = handoff_call(&wm, move);
	ck_assert_msg(e->handoff_resp->status->code == MP_ST(OK), "handoff: %s %s",
		      mp_code_name(e->handoff_resp->status->code), e->handoff_resp->status->detail);
	ck_assert(e->handoff_resp->handoff && e->handoff_resp->handoff->type == MP_STMT_HANDOFF);
	MpEnvelope *again = handoff_call(&wm, move);
	ck_assert_int_eq(again->handoff_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->handoff_resp->handoff, again->handoff_resp->handoff));
	wire_close(&wm);
	micropay__v1__envelope__free_unpacked(e, NULL);
	micropay__v1__envelope__free_unpacked(again, NULL);
	mp_stmt_free(move);
	expect_m1(&c, "HANDED_OFF", 5);
	chan_free(&c);
}

static MpEnvelope *receipt_call(struct wire *w, const struct chan *c, uint32_t j)
{
	uint8_t word[MP_HASH_LEN];
	tchannel_word(&c->ch, j, word);
	Micropay__V1__ReceiptReq r = MICROPAY__V1__RECEIPT_REQ__INIT;
	r.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	r.index = j;
	r.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RECEIPT_REQ);
	env.receipt_req = &r;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(RECEIPT_RESP), "no ReceiptResp");
	return e;
}

static void receipt_and_replay(struct wire *w)
{
	struct chan c = {0};
	chan_open(&c, w, 20);
	ck_assert(pay_accepted(pay_status(&c.ch, w, 2)));
	MpEnvelope *e = receipt_call(w, &c, 2);
	ck_assert_int_eq(e->receipt_resp->status->code, MP_ST(OK));
	MpEnvelope *again = receipt_call(w, &c, 2);
	ck_assert_int_eq(again->receipt_resp->status->code, MP_ST(OK));
	ck_assert(same_stmt(e->receipt_resp->receipt, again->receipt_resp->receipt));
	micropay__v1__envelope__free_unpacked(e, NULL);
	micropay__v1__envelope__free_unpacked(again, NULL);
	chan_free(&c);
}

static int64_t redeems_sent(void)
{
	json_t *st = admin_ok(&net, "m1", "status", NULL);
	int64_t n = json_int(json_object_get(st, "counters"), "redeems_sent");
	json_decref(st);
	return n;
}

START_TEST(statements_signed_on_workers_replayed_byte_for_byte)
{
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	int64_t before = metric(&net, "m1", SIGNED_BY_WORKER);
	ck_assert_int_ge(before, 0);
	close_and_replay(&w);
	ck_assert_int_eq(metric(&net, "m1", SIGNED_BY_WORKER), before + 1);
	transfer_and_replay(&w);
	ck_assert_int_eq(metric(&net, "m1", SIGNED_BY_WORKER), before + 2);
	handoff_and_replay(&w);
	ck_assert_int_eq(metric(&net, "m1", SIGNED_BY_WORKER), before + 3);
	receipt_and_replay(&w); /* a Receipt is signed anew each time (same bytes) */
	ck_assert_int_eq(metric(&net, "m1", SIGNED_BY_WORKER), before + 5);
	wire_close(&w);
	/* the Redeems of what m1 accepted (also the closed epoch, the capped segment and the
	 * handed-off epoch) are signed on the redeemer's worker: one per Redeem sent */
	int64_t redeems = redeems_sent();
	json_t *r = admin_ok(&net, "m1", "redeem", NULL);
	ck_assert_int_gt(json_int(r, "credited"), 0);
	json_decref(r);
	int64_t sent = redeems_sent() - redeems; /* resent bytes are not signed again */
	int64_t signed_redeems = metric(&net, "m1", SIGNED_BY_WORKER) - (before + 5);
	ck_assert_int_ge(signed_redeems, 1);
	ck_assert_int_le(signed_redeems, sent);
	net_audit_clean(&net);
}
END_TEST

/* ---- ordering: nothing behind a CloseReq is credited ---- */

/* CloseReq of a, Pays a:paid+1 and a:paid+2, Pay b:b_next in one write; a's Close is at paid,
 * neither of a's Pays credited, b's Pay accepted. True if a's Pays got LIMIT (SIGNING). */
static bool close_with_pays_behind(struct wire *w, struct chan *a, uint32_t paid, struct chan *b,
				   uint32_t b_next, uint64_t first_id)
{
	MpSigned *req = close_request(a);
	Micropay__V1__CloseReq cr;
	MpEnvelope cenv = close_env(&cr, req);
	struct pay_msg p1, p2, pb;
	pay_msg(&p1, a, paid + 1);
	pay_msg(&p2, a, paid + 2);
	pay_msg(&pb, b, b_next);
	MpEnvelope *envs[4] = {&cenv, &p1.env, &p2.env, &pb.env};
	ck_assert(wire_send_pipelined(w, envs, 4, first_id));
	MpEnvelope *resp[4] = {0};
	read_answers(w, resp, 4, first_id);
	ck_assert(resp[0]->body_case == MP_BODY(CLOSE_RESP));
	ck_assert_msg(resp[0]->close_resp->status->code == MP_ST(OK), "close: %s %s",
		      mp_code_name(resp[0]->close_resp->status->code),
		      resp[0]->close_resp->status->detail);
	ck_assert_uint_eq(close_index(resp[0]->close_resp->close), paid);
	bool limited = true;
	for (int i = 1; i <= 2; i++) {
		ck_assert(resp[i]->body_case == MP_BODY(PAY_ACK));
		MpCode code = resp[i]->pay_ack->status->code;
		ck_assert_msg(code == MP_ST(LIMIT) || code == MP_ST(CLOSED),
			      "a Pay behind the CloseReq got %s", mp_code_name(code));
		ck_assert_uint_eq(resp[i]->pay_ack->last, paid);
		limited = limited && code == MP_ST(LIMIT);
	}
	ck_assert(resp[3]->body_case == MP_BODY(PAY_ACK));
	ck_assert_msg(pay_accepted(resp[3]->pay_ack->status->code), "other channel's Pay: %s",
		      mp_code_name(resp[3]->pay_ack->status->code));
	free_answers(resp, 4);
	mp_stmt_free(req);
	expect_m1(a, "CLOSED", paid);
	return limited;
}

START_TEST(pays_behind_a_close_request_never_credited)
{
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	struct chan other = {0};
	chan_open(&other, &w, 100);
	unsigned limited = 0;
	for (uint32_t r = 0; r < ROUNDS; r++) {
		struct chan a = {0};
		chan_open(&a, &w, 20);
		ck_assert(pay_accepted(pay_status(&a.ch, &w, 2 + r)));
		limited += close_with_pays_behind(&w, &a, 2 + r, &other, r + 1, 1000 + 10 * r);
		chan_free(&a);
	}
	expect_m1(&other, "HELD", ROUNDS);
	/* Pays in the same read as their CloseReq are taken while its job is out */
	ck_assert_uint_ge(limited, 1);
	wire_close(&w);
	chan_free(&other);
	net_audit_clean(&net);
}
END_TEST

/* ---- a peer gone while its statements are at the worker ---- */

/* The CloseReq sent again until it is not LIMIT (its channel may still be SIGNING for the job
 * of the connection that is gone); at most 100 tries. */
static MpCode close_again(struct wire *w, MpSigned *req, uint32_t *index)
{
	for (int i = 0; i < 100; i++) {
		MpEnvelope *e = close_call(w, req);
		MpCode code = e->close_resp->status->code;
		if (e->close_resp->close)
			*index = close_index(e->close_resp->close);
		micropay__v1__envelope__free_unpacked(e, NULL);
		if (code != MP_ST(LIMIT))
			return code;
		usleep(100000);
	}
	return MP_ST(LIMIT);
}

START_TEST(connection_gone_while_signing_loses_only_the_answers)
{
	struct wire w, w2;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	struct chan c[CONNS_GONE];
	MpSigned *reqs[CONNS_GONE];
	Micropay__V1__CloseReq crs[CONNS_GONE];
	MpEnvelope envs[CONNS_GONE], *ptrs[CONNS_GONE];
	for (int i = 0; i < CONNS_GONE; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		chan_open(&c[i], &w, 10);
		ck_assert(pay_accepted(pay_status(&c[i].ch, &w, 2)));
		reqs[i] = close_request(&c[i]);
		envs[i] = close_env(&crs[i], reqs[i]);
		ptrs[i] = &envs[i];
	}
	ck_assert(wire_send_pipelined(&w, ptrs, CONNS_GONE, 7000));
	wire_close(&w); /* gone before the answers */
	ck_assert(wire_connect(&w2, m1_ep, ca, NULL, NULL));
	for (int i = 0; i < CONNS_GONE; i++) {
		uint32_t index = 0;
		MpCode code = close_again(&w2, reqs[i], &index);
		ck_assert_msg(code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK), "close %d: %s", i,
			      mp_code_name(code));
		ck_assert_uint_eq(index, 2);
		expect_m1(&c[i], "CLOSED", 2);
		mp_stmt_free(reqs[i]);
		chan_free(&c[i]);
	}
	wire_close(&w2);
	net_audit_clean(&net);
}
END_TEST

/* ---- a full queue: LIMIT, nothing stored, accepted on retry ---- */

START_TEST(queue_full_answers_limit_then_closes_on_retry)
{
	net_restart_with(&net, "m1", "merchant", "handoff_workers = 1\nworker_queue = 1");
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	struct chan c[BURST];
	MpSigned *reqs[BURST];
	Micropay__V1__CloseReq crs[BURST];
	MpEnvelope envs[BURST], *ptrs[BURST], *resp[BURST] = {0};
	for (int i = 0; i < BURST; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		chan_open(&c[i], &w, 10);
		ck_assert(pay_accepted(pay_status(&c[i].ch, &w, 1)));
		reqs[i] = close_request(&c[i]);
		envs[i] = close_env(&crs[i], reqs[i]);
		ptrs[i] = &envs[i];
	}
	int64_t before = metric(&net, "m1", SIGNED_BY_WORKER);
	ck_assert(wire_send_pipelined(&w, ptrs, BURST, 5000));
	read_answers(&w, resp, BURST, 5000);
	int busy = 0;
	for (int i = 0; i < BURST; i++) {
		MpCode code = resp[i]->close_resp->status->code;
		ck_assert_msg(code == MP_ST(OK) || code == MP_ST(LIMIT), "close %d: %s", i,
			      mp_code_name(code));
		if (code == MP_ST(LIMIT)) {
			busy++;
			ck_assert(resp[i]->close_resp->close == NULL);
			expect_m1(&c[i], "HELD", 1); /* nothing stored */
		}
	}
	ck_assert_int_ge(busy, 1);
	ck_assert_int_eq(metric(&net, "m1", SIGNED_BY_WORKER), before + (BURST - busy));
	for (int i = 0; i < BURST; i++) {
		MpEnvelope *e = close_call(&w, reqs[i]);
		bool was_busy = resp[i]->close_resp->status->code == MP_ST(LIMIT);
		ck_assert_int_eq(e->close_resp->status->code,
				 was_busy ? MP_ST(OK) : MP_ST(DUPLICATE_OK));
		ck_assert_uint_eq(close_index(e->close_resp->close), 1);
		micropay__v1__envelope__free_unpacked(e, NULL);
		expect_m1(&c[i], "CLOSED", 1);
		mp_stmt_free(reqs[i]);
		chan_free(&c[i]);
	}
	free_answers(resp, BURST);
	wire_close(&w);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	if (system("command -v softhsm2-util >/dev/null 2>&1") != 0) {
		printf("SKIP: softhsm2-util is not installed (deploy/install-deps installs it)\n");
		return 77;
	}
	Suite *s = suite_create("merchant_sign_pool");
	TCase *tc = tcase_create("token");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, statements_signed_on_workers_replayed_byte_for_byte);
	tcase_add_test(tc, pays_behind_a_close_request_never_credited);
	tcase_add_test(tc, connection_gone_while_signing_loses_only_the_answers);
	tcase_add_test(tc, queue_full_answers_limit_then_closes_on_retry);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
