/* Customer-to-customer transfer end to end against the real daemons (deploy/mpnet: brokerd,
 * three merchants, two walletd): wallet w1 pays at m1 and, through a handoff, at m2; w2 makes an
 * offer, w1 sends the channel's rest, w2 accepts (the broker acknowledges its SegmentClaim) and
 * pays at m2 and, through a second handoff, at m3. w1 can no longer pay. Every merchant
 * redeems and is credited exactly its range across both segments; retries of send and accept
 * return the stored results; the broker records w2 for the refund; the audit stays clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

static struct net net;
static struct tmerchant tm[4]; /* 1..3 */
static char ep[4][128], account[3][64];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
	}
	for (int w = 1; w <= 2; w++) {
		char name[8];
		snprintf(name, sizeof(name), "w%d", w);
		json_t *r = admin_ok(&net, name, "register", NULL);
		snprintf(account[w], sizeof(account[w]), "%s", json_str(r, "account_id"));
		json_decref(r);
	}
}

static void teardown_net(void)
{
	for (int i = 1; i <= 3; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

static json_t *wallet_pay(int w, const char *channel, int m, unsigned units, char *err,
			  size_t errlen)
{
	char params[500], order[64], name[8];
	net_new_order(&net, tm[m].name, units, order, sizeof(order));
	snprintf(name, sizeof(name), "w%d", w);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, tm[m].mid_hex, ep[m], units, order);
	return admin(&net, name, "pay", params, err, errlen);
}

static void pay_at(int w, const char *channel, int m, unsigned units, int64_t expect_last)
{
	char err[512];
	json_t *r = wallet_pay(w, channel, m, units, err, sizeof(err));
	ck_assert_msg(r != NULL, "w%d: pay %u at m%d failed: %s", w, units, m, err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	json_decref(r);
}

/* The wallet's own view of the channel (admin `channels`). */
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

static char *transfer_call(int w, const char *method, const char *params, const char *field)
{
	char name[8];
	snprintf(name, sizeof(name), "w%d", w);
	json_t *r = admin_ok(&net, name, method, params);
	char *out = strdup(json_str(r, field));
	json_decref(r);
	return out;
}

START_TEST(a_to_b_across_handoffs)
{
	net_fund(&net, account[1], 1000);
	char params[4096], channel[64], err[512];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":100,\"unit_value\":1,\"days\":1}", tm[1].mid_hex);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	int64_t before[4];
	for (int i = 1; i <= 3; i++)
		before[i] = net_pending(&net, tm[i].mid_hex);

	pay_at(1, channel, 1, 3, 3); /* epoch 0 at m1: (0, 3] */
	pay_at(1, channel, 2, 4, 7); /* handoff 1 to m2 at 3: (3, 7] in A's segment */

	/* B offers, A sends, B accepts. */
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	char *offer = transfer_call(2, "transfer.offer", params, "offer");
	char *again = transfer_call(2, "transfer.offer", params, "offer");
	ck_assert_str_eq(offer, again); /* the stored offer, not a new key */
	free(again);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	char *bundle = transfer_call(1, "transfer.send", params, "bundle");
	char *bundle2 = transfer_call(1, "transfer.send", params, "bundle");
	ck_assert_str_eq(bundle, bundle2); /* a retry gets the stored bundle */
	free(bundle2);
	free(offer);
	json_t *a = wallet_channel(1, channel);
	ck_assert_str_eq(json_str(a, "state"), "TRANSFERRED_OUT");
	json_decref(a);

	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", bundle);
	r = admin_ok(&net, "w2", "transfer.accept", params);
	ck_assert_str_eq(json_str(r, "channel_id"), channel);
	ck_assert_int_eq(json_int(r, "seg_seq"), 1);
	ck_assert_int_eq(json_int(r, "spendable"), 100 - 7);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	r = admin_ok(&net, "w2", "transfer.accept", params); /* again: the same channel */
	ck_assert_int_eq(json_int(r, "seg_seq"), 1);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	free(bundle);

	/* A cannot pay any more; B pays at the holder m2 and, through a handoff, at m3. */
	r = wallet_pay(1, channel, 2, 1, err, sizeof(err));
	ck_assert_msg(r == NULL, "w1 paid after giving the channel away");
	fprintf(stderr, "transfer: w1's pay refused: %s\n", err);
	pay_at(2, channel, 2, 5, 12); /* (7, 12] in B's segment at m2 */
	pay_at(2, channel, 3, 6, 18); /* handoff 2 to m3 at 12: (12, 18] */
	json_t *b = wallet_channel(2, channel);
	ck_assert_str_eq(json_str(b, "state"), "ACTIVE");
	ck_assert_int_eq(json_int(json_object_get(b, "segment"), "seg_seq"), 1);
	ck_assert_int_eq(json_int(json_object_get(b, "segment"), "start"), 7);
	ck_assert_str_eq(json_str(b, "holder"), tm[3].mid_hex);
	json_decref(b);

	/* The broker knows B's segment from m2's Cap notice and B's claim: B is paid the refund. */
	char sp[128];
	snprintf(sp, sizeof(sp), "{\"channel\":\"%s\"}", channel);
	json_t *segs = NULL, *list = NULL;
	for (int tries = 0; tries < 100; tries++) { /* the Cap outbox sends at once; allow 10 s */
		json_decref(segs);
		segs = admin_ok(&net, "broker", "channel.segments", sp);
		list = json_object_get(segs, "segments");
		if (json_is_integer(json_object_get(json_array_get(list, 1), "noticed")))
			break;
		usleep(100000);
	}
	ck_assert_uint_eq(json_array_size(list), 2);
	json_t *s0 = json_array_get(list, 0), *s1 = json_array_get(list, 1);
	ck_assert_str_eq(json_str(s0, "payout_account"), account[1]);
	ck_assert_int_eq(json_int(s0, "cap_index"), 7);
	ck_assert_str_eq(json_str(s1, "payout_account"), account[2]);
	ck_assert_int_eq(json_int(s1, "start"), 7);
	ck_assert_int_eq(json_int(s1, "cap_hseq"), 1);
	ck_assert_str_eq(json_str(s1, "holder"), tm[2].mid_hex);
	ck_assert(json_is_integer(json_object_get(s1, "noticed")));
	ck_assert(json_is_integer(json_object_get(s1, "claimed")));
	json_decref(segs);

	/* Each merchant is credited its range: m1 (0, 3], m2 (3, 12] over both segments, m3
	 * (12, 18]. */
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_decref(admin_ok(&net, name, "redeem", NULL));
	}
	int64_t got[4];
	for (int i = 1; i <= 3; i++)
		got[i] = net_pending(&net, tm[i].mid_hex) - before[i];
	fprintf(stderr, "transfer: credited m1 %lld, m2 %lld, m3 %lld of 18 paid\n",
		(long long)got[1], (long long)got[2], (long long)got[3]);
	ck_assert_int_eq(got[1], 3);
	ck_assert_int_eq(got[2], 9);
	ck_assert_int_eq(got[3], 6);
	net_audit_clean(&net);
}
END_TEST

/* w `from` gives channel to w `to` at the holder (offer, send with the holder's endpoint,
 * accept); the new segment starts at the Cap's index. */
static void give(int from, int to, const char *channel, int holder)
{
	char params[8192];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	char *offer = transfer_call(to, "transfer.offer", params, "offer");
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"offer\":\"%s\",\"endpoint\":\"%s\"}", channel, offer,
		 ep[holder]);
	free(offer);
	char *bundle = transfer_call(from, "transfer.send", params, "bundle");
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", bundle);
	free(bundle);
	json_t *r = admin_ok(&net, to == 1 ? "w1" : "w2", "transfer.accept", params);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
}

static int64_t redeem_credit(int m)
{
	json_t *r = admin_ok(&net, tm[m].name, "redeem", NULL);
	int64_t credited = json_int(r, "credited");
	json_decref(r);
	return credited;
}

/* Found by settlement_random: a point at the base of a segment (the Cap's index, the new
 * root) is no payword, and the broker refuses a claim there (OUT_OF_RANGE "index outside its
 * segment") every time. The holder claims such units at the Cap's point in the segment before:
 * right after a transfer with nothing paid in the new segment, and for an epoch it handed off
 * at such a point. */
START_TEST(holder_redeems_a_range_ending_at_a_transfer)
{
	net_fund(&net, account[1], 1000);
	char params[300], channel[64];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":40,\"unit_value\":1,\"days\":1}", tm[1].mid_hex);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	int64_t before1 = net_pending(&net, tm[1].mid_hex);
	int64_t before2 = net_pending(&net, tm[2].mid_hex);

	pay_at(1, channel, 1, 5, 5);
	give(1, 2, channel, 1); /* Cap 1 at 5: m1's durable point is (1, 5, root 1) */
	ck_assert_int_eq(redeem_credit(1), 5);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before1, 5);

	pay_at(2, channel, 1, 3, 8);
	give(2, 1, channel, 1); /* Cap 2 at 8, and at once Cap 3 at 8 */
	give(1, 2, channel, 1);
	pay_at(2, channel, 2, 2, 10); /* Handoff 1 at (3, 8, root 3) */
	ck_assert_int_eq(redeem_credit(1), 3);
	ck_assert_int_eq(redeem_credit(2), 2);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before1, 8);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex) - before2, 2);
	net_audit_clean(&net);
}
END_TEST

/* Found by settlement_random: a channel issued without holder0, bound at m1 and handed off to
 * m2, given to w2 at m2. w2 verifies the custody chain from the Bind, which w1's bundle took
 * from m2's TransferResp (it had none in epoch 1 before). */
START_TEST(bound_and_handed_off_channel_transferred)
{
	net_fund(&net, account[1], 1000);
	char params[300], channel[64];
	snprintf(params, sizeof(params), "{\"n\":30,\"unit_value\":1,\"days\":1}");
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	int64_t before1 = net_pending(&net, tm[1].mid_hex);
	int64_t before2 = net_pending(&net, tm[2].mid_hex);
	pay_at(1, channel, 1, 4, 4); /* the Bind to m1 */
	pay_at(1, channel, 2, 3, 7); /* Handoff 1 to m2 */
	give(1, 2, channel, 2);
	pay_at(2, channel, 2, 5, 12);
	ck_assert_int_eq(redeem_credit(1), 4);
	ck_assert_int_eq(redeem_credit(2), 8);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) - before1, 4);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex) - before2, 8);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("transfer");
	TCase *tc = tcase_create("transfer");
	tcase_set_timeout(tc, 240);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, a_to_b_across_handoffs);
	tcase_add_test(tc, holder_redeems_a_range_ending_at_a_transfer);
	tcase_add_test(tc, bound_and_handed_off_channel_transferred);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
