/* The customer's path through the real walletd: register, funding by the operator, issue, pay
 * over TLS with the holder check, redemption, exact balances; the wallet's refusals; and a Pay
 * the merchant refuses LIMIT while its commit pipeline is full, kept in flight and resent. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

static struct net net;
static char m1_hex[64], m1_ep[128], account[64];

static void setup_net(void)
{
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void teardown_net(void)
{
	net_down(&net);
}

static int64_t broker_balance(const char *id, bool pending)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", id);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	int64_t b = pending
			? json_int(json_array_get(json_object_get(acc, "related"), 0), "balance")
			: json_int(acc, "balance");
	json_decref(acc);
	return b;
}

static const char *new_order(uint64_t price, char *out, size_t len)
{
	char params[64];
	snprintf(params, sizeof(params), "{\"price\":%llu}", (unsigned long long)price);
	json_t *o = admin_ok(&net, "m1", "order.create", params);
	snprintf(out, len, "%s", json_str(o, "order_ref"));
	json_decref(o);
	return out;
}

static json_t *wallet_pay(const char *channel, const char *endpoint, unsigned units,
			  const char *order, char *err, size_t errlen)
{
	char params[400];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, endpoint, units, order);
	return admin(&net, "w1", "pay", params, err, errlen);
}

START_TEST(quickstart_scenario_exact_balances)
{
	int64_t before = broker_balance(account, false);
	net_fund(&net, account, 1000);
	char channel[64], order[64], err[512];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, sizeof(channel));
	ck_assert_int_eq(broker_balance(account, false), before + 1000 - 200);
	int64_t pending_before = broker_balance(m1_hex, true);
	unsigned paid = 0;
	for (unsigned units = 1; units <= 4; units++) {
		new_order(2 * units, order, sizeof(order));
		json_t *r = wallet_pay(channel, m1_ep, units, order, err, sizeof(err));
		ck_assert_msg(r != NULL, "pay failed: %s", err);
		ck_assert_str_eq(json_str(r, "status"), "OK");
		paid += units;
		ck_assert_int_eq(json_int(r, "last"), paid);
		json_decref(r);
	}
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(broker_balance(m1_hex, true) - pending_before, 2 * paid);
	json_t *a = admin_ok(&net, "broker", "audit", NULL);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	json_t *bal = admin_ok(&net, "w1", "balance", NULL);
	ck_assert_int_eq(json_int(bal, "unspent_total"), 2 * (100 - paid));
	json_decref(bal);
}
END_TEST

START_TEST(wallet_refuses_impersonating_merchant)
{
	net_fund(&net, account, 100);
	char channel[64], order[64], err[512], m2_ep[128];
	net_wallet_issue(&net, "w1", m1_hex, 10, 1, channel, sizeof(channel));
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0); /* same CA, another merchant */
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	new_order(1, order, sizeof(order));
	json_t *r = wallet_pay(channel, m2_ep, 1, order, err, sizeof(err));
	ck_assert_msg(r == NULL, "the wallet paid a server that is not holder0");
	json_t *st = admin_ok(&net, "m2", "status", NULL);
	json_t *counters = json_object_get(st, "counters");
	ck_assert_int_eq(json_int(counters, "opens"), 0); /* not even an Open was sent */
	ck_assert_int_eq(json_int(counters, "pays_ok") + json_int(counters, "pays_underpaid") +
			     json_int(counters, "pays_refused") + json_int(counters, "bad_chain"),
			 0);
	json_decref(st);
	/* The genuine holder is paid normally afterwards. */
	r = wallet_pay(channel, m1_ep, 1, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay to holder0 failed: %s", err);
	json_decref(r);
}
END_TEST

START_TEST(insufficient_funds_through_wallet)
{
	int64_t before = broker_balance(account, false);
	char params[200], err[512];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%lld,\"unit_value\":1,\"days\":1}", m1_hex,
		 (long long)before + 1);
	json_t *r = admin(&net, "w1", "issue", params, err, sizeof(err));
	ck_assert(r == NULL);
	ck_assert_msg(strstr(err, "INSUFFICIENT_FUNDS") != NULL, "unexpected error: %s", err);
	ck_assert_int_eq(broker_balance(account, false), before);
}
END_TEST

START_TEST(wallet_restart_keeps_channel_state)
{
	net_fund(&net, account, 50);
	char channel[64], order[64], err[512];
	net_wallet_issue(&net, "w1", m1_hex, 50, 1, channel, sizeof(channel));
	new_order(3, order, sizeof(order));
	json_t *r = wallet_pay(channel, m1_ep, 3, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	json_decref(r);
	ck_assert_int_eq(net_cmd(&net, "kill", "w1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	new_order(2, order, sizeof(order));
	r = wallet_pay(channel, m1_ep, 2, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), 5);
	json_decref(r);
}
END_TEST

/* Append settings to m1's [merchant] section and restart it (same store, same port). */
static void restart_m1(const char *settings)
{
	net_restart_with(&net, "m1", "merchant", settings);
}

/* m1 with one batch committing (its store's write lock held from outside) and the next one full
 * (commit_max 1) answers the wallet's new Pay LIMIT "merchant busy". The wallet's pay fails
 * saying so, the Pay stays in flight, and the next pay resends it verbatim first: accepted, and
 * the channel goes on from there. */
START_TEST(pay_refused_busy_stays_in_flight_and_is_resent)
{
	restart_m1("commit_max = 1");
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* what earlier tests paid */
	int64_t pending_before = broker_balance(m1_hex, true);
	net_fund(&net, account, 40);
	char channel[64], order[64], err[512], ca[700], broker_ep[128], m1_db[700];
	net_wallet_issue(&net, "w1", m1_hex, 20, 1, channel, sizeof(channel));
	new_order(1000, order, sizeof(order));
	json_t *r = wallet_pay(channel, m1_ep, 1, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err); /* m1 holds the channel's record now */
	json_decref(r);

	/* Our own channel of m1, to fill its pipeline. */
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_path(&net, "m1/merchant.db", m1_db, sizeof(m1_db));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	struct twallet tw;
	struct tchannel filler;
	struct wire b, m;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	char hex[MP_HEX_ID_LEN + 1], params[200];
	mp_hex_encode(tw.account_id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":10,\"fund_id\":\"%s\"}",
		 hex, hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
	uint8_t m1[MP_ID_LEN];
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	tchannel_make(&filler, &tw, 10, 1, m1);
	ck_assert_int_eq(tchannel_issue(&filler, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(&filler, &m);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);

	sqlite3 *lock;
	ck_assert_int_eq(sqlite3_open(m1_db, &lock), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	tchannel_send_pay(&filler, &m, 1); /* committing: waits on the lock */
	usleep(200 * 1000);
	tchannel_send_pay(&filler, &m, 2); /* the next batch, full */
	usleep(200 * 1000);
	r = wallet_pay(channel, m1_ep, 2, order, err, sizeof(err));
	ck_assert_msg(r == NULL, "paid although the merchant's pipeline was full");
	ck_assert_msg(strstr(err, "LIMIT") && strstr(err, "merchant busy") &&
			  strstr(err, "kept in flight"),
		      "unexpected error: %s", err);
	ck_assert_int_eq(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	for (int i = 0; i < 2; i++) {
		e = wire_recv(&m);
		ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	wire_close(&m);

	/* The refused Pay (j = 3) is resent verbatim before the new one (j = 4). */
	r = wallet_pay(channel, m1_ep, 1, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	ck_assert_int_eq(json_int(r, "resent"), 1);
	ck_assert_int_eq(json_int(r, "paid_units"), 1);
	ck_assert_int_eq(json_int(r, "last"), 4);
	json_decref(r);
	json_t *chans = admin_ok(&net, "m1", "channels", NULL);
	bool seen = false;
	for (size_t i = 0; i < json_array_size(json_object_get(chans, "channels")); i++) {
		json_t *c = json_array_get(json_object_get(chans, "channels"), i);
		if (strcmp(json_str(c, "channel_id"), channel) == 0) {
			ck_assert_int_eq(json_int(c, "last"), 4);
			ck_assert_int_eq(json_int(c, "credit"), 4);
			seen = true;
		}
	}
	ck_assert(seen);
	json_decref(chans);
	restart_m1("commit_max = 256");
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(broker_balance(m1_hex, true) - pending_before, 4 + 2);
	json_t *a = admin_ok(&net, "broker", "audit", NULL);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	tchannel_free(&filler);
	mp_key_free(&tw.account);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wallet");
	TCase *tc = tcase_create("walletd");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, quickstart_scenario_exact_balances);
	tcase_add_test(tc, wallet_refuses_impersonating_merchant);
	tcase_add_test(tc, insufficient_funds_through_wallet);
	tcase_add_test(tc, wallet_restart_keeps_channel_state);
	tcase_add_test(tc, pay_refused_busy_stays_in_flight_and_is_resent);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
