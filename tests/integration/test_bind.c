/* Bind-on-first-use against the real daemons (deploy/mpnet, three merchants): a channel issued
 * without holder0 is bound by the first merchant that asks the broker (protocol.md sections 4
 * and 6, "Bind"). Through walletd: issue without merchant_id, pay at m1 (m1 binds it), pay at
 * the holder again, also after m1 restarts, and m1's redemption of epoch 0 is credited. Byte by
 * byte, acting as merchants towards the broker over mutual TLS: the same merchant asking twice
 * gets the same bytes, another merchant gets the existing Bind (NOT_HOLDER) and changes
 * nothing, two merchants racing give exactly one Bind, a Move that is not the owner's consent
 * or names another merchant binds nothing; a wallet opening at another merchant gets
 * NOT_HOLDER carrying the Bind. Every test ends with the broker's audit clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_db.h"
#include "harness_merchant.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], account[64];
static struct tmerchant tm[4]; /* 1..3 */
static char ep[4][128];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
	}
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void teardown_net(void)
{
	for (int i = 1; i <= 3; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* pay through walletd at merchant m (merchant_id given when with_mid). */
static json_t *wallet_pay(const char *channel, int m, bool with_mid, unsigned units, char *err,
			  size_t errlen)
{
	char params[500], order[64], mid[80] = "";
	net_new_order(&net, tm[m].name, units, order, sizeof(order));
	if (with_mid)
		snprintf(mid, sizeof(mid), "\"merchant_id\":\"%s\",", tm[m].mid_hex);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",%s\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, mid, ep[m], units, order);
	return admin(&net, "w1", "pay", params, err, errlen);
}

static void pay_ok(const char *channel, int m, bool with_mid, unsigned units, int64_t last)
{
	char err[512];
	json_t *r = wallet_pay(channel, m, with_mid, units, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay %u at m%d failed: %s", units, m, err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), last);
	json_decref(r);
}

static char *count_rows(const char *table, const char *channel_hex)
{
	return sql_value(&net, "SELECT count(*) FROM %s WHERE channel_id = '\\x%s'::bytea", table,
			 channel_hex);
}

static void expect_rows(const char *table, const char *channel_hex, const char *count)
{
	char *v = count_rows(table, channel_hex);
	ck_assert_msg(v && strcmp(v, count) == 0, "%s rows of the channel: %s, expected %s", table,
		      v ? v : "(none)", count);
	free(v);
}

static void expect_holder0(const char *channel_hex, const char *mid_hex)
{
	char *v = sql_value(&net,
			    "SELECT coalesce(encode(holder0, 'hex'), 'NULL') FROM channels "
			    "WHERE channel_id = '\\x%s'::bytea",
			    channel_hex);
	ck_assert_msg(v && strcmp(v, mid_hex) == 0, "holder0 %s, expected %s", v ? v : "?",
		      mid_hex);
	free(v);
}

/* ---- through walletd ---- */

START_TEST(unbound_channel_bound_by_first_pay_and_redeemed)
{
	net_fund(&net, account, 1000);
	json_t *r = admin_ok(&net, "w1", "issue", "{\"n\":50,\"unit_value\":2,\"days\":1}");
	char channel[64], holder[64], err[512];
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	expect_holder0(channel, "NULL");
	expect_rows("binds", channel, "0");
	expect_rows("epochs", channel, "0");

	/* Without merchant_id there is nobody to pay yet: a clear refusal, nothing sent. */
	r = wallet_pay(channel, 1, false, 1, err, sizeof(err));
	ck_assert_msg(r == NULL && strstr(err, "not bound"), "pay without merchant_id: %s", err);

	int64_t before = net_pending(&net, tm[1].mid_hex);
	pay_ok(channel, 1, true, 3, 3); /* m1 asks the broker: bound to m1 */
	int64_t epoch = -1;
	wallet_channel_holder(&net, "w1", channel, holder, sizeof(holder), &epoch);
	ck_assert_str_eq(holder, tm[1].mid_hex);
	ck_assert_int_eq(epoch, 0);
	expect_holder0(channel, tm[1].mid_hex);
	expect_rows("binds", channel, "1");
	expect_rows("epochs", channel, "1");
	pay_ok(channel, 1, false, 2, 5); /* the holder is the default now */

	/* The Bind is durable at m1: after a restart it still holds the channel. */
	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	pay_ok(channel, 1, false, 1, 6);

	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before, 6 * 2);
	expect_rows("binds", channel, "1");
	audit_clean();
}
END_TEST

/* ---- byte by byte ---- */

struct unbound {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
};

/* An IssueRequest with no holder0, signed by the test wallet's account key, issued. */
static void make_unbound(struct unbound *u, uint32_t n)
{
	struct wire broker;
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&u->tw, &broker);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(u->tw.account_id, MP_ID_LEN, hex);
	net_fund(&net, hex, n);
	tchannel_make(&u->ch, &u->tw, n, 1, tm[1].mid);
	Micropay__V1__IssueRequest *r = (Micropay__V1__IssueRequest *)mp_strict_unpack(
	    &micropay__v1__issue_request__descriptor, u->ch.request->body.data,
	    u->ch.request->body.len);
	ck_assert(r != NULL);
	ProtobufCBinaryData holder0 = r->holder0;
	r->holder0 = (ProtobufCBinaryData){0, NULL};
	mp_stmt_free(u->ch.request);
	u->ch.request = mp_stmt_sign(&u->tw.account, MP_STMT_ISSUE_REQUEST, &r->base);
	r->holder0 = holder0; /* freed with the message */
	micropay__v1__issue_request__free_unpacked(r, NULL);
	ck_assert(u->ch.request != NULL);
	memset(u->ch.holder0, 0, MP_ID_LEN);
	ck_assert_int_eq(tchannel_issue(&u->ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&u->ch, u->id);
	mp_hex_encode(u->id, MP_ID_LEN, u->hex);
}

static void free_unbound(struct unbound *u)
{
	tchannel_free(&u->ch);
	mp_key_free(&u->tw.account);
}

static void send_bind(struct wire *w, const uint8_t id[MP_ID_LEN], const MpSigned *move)
{
	Micropay__V1__BindReq req = MICROPAY__V1__BIND_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	req.move = (MpSigned *)move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(BIND_REQ);
	env.bind_req = &req;
	ck_assert(wire_send(w, &env));
}

static MpEnvelope *recv_bind(struct wire *w)
{
	MpEnvelope *e = wire_recv(w);
	ck_assert_msg(e && e->body_case == MP_BODY(BIND_RESP), "no BindResp");
	ck_assert(e->bind_resp->status != NULL);
	return e;
}

/* BindReq from merchant m (mutual TLS) with a Move to to_m signed by key. */
static MpEnvelope *bind_as(int m, const struct unbound *u, const struct mp_key *key, int to_m)
{
	struct wire w;
	tmerchant_connect(&tm[m], &w, broker_ep, ca);
	MpSigned *move = sign_move(key, u->id, 0, tm[to_m].mid);
	send_bind(&w, u->id, move);
	MpEnvelope *e = recv_bind(&w);
	wire_close(&w);
	mp_stmt_free(move);
	return e;
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

/* The Bind is signed by the broker (type 4) and names the channel and merchant m. */
static void expect_bind_names(const MpSigned *bind, const struct unbound *u, int m)
{
	ck_assert(bind != NULL);
	ck_assert_uint_eq(bind->type, MP_STMT_BIND);
	char pk_hex[80];
	uint8_t broker_pk[MP_PK_LEN];
	net_read(&net, "broker", "broker_pk", pk_hex, sizeof(pk_hex));
	hex_to_bytes(pk_hex, broker_pk, MP_PK_LEN);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(
	    mp_stmt_open(bind, MP_STMT_BIND, broker_pk, &micropay__v1__bind__descriptor, &body),
	    MP_ST(OK));
	Micropay__V1__Bind *b = (Micropay__V1__Bind *)body;
	ck_assert(mp_bytes_len_is(b->channel_id, MP_ID_LEN) &&
		  memcmp(b->channel_id.data, u->id, MP_ID_LEN) == 0);
	ck_assert(mp_bytes_len_is(b->merchant_id, MP_ID_LEN) &&
		  memcmp(b->merchant_id.data, tm[m].mid, MP_ID_LEN) == 0);
	protobuf_c_message_free_unpacked(body, NULL);
}

START_TEST(same_merchant_same_bytes_other_merchant_gets_the_bind)
{
	struct unbound u;
	make_unbound(&u, 20);
	/* Consent refused first: a Move signed by another key, or naming another merchant than
	 * the peer certificate, binds nothing. */
	struct mp_key stranger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&stranger, seed));
	MpEnvelope *e = bind_as(1, &u, &stranger, 1);
	ck_assert_int_eq(e->bind_resp->status->code, MP_ST(BAD_SIG));
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_key_free(&stranger);
	e = bind_as(1, &u, &u.ch.owner, 2);
	ck_assert_int_eq(e->bind_resp->status->code, MP_ST(MALFORMED));
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_rows("binds", u.hex, "0");
	expect_holder0(u.hex, "NULL");

	MpEnvelope *first = bind_as(1, &u, &u.ch.owner, 1);
	ck_assert_int_eq(first->bind_resp->status->code, MP_ST(OK));
	expect_bind_names(first->bind_resp->bind, &u, 1);
	MpEnvelope *again = bind_as(1, &u, &u.ch.owner, 1);
	ck_assert_int_eq(again->bind_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(first->bind_resp->bind, again->bind_resp->bind));

	MpEnvelope *other = bind_as(2, &u, &u.ch.owner, 2);
	ck_assert_int_eq(other->bind_resp->status->code, MP_ST(NOT_HOLDER));
	ck_assert(same_stmt(first->bind_resp->bind, other->bind_resp->status->evidence));
	expect_holder0(u.hex, tm[1].mid_hex);
	expect_rows("binds", u.hex, "1");
	expect_rows("epochs", u.hex, "1");
	char *owner = sql_value(&net,
				"SELECT encode(merchant_id, 'hex') FROM epochs "
				"WHERE channel_id = '\\x%s'::bytea AND hseq = 0",
				u.hex);
	ck_assert_str_eq(owner, tm[1].mid_hex);
	free(owner);

	/* A wallet opening at m2 with a Move: m2 asks the broker and answers NOT_HOLDER carrying
	 * m1's Bind; at m1 the wallet is acknowledged with the Bind as its custody event. */
	struct wire w;
	ck_assert(wire_connect(&w, ep[2], ca, NULL, NULL));
	MpSigned *move = sign_move(&u.ch.owner, u.id, 0, tm[2].mid);
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = u.ch.cert;
	req.move = move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	e = wire_call(&w, &env);
	wire_close(&w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(NOT_HOLDER));
	ck_assert(same_stmt(first->bind_resp->bind, e->open_ack->status->evidence));
	ck_assert_ptr_nonnull(strstr(e->open_ack->status->detail, tm[1].mid_hex));
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(move);

	ck_assert(wire_connect(&w, ep[1], ca, NULL, NULL));
	move = sign_move(&u.ch.owner, u.id, 0, tm[1].mid);
	req.move = move;
	e = wire_call(&w, &env);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->open_ack->hseq, 0);
	ck_assert(same_stmt(first->bind_resp->bind, e->open_ack->custody_event));
	micropay__v1__envelope__free_unpacked(e, NULL);
	static const uint8_t ref[4] = {1, 2, 3, 4};
	e = tchannel_pay(&u.ch, &w, 4, ref, sizeof(ref));
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert(e->pay_ack->status->code == MP_ST(OK) ||
		  e->pay_ack->status->code == MP_ST(UNDERPAID));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	mp_stmt_free(move);

	micropay__v1__envelope__free_unpacked(first, NULL);
	micropay__v1__envelope__free_unpacked(again, NULL);
	micropay__v1__envelope__free_unpacked(other, NULL);
	/* m1 redeems what it was paid in epoch 0 of the bound channel. */
	int64_t before = net_pending(&net, tm[1].mid_hex);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before, 4);
	free_unbound(&u);
	audit_clean();
}
END_TEST

START_TEST(racing_merchants_get_exactly_one_bind)
{
	for (int round = 0; round < 5; round++) {
		struct unbound u;
		make_unbound(&u, 10);
		struct wire w2, w3;
		tmerchant_connect(&tm[2], &w2, broker_ep, ca);
		tmerchant_connect(&tm[3], &w3, broker_ep, ca);
		MpSigned *m2 = sign_move(&u.ch.owner, u.id, 0, tm[2].mid);
		MpSigned *m3 = sign_move(&u.ch.owner, u.id, 0, tm[3].mid);
		send_bind(&w2, u.id, m2);
		send_bind(&w3, u.id, m3);
		MpEnvelope *a = recv_bind(&w2), *b = recv_bind(&w3);
		MpCode ca_ = a->bind_resp->status->code, cb = b->bind_resp->status->code;
		ck_assert_msg((ca_ == MP_ST(OK) && cb == MP_ST(NOT_HOLDER)) ||
				  (ca_ == MP_ST(NOT_HOLDER) && cb == MP_ST(OK)),
			      "round %d: %s and %s", round, mp_code_name(ca_), mp_code_name(cb));
		const MpEnvelope *won = ca_ == MP_ST(OK) ? a : b, *lost = won == a ? b : a;
		ck_assert(same_stmt(won->bind_resp->bind, lost->bind_resp->status->evidence));
		expect_bind_names(won->bind_resp->bind, &u, won == a ? 2 : 3);
		expect_holder0(u.hex, tm[won == a ? 2 : 3].mid_hex);
		expect_rows("binds", u.hex, "1");
		expect_rows("epochs", u.hex, "1");
		micropay__v1__envelope__free_unpacked(a, NULL);
		micropay__v1__envelope__free_unpacked(b, NULL);
		mp_stmt_free(m2);
		mp_stmt_free(m3);
		wire_close(&w2);
		wire_close(&w3);
		free_unbound(&u);
	}
	audit_clean();
}
END_TEST

START_TEST(channel_with_holder0_gets_no_bind)
{
	struct wire broker;
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &broker);
	mp_hex_encode(tw.account_id, MP_ID_LEN, hex);
	net_fund(&net, hex, 10);
	tchannel_make(&ch, &tw, 10, 1, tm[1].mid);
	ck_assert_int_eq(tchannel_issue(&ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&ch, id);
	struct unbound u = {.tw = tw, .ch = ch};
	memcpy(u.id, id, MP_ID_LEN);
	MpEnvelope *e = bind_as(2, &u, &ch.owner, 2);
	ck_assert_int_eq(e->bind_resp->status->code, MP_ST(NOT_HOLDER));
	ck_assert_ptr_null(e->bind_resp->status->evidence);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_hex_encode(id, MP_ID_LEN, hex);
	expect_rows("binds", hex, "0");
	expect_holder0(hex, tm[1].mid_hex);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bind");
	TCase *tc = tcase_create("bind");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, unbound_channel_bound_by_first_pay_and_redeemed);
	tcase_add_test(tc, same_merchant_same_bytes_other_merchant_gets_the_bind);
	tcase_add_test(tc, racing_merchants_get_exactly_one_bind);
	tcase_add_test(tc, channel_with_holder0_gets_no_bind);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
