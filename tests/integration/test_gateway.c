/* The HTTP 402 gateway (docs/gateway.md) against the real daemons: m1 with [gateway] in front
 * of an upstream HTTP server run by this test (evhttp on a thread of its own), a test wallet's
 * channel opened over TLS, then plain HTTP requests carrying X-Payment headers: unpaid, paid,
 * replayed, bound to another request, underpaid, a bad payword, upstream 5xx and upstream
 * down (never charged), a free route, and the next TLS Pay after the gateway's. Ends with a
 * redemption of exactly what was charged and the broker's audit. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "b64.h"
#include "gateway_header.h"
#include "harness.h"
#include "harness_gateway.h"
#include "harness_ledger.h"
#include "receipt.h"
#include "../check_run.h"

static struct gw_net g;
static int64_t pending_at_start; /* m1's pending amount at the broker before any test */

static void setup_net(void)
{
	gw_net_up(&g, "GET /quote 5; POST /api/* 3; * /fail* 2; GET /free* 0; GET /slow/* 1");
	pending_at_start = net_pending(&g.net, g.m1_hex);
}

static void teardown_net(void)
{
	gw_net_down(&g);
}

START_TEST(unpaid_request_gets_the_requirements)
{
	struct http_answer a;
	gw_http(&g, "GET", "/quote", "", NULL, &a);
	ck_assert_int_eq(a.status, 402);
	json_t *req = gw_header_json(&a, "Payment-Required");
	ck_assert_msg(req, "no Payment-Required: %s", a.head);
	ck_assert_str_eq(json_str(req, "scheme"), "mpay1");
	ck_assert_str_eq(json_str(req, "merchant"), g.m1_hex);
	ck_assert_int_eq(json_int(req, "price"), 5);
	ck_assert_str_eq(json_str(req, "endpoint"), g.m1_ep);
	ck_assert_str_eq(json_str(req, "path"), "/quote");
	json_decref(req);
	ck_assert_ptr_nonnull(strstr(a.body, "payment required"));
	gw_http(&g, "GET", "/nowhere", "", NULL, &a);
	ck_assert_int_eq(a.status, 404);
	gw_http(&g, "GET", "/free/x?y=1", "", NULL, &a); /* a free route is forwarded as is */
	ck_assert_int_eq(a.status, 200);
	ck_assert_ptr_nonnull(strstr(a.body, "upstream saw /free/x?y=1"));
	ck_assert_ptr_null(strstr(a.head, "X-Payment-Response"));
	net_audit_clean(&g.net);
}
END_TEST

START_TEST(paid_request_is_forwarded_charged_once)
{
	struct tchannel ch;
	gw_open_channel(&g, &ch, 100);
	int hits = gw_upstream_hits(&g.up);
	char *pay = gw_payment(&ch, 5, "GET", "/quote", "");
	struct http_answer a;
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(a.status == 200, "%d %s %s", a.status, a.head, a.body);
	ck_assert_ptr_nonnull(strstr(a.body, "upstream saw /quote"));
	ck_assert_ptr_nonnull(strstr(a.head, "X-Upstream: yes"));
	ck_assert_ptr_nonnull(strstr(a.head, "X-Saw-Payment: no")); /* not passed on */
	json_t *r = gw_header_json(&a, "X-Payment-Response");
	ck_assert_msg(r, "no X-Payment-Response: %s", a.head);
	ck_assert(json_is_true(json_object_get(r, "charged")));
	ck_assert_int_eq(json_int(r, "j"), 5);
	ck_assert_int_eq(json_int(r, "price"), 5);
	ck_assert_int_eq(json_int(r, "credit"), 0);
	json_decref(r);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 5); /* durable before the answer */
	ck_assert_int_eq(gw_upstream_hits(&g.up), hits + 1);

	/* the same header again: refused, the upstream not asked */
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_int_eq(a.status, 402);
	ck_assert_msg(gw_has_error(&a, "STALE_INDEX"), "%s", a.head);
	ck_assert_int_eq(gw_upstream_hits(&g.up), hits + 1);
	free(pay);

	/* 8 units for a price of 3: 5 left as credit, which pays the next one with 0 units more
	 * is impossible (an index must move), so 1 unit + credit 5 covers 3 again */
	pay = gw_payment(&ch, 13, "POST", "/api/v1/x", "{\"q\":1}");
	gw_http(&g, "POST", "/api/v1/x", "{\"q\":1}", pay, &a);
	ck_assert_msg(a.status == 200, "%d %s", a.status, a.body);
	ck_assert_ptr_nonnull(strstr(a.body, "body={\"q\":1}"));
	r = gw_header_json(&a, "X-Payment-Response");
	ck_assert_int_eq(json_int(r, "credit"), 5);
	json_decref(r);
	free(pay);
	pay = gw_payment(&ch, 14, "POST", "/api/v1/x", "{\"q\":2}");
	gw_http(&g, "POST", "/api/v1/x", "{\"q\":2}", pay, &a);
	ck_assert_int_eq(a.status, 200);
	r = gw_header_json(&a, "X-Payment-Response");
	ck_assert_int_eq(json_int(r, "credit"), 3);
	json_decref(r);
	free(pay);

	/* the wallet's next Pay over TLS continues the chain */
	struct wire m;
	ck_assert(wire_connect(&m, g.m1_ep, g.ca, NULL, NULL));
	MpEnvelope *ack = tchannel_pay(&ch, &m, 15, (const uint8_t *)"\x01", 1);
	ck_assert(ack && ack->pay_ack->status->code == MP_ST(UNDERPAID)); /* no such order */
	micropay__v1__envelope__free_unpacked(ack, NULL);
	wire_close(&m);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 15);
	tchannel_free(&ch);
}
END_TEST

START_TEST(refused_payments_change_nothing)
{
	struct tchannel ch;
	gw_open_channel(&g, &ch, 100);
	int hits = gw_upstream_hits(&g.up);
	struct http_answer a;
	/* bound to another path, another body, another method */
	char *pay = gw_payment(&ch, 5, "GET", "/quote?a=1", "");
	gw_http(&g, "GET", "/quote?a=2", "", pay, &a);
	ck_assert_int_eq(a.status, 402);
	ck_assert_msg(gw_has_error(&a, "CONFLICT"), "%s", a.head);
	free(pay);
	pay = gw_payment(&ch, 5, "POST", "/api/x", "one");
	gw_http(&g, "POST", "/api/x", "two", pay, &a);
	ck_assert_msg(gw_has_error(&a, "CONFLICT"), "%s", a.head);
	gw_http(&g, "PUT", "/api/x", "one", pay, &a); /* no PUT route */
	ck_assert_int_eq(a.status, 404);
	free(pay);
	/* 4 units for a price of 5 */
	pay = gw_payment(&ch, 4, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(gw_has_error(&a, "UNDERPAID"), "%s", a.head);
	free(pay);
	/* a payword of another index */
	struct gw_payment p = {.j = 6};
	tchannel_id(&ch, p.channel_id);
	tchannel_word(&ch, 7, p.w);
	ck_assert(gw_request_ref("GET", "/quote", "", 0, p.ref));
	pay = gw_payment_encode(&p);
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(gw_has_error(&a, "BAD_CHAIN"), "%s", a.head);
	free(pay);
	/* an unknown channel, a malformed header, an index beyond n */
	p.channel_id[0] ^= 1;
	pay = gw_payment_encode(&p);
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(gw_has_error(&a, "UNKNOWN_CHANNEL"), "%s", a.head);
	free(pay);
	gw_http(&g, "GET", "/quote", "", "bm90IGpzb24=", &a);
	ck_assert_msg(gw_has_error(&a, "MALFORMED"), "%s", a.head);
	pay = gw_payment(&ch, 101, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(gw_has_error(&a, "OUT_OF_RANGE"), "%s", a.head);
	free(pay);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 0);
	ck_assert_int_eq(gw_upstream_hits(&g.up), hits);
	/* and the index is still good for a request that pays */
	pay = gw_payment(&ch, 5, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_int_eq(a.status, 200);
	free(pay);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 5);
	tchannel_free(&ch);
}
END_TEST

START_TEST(upstream_failure_costs_nothing)
{
	struct tchannel ch;
	gw_open_channel(&g, &ch, 100);
	struct http_answer a;
	/* the upstream answers 503: relayed, not charged */
	char *pay = gw_payment(&ch, 2, "GET", "/fail/now", "");
	gw_http(&g, "GET", "/fail/now", "", pay, &a);
	ck_assert_int_eq(a.status, 503);
	ck_assert_ptr_nonnull(strstr(a.body, "upstream saw /fail/now"));
	json_t *r = gw_header_json(&a, "X-Payment-Response");
	ck_assert(r && json_is_false(json_object_get(r, "charged")));
	ck_assert_int_eq(json_int(r, "j"), 0);
	json_decref(r);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 0);
	/* the same index pays a retry once the upstream is well */
	gw_http(&g, "GET", "/fail/now", "", pay, &a);
	ck_assert_int_eq(a.status, 503);
	free(pay);

	/* the upstream down: 502, not charged; back up: the same index pays */
	uint16_t port = g.up.port;
	gw_upstream_stop(&g.up);
	pay = gw_payment(&ch, 5, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_int_eq(a.status, 502);
	ck_assert_ptr_nonnull(strstr(a.body, "you were not charged"));
	r = gw_header_json(&a, "X-Payment-Response");
	ck_assert(r && json_is_false(json_object_get(r, "charged")));
	json_decref(r);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 0);
	gw_upstream_start(&g.up, port);
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_int_eq(a.status, 200);
	free(pay);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 5);

	/* every request of the tests before, by result (they run in order, in this process) */
	json_t *mt = admin_ok(&g.net, "m1", "metrics", NULL);
	const char *text = json_str(mt, "prometheus");
	static const struct {
		const char *result;
		int n;
	} want[] = {{"paid", 5},	{"free", 1},	 {"required", 1}, {"refused", 8},
		    {"not_charged", 3}, {"no_route", 2}, {"busy", 0}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char line[120];
		snprintf(line, sizeof(line),
			 "micropay_merchant_gateway_requests_total{result=\"%s\"} %d\n",
			 want[i].result, want[i].n);
		ck_assert_msg(strstr(text, line), "no '%s' in the metrics", line);
	}
	ck_assert_ptr_nonnull(strstr(text, "micropay_merchant_gateway_in_flight 0\n"));
	json_decref(mt);

	/* redeemed to the unit: 14 units by the gateway and 1 Pay over TLS on the first channel,
	 * 5 on the second, 5 on this one (one unit is worth 1) */
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - pending_at_start, 15 + 5 + 5);
	net_audit_clean(&g.net);
	tchannel_free(&ch);
}
END_TEST

/* A raw request to the gateway, then (after ms) extra bytes on the same connection, then the
 * whole answer; its status. */
static int http_with_extra(const char *request, int ms, const char *extra, char *out, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(g.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ck_assert(write(fd, request, strlen(request)) == (ssize_t)strlen(request));
	usleep((useconds_t)ms * 1000);
	if (extra)
		ck_assert(write(fd, extra, strlen(extra)) == (ssize_t)strlen(extra));
	size_t got = 0;
	ssize_t r;
	while (got + 1 < len && (r = read(fd, out + got, len - 1 - got)) > 0) {
		got += (size_t)r;
		if (strstr(out, "\r\n\r\n") && strstr(out, "slow answer")) /* keep-alive */
			break;
		out[got] = 0;
	}
	out[got] = 0;
	close(fd);
	int status = 0;
	sscanf(out, "HTTP/1.1 %d", &status);
	return status;
}

START_TEST(held_requests_survive_clients_and_slow_upstreams)
{
	struct tchannel ch;
	gw_open_channel(&g, &ch, 100);
	/* a byte more from the client while its paid request waits for the upstream: answered
	 * normally. (gateway_reply.c pauses reading meanwhile, as Bitcoin Core does against
	 * libevent 2.1's "illegal connection state" exit; on Debian's 2.1.12 this case passed
	 * with the pause taken out too, so it guards the behaviour, not that cause.) */
	char *pay = gw_payment(&ch, 1, "GET", "/slow/600", "");
	char req[1200], out[8192];
	snprintf(req, sizeof(req), "GET /slow/600 HTTP/1.1\r\nHost: gw\r\nX-Payment: %s\r\n\r\n",
		 pay);
	free(pay);
	ck_assert_int_eq(http_with_extra(req, 200, "G", out, sizeof(out)), 200);
	ck_assert_ptr_nonnull(strstr(out, "slow answer to /slow/600"));
	ck_assert_int_eq(gw_m1_last(&g, &ch), 1);
	/* an upstream slower than upstream_timeout (2 s): 504, not charged, the hold released */
	struct http_answer a;
	pay = gw_payment(&ch, 2, "GET", "/slow/3500", "");
	gw_http(&g, "GET", "/slow/3500", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 504);
	json_t *r = gw_header_json(&a, "X-Payment-Response");
	ck_assert(r && json_is_false(json_object_get(r, "charged")));
	json_decref(r);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 1);
	pay = gw_payment(&ch, 2, "GET", "/slow/10", "");
	gw_http(&g, "GET", "/slow/10", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 2);
	/* targets read one way here and another upstream are refused */
	static const char *const ambiguous[] = {
	    "//quote",	      "/quote;x", "/free/..;/quote", "/%2e%2e/quote",
	    "/free/%2Fquote", "/free\\x", "/free/."};
	for (size_t i = 0; i < sizeof(ambiguous) / sizeof(ambiguous[0]); i++) {
		gw_http(&g, "GET", ambiguous[i], "", NULL, &a);
		ck_assert_msg(a.status == 400, "%s: %d", ambiguous[i], a.status);
	}
	gw_http(&g, "GET", "/free/ok/", "", NULL, &a); /* a trailing slash is fine */
	ck_assert_int_eq(a.status, 200);
	sleep(2); /* the upstream's late answer to the cancelled request goes nowhere */
	net_audit_clean(&g.net);
	tchannel_free(&ch);
}
END_TEST

/* micropay_merchant_opens_total of m1: Opens (TLS round trips) it answered. */
static long m1_opens(void)
{
	json_t *mt = admin_ok(&g.net, "m1", "metrics", NULL);
	const char *p = strstr(json_str(mt, "prometheus"), "\nmicropay_merchant_opens_total ");
	ck_assert(p);
	long n = atol(p + strlen("\nmicropay_merchant_opens_total "));
	json_decref(mt);
	return n;
}

/* mpctl -s w1's socket http ARGS: its stdout parsed (exit 0 expected). */
static json_t *mpctl_http(const char *args)
{
	char cmd[1500], sock[700];
	net_path(&g.net, "w1/admin.sock", sock, sizeof(sock));
	snprintf(cmd, sizeof(cmd), "%s/tools/mpctl -s %s http %s", net_build_root(), sock, args);
	FILE *f = popen(cmd, "r");
	ck_assert(f);
	static char out[20000];
	size_t got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	int st = pclose(f);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit %#x: %s", cmd, st, out);
	json_t *j = json_loads(out, 0, NULL);
	ck_assert_msg(j, "not JSON: %s", out);
	return j;
}

static json_t *wallet_http(const char *params, char *err, size_t len)
{
	return admin(&g.net, "w1", "http", params, err, len);
}

START_TEST(wallet_pays_the_gateway)
{
	char chan[MP_HEX_ID_LEN + 1], url[200], params[400], err[600];
	json_t *reg = admin_ok(&g.net, "w1", "register", NULL);
	net_fund(&g.net, json_str(reg, "account_id"), 50);
	json_decref(reg);
	net_wallet_issue(&g.net, "w1", g.m1_hex, 50, 1, chan, sizeof(chan));
	/* the first request opens the channel at m1 (one session), then pays by header */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/quote", g.port);
	snprintf(params, sizeof(params), "GET %s max_price=10", url);
	json_t *r = mpctl_http(params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	ck_assert_ptr_nonnull(strstr(json_str(r, "body"), "upstream saw /quote"));
	json_t *paid = json_object_get(r, "paid");
	ck_assert_str_eq(json_str(paid, "channel_id"), chan);
	ck_assert_int_eq(json_int(paid, "j"), 5);
	ck_assert_int_eq(json_int(paid, "units"), 5);
	ck_assert_int_eq(json_int(paid, "price"), 5);
	json_decref(r);
	/* the next ones pay with the header only: no Open */
	long opens = m1_opens();
	snprintf(params, sizeof(params),
		 "{\"url\":\"http://127.0.0.1:%u/api/v2\",\"method\":\"POST\",\"body\":\"{}\"}",
		 g.port);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	ck_assert_ptr_nonnull(strstr(json_str(r, "body"), "body={}"));
	ck_assert_int_eq(json_int(json_object_get(r, "paid"), "j"), 8);
	json_decref(r);
	ck_assert_int_eq(m1_opens(), opens);
	/* above max_price: refused before anything is spent */
	snprintf(params, sizeof(params), "{\"url\":\"%s\",\"max_price\":2}", url);
	ck_assert_ptr_null(wallet_http(params, err, sizeof(err)));
	ck_assert_msg(strstr(err, "above max_price"), "%s", err);
	/* a free path: nothing paid */
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/free/y\"}", g.port);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert(json_is_null(json_object_get(r, "paid")));
	json_decref(r);

	/* the upstream down: not charged; the index stays in flight ... */
	uint16_t port = g.up.port;
	gw_upstream_stop(&g.up);
	snprintf(params, sizeof(params), "{\"url\":\"%s\"}", url);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 502);
	ck_assert(json_is_true(json_object_get(r, "not_charged")));
	json_decref(r);
	gw_upstream_start(&g.up, port);
	/* ... and the next request resolves it in a session (resent over TLS: the merchant keeps
	 * its 5 units as credit), then pays 1 unit with that credit */
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	paid = json_object_get(r, "paid");
	ck_assert_int_eq(json_int(paid, "j"), 14);
	ck_assert_int_eq(json_int(paid, "units"), 1);
	ck_assert_int_eq(json_int(paid, "credit"), 1);
	json_decref(r);
	ck_assert_int_eq(m1_opens(), opens + 1);

	/* 14 units spent by the wallet, redeemed by m1 to the unit, with everything before */
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - pending_at_start, 15 + 5 + 5 + 14);
	net_audit_clean(&g.net);
}
END_TEST

/* curl -x the proxy URL: status, head and body into out. */
static int curl_via(uint16_t proxy, const char *url, char *out, size_t len)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "curl -s -D - -x http://127.0.0.1:%u '%s'", proxy, url);
	FILE *f = popen(cmd, "r");
	ck_assert(f);
	size_t got = fread(out, 1, len - 1, f);
	out[got] = 0;
	ck_assert_msg(pclose(f) == 0, "%s failed: %s", cmd, out);
	int status = 0;
	sscanf(out, "HTTP/1.1 %d", &status);
	return status;
}

static int64_t host_spent(const char *host)
{
	json_t *s = admin_ok(&g.net, "w1", "http.spending", NULL);
	json_t *v;
	size_t i;
	int64_t spent = 0;
	json_array_foreach(json_object_get(s, "hosts"), i,
			   v) if (!strcmp(json_str(v, "host"), host)) spent = json_int(v, "spent");
	json_decref(s);
	return spent;
}

START_TEST(proxy_pays_for_curl_within_its_budget)
{
	char host[64], settings[200], url[200], out[20000];
	snprintf(host, sizeof(host), "127.0.0.1:%u", g.port);
	int64_t before = host_spent(host); /* what wallet_pays_the_gateway paid */
	ck_assert_int_eq(before, 5 + 3 + 5);
	uint16_t proxy = gw_free_port();
	snprintf(settings, sizeof(settings), "listen = 127.0.0.1:%u\nhost_budget = %lld\n", proxy,
		 (long long)before + 12);
	net_restart_with(&g.net, "w1", "proxy", settings);
	snprintf(url, sizeof(url), "http://%s/quote", host);
	for (int i = 0; i < 2; i++) { /* 2 x 5 of the 12 left */
		ck_assert_int_eq(curl_via(proxy, url, out, sizeof(out)), 200);
		ck_assert_ptr_nonnull(strstr(out, "upstream saw /quote"));
		ck_assert_msg(strstr(out, "X-Micropay-Paid: 5 EUR"), "%s", out);
	}
	ck_assert_int_eq(host_spent(host), before + 10);
	/* 2 left, the price is 5: refused, nothing paid */
	ck_assert_int_eq(curl_via(proxy, url, out, sizeof(out)), 402);
	ck_assert_msg(strstr(out, "above max_price 2") && strstr(out, "of a budget of"), "%s", out);
	ck_assert_int_eq(host_spent(host), before + 10);
	/* one request priced 1 (1 left), then two at once, each priced 1, with two channels to pay
	 * with: the first sets the 1 aside (what is left, as the proxy does not know a price
	 * before asking), so the second is refused: the budget is not exceeded, whatever their
	 * order */
	json_t *reg = admin_ok(&g.net, "w1", "register", NULL);
	net_fund(&g.net, json_str(reg, "account_id"), 10);
	json_decref(reg);
	char second[MP_HEX_ID_LEN + 1], cmd[700];
	net_wallet_issue(&g.net, "w1", g.m1_hex, 10, 1, second, sizeof(second));
	snprintf(url, sizeof(url), "http://%s/slow/10", host);
	ck_assert_int_eq(curl_via(proxy, url, out, sizeof(out)), 200);
	snprintf(cmd, sizeof(cmd),
		 "for i in 1 2; do curl -s -o /dev/null -w '%%{http_code}\\n' -x "
		 "http://127.0.0.1:%u http://%s/slow/1000 & done; wait",
		 proxy, host);
	FILE *f = popen(cmd, "r");
	size_t got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	pclose(f);
	ck_assert_msg(strstr(out, "200\n") && strstr(out, "402\n"), "two at once: %s", out);
	ck_assert_int_eq(host_spent(host), before + 12); /* the whole budget, not more */
	/* a free route: nothing paid, no budget used */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/free/z", g.port);
	ck_assert_int_eq(curl_via(proxy, url, out, sizeof(out)), 200);
	ck_assert_ptr_null(strstr(out, "X-Micropay-Paid"));
	/* https (CONNECT) through the proxy is not offered: 501 to the CONNECT */
	snprintf(cmd, sizeof(cmd),
		 "curl -s -o /dev/null -w '%%{http_connect}' -x http://127.0.0.1:%u "
		 "https://127.0.0.1:%u/quote",
		 proxy, g.port);
	f = popen(cmd, "r");
	got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	pclose(f); /* curl fails: the tunnel was refused */
	ck_assert_msg(strcmp(out, "501") == 0, "CONNECT through the proxy: '%s'", out);
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	/* redeemed to the unit: 15, 5 and 5 on the first tests' channels, 2 on the held test's,
	 * and w1's channel at index 23: 14 by wallet_pays_the_gateway, then 4 units (its credit
	 * of 1 paid the rest) and 5 through the proxy; 1 + 1 for /slow/ through the proxy */
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - pending_at_start, 15 + 5 + 5 + 2 + 23 + 2);
	net_audit_clean(&g.net);
}
END_TEST

/* The X-Payment-Response's receipt (base64), decoded; NULL when there is none. */
static MpSigned *response_statement(json_t *resp, const char *key)
{
	const char *b64 = json_string_value(json_object_get(resp, key));
	size_t len = 0;
	uint8_t *raw = b64 ? mp_b64_decode(b64, 4096, &len) : NULL;
	MpSigned *s = raw ? mp_stmt_decode(raw, len) : NULL;
	free(raw);
	return s;
}

/* A ReceiptReq over TLS for (channel, index): the Receipt's Signed bytes (malloc'd). */
static uint8_t *receipt_over_tls(const struct tchannel *ch, uint32_t index, size_t *len)
{
	uint8_t id[MP_ID_LEN], w[MP_HASH_LEN];
	tchannel_id(ch, id);
	tchannel_word(ch, index, w);
	struct wire m;
	ck_assert(wire_connect(&m, g.m1_ep, g.ca, NULL, NULL));
	Micropay__V1__ReceiptReq rq = MICROPAY__V1__RECEIPT_REQ__INIT;
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	rq.index = index;
	rq.w = (ProtobufCBinaryData){MP_HASH_LEN, w};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RECEIPT_REQ);
	env.receipt_req = &rq;
	MpEnvelope *e = wire_call(&m, &env);
	ck_assert(e && e->body_case == MP_BODY(RECEIPT_RESP));
	ck_assert_int_eq(e->receipt_resp->status->code, MP_ST(OK));
	uint8_t *bytes = mp_stmt_encode(e->receipt_resp->receipt, len);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&m);
	return bytes;
}

START_TEST(receipt_on_request_comes_with_the_answer)
{
	char pk_hex[80], chan[MP_HEX_ID_LEN + 1], params[600], ref_hex[2 * GW_REF_LEN + 1];
	uint8_t broker_pk[MP_PK_LEN], id[MP_ID_LEN];
	net_read(&g.net, "broker", "broker_pk", pk_hex, sizeof(pk_hex));
	hex_to_bytes(pk_hex, broker_pk, MP_PK_LEN);
	struct tchannel ch;
	gw_open_channel(&g, &ch, 40);
	tchannel_id(&ch, id);
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL)); /* what earlier tests paid */
	int64_t pending = net_pending(&g.net, g.m1_hex);

	/* receipt: true in X-Payment: the Receipt and the MerchantCert in X-Payment-Response */
	struct gw_payment p = {.j = 5, .receipt = true};
	memcpy(p.channel_id, id, MP_ID_LEN);
	tchannel_word(&ch, 5, p.w);
	ck_assert(gw_request_ref("GET", "/quote?r=1", "", 0, p.ref));
	char *pay = gw_payment_encode(&p);
	struct http_answer a;
	gw_http(&g, "GET", "/quote?r=1", "", pay, &a);
	free(pay);
	ck_assert_msg(a.status == 200, "%d %s", a.status, a.head);
	json_t *r = gw_header_json(&a, "X-Payment-Response");
	ck_assert(r && json_is_true(json_object_get(r, "charged")));
	MpSigned *receipt = response_statement(r, "receipt");
	MpSigned *cert = response_statement(r, "merchant_cert");
	ck_assert_msg(receipt && cert, "no receipt in %s", a.head);
	struct mp_receipt rc;
	const char *bad = mp_receipt_verify(receipt, cert, broker_pk, &rc);
	ck_assert_msg(bad == NULL, "%s", bad);
	ck_assert_mem_eq(rc.channel_id, id, MP_ID_LEN);
	ck_assert_mem_eq(rc.merchant_id, g.m1, MP_ID_LEN);
	ck_assert_int_eq(rc.seg_seq, 0);
	ck_assert_int_eq(rc.index, 5);
	ck_assert_int_eq(rc.order_ref_len, GW_REF_LEN); /* the request it paid for */
	ck_assert_mem_eq(rc.order_ref, p.ref, GW_REF_LEN);
	/* byte for byte the Receipt a ReceiptReq over TLS gets for the same payment */
	size_t len = 0, tls_len = 0;
	uint8_t *bytes = mp_stmt_encode(receipt, &len);
	uint8_t *tls = receipt_over_tls(&ch, 5, &tls_len);
	ck_assert_uint_eq(len, tls_len);
	ck_assert_mem_eq(bytes, tls, len);
	free(bytes);
	free(tls);
	mp_stmt_free(receipt);
	mp_stmt_free(cert);
	json_decref(r);

	/* not asked for: none */
	pay = gw_payment(&ch, 10, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 200);
	r = gw_header_json(&a, "X-Payment-Response");
	ck_assert_ptr_null(json_object_get(r, "receipt"));
	ck_assert_ptr_null(json_object_get(r, "receipt_error"));
	json_decref(r);

	/* walletd: receipt=true gives the checked receipt, stored with the channel's others */
	json_t *reg = admin_ok(&g.net, "w1", "register", NULL); /* again: the same account */
	net_fund(&g.net, json_str(reg, "account_id"), 20);
	json_decref(reg);
	net_wallet_issue(&g.net, "w1", g.m1_hex, 20, 1, chan, sizeof(chan));
	snprintf(params, sizeof(params),
		 "{\"url\":\"http://127.0.0.1:%u/quote?w=1\",\"channel_id\":\"%s\","
		 "\"receipt\":true}",
		 g.port, chan);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	json_t *paid = json_object_get(r, "paid"), *got = json_object_get(paid, "receipt");
	ck_assert_msg(got, "no receipt: %s", json_dumps(r, 0));
	ck_assert_str_eq(json_str(got, "channel_id"), chan);
	ck_assert_int_eq(json_int(got, "index"), 5);
	ck_assert_str_eq(json_str(got, "merchant_id"), g.m1_hex);
	uint8_t wref[GW_REF_LEN];
	ck_assert(gw_request_ref("GET", "/quote?w=1", "", 0, wref));
	mp_hex_encode(wref, GW_REF_LEN, ref_hex);
	ck_assert_str_eq(json_str(got, "order_ref"), ref_hex);
	json_decref(r);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", chan);
	r = admin_ok(&g.net, "w1", "receipts", params);
	ck_assert_int_eq(json_array_size(json_object_get(r, "receipts")), 1);
	json_decref(r);

	/* charged exactly 10 + 5 units, redeemed to the unit */
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - pending, 15);
	net_audit_clean(&g.net);
	tchannel_free(&ch);
}
END_TEST

static json_t *w2_http(const char *path, char *err, size_t len)
{
	char params[300];
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u%s\"}", g.port, path);
	return admin(&g.net, "w2", "http", params, err, len);
}

/* A paid GET /quote (price 5) through w2: paid's channel_id (out) and whether it was issued. */
static bool w2_paid_quote(char *channel, size_t len, int64_t j)
{
	char err[600];
	json_t *r = w2_http("/quote", err, sizeof(err));
	ck_assert_msg(r, "w2 http: %s", err);
	ck_assert_int_eq(json_int(r, "status"), 200);
	json_t *paid = json_object_get(r, "paid");
	ck_assert_int_eq(json_int(paid, "j"), j);
	snprintf(channel, len, "%s", json_str(paid, "channel_id"));
	bool issued = json_is_true(json_object_get(paid, "issued"));
	json_decref(r);
	return issued;
}

START_TEST(wallet_issues_a_channel_when_none_can_pay)
{
	char err[600], first[MP_HEX_ID_LEN + 1], chan[MP_HEX_ID_LEN + 1];
	ck_assert_int_eq(net_cmd(&g.net, "wallet", "w2"), 0);
	json_t *reg = admin_ok(&g.net, "w2", "register", NULL);
	net_fund(&g.net, json_str(reg, "account_id"), 100);
	json_decref(reg);
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL)); /* what earlier tests paid */
	int64_t pending = net_pending(&g.net, g.m1_hex);

	/* no channel, auto_issue_budget 0 (the default): refused, nothing issued */
	ck_assert_ptr_null(w2_http("/quote", err, sizeof(err)));
	ck_assert_msg(strstr(err, "auto_issue_budget is 0") && strstr(err, "issue one"), "%s", err);
	json_t *b = admin_ok(&g.net, "w2", "budget", NULL);
	ck_assert_int_eq(json_array_size(json_object_get(b, "channels")), 0);
	json_decref(b);

	/* allowed: a channel of 12 units (auto_issue_channel) issued, opened and paid */
	net_restart_with(&g.net, "w2", "wallet", "auto_issue_budget = 30\nauto_issue_channel = 12");
	ck_assert(w2_paid_quote(first, sizeof(first), 5));
	ck_assert(!w2_paid_quote(chan, sizeof(chan), 10)); /* the same channel, by header */
	ck_assert_str_eq(chan, first);
	/* exhausted (2 units left for a price of 5): a second one issued */
	ck_assert(w2_paid_quote(chan, sizeof(chan), 5));
	ck_assert_str_ne(chan, first);
	ck_assert(!w2_paid_quote(chan, sizeof(chan), 10));
	/* exhausted again, and a third would escrow 36 of a budget of 30: refused */
	ck_assert_ptr_null(w2_http("/quote", err, sizeof(err)));
	ck_assert_msg(strstr(err, "over budget"), "%s", err);
	b = admin_ok(&g.net, "w2", "budget", NULL);
	ck_assert_int_eq(json_int(b, "committed"), 24);
	json_t *rows = json_object_get(b, "channels");
	ck_assert_int_eq(json_array_size(rows), 2);
	char item[80];
	snprintf(item, sizeof(item), "http://127.0.0.1:%u", g.port);
	ck_assert_str_eq(json_str(json_array_get(rows, 0), "item"), item);
	json_decref(b);

	/* 4 requests of 5 paid, redeemed to the unit */
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - pending, 20);
	net_audit_clean(&g.net);
}
END_TEST

START_TEST(https_listener_serves_the_same)
{
	char settings[1500], crt[700], key[700], cmd[1500], out[20000];
	snprintf(settings, sizeof(settings), "tls/m-%s.crt", g.m1_hex);
	net_path(&g.net, settings, crt, sizeof(crt));
	snprintf(settings, sizeof(settings), "tls/m-%s.key", g.m1_hex);
	net_path(&g.net, settings, key, sizeof(key));
	snprintf(settings, sizeof(settings), "tls_cert = %s\ntls_key = %s\n", crt, key);
	net_restart_with(&g.net, "m1", "gateway", settings);
	struct tchannel ch;
	gw_open_channel(&g, &ch, 100);
	/* unpaid over HTTPS (TLS 1.3, the merchant's certificate): 402 with the requirements */
	snprintf(cmd, sizeof(cmd),
		 "curl -s -k --tlsv1.3 -o /dev/null -w '%%{http_code} %%{ssl_verify_result}' "
		 "--cacert %s https://127.0.0.1:%u/quote",
		 g.ca, g.port);
	FILE *f = popen(cmd, "r");
	size_t got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	ck_assert_int_eq(pclose(f), 0);
	ck_assert_msg(strncmp(out, "402", 3) == 0, "%s: %s", cmd, out);
	/* paid over HTTPS */
	char *pay = gw_payment(&ch, 5, "GET", "/quote", "");
	snprintf(cmd, sizeof(cmd), "curl -s -k -D - -H 'X-Payment: %s' https://127.0.0.1:%u/quote",
		 pay, g.port);
	free(pay);
	f = popen(cmd, "r");
	got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	ck_assert_int_eq(pclose(f), 0);
	ck_assert_msg(strstr(out, " 200 ") && strstr(out, "upstream saw /quote"), "%s", out);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 5);
	/* plain HTTP to the HTTPS port gets no HTTP answer */
	snprintf(cmd, sizeof(cmd),
		 "curl -s -m 5 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%u/quote", g.port);
	f = popen(cmd, "r");
	got = fread(out, 1, sizeof(out) - 1, f);
	out[got] = 0;
	pclose(f);
	ck_assert_msg(strcmp(out, "000") == 0, "plain HTTP on the HTTPS port: %s", out);
	net_audit_clean(&g.net);
	tchannel_free(&ch);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("gateway");
	TCase *tc = tcase_create("gateway");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, unpaid_request_gets_the_requirements);
	tcase_add_test(tc, paid_request_is_forwarded_charged_once);
	tcase_add_test(tc, refused_payments_change_nothing);
	tcase_add_test(tc, upstream_failure_costs_nothing);
	tcase_add_test(tc, wallet_pays_the_gateway);
	tcase_add_test(tc, held_requests_survive_clients_and_slow_upstreams);
	tcase_add_test(tc, proxy_pays_for_curl_within_its_budget);
	tcase_add_test(tc, receipt_on_request_comes_with_the_answer);
	tcase_add_test(tc, wallet_issues_a_channel_when_none_can_pay);
	tcase_add_test(tc, https_listener_serves_the_same); /* last: m1's gateway is HTTPS after */
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* the upstream's thread lives in this process: the tests must run in it too */
	setenv("CK_FORK", "no", 1);
	return mp_check_run(suite());
}
