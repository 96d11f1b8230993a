/* End-to-end protocol tests against the real daemons (deploy/mpnet): a test wallet and a test
 * merchant speak the wire protocol byte by byte; balances come from the broker's admin socket. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], m1_ep[128], m1_hex[64];
static uint8_t m1[MP_ID_LEN];

static void setup_net(void)
{
	setenv("MP_IDLE_TIMEOUT", "2", 1);
	setenv("MP_HASH_BUDGET", "5000", 1); /* hashes one Redeem may cost the broker */
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
}

static void teardown_net(void)
{
	net_down(&net);
}

static void connect_broker(struct wire *w)
{
	ck_assert_msg(wire_connect(w, broker_ep, ca, NULL, NULL), "cannot reach brokerd");
}

static void connect_merchant(struct wire *w, const char *endpoint)
{
	ck_assert_msg(wire_connect(w, endpoint, ca, NULL, NULL), "cannot reach merchantd");
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

static void new_order(uint64_t price, uint8_t ref[MP_ID_LEN])
{
	char params[64];
	snprintf(params, sizeof(params), "{\"price\":%llu}", (unsigned long long)price);
	json_t *o = admin_ok(&net, "m1", "order.create", params);
	hex_to_bytes(json_str(o, "order_ref"), ref, MP_ID_LEN);
	json_decref(o);
}

static MpCode pay_code(MpEnvelope *e)
{
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck");
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* A registered, funded wallet with an issued channel held by m1. */
static void issued_channel(struct twallet *tw, struct tchannel *ch, uint32_t n, uint64_t unit)
{
	struct wire b;
	connect_broker(&b);
	twallet_register(tw, &b);
	net_fund_id(&net, tw->account_id, (uint64_t)n * unit);
	tchannel_make(ch, tw, n, unit, m1);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
}

/* Connect to m1 and Open the channel there (OK expected). */
static void open_at_m1(const struct tchannel *ch, struct wire *m)
{
	connect_merchant(m, m1_ep);
	MpEnvelope *ack = tchannel_open(ch, m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
}

START_TEST(purchase_settles_exact_balances)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 100, 5);
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 0); /* debited n * v = 500 at issue */
	int64_t pending_before = net_pending(&net, m1_hex);

	struct wire m;
	connect_merchant(&m, m1_ep);
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(ack->open_ack->point->index, 0);
	ck_assert_mem_eq(ack->open_ack->point->w.data, ch.root, MP_HASH_LEN);
	micropay__v1__envelope__free_unpacked(ack, NULL);
	uint8_t order[MP_ID_LEN];
	for (uint32_t k = 1; k <= 7; k++) { /* seven one-unit purchases of price 5 */
		new_order(5, order);
		ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, k, order, MP_ID_LEN)), MP_ST(OK));
	}
	wire_close(&m);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex) - pending_before, 7 * 5);
	audit_clean();
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(duplicate_issue_returns_same_cert_once)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 10, 3);
	net_fund_id(&net, tw.account_id, 1000);
	struct wire b;
	connect_broker(&b);
	MpSigned *first = mp_stmt_copy(ch.cert);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(first->body.len, ch.cert->body.len);
	ck_assert_mem_eq(first->body.data, ch.cert->body.data, first->body.len);
	ck_assert_mem_eq(first->signature.data, ch.cert->signature.data, MP_SIG_LEN);
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 1000); /* debited once */

	/* Same issue_req_id, another body: CONFLICT carrying the stored request. */
	struct tchannel other;
	tchannel_make(&other, &tw, 20, 3, m1);
	MpSigned *orig_request = ch.request;
	Micropay__V1__IssueRequest *r = (Micropay__V1__IssueRequest *)mp_strict_unpack(
	    &micropay__v1__issue_request__descriptor, other.request->body.data,
	    other.request->body.len);
	memcpy(r->issue_req_id.data, ch.req_id, MP_ID_LEN);
	mp_stmt_free(other.request);
	other.request = mp_stmt_sign(&tw.account, MP_STMT_ISSUE_REQUEST, &r->base);
	micropay__v1__issue_request__free_unpacked(r, NULL);
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = other.request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	MpEnvelope *resp = wire_call(&b, &env);
	ck_assert(resp && resp->body_case == MP_BODY(ISSUE_RESP));
	ck_assert_int_eq(resp->issue_resp->status->code, MP_ST(CONFLICT));
	ck_assert(resp->issue_resp->status->evidence != NULL);
	ck_assert_mem_eq(resp->issue_resp->status->evidence->body.data, orig_request->body.data,
			 orig_request->body.len);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	ck_assert_int_eq(net_balance(&net, acct), 1000);
	wire_close(&b);
	mp_stmt_free(first);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	tchannel_free(&other);
	audit_clean();
}
END_TEST

START_TEST(insufficient_funds_changes_nothing)
{
	struct wire b;
	connect_broker(&b);
	struct twallet tw;
	twallet_register(&tw, &b);
	net_fund_id(&net, tw.account_id, 99);
	struct tchannel ch;
	tchannel_make(&ch, &tw, 10, 10, m1);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(INSUFFICIENT_FUNDS));
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 99);
	/* No trace: after funding, the very same request issues normally. */
	net_fund_id(&net, tw.account_id, 1);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(OK));
	ck_assert_int_eq(net_balance(&net, acct), 0);
	wire_close(&b);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

START_TEST(trailing_unknown_field_is_malformed)
{
	struct wire b;
	connect_broker(&b);
	struct twallet tw;
	twallet_register(&tw, &b);
	net_fund_id(&net, tw.account_id, 100);
	struct tchannel ch;
	tchannel_make(&ch, &tw, 10, 1, m1);
	size_t len = ch.request->body.len;
	uint8_t *body = malloc(len + 3);
	memcpy(body, ch.request->body.data, len);
	memcpy(body + len, "\xf8\x07\x01", 3); /* field 127, varint 1 */
	MpSigned *forged = NULL;
	{
		uint8_t msg[512];
		ck_assert(len + 3 + 6 < sizeof(msg));
		memcpy(msg, "MPAY1", 5);
		msg[5] = MP_STMT_ISSUE_REQUEST;
		memcpy(msg + 6, body, len + 3);
		uint8_t sig[MP_SIG_LEN];
		ck_assert(mp_sign(&tw.account, msg, len + 9, sig));
		forged =
		    mp_stmt_from_parts(MP_STMT_ISSUE_REQUEST, body, len + 3, tw.account.pk, sig);
	}
	mp_stmt_free(ch.request);
	ch.request = forged;
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(MALFORMED));
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 100);
	free(body);
	wire_close(&b);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(forged_cert_is_bad_sig)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 10, 1);
	/* Re-sign the genuine cert body with a key that is not the broker's. */
	struct mp_key rogue;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&rogue, seed));
	uint8_t msg[512];
	memcpy(msg, "MPAY1", 5);
	msg[5] = MP_STMT_CHANNEL_CERT;
	memcpy(msg + 6, ch.cert->body.data, ch.cert->body.len);
	uint8_t sig[MP_SIG_LEN];
	ck_assert(mp_sign(&rogue, msg, ch.cert->body.len + 6, sig));
	MpSigned *genuine = ch.cert;
	ch.cert = mp_stmt_from_parts(MP_STMT_CHANNEL_CERT, genuine->body.data, genuine->body.len,
				     rogue.pk, sig);
	struct wire m;
	connect_merchant(&m, m1_ep);
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(BAD_SIG));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	/* The genuine key in signer_pk with a wrong signature: also BAD_SIG. */
	mp_stmt_free(ch.cert);
	ch.cert = mp_stmt_from_parts(MP_STMT_CHANNEL_CERT, genuine->body.data, genuine->body.len,
				     genuine->signer_pk.data, sig);
	ack = tchannel_open(&ch, &m);
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(BAD_SIG));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	wire_close(&m);
	mp_stmt_free(genuine);
	mp_key_free(&rogue);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(pay_retry_replay_and_jump)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 10000, 1);
	struct wire m;
	open_at_m1(&ch, &m);
	uint8_t order[MP_ID_LEN], other[MP_ID_LEN];
	new_order(2, order);
	new_order(2, other);
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 2, order, MP_ID_LEN)), MP_ST(OK));
	/* Identical retry: DUPLICATE_OK with the stored answer. */
	MpEnvelope *e = tchannel_pay(&ch, &m, 2, order, MP_ID_LEN);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(e->pay_ack->order_price, 2);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* The same payword for another order: STALE_INDEX. */
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 2, other, MP_ID_LEN)), MP_ST(STALE_INDEX));
	/* A jump above MAX_JUMP with a garbage word: refused before any hashing (a hashed word
	 * would have been BAD_CHAIN, and the merchant counts those). */
	json_t *st = admin_ok(&net, "m1", "status", NULL);
	int64_t bad_before = json_int(json_object_get(st, "counters"), "bad_chain");
	json_decref(st);
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	uint8_t garbage[MP_HASH_LEN] = {1}, cid[MP_ID_LEN];
	tchannel_id(&ch, cid);
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, cid};
	req.j = 2 + 4097;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, garbage};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, other};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	ck_assert_int_eq(pay_code(wire_call(&m, &env)), MP_ST(OUT_OF_RANGE));
	st = admin_ok(&net, "m1", "status", NULL);
	ck_assert_int_eq(json_int(json_object_get(st, "counters"), "bad_chain"), bad_before);
	json_decref(st);
	/* An underpayment is kept as credit: 1 unit for a price of 2, then one more unit. */
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 3, other, MP_ID_LEN)), MP_ST(UNDERPAID));
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 4, other, MP_ID_LEN)), MP_ST(OK));
	wire_close(&m);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(sigkill_loses_no_acknowledged_payment)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 1000, 1);
	struct wire m;
	open_at_m1(&ch, &m);
	uint8_t order[MP_ID_LEN];
	new_order(1000, order); /* never covered: every Pay is UNDERPAID and kept */
	for (uint32_t j = 1; j <= 20; j++)
		ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, j, order, MP_ID_LEN)),
				 MP_ST(UNDERPAID));
	wire_close(&m);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	connect_merchant(&m, m1_ep);
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(ack->open_ack->point->index, 20);
	ck_assert_uint_eq(ack->open_ack->credit, 20);
	micropay__v1__envelope__free_unpacked(ack, NULL);
	/* An identical retry of an earlier Pay of the last batch: DUPLICATE_OK, not STALE_INDEX. */
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 19, order, MP_ID_LEN)),
			 MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 20, order, MP_ID_LEN)),
			 MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 21, order, MP_ID_LEN)), MP_ST(UNDERPAID));
	wire_close(&m);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

/* A Redeem signed by merchant `name` (its key file), sent over mutual TLS with its cert. */
static MpEnvelope *send_redeem(const char *name, const uint8_t redeem_id[MP_ID_LEN],
			       const struct tchannel *ch, uint32_t index)
{
	char mid_hex[64], key_path[700], cert[700], key[700], err[256];
	net_read(&net, name, "merchant_id", mid_hex, sizeof(mid_hex));
	snprintf(key_path, sizeof(key_path), "%s/%s/merchant.key", net.dir, name);
	snprintf(cert, sizeof(cert), "%s/tls/m-%s.crt", net.dir, mid_hex);
	snprintf(key, sizeof(key), "%s/tls/m-%s.key", net.dir, mid_hex);
	struct mp_key mkey;
	ck_assert_msg(mp_key_load(&mkey, key_path, err, sizeof(err)), "%s", err);
	uint8_t mid[MP_ID_LEN], w[MP_HASH_LEN], cid[MP_ID_LEN];
	hex_to_bytes(mid_hex, mid, MP_ID_LEN);
	tchannel_word(ch, index, w);
	tchannel_id(ch, cid);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w};
	Micropay__V1__Claim claim = MICROPAY__V1__CLAIM__INIT;
	claim.channel_id = (ProtobufCBinaryData){MP_ID_LEN, cid};
	claim.point = &pt;
	Micropay__V1__Claim *claims[] = {&claim};
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, mid};
	rd.claims = claims;
	rd.n_claims = 1;
	MpSigned *s = mp_stmt_sign(&mkey, MP_STMT_REDEEM, &rd.base);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, cert, key));
	MpEnvelope *resp = wire_call(&b, &env);
	ck_assert(resp && resp->body_case == MP_BODY(REDEEM_RESP));
	wire_close(&b);
	mp_stmt_free(s);
	mp_key_free(&mkey);
	return resp;
}

/* A channel of m1 on which the test paid up to `paid` units (price never covered). */
static void paid_channel(struct twallet *tw, struct tchannel *ch, uint32_t paid)
{
	issued_channel(tw, ch, 100, 10);
	struct wire m;
	open_at_m1(ch, &m);
	uint8_t order[MP_ID_LEN];
	new_order(1000000, order);
	for (uint32_t j = 1; j <= paid; j++)
		ck_assert_int_eq(pay_code(tchannel_pay(ch, &m, j, order, MP_ID_LEN)),
				 MP_ST(UNDERPAID));
	wire_close(&m);
}

START_TEST(duplicate_redeem_credits_nothing)
{
	struct twallet tw;
	struct tchannel ch;
	paid_channel(&tw, &ch, 4);
	int64_t before = net_pending(&net, m1_hex);
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpEnvelope *r = send_redeem("m1", redeem_id, &ch, 4);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->redeem_resp->n_results, 1);
	ck_assert_int_eq(r->redeem_resp->results[0]->status, MP_ST(OK));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_end, 4);
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 40);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 40);
	/* The same Redeem again: the stored answer, nothing credited. */
	r = send_redeem("m1", redeem_id, &ch, 4);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 40);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 40);
	/* A new Redeem of the same point: DUPLICATE_OK per claim, credits 0. */
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	r = send_redeem("m1", redeem_id, &ch, 4);
	ck_assert_int_eq(r->redeem_resp->results[0]->status, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 40);
	audit_clean();
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(claim_by_non_holder_is_refused)
{
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	char m2_hex[64];
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	struct twallet tw;
	struct tchannel ch;
	paid_channel(&tw, &ch, 3);
	int64_t m1_before = net_pending(&net, m1_hex), m2_before = net_pending(&net, m2_hex);
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpEnvelope *r = send_redeem("m2", redeem_id, &ch, 3); /* valid word, wrong merchant */
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(OK));
	ck_assert_int_eq(r->redeem_resp->results[0]->status, MP_ST(NOT_HOLDER));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m2_hex), m2_before);
	ck_assert_int_eq(net_pending(&net, m1_hex), m1_before);
	audit_clean();
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(claim_with_bad_word_is_bad_chain)
{
	struct twallet tw;
	struct tchannel ch;
	paid_channel(&tw, &ch, 2);
	int64_t before = net_pending(&net, m1_hex);
	struct tchannel forged = ch; /* same cert, another seed: words that do not verify */
	ck_assert(mp_random_bytes(forged.seed, MP_SEED_LEN));
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpEnvelope *r = send_redeem("m1", redeem_id, &forged, 2);
	ck_assert_int_eq(r->redeem_resp->results[0]->status, MP_ST(BAD_CHAIN));
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex), before);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(redeem_over_hash_budget_is_limit_and_verifies_from_nearest_point)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 10000, 1);
	struct wire m;
	open_at_m1(&ch, &m);
	uint8_t order[MP_ID_LEN];
	new_order(100000, order);
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 4096, order, MP_ID_LEN)), MP_ST(UNDERPAID));
	ck_assert_int_eq(pay_code(tchannel_pay(&ch, &m, 8000, order, MP_ID_LEN)), MP_ST(UNDERPAID));
	wire_close(&m);
	int64_t before = net_pending(&net, m1_hex);
	uint8_t redeem_id[MP_ID_LEN];
	/* 8000 hashes from the root: above the budget of 5000, refused whole, nothing stored. */
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpEnvelope *r = send_redeem("m1", redeem_id, &ch, 8000);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(LIMIT));
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex), before);
	/* The same redeem_id is still free: nothing was stored under it. */
	r = send_redeem("m1", redeem_id, &ch, 4096);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 4096);
	micropay__v1__envelope__free_unpacked(r, NULL);
	/* Now 8000 costs 3904 hashes from the verified point 4096: within budget. */
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	r = send_redeem("m1", redeem_id, &ch, 8000);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(OK));
	ck_assert_int_eq(r->redeem_resp->results[0]->status, MP_ST(OK));
	ck_assert_uint_eq(r->redeem_resp->results[0]->credited_amount, 8000 - 4096);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 8000);
	audit_clean();
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

Suite *e2e_suite(void);
Suite *e2e_suite(void)
{
	Suite *s = suite_create("e2e");
	TCase *tc = tcase_create("protocol");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, purchase_settles_exact_balances);
	tcase_add_test(tc, duplicate_issue_returns_same_cert_once);
	tcase_add_test(tc, insufficient_funds_changes_nothing);
	tcase_add_test(tc, trailing_unknown_field_is_malformed);
	tcase_add_test(tc, forged_cert_is_bad_sig);
	tcase_add_test(tc, pay_retry_replay_and_jump);
	tcase_add_test(tc, sigkill_loses_no_acknowledged_payment);
	tcase_add_test(tc, duplicate_redeem_credits_nothing);
	tcase_add_test(tc, claim_by_non_holder_is_refused);
	tcase_add_test(tc, claim_with_bad_word_is_bad_chain);
	tcase_add_test(tc, redeem_over_hash_budget_is_limit_and_verifies_from_nearest_point);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(e2e_suite());
}
