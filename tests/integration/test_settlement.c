/* Settlement to the end through the real daemons with the test clock (docs/settlement.md):
 * expiry and finalisation by the broker's sweep, the customer's refund through walletd
 * (TOO_EARLY before finalisation, the result after, DUPLICATE_OK again), the merchants'
 * pending credit released to their available accounts, units spent but never redeemed put in
 * `unclaimed`, a late claim answered TOO_LATE and never retried by merchantd, the refund of a
 * transferred channel paid to the new owner, and merchantd redeeming on its own before
 * redeem_until. Every test ends with the broker's audit. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_merchant.h"
#include "harness_redeem.h"
#include "harness_ledger.h"
#include "harness_settle.h"
#include "../check_run.h"

static struct net net;
static struct tmerchant tm[3]; /* 1, 2 */
static char ep[3][128], account[3][64];

/* check: merchantd's [redeem] deadline_check_interval and walletd's [wallet]
 * refund_check_interval (0: the wallet asks only when told to). */
static void setup_net_checking(const char *deadline_check, const char *refund_check)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* sweeps when the test asks */
	setenv("MP_DEADLINE_CHECK", deadline_check, 1);
	setenv("MP_REFUND_CHECK", refund_check, 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_DEADLINE_CHECK");
	unsetenv("MP_REFUND_CHECK");
	for (int i = 1; i <= 2; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
		snprintf(name, sizeof(name), "w%d", i);
		json_t *r = admin_ok(&net, name, "register", NULL);
		snprintf(account[i], sizeof(account[i]), "%s", json_str(r, "account_id"));
		json_decref(r);
	}
}

/* Merchants redeem and wallets ask for refunds only when told to. */
static void setup_net(void)
{
	setup_net_checking("3600", "0");
}

/* Merchants check every second for channels near redeem_until, wallets for refunds. */
static void setup_net_deadline(void)
{
	setup_net_checking("1", "1");
}

static void teardown_net(void)
{
	for (int i = 1; i <= 2; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

static void issue(int w, int m, unsigned n, uint64_t unit, char *channel, size_t len)
{
	char params[300], name[8];
	snprintf(name, sizeof(name), "w%d", w);
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":%llu,\"days\":1}", tm[m].mid_hex,
		 n, (unsigned long long)unit);
	json_t *r = admin_ok(&net, name, "issue", params);
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}

/* w pays `units` at merchant m (a handoff if m is not the holder), for an order of that value. */
static void pay_at(int w, const char *channel, int m, unsigned units, uint64_t unit,
		   int64_t expect_last)
{
	char params[500], order[64], name[8], err[512];
	snprintf(name, sizeof(name), "m%d", m);
	net_new_order(&net, name, units * unit, order, sizeof(order));
	snprintf(name, sizeof(name), "w%d", w);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, tm[m].mid_hex, ep[m], units, order);
	json_t *r = admin(&net, name, "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "w%d: pay %u at m%d failed: %s", w, units, m, err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	json_decref(r);
}

static void redeem_at(int m)
{
	char name[8];
	snprintf(name, sizeof(name), "m%d", m);
	json_decref(admin_ok(&net, name, "redeem", NULL));
}

static json_t *refund(int w, const char *channel)
{
	char params[128], name[8];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	snprintf(name, sizeof(name), "w%d", w);
	return admin_ok(&net, name, "refund", params);
}

static json_t *wallet_balance(int w)
{
	char name[8];
	snprintf(name, sizeof(name), "w%d", w);
	return admin_ok(&net, name, "balance", NULL);
}

static uint64_t channel_time(const char *channel, const char *key)
{
	json_t *s = settle_channel(&net, channel);
	uint64_t t = (uint64_t)json_int(s, key);
	json_decref(s);
	return t;
}

static void expect_sweep(int64_t expired, int64_t finalized)
{
	json_t *r = settle_sweep(&net);
	ck_assert_int_eq(json_int(r, "expired"), expired);
	ck_assert_int_eq(json_int(r, "finalized"), finalized);
	ck_assert_int_eq(json_int(r, "failures"), 0);
	json_decref(r);
}

/* 100 units of 3: 10 paid at m1, 5 at m2 after a handoff; only m2 redeems. At finalisation
 * the customer gets (100 - 15) * 3 back, m2's 15 moves to available, m1's 10 units (spent,
 * never redeemed) go to unclaimed; m1's late claim is TOO_LATE and not retried. */
START_TEST(refund_after_expiry_partial_spending)
{
	char channel[64];
	net_fund(&net, account[1], 1000);
	issue(1, 1, 100, 3, channel, sizeof(channel));
	ck_assert_int_eq(net_balance(&net, account[1]), 700);
	pay_at(1, channel, 1, 10, 3, 10);
	pay_at(1, channel, 2, 5, 3, 15); /* handoff to m2 at 10 */
	redeem_at(2);
	ck_assert_int_eq(net_balance(&net, tm[2].mid_hex), 0);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 15);
	int64_t unclaimed0 = settle_unclaimed(&net);

	/* Before finalisation: TOO_EARLY with the time it becomes possible. */
	uint64_t pay_until = channel_time(channel, "pay_until");
	uint64_t finalize_at = channel_time(channel, "finalize_at");
	json_t *r = refund(1, channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "TOO_EARLY");
	ck_assert_int_eq(json_int(r, "not_before"), (int64_t)finalize_at);
	ck_assert_str_eq(json_str(r, "state"), "ACTIVE");
	json_decref(r);

	/* pay_until: EXPIRED at the broker, REFUND_PENDING in the wallet; still TOO_EARLY. */
	settle_advance_to(&net, pay_until);
	expect_sweep(1, 0);
	json_t *s = settle_channel(&net, channel);
	ck_assert_str_eq(json_str(s, "state"), "EXPIRED");
	json_decref(s);
	r = refund(1, channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "TOO_EARLY");
	ck_assert_str_eq(json_str(r, "state"), "REFUND_PENDING");
	json_decref(r);
	json_t *bal = wallet_balance(1);
	ck_assert_int_eq(json_int(bal, "spendable"), 0);
	ck_assert_int_eq(json_int(bal, "pending_refunds"), 255);
	ck_assert_int_eq(json_int(bal, "refunded"), 0);
	json_decref(bal);
	expect_sweep(0, 0); /* nothing due twice */

	/* redeem_until + T_grace: FINALIZED, everything paid in the one transaction. */
	settle_advance_to(&net, finalize_at);
	expect_sweep(0, 1);
	s = settle_channel(&net, channel);
	ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
	json_t *f = json_object_get(s, "finalization");
	ck_assert_int_eq(json_int(f, "spent"), 15);
	ck_assert_int_eq(json_int(f, "refund"), 255);
	ck_assert_int_eq(json_int(f, "unclaimed"), 30);
	ck_assert_int_eq(json_int(f, "credited"), 15);
	ck_assert(json_is_true(json_object_get(f, "refund_paid")));
	ck_assert_str_eq(json_str(f, "refund_account"), account[1]);
	json_decref(s);
	ck_assert_int_eq(net_balance(&net, account[1]), 700 + 255);
	ck_assert_int_eq(net_balance(&net, tm[2].mid_hex), 15);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 0);
	ck_assert_int_eq(net_balance(&net, tm[1].mid_hex), 0);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 0);
	ck_assert_int_eq(settle_unclaimed(&net) - unclaimed0, 30);
	expect_sweep(0, 0);

	/* m1's claim now comes too late: TOO_LATE, counted, and not claimed again. */
	redeem_at(1);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_claims_too_late_total"), 1);
	ck_assert(log_contains(&net, "m1", "TOO_LATE"));
	int64_t sent = metric(&net, "m1", "micropay_merchant_redeems_sent_total");
	redeem_at(1);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_redeems_sent_total"), sent);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_claims_too_late_total"), 1);
	ck_assert_int_eq(net_balance(&net, tm[1].mid_hex), 0);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 0);

	/* The refund request now gets the stored result; again: DUPLICATE_OK, nothing paid. */
	r = refund(1, channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "OK");
	ck_assert_int_eq(json_int(r, "refund"), 255);
	ck_assert_str_eq(json_str(r, "payout_account"), account[1]);
	ck_assert_int_eq(json_int(r, "spent"), 15);
	ck_assert_int_eq(json_int(r, "unclaimed"), 30);
	ck_assert_str_eq(json_str(r, "state"), "REFUNDED");
	json_decref(r);
	r = refund(1, channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "DUPLICATE_OK");
	ck_assert_int_eq(json_int(r, "refund"), 255);
	json_decref(r);
	ck_assert_int_eq(net_balance(&net, account[1]), 700 + 255);
	bal = wallet_balance(1);
	ck_assert_int_eq(json_int(bal, "pending_refunds"), 0);
	ck_assert_int_eq(json_int(bal, "refunded"), 255);
	json_decref(bal);
	net_audit_clean(&net);
}
END_TEST

/* A transfers to B at 5; B pays 7 more; the refund of (50 - 12) * 2 goes to B's account. */
START_TEST(refund_after_transfer_goes_to_new_owner)
{
	char channel[64], params[4096];
	net_fund(&net, account[1], 100);
	int64_t b_before = net_balance(&net, account[2]);
	issue(1, 1, 50, 2, channel, sizeof(channel));
	pay_at(1, channel, 1, 5, 2, 5);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	json_t *r = admin_ok(&net, "w2", "transfer.offer", params);
	char *offer = strdup(json_str(r, "offer"));
	json_decref(r);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	free(offer);
	r = admin_ok(&net, "w1", "transfer.send", params);
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", json_str(r, "bundle"));
	json_decref(r);
	r = admin_ok(&net, "w2", "transfer.accept", params);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	pay_at(2, channel, 1, 7, 2, 12);
	redeem_at(1);
	int64_t a_after_issue = net_balance(&net, account[1]);

	/* A gave the channel away: its wallet has no refund to ask for. */
	char err[512];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	ck_assert(admin(&net, "w1", "refund", params, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "TRANSFERRED_OUT") != NULL, "%s", err);

	settle_advance_to(&net, channel_time(channel, "finalize_at"));
	expect_sweep(0, 1); /* OPEN -> FINALIZED at once: the deadline of both has passed */
	json_t *s = settle_channel(&net, channel);
	json_t *f = json_object_get(s, "finalization");
	ck_assert_int_eq(json_int(f, "refund_seg"), 1);
	ck_assert_str_eq(json_str(f, "refund_account"), account[2]);
	ck_assert_int_eq(json_int(f, "refund"), (50 - 12) * 2);
	json_decref(s);
	ck_assert_int_eq(net_balance(&net, account[2]) - b_before, (50 - 12) * 2);
	ck_assert_int_eq(net_balance(&net, account[1]), a_after_issue);
	r = refund(2, channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "OK");
	ck_assert_int_eq(json_int(r, "refund"), (50 - 12) * 2);
	ck_assert_str_eq(json_str(r, "payout_account"), account[2]);
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

static bool m1_credited(void *arg)
{
	return net_pending(&net, tm[1].mid_hex) >= *(int64_t *)arg;
}

/* merchantd redeems on its own once a channel comes within [redeem] deadline_margin (6 h by
 * default) of redeem_until, warns about the channel at risk, and not before. */
START_TEST(merchant_redeems_before_the_deadline)
{
	char channel[64];
	net_fund(&net, account[1], 100);
	issue(1, 1, 20, 1, channel, sizeof(channel));
	pay_at(1, channel, 1, 4, 1, 4);
	int64_t pending0 = net_pending(&net, tm[1].mid_hex);
	uint64_t redeem_until = channel_time(channel, "redeem_until");

	settle_advance_to(&net, redeem_until - 6 * 3600 - 600); /* outside the margin */
	usleep(2500 * 1000);					/* a few checks */
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), pending0);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_channels_at_risk"), 0);

	settle_advance_to(&net, redeem_until - 3600); /* within it */
	int64_t want = pending0 + 4;
	ck_assert_msg(wait_for(m1_credited, &want, 10000), "m1 did not redeem on its own");
	ck_assert(log_contains(&net, "m1", "at risk of expiring unredeemed"));
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_deadline_rounds_total"), 1);
	net_audit_clean(&net);
}
END_TEST

static bool w1_refunded(void *arg)
{
	json_t *bal = wallet_balance(1);
	bool done = json_int(bal, "refunded") == *(int64_t *)arg;
	json_decref(bal);
	return done;
}

/* walletd asks for the refund of an expired channel on its own: TOO_EARLY at pay_until, then
 * again once the broker's not_before has passed, until REFUNDED. */
START_TEST(wallet_asks_for_its_refund)
{
	char channel[64];
	net_fund(&net, account[1], 100);
	issue(1, 1, 20, 2, channel, sizeof(channel));
	pay_at(1, channel, 1, 3, 2, 3);
	redeem_at(1);
	settle_advance_to(&net, channel_time(channel, "pay_until"));
	uint64_t t0 = now_ms();
	while (!log_contains(&net, "w1", "refund: TOO_EARLY") && now_ms() - t0 < 10000)
		usleep(100000);
	ck_assert_msg(log_contains(&net, "w1", "refund: TOO_EARLY"), "w1 did not ask");
	settle_advance_to(&net, channel_time(channel, "finalize_at"));
	json_decref(settle_sweep(&net));
	int64_t want = (20 - 3) * 2;
	ck_assert_msg(wait_for(w1_refunded, &want, 10000), "w1 did not get its refund on its own");
	ck_assert_int_eq(net_balance(&net, account[1]), 100 - 40 + want);
	net_audit_clean(&net);
}
END_TEST

static bool m1_metric_is(void *arg)
{
	const int64_t *want = arg; /* {value, metric index} */
	static const char *names[] = {"micropay_merchant_claims_too_late_total",
				      "micropay_merchant_channels_at_risk"};
	return metric(&net, "m1", names[want[1]]) == want[0];
}

static int log_count(const char *daemon, const char *text)
{
	char path[600], line[4096];
	snprintf(path, sizeof(path), "%s/%s/log", net.dir, daemon);
	FILE *f = fopen(path, "r");
	int count = 0;
	while (f && fgets(line, sizeof(line), f))
		count += strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return count;
}

static uint64_t m1_clock(void)
{
	json_t *r = admin_ok(&net, "m1", "clock.show", NULL);
	uint64_t now = (uint64_t)json_int(r, "now");
	json_decref(r);
	return now;
}

static void m1_clock_advance(uint64_t seconds)
{
	char params[64];
	snprintf(params, sizeof(params), "{\"seconds\":%llu}", (unsigned long long)seconds);
	json_decref(admin_ok(&net, "m1", "clock.advance", params));
}

/* m1 never redeemed 5 units of 2 before finalisation: its own deadline check claims them, the
 * broker answers TOO_LATE. merchantd keeps that in its store: restarted, it does not claim the
 * epoch again (no Redeem sent, on its own or when told), does not count the channel at risk,
 * and its metrics still show the claim and the amount lost. */
START_TEST(too_late_survives_a_restart)
{
	char channel[64];
	net_fund(&net, account[1], 100);
	issue(1, 1, 20, 2, channel, sizeof(channel));
	pay_at(1, channel, 1, 5, 2, 5);
	/* The broker's clock first, and its sweep, then m1's: m1's deadline check (every second)
	 * claiming between the two would still be credited (within T_grace, before the sweep
	 * finalises), which a loaded machine made happen twice. */
	uint64_t m1_now = m1_clock();
	settle_advance_broker_to(&net, channel_time(channel, "finalize_at"));
	expect_sweep(0, 1);
	m1_clock_advance(settle_broker_now(&net) - m1_now);
	int64_t want[2] = {1, 0};
	ck_assert_msg(wait_for(m1_metric_is, want, 30000), "m1 got no TOO_LATE on its own");
	want[1] = 1;
	want[0] = 0;
	ck_assert_msg(wait_for(m1_metric_is, want, 15000), "m1 still counts the channel at risk");
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_amount_too_late_total"), 10);
	ck_assert_int_eq(log_count("m1", "TOO_LATE ("), 1);

	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	/* The restarted merchantd's test clock starts again at the wall clock: move it on. */
	m1_clock_advance(settle_broker_now(&net) - m1_clock());
	ck_assert(log_contains(&net, "m1", "answered TOO_LATE before (10 lost)"));
	usleep(3000 * 1000); /* three deadline checks */
	redeem_at(1);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_redeems_sent_total"), 0);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_channels_at_risk"), 0);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_claims_too_late_total"), 1);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_amount_too_late_total"), 10);
	ck_assert_int_eq(log_count("m1", "TOO_LATE ("), 1);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 0);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("settlement");
	TCase *tc = tcase_create("settlement");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, refund_after_expiry_partial_spending);
	tcase_add_test(tc, refund_after_transfer_goes_to_new_owner);
	suite_add_tcase(s, tc);
	TCase *td = tcase_create("deadline");
	tcase_set_timeout(td, 300);
	tcase_add_checked_fixture(td, setup_net_deadline, teardown_net);
	tcase_add_test(td, merchant_redeems_before_the_deadline);
	tcase_add_test(td, wallet_asks_for_its_refund);
	tcase_add_test(td, too_late_survives_a_restart);
	suite_add_tcase(s, td);
	return mp_check_run(s);
}
