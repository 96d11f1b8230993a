/* merchantd's redeemer against the real daemons: Redeems the broker refuses with LIMIT are
 * split or redeemed in steps, a stalled or restarted broker only delays redemption, the broker's
 * host name is resolved without blocking merchantd, and the unredeemed amount is exported.
 * The broker takes at most 3 claims and 1000 hashes per Redeem; merchantd assumes its defaults
 * (10,000 and 2^28), so it must learn from LIMIT. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "harness_merchant.h"
#include "harness_redeem.h"
#include "../check_run.h"

#define BROKER_MAX_CLAIMS "3"
#define BROKER_BUDGET	  "1000"

static struct net net;
static char m1_hex[64];

static void setup_net(void)
{
	setenv("MP_MAX_CLAIMS", BROKER_MAX_CLAIMS, 1);
	setenv("MP_HASH_BUDGET", BROKER_BUDGET, 1);
	setenv("MP_BAD_CHAIN_BURST", BROKER_BUDGET, 1); /* hashes a merchant may waste ... */
	setenv("MP_BAD_CHAIN_RATE", "100", 1);		/* ... and per second after that */
	setenv("MP_BROKER_TIMEOUT", "2", 1);   /* merchantd: connect and answer deadlines */
	setenv("MP_REDEEM_RETRY_MAX", "2", 1); /* merchantd: longest wait between retries */
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
}

static void teardown_net(void)
{
	net_down(&net);
}

struct credit_goal {
	const char *mid_hex;
	int64_t pending;
};

static bool credited(void *arg)
{
	const struct credit_goal *g = arg;
	return broker_pending(&net, g->mid_hex) == g->pending;
}

/* merchantd has taken in the broker's answer: nothing is left unredeemed. */
static bool m1_all_redeemed(void *arg)
{
	return metric(&net, "m1", "micropay_merchant_unredeemed_amount") == 0;
}

static void redeem_ok(const char *name)
{
	json_t *r = admin_ok(&net, name, "redeem", NULL);
	json_decref(r);
}

START_TEST(claims_above_the_brokers_limit_are_split_and_all_credited)
{
	enum { CHANNELS = 20 };
	struct twallet tw[CHANNELS];
	struct tchannel ch[CHANNELS];
	static const uint32_t pays[] = {3, 7};
	int64_t before = broker_pending(&net, m1_hex);
	int64_t limits = metric(&net, "m1", "micropay_merchant_redeem_limits_total");
	int64_t splits = metric(&net, "m1", "micropay_merchant_redeem_splits_total");
	int64_t unredeemed = metric(&net, "m1", "micropay_merchant_unredeemed_amount");
	for (int i = 0; i < CHANNELS; i++)
		paid_channel(&net, "m1", &tw[i], &ch[i], 100, 2, pays, 2);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 CHANNELS * 7 * 2);

	redeem_ok("m1");
	ck_assert_int_eq(broker_pending(&net, m1_hex) - before, CHANNELS * 7 * 2);
	for (int i = 0; i < CHANNELS; i++)
		ck_assert_int_eq(merchant_redeemed_end(&net, "m1", &ch[i]), 7);
	/* 20 claims in one Redeem: LIMIT, halves of 10, then of 5, until 3 or fewer pass. */
	ck_assert_int_gt(metric(&net, "m1", "micropay_merchant_redeem_limits_total"), limits);
	ck_assert_int_gt(metric(&net, "m1", "micropay_merchant_redeem_splits_total"), splits);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount"), 0);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_oldest_age_seconds"), 0);
	ck_assert(log_contains(&net, "m1", "LIMIT for 20 claims"));
	broker_audit_clean(&net);
	for (int i = 0; i < CHANNELS; i++) {
		tchannel_free(&ch[i]);
		mp_key_free(&tw[i].account);
	}
}
END_TEST

START_TEST(range_above_the_hash_budget_is_redeemed_in_steps)
{
	/* 4500 units unredeemed, the broker hashes at most 1000 per Redeem. The Pays jump (2000,
	 * 4000, 4500), so most step points are not accepted words: merchantd derives them. */
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {2000, 4000, 4500};
	int64_t before = broker_pending(&net, m1_hex);
	int64_t steps = metric(&net, "m1", "micropay_merchant_redeem_steps_total");
	int64_t unredeemed = metric(&net, "m1", "micropay_merchant_unredeemed_amount");
	paid_channel(&net, "m1", &tw, &ch, 10000, 3, pays, 3);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 4500 * 3);

	redeem_ok("m1");
	ck_assert_int_eq(broker_pending(&net, m1_hex) - before, 4500 * 3);
	ck_assert_int_eq(merchant_redeemed_end(&net, "m1", &ch), 4500);
	/* At least 4500 / 1000 steps. */
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_redeem_steps_total") - steps, 5);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount"), 0);
	ck_assert(log_contains(&net, "m1", "LIMIT for 1 claims"));
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(a_stalled_broker_delays_redemption_and_never_stops_it)
{
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {10};
	int64_t unredeemed = metric(&net, "m1", "micropay_merchant_unredeemed_amount");
	paid_channel(&net, "m1", &tw, &ch, 100, 5, pays, 1);
	struct credit_goal goal = {m1_hex, broker_pending(&net, m1_hex) + 50};
	char pid_before[32], pid_after[32];
	net_read(&net, "m1", "pid", pid_before, sizeof(pid_before));
	sleep(1); /* the oldest unredeemed payment is a second old */
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 50);
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_unredeemed_oldest_age_seconds"), 1);
	int64_t timeouts = metric(&net, "m1", "micropay_merchant_broker_answer_timeouts_total");

	net_signal(&net, "broker", SIGSTOP);
	char err[512];
	uint64_t start = now_ms();
	json_t *r = admin(&net, "m1", "redeem", NULL, err, sizeof(err));
	uint64_t took = now_ms() - start;
	ck_assert_msg(r == NULL, "redeem succeeded with the broker stopped");
	ck_assert_msg(strstr(err, "no answer from the broker") != NULL, "redeem failed: %s", err);
	ck_assert_msg(took < 5000, "the answer deadline is 2 s, the redeem took %llu ms",
		      (unsigned long long)took);
	sleep(5); /* reconnection attempts: the TLS handshake cannot finish either */
	ck_assert(log_contains(&net, "m1", "no answer within 2 s"));
	ck_assert(log_contains(&net, "m1", "not connected within 2 s"));
	ck_assert_int_gt(metric(&net, "m1", "micropay_merchant_broker_answer_timeouts_total"),
			 timeouts);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 50);

	net_signal(&net, "broker", SIGCONT);
	/* No admin call: the retry timer completes it. */
	ck_assert_msg(wait_for(credited, &goal, 30000), "not credited after the broker resumed");
	/* The broker commits before merchantd has read its answer: wait for that too. */
	ck_assert_msg(wait_for(m1_all_redeemed, NULL, 5000),
		      "merchantd still counts %lld unredeemed",
		      (long long)metric(&net, "m1", "micropay_merchant_unredeemed_amount"));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_oldest_age_seconds"), 0);
	net_read(&net, "m1", "pid", pid_after, sizeof(pid_after));
	ck_assert_str_eq(pid_before, pid_after);
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(a_killed_and_restarted_broker_delays_redemption_and_never_stops_it)
{
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {4, 9};
	int64_t unredeemed = metric(&net, "m1", "micropay_merchant_unredeemed_amount");
	paid_channel(&net, "m1", &tw, &ch, 100, 7, pays, 2);
	struct credit_goal goal = {m1_hex, broker_pending(&net, m1_hex) + 63};
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 63);
	int64_t failed = metric(&net, "m1", "micropay_merchant_redeem_rounds_failed_total");

	/* KILL: a crash, not a drain (brokerd under ASan also reports the connections still
	 * open at a TERM as leaked at exit). */
	ck_assert_int_eq(net_cmd(&net, "kill", "broker KILL"), 0);
	char err[512];
	json_t *r = admin(&net, "m1", "redeem", NULL, err, sizeof(err));
	ck_assert_msg(r == NULL, "redeem succeeded with the broker down");
	ck_assert_msg(strstr(err, "broker unreachable") != NULL, "redeem failed: %s", err);
	sleep(3); /* a few attempts while it is down */
	ck_assert_int_gt(metric(&net, "m1", "micropay_merchant_redeem_rounds_failed_total"),
			 failed);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_unredeemed_amount") - unredeemed,
			 63);

	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	ck_assert_msg(wait_for(credited, &goal, 30000), "not credited after the broker restarted");
	/* The broker commits before merchantd has read its answer: wait for that too. */
	ck_assert_msg(wait_for(m1_all_redeemed, NULL, 5000),
		      "merchantd still counts %lld unredeemed",
		      (long long)metric(&net, "m1", "micropay_merchant_unredeemed_amount"));
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(the_brokers_host_name_is_resolved_without_blocking)
{
	/* m2 knows the broker as "broker.test", which only a DNS server of this test resolves,
	 * after 1.5 s. Meanwhile m2 answers its admin socket at once. */
	char sock[700], resolv[700];
	net_path(&net, "m2/admin.sock", sock, sizeof(sock));
	net_path(&net, "resolv.conf", resolv, sizeof(resolv));
	struct slow_dns *dns = slow_dns_start("broker.test", 1500, sock);
	FILE *f = fopen(resolv, "w");
	ck_assert(f != NULL);
	fprintf(f, "nameserver 127.0.0.1:%u\n", slow_dns_port(dns));
	fclose(f);
	setenv("MP_BROKER_HOST", "broker.test", 1);
	setenv("MP_RESOLV_CONF", resolv, 1);
	int rc = net_cmd(&net, "merchant", "m2"); /* returns once m2 is registered */
	unsetenv("MP_BROKER_HOST");
	unsetenv("MP_RESOLV_CONF");
	unsigned queries;
	int64_t probe_ms;
	slow_dns_stop(dns, &queries, &probe_ms);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_ge(queries, 1);
	ck_assert_msg(probe_ms >= 0 && probe_ms < 500,
		      "m2's admin socket took %lld ms to answer while the name was resolved",
		      (long long)probe_ms);

	char m2_hex[64];
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {5};
	paid_channel(&net, "m2", &tw, &ch, 10, 4, pays, 1);
	int64_t before = broker_pending(&net, m2_hex);
	redeem_ok("m2");
	ck_assert_int_eq(broker_pending(&net, m2_hex) - before, 20);
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(a_limit_that_asks_to_retry_later_keeps_the_redeem)
{
	/* A junk claim (as m1, signed with its key) spends m1's budget for hashes wasted on
	 * BAD_CHAIN: the broker answers merchantd's honest Redeem LIMIT "retry later" until the
	 * budget refills (100 hashes a second). merchantd keeps that Redeem and sends the same
	 * bytes again after its backoff: nothing abandoned, nothing split. */
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {600};
	paid_channel(&net, "m1", &tw, &ch, 10000, 1, pays, 1);
	struct credit_goal goal = {m1_hex, broker_pending(&net, m1_hex) + 600};
	int64_t splits = metric(&net, "m1", "micropay_merchant_redeem_splits_total");
	int64_t limits = metric(&net, "m1", "micropay_merchant_redeem_limits_total");

	char ca[700], broker_ep[128];
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	struct tmerchant tm;
	tmerchant_load(&tm, &net, "m1");
	struct tclaim junk = {.index = 900};
	tchannel_id(&ch, junk.channel_id);
	ck_assert(mp_random_bytes(junk.w, MP_HASH_LEN));
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpSigned *stmt = tmerchant_redeem(&tm, redeem_id, &junk, 1);
	struct wire w;
	tmerchant_connect(&tm, &w, broker_ep, ca);
	MpEnvelope *resp = redeem_call(&w, stmt);
	ck_assert_int_eq(resp->redeem_resp->results[0]->status, MP_ST(BAD_CHAIN));
	micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&w);
	mp_stmt_free(stmt);
	tmerchant_free(&tm);

	char err[512];
	json_t *r = admin(&net, "m1", "redeem", NULL, err, sizeof(err));
	ck_assert_msg(r == NULL, "redeem succeeded with m1's budget spent");
	ck_assert_msg(strstr(err, "retry later") != NULL, "redeem failed: %s", err);
	ck_assert_msg(wait_for(credited, &goal, 30000), "not credited after the budget refilled");
	ck_assert_int_gt(metric(&net, "m1", "micropay_merchant_redeem_limits_total"), limits);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_redeem_splits_total"), splits);
	ck_assert_int_eq(merchant_redeemed_end(&net, "m1", &ch), 600);
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

/* merchantd started with m1's config where `key = value` replaces the line `key = ...`. */
static int run_merchant_with(const char *key, const char *value, char *out, size_t len)
{
	char cfg[700], bad[700], cmd[2400];
	net_path(&net, "m1/config.ini", cfg, sizeof(cfg));
	net_path(&net, "bad-merchant.ini", bad, sizeof(bad));
	snprintf(cmd, sizeof(cmd), "sed 's|^%s = .*|%s = %s|' '%s' > '%s'", key, key, value, cfg,
		 bad);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "timeout 10 '%s/merchantd/merchantd' -c '%s' 2>&1",
		 getenv("MP_BUILD"), bad);
	FILE *p = popen(cmd, "r");
	ck_assert(p != NULL);
	size_t got = fread(out, 1, len - 1, p);
	out[got] = '\0';
	int rc = pclose(p);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int64_t lag(void)
{
	return metric(&net, "m1", "micropay_merchant_unredeemed_oldest_age_seconds");
}

/* The redemption lag is kept per channel in memory (merchantd/redeem_lag.h): read from the
 * journal at start, reset by a credit, and started again by the first Pay after it (not the
 * time of the Pays the credit covered). */
START_TEST(redemption_lag_survives_a_restart_and_restarts_after_a_credit)
{
	struct twallet tw;
	struct tchannel ch;
	static const uint32_t pays[] = {10};
	redeem_ok("m1"); /* nothing left from the tests before */
	ck_assert_int_eq(lag(), 0);
	paid_channel(&net, "m1", &tw, &ch, 100, 1, pays, 1);
	sleep(2);
	ck_assert_int_ge(lag(), 2);
	net_restart_with(&net, "m1", "merchant", "");
	ck_assert_int_ge(lag(), 2); /* from the journal */
	redeem_ok("m1");
	ck_assert_int_eq(lag(), 0);
	static const uint32_t more[] = {20};
	pay_channel_underpaid(&net, "m1", &ch, more, 1);
	ck_assert_int_le(lag(), 1); /* this Pay's time, not the credited one's */
	sleep(2);
	ck_assert_int_ge(lag(), 2);
	redeem_ok("m1");
	ck_assert_int_eq(lag(), 0);
	ck_assert_int_eq(merchant_redeemed_end(&net, "m1", &ch), 20);
	broker_audit_clean(&net);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

START_TEST(broker_and_redeem_settings_out_of_range_are_refused)
{
	char out[4096];
	ck_assert_int_eq(run_merchant_with("answer_timeout", "0", out, sizeof(out)), 1);
	ck_assert_msg(
	    strstr(out, "[broker] answer_timeout = 0 is out of range: expected 1 .. 86400"),
	    "got: %s", out);
	ck_assert_int_eq(run_merchant_with("connect_timeout", "86400", out, sizeof(out)), 1);
	ck_assert_msg(
	    strstr(out, "[broker] connect_timeout = 86400 is out of range: expected 1 .. 3600"),
	    "got: %s", out);
	ck_assert_int_eq(run_merchant_with("retry_max", "0", out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "[redeem] retry_max = 0 is out of range: expected 1 .. 86400"),
		      "got: %s", out);
	ck_assert_int_eq(run_merchant_with("broker", "no-port", out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "[merchant] broker must be host:port, not 'no-port'"), "got: %s",
		      out);
}
END_TEST

Suite *redeemer_suite(void);
Suite *redeemer_suite(void)
{
	Suite *s = suite_create("redeemer");
	TCase *tc = tcase_create("redeemer");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, claims_above_the_brokers_limit_are_split_and_all_credited);
	tcase_add_test(tc, range_above_the_hash_budget_is_redeemed_in_steps);
	tcase_add_test(tc, a_stalled_broker_delays_redemption_and_never_stops_it);
	tcase_add_test(tc, a_killed_and_restarted_broker_delays_redemption_and_never_stops_it);
	tcase_add_test(tc, a_limit_that_asks_to_retry_later_keeps_the_redeem);
	tcase_add_test(tc, redemption_lag_survives_a_restart_and_restarts_after_a_credit);
	tcase_add_test(tc, the_brokers_host_name_is_resolved_without_blocking);
	tcase_add_test(tc, broker_and_redeem_settings_out_of_range_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(redeemer_suite());
}
