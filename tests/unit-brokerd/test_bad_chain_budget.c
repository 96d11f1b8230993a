/* The per-merchant budget of wasted hashes (brokerd/bad_chain_budget.c) on a simulated clock:
 * honest merchants never run dry, junk is limited to burst + rate * time whether it comes one
 * Redeem at a time or many at once, merchants are independent, the table stays bounded. */
#include <check.h>
#include <string.h>

#include "bad_chain_budget.h"
#include "../check_run.h"

static void mid_of(int k, uint8_t mid[MP_ID_LEN])
{
	memset(mid, 0, MP_ID_LEN);
	mid[0] = (uint8_t)k;
	mid[15] = 0x55;
}

START_TEST(honest_merchant_never_charged)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(100, 1000, 8);
	uint8_t m[MP_ID_LEN];
	mid_of(1, m);
	for (int i = 0; i < 1000; i++) { /* all at the same instant */
		ck_assert_int_eq(bad_chain_reserve(bb, m, 1000, 5), BAD_CHAIN_RESERVED);
		bad_chain_settle(bb, m, 1000, 0, 5);
	}
	ck_assert_int_eq(bad_chain_tokens(bb, m, 5), 1000);
	/* A cost above the burst passes on a full bucket. */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 50000, 5), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, m, 50000, 0, 5);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 5), 1000);
	/* Nothing to hash is never refused and never charged. */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 0, 5), BAD_CHAIN_RESERVED);
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(junk_is_charged_and_refills_at_the_rate)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(100, 1000, 8);
	uint8_t m[MP_ID_LEN];
	mid_of(2, m);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 0), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, m, 600, 600, 0);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 0), 400);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 0), BAD_CHAIN_EXHAUSTED);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 1999), BAD_CHAIN_EXHAUSTED); /* 599 */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 2000), BAD_CHAIN_RESERVED);
	/* Half of it wasted: the other half comes back. */
	bad_chain_settle(bb, m, 600, 300, 2000);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 2000), 300);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 100000), 1000); /* never above the burst */
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(concurrent_reservations_cannot_overdraw)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(100, 1000, 8);
	uint8_t m[MP_ID_LEN];
	mid_of(3, m);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 0), BAD_CHAIN_RESERVED);
	/* Still being hashed: the second one does not fit in what is left. */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 600, 0), BAD_CHAIN_EXHAUSTED);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 400, 0), BAD_CHAIN_RESERVED);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 1, 0), BAD_CHAIN_EXHAUSTED);
	bad_chain_settle(bb, m, 600, 0, 0);
	bad_chain_settle(bb, m, 400, 0, 0);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 0), 1000);
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(cost_above_burst_leaves_a_debt)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(100, 1000, 8);
	uint8_t m[MP_ID_LEN];
	mid_of(4, m);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 5000, 0), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, m, 5000, 5000, 0);
	ck_assert_int_eq(bad_chain_tokens(bb, m, 0), -4000);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 1, 40000), BAD_CHAIN_EXHAUSTED); /* 0 */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 1, 40010), BAD_CHAIN_RESERVED);  /* 1 */
	/* A cost above the burst waits for a full bucket. */
	ck_assert_int_eq(bad_chain_reserve(bb, m, 5000, 49000), BAD_CHAIN_EXHAUSTED);
	ck_assert_int_eq(bad_chain_reserve(bb, m, 5000, 50010), BAD_CHAIN_RESERVED);
	bad_chain_budget_free(bb);
}
END_TEST

/* Junk sent as fast as accepted for 100 s costs at most burst + rate * 100 s hashes. */
START_TEST(junk_over_time_is_bounded)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(1000, 50000, 8);
	uint8_t m[MP_ID_LEN];
	mid_of(5, m);
	uint64_t wasted = 0;
	for (uint64_t t = 0; t <= 100000; t += 10)
		for (int k = 0; k < 5; k++) /* five at once */
			if (bad_chain_reserve(bb, m, 3000, t) == BAD_CHAIN_RESERVED) {
				bad_chain_settle(bb, m, 3000, 3000, t + 5);
				wasted += 3000;
			}
	ck_assert_uint_le(wasted, 50000 + 1000 * 100);
	ck_assert_uint_ge(wasted, 1000 * 100); /* and the rate is really granted */
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(merchants_are_independent)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(1, 1000, 8);
	uint8_t junk[MP_ID_LEN], honest[MP_ID_LEN];
	mid_of(6, junk);
	mid_of(7, honest);
	ck_assert_int_eq(bad_chain_reserve(bb, junk, 1000, 0), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, junk, 1000, 1000, 0);
	ck_assert_int_eq(bad_chain_reserve(bb, junk, 10, 0), BAD_CHAIN_EXHAUSTED);
	ck_assert_int_eq(bad_chain_reserve(bb, honest, 1000, 0), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, honest, 1000, 0, 0);
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(table_is_bounded_and_forgets_only_full_buckets)
{
	struct bad_chain_budget *bb = bad_chain_budget_new(100, 1000, 2);
	uint8_t a[MP_ID_LEN], b[MP_ID_LEN], c[MP_ID_LEN];
	mid_of(8, a);
	mid_of(9, b);
	mid_of(10, c);
	ck_assert_int_eq(bad_chain_reserve(bb, a, 1000, 0), BAD_CHAIN_RESERVED);
	bad_chain_settle(bb, a, 1000, 1000, 0);
	ck_assert_int_eq(bad_chain_reserve(bb, b, 500, 0), BAD_CHAIN_RESERVED); /* in flight */
	/* Both slots owe or hold a reservation: a third merchant finds no slot. */
	ck_assert_int_eq(bad_chain_reserve(bb, c, 10, 0), BAD_CHAIN_TABLE_FULL);
	/* a's debt is not forgotten while it lasts. */
	ck_assert_int_eq(bad_chain_reserve(bb, c, 10, 9000), BAD_CHAIN_TABLE_FULL);
	ck_assert_int_eq(bad_chain_tokens(bb, a, 9000), 900);
	/* Once a's bucket is full again, its slot is reused. */
	ck_assert_int_eq(bad_chain_reserve(bb, c, 10, 10001), BAD_CHAIN_RESERVED);
	ck_assert_int_eq(bad_chain_tokens(bb, c, 10001), 990);
	bad_chain_settle(bb, b, 500, 0, 10001);
	ck_assert_int_eq(bad_chain_tokens(bb, b, 10001), 1000);
	bad_chain_budget_free(bb);
}
END_TEST

START_TEST(bad_parameters_refused)
{
	ck_assert(bad_chain_budget_new(0, 10, 1) == NULL);
	ck_assert(bad_chain_budget_new(10, 0, 1) == NULL);
	ck_assert(bad_chain_budget_new(10, 10, 0) == NULL);
	ck_assert(bad_chain_budget_new((uint64_t)1 << 41, 10, 1) == NULL);
	ck_assert(bad_chain_budget_new(10, (uint64_t)1 << 51, 1) == NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bad_chain_budget");
	TCase *tc = tcase_create("buckets");
	tcase_add_test(tc, honest_merchant_never_charged);
	tcase_add_test(tc, junk_is_charged_and_refills_at_the_rate);
	tcase_add_test(tc, concurrent_reservations_cannot_overdraw);
	tcase_add_test(tc, cost_above_burst_leaves_a_debt);
	tcase_add_test(tc, junk_over_time_is_bounded);
	tcase_add_test(tc, merchants_are_independent);
	tcase_add_test(tc, table_is_bounded_and_forgets_only_full_buckets);
	tcase_add_test(tc, bad_parameters_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
