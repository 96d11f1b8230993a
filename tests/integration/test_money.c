/* Money out with the real daemons (deploy/mpnet): payouts from a customer's balance and from a
 * merchant's available account (never its pending credit), idempotent by payout_id; merchant
 * bonds posted from and released to the available account, idempotent by op_id; the loss
 * reserve funded from external. Every case ends with the broker's audit clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant m1;

static void setup_net(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	tmerchant_load(&m1, &net, "m1");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	net_down(&net);
}

static void new_id(char out[MP_HEX_ID_LEN + 1])
{
	uint8_t id[MP_ID_LEN];
	ck_assert(mp_random_bytes(id, MP_ID_LEN));
	mp_hex_encode(id, MP_ID_LEN, out);
}

/* A registered customer account funded with `amount`; its id in hex. */
static void new_customer(char hex[MP_HEX_ID_LEN + 1], uint64_t amount)
{
	struct twallet tw;
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	wire_close(&b);
	mp_hex_encode(tw.account_id, MP_ID_LEN, hex);
	mp_key_free(&tw.account);
	net_fund(&net, hex, amount);
}

/* account.show: the balance of the account shown (a merchant id: its available account) or,
 * with kind, of the related account of that kind (-1 if there is none). */
static int64_t balance_of(const char *acct, const char *kind)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", acct);
	json_t *a = admin_ok(&net, "broker", "account.show", params);
	int64_t out = kind ? -1 : json_int(a, "balance");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(a, "related"), i, r)
	{
		if (kind && strcmp(json_str(r, "kind"), kind) == 0)
			out = json_int(r, "balance");
	}
	json_decref(a);
	return out;
}

static json_t *payout(const char *acct, int64_t amount, const char *pid, char *err, size_t errlen)
{
	char params[256];
	snprintf(params, sizeof(params),
		 "{\"account\":\"%s\",\"amount\":%lld,\"payout_id\":\"%s\"}", acct,
		 (long long)amount, pid);
	return admin(&net, "broker", "account.payout", params, err, errlen);
}

static void payout_refused(const char *acct, int64_t amount, const char *pid, const char *want)
{
	char err[512];
	json_t *r = payout(acct, amount, pid, err, sizeof(err));
	ck_assert_msg(r == NULL, "payout of %lld from %s accepted", (long long)amount, acct);
	ck_assert_msg(strstr(err, want), "error '%s' lacks '%s'", err, want);
}

static json_t *payouts_of(const char *acct)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", acct);
	json_t *all = admin_ok(&net, "broker", "payouts", params);
	json_t *list = json_object_get(all, "payouts");
	ck_assert(json_is_array(list));
	json_incref(list);
	json_decref(all);
	return list;
}

START_TEST(customer_payout_is_idempotent_and_never_overdraws)
{
	char acct[MP_HEX_ID_LEN + 1], other[MP_HEX_ID_LEN + 1], p1[MP_HEX_ID_LEN + 1],
	    p2[MP_HEX_ID_LEN + 1];
	new_customer(acct, 1000);
	new_customer(other, 50);
	new_id(p1);
	new_id(p2);
	json_t *none = payouts_of(acct);
	ck_assert_uint_eq(json_array_size(none), 0);
	json_decref(none);

	char err[512];
	json_t *r = payout(acct, 300, p1, err, sizeof(err));
	ck_assert_msg(r, "%s", err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert(json_is_false(json_object_get(r, "duplicate")));
	ck_assert_int_eq(json_int(r, "balance"), 700);
	json_decref(r);
	/* The retry: the stored result, marked as a duplicate, nothing moves. */
	r = payout(acct, 300, p1, err, sizeof(err));
	ck_assert_msg(r, "%s", err);
	ck_assert_str_eq(json_str(r, "status"), "DUPLICATE_OK");
	ck_assert(json_is_true(json_object_get(r, "duplicate")));
	ck_assert_int_eq(json_int(r, "amount"), 300);
	ck_assert_int_eq(json_int(r, "balance"), 700);
	json_decref(r);
	/* The same id with another amount or account: CONFLICT with the stored payout. */
	payout_refused(acct, 200, p1, "CONFLICT: payout_id already used: stored payout of 300");
	payout_refused(other, 300, p1, "CONFLICT");
	ck_assert_int_eq(balance_of(acct, NULL), 700);
	ck_assert_int_eq(balance_of(other, NULL), 50);
	/* Over the balance: INSUFFICIENT_FUNDS, nothing stored; the id stays usable. */
	payout_refused(acct, 701, p2, "INSUFFICIENT_FUNDS");
	ck_assert_int_eq(balance_of(acct, NULL), 700);
	r = payout(acct, 700, p2, err, sizeof(err));
	ck_assert_msg(r, "%s", err);
	ck_assert_int_eq(json_int(r, "balance"), 0);
	json_decref(r);
	/* Bad input changes nothing. */
	payout_refused(acct, 0, p1, "amount must be");
	char params[160];
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":1}", other);
	ck_assert_ptr_null(admin(&net, "broker", "account.payout", params, err, sizeof(err)));
	ck_assert_msg(strstr(err, "payout_id"), "%s", err);
	char unknown[MP_HEX_ID_LEN + 1], p3[MP_HEX_ID_LEN + 1];
	new_id(unknown);
	new_id(p3);
	payout_refused(unknown, 1, p3, "UNKNOWN_ACCOUNT");

	json_t *list = payouts_of(acct);
	ck_assert_uint_eq(json_array_size(list), 2);
	ck_assert_str_eq(json_str(json_array_get(list, 0), "payout_id"), p1);
	ck_assert_int_eq(json_int(json_array_get(list, 0), "amount"), 300);
	ck_assert_str_eq(json_str(json_array_get(list, 1), "payout_id"), p2);
	ck_assert_str_eq(json_str(json_array_get(list, 1), "kind"), "customer");
	json_decref(list);
	net_audit_clean(&net);
}
END_TEST

/* m1 gets pending credit by redeeming 10 units of a channel (holder0 m1). */
static void m1_earns_pending(uint32_t units)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	net_fund_id(&net, tw.account_id, 100);
	tchannel_make(&ch, &tw, 100, 1, m1.mid);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(OK));
	wire_close(&b);
	struct tclaim cl;
	tchannel_id(&ch, cl.channel_id);
	cl.index = units;
	tchannel_word(&ch, units, cl.w);
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	MpSigned *s = tmerchant_redeem(&m1, rid, &cl, 1);
	struct wire w;
	tmerchant_connect(&m1, &w, broker_ep, ca);
	MpEnvelope *resp = redeem_call(&w, s);
	wire_close(&w);
	ck_assert_int_eq(resp->redeem_resp->results[0]->status, MP_ST(OK));
	ck_assert_uint_eq(resp->redeem_resp->results[0]->credited_amount, units);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}

static const char *pending_account_of_m1(char out[MP_HEX_ID_LEN + 1])
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", m1.mid_hex);
	json_t *a = admin_ok(&net, "broker", "account.show", params);
	json_t *r = json_array_get(json_object_get(a, "related"), 0);
	ck_assert_str_eq(json_str(r, "kind"), "merchant_pending");
	snprintf(out, MP_HEX_ID_LEN + 1, "%s", json_str(r, "account"));
	json_decref(a);
	return out;
}

START_TEST(merchant_pays_out_available_never_pending)
{
	m1_earns_pending(10);
	int64_t pending = balance_of(m1.mid_hex, "merchant_pending");
	int64_t avail = balance_of(m1.mid_hex, NULL);
	ck_assert_int_ge(pending, 10);
	char p1[MP_HEX_ID_LEN + 1], p2[MP_HEX_ID_LEN + 1], pend[MP_HEX_ID_LEN + 1];
	new_id(p1);
	new_id(p2);
	/* Pending credit does not count, and the pending account cannot be paid out. */
	payout_refused(m1.mid_hex, avail + 1, p1, "INSUFFICIENT_FUNDS");
	payout_refused(pending_account_of_m1(pend), 1, p1, "pending credit cannot be paid out");
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_pending"), pending);
	net_merchant_fund(&net, m1.mid_hex, 40);
	char err[512];
	json_t *r = payout(m1.mid_hex, avail + 30, p1, err, sizeof(err));
	ck_assert_msg(r, "%s", err);
	ck_assert_int_eq(json_int(r, "balance"), 10);
	json_decref(r);
	r = payout(m1.mid_hex, avail + 30, p1, err, sizeof(err));
	ck_assert_msg(r, "%s", err);
	ck_assert(json_is_true(json_object_get(r, "duplicate")));
	json_decref(r);
	payout_refused(m1.mid_hex, 11, p2, "INSUFFICIENT_FUNDS");
	ck_assert_int_eq(balance_of(m1.mid_hex, NULL), 10);
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_pending"), pending);
	json_t *list = payouts_of(m1.mid_hex);
	ck_assert_uint_eq(json_array_size(list), 1);
	ck_assert_str_eq(json_str(json_array_get(list, 0), "kind"), "merchant_available");
	json_decref(list);
	net_audit_clean(&net);
}
END_TEST

static json_t *bond(const char *method, const char *mid, int64_t amount, const char *op, char *err,
		    size_t errlen)
{
	char params[256];
	snprintf(params, sizeof(params), "{\"merchant\":\"%s\",\"amount\":%lld,\"op_id\":\"%s\"}",
		 mid, (long long)amount, op);
	return admin(&net, "broker", method, params, err, errlen);
}

static void bond_refused(const char *method, int64_t amount, const char *op, const char *want)
{
	char err[512];
	json_t *r = bond(method, m1.mid_hex, amount, op, err, sizeof(err));
	ck_assert_msg(r == NULL, "%s of %lld accepted", method, (long long)amount);
	ck_assert_msg(strstr(err, want), "error '%s' lacks '%s'", err, want);
}

static void bond_ok(const char *method, int64_t amount, const char *op, bool duplicate,
		    int64_t want_bond, int64_t want_avail)
{
	char err[512];
	json_t *r = bond(method, m1.mid_hex, amount, op, err, sizeof(err));
	ck_assert_msg(r, "%s: %s", method, err);
	ck_assert(json_is_boolean(json_object_get(r, "duplicate")));
	ck_assert_int_eq(json_is_true(json_object_get(r, "duplicate")), duplicate);
	ck_assert_int_eq(json_int(r, "bond"), want_bond);
	ck_assert_int_eq(json_int(r, "available"), want_avail);
	json_decref(r);
}

START_TEST(bond_posted_and_released_through_available)
{
	int64_t avail = balance_of(m1.mid_hex, NULL);
	int64_t pending = balance_of(m1.mid_hex, "merchant_pending");
	int64_t bond0 = balance_of(m1.mid_hex, "merchant_bond");
	ck_assert_int_eq(bond0, -1); /* no bond account before the first post */
	bond0 = 0;
	/* A refused operation creates nothing, not even an empty bond account. */
	char o0[MP_HEX_ID_LEN + 1];
	new_id(o0);
	bond_refused("bond.release", 1, o0, "INSUFFICIENT_FUNDS: bond 0 below 1");
	bond_refused("bond.post", avail + 1, o0, "INSUFFICIENT_FUNDS");
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_bond"), -1);
	net_merchant_fund(&net, m1.mid_hex, 100);
	avail += 100;
	char o1[MP_HEX_ID_LEN + 1], o2[MP_HEX_ID_LEN + 1], o3[MP_HEX_ID_LEN + 1];
	new_id(o1);
	new_id(o2);
	new_id(o3);
	bond_ok("bond.post", 60, o1, false, bond0 + 60, avail - 60);
	bond_ok("bond.post", 60, o1, true, bond0 + 60, avail - 60);
	bond_refused("bond.release", 60, o1, "CONFLICT: op_id already used for post of 60");
	bond_refused("bond.post", 61, o1, "CONFLICT");
	bond_refused("bond.post", avail - 60 + 1, o2, "INSUFFICIENT_FUNDS");
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_bond"), bond0 + 60);
	/* The bond is not available: a payout cannot take it. */
	char p[MP_HEX_ID_LEN + 1];
	new_id(p);
	payout_refused(m1.mid_hex, avail - 60 + 1, p, "INSUFFICIENT_FUNDS");
	bond_ok("bond.release", 20, o2, false, bond0 + 40, avail - 40);
	bond_ok("bond.release", 20, o2, true, bond0 + 40, avail - 40);
	bond_refused("bond.release", bond0 + 41, o3, "INSUFFICIENT_FUNDS");
	bond_refused("bond.post", 0, o3, "amount must be");
	char err[512];
	char unknown[MP_HEX_ID_LEN + 1];
	new_id(unknown);
	ck_assert_ptr_null(bond("bond.post", unknown, 1, o3, err, sizeof(err)));
	ck_assert_msg(strstr(err, "UNKNOWN_ACCOUNT"), "%s", err);
	ck_assert_int_eq(balance_of(m1.mid_hex, NULL), avail - 40);
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_pending"), pending);
	ck_assert_int_eq(balance_of(m1.mid_hex, "merchant_bond"), bond0 + 40);
	/* account.create no longer takes a bond figure without money behind it. */
	ck_assert_ptr_null(admin(&net, "broker", "account.create",
				 "{\"kind\":\"merchant\",\"bond\":5}", err, sizeof(err)));
	ck_assert_msg(strstr(err, "bond.post"), "%s", err);
	net_audit_clean(&net);
}
END_TEST

START_TEST(loss_reserve_funded_once_per_fund_id)
{
	char f1[MP_HEX_ID_LEN + 1], params[160], err[512];
	new_id(f1);
	snprintf(params, sizeof(params), "{\"amount\":500,\"fund_id\":\"%s\"}", f1);
	json_t *r = admin_ok(&net, "broker", "loss_reserve.fund", params);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	int64_t bal = json_int(r, "balance");
	ck_assert_int_ge(bal, 500);
	json_decref(r);
	r = admin_ok(&net, "broker", "loss_reserve.fund", params);
	ck_assert_str_eq(json_str(r, "status"), "DUPLICATE_OK");
	ck_assert_int_eq(json_int(r, "balance"), bal);
	json_decref(r);
	snprintf(params, sizeof(params), "{\"amount\":501,\"fund_id\":\"%s\"}", f1);
	ck_assert_ptr_null(admin(&net, "broker", "loss_reserve.fund", params, err, sizeof(err)));
	ck_assert_msg(strstr(err, "CONFLICT"), "%s", err);
	ck_assert_ptr_null(
	    admin(&net, "broker", "loss_reserve.fund", "{\"amount\":5}", err, sizeof(err)));
	ck_assert_msg(strstr(err, "fund_id"), "%s", err);
	net_audit_clean(&net);
}
END_TEST

static Suite *money_suite(void)
{
	Suite *s = suite_create("money");
	TCase *tc = tcase_create("money");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, customer_payout_is_idempotent_and_never_overdraws);
	tcase_add_test(tc, merchant_pays_out_available_never_pending);
	tcase_add_test(tc, bond_posted_and_released_through_available);
	tcase_add_test(tc, loss_reserve_funded_once_per_fund_id);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(money_suite());
}
