/* Helpers for the settlement tests (harness_settle.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness_db.h"
#include "harness_settle.h"

uint64_t settle_broker_now(const struct net *n)
{
	json_t *r = admin_ok(n, "broker", "clock.show", NULL);
	uint64_t now = (uint64_t)json_int(r, "now");
	json_decref(r);
	return now;
}

void settle_advance_to(const struct net *n, uint64_t t)
{
	uint64_t now = settle_broker_now(n);
	if (now < t)
		net_clock_advance(n, t - now);
	ck_assert_uint_ge(settle_broker_now(n), t);
}

void settle_advance_broker_to(const struct net *n, uint64_t t)
{
	uint64_t now = settle_broker_now(n);
	char params[64];
	snprintf(params, sizeof(params), "{\"seconds\":%llu}", (unsigned long long)(t - now));
	if (now < t)
		json_decref(admin_ok(n, "broker", "clock.advance", params));
	ck_assert_uint_ge(settle_broker_now(n), t);
}

json_t *settle_sweep(const struct net *n)
{
	return admin_ok(n, "broker", "sweep.run", NULL);
}

json_t *settle_channel(const struct net *n, const char *channel_hex)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", channel_hex);
	return admin_ok(n, "broker", "channel.settlement", params);
}

void settle_expect_finalized(const struct net *n, const char *channel_hex, int64_t spent,
			     int64_t refund, int64_t unclaimed, int64_t credited)
{
	json_t *s = settle_channel(n, channel_hex);
	ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
	json_t *f = json_object_get(s, "finalization");
	ck_assert_int_eq(json_int(f, "spent"), spent);
	ck_assert_int_eq(json_int(f, "refund"), refund);
	ck_assert_int_eq(json_int(f, "unclaimed"), unclaimed);
	ck_assert_int_eq(json_int(f, "credited"), credited);
	json_decref(s);
}

int64_t settle_unclaimed(const struct net *n)
{
	char *v = sql_value(n, "SELECT balance FROM accounts WHERE kind = 'unclaimed' "
			       "AND currency = 'EUR'");
	int64_t b = atoll(v);
	free(v);
	return b;
}
