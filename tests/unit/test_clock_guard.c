/* common/clock_guard.c: the offset against the broker carried forward on the boot clock, and
 * refusing beyond the maximum offset until an answer brings it back. A test clock (clock.h)
 * stands in for a clock that jumps. */
#include <check.h>
#include <event2/event.h>
#include <string.h>

#include "clock_guard.h"
#include "metrics.h"
#include "../check_run.h"

START_TEST(offset_is_carried_on_the_boot_clock)
{
	/* The broker said 1000 when the boot clock read 5,000 ms. */
	ck_assert_int_eq(mp_clock_offset_carried(1000, 5000, 5000, 1000), 0);
	ck_assert_int_eq(mp_clock_offset_carried(1000, 5000, 15000, 1010), 0); /* both moved 10 s */
	ck_assert_int_eq(mp_clock_offset_carried(1000, 5000, 15000, 1070), -60); /* we jumped */
	ck_assert_int_eq(mp_clock_offset_carried(1000, 5000, 15000, 950), 60);	 /* we went back */
	ck_assert_int_eq(mp_clock_offset_carried(1000, 5000, 4000, 1000), 0); /* never negative */
}
END_TEST

struct guard_fixture {
	struct event_base *base;
	struct mp_clock clock;
	struct mp_clock_guard *g;
	int probes;
};

static void count_probe(void *arg)
{
	((struct guard_fixture *)arg)->probes++;
}

static void fixture_up(struct guard_fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	ck_assert_ptr_nonnull(f->base);
	mp_clock_init(&f->clock, true);
	struct mp_clock_guard_config cfg;
	mp_clock_guard_config_default(&cfg);
	ck_assert_int_eq(cfg.max_offset, 30);
	f->g = mp_clock_guard_new(f->base, &f->clock, &cfg, "testd", count_probe, f);
	ck_assert_ptr_nonnull(f->g);
}

static void fixture_down(struct guard_fixture *f)
{
	mp_clock_guard_free(f->g);
	event_base_free(f->base);
}

static int64_t status_int(struct mp_clock_guard *g, const char *key)
{
	json_t *j = mp_clock_guard_json(g);
	json_t *v = json_object_get(j, key);
	int64_t out = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
	json_decref(j);
	return out;
}

START_TEST(unknown_serves_then_refuses_beyond_and_recovers)
{
	struct guard_fixture f;
	fixture_up(&f);
	char why[200] = "";
	ck_assert(mp_clock_guard_serving(f.g, why, sizeof(why))); /* nothing to judge by */
	ck_assert_int_eq(status_int(f.g, "known"), 0);

	mp_clock_guard_seen(f.g, mp_clock_now(&f.clock)); /* the broker agrees with us */
	ck_assert(mp_clock_guard_serving(f.g, why, sizeof(why)));
	ck_assert_int_eq(status_int(f.g, "known"), 1);

	char err[64];
	ck_assert(mp_clock_advance(&f.clock, 29, err, sizeof(err)));
	ck_assert(mp_clock_guard_serving(f.g, why, sizeof(why))); /* -29: within 30 */
	ck_assert(mp_clock_advance(&f.clock, 31, err, sizeof(err)));
	ck_assert(!mp_clock_guard_serving(f.g, why, sizeof(why))); /* -60: refused at once */
	ck_assert_msg(strstr(why, "clock offset against the broker -60 s") &&
			  strstr(why, "maximum 30 s") && strstr(why, "testd"),
		      "%s", why);
	ck_assert(!mp_clock_guard_within(f.g));
	ck_assert(!mp_clock_guard_serving(f.g, why, sizeof(why)));
	ck_assert_int_eq(status_int(f.g, "refused"), 2);
	ck_assert_int_eq(status_int(f.g, "within"), 0);
	ck_assert_int_eq(status_int(f.g, "offset"), -60);

	/* An answer showing the broker 60 s ahead of where it was: the clocks agree again. */
	mp_clock_guard_seen(f.g, mp_clock_now(&f.clock));
	ck_assert(mp_clock_guard_within(f.g));
	ck_assert(mp_clock_guard_serving(f.g, why, sizeof(why)));
	ck_assert_int_eq(status_int(f.g, "refused"), 2);
	/* broker_time 0 (an answer without it) changes nothing. */
	mp_clock_guard_seen(f.g, 0);
	ck_assert_int_eq(status_int(f.g, "offset"), 0);
	fixture_down(&f);
}
END_TEST

START_TEST(broker_ahead_is_refused_too)
{
	struct guard_fixture f;
	fixture_up(&f);
	char why[200];
	mp_clock_guard_seen(f.g, mp_clock_now(&f.clock) + 31);
	ck_assert(!mp_clock_guard_serving(f.g, why, sizeof(why)));
	ck_assert_msg(strstr(why, "broker 31 s"), "%s", why);
	fixture_down(&f);
}
END_TEST

START_TEST(metrics_show_the_offset_and_refusals)
{
	struct guard_fixture f;
	fixture_up(&f);
	struct mp_metrics *reg = mp_metrics_new();
	mp_clock_guard_metrics(f.g, reg, "micropay_test");
	ck_assert(mp_metrics_ok(reg));
	mp_clock_guard_seen(f.g, mp_clock_now(&f.clock));
	char err[64], why[200];
	ck_assert(mp_clock_advance(&f.clock, 45, err, sizeof(err)));
	ck_assert(!mp_clock_guard_serving(f.g, why, sizeof(why)));
	char *text = mp_metrics_text(reg);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "micropay_test_broker_clock_offset_seconds -45\n") &&
			  strstr(text, "micropay_test_broker_clock_known 1\n") &&
			  strstr(text, "micropay_test_clock_within_limit 0\n") &&
			  strstr(text, "micropay_test_clock_refusals_total 1\n"),
		      "%s", text);
	free(text);
	mp_metrics_free(reg);
	fixture_down(&f);
}
END_TEST

START_TEST(the_check_asks_the_broker_while_beyond_or_unknown)
{
	struct guard_fixture f;
	fixture_up(&f);
	/* The first check (after MP_CLOCK_GUARD_RECHECK_S) probes: nothing known yet. */
	event_base_loopexit(f.base, &(struct timeval){MP_CLOCK_GUARD_RECHECK_S, 500000});
	event_base_dispatch(f.base);
	ck_assert_int_eq(f.probes, 1);
	/* Known and within: no probe until probe_interval. */
	mp_clock_guard_seen(f.g, mp_clock_now(&f.clock));
	event_base_loopexit(f.base, &(struct timeval){MP_CLOCK_GUARD_RECHECK_S, 0});
	event_base_dispatch(f.base);
	ck_assert_int_eq(f.probes, 1);
	/* Beyond: probed at the next check. */
	char err[64];
	ck_assert(mp_clock_advance(&f.clock, 100, err, sizeof(err)));
	event_base_loopexit(f.base, &(struct timeval){MP_CLOCK_GUARD_RECHECK_S, 0});
	event_base_dispatch(f.base);
	ck_assert_int_eq(f.probes, 2);
	fixture_down(&f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("clock_guard");
	TCase *tc = tcase_create("guard");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, offset_is_carried_on_the_boot_clock);
	tcase_add_test(tc, unknown_serves_then_refuses_beyond_and_recovers);
	tcase_add_test(tc, broker_ahead_is_refused_too);
	tcase_add_test(tc, metrics_show_the_offset_and_refusals);
	tcase_add_test(tc, the_check_asks_the_broker_while_beyond_or_unknown);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
