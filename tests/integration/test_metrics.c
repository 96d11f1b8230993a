/* Metrics against the real daemons (docs/metrics.md): a broker, a merchant and a wallet with
 * their HTTP ports on (MP_METRICS_HTTP=1). Pays and a redeem move the counters by exactly the
 * expected amounts, in the admin `metrics` text and on GET /metrics alike; promtool accepts
 * every daemon's exposition from both; the HTTP port serves /metrics only. */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "../check_run.h"

static struct net net;
static char m1_hex[64], m1_ep[64], account[64];

static void setup_net(void)
{
	setenv("MP_METRICS_HTTP", "1", 1);
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

/* The admin exposition of a daemon (heap). */
static char *admin_text(const char *daemon)
{
	json_t *m = admin_ok(&net, daemon, "metrics", NULL);
	char *text = strdup(json_str(m, "prometheus"));
	json_decref(m);
	return text;
}

/* One HTTP/1.0 exchange with a daemon's metrics port: the whole answer (heap). */
static char *http_get(const char *daemon, const char *request)
{
	char ep[64];
	net_read(&net, daemon, "metrics_endpoint", ep, sizeof(ep));
	int fd = tcp_open(ep);
	ck_assert_int_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	size_t cap = 1 << 20, len = 0;
	char *out = malloc(cap);
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		ck_assert_msg(poll(&p, 1, 5000) == 1, "%s: no HTTP answer within 5 s", daemon);
		ssize_t n = read(fd, out + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		ck_assert(len < cap - 1);
	}
	close(fd);
	out[len] = '\0';
	return out;
}

/* GET /metrics: the body of a 200 answer (heap). */
static char *http_metrics(const char *daemon)
{
	char *answer = http_get(daemon, "GET /metrics HTTP/1.0\r\n\r\n");
	ck_assert_msg(strncmp(answer, "HTTP/1.0 200", 12) == 0 ||
			  strncmp(answer, "HTTP/1.1 200", 12) == 0,
		      "%s: %.80s", daemon, answer);
	ck_assert_msg(strstr(answer, "text/plain; version=0.0.4") != NULL, "%s: content type",
		      daemon);
	char *body = strstr(answer, "\r\n\r\n");
	ck_assert(body != NULL);
	char *out = strdup(body + 4);
	free(answer);
	return out;
}

/* The value of series (name with its labels, exactly as exposed); asserts it is there. */
static double value(const char *text, const char *series)
{
	size_t len = strlen(series);
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line)
		if (strncmp(line, series, len) == 0 && line[len] == ' ')
			return strtod(line + len + 1, NULL);
	fprintf(stderr, "no series %s in:\n%s\n", series, text);
	ck_abort_msg("no series %s (the exposition: stderr)", series);
	return 0;
}

static double admin_value(const char *daemon, const char *series)
{
	char *text = admin_text(daemon);
	double v = value(text, series);
	free(text);
	return v;
}

static void promtool_check(const char *what, const char *text)
{
	char path[] = "/tmp/mp-metrics-XXXXXX", cmd[256];
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	unlink(path);
	if (rc != 0)
		fprintf(stderr, "promtool check metrics refused %s:\n%s\n", what, text);
	ck_assert_msg(rc == 0, "promtool check metrics refused %s (its exposition: stderr)", what);
}

static bool have_promtool(void)
{
	if (system("command -v promtool >/dev/null 2>&1") == 0)
		return true;
	fprintf(stderr, "SKIP promtool checks: promtool is not installed (deploy/install-deps "
			"installs Debian's prometheus package)\n");
	return false;
}

static void pay(const char *channel, unsigned units, uint64_t price, const char *status)
{
	char order[128], params[400];
	net_new_order(&net, "m1", price, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, m1_ep, units, order);
	json_t *r = admin_ok(&net, "w1", "pay", params);
	ck_assert_str_eq(json_str(r, "status"), status);
	json_decref(r);
}

#define OK_ANSWERS	  "micropay_merchant_pay_answers_total{status=\"OK\"}"
#define UNDERPAID_ANSWERS "micropay_merchant_pay_answers_total{status=\"UNDERPAID\"}"
#define LATENCY_COUNT	  "micropay_merchant_pay_latency_seconds_count"
#define LATENCY_INF	  "micropay_merchant_pay_latency_seconds_bucket{le=\"+Inf\"}"
#define BATCH_SUM	  "micropay_merchant_batch_entries_sum"

START_TEST(pays_and_redeem_move_the_counters_by_the_expected_amounts)
{
	enum { N = 6 };
	net_fund(&net, account, 10000);
	char channel[64];
	net_wallet_issue(&net, "w1", m1_hex, 1000, 2, channel, sizeof(channel));
	char *before = admin_text("m1");
	double w_sent = admin_value("w1", "micropay_wallet_pays_sent_total");
	double b_redeems = admin_value("broker", "micropay_broker_redeems_total");
	double b_rtt = admin_value("broker", "micropay_broker_db_round_trip_seconds_count");
	for (int i = 0; i < N; i++)
		pay(channel, 1, 2, "OK");
	pay(channel, 1, 1000, "UNDERPAID");
	char *after = admin_text("m1");
	ck_assert_double_eq(value(after, OK_ANSWERS) - value(before, OK_ANSWERS), N);
	ck_assert_double_eq(value(after, UNDERPAID_ANSWERS) - value(before, UNDERPAID_ANSWERS), 1);
	ck_assert_double_eq(value(after, "micropay_merchant_pays_total{result=\"ok\"}") -
				value(before, "micropay_merchant_pays_total{result=\"ok\"}"),
			    N);
	ck_assert_double_eq(value(after, LATENCY_COUNT) - value(before, LATENCY_COUNT), N + 1);
	ck_assert_double_eq(value(after, LATENCY_INF), value(after, LATENCY_COUNT));
	ck_assert(value(after, "micropay_merchant_pay_latency_seconds_sum") >
		  value(before, "micropay_merchant_pay_latency_seconds_sum"));
	/* Each pay and each order.create is one committed entry at least. */
	ck_assert(value(after, BATCH_SUM) - value(before, BATCH_SUM) >= 2 * (N + 1));
	ck_assert(value(after, "micropay_merchant_batch_commit_seconds_count") >
		  value(before, "micropay_merchant_batch_commit_seconds_count"));
	ck_assert_double_eq(value(after, "micropay_merchant_unredeemed_amount") -
				value(before, "micropay_merchant_unredeemed_amount"),
			    2 * (N + 1));
	ck_assert_double_eq(admin_value("w1", "micropay_wallet_pays_sent_total") - w_sent, N + 1);
	/* The HTTP port shows the same figures. */
	char *scraped = http_metrics("m1");
	ck_assert_double_eq(value(scraped, OK_ANSWERS), value(after, OK_ANSWERS));
	ck_assert_double_eq(value(scraped, LATENCY_COUNT), value(after, LATENCY_COUNT));
	free(scraped);

	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_double_eq(admin_value("broker", "micropay_broker_redeems_total") - b_redeems, 1);
	ck_assert(admin_value("broker", "micropay_broker_db_round_trip_seconds_count") > b_rtt);
	ck_assert_double_eq(admin_value("m1", "micropay_merchant_unredeemed_amount"), 0);
	/* The merchant learnt the broker's time from RegisterMerchantResp and RedeemResp, the
	 * wallet from RegisterAccountResp and IssueResp: both run on this machine's clock. */
	ck_assert_double_eq(admin_value("m1", "micropay_merchant_broker_clock_known"), 1);
	ck_assert(admin_value("m1", "micropay_merchant_broker_clock_offset_seconds") <= 2);
	ck_assert(admin_value("m1", "micropay_merchant_broker_clock_offset_seconds") >= -2);
	ck_assert_double_eq(admin_value("w1", "micropay_wallet_broker_clock_known"), 1);
	/* Certificates: the TLS ones expire in the future, the MerchantCert too. */
	double now = (double)time(NULL);
	ck_assert(admin_value("broker", "micropay_broker_tls_cert_expiry_time") > now);
	ck_assert(admin_value("m1", "micropay_merchant_tls_cert_expiry_time") > now);
	ck_assert(admin_value("m1", "micropay_merchant_merchant_cert_expiry_time") > now);
	free(before);
	free(after);
	net_audit_clean(&net);
}
END_TEST

START_TEST(promtool_accepts_every_exposition_admin_and_http)
{
	if (!have_promtool())
		return;
	const char *daemons[] = {"broker", "m1", "w1"};
	for (int i = 0; i < 3; i++) {
		char what[64];
		char *text = admin_text(daemons[i]);
		snprintf(what, sizeof(what), "%s admin metrics", daemons[i]);
		promtool_check(what, text);
		free(text);
		text = http_metrics(daemons[i]);
		snprintf(what, sizeof(what), "%s GET /metrics", daemons[i]);
		promtool_check(what, text);
		free(text);
	}
}
END_TEST

START_TEST(http_port_serves_get_metrics_only)
{
	char *answer = http_get("broker", "GET /other HTTP/1.0\r\n\r\n");
	ck_assert_msg(strstr(answer, " 404 ") != NULL, "%.80s", answer);
	free(answer);
	/* evhttp answers a method it is not allowed to serve 501 Not Implemented. */
	answer = http_get("m1", "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
	ck_assert_msg(strstr(answer, " 501 ") != NULL, "%.80s", answer);
	free(answer);
	/* Still serving afterwards. */
	char *body = http_metrics("broker");
	ck_assert(strstr(body, "# TYPE micropay_broker_redeems_total counter\n") != NULL);
	free(body);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, pays_and_redeem_move_the_counters_by_the_expected_amounts);
	tcase_add_test(tc, promtool_accepts_every_exposition_admin_and_http);
	tcase_add_test(tc, http_port_serves_get_metrics_only);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
