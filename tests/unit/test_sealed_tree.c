/* The ciphertext hash and the BadKeyProof (common/sealed_tree.c, common/sealed_proof.c): the
 * streaming Merkle tree equals a plain recursive reading of the definition for every count up
 * to 70; every chunk's audit path checks, and at another index, in a tree of another size,
 * with a flipped byte of the chunk or the path, or a path too short or too long it does not;
 * the nonce prefix is the key's; a proof is PROVEN only for a key that matches key_hash and
 * does not open a chunk the hash names (OPENS for the honest key, NOT_THE_KEY, NOT_IN_OFFER,
 * MALFORMED otherwise). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "sealed.h"
#include "sealed_proof.h"
#include "sealed_tree.h"
#include "../check_run.h"

#define MAXN 70
#define H    MP_SEALED_HASH_LEN

static uint8_t chunk[MAXN][40]; /* "sealed" chunks of 10 + k % 30 bytes */
static uint8_t leaves[MAXN][H];

static size_t chunk_len(uint32_t k)
{
	return 10 + k % 30;
}

/* The definition read directly: leaf, node, and the split at the largest power of two. */
static void ref_leaf(uint32_t k, uint8_t out[H])
{
	uint8_t in[5 + 40] = {0x00, (uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8),
			      (uint8_t)k};
	memcpy(in + 5, chunk[k], chunk_len(k));
	SHA256(in, 5 + chunk_len(k), out);
}

static void ref_root(uint32_t from, uint32_t n, uint8_t out[H])
{
	if (n == 1) {
		ref_leaf(from, out);
		return;
	}
	uint32_t k = 1;
	while (k * 2 < n)
		k *= 2;
	uint8_t in[1 + 2 * H] = {0x01};
	ref_root(from, k, in + 1);
	ref_root(from + k, n - k, in + 1 + H);
	SHA256(in, sizeof(in), out);
}

static void ref_hash(uint32_t n, uint8_t out[H])
{
	uint8_t in[5 + H] = {0x02, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
			     (uint8_t)n};
	ref_root(0, n, in + 5);
	SHA256(in, sizeof(in), out);
}

static void streamed(uint32_t n, uint8_t out[H])
{
	struct mp_sealed_hash *h = mp_sealed_hash_new();
	ck_assert_ptr_nonnull(h);
	for (uint32_t k = 0; k < n; k++)
		ck_assert(mp_sealed_hash_add(h, chunk[k], chunk_len(k)));
	ck_assert(mp_sealed_hash_final(h, out));
	mp_sealed_hash_free(h);
}

static void setup(void)
{
	for (uint32_t k = 0; k < MAXN; k++) {
		for (size_t i = 0; i < sizeof(chunk[k]); i++)
			chunk[k][i] = (uint8_t)(k * 31 + i);
		ck_assert(mp_sealed_leaf(k, chunk[k], chunk_len(k), leaves[k]));
	}
}

START_TEST(streamed_tree_is_the_definition)
{
	for (uint32_t n = 1; n <= MAXN; n++) {
		uint8_t got[H], want[H];
		streamed(n, got);
		ref_hash(n, want);
		ck_assert_msg(!memcmp(got, want, H), "n = %u", n);
	}
}
END_TEST

static bool check(const uint8_t hash[H], uint32_t n, uint32_t k, const uint8_t *c, size_t len,
		  uint8_t (*path)[H], size_t path_len)
{
	return mp_sealed_path_check(hash, n, k, c, len, (const uint8_t(*)[H])path, path_len);
}

START_TEST(every_path_checks_and_nothing_else)
{
	for (uint32_t n = 1; n <= MAXN; n++) {
		uint8_t hash[H], other[H];
		streamed(n, hash);
		if (n > 1)
			streamed(n - 1, other);
		for (uint32_t k = 0; k < n; k++) {
			uint8_t path[MP_SEALED_PATH_MAX + 1][H];
			size_t len = mp_sealed_path((const uint8_t(*)[H])leaves, n, k, path);
			size_t cl = chunk_len(k);
			ck_assert_msg(check(hash, n, k, chunk[k], cl, path, len), "%u of %u", k, n);
			ck_assert(!check(hash, n + 1, k, chunk[k], cl, path, len));
			if (k + 1 < n)
				ck_assert(!check(hash, n, k + 1, chunk[k], cl, path, len));
			if (n > 1 && k < n - 1)
				ck_assert(!check(other, n - 1, k, chunk[k], cl, path, len));
			ck_assert(!check(hash, n, n, chunk[k], cl, path, len));
			chunk[k][0] ^= 1;
			ck_assert(!check(hash, n, k, chunk[k], cl, path, len));
			chunk[k][0] ^= 1;
			ck_assert(!check(hash, n, k, chunk[k], cl - 1, path, len));
			if (len) {
				path[len - 1][5] ^= 0x10;
				ck_assert(!check(hash, n, k, chunk[k], cl, path, len));
				path[len - 1][5] ^= 0x10;
				ck_assert(!check(hash, n, k, chunk[k], cl, path, len - 1));
			}
			memcpy(path[len], hash, H);
			ck_assert(!check(hash, n, k, chunk[k], cl, path, len + 1));
		}
	}
}
END_TEST

START_TEST(prefix_is_the_keys)
{
	uint8_t k1[MP_SEAL_KEY_LEN] = {1}, k2[MP_SEAL_KEY_LEN] = {2}, a[8], b[8], c[8];
	mp_sealed_prefix(k1, a);
	mp_sealed_prefix(k1, b);
	mp_sealed_prefix(k2, c);
	ck_assert_mem_eq(a, b, 8);
	ck_assert(memcmp(a, c, 8) != 0);
}
END_TEST

/* Three chunks of plaintext sealed under seal_key (with its own prefix) into sealed[k]; the
 * ciphertext hash into hash and the leaves into lv. */
static uint8_t plain[3][50], sealed[3][50 + MP_SEAL_TAG_LEN], lv[3][H], hash[H];

static void seal_all(const uint8_t seal_key[MP_SEAL_KEY_LEN])
{
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	mp_sealed_prefix(seal_key, prefix);
	struct mp_sealed_hash *h = mp_sealed_hash_new();
	for (uint32_t k = 0; k < 3; k++) {
		memset(plain[k], 'a' + (int)k, sizeof(plain[k]));
		ck_assert(mp_seal_chunk(seal_key, prefix, k, plain[k], 50, sealed[k]));
		ck_assert(mp_sealed_hash_add(h, sealed[k], sizeof(sealed[k])));
		ck_assert(mp_sealed_leaf(k, sealed[k], sizeof(sealed[k]), lv[k]));
	}
	ck_assert(mp_sealed_hash_final(h, hash));
	mp_sealed_hash_free(h);
}

/* The proof of chunk k with key, checked against SHA-256(claimed_key) and hash. */
static enum mp_bad_key_verdict verdict(const uint8_t key[MP_SEAL_KEY_LEN], uint32_t k,
				       const uint8_t claimed[MP_SEAL_KEY_LEN], int tamper)
{
	uint8_t path[MP_SEALED_PATH_MAX][H], key_hash[H];
	ProtobufCBinaryData ph[MP_SEALED_PATH_MAX];
	uint8_t key_copy[MP_SEAL_KEY_LEN];
	memcpy(key_copy, key, sizeof(key_copy));
	Micropay__V1__BadKeyProof p = MICROPAY__V1__BAD_KEY_PROOF__INIT;
	p.key = (ProtobufCBinaryData){MP_SEAL_KEY_LEN - (tamper == 1), key_copy};
	p.chunk_index = k;
	p.chunk_count = tamper == 2 ? k : 3;
	p.sealed_chunk = (ProtobufCBinaryData){sizeof(sealed[k]), sealed[k]};
	p.n_path = mp_sealed_path((const uint8_t(*)[H])lv, 3, k, path);
	for (size_t i = 0; i < p.n_path; i++)
		ph[i] = (ProtobufCBinaryData){H, path[i]};
	p.path = ph;
	if (tamper == 3)
		path[0][0] ^= 1;
	SHA256(claimed, MP_SEAL_KEY_LEN, key_hash);
	return mp_bad_key_check(&p, key_hash, hash);
}

START_TEST(bad_key_proof_verdicts)
{
	uint8_t key[MP_SEAL_KEY_LEN], wrong[MP_SEAL_KEY_LEN];
	memset(key, 0x42, sizeof(key));
	memset(wrong, 0x43, sizeof(wrong));
	seal_all(key); /* honest: the Offer's key opens every chunk */
	for (uint32_t k = 0; k < 3; k++)
		ck_assert_int_eq(verdict(key, k, key, 0), MP_BAD_KEY_OPENS);
	seal_all(wrong); /* sealed under another key than the Offer's key_hash names */
	for (uint32_t k = 0; k < 3; k++)
		ck_assert_int_eq(verdict(key, k, key, 0), MP_BAD_KEY_PROVEN);
	ck_assert_int_eq(verdict(wrong, 1, key, 0), MP_BAD_KEY_NOT_THE_KEY);
	ck_assert_int_eq(verdict(key, 1, key, 3), MP_BAD_KEY_NOT_IN_OFFER);
	ck_assert_int_eq(verdict(key, 1, key, 1), MP_BAD_KEY_MALFORMED);
	ck_assert_int_eq(verdict(key, 1, key, 2), MP_BAD_KEY_MALFORMED);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sealed_tree");
	TCase *tc = tcase_create("sealed_tree");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, streamed_tree_is_the_definition);
	tcase_add_test(tc, every_path_checks_and_nothing_else);
	tcase_add_test(tc, prefix_is_the_keys);
	tcase_add_test(tc, bad_key_proof_verdicts);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
