/* walletd's chain store (walletd/chainstore.c): w_j from checkpoints equals the straight walk
 * for every j, in any order; sequential paying costs about one hash per unit. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "chainstore.h"
#include "util.h"
#include "../check_run.h"
#include "../secret_heap.h"

static struct mp_hasher *h;

static void setup(void)
{
	h = mp_hasher_new();
	ck_assert_ptr_nonnull(h);
}

static void teardown(void)
{
	mp_hasher_free(h);
}

/* Every word of a chain (interval 1), and only the checkpoints of the interval under test. */
struct fixture {
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN];
	uint32_t len, interval;
	uint8_t (*all)[MP_HASH_LEN];
	uint8_t (*cp)[MP_HASH_LEN];
	bool *has_cp;
	unsigned fetches;
	bool fail_fetch;
};

static int keep_all(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct fixture *f = arg;
	memcpy(f->all[index], w, MP_HASH_LEN);
	return 0;
}

static int keep_checkpoint(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct fixture *f = arg;
	ck_assert_uint_le(index, f->len);
	memcpy(f->cp[index], w, MP_HASH_LEN);
	f->has_cp[index] = true;
	return 0;
}

static bool fetch(void *arg, uint32_t index, uint8_t w[MP_HASH_LEN])
{
	struct fixture *f = arg;
	f->fetches++;
	if (f->fail_fetch || index > f->len || !f->has_cp[index])
		return false;
	memcpy(w, f->cp[index], MP_HASH_LEN);
	return true;
}

static void fixture_init(struct fixture *f, uint32_t len, uint32_t interval)
{
	memset(f, 0, sizeof(*f));
	f->len = len;
	f->interval = interval;
	for (unsigned i = 0; i < MP_SEED_LEN; i++)
		f->seed[i] = (uint8_t)(i * 7 + len);
	for (unsigned i = 0; i < MP_NONCE_LEN; i++)
		f->nonce[i] = (uint8_t)(i * 13 + interval);
	f->all = calloc((size_t)len + 1, MP_HASH_LEN);
	f->cp = calloc((size_t)len + 1, MP_HASH_LEN);
	f->has_cp = calloc((size_t)len + 1, sizeof(bool));
	ck_assert(f->all && f->cp && f->has_cp);
	uint8_t root1[MP_HASH_LEN], root2[MP_HASH_LEN];
	ck_assert_int_eq(mp_chain_generate(h, f->seed, f->nonce, len, 1, keep_all, f, root1), 0);
	ck_assert_int_eq(
	    mp_chain_generate(h, f->seed, f->nonce, len, interval, keep_checkpoint, f, root2), 0);
	ck_assert_mem_eq(root1, root2, MP_HASH_LEN);
	ck_assert_mem_eq(root1, f->all[0], MP_HASH_LEN);
	/* The straight walk from the top: SHA256(0x53 || seed || nonce) hashed down. */
	uint8_t top[MP_HASH_LEN], x[MP_HASH_LEN];
	mp_chain_top(h, f->seed, f->nonce, top);
	ck_assert_mem_eq(top, f->all[len], MP_HASH_LEN);
	for (uint32_t j = 0; j <= len; j += len / 7 + 1) {
		mp_chain_walk(h, f->nonce, len, top, j, x);
		ck_assert_mem_eq(x, f->all[j], MP_HASH_LEN);
	}
}

static void fixture_free(struct fixture *f)
{
	free(f->all);
	free(f->cp);
	free(f->has_cp);
}

static void expect_word(struct wchain *c, struct fixture *f, uint32_t j)
{
	uint8_t w[MP_HASH_LEN];
	ck_assert_msg(wchain_word(c, h, j, fetch, f, w), "len %u interval %u: no word at %u",
		      f->len, f->interval, j);
	ck_assert_msg(memcmp(w, f->all[j], MP_HASH_LEN) == 0,
		      "len %u interval %u: word %u differs from the straight walk", f->len,
		      f->interval, j);
}

static const struct {
	uint32_t len, interval;
} shapes[] = {
    {1, 256},	{2, 1},	     {255, 256}, {256, 256}, {257, 256},  {511, 256},
    {512, 256}, {1000, 256}, {1000, 7},	 {1000, 1},  {100, 1000}, {4097, 4096},
};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

START_TEST(sequential_equals_walk)
{
	struct fixture f;
	fixture_init(&f, shapes[_i].len, shapes[_i].interval);
	struct wchain c;
	wchain_init(&c, f.nonce, f.len, f.interval);
	for (uint32_t j = 0; j <= f.len; j++)
		expect_word(&c, &f, j);
	/* About one hash per unit: each block is hashed once, from its top checkpoint. */
	ck_assert_uint_le(c.hashes, f.len);
	ck_assert_uint_le(f.fetches, f.len / f.interval + 3);
	wchain_free(&c);
	fixture_free(&f);
}
END_TEST

START_TEST(any_order_equals_walk)
{
	struct fixture f;
	fixture_init(&f, shapes[_i].len, shapes[_i].interval);
	struct wchain c;
	wchain_init(&c, f.nonce, f.len, f.interval);
	for (uint32_t j = f.len + 1; j-- > 0;) /* descending */
		expect_word(&c, &f, j);
	unsigned state = 12345;
	for (unsigned k = 0; k < 2000; k++) { /* pseudo-random */
		state = state * 1103515245u + 12345u;
		expect_word(&c, &f, (state >> 8) % (f.len + 1));
	}
	wchain_free(&c);
	fixture_free(&f);
}
END_TEST

START_TEST(checkpoints_cost_no_hash)
{
	struct fixture f;
	fixture_init(&f, 1000, 256);
	struct wchain c;
	wchain_init(&c, f.nonce, f.len, f.interval);
	ck_assert(wchain_is_checkpoint(&c, 0));
	ck_assert(wchain_is_checkpoint(&c, 256));
	ck_assert(wchain_is_checkpoint(&c, 1000));
	ck_assert(!wchain_is_checkpoint(&c, 999));
	expect_word(&c, &f, 0);
	expect_word(&c, &f, 768);
	expect_word(&c, &f, 1000);
	ck_assert_uint_eq(c.hashes, 0);
	expect_word(&c, &f, 1); /* block (0, 256]: 255 hashes from the checkpoint at 256 */
	ck_assert_uint_eq(c.hashes, 255);
	expect_word(&c, &f, 200);
	ck_assert_uint_eq(c.hashes, 255);
	expect_word(&c, &f, 999); /* the last, short block (768, 1000] */
	ck_assert_uint_eq(c.hashes, 255 + 231);
	wchain_free(&c);
	fixture_free(&f);
}
END_TEST

START_TEST(refusals)
{
	struct fixture f;
	fixture_init(&f, 600, 256);
	struct wchain c;
	wchain_init(&c, f.nonce, f.len, f.interval);
	uint8_t w[MP_HASH_LEN];
	ck_assert(!wchain_word(&c, h, 601, fetch, &f, w));
	ck_assert(!wchain_word(&c, h, UINT32_MAX, fetch, &f, w));
	/* A failed fetch leaves no half-filled block behind. */
	f.fail_fetch = true;
	ck_assert(!wchain_word(&c, h, 300, fetch, &f, w));
	ck_assert(!wchain_word(&c, h, 512, fetch, &f, w));
	f.fail_fetch = false;
	expect_word(&c, &f, 300);
	f.has_cp[512] = false;				  /* a missing checkpoint */
	ck_assert(wchain_word(&c, h, 301, fetch, &f, w)); /* cached block still serves */
	wchain_free(&c);
	wchain_init(&c, f.nonce, f.len, f.interval);
	ck_assert(!wchain_word(&c, h, 301, fetch, &f, w));
	wchain_free(&c);
	fixture_free(&f);
}
END_TEST

/* The cached block holds words not paid yet: freed wiped (secret_heap.h records OpenSSL's
 * heap, which the cache uses). */
START_TEST(cached_words_are_wiped_when_freed)
{
	struct fixture f;
	fixture_init(&f, 1000, 256);
	struct wchain c;
	wchain_init(&c, f.nonce, f.len, f.interval);
	expect_word(&c, &f, 300); /* fills the block (256, 512] */
	secret_heap_watch(f.all[400], MP_HASH_LEN);
	wchain_free(&c);
	ck_assert_ptr_null(c.words);
	ck_assert_uint_eq(secret_heap_hits, 0);
	fixture_free(&f);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("walletd chainstore");
	TCase *tc = tcase_create("chainstore");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, sequential_equals_walk, 0, N_SHAPES);
	tcase_add_loop_test(tc, any_order_equals_walk, 0, N_SHAPES);
	tcase_add_test(tc, checkpoints_cost_no_hash);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, cached_words_are_wiped_when_freed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (!secret_heap_install())
		return 1;
	return mp_check_run(suite());
}
