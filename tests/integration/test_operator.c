/* The operator's side of the real daemons: funding is idempotent by fund_id; the audit names
 * each violated invariant and its offenders (the database is corrupted on purpose, then
 * repaired); the admin sockets admit an admin group through supplementary groups; every
 * daemon refuses an out-of-range configuration value with file:line. */
#include <check.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "harness.h"
#include "harness_db.h"
#include "harness_uid.h"
#include "../check_run.h"

#define ADMIN_GID 4242u /* the admin group: a bare gid, no name needed */
#define OTHER_GID 4243u
#define NOBODY	  UID_NOBODY

static struct net net;
static char m1_hex[64], m1_ep[128], account[64], channel[64];

/* ---- helpers ---- */

static void new_fund_id(char out[MP_HEX_ID_LEN + 1])
{
	uint8_t id[MP_ID_LEN];
	ck_assert(mp_random_bytes(id, MP_ID_LEN));
	mp_hex_encode(id, MP_ID_LEN, out);
}

/* account.fund; NULL with the daemon's "code: message" in err when refused. */
static json_t *fund(const char *acct, uint64_t amount, const char *fund_id, char *err,
		    size_t errlen)
{
	char params[256];
	if (fund_id)
		snprintf(params, sizeof(params),
			 "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}", acct,
			 (unsigned long long)amount, fund_id);
	else
		snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu}", acct,
			 (unsigned long long)amount);
	return admin(&net, "broker", "account.fund", params, err, errlen);
}

static int64_t balance_of(const char *acct)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", acct);
	json_t *a = admin_ok(&net, "broker", "account.show", params);
	int64_t b = json_int(a, "balance");
	json_decref(a);
	return b;
}

static json_t *audit(void)
{
	return admin_ok(&net, "broker", "audit", NULL);
}

static void audit_clean(void)
{
	json_t *a = audit();
	char *text = json_dumps(a, JSON_COMPACT);
	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "audit not clean: %s", text);
	free(text);
	json_decref(a);
}

/* The audit is not clean, names check as violated and id among its offenders. */
static void audit_names(const char *check, const char *id)
{
	json_t *a = audit();
	char *text = json_dumps(a, JSON_COMPACT);
	ck_assert_msg(json_is_false(json_object_get(a, "ok")), "audit clean: %s", text);
	bool named = false;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(a, "checks"), i, c)
	{
		if (strcmp(json_str(c, "check"), check) != 0)
			continue;
		ck_assert_msg(json_is_false(json_object_get(c, "ok")), "%s not violated: %s", check,
			      text);
		size_t k;
		json_t *o;
		json_array_foreach(json_object_get(c, "offenders"), k, o)
		{
			named = named || strcmp(json_string_value(o), id) == 0;
		}
	}
	ck_assert_msg(named, "%s does not name %s: %s", check, id, text);
	free(text);
	json_decref(a);
}

static void make_redeemed_channel(void);

/* In the parent, before the tests (each runs in a child of its own): the network, a wallet
 * account and a paid, redeemed channel held by m1. */
static void setup_net(void)
{
	char gid[16];
	snprintf(gid, sizeof(gid), "%u", ADMIN_GID);
	setenv("MP_ADMIN_GROUP", gid, 1);
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
	make_redeemed_channel();
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- funding ---- */

START_TEST(fund_requires_fund_id_and_credits_once)
{
	char err[512], fid[MP_HEX_ID_LEN + 1];
	int64_t before = balance_of(account);
	json_t *r = fund(account, 100, NULL, err, sizeof(err));
	ck_assert_msg(r == NULL, "funding without fund_id was accepted");
	ck_assert_msg(strstr(err, "-32602") && strstr(err, "fund_id"), "%s", err);
	r = fund(account, 100, "not-hex", err, sizeof(err));
	ck_assert_msg(r == NULL && strstr(err, "fund_id"), "%s", err);
	ck_assert_int_eq(balance_of(account), before);

	new_fund_id(fid);
	r = fund(account, 100, fid, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "balance"), before + 100);
	json_decref(r);
	/* The retry of a funding whose answer was lost credits nothing. */
	r = fund(account, 100, fid, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	ck_assert_str_eq(json_str(r, "status"), "DUPLICATE_OK");
	json_decref(r);
	ck_assert_int_eq(balance_of(account), before + 100);
	audit_clean();
}
END_TEST

START_TEST(fund_id_reused_for_another_funding_is_conflict)
{
	char err[512], fid[MP_HEX_ID_LEN + 1], m1_available[64];
	new_fund_id(fid);
	json_t *r = fund(account, 50, fid, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	json_decref(r);
	int64_t before = balance_of(account);
	r = fund(account, 51, fid, err, sizeof(err));
	ck_assert_msg(r == NULL && strstr(err, "CONFLICT"), "another amount: %s", err);
	/* The same id for another account (m1's available account) is a conflict too. */
	char *avail = sql_value(&net,
				"SELECT encode(available_account, 'hex') FROM merchants"
				" WHERE merchant_id = '\\x%s'",
				m1_hex);
	snprintf(m1_available, sizeof(m1_available), "%s", avail);
	free(avail);
	int64_t m1_before = balance_of(m1_available);
	r = fund(m1_available, 50, fid, err, sizeof(err));
	ck_assert_msg(r == NULL && strstr(err, "CONFLICT"), "another account: %s", err);
	ck_assert_int_eq(balance_of(account), before);
	ck_assert_int_eq(balance_of(m1_available), m1_before);
	char *rows = sql_value(&net, "SELECT count(*) FROM fundings WHERE fund_id = '\\x%s'", fid);
	ck_assert_str_eq(rows, "1");
	free(rows);
	audit_clean();
}
END_TEST

/* ---- audit ---- */

/* A paid and redeemed channel (3 units of 2), so that there are epochs, verified points and
 * pending credit. */
static void make_redeemed_channel(void)
{
	char err[512], fid[MP_HEX_ID_LEN + 1], params[400];
	new_fund_id(fid);
	json_decref(fund(account, 1000, fid, err, sizeof(err)));
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":100,\"unit_value\":2,\"days\":1}", m1_hex);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	json_t *o = admin_ok(&net, "m1", "order.create", "{\"price\":6}");
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":3,\"order_ref\":\"%s\"}",
		 channel, m1_ep, json_str(o, "order_ref"));
	json_decref(o);
	json_decref(admin_ok(&net, "w1", "pay", params));
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	char *end =
	    sql_value(&net, "SELECT credited_end FROM epochs WHERE channel_id = '\\x%s'", channel);
	ck_assert_str_eq(end, "3");
	free(end);
}

START_TEST(clean_network_audit_lists_every_invariant)
{
	json_t *a = audit();
	ck_assert(json_is_true(json_object_get(a, "ok")));
	static const char *const invariants[] = {
	    "account_balances_match_ledger",
	    "balances_sum_to_zero",
	    "fundings_match_ledger",
	    "external_is_payouts_minus_fundings",
	    "escrow_outflows_within_inflows",
	    "epoch_credits_match_redeems",
	    "channel_credit_matches_epochs",
	    "credited_end_is_verified_point",
	    "merchant_pending_is_unfinalised_credit",
	    "channel_escrow_plus_credit_is_face",
	    "payouts_match_ledger",
	    "payouts_from_payable_accounts",
	    "merchant_bond_matches_account",
	};
	for (size_t k = 0; k < sizeof(invariants) / sizeof(invariants[0]); k++) {
		bool found = false;
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(a, "checks"), i, c)
		{
			if (strcmp(json_str(c, "check"), invariants[k]) != 0)
				continue;
			found = true;
			ck_assert(json_is_true(json_object_get(c, "ok")));
			ck_assert_uint_eq(json_array_size(json_object_get(c, "offenders")), 0);
		}
		ck_assert_msg(found, "the audit has no check %s", invariants[k]);
	}
	json_decref(a);
}
END_TEST

START_TEST(audit_names_a_funding_that_disagrees_with_the_ledger)
{
	char err[512], fid[MP_HEX_ID_LEN + 1];
	new_fund_id(fid);
	json_decref(fund(account, 30, fid, err, sizeof(err)));
	audit_clean();
	sql_exec(&net, "UPDATE fundings SET amount = amount + 1 WHERE fund_id = '\\x%s'", fid);
	audit_names("fundings_match_ledger", fid);
	audit_names("external_is_payouts_minus_fundings", "EUR");
	sql_exec(&net, "UPDATE fundings SET amount = amount - 1 WHERE fund_id = '\\x%s'", fid);
	audit_clean();
}
END_TEST

START_TEST(audit_names_a_credited_end_without_verified_point)
{
	char id[80];
	snprintf(id, sizeof(id), "%s/0", channel);
	char *w = sql_value(&net,
			    "SELECT encode(w, 'hex') FROM chain_points WHERE channel_id = '\\x%s' "
			    "AND idx = 3",
			    channel);
	ck_assert_uint_eq(strlen(w), 64);
	sql_exec(&net, "DELETE FROM chain_points WHERE channel_id = '\\x%s' AND idx = 3", channel);
	audit_names("credited_end_is_verified_point", id);
	sql_exec(&net,
		 "INSERT INTO chain_points (channel_id, seg_seq, idx, w) "
		 "VALUES ('\\x%s', 0, 3, '\\x%s')",
		 channel, w);
	free(w);
	audit_clean();
}
END_TEST

START_TEST(audit_names_a_channel_whose_credit_disagrees_with_its_epochs)
{
	sql_exec(&net, "UPDATE epochs SET start_index = 1 WHERE channel_id = '\\x%s'", channel);
	audit_names("channel_credit_matches_epochs", channel);
	sql_exec(&net, "UPDATE epochs SET start_index = 0 WHERE channel_id = '\\x%s'", channel);
	audit_clean();
}
END_TEST

START_TEST(audit_names_a_merchant_whose_pending_is_not_its_credit)
{
	/* Money moved between two balances without a ledger row: the sum stays zero. */
	const char *move = "UPDATE accounts SET balance = balance %c 7 WHERE id = "
			   "(SELECT pending_account FROM merchants WHERE merchant_id = '\\x%s'); "
			   "UPDATE accounts SET balance = balance %c 7 WHERE kind = 'external'";
	sql_exec(&net, move, '+', m1_hex, '-');
	audit_names("merchant_pending_is_unfinalised_credit", m1_hex);
	sql_exec(&net, move, '-', m1_hex, '+');
	audit_clean();
}
END_TEST

/* ---- admin socket access ---- */

START_TEST(admin_group_members_may_connect_through_supplementary_groups)
{
	if (geteuid() != 0) {
		fprintf(stderr, "admin group test needs root (to become another user): skipped\n");
		return;
	}
	char dir[700], sock[720];
	/* nobody must be able to reach the sockets: the temporary folder is 0700. */
	ck_assert(chmod(net.dir, 0711) == 0);
	static const char *const daemons[] = {"broker", "m1", "w1"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(dir, sizeof(dir), "%s/%s", net.dir, daemons[i]);
		snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
		ck_assert(chmod(dir, 0711) == 0);
		struct stat st;
		ck_assert(stat(sock, &st) == 0);
		ck_assert_uint_eq(st.st_gid, ADMIN_GID);
		ck_assert_uint_eq(st.st_mode & 0777, 0660);
		const gid_t admin_group[] = {ADMIN_GID}, other_group[] = {OTHER_GID};
		ck_assert_msg(admin_status_as(sock, NOBODY, NOBODY, admin_group, 1),
			      "%s: a supplementary member of the admin group was refused",
			      daemons[i]);
		ck_assert_msg(admin_status_as(sock, NOBODY, ADMIN_GID, NULL, 0),
			      "%s: a primary member of the admin group was refused", daemons[i]);
		ck_assert_msg(!admin_status_as(sock, NOBODY, NOBODY, other_group, 1),
			      "%s: a non-member was let in", daemons[i]);
		/* Past the file system (socket opened to all), the credentials still decide. */
		ck_assert(chmod(sock, 0666) == 0);
		ck_assert_msg(!admin_status_as(sock, NOBODY, NOBODY, other_group, 1),
			      "%s: SO_PEERCRED let a non-member in", daemons[i]);
		ck_assert_msg(admin_status_as(sock, NOBODY, NOBODY, admin_group, 1), "%s",
			      daemons[i]);
		ck_assert(chmod(sock, 0660) == 0);
	}
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "grep -q 'refusing peer pid .* uid %u gid %u' '%s/broker/log'",
		 NOBODY, NOBODY, net.dir);
	ck_assert_msg(system(cmd) == 0, "the broker did not log the refused peer");
	audit_clean();
}
END_TEST

/* ---- configuration ranges ---- */

/* Run DAEMON on a config of `text`: it must exit 1 naming file:line and the range. */
static void refuses_config(const char *daemon, const char *text, int line, const char *what)
{
	char cfg[700], out[700], cmd[2400];
	snprintf(cfg, sizeof(cfg), "%s/range-%s.ini", net.dir, daemon);
	snprintf(out, sizeof(out), "%s/range-%s.out", net.dir, daemon);
	FILE *f = fopen(cfg, "w");
	ck_assert(f && fputs(text, f) >= 0 && fclose(f) == 0);
	const char *build = getenv("MP_BUILD") ? getenv("MP_BUILD") : "build";
	snprintf(cmd, sizeof(cmd), "'%s/%s/%s' -c '%s' >'%s' 2>&1", build, daemon, daemon, cfg,
		 out);
	int rc = system(cmd);
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "%s did not exit 1", daemon);
	char log[2048] = "", expect[900];
	f = fopen(out, "r");
	ck_assert(f != NULL);
	size_t got = fread(log, 1, sizeof(log) - 1, f);
	log[got] = '\0';
	fclose(f);
	snprintf(expect, sizeof(expect), "%s:%d: %s", cfg, line, what);
	ck_assert_msg(strstr(log, expect) != NULL, "%s: expected '%s' in: %s", daemon, expect, log);
}

START_TEST(daemons_refuse_out_of_range_values_with_file_and_line)
{
	refuses_config(
	    "merchantd",
	    "[merchant]\n; a second would be an invalid timeval\n"
	    "commit_delay_us = 1000000\n",
	    3, "[merchant] commit_delay_us = 1000000 is out of range: expected 0 .. 999999");
	refuses_config("brokerd", "[broker]\nmerchant_cert_days = 0\n", 2,
		       "[broker] merchant_cert_days = 0 is out of range: expected 1 .. 3650");
	refuses_config("walletd", "[wallet]\n\ncheckpoint_interval = 65537\n", 3,
		       "[wallet] checkpoint_interval = 65537 is out of range: expected 1 .. 65536");
	audit_clean();
}
END_TEST

static Suite *operator_suite(void)
{
	Suite *s = suite_create("operator");
	TCase *tc = tcase_create("operator");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fund_requires_fund_id_and_credits_once);
	tcase_add_test(tc, fund_id_reused_for_another_funding_is_conflict);
	tcase_add_test(tc, clean_network_audit_lists_every_invariant);
	tcase_add_test(tc, audit_names_a_funding_that_disagrees_with_the_ledger);
	tcase_add_test(tc, audit_names_a_credited_end_without_verified_point);
	tcase_add_test(tc, audit_names_a_channel_whose_credit_disagrees_with_its_epochs);
	tcase_add_test(tc, audit_names_a_merchant_whose_pending_is_not_its_credit);
	tcase_add_test(tc, admin_group_members_may_connect_through_supplementary_groups);
	tcase_add_test(tc, daemons_refuse_out_of_range_values_with_file_and_line);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(operator_suite());
}
