/* The redemption lag kept in memory (merchantd/redeem_lag.c), step by step as batch.c,
 * redeem_build.c and redeemer.c drive it: the first durable Pay above the redeemed end sets
 * the time and later Pays keep it; a credit of everything clears it and the next Pay starts it
 * again (not the credited Pay's time); a credit up to a Redeem's claim moves it to the first
 * Pay made durable above the claim; a step or partial credit leaves it (the lag reads high,
 * never low); a channel unredeemed with no time takes its next Pay's; the oldest over a table
 * skips channels with nothing unredeemed. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "redeem_lag.h"
#include "../check_run.h"

/* A Pay at index j made durable at time at, as batch.c's make_durable does. */
static void pay(struct channel *ch, uint32_t j, uint64_t at)
{
	redeem_lag_paid(ch, j, at);
	ch->durable_last = j;
}

/* The broker credited up to end, as redeemer.c's apply_results does. */
static void credit(struct channel *ch, uint32_t end)
{
	ch->redeemed_end = end;
	redeem_lag_credited(ch);
}

static uint64_t oldest_of(struct channel *ch)
{
	struct table t;
	ck_assert(table_init(&t, 4));
	channel_insert(&t, ch);
	uint64_t at = redeem_lag_oldest(&t);
	free(t.buckets); /* the channel is the test's */
	return at;
}

START_TEST(first_pay_sets_the_time_and_a_full_credit_clears_it)
{
	struct channel ch = {0};
	ck_assert_uint_eq(oldest_of(&ch), 0);
	pay(&ch, 5, 100);
	pay(&ch, 9, 105);
	ck_assert_uint_eq(oldest_of(&ch), 100);
	redeem_lag_claimed(&ch); /* up to 9 */
	credit(&ch, 9);
	ck_assert_uint_eq(oldest_of(&ch), 0);
	pay(&ch, 12, 200); /* the next Pay starts it again */
	ck_assert_uint_eq(oldest_of(&ch), 200);
}
END_TEST

START_TEST(credit_up_to_the_claim_moves_it_to_the_first_pay_above)
{
	struct channel ch = {0};
	pay(&ch, 5, 100);
	redeem_lag_claimed(&ch); /* claims up to 5 */
	pay(&ch, 7, 150);	 /* while the Redeem is in flight */
	pay(&ch, 8, 160);
	credit(&ch, 5);
	ck_assert_uint_eq(oldest_of(&ch), 150);
	redeem_lag_claimed(&ch); /* the next Redeem, up to 8 */
	credit(&ch, 8);
	ck_assert_uint_eq(oldest_of(&ch), 0);
}
END_TEST

START_TEST(a_step_or_partial_credit_leaves_it_high)
{
	struct channel ch = {0};
	pay(&ch, 5, 100);
	pay(&ch, 50, 120);
	credit(&ch, 20); /* a step: no claim up to the durable point */
	ck_assert_uint_eq(oldest_of(&ch), 100);
	redeem_lag_claimed(&ch); /* up to 50 */
	pay(&ch, 60, 130);
	credit(&ch, 40); /* less than claimed (a partial credit) */
	ck_assert_uint_eq(oldest_of(&ch), 100);
	credit(&ch, 50); /* the rest of the claim */
	ck_assert_uint_eq(oldest_of(&ch), 130);
}
END_TEST

START_TEST(an_unredeemed_channel_without_a_time_takes_the_next)
{
	struct channel ch = {.durable_last = 5}; /* as a load that found no journal row */
	ck_assert_uint_eq(oldest_of(&ch), 0);
	pay(&ch, 6, 300);
	ck_assert_uint_eq(oldest_of(&ch), 300);
}
END_TEST

START_TEST(oldest_over_channels_skips_those_fully_redeemed)
{
	struct table t;
	ck_assert(table_init(&t, 8));
	struct channel a = {.id = {1}}, b = {.id = {2}}, c = {.id = {3}};
	pay(&a, 3, 500);
	pay(&b, 3, 400);
	pay(&c, 3, 300);
	credit(&c, 3); /* c's time is older but it is fully redeemed */
	channel_insert(&t, &a);
	channel_insert(&t, &b);
	channel_insert(&t, &c);
	ck_assert_uint_eq(redeem_lag_oldest(&t), 400);
	free(t.buckets); /* the channels are the test's */
}
END_TEST

static Suite *lag_suite(void)
{
	Suite *s = suite_create("merchantd redemption lag");
	TCase *tc = tcase_create("lag");
	tcase_add_test(tc, first_pay_sets_the_time_and_a_full_credit_clears_it);
	tcase_add_test(tc, credit_up_to_the_claim_moves_it_to_the_first_pay_above);
	tcase_add_test(tc, a_step_or_partial_credit_leaves_it_high);
	tcase_add_test(tc, an_unredeemed_channel_without_a_time_takes_the_next);
	tcase_add_test(tc, oldest_over_channels_skips_those_fully_redeemed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(lag_suite());
}
