/* The broker's audit in set-based queries (migration 0023, docs/performance.md "The audit")
 * finds exactly what the audit before it (kept as mp_audit_0022) finds: on a network with a
 * finalised channel and an open redeemed one (real daemons, the test clock, the sweep), each of
 * a list of corruptions of the broker's tables is applied inside a subtransaction that is rolled
 * back, and both audits must name the expected invariant and agree on every check: ok, detail
 * and offenders. The network's own audit is clean before and after. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_settle.h"
#include "../check_run.h"

static struct net net;
static char m1_hex[64], m1_ep[128], open_ch[64], final_ch[64];

/* Channel of 100 units of 2 from w1 at m1, paid `units` and redeemed by m1. */
static void redeemed_channel(uint32_t units, char *channel, size_t len)
{
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, len);
	char order[64], params[400];
	net_new_order(&net, "m1", 2 * (uint64_t)units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, m1_ep, units, order);
	json_decref(admin_ok(&net, "w1", "pay", params));
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
}

/* In the parent: a finalised channel (redeemed at 4, swept after its deadline) and an open
 * one issued afterwards (redeemed at 3). */
static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *w = admin_ok(&net, "w1", "register", NULL);
	net_fund(&net, json_str(w, "account_id"), 1000);
	json_decref(w);
	redeemed_channel(4, final_ch, sizeof(final_ch));
	json_t *s = settle_channel(&net, final_ch);
	settle_advance_to(&net, (uint64_t)json_int(s, "finalize_at") + 1);
	json_decref(s);
	json_decref(settle_sweep(&net));
	settle_expect_finalized(&net, final_ch, 4, 192, 0, 8);
	redeemed_channel(3, open_ch, sizeof(open_ch));
}

static void teardown_net(void)
{
	net_down(&net);
}

/* corrupt with @O, @F and @M replaced by the open channel, the finalised one and m1 (hex). */
static char *with_ids(const char *corrupt)
{
	char *out = calloc(1, strlen(corrupt) * 16 + 1);
	ck_assert(out != NULL);
	for (const char *p = corrupt; *p; p++) {
		const char *id = NULL;
		if (p[0] == '@' && p[1] == 'O')
			id = open_ch;
		else if (p[0] == '@' && p[1] == 'F')
			id = final_ch;
		else if (p[0] == '@' && p[1] == 'M')
			id = m1_hex;
		if (id) {
			strcat(out, id);
			p++;
		} else {
			strncat(out, p, 1);
		}
	}
	return out;
}

/* Apply `corrupt` (SQL, see with_ids) in a subtransaction, run both audits, roll back.
 * Returns "<checks where they differ>#<checks the new audit finds violated>", each list
 * comma-separated (malloc'd). */
static char *audit_under(const char *corrupt)
{
	char *stmt = with_ids(corrupt);
	char *out = sql_value(
	    &net,
	    /* the invariants mp_audit_0022 had (migration 0027 adds the disputes' three, 0028 the
	     * forced releases' one) */
	    "CREATE FUNCTION pg_temp.audit_0022_checks() "
	    "RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[]) "
	    "LANGUAGE sql AS $f$ SELECT * FROM mp_audit() a WHERE a.check_name NOT IN "
	    "('dispute_refunds_match_ledger', 'no_open_dispute_on_finalized_channel', "
	    "'dispute_keys_match_offers', 'forced_release_matches_early_refund') $f$; "
	    "CREATE FUNCTION pg_temp.audit_under(p_corrupt text) RETURNS text "
	    "LANGUAGE plpgsql AS $f$ "
	    "DECLARE v_diff text; v_failed text; "
	    "BEGIN "
	    "  BEGIN "
	    "    EXECUTE p_corrupt; "
	    "    SELECT string_agg(DISTINCT d.check_name, ',') INTO v_diff FROM ("
	    "      (SELECT * FROM pg_temp.audit_0022_checks() EXCEPT SELECT * FROM "
	    "mp_audit_0022()) "
	    "      UNION ALL "
	    "      (SELECT * FROM mp_audit_0022() EXCEPT SELECT * FROM "
	    "pg_temp.audit_0022_checks())) d; "
	    "    SELECT string_agg(a.check_name, ',' ORDER BY a.check_name) INTO v_failed "
	    "      FROM mp_audit() a WHERE NOT a.ok; "
	    "    RAISE EXCEPTION 'roll back'; "
	    "  EXCEPTION WHEN raise_exception THEN NULL; "
	    "  END; "
	    "  RETURN coalesce(v_diff, '') || '#' || coalesce(v_failed, ''); "
	    "END $f$; "
	    "SELECT pg_temp.audit_under($c$%s$c$);",
	    stmt);
	free(stmt);
	return out;
}

/* Under `corrupt`, both audits agree on every check and `check` is among the violations. */
static void expect_found(const char *corrupt, const char *check)
{
	char *r = audit_under(corrupt);
	ck_assert_msg(r[0] == '#', "the audits differ on %s under: %s", r, corrupt);
	char *failed = r + 1;
	bool named = false;
	for (char *tok = strtok(failed, ","); tok; tok = strtok(NULL, ","))
		named = named || strcmp(tok, check) == 0;
	ck_assert_msg(named, "%s not violated under: %s", check, corrupt);
	free(r);
}

#define CH(x)	   "'\\x@" #x "'::bytea"
#define ESCROW(x)  "(SELECT escrow_account FROM channels WHERE channel_id = " CH(x) ")"
#define M1_PENDING "(SELECT pending_account FROM merchants WHERE merchant_id = " CH(M) ")"
#define REDEEM_TXN "(SELECT txn_id FROM transfers WHERE kind = 'redeem' AND ref = " CH(O) ")"
#define FORK_EPOCH_1                                                                               \
	"UPDATE epochs SET fork_of = sha256('\\x01'), liable_mid = merchant_id "                   \
	"WHERE channel_id = " CH(                                                                  \
	    O) "; "                                                                                \
	       "UPDATE redeem_results SET fork_of = sha256('\\x01') WHERE channel_id = " CH(       \
		   O) "; "

START_TEST(both_audits_are_clean_and_equal_on_the_network)
{
	char *r = audit_under("SELECT 1");
	ck_assert_str_eq(r, "#");
	free(r);
	net_audit_clean(&net);
}
END_TEST

START_TEST(balances_and_ledger)
{
	expect_found("UPDATE accounts SET balance = balance + 3 WHERE id = " ESCROW(O),
		     "account_balances_match_ledger");
	expect_found("UPDATE accounts SET balance = balance + 3 WHERE id = " ESCROW(O),
		     "balances_sum_to_zero");
	expect_found("UPDATE accounts SET balance = balance - 2 WHERE id = " ESCROW(
			 O) "; "
			    "UPDATE accounts SET balance = balance + 2 WHERE id = " M1_PENDING,
		     "channel_escrow_plus_credit_is_face");
	expect_found("UPDATE accounts SET balance = balance - 2 WHERE id = " ESCROW(
			 O) "; "
			    "UPDATE accounts SET balance = balance + 2 WHERE id = " M1_PENDING,
		     "merchant_pending_is_unfinalised_credit");
	expect_found("UPDATE fundings SET amount = amount + 1", "fundings_match_ledger");
	expect_found("UPDATE ledger SET amount = amount + 1 WHERE txn_id = " REDEEM_TXN,
		     "epoch_credits_match_redeems");
	expect_found("UPDATE transfers SET kind = 'refund' WHERE txn_id = " REDEEM_TXN,
		     "channel_credit_matches_epochs");
	expect_found("UPDATE transfers SET kind = 'refund' WHERE txn_id = " REDEEM_TXN,
		     "channel_escrow_plus_credit_is_face");
	net_audit_clean(&net);
}
END_TEST

START_TEST(epochs_and_channels)
{
	expect_found(
	    "UPDATE epochs SET credited_amount = credited_amount + 2 WHERE channel_id = " CH(O),
	    "epoch_credits_match_redeems");
	expect_found("UPDATE epochs SET start_index = 1 WHERE channel_id = " CH(O),
		     "channel_credit_matches_epochs");
	expect_found("UPDATE channels SET n = 1 WHERE channel_id = " CH(O),
		     "escrow_outflows_within_inflows");
	expect_found(
	    "UPDATE epochs SET credited_amount = credited_amount + 2 WHERE channel_id = " CH(O),
	    "fork_excess_is_liability_collections");
	expect_found("DELETE FROM chain_points WHERE channel_id = " CH(O) " AND idx = 3",
		     "credited_end_is_verified_point");
	expect_found("UPDATE channels SET state = 'FINALIZED' WHERE channel_id = " CH(O),
		     "finalized_channels_have_finalization");
	expect_found("UPDATE channels SET state = 'FINALIZED' WHERE channel_id = " CH(O),
		     "channel_settlement_within_escrow");
	expect_found("UPDATE channels SET early_refund = 2 WHERE channel_id = " CH(O),
		     "early_refund_matches_ledger");
	expect_found("UPDATE channels SET close_index = 3 WHERE channel_id = " CH(O),
		     "early_refund_matches_ledger");
	net_audit_clean(&net);
}
END_TEST

START_TEST(finalisation)
{
	expect_found("UPDATE finalizations SET refund = refund + 1 WHERE channel_id = " CH(F),
		     "finalization_matches_ledger");
	expect_found("UPDATE finalizations SET spent = spent + 1 WHERE channel_id = " CH(F),
		     "finalization_matches_ledger");
	expect_found("UPDATE finalizations SET refund_txn = NULL, refunded_at = NULL "
		     "WHERE channel_id = " CH(F),
		     "channel_settlement_within_escrow");
	expect_found("INSERT INTO transfers (kind, ref) VALUES ('redeem', " CH(F) ")",
		     "no_credit_after_finalization");
	expect_found(
	    "UPDATE transfers SET kind = 'release' WHERE kind = 'unclaimed' "
	    "AND ref = " CH(
		F) "; "
		   "UPDATE transfers SET kind = 'unclaimed' WHERE kind = 'refund' AND ref = " CH(F),
	    "finalization_matches_ledger");
	net_audit_clean(&net);
}
END_TEST

START_TEST(forks_and_liabilities)
{
	expect_found(FORK_EPOCH_1, "fork_epochs_are_recorded_conflicts");
	expect_found(FORK_EPOCH_1 "UPDATE epochs SET start_index = 2, credited_amount = 2 "
				  "WHERE channel_id = " CH(O),
		     "escrow_sourced_credit_within_escrow");
	const char *liability =
	    "INSERT INTO liabilities (channel_id, hseq, liable_mid, creditor_mid, txn_id, amount, "
	    "from_pending, from_bond, from_reserve) VALUES (" CH(O) ", 0, " CH(M) ", " CH(
		M) ", " REDEEM_TXN ", 2, 2, 0, 0)";
	expect_found(liability, "liability_collections_match_ledger");
	expect_found(liability, "fork_excess_is_liability_collections");
	expect_found(liability, "channel_escrow_plus_credit_is_face");
	net_audit_clean(&net);
}
END_TEST

static Suite *audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("audit");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, both_audits_are_clean_and_equal_on_the_network);
	tcase_add_test(tc, balances_and_ledger);
	tcase_add_test(tc, epochs_and_channels);
	tcase_add_test(tc, finalisation);
	tcase_add_test(tc, forks_and_liabilities);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(audit_suite());
}
