/* Secrets wiped after use (issue 10, "Secrets"): an Ed25519 key made from a seed, used and
 * freed leaves neither the seed in any block OpenSSL frees nor anything in the key struct; the
 * seed of a key file is read without leaving a copy behind; a chain's top is computed without
 * leaving the seed in OpenSSL's freed memory. OpenSSL's heap is recorded (secret_heap.h). */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "sig.h"
#include "util.h"
#include "../check_run.h"
#include "../secret_heap.h"

static const uint8_t zero_key[sizeof(struct mp_key)];

START_TEST(key_freed_is_wiped)
{
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x5c, sizeof(seed));
	secret_heap_watch(seed, sizeof(seed));
	struct mp_key key;
	ck_assert(mp_key_from_seed(&key, seed));
	uint8_t sig[MP_SIG_LEN];
	ck_assert(mp_sign(&key, (const uint8_t *)"msg", 3, sig));
	ck_assert(mp_verify(key.pk, (const uint8_t *)"msg", 3, sig));
	mp_key_free(&key);
	ck_assert_mem_eq(&key, zero_key, sizeof(key));
	ck_assert_uint_eq(secret_heap_hits, 0);
}
END_TEST

/* The control: the recording sees a secret freed unwiped. */
START_TEST(the_recording_sees_an_unwiped_secret)
{
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x5d, sizeof(seed));
	secret_heap_watch(seed, sizeof(seed));
	uint8_t *copy = OPENSSL_malloc(sizeof(seed));
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, seed, sizeof(seed));
	OPENSSL_free(copy);
	ck_assert_uint_eq(secret_heap_hits, 1);
	copy = OPENSSL_malloc(sizeof(seed));
	memcpy(copy, seed, sizeof(seed));
	OPENSSL_clear_free(copy, sizeof(seed));
	ck_assert_uint_eq(secret_heap_hits, 1);
}
END_TEST

START_TEST(key_file_load_leaves_no_seed)
{
	char dir[] = "/tmp/mp-test-secrets-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[sizeof(dir) + 16], err[256];
	snprintf(path, sizeof(path), "%s/key", dir);
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x6e, sizeof(seed));
	ck_assert_msg(mp_key_save_seed(seed, path, err, sizeof(err)), "%s", err);
	secret_heap_watch(seed, sizeof(seed));
	struct mp_key key;
	ck_assert_msg(mp_key_load(&key, path, err, sizeof(err)), "%s", err);
	mp_key_free(&key);
	ck_assert_mem_eq(&key, zero_key, sizeof(key));
	ck_assert_uint_eq(secret_heap_hits, 0);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(chain_top_leaves_no_seed)
{
	struct mp_hasher *h = mp_hasher_new();
	ck_assert_ptr_nonnull(h);
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN] = {1}, top[MP_HASH_LEN];
	memset(seed, 0x7f, sizeof(seed));
	secret_heap_watch(seed, sizeof(seed));
	mp_chain_top(h, seed, nonce, top);
	mp_hasher_free(h);
	ck_assert_uint_eq(secret_heap_hits, 0);
}
END_TEST

int main(void)
{
	if (!secret_heap_install())
		return 1;
	Suite *s = suite_create("secrets");
	TCase *tc = tcase_create("wiped");
	tcase_add_test(tc, the_recording_sees_an_unwiped_secret);
	tcase_add_test(tc, key_freed_is_wiped);
	tcase_add_test(tc, key_file_load_leaves_no_seed);
	tcase_add_test(tc, chain_top_leaves_no_seed);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
