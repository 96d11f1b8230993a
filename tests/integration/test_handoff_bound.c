/* Handoffs of a channel issued without holder0 (bound by the broker's Bind) against the real
 * daemons (deploy/mpnet, three merchants), through walletd: issue without merchant_id, pay at
 * m1 (m1 binds it), at m2 (Handoff 1: m1 sends its Bind in HandoffResp.bind, m2 verifies it
 * under the broker key and the chain from it), at m3 (Handoff 2: m2 passes the Bind on), m3
 * restarted (the Bind is stored with the channel there), back at m1 (Handoff 3); every
 * merchant redeems and is credited exactly its ranges; the audit is clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

static struct net net;
static char account[64];
static struct tmerchant tm[4]; /* 1..3 */
static char ep[4][128];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
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

/* Pay `units` at merchant m through walletd (an order of that many units' price); the wallet's
 * last index afterwards must be expect_last. */
static void pay_at(const char *channel, int m, unsigned units, uint64_t unit_value,
		   int64_t expect_last)
{
	char params[500], name[8], order[64], err[512];
	snprintf(name, sizeof(name), "m%d", m);
	snprintf(params, sizeof(params), "{\"price\":%llu}",
		 (unsigned long long)(units * unit_value));
	json_t *o = admin_ok(&net, name, "order.create", params);
	snprintf(order, sizeof(order), "%s", json_str(o, "order_ref"));
	json_decref(o);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, tm[m].mid_hex, ep[m], units, order);
	json_t *r = admin(&net, "w1", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay %u at m%d failed: %s", units, m, err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	json_decref(r);
}

START_TEST(bound_channel_handed_off_m1_m2_m3_m1)
{
	net_fund(&net, account, 1000);
	json_t *r = admin_ok(&net, "w1", "issue", "{\"n\":60,\"unit_value\":2,\"days\":1}");
	char channel[64];
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	int64_t before[4];
	for (int i = 1; i <= 3; i++)
		before[i] = net_pending(&net, tm[i].mid_hex);

	pay_at(channel, 1, 3, 2, 3);  /* m1 binds it: epoch 0 (0, 3] */
	pay_at(channel, 2, 4, 2, 7);  /* Handoff 1 from the Bind: (3, 7] at m2 */
	pay_at(channel, 3, 5, 2, 12); /* Handoff 2, m2 passes the Bind on: (7, 12] at m3 */
	/* m3 stored the Bind with the channel: after a restart it still serves it. */
	ck_assert_int_eq(net_cmd(&net, "kill", "m3"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m3"), 0);
	pay_at(channel, 3, 1, 2, 13);
	pay_at(channel, 1, 5, 2, 18); /* Handoff 3 back to m1: (13, 18] */
	expect_merchant_channel(&net, tm[1].name, channel, "HELD", 3, 18);
	expect_merchant_channel(&net, tm[2].name, channel, "HANDED_OFF", 1, 7);
	expect_merchant_channel(&net, tm[3].name, channel, "HANDED_OFF", 2, 13);

	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_decref(admin_ok(&net, name, "redeem", NULL));
	}
	int64_t got1 = net_pending(&net, tm[1].mid_hex) - before[1];
	int64_t got2 = net_pending(&net, tm[2].mid_hex) - before[2];
	int64_t got3 = net_pending(&net, tm[3].mid_hex) - before[3];
	fprintf(stderr, "bound handoff chain: credited m1 %lld, m2 %lld, m3 %lld of 36 paid\n",
		(long long)got1, (long long)got2, (long long)got3);
	ck_assert_int_eq(got1, (3 + 5) * 2);
	ck_assert_int_eq(got2, 4 * 2);
	ck_assert_int_eq(got3, (5 + 1) * 2);
	/* A second redeem round changes nothing (idempotent). */
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_decref(admin_ok(&net, name, "redeem", NULL));
	}
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before[1], got1);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex) - before[2], got2);
	ck_assert_int_eq(net_pending(&net, tm[3].mid_hex) - before[3], got3);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("handoff_bound");
	TCase *tc = tcase_create("handoff_bound");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, bound_channel_handed_off_m1_m2_m3_m1);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
