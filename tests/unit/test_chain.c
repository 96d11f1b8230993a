/* Hash chains (common/chain.c): the MPAY/1 reference vectors and verify's refusals. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "util.h"
#include "../check_run.h"

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

/* One chain with every word kept, indexed 0..len. */
struct chain {
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t len;
	uint8_t (*w)[MP_HASH_LEN];
};

static int store_word(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct chain *c = arg;
	ck_assert_uint_le(index, c->len);
	memcpy(c->w[index], w, MP_HASH_LEN);
	return 0;
}

/* Generate from hex seed and nonce, keeping every word (checkpoint interval 1). */
static void chain_build(struct chain *c, const char *seed_hex, const char *nonce_hex, uint32_t len,
			int lineno)
{
	uint8_t seed[MP_SEED_LEN], root[MP_HASH_LEN];
	ck_assert_msg(mp_hex_decode(seed_hex, seed, sizeof(seed)), "line %d: bad seed", lineno);
	ck_assert_msg(mp_hex_decode(nonce_hex, c->nonce, sizeof(c->nonce)), "line %d: bad nonce",
		      lineno);
	free(c->w);
	c->len = len;
	c->w = calloc((size_t)len + 1, MP_HASH_LEN);
	ck_assert_ptr_nonnull(c->w);
	ck_assert_int_eq(mp_chain_generate(h, seed, c->nonce, len, 1, store_word, c, root), 0);
	ck_assert_mem_eq(root, c->w[0], MP_HASH_LEN);
	/* The top is SHA256(0x53 || seed || nonce). */
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, seed, c->nonce, top);
	ck_assert_mem_eq(top, c->w[len], MP_HASH_LEN);
}

/* Word k must equal the vector and verify against the root. */
static void chain_check(const struct chain *c, uint32_t k, const char *hex, int lineno)
{
	uint8_t want[MP_HASH_LEN];
	ck_assert_msg(c->w, "line %d: word before any case", lineno);
	ck_assert_msg(mp_hex_decode(hex, want, sizeof(want)), "line %d: bad hex", lineno);
	ck_assert_msg(k <= c->len, "line %d: index %u beyond len %u", lineno, k, c->len);
	ck_assert_msg(memcmp(c->w[k], want, MP_HASH_LEN) == 0, "line %d: word %u differs", lineno,
		      k);
	ck_assert_msg(mp_chain_verify(h, c->nonce, 0, c->w[0], k, want),
		      "line %d: word %u does not verify against the root", lineno, k);
}

START_TEST(reference_vectors)
{
	const char *dir = getenv("MP_VECTORS_DIR");
	ck_assert_msg(dir != NULL, "MP_VECTORS_DIR is not set");
	char path[4096];
	snprintf(path, sizeof(path), "%s/mpay1-chain.txt", dir);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);

	struct chain c = {0};
	uint32_t cap_index = 0;
	unsigned cases = 0, segments = 0, words = 0, seg_words = 0;
	char line[512], seed[80], nonce[80], hex[80];
	int lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		unsigned n, k, len, abs_j, rel;
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (sscanf(line, "case seed=%79s nonce=%79s n=%u", seed, nonce, &n) == 3) {
			chain_build(&c, seed, nonce, n, lineno);
			cases++;
		} else if (sscanf(line, "segment seed=%79s nonce=%79s cap_index=%u len=%u n=%u",
				  seed, nonce, &cap_index, &len, &n) == 5) {
			ck_assert_uint_eq(cap_index + len, n);
			chain_build(&c, seed, nonce, len, lineno);
			segments++;
		} else if (sscanf(line, "w %u %79s", &k, hex) == 2) {
			chain_check(&c, k, hex, lineno);
			words++;
		} else if (sscanf(line, "abs %u rel %u %79s", &abs_j, &rel, hex) == 3) {
			/* Absolute index j in a segment from cap index c is u_{j-c}. */
			ck_assert_uint_ge(abs_j, cap_index);
			ck_assert_uint_eq(rel, abs_j - cap_index);
			chain_check(&c, abs_j - cap_index, hex, lineno);
			seg_words++;
		} else {
			ck_abort_msg("%s:%d: unrecognised line '%s'", path, lineno, line);
		}
	}
	fclose(f);
	free(c.w);
	ck_assert_uint_eq(cases, 4);
	ck_assert_uint_eq(words, 20);
	ck_assert_uint_eq(segments, 1);
	ck_assert_uint_eq(seg_words, 6);
}
END_TEST

/* A 1000-unit chain with checkpoints every 256, recorded in callback order. */
#define RT_LEN	    1000
#define RT_INTERVAL 256
static const uint8_t rt_seed[MP_SEED_LEN] = {1, 2, 3};
static const uint8_t rt_nonce[MP_NONCE_LEN] = {9, 8, 7};

struct checkpoints {
	unsigned n;
	uint32_t index[16];
	uint8_t w[16][MP_HASH_LEN];
};

static int record_checkpoint(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct checkpoints *cp = arg;
	ck_assert_uint_lt(cp->n, 16);
	cp->index[cp->n] = index;
	memcpy(cp->w[cp->n], w, MP_HASH_LEN);
	cp->n++;
	return 0;
}

static struct chain rt;
static uint8_t rt_root[MP_HASH_LEN];

static void rt_setup(void)
{
	setup();
	memcpy(rt.nonce, rt_nonce, MP_NONCE_LEN);
	rt.len = RT_LEN;
	rt.w = calloc(RT_LEN + 1, MP_HASH_LEN);
	ck_assert_ptr_nonnull(rt.w);
	ck_assert_int_eq(
	    mp_chain_generate(h, rt_seed, rt_nonce, RT_LEN, 1, store_word, &rt, rt_root), 0);
}

static void rt_teardown(void)
{
	free(rt.w);
	rt.w = NULL;
	teardown();
}

START_TEST(round_trip_checkpoints)
{
	struct checkpoints cp = {0};
	uint8_t root[MP_HASH_LEN];
	ck_assert_int_eq(mp_chain_generate(h, rt_seed, rt_nonce, RT_LEN, RT_INTERVAL,
					   record_checkpoint, &cp, root),
			 0);
	ck_assert_mem_eq(root, rt_root, MP_HASH_LEN);
	/* Top down: len, then multiples of the interval, then 0. */
	static const uint32_t want[] = {1000, 768, 512, 256, 0};
	ck_assert_uint_eq(cp.n, 5);
	for (unsigned i = 0; i < cp.n; i++) {
		ck_assert_uint_eq(cp.index[i], want[i]);
		ck_assert_mem_eq(cp.w[i], rt.w[want[i]], MP_HASH_LEN);
		ck_assert(mp_chain_verify(h, rt_nonce, 0, root, cp.index[i], cp.w[i]));
	}
	ck_assert_mem_eq(cp.w[4], root, MP_HASH_LEN);
}
END_TEST

START_TEST(checkpoints_without_interval)
{
	/* Interval 0: only the top and the root are reported. */
	struct checkpoints cp = {0};
	uint8_t root[MP_HASH_LEN];
	ck_assert_int_eq(
	    mp_chain_generate(h, rt_seed, rt_nonce, RT_LEN, 0, record_checkpoint, &cp, root), 0);
	ck_assert_uint_eq(cp.n, 2);
	ck_assert_uint_eq(cp.index[0], RT_LEN);
	ck_assert_mem_eq(cp.w[0], rt.w[RT_LEN], MP_HASH_LEN);
	ck_assert_uint_eq(cp.index[1], 0);
	ck_assert_mem_eq(cp.w[1], rt_root, MP_HASH_LEN);
}
END_TEST

static int stop_at_512(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	(*(unsigned *)arg)++;
	return index == 512 ? 42 : 0;
}

START_TEST(checkpoint_callback_stops_generation)
{
	unsigned calls = 0;
	uint8_t root[MP_HASH_LEN];
	ck_assert_int_eq(
	    mp_chain_generate(h, rt_seed, rt_nonce, RT_LEN, RT_INTERVAL, stop_at_512, &calls, root),
	    42);
	ck_assert_uint_eq(calls, 3); /* 1000, 768, 512 */
}
END_TEST

START_TEST(every_word_verifies_against_root)
{
	for (uint32_t k = 0; k <= RT_LEN; k += 37)
		ck_assert(mp_chain_verify(h, rt_nonce, 0, rt_root, k, rt.w[k]));
	ck_assert(mp_chain_verify(h, rt_nonce, 0, rt_root, RT_LEN, rt.w[RT_LEN]));
}
END_TEST

START_TEST(tampered_payword_refused)
{
	uint8_t w[MP_HASH_LEN];
	memcpy(w, rt.w[500], MP_HASH_LEN);
	w[31] ^= 1;
	ck_assert(!mp_chain_verify(h, rt_nonce, 0, rt_root, 500, w));
	ck_assert(!mp_chain_verify(h, rt_nonce, 499, rt.w[499], 500, w));
}
END_TEST

START_TEST(wrong_nonce_refused)
{
	uint8_t nonce[MP_NONCE_LEN];
	memcpy(nonce, rt_nonce, MP_NONCE_LEN);
	nonce[15] ^= 0x80;
	ck_assert(!mp_chain_verify(h, nonce, 0, rt_root, 500, rt.w[500]));
	ck_assert(!mp_chain_verify(h, nonce, 499, rt.w[499], 500, rt.w[500]));
}
END_TEST

START_TEST(wrong_index_refused)
{
	ck_assert(!mp_chain_verify(h, rt_nonce, 0, rt_root, 501, rt.w[500]));
	ck_assert(!mp_chain_verify(h, rt_nonce, 0, rt_root, 499, rt.w[500]));
	ck_assert(!mp_chain_verify(h, rt_nonce, 10, rt.w[10], 12, rt.w[11]));
}
END_TEST

START_TEST(index_beyond_len_refused)
{
	/* The top claimed one position higher hashes to something that is not the root. */
	ck_assert(!mp_chain_verify(h, rt_nonce, 0, rt_root, RT_LEN + 1, rt.w[RT_LEN]));
	/* A word made up beyond the top. */
	uint8_t beyond[MP_HASH_LEN];
	mp_chain_link(h, rt_nonce, RT_LEN + 1, rt.w[RT_LEN], beyond);
	ck_assert(!mp_chain_verify(h, rt_nonce, 0, rt_root, RT_LEN + 1, beyond));
}
END_TEST

START_TEST(multi_unit_jump)
{
	const uint32_t a = 123;
	ck_assert(mp_chain_verify(h, rt_nonce, a, rt.w[a], a + 7, rt.w[a + 7]));
	ck_assert(mp_chain_verify(h, rt_nonce, a, rt.w[a], a, rt.w[a])); /* a == b: equal words */
	ck_assert(!mp_chain_verify(h, rt_nonce, a, rt.w[a], a, rt.w[a + 1]));
}
END_TEST

START_TEST(a_above_b_refused)
{
	/* Even with the arguments swapped from a valid pair. */
	ck_assert(mp_chain_verify(h, rt_nonce, 100, rt.w[100], 107, rt.w[107]));
	ck_assert(!mp_chain_verify(h, rt_nonce, 107, rt.w[107], 100, rt.w[100]));
	ck_assert(!mp_chain_verify(h, rt_nonce, 1, rt_root, 0, rt_root));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("chain");
	TCase *tc = tcase_create("vectors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, reference_vectors);
	suite_add_tcase(s, tc);

	tc = tcase_create("verify");
	tcase_add_checked_fixture(tc, rt_setup, rt_teardown);
	tcase_add_test(tc, round_trip_checkpoints);
	tcase_add_test(tc, checkpoints_without_interval);
	tcase_add_test(tc, checkpoint_callback_stops_generation);
	tcase_add_test(tc, every_word_verifies_against_root);
	tcase_add_test(tc, tampered_payword_refused);
	tcase_add_test(tc, wrong_nonce_refused);
	tcase_add_test(tc, wrong_index_refused);
	tcase_add_test(tc, index_beyond_len_refused);
	tcase_add_test(tc, multi_unit_jump);
	tcase_add_test(tc, a_above_b_refused);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
