/* Settlement of custody chains at the broker, with the real daemons (deploy/mpnet). The test
 * acts as merchants m1, m2 and m3 (their keys and TLS certificates from the mpnet folder),
 * signs Handoffs by hand for a channel issued with holder0 = m1, and redeems with custody
 * evidence: honest chains pay each merchant exactly its range, and each conflict kind lands in
 * the conflicts table with the right liable signer while honest merchants are still paid. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static struct tmerchant m1, m2, m3;

/* The Redeem hash budget of this suite: one new custody chain of a 100-unit channel fits, two do
 * not (each may cost n hashes). */
#define HASH_BUDGET "150"

static void setup_net(void)
{
	setenv("MP_HASH_BUDGET", HASH_BUDGET, 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	tmerchant_load(&m3, &net, "m3");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	tmerchant_free(&m3);
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

START_TEST(chain_m1_m2_m3_m1_pays_each_its_range)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex),
		before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	/* Paid: 10 at m1, 30 at m2, 30 at m3, 20 at m1 again: 90 units. */
	MpSigned *h[3];
	h[0] = tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = tchan_handoff(&c, 2, &m2, &m3, 40, h[0], NULL);
	h[2] = tchan_handoff(&c, 3, &m3, &m1, 70, h[1], NULL);
	/* m1 first: both its epochs, with its complete record (signed 1, received 3). */
	struct cclaim c1[] = {{&c, 0, 10, h, 3}, {&c, 3, 90, h, 3}};
	cclaim_redeem_expect(&net, &m1, c1, 2, (MpCode[]){MP_ST(OK), MP_ST(OK)},
			     (uint64_t[]){10, 20});
	struct cclaim c2[] = {{&c, 1, 40, h, 2}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim c3[] = {{&c, 2, 70, h, 3}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 30);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 30);
	/* The epochs as stored: ranges and credits, summing to the 90 units paid. */
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(c.id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", hex);
	json_t *show = admin_ok(&net, "broker", "channel.show", params);
	json_t *epochs = json_object_get(show, "epochs");
	ck_assert_uint_eq(json_array_size(epochs), 4);
	static const int start[] = {0, 10, 40, 70}, end[] = {10, 40, 70, -1};
	static const int credited[] = {10, 40, 70, 90};
	const struct tmerchant *holder[] = {&m1, &m2, &m3, &m1};
	int64_t sum = 0;
	for (size_t e = 0; e < 4; e++) {
		json_t *ep = json_array_get(epochs, e);
		ck_assert_str_eq(json_str(ep, "merchant_id"), holder[e]->mid_hex);
		ck_assert_int_eq(json_int(ep, "start_index"), start[e]);
		if (end[e] < 0)
			ck_assert(json_is_null(json_object_get(ep, "end_index")));
		else
			ck_assert_int_eq(json_int(ep, "end_index"), end[e]);
		ck_assert_int_eq(json_int(ep, "credited_end"), credited[e]);
		sum += json_int(ep, "credited_amount");
	}
	ck_assert_int_eq(sum, 90);
	json_decref(show);
	/* A claim at or below the credited end again, in a new Redeem: DUPLICATE_OK. */
	struct cclaim again[] = {{&c, 1, 40, h, 2}};
	cclaim_redeem_expect(&net, &m2, again, 1, (MpCode[]){MP_ST(DUPLICATE_OK)}, (uint64_t[]){0});
	/* No conflicts for an honest chain; the list is an array even when empty. */
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	stmts_free(h, 3);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(epoch_above_zero_needs_custody)
{
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* Without custody nobody holds epoch 1; with a chain naming m2, m3 does not either. */
	struct cclaim bare[] = {{&c, 1, 20, NULL, 0}};
	cclaim_redeem_expect(&net, &m2, bare, 1, (MpCode[]){MP_ST(NOT_HOLDER)}, (uint64_t[]){0});
	struct cclaim wrong[] = {{&c, 1, 20, h, 1}};
	cclaim_redeem_expect(&net, &m3, wrong, 1, (MpCode[]){MP_ST(NOT_HOLDER)}, (uint64_t[]){0});
	/* A chain with a broken signature changes nothing. */
	h[0]->signature.data[5] ^= 1;
	cclaim_redeem_expect(&net, &m2, wrong, 1, (MpCode[]){MP_ST(BAD_SIG)}, (uint64_t[]){0});
	h[0]->signature.data[5] ^= 1;
	cclaim_redeem_expect(&net, &m2, wrong, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

/* Both branches of a fork are paid (docs/custody.md "Forks"; the whole collection order is
 * test_conflicts' fork_both_branches_paid_excess_from_pending_bond_reserve): m3's 20 units
 * that m2 was also credited are collected from m1 (its pending credit, then the bond posted
 * here), the other 20 come from the escrow. */
static int64_t bond_of_m1(void)
{
	return net_merchant_balance(&net, m1.mid_hex, "merchant_bond");
}

START_TEST(double_handoff_is_recorded_both_branches_paid)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	net_post_bond(&net, m1.mid_hex, 20);
	int64_t before1 = net_pending(&net, m1.mid_hex) + bond_of_m1();
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	/* m1 hands epoch 1 to m2 and again to m3. */
	MpSigned *a[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *b[1] = {tchan_handoff(&c, 1, &m1, &m3, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, a, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct cclaim c3[] = {{&c, 1, 50, b, 1}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){40});
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "double_handoff", 1, &m1);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 40);
	ck_assert_int_eq(before1 - (net_pending(&net, m1.mid_hex) + bond_of_m1()), 20);
	/* A third Handoff 1, to m2 again: m2 holds one epoch 1, the first to m2 defines it, and its
	 * claim with this one is credited there; (30, 35] is on m3's branch too: from m1. */
	MpSigned *again[1] = {tchan_handoff(&c, 1, &m1, &m2, 12, NULL, NULL)};
	struct cclaim c2b[] = {{&c, 1, 35, again, 1}};
	cclaim_redeem_expect(&net, &m2, c2b, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){5});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 25);
	ck_assert_int_eq(before1 - (net_pending(&net, m1.mid_hex) + bond_of_m1()), 25);
	stmts_free(again, 1);
	stmts_free(a, 1);
	stmts_free(b, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(claim_above_own_handoff_is_recorded)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *h[2];
	h[0] = tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = tchan_handoff(&c, 2, &m2, &m3, 40, h[0], NULL);
	/* m2 claims epoch 1 at 50, above its own Handoff 2 at 40. */
	struct cclaim above[] = {{&c, 1, 50, h, 2}};
	MpSigned *s = cclaim_redeem(&m2, above, 1);
	MpEnvelope *resp = redeem_as(&net, &m2, s);
	expect_claim_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 2");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "claim_above_handoff", 1, &m2);
	ck_assert_int_eq(json_int(json_array_get(conf, 0), "claim_index"), 50);
	ck_assert_str_eq(json_str(json_array_get(conf, 0), "claimant"), m2.mid_hex);
	json_decref(conf);
	/* Within its range m2 is paid; m3 is paid its own range. */
	struct cclaim fair[] = {{&c, 1, 40, h, 2}};
	cclaim_redeem_expect(&net, &m2, fair, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim c3[] = {{&c, 2, 60, h, 2}};
	cclaim_redeem_expect(&net, &m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 20);
	stmts_free(h, 2);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(omitted_custody_is_recorded)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* m1 leaves out the Handoff it signed and claims past it: both recorded, nothing paid
	 * above 10. */
	struct cclaim hide[] = {{&c, 0, 30, NULL, 0}};
	MpSigned *s = cclaim_redeem(&m1, hide, 1);
	MpEnvelope *resp = redeem_as(&net, &m1, s);
	expect_claim_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 1");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "omitted_custody", 1, &m1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	json_decref(conf);
	/* Its own range is still paid. */
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	cclaim_redeem_expect(&net, &m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(bad_w_at_is_recorded)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	uint8_t junk[MP_HASH_LEN];
	memset(junk, 0x6a, sizeof(junk));
	MpSigned *bad[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, junk)};
	/* m2 cannot be paid on a Handoff whose word is false; m1 signed it and is liable. */
	struct cclaim c2[] = {{&c, 1, 30, bad, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(BAD_CHAIN)}, (uint64_t[]){0});
	json_t *conf = channel_conflicts(&net, c.id);
	expect_conflict(conf, "bad_w_at", 1, &m1);
	json_decref(conf);
	/* The false Handoff was not stored: m1's epoch 0 is not ended by it. */
	struct cclaim c1[] = {{&c, 0, 20, NULL, 0}};
	cclaim_redeem_expect(&net, &m1, c1, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 20);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 0);
	stmts_free(bad, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(handoff_learned_late_exposes_an_earlier_claim)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	tchan_issue(&net, &c, N, &m1);
	/* m1 claims epoch 0 at 30 while the broker knows no Handoff: credited 30. */
	struct cclaim early[] = {{&c, 0, 30, NULL, 0}};
	cclaim_redeem_expect(&net, &m1, early, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	/* m2 then shows m1's Handoff 1 at 10: recorded against m1; m2 is paid its range. */
	MpSigned *h[1] = {tchan_handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 50, h, 1}};
	cclaim_redeem_expect(&net, &m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){40});
	json_t *conf = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conf), 1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	ck_assert_int_eq(json_int(json_array_get(conf, 0), "claim_index"), 30);
	json_decref(conf);
	/* Nothing more for m1 in epoch 0. */
	struct cclaim more[] = {{&c, 0, 35, h, 1}};
	cclaim_redeem_expect(&net, &m1, more, 1, (MpCode[]){MP_ST(OUT_OF_RANGE)}, (uint64_t[]){0});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 30);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 40);
	stmts_free(h, 1);
	tchan_release(&c);
	audit_clean();
}
END_TEST

START_TEST(custody_above_hash_budget_is_limit)
{
	int64_t before2 = net_pending(&net, m2.mid_hex);
	struct tchan a, b;
	tchan_issue(&net, &a, N, &m1);
	tchan_issue(&net, &b, N, &m1);
	MpSigned *ha[1] = {tchan_handoff(&a, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *hb[1] = {tchan_handoff(&b, 1, &m1, &m2, 10, NULL, NULL)};
	/* Two new chains could cost 2 x 100 hashes: LIMIT, nothing stored or credited. */
	struct cclaim both[] = {{&a, 1, 20, ha, 1}, {&b, 1, 20, hb, 1}};
	MpSigned *s = cclaim_redeem(&m2, both, 2);
	MpEnvelope *resp = redeem_as(&net, &m2, s);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(LIMIT));
	ck_assert_uint_eq(resp->redeem_resp->n_results, 0);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 0);
	/* Split, each fits. */
	cclaim_redeem_expect(&net, &m2, both, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	cclaim_redeem_expect(&net, &m2, both + 1, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	stmts_free(ha, 1);
	stmts_free(hb, 1);
	tchan_release(&a);
	tchan_release(&b);
	audit_clean();
}
END_TEST

static Suite *custody_settle_suite(void)
{
	Suite *s = suite_create("custody_settle");
	TCase *tc = tcase_create("settle");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, chain_m1_m2_m3_m1_pays_each_its_range);
	tcase_add_test(tc, epoch_above_zero_needs_custody);
	tcase_add_test(tc, double_handoff_is_recorded_both_branches_paid);
	tcase_add_test(tc, claim_above_own_handoff_is_recorded);
	tcase_add_test(tc, omitted_custody_is_recorded);
	tcase_add_test(tc, bad_w_at_is_recorded);
	tcase_add_test(tc, handoff_learned_late_exposes_an_earlier_claim);
	tcase_add_test(tc, custody_above_hash_budget_is_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(custody_settle_suite());
}
