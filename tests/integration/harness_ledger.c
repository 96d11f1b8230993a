#include "harness_ledger.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

void net_fund(const struct net *n, const char *account_hex, uint64_t amount)
{
	char params[200], fund_hex[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 account_hex, (unsigned long long)amount, fund_hex);
	json_decref(admin_ok(n, "broker", "account.fund", params));
}

void net_fund_id(const struct net *n, const uint8_t account[MP_ID_LEN], uint64_t amount)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(account, MP_ID_LEN, hex);
	net_fund(n, hex, amount);
}

static json_t *account_show(const struct net *n, const char *account_hex)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", account_hex);
	return admin_ok(n, "broker", "account.show", params);
}

int64_t net_balance(const struct net *n, const char *account_hex)
{
	json_t *acc = account_show(n, account_hex);
	int64_t b = json_int(acc, "balance");
	json_decref(acc);
	return b;
}

int64_t net_merchant_balance(const struct net *n, const char *merchant_hex, const char *kind)
{
	json_t *acc = account_show(n, merchant_hex);
	json_t *related = json_object_get(acc, "related");
	size_t i;
	json_t *r;
	json_array_foreach(related, i, r)
	{
		if (strcmp(json_str(r, "kind"), kind) == 0) {
			int64_t b = json_int(r, "balance");
			json_decref(acc);
			return b;
		}
	}
	char *text = json_dumps(acc, JSON_COMPACT);
	ck_abort_msg("merchant %s has no %s account: %s", merchant_hex, kind, text);
	return 0;
}

int64_t net_pending(const struct net *n, const char *merchant_hex)
{
	return net_merchant_balance(n, merchant_hex, "merchant_pending");
}

void net_merchant_fund(const struct net *n, const char *merchant_hex, uint64_t amount)
{
	json_t *acc = account_show(n, merchant_hex);
	ck_assert_str_eq(json_str(acc, "kind"), "merchant_available");
	char avail[MP_HEX_ID_LEN + 1];
	snprintf(avail, sizeof(avail), "%s", json_str(acc, "account_id"));
	json_decref(acc);
	net_fund(n, avail, amount);
}

void net_post_bond(const struct net *n, const char *merchant_hex, uint64_t amount)
{
	net_merchant_fund(n, merchant_hex, amount);
	char params[200], op_hex[MP_HEX_ID_LEN + 1];
	uint8_t op_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(op_id, MP_ID_LEN));
	mp_hex_encode(op_id, MP_ID_LEN, op_hex);
	snprintf(params, sizeof(params), "{\"merchant\":\"%s\",\"amount\":%llu,\"op_id\":\"%s\"}",
		 merchant_hex, (unsigned long long)amount, op_hex);
	json_decref(admin_ok(n, "broker", "bond.post", params));
}

void net_new_order(const struct net *n, const char *daemon, uint64_t price, char *out, size_t len)
{
	char params[64];
	snprintf(params, sizeof(params), "{\"price\":%llu}", (unsigned long long)price);
	json_t *o = admin_ok(n, daemon, "order.create", params);
	snprintf(out, len, "%s", json_str(o, "order_ref"));
	json_decref(o);
}

void net_wallet_issue(const struct net *n, const char *wallet, const char *merchant_hex,
		      uint32_t units, uint64_t unit_value, char *channel, size_t len)
{
	char params[200];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":%llu,\"days\":1}", merchant_hex,
		 units, (unsigned long long)unit_value);
	json_t *r = admin_ok(n, wallet, "issue", params);
	ck_assert_str_eq(json_str(r, "status"), "ACTIVE");
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}
