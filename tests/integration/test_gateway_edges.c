/* The HTTP 402 gateway's edges (docs/gateway.md "Charging", "Paying with walletd"): upstream
 * answers that render no service (408, 429) cost nothing, a channel held by one paid request
 * refuses a second one (409) and takes it once released, a SIGTERM lets a held request finish
 * and charge it durably, and walletd refuses a 402 of another broker's merchant. Each test
 * redeems exactly what was charged and ends with the broker's audit. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway_header.h"
#include "harness.h"
#include "harness_gateway.h"
#include "harness_ledger.h"
#include "../check_run.h"

static struct gw_net g;

static void setup_net(void)
{
	gw_net_up(&g, "GET /quote 5; GET /fail* 2; GET /ok* 2; GET /slow/* 1");
}

static void teardown_net(void)
{
	gw_net_down(&g);
}

/* A paid request sent on a connection of its own, its answer read later (read_answer). */
static int send_paid(const char *uri, const char *payment)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(g.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	char req[1500];
	int n =
	    snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nX-Payment: %s\r\n\r\n",
		     uri, payment);
	ck_assert(write(fd, req, (size_t)n) == n);
	return fd;
}

/* A paid GET /slow/800 at index j, left waiting: verified and held by now, the upstream
 * answering about 600 ms later. Its connection, for read_answer. */
static int hold_slow(const struct tchannel *ch, uint32_t j)
{
	char *pay = gw_payment(ch, j, "GET", "/slow/800", "");
	int fd = send_paid("/slow/800", pay);
	free(pay);
	usleep(200 * 1000);
	return fd;
}

/* The whole answer on fd (closed) into *a; its status. */
static int read_answer(int fd, struct http_answer *a)
{
	static char raw[20000];
	size_t got = 0;
	ssize_t r;
	while (got + 1 < sizeof(raw) && (r = read(fd, raw + got, sizeof(raw) - 1 - got)) > 0)
		got += (size_t)r;
	raw[got] = 0;
	close(fd);
	memset(a, 0, sizeof(*a));
	sscanf(raw, "HTTP/1.1 %d", &a->status);
	const char *end = strstr(raw, "\r\n\r\n");
	ck_assert_msg(end, "no answer: %s", raw);
	snprintf(a->head, sizeof(a->head), "%.*s", (int)(end - raw), raw);
	snprintf(a->body, sizeof(a->body), "%s", end + 4);
	return a->status;
}

static bool charged(const struct http_answer *a)
{
	json_t *r = gw_header_json(a, "X-Payment-Response");
	ck_assert_msg(r, "no X-Payment-Response: %s", a->head);
	bool yes = json_is_true(json_object_get(r, "charged"));
	json_decref(r);
	return yes;
}

/* A channel of 20 units opened at m1; m1's pending amount at the broker now. */
static int64_t fresh_channel(struct tchannel *ch)
{
	gw_open_channel(&g, ch, 20);
	return net_pending(&g.net, g.m1_hex);
}

/* m1 redeems; its pending amount at the broker grew by exactly units since before. */
static void redeemed_exactly(int64_t before, int64_t units)
{
	json_decref(admin_ok(&g.net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&g.net, g.m1_hex) - before, units);
	net_audit_clean(&g.net);
}

START_TEST(statuses_that_render_no_service_cost_nothing)
{
	struct tchannel ch;
	int64_t before = fresh_channel(&ch);
	static const char *const uris[] = {"/fail408", "/fail429", "/fail"};
	static const int statuses[] = {408, 429, 503};
	struct http_answer a;
	for (int i = 0; i < 3; i++) {
		char *pay = gw_payment(&ch, 2, "GET", uris[i], "");
		gw_http(&g, "GET", uris[i], "", pay, &a);
		free(pay);
		ck_assert_msg(a.status == statuses[i], "%s: %d", uris[i], a.status);
		ck_assert_msg(!charged(&a), "%s charged", uris[i]);
		ck_assert_int_eq(gw_m1_last(&g, &ch), 0);
	}
	/* the same index pays a request that renders the service */
	char *pay = gw_payment(&ch, 2, "GET", "/ok", "");
	gw_http(&g, "GET", "/ok", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 200);
	ck_assert(charged(&a));
	ck_assert_int_eq(gw_m1_last(&g, &ch), 2);
	redeemed_exactly(before, 2);
	tchannel_free(&ch);
}
END_TEST

START_TEST(agreed_price_bounds_the_charge)
{
	/* X-Payment's price is the most the payment agreed to: a route priced above it refuses */
	struct tchannel ch;
	int64_t before = fresh_channel(&ch);
	struct gw_payment p = {.j = 7, .has_price = true, .price = 4};
	tchannel_id(&ch, p.channel_id);
	tchannel_word(&ch, 7, p.w);
	ck_assert(gw_request_ref("GET", "/quote", "", 0, p.ref));
	char *pay = gw_payment_encode(&p);
	struct http_answer a;
	gw_http(&g, "GET", "/quote", "", pay, &a); /* 7 units cover 5, but 4 was agreed */
	free(pay);
	ck_assert_msg(a.status == 402 && gw_has_error(&a, "UNDERPAID"), "%d %s", a.status, a.head);
	ck_assert_ptr_nonnull(strstr(a.head, "the price is 5 now, above the 4"));
	ck_assert_int_eq(gw_m1_last(&g, &ch), 0);
	p.price = 5;
	pay = gw_payment_encode(&p);
	gw_http(&g, "GET", "/quote", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 200);
	ck_assert(charged(&a));
	redeemed_exactly(before, 7);
	tchannel_free(&ch);
}
END_TEST

START_TEST(held_channel_refuses_a_second_payment)
{
	struct tchannel ch;
	int64_t before = fresh_channel(&ch);
	int held = hold_slow(&ch, 1);
	struct http_answer a;
	char *pay = gw_payment(&ch, 6, "GET", "/quote", "");
	gw_http(&g, "GET", "/quote", "", pay, &a);
	ck_assert_msg(a.status == 409 && gw_has_error(&a, "LIMIT"), "%d %s", a.status, a.head);
	struct http_answer slow;
	ck_assert_int_eq(read_answer(held, &slow), 200);
	ck_assert_ptr_nonnull(strstr(slow.body, "slow answer to /slow/800"));
	ck_assert(charged(&slow));
	ck_assert_int_eq(gw_m1_last(&g, &ch), 1);
	/* released: the refused payment goes through as it was */
	gw_http(&g, "GET", "/quote", "", pay, &a);
	free(pay);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 6);
	redeemed_exactly(before, 6);
	tchannel_free(&ch);
}
END_TEST

START_TEST(sigterm_lets_a_held_request_finish)
{
	struct tchannel ch;
	int64_t before = fresh_channel(&ch);
	int held = hold_slow(&ch, 3);
	net_signal(&g.net, "m1", SIGTERM);
	struct http_answer a;
	ck_assert_int_eq(read_answer(held, &a), 200);
	ck_assert_ptr_nonnull(strstr(a.body, "slow answer to /slow/800"));
	ck_assert(charged(&a));
	ck_assert_int_eq(net_cmd(&g.net, "kill", "m1"), 0); /* waits for the exit */
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "grep -q 'drain: done' '%s/m1/log'", g.net.dir);
	ck_assert_msg(system(cmd) == 0, "m1 did not drain");
	ck_assert_int_eq(net_cmd(&g.net, "start", "m1"), 0);
	ck_assert_int_eq(gw_m1_last(&g, &ch), 3); /* durable before the answer */
	redeemed_exactly(before, 3);
	tchannel_free(&ch);
}
END_TEST

START_TEST(wallet_refuses_a_merchant_of_another_broker)
{
	char params[300], err[600];
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/fake402\"}", g.up.port);
	ck_assert_ptr_null(admin(&g.net, "w1", "http", params, err, sizeof(err)));
	ck_assert_msg(strstr(err, "another broker (unknown broker key): not paying"), "%s", err);
	json_t *s = admin_ok(&g.net, "w1", "http.spending", NULL);
	ck_assert_int_eq(json_array_size(json_object_get(s, "hosts")), 0);
	json_decref(s);
	net_audit_clean(&g.net);
}
END_TEST

/* The raw value of header name in a's head. */
static void header_value(const struct http_answer *a, const char *name, char *out, size_t len)
{
	char key[80];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(a->head, key);
	ck_assert_msg(p, "no %s in %s", name, a->head);
	p += strlen(key);
	snprintf(out, len, "%.*s", (int)strcspn(p, "\r\n"), p);
}

/* The row of host in an http.spending answer (hosts tied on spending come in host order). */
static json_t *host_row(json_t *spending, const char *host)
{
	json_t *hosts = json_object_get(spending, "hosts"), *row;
	size_t i;
	json_array_foreach(hosts, i, row) if (strcmp(json_str(row, "host"), host) == 0) return row;
	ck_abort_msg("no spending row for %s", host);
	return NULL;
}

START_TEST(unknown_charge_counts_against_the_budget)
{
	/* a "gateway" (the upstream, mimicking m1's 402) that answers a paid request without
	 * saying whether it charged: walletd counts the price against that host at once, and the
	 * payment, never forwarded to m1, becomes credit at m1 at the channel's next session */
	struct http_answer a;
	gw_http(&g, "GET", "/quote", "", NULL, &a);
	ck_assert_int_eq(a.status, 402);
	header_value(&a, "Payment-Required", g.up.mimic_required, sizeof(g.up.mimic_required));
	char chan[MP_HEX_ID_LEN + 1], params[300], host[64];
	json_t *reg = admin_ok(&g.net, "w1", "register", NULL);
	net_fund(&g.net, json_str(reg, "account_id"), 20);
	json_decref(reg);
	net_wallet_issue(&g.net, "w1", g.m1_hex, 20, 1, chan, sizeof(chan));
	int64_t before = net_pending(&g.net, g.m1_hex);
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/mimic\"}", g.up.port);
	json_t *r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	ck_assert(json_is_true(json_object_get(r, "charge_unknown")));
	ck_assert(json_is_null(json_object_get(r, "paid")));
	json_decref(r);
	snprintf(host, sizeof(host), "127.0.0.1:%u", g.up.port);
	json_t *sp = admin_ok(&g.net, "w1", "http.spending", NULL);
	json_t *row = host_row(sp, host);
	ck_assert_int_eq(json_int(row, "spent"), 5);
	json_decref(sp);
	/* the real gateway next: the session resolves j=5 at m1 as credit, 1 unit more pays */
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/quote\"}", g.port);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	json_t *paid = json_object_get(r, "paid");
	ck_assert_int_eq(json_int(paid, "j"), 6);
	ck_assert_int_eq(json_int(paid, "units"), 1);
	json_decref(r);
	redeemed_exactly(before, 6);
}
END_TEST

START_TEST(price_changed_after_the_402_is_said)
{
	/* the "gateway" asks 5, then refuses the payment of 5 asking 7 (UNDERPAID): walletd says
	 * the price changed, nothing charged, nothing counted; the units become credit at m1 */
	char params[300], host[64];
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/mimic-raise\"}",
		 g.up.port);
	int64_t before = net_pending(&g.net, g.m1_hex);
	json_t *r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 402);
	ck_assert(json_is_true(json_object_get(r, "not_charged")));
	ck_assert(json_is_true(json_object_get(r, "price_changed")));
	ck_assert_msg(
	    strstr(json_str(r, "payment_error"), "price changed: 5 EUR when asked, 7 now"), "%s",
	    json_str(r, "payment_error"));
	json_decref(r);
	snprintf(host, sizeof(host), "127.0.0.1:%u", g.up.port);
	json_t *sp = admin_ok(&g.net, "w1", "http.spending", NULL);
	json_t *row = host_row(sp, host);
	ck_assert_int_eq(json_int(row, "spent"), 5); /* the earlier unknown charge only */
	json_decref(sp);
	/* the next request at the real gateway resolves it as credit and pays with it */
	snprintf(params, sizeof(params), "{\"url\":\"http://127.0.0.1:%u/quote\"}", g.port);
	r = admin_ok(&g.net, "w1", "http", params);
	ck_assert_int_eq(json_int(r, "status"), 200);
	ck_assert_int_eq(json_int(json_object_get(r, "paid"), "units"), 1);
	json_decref(r);
	redeemed_exactly(before, 5); /* 4 units (with the channel's credit of 1) + 1 */
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("gateway_edges");
	TCase *tc = tcase_create("gateway_edges");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, statuses_that_render_no_service_cost_nothing);
	tcase_add_test(tc, agreed_price_bounds_the_charge);
	tcase_add_test(tc, held_channel_refuses_a_second_payment);
	tcase_add_test(tc, sigterm_lets_a_held_request_finish);
	tcase_add_test(tc, wallet_refuses_a_merchant_of_another_broker);
	tcase_add_test(tc, unknown_charge_counts_against_the_budget);
	tcase_add_test(tc, price_changed_after_the_402_is_said); /* after: uses its 402 */
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* the upstream's thread lives in this process: the tests must run in it too */
	setenv("CK_FORK", "no", 1);
	return mp_check_run(suite());
}
