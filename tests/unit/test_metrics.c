/* The metrics registry and its Prometheus text exposition (common/metrics.c): escaping,
 * HELP/TYPE once per family, label rendering, histogram cumulativity, refused registrations,
 * and promtool's verdict on a full exposition when promtool is installed. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_http.h"
#include "../check_run.h"

static char *escaped(const char *text, bool label)
{
	struct evbuffer *b = evbuffer_new();
	ck_assert(mp_metrics_escape(b, text, label));
	size_t len = evbuffer_get_length(b);
	char *out = calloc(1, len + 1);
	evbuffer_remove(b, out, len);
	evbuffer_free(b);
	return out;
}

START_TEST(escaping)
{
	char *l = escaped("a\\b\"c\nd", true);
	ck_assert_str_eq(l, "a\\\\b\\\"c\\nd");
	char *h = escaped("a\\b\"c\nd", false);
	ck_assert_str_eq(h, "a\\\\b\"c\\nd"); /* HELP keeps quotes as they are */
	free(l);
	free(h);
}
END_TEST

START_TEST(families_and_labels)
{
	struct mp_metrics *reg = mp_metrics_new();
	uint64_t field = 7;
	struct mp_counter *c = mp_metrics_counter(reg, "t_requests_total", "Requests \"all\"\n",
						  (const char *[]){"kind", "a\"b\\c\nd", NULL});
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "t_requests_total", "ignored",
		       (const char *[]){"kind", "x", "reason", "y", NULL}, &field);
	struct mp_gauge *g = mp_metrics_gauge(reg, "t_level", "A level.", NULL);
	mp_counter_add(c, 3);
	mp_counter_inc(c);
	mp_gauge_set(g, -5);
	ck_assert(mp_metrics_ok(reg));
	char *text = mp_metrics_text(reg);
	ck_assert_str_eq(text, "# HELP t_requests_total Requests \"all\"\\n\n"
			       "# TYPE t_requests_total counter\n"
			       "t_requests_total{kind=\"a\\\"b\\\\c\\nd\"} 4\n"
			       "t_requests_total{kind=\"x\",reason=\"y\"} 7\n"
			       "# HELP t_level A level.\n"
			       "# TYPE t_level gauge\n"
			       "t_level -5\n");
	free(text);
	mp_metrics_free(reg);
}
END_TEST

START_TEST(histogram_cumulative)
{
	static const double bounds[] = {0.25, 1, 10};
	struct mp_metrics *reg = mp_metrics_new();
	struct mp_histogram *h = mp_metrics_histogram(
	    reg, "t_seconds", "Durations.", (const char *[]){"op", "pay", NULL}, bounds, 3);
	double v[] = {0.125, 0.25, 0.5, 1, 5, 50, 50};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		mp_histogram_observe(h, v[i]);
	char *text = mp_metrics_text(reg);
	/* le is inclusive: 0.25 falls in le="0.25", 1 in le="1"; buckets never decrease and +Inf
	 * equals _count. */
	ck_assert_str_eq(text, "# HELP t_seconds Durations.\n"
			       "# TYPE t_seconds histogram\n"
			       "t_seconds_bucket{op=\"pay\",le=\"0.25\"} 2\n"
			       "t_seconds_bucket{op=\"pay\",le=\"1\"} 4\n"
			       "t_seconds_bucket{op=\"pay\",le=\"10\"} 5\n"
			       "t_seconds_bucket{op=\"pay\",le=\"+Inf\"} 7\n"
			       "t_seconds_sum{op=\"pay\"} 106.875\n"
			       "t_seconds_count{op=\"pay\"} 7\n");
	free(text);
	mp_metrics_free(reg);
}
END_TEST

static double forty_two(const void *arg)
{
	return 42.5;
}

START_TEST(refused_registrations)
{
	static const double bad_bounds[] = {1, 1};
	struct mp_metrics *reg = mp_metrics_new();
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "t_fn", "A function.", NULL, forty_two, NULL);
	ck_assert(mp_metrics_ok(reg));
	/* The same family with another type. */
	struct mp_counter *sink = mp_metrics_counter(reg, "t_fn", "x", NULL);
	ck_assert_ptr_nonnull(sink);
	mp_counter_inc(sink); /* harmless */
	ck_assert(!mp_metrics_ok(reg));
	mp_metrics_free(reg);

	const char *bad_names[] = {"1abc", "a-b", "", "a b"};
	for (size_t i = 0; i < 4; i++) {
		reg = mp_metrics_new();
		mp_metrics_gauge(reg, bad_names[i], "x", NULL);
		ck_assert_msg(!mp_metrics_ok(reg), "name '%s' accepted", bad_names[i]);
		mp_metrics_free(reg);
	}
	reg = mp_metrics_new();
	mp_metrics_gauge(reg, "t_ok", "x", (const char *[]){"le", "1", NULL});
	ck_assert(!mp_metrics_ok(reg)); /* le is reserved for buckets */
	mp_metrics_free(reg);
	reg = mp_metrics_new();
	mp_metrics_gauge(reg, "t_ok", "x", (const char *[]){"__x", "1", NULL});
	ck_assert(!mp_metrics_ok(reg));
	mp_metrics_free(reg);
	reg = mp_metrics_new();
	mp_histogram_observe(mp_metrics_histogram(reg, "t_h", "x", NULL, bad_bounds, 2), 1);
	ck_assert(!mp_metrics_ok(reg));
	mp_metrics_free(reg);
}
END_TEST

/* promtool check metrics on an exposition with every kind of series, when installed. */
START_TEST(promtool_accepts)
{
	static const double bounds[] = {0.001, 0.01, 0.1};
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP promtool_accepts: promtool is not installed "
				"(deploy/install-deps installs Debian's prometheus package)\n");
		return;
	}
	struct mp_metrics *reg = mp_metrics_new();
	mp_counter_inc(mp_metrics_counter(reg, "t_answers_total", "Answers by \\ status.",
					  (const char *[]){"status", "OK\n\"x\"", NULL}));
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "t_value", "A value.", NULL, forty_two, NULL);
	struct mp_histogram *h =
	    mp_metrics_histogram(reg, "t_latency_seconds", "Latency.", NULL, bounds, 3);
	mp_histogram_observe(h, 0.005);
	char path[] = "/tmp/mp-metrics-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	char *text = mp_metrics_text(reg);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	ck_assert_msg(system(cmd) == 0, "promtool refused:\n%s", text);
	unlink(path);
	free(text);
	mp_metrics_free(reg);
}
END_TEST

/* What the pay path calls per payment (counter, gauge, histogram, the clock) allocates
 * nothing: the heap in use is the same before and after 100,000 rounds. */
START_TEST(updates_do_not_allocate)
{
	static const double bounds[] = {0.001, 0.01, 0.1, 1};
	struct mp_metrics *reg = mp_metrics_new();
	struct mp_counter *c = mp_metrics_counter(reg, "t_total", "x", NULL);
	struct mp_gauge *g = mp_metrics_gauge(reg, "t_gauge", "x", NULL);
	struct mp_histogram *h = mp_metrics_histogram(reg, "t_h", "x", NULL, bounds, 4);
	struct mallinfo2 before = mallinfo2();
	for (int i = 0; i < 100000; i++) {
		uint64_t t = mp_metrics_now_us();
		mp_counter_inc(c);
		mp_gauge_set(g, i);
		mp_histogram_observe(h, (double)(mp_metrics_now_us() - t) / 1e6);
	}
	struct mallinfo2 after = mallinfo2();
	ck_assert_uint_eq(after.uordblks, before.uordblks);
	ck_assert_uint_eq(h->count, 100000);
	mp_metrics_free(reg);
}
END_TEST

static bool loopback(const char *addr)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	ck_assert_int_eq(evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len), 0);
	return mp_metrics_addr_is_loopback((struct sockaddr *)&ss);
}

START_TEST(http_listen_loopback_only_unless_allowed)
{
	ck_assert(loopback("127.0.0.1:1"));
	ck_assert(loopback("127.9.8.7:1"));
	ck_assert(loopback("[::1]:1"));
	ck_assert(loopback("[::ffff:127.0.0.1]:1"));
	ck_assert(!loopback("0.0.0.0:1"));
	ck_assert(!loopback("192.0.2.1:1"));
	ck_assert(!loopback("[::]:1"));
	ck_assert(!loopback("[2001:db8::1]:1"));
	struct event_base *base = event_base_new();
	struct mp_metrics *reg = mp_metrics_new();
	/* A wildcard or a host name is refused; a loopback address with port 0 is served. */
	ck_assert_ptr_null(mp_metrics_http_open(base, "0.0.0.0:0", false, reg));
	ck_assert_ptr_null(mp_metrics_http_open(base, "localhost:9100", false, reg));
	ck_assert_ptr_null(mp_metrics_http_open(base, "127.0.0.1", false, reg));
	struct mp_metrics_http *h = mp_metrics_http_open(base, "127.0.0.1:0", false, reg);
	ck_assert_ptr_nonnull(h);
	ck_assert_uint_ne(mp_metrics_http_port(h), 0);
	mp_metrics_http_close(h);
	/* Allowed explicitly, the wildcard is served. */
	h = mp_metrics_http_open(base, "0.0.0.0:0", true, reg);
	ck_assert_ptr_nonnull(h);
	mp_metrics_http_close(h);
	/* Not configured: nothing opened, and that is no failure. */
	struct mp_metrics_config off = {0};
	ck_assert(mp_metrics_http_start(base, &off, reg, &h));
	ck_assert_ptr_null(h);
	mp_metrics_free(reg);
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_add_test(tc, escaping);
	tcase_add_test(tc, families_and_labels);
	tcase_add_test(tc, histogram_cumulative);
	tcase_add_test(tc, refused_registrations);
	tcase_add_test(tc, promtool_accepts);
	tcase_add_test(tc, updates_do_not_allocate);
	tcase_add_test(tc, http_listen_loopback_only_unless_allowed);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
