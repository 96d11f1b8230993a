/* Refusing to serve beyond the maximum clock offset against the broker (protocol.md section 8;
 * common/clock_guard.h): the test clock (--test-clock, admin clock.advance) moves one daemon's
 * time alone. merchantd then answers Open, Pay and HandoffReq INTERNAL with the reason and
 * walletd refuses to pay; each says why in its log, status, metrics and STATUS line; once the
 * broker's clock agrees again (moved the same way) both ask its time and serve again. Every
 * refusal changes nothing: the payments that follow are credited exactly once. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], m1_hex[64], m1_ep[128], m2_hex[64], m2_ep[128];

static void setup(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	net_fund(&net, json_str(r, "account_id"), 20);
	json_decref(r);
}

static void teardown(void)
{
	net_down(&net);
}

static void advance(const char *daemon, uint64_t seconds)
{
	char params[64];
	snprintf(params, sizeof(params), "{\"seconds\":%llu}", (unsigned long long)seconds);
	json_decref(admin_ok(&net, daemon, "clock.advance", params));
}

/* status.clock of daemon (a new reference). */
static json_t *clock_status(const char *daemon)
{
	json_t *s = admin_ok(&net, daemon, "status", NULL);
	json_t *c = json_incref(json_object_get(s, "clock"));
	json_decref(s);
	ck_assert_msg(json_is_object(c), "%s: no clock in status", daemon);
	return c;
}

static bool within(const char *daemon)
{
	json_t *c = clock_status(daemon);
	bool ok = json_is_true(json_object_get(c, "within"));
	json_decref(c);
	return ok;
}

/* Poll until daemon's clock guard serves again (it asks the broker every 5 s while beyond). */
static void wait_within(const char *daemon)
{
	for (int i = 0; i < 300 && !within(daemon); i++)
		usleep(50 * 1000);
	ck_assert_msg(within(daemon), "%s still refuses after the clocks agree", daemon);
}

/* walletd w1 pays units at merchant `at` (endpoint ep, paying merchant_hex) of channel: NULL
 * and the refusal in err, or the answer. */
static json_t *wallet_pay(const char *channel, const char *at, const char *ep,
			  const char *merchant_hex, uint32_t units, char *err, size_t errlen)
{
	char order[64], params[600];
	net_new_order(&net, at, units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\","
		 "\"merchant_id\":\"%s\"}",
		 channel, ep, units, order, merchant_hex);
	return admin(&net, "w1", "pay", params, err, errlen);
}

static void wallet_pay_ok(const char *channel, const char *at, const char *ep,
			  const char *merchant_hex, uint32_t units)
{
	char err[600];
	json_t *r = wallet_pay(channel, at, ep, merchant_hex, units, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay at %s refused: %s", at, err);
	json_decref(r);
}

static void expect_clock_refusal(const char *err, const char *who)
{
	ck_assert_msg(strstr(err, "clock offset against the broker") && strstr(err, who) &&
			  strstr(err, "beyond the maximum 30 s"),
		      "not a clock refusal by %s: %s", who, err);
}

/* A raw wallet (harness.h) with a channel at m1, opened and paid once on conn. */
struct raw {
	struct twallet tw;
	struct tchannel ch;
	struct wire conn;
};

static void raw_open(struct raw *r)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&r->tw, &b);
	net_fund_id(&net, r->tw.account_id, 10);
	uint8_t m1[MP_ID_LEN];
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	tchannel_make(&r->ch, &r->tw, 10, 1, m1);
	ck_assert_int_eq(tchannel_issue(&r->ch, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(&r->conn, m1_ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(&r->ch, &r->conn);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	ck_assert(pay_accepted(pay_status(&r->ch, &r->conn, 1)));
}

/* merchantd m1 40 s ahead of the broker: Open, Pay (on a connection opened before) and a
 * HandoffReq from m2 are refused, with the reason; then the broker's clock is moved too and m1
 * serves again. w1 40 s ahead: walletd refuses to pay itself until it learns the broker's time
 * agrees. In the end every unit paid is credited once and the audit is clean. */
START_TEST(refused_beyond_the_offset_and_served_again)
{
	char channel[64], err[600];
	net_wallet_issue(&net, "w1", m1_hex, 20, 1, channel, sizeof(channel));
	wallet_pay_ok(channel, "m1", m1_ep, m1_hex, 2);
	struct raw raw;
	raw_open(&raw);
	json_t *c = clock_status("m1");
	ck_assert(json_is_true(json_object_get(c, "known")));
	ck_assert_int_eq(json_int(c, "max_offset"), 30);
	/* The offset is measured from the broker_time of an answer when it arrives, so it carries
	 * that answer's delay in transit (seconds on a loaded machine under ASan): the advance
	 * moves it by 40 s from wherever it was, not to exactly -40. */
	int64_t before = json_int(c, "offset");
	ck_assert_int_le(before, 0);
	json_decref(c);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_clock_within_limit"), 1);

	advance("m1", 40);
	c = clock_status("m1");
	ck_assert(json_is_false(json_object_get(c, "within")));
	ck_assert_int_le(json_int(c, "offset"), -39);
	ck_assert_int_ge(json_int(c, "offset"), before - 41);
	json_decref(c);
	/* A Pay on the connection opened before: INTERNAL with the reason, nothing accepted. */
	static const uint8_t ref[4] = {9, 9, 9, 9};
	MpEnvelope *e = tchannel_pay(&raw.ch, &raw.conn, 2, ref, sizeof(ref));
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(INTERNAL));
	expect_clock_refusal(e->pay_ack->status->detail, "merchantd");
	ck_assert_int_eq(e->pay_ack->last, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* walletd's pay at m1: its Open is refused, no payword sent. */
	ck_assert(wallet_pay(channel, "m1", m1_ep, m1_hex, 1, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "Open refused: INTERNAL"), "%s", err);
	expect_clock_refusal(err, "merchantd");
	/* A handoff to m2: m2 asks m1 (the holder), which refuses the HandoffReq. */
	ck_assert(wallet_pay(channel, "m2", m2_ep, m2_hex, 1, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "clock offset against the broker"), "%s", err);
	ck_assert(metric(&net, "m1", "micropay_merchant_clock_refusals_total") >= 3);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_clock_within_limit"), 0);
	ck_assert(metric(&net, "m1", "micropay_merchant_broker_clock_offset_seconds") <= -39);
	ck_assert(log_has(&net, "m1", "merchantd refuses to serve until the clocks agree", 2000));
	/* Still beyond after m1 asked the broker (every 5 s while beyond). */
	sleep(6);
	ck_assert(!within("m1"));

	/* The wallet's clock moves on alone: walletd refuses to pay, whatever the merchant. */
	advance("w1", 40);
	ck_assert(!within("w1"));
	ck_assert(wallet_pay(channel, "m1", m1_ep, m1_hex, 1, err, sizeof(err)) == NULL);
	expect_clock_refusal(err, "walletd");
	ck_assert_int_eq(metric(&net, "w1", "micropay_wallet_clock_within_limit"), 0);
	ck_assert(metric(&net, "w1", "micropay_wallet_clock_refusals_total") >= 1);
	ck_assert(log_has(&net, "w1", "walletd refuses to serve until the clocks agree", 2000));

	/* The broker's clock agrees again: both ask its time and serve. */
	advance("broker", 40);
	wait_within("m1");
	wait_within("w1");
	ck_assert(log_has(&net, "m1", "merchantd serves again", 2000));
	ck_assert(log_has(&net, "w1", "walletd serves again", 2000));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_clock_within_limit"), 1);
	e = tchannel_pay(&raw.ch, &raw.conn, 2, ref, sizeof(ref));
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert(pay_accepted(e->pay_ack->status->code));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wallet_pay_ok(channel, "m1", m1_ep, m1_hex, 3);
	wallet_pay_ok(channel, "m2", m2_ep, m2_hex, 4); /* the handoff goes through now */

	/* Every unit credited once: w1 5 at m1 then 4 at m2, the raw wallet 2 at m1. */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex), 7);
	ck_assert_int_eq(net_pending(&net, m2_hex), 4);
	wire_close(&raw.conn);
	tchannel_free(&raw.ch);
	mp_key_free(&raw.tw.account);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("clock_offset");
	TCase *tc = tcase_create("offset");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, refused_beyond_the_offset_and_served_again);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
