/* The test clock (common/clock.h): a network started with MP_TEST_CLOCK=1 runs every daemon
 * with --test-clock, and `clock.advance` moves protocol time forward in each of them, with
 * effects a user sees (payments refused at pay_until). Without the flag it is refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../check_run.h"

static struct net net;
static char m1_hex[64], m1_ep[128], account[64], ca[700], broker_ep[128];

static void setup_common(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void setup_test_clock(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setup_common();
	unsetenv("MP_TEST_CLOCK");
}

static void teardown_net(void)
{
	net_down(&net);
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

/* A one-day channel of 10 units of 1 issued by w1 for m1; its id in channel. */
static void issue_one_day(char *channel, size_t len)
{
	fund(10);
	char params[200];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":10,\"unit_value\":1,\"days\":1}", m1_hex);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}

/* w1 pays one unit at m1: NULL with the refusal in err, or the answer. */
static json_t *pay_one(const char *channel, char *err, size_t errlen)
{
	char params[400];
	json_t *o = admin_ok(&net, "m1", "order.create", "{\"price\":1}");
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":1,\"order_ref\":\"%s\"}",
		 channel, m1_ep, json_str(o, "order_ref"));
	json_decref(o);
	return admin(&net, "w1", "pay", params, err, errlen);
}

static int64_t offset_of(const char *daemon)
{
	json_t *c = admin_ok(&net, daemon, "clock.show", NULL);
	ck_assert(json_is_true(json_object_get(c, "test_clock")));
	int64_t off = json_int(c, "offset");
	json_decref(c);
	return off;
}

START_TEST(advance_moves_every_daemon)
{
	static const char *daemons[] = {"broker", "m1", "w1"};
	int64_t before[3], offset[3];
	for (int i = 0; i < 3; i++) {
		json_t *s = admin_ok(&net, daemons[i], "status", NULL);
		before[i] = json_int(s, "time");
		json_decref(s);
		offset[i] = offset_of(daemons[i]);
	}
	net_clock_advance(&net, 3600);
	net_clock_advance(&net, 60);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(offset_of(daemons[i]), offset[i] + 3660);
		json_t *s = admin_ok(&net, daemons[i], "status", NULL);
		ck_assert_int_ge(json_int(s, "time"), before[i] + 3660);
		ck_assert_int_lt(json_int(s, "time"), before[i] + 3660 + 60);
		json_decref(s);
	}
	/* Out of range: nothing moves. */
	char err[256];
	ck_assert(admin(&net, "m1", "clock.advance", "{\"seconds\":0}", err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "seconds must be") != NULL, "%s", err);
	ck_assert(admin(&net, "m1", "clock.advance", "{}", err, sizeof(err)) == NULL);
	ck_assert_int_eq(offset_of("m1"), offset[1] + 3660);
}
END_TEST

/* Past pay_until (every clock moved: one daemon's alone would be refused for its offset
 * against the broker, test_clock_offset.c): walletd stops paying with a clear reason. */
START_TEST(wallet_stops_paying_at_pay_until)
{
	char channel[64], err[512];
	issue_one_day(channel, sizeof(channel));
	json_t *r = pay_one(channel, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay before expiry failed: %s", err);
	json_decref(r);
	net_clock_advance(&net, 172800);
	ck_assert(pay_one(channel, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "payments on this channel stopped at pay_until") != NULL, "%s",
		      err);
	net_audit_clean(&net);
}
END_TEST

/* Past pay_until on the merchant's clock (a raw wallet, which does not look at pay_until):
 * merchantd answers EXPIRED (protocol step 5), and the payment before it stays accepted. */
START_TEST(merchant_refuses_pay_after_pay_until)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire b, m;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	char params[200], acct[MP_HEX_ID_LEN + 1], fund_hex[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN], m1[MP_ID_LEN], order[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":10,\"fund_id\":\"%s\"}",
		 acct, fund_hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	tchannel_make(&ch, &tw, 10, 1, m1);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	memset(order, 7, sizeof(order));
	MpEnvelope *e = tchannel_pay(&ch, &m, 1, order, MP_ID_LEN);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID)); /* accepted, no such order */
	micropay__v1__envelope__free_unpacked(e, NULL);

	net_clock_advance(&net, 172800);
	e = tchannel_pay(&ch, &m, 2, order, MP_ID_LEN);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(EXPIRED));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&m);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* A daemon started without --test-clock refuses to move its clock, and says why. */
START_TEST(refused_without_flag)
{
	static const char *daemons[] = {"broker", "m1", "w1"};
	for (int i = 0; i < 3; i++) {
		char err[256];
		ck_assert(admin(&net, daemons[i], "clock.advance", "{\"seconds\":60}", err,
				sizeof(err)) == NULL);
		ck_assert_msg(strstr(err, "not started with --test-clock") != NULL, "%s: %s",
			      daemons[i], err);
		json_t *c = admin_ok(&net, daemons[i], "clock.show", NULL);
		ck_assert(json_is_false(json_object_get(c, "test_clock")));
		ck_assert_int_eq(json_int(c, "offset"), 0);
		json_decref(c);
	}
	net_audit_clean(&net);
}
END_TEST

static Suite *clock_suite(void)
{
	Suite *s = suite_create("clock");
	TCase *tc = tcase_create("test_clock");
	tcase_add_unchecked_fixture(tc, setup_test_clock, teardown_net);
	tcase_set_timeout(tc, 120);
	/* Each test moves clocks forward; the broker's last, since issuing (in the others) still
	 * compares the broker's clock with the database's. */
	tcase_add_test(tc, wallet_stops_paying_at_pay_until);
	tcase_add_test(tc, merchant_refuses_pay_after_pay_until);
	tcase_add_test(tc, advance_moves_every_daemon);
	suite_add_tcase(s, tc);
	TCase *plain = tcase_create("plain_clock");
	tcase_add_unchecked_fixture(plain, setup_common, teardown_net);
	tcase_set_timeout(plain, 120);
	tcase_add_test(plain, refused_without_flag);
	suite_add_tcase(s, plain);
	return s;
}

int main(void)
{
	return mp_check_run(clock_suite());
}
