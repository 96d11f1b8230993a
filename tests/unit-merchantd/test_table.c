/* merchantd's hash tables (merchantd/table.c): they grow as entries arrive, one bucket split
 * per insert, so the buckets never hold more than one entry each on average; every entry
 * stays findable across splits and reallocations of the bucket array;
 * a walk by bucket index that resumes after the table grew (as redeem_build.c's pass does)
 * meets every entry it had not met, also when it stops inside a bucket and splits happen
 * between its steps; orders grow the same way; a bucket count asked for is
 * rounded up to a power of two. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "../check_run.h"

/* n channels with distinct ids (a counter in the first bytes, random-looking after). */
static struct channel *channels_make(size_t n)
{
	struct channel *chs = calloc(n, sizeof(*chs));
	ck_assert_ptr_nonnull(chs);
	for (size_t i = 0; i < n; i++) {
		uint64_t x = i * 0x9E3779B97F4A7C15ULL + 1;
		memcpy(chs[i].id, &i, sizeof(i));
		memcpy(chs[i].id + 8, &x, sizeof(x));
	}
	return chs;
}

START_TEST(grows_and_finds_every_channel)
{
	enum { N = 100000 };
	struct channel *chs = channels_make(N);
	struct table t;
	ck_assert(table_init(&t, 16));
	for (size_t i = 0; i < N; i++) {
		channel_insert(&t, &chs[i]);
		ck_assert_uint_le(t.count, t.nbuckets);
	}
	ck_assert_uint_eq(t.count, N);
	ck_assert_uint_eq(t.nbuckets, N); /* one bucket split per insert past the first 16 */
	for (size_t i = 0; i < N; i++)
		ck_assert_ptr_eq(channel_find(&t, chs[i].id), &chs[i]);
	uint8_t absent[MP_ID_LEN];
	memset(absent, 0xAB, sizeof(absent));
	ck_assert_ptr_null(channel_find(&t, absent));
	size_t walked = 0;
	TABLE_FOREACH(&t, struct channel, ch) walked++;
	ck_assert_uint_eq(walked, N);
	free(t.buckets); /* the channels are the test's */
	free(chs);
}
END_TEST

/* Walks buckets [from, to) of t, marking each channel met (redeem_pass = 1). */
static void walk(struct table *t, size_t from, size_t to)
{
	for (size_t b = from; b < to && b < t->nbuckets; b++)
		for (struct channel *ch = t->buckets[b]; ch; ch = ch->next)
			ch->redeem_pass = 1;
}

START_TEST(a_walk_resumed_after_growth_meets_every_channel)
{
	enum { FIRST = 1000, MORE = 5000 };
	struct channel *chs = channels_make(FIRST + MORE);
	struct table t;
	ck_assert(table_init(&t, 1024));
	for (size_t i = 0; i < FIRST; i++)
		channel_insert(&t, &chs[i]);
	size_t half = t.nbuckets / 2;
	walk(&t, 0, half);
	for (size_t i = FIRST; i < FIRST + MORE; i++)
		channel_insert(&t, &chs[i]); /* splits 4,976 buckets */
	ck_assert_uint_eq(t.nbuckets, FIRST + MORE);
	walk(&t, half, t.nbuckets); /* the pass resumes at its bucket index */
	for (size_t i = 0; i < FIRST; i++)
		ck_assert_msg(chs[i].redeem_pass == 1, "channel %zu present before was not met", i);
	free(t.buckets);
	free(chs);
}
END_TEST

START_TEST(orders_grow_and_stay_findable)
{
	enum { N = 3000 };
	struct order *os = calloc(N, sizeof(*os));
	ck_assert_ptr_nonnull(os);
	struct table t;
	ck_assert(table_init(&t, 3)); /* rounded up to 4 */
	ck_assert_uint_eq(t.nbuckets, 4);
	for (size_t i = 0; i < N; i++) {
		os[i].ref_len = (uint8_t)(1 + i % 12); /* refs of several lengths */
		for (size_t k = 0; k < os[i].ref_len; k++)
			os[i].ref[k] = (uint8_t)((i >> (8 * (k % 2))) + k);
		if (order_find(&t, os[i].ref, os[i].ref_len))
			continue; /* two short refs can be equal: keep the first */
		order_insert(&t, &os[i]);
	}
	/* 250 refs of one byte take 64 values: 186 dropped, 2,814 orders in */
	ck_assert_uint_eq(t.count, 2814);
	ck_assert_uint_eq(t.nbuckets, t.count);
	const uint8_t absent[] = {0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA, 0xF9,
				  0xF8, 0xF7, 0xF6, 0xF5, 0xF4, 0xF3};
	ck_assert_ptr_null(order_find(&t, absent, sizeof(absent)));
	size_t walked = 0;
	TABLE_FOREACH(&t, struct order, o)
	{
		ck_assert_ptr_eq(order_find(&t, o->ref, o->ref_len), o);
		walked++;
	}
	ck_assert_uint_eq(walked, t.count);
	free(t.buckets);
	free(os);
}
END_TEST

/* The redemption pass stops inside a bucket ("this bucket again next time") and resumes at
 * that bucket, skipping what it marked; splits happen between its steps. */
START_TEST(a_walk_stopped_inside_a_bucket_meets_every_channel)
{
	enum { FIRST = 3000, MORE = 200, STEP = 7 };
	struct channel *chs = channels_make(FIRST + MORE * 20);
	struct table t;
	ck_assert(table_init(&t, 1024));
	for (size_t i = 0; i < FIRST; i++)
		channel_insert(&t, &chs[i]);
	size_t bucket = 0, inserted = FIRST;
	while (bucket < t.nbuckets) {
		unsigned marked = 0; /* STEP channels a step, then stop where it is */
		for (; bucket < t.nbuckets && marked < STEP; bucket++) {
			for (struct channel *ch = t.buckets[bucket]; ch && marked < STEP;
			     ch = ch->next)
				if (ch->redeem_pass != 1) {
					ch->redeem_pass = 1;
					marked++;
				}
			if (marked == STEP)
				break; /* this bucket again next time */
		}
		for (size_t k = 0; k < MORE / 20 && inserted < FIRST + MORE * 20; k++)
			channel_insert(&t, &chs[inserted++]); /* splits between the steps */
	}
	ck_assert_uint_gt(inserted, FIRST + MORE);
	for (size_t i = 0; i < FIRST; i++)
		ck_assert_msg(chs[i].redeem_pass == 1, "channel %zu present before was not met", i);
	free(t.buckets);
	free(chs);
}
END_TEST

static Suite *table_suite(void)
{
	Suite *s = suite_create("merchantd tables");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, grows_and_finds_every_channel);
	tcase_add_test(tc, a_walk_resumed_after_growth_meets_every_channel);
	tcase_add_test(tc, a_walk_stopped_inside_a_bucket_meets_every_channel);
	tcase_add_test(tc, orders_grow_and_stay_findable);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(table_suite());
}
