/* The wallet store's cryptography (walletd/vault.c): the data key wrapped under a scrypt key and
 * unwrapped only with the right passphrase; a sealed secret opens only unaltered, under its own
 * row's identity; the keys and the passphrase are left in no freed OpenSSL block. */
#include <check.h>
#include <string.h>

#include "../check_run.h"
#include "../secret_heap.h"
#include "util.h"
#include "vault.h"

#define LOG2_N_TEST 10 /* 1 MiB: the tests' scrypt stays fast, even under valgrind */

static const char pass[] = "correct horse battery staple";

static void derive(const struct wvault_kdf *kdf, const char *p, uint8_t kek[WVAULT_KEY_LEN])
{
	char err[200];
	ck_assert_msg(wvault_derive(kdf, p, strlen(p), kek, err, sizeof(err)), "%s", err);
}

static void wrapped(struct wvault_kdf *kdf, uint8_t dk[WVAULT_KEY_LEN],
		    uint8_t record[WVAULT_RECORD_LEN])
{
	uint8_t kek[WVAULT_KEY_LEN];
	ck_assert(wvault_kdf_new(kdf, LOG2_N_TEST));
	ck_assert(mp_random_bytes(dk, WVAULT_KEY_LEN));
	derive(kdf, pass, kek);
	ck_assert(wvault_wrap(kdf, kek, dk, record));
}

START_TEST(wrap_unwrap_round_trip)
{
	struct wvault_kdf kdf, got;
	uint8_t dk[WVAULT_KEY_LEN], record[WVAULT_RECORD_LEN], kek[WVAULT_KEY_LEN],
	    out[WVAULT_KEY_LEN];
	wrapped(&kdf, dk, record);
	ck_assert(wvault_record_kdf(record, sizeof(record), &got));
	ck_assert_uint_eq(got.log2_n, LOG2_N_TEST);
	ck_assert_uint_eq(got.r, WVAULT_R_DEFAULT);
	ck_assert_uint_eq(got.p, WVAULT_P_DEFAULT);
	ck_assert_mem_eq(got.salt, kdf.salt, WVAULT_SALT_LEN);
	derive(&got, pass, kek);
	ck_assert(wvault_unwrap(record, kek, out));
	ck_assert_mem_eq(out, dk, WVAULT_KEY_LEN);
	/* The same passphrase under another salt is another key. */
	struct wvault_kdf other = kdf;
	other.salt[0] ^= 1;
	derive(&other, pass, kek);
	ck_assert(!wvault_unwrap(record, kek, out));
	/* A record of another length or version is not read. */
	ck_assert(!wvault_record_kdf(record, sizeof(record) - 1, &got));
	record[0] = 2;
	ck_assert(!wvault_record_kdf(record, sizeof(record), &got));
}
END_TEST

START_TEST(wrong_passphrase_is_refused_by_the_tag)
{
	struct wvault_kdf kdf;
	uint8_t dk[WVAULT_KEY_LEN], record[WVAULT_RECORD_LEN], kek[WVAULT_KEY_LEN],
	    out[WVAULT_KEY_LEN], zero[WVAULT_KEY_LEN] = {0};
	wrapped(&kdf, dk, record);
	derive(&kdf, "correct horse battery stapler", kek);
	memset(out, 0x5a, sizeof(out));
	ck_assert(!wvault_unwrap(record, kek, out));
	ck_assert_mem_eq(out, zero, sizeof(out)); /* no garbage key comes out */
}
END_TEST

START_TEST(tampered_record_or_value_is_refused)
{
	struct wvault_kdf kdf;
	uint8_t dk[WVAULT_KEY_LEN], record[WVAULT_RECORD_LEN], kek[WVAULT_KEY_LEN],
	    out[WVAULT_KEY_LEN];
	wrapped(&kdf, dk, record);
	derive(&kdf, pass, kek);
	/* Every byte of the record counts: parameters, salt, nonce, ciphertext, tag. The
	 * parameters and salt are the wrapping's associated data. */
	for (size_t i = 1; i < sizeof(record); i++) {
		record[i] ^= 0x01;
		ck_assert_msg(!wvault_unwrap(record, kek, out), "byte %zu", i);
		record[i] ^= 0x01;
	}
	ck_assert(wvault_unwrap(record, kek, out));

	struct wvault_ad ad;
	uint8_t id[16] = {1}, seed[32] = {7}, sealed[WVAULT_SEALED_LEN(32)], opened[32];
	wvault_ad_make(&ad, WVAULT_OWNER_SEED, id, id, 0);
	ck_assert(wvault_seal(dk, &ad, seed, sizeof(seed), sealed));
	ck_assert(memmem(sealed, sizeof(sealed), seed, sizeof(seed)) == NULL);
	for (size_t i = 0; i < sizeof(sealed); i++) {
		sealed[i] ^= 0x80;
		ck_assert_msg(!wvault_open(dk, &ad, sealed, sizeof(sealed), opened), "byte %zu", i);
		sealed[i] ^= 0x80;
	}
	ck_assert(!wvault_open(dk, &ad, sealed, sizeof(sealed) - 1, opened)); /* truncated */
	ck_assert(wvault_open(dk, &ad, sealed, sizeof(sealed), opened));
	ck_assert_mem_eq(opened, seed, sizeof(seed));
	/* Under another data key it does not open. */
	dk[5] ^= 1;
	ck_assert(!wvault_open(dk, &ad, sealed, sizeof(sealed), opened));
}
END_TEST

START_TEST(value_moved_to_another_row_is_refused)
{
	uint8_t dk[WVAULT_KEY_LEN], a[16], b[16], w[32], sealed[WVAULT_SEALED_LEN(32)], out[32];
	ck_assert(mp_random_bytes(dk, sizeof(dk)) && mp_random_bytes(w, sizeof(w)));
	memset(a, 0xa1, sizeof(a));
	memset(b, 0xb2, sizeof(b));
	struct wvault_ad here, there;
	/* A chain seed: not another channel's, nor another chain's, nor the owner seed column. */
	wvault_ad_make(&here, WVAULT_CHAIN_SEED, a, a, 0);
	ck_assert(wvault_seal(dk, &here, w, sizeof(w), sealed));
	ck_assert(wvault_open(dk, &here, sealed, sizeof(sealed), out));
	wvault_ad_make(&there, WVAULT_CHAIN_SEED, b, a, 0);
	ck_assert(!wvault_open(dk, &there, sealed, sizeof(sealed), out));
	wvault_ad_make(&there, WVAULT_CHAIN_SEED, a, b, 0);
	ck_assert(!wvault_open(dk, &there, sealed, sizeof(sealed), out));
	wvault_ad_make(&there, WVAULT_OWNER_SEED, a, a, 0);
	ck_assert(!wvault_open(dk, &there, sealed, sizeof(sealed), out));
	wvault_ad_make(&there, WVAULT_ACCOUNT_SEED, NULL, NULL, 0);
	ck_assert(!wvault_open(dk, &there, sealed, sizeof(sealed), out));
	/* A checkpoint: not at another index. */
	wvault_ad_make(&here, WVAULT_CHECKPOINT, NULL, a, 256);
	ck_assert(wvault_seal(dk, &here, w, sizeof(w), sealed));
	wvault_ad_make(&there, WVAULT_CHECKPOINT, NULL, a, 512);
	ck_assert(!wvault_open(dk, &there, sealed, sizeof(sealed), out));
	/* Each sealing has its own nonce: the same value twice is two different ciphertexts. */
	uint8_t again[sizeof(sealed)];
	ck_assert(wvault_seal(dk, &here, w, sizeof(w), again));
	ck_assert(memcmp(again, sealed, sizeof(sealed)) != 0);
}
END_TEST

START_TEST(bad_parameters_are_refused)
{
	struct wvault_kdf kdf;
	uint8_t kek[WVAULT_KEY_LEN];
	char err[200];
	ck_assert(wvault_kdf_new(&kdf, 9));
	ck_assert(!wvault_derive(&kdf, pass, strlen(pass), kek, err, sizeof(err)));
	ck_assert_msg(strstr(err, "out of range"), "%s", err);
	ck_assert(wvault_kdf_new(&kdf, 21));
	ck_assert(!wvault_derive(&kdf, pass, strlen(pass), kek, err, sizeof(err)));
}
END_TEST

/* Deriving, wrapping, unwrapping, sealing and opening free no OpenSSL block that still holds the
 * passphrase, the derived key or the data key (the recording: tests/secret_heap.h). */
START_TEST(keys_left_in_no_freed_block)
{
	struct wvault_kdf kdf;
	uint8_t dk[WVAULT_KEY_LEN], record[WVAULT_RECORD_LEN], kek[WVAULT_KEY_LEN],
	    out[WVAULT_KEY_LEN];
	ck_assert(wvault_kdf_new(&kdf, LOG2_N_TEST));
	ck_assert(mp_random_bytes(dk, sizeof(dk)));
	secret_heap_watch(pass, strlen(pass));
	derive(&kdf, pass, kek);
	ck_assert_uint_eq(secret_heap_hits, 0);
	secret_heap_watch(kek, sizeof(kek));
	ck_assert(wvault_wrap(&kdf, kek, dk, record));
	ck_assert(wvault_unwrap(record, kek, out));
	ck_assert_uint_eq(secret_heap_hits, 0);
	secret_heap_watch(dk, sizeof(dk));
	struct wvault_ad ad;
	uint8_t seed[32] = {3}, sealed[WVAULT_SEALED_LEN(32)];
	wvault_ad_make(&ad, WVAULT_ACCOUNT_SEED, NULL, NULL, 0);
	ck_assert(wvault_seal(dk, &ad, seed, sizeof(seed), sealed));
	ck_assert(wvault_open(out, &ad, sealed, sizeof(sealed), seed));
	ck_assert_uint_eq(secret_heap_hits, 0);
}
END_TEST

/* The recording would see a key freed unwiped (else the test above proves nothing). */
START_TEST(the_recording_sees_an_unwiped_key)
{
	uint8_t key[WVAULT_KEY_LEN];
	ck_assert(mp_random_bytes(key, sizeof(key)));
	secret_heap_watch(key, sizeof(key));
	uint8_t *copy = OPENSSL_malloc(sizeof(key));
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, key, sizeof(key));
	OPENSSL_free(copy);
	ck_assert_uint_eq(secret_heap_hits, 1);
}
END_TEST

int main(void)
{
	if (!secret_heap_install())
		return 1;
	Suite *s = suite_create("walletd_vault");
	TCase *tc = tcase_create("vault");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, wrap_unwrap_round_trip);
	tcase_add_test(tc, wrong_passphrase_is_refused_by_the_tag);
	tcase_add_test(tc, tampered_record_or_value_is_refused);
	tcase_add_test(tc, value_moved_to_another_row_is_refused);
	tcase_add_test(tc, bad_parameters_are_refused);
	tcase_add_test(tc, the_recording_sees_an_unwiped_key);
	tcase_add_test(tc, keys_left_in_no_freed_block);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
