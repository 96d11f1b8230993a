/* The customer's path through the real walletd: register, funding by the operator, issue, pay
 * over TLS with the holder check, redemption, exact balances; and the wallet's refusals. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
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

static void fund(uint64_t amount)
{
	char params[200], fund_hex[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 account, (unsigned long long)amount, fund_hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
}

static void issue(uint32_t n, uint64_t unit, char *channel, size_t len)
{
	char params[200];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":%llu,\"days\":1}", m1_hex, n,
		 (unsigned long long)unit);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	ck_assert_str_eq(json_str(r, "status"), "ACTIVE");
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
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
	fund(1000);
	char channel[64], order[64], err[512];
	issue(100, 2, channel, sizeof(channel));
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
	fund(100);
	char channel[64], order[64], err[512], m2_ep[128];
	issue(10, 1, channel, sizeof(channel));
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
	fund(50);
	char channel[64], order[64], err[512];
	issue(50, 1, channel, sizeof(channel));
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
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
