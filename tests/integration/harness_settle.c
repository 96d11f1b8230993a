/* Helpers for the settlement tests (harness_settle.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness_db.h"
#include "harness_settle.h"

void settle_fund(const struct net *n, const char *account_hex, uint64_t amount)
{
	char params[200], fund[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 account_hex, (unsigned long long)amount, fund);
	json_decref(admin_ok(n, "broker", "account.fund", params));
}

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

int64_t settle_balance(const struct net *n, const char *id_hex, int64_t *pending)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", id_hex);
	json_t *acc = admin_ok(n, "broker", "account.show", params);
	int64_t b = json_int(acc, "balance");
	if (pending)
		*pending = json_int(json_array_get(json_object_get(acc, "related"), 0), "balance");
	json_decref(acc);
	return b;
}

int64_t settle_unclaimed(const struct net *n)
{
	char *v = sql_value(n, "SELECT balance FROM accounts WHERE kind = 'unclaimed' "
			       "AND currency = 'EUR'");
	int64_t b = atoll(v);
	free(v);
	return b;
}
