/* Offers and sealed goods (common/offer.c, common/sealed.c): an Offer opened only under the
 * holder's key with well-formed fields; the units of a price; chunks sealed with AES-256-GCM
 * open only with their key, prefix and index, and a flipped byte anywhere is refused (the
 * ciphertext hash and proofs: test_sealed_tree.c). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "offer.h"
#include "sealed.h"
#include "sig.h"
#include "stmt.h"
#include "../check_run.h"

static struct mp_key merchant, other;
static struct mp_offer fields;

static MpSigned *sign_offer(const struct mp_key *key, enum mp_stmt_type type,
			    const struct mp_offer *o)
{
	Micropay__V1__Offer body;
	mp_offer_body(o, &body);
	return mp_stmt_sign(key, type, &body.base);
}

static void setup(void)
{
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&merchant, seed));
	ck_assert(mp_key_generate(&other, seed));
	memset(&fields, 0, sizeof(fields));
	memset(fields.merchant_id, 0x11, MP_ID_LEN);
	memset(fields.channel_id, 0x22, MP_ID_LEN);
	fields.seg_seq = 1;
	fields.after_index = 7;
	fields.pay_index = 12;
	memset(fields.order_ref, 0x33, MP_ID_LEN);
	fields.price = 9;
	memset(fields.key_hash, 0x44, MP_HASH_LEN);
	memset(fields.ciphertext_hash, 0x55, MP_HASH_LEN);
	fields.deadline = 1900000000;
}

static void teardown(void)
{
	mp_key_free(&merchant);
	mp_key_free(&other);
}

START_TEST(offer_opens_under_the_holder_key)
{
	MpSigned *s = sign_offer(&merchant, MP_STMT_OFFER, &fields);
	struct mp_offer got;
	ck_assert_ptr_null(mp_offer_open(s, merchant.pk, &got));
	ck_assert_mem_eq(&got, &fields, sizeof(got));
	MpSigned *again = sign_offer(&merchant, MP_STMT_OFFER, &fields);
	ck_assert_mem_eq(again->body.data, s->body.data, s->body.len);
	mp_stmt_free(again);
	const char *why = mp_offer_open(s, other.pk, &got);
	ck_assert_msg(why && strstr(why, "holder's key"), "%s", why ? why : "accepted");
	mp_stmt_free(s);
	s = sign_offer(&merchant, MP_STMT_RECEIPT, &fields);
	ck_assert_ptr_nonnull(mp_offer_open(s, merchant.pk, &got));
	mp_stmt_free(s);
	ck_assert_ptr_nonnull(mp_offer_open(NULL, merchant.pk, &got));
}
END_TEST

START_TEST(every_body_byte_flip_refused)
{
	MpSigned *s = sign_offer(&merchant, MP_STMT_OFFER, &fields);
	struct mp_offer got;
	for (size_t i = 0; i < s->body.len; i++) {
		s->body.data[i] ^= 0x01;
		ck_assert_msg(mp_offer_open(s, merchant.pk, &got) != NULL, "byte %zu", i);
		s->body.data[i] ^= 0x01;
	}
	ck_assert_ptr_null(mp_offer_open(s, merchant.pk, &got));
	mp_stmt_free(s);
}
END_TEST

/* Fields signed by the right key but malformed: each refused with its reason. */
START_TEST(malformed_fields_refused)
{
	struct mp_offer t = fields, got;
	t.price = 0;
	MpSigned *s = sign_offer(&merchant, MP_STMT_OFFER, &t);
	const char *why = mp_offer_open(s, merchant.pk, &got);
	ck_assert_msg(why && strstr(why, "price"), "%s", why ? why : "accepted");
	mp_stmt_free(s);
	t = fields;
	t.pay_index = t.after_index;
	s = sign_offer(&merchant, MP_STMT_OFFER, &t);
	why = mp_offer_open(s, merchant.pk, &got);
	ck_assert_msg(why && strstr(why, "after_index < pay_index"), "%s", why ? why : "accepted");
	mp_stmt_free(s);
	t = fields;
	t.after_index = 0;
	s = sign_offer(&merchant, MP_STMT_OFFER, &t);
	ck_assert_ptr_nonnull(mp_offer_open(s, merchant.pk, &got));
	mp_stmt_free(s);
	/* A 15-byte order_ref, built by hand. */
	Micropay__V1__Offer body;
	mp_offer_body(&fields, &body);
	body.order_ref.len = 15;
	s = mp_stmt_sign(&merchant, MP_STMT_OFFER, &body.base);
	why = mp_offer_open(s, merchant.pk, &got);
	ck_assert_msg(why && strstr(why, "order_ref"), "%s", why ? why : "accepted");
	mp_stmt_free(s);
	mp_offer_body(&fields, &body);
	body.key_hash.len = 31;
	s = mp_stmt_sign(&merchant, MP_STMT_OFFER, &body.base);
	why = mp_offer_open(s, merchant.pk, &got);
	ck_assert_msg(why && strstr(why, "key_hash"), "%s", why ? why : "accepted");
	mp_stmt_free(s);
}
END_TEST

START_TEST(units_round_up_within_max_jump)
{
	uint32_t u = 0;
	ck_assert(mp_offer_units(9, 2, 4096, &u) && u == 5);
	ck_assert(mp_offer_units(10, 2, 4096, &u) && u == 5);
	ck_assert(mp_offer_units(1, 1000, 4096, &u) && u == 1);
	ck_assert(mp_offer_units(4096, 1, 4096, &u) && u == 4096);
	ck_assert(!mp_offer_units(4097, 1, 4096, &u));
	ck_assert(!mp_offer_units(0, 1, 4096, &u));
	ck_assert(!mp_offer_units(5, 0, 4096, &u));
	ck_assert(mp_offer_units(INT64_MAX, (uint64_t)INT64_MAX / 3, 4096, &u) && u == 4);
}
END_TEST

static const uint8_t key[MP_SEAL_KEY_LEN] = {1, 2, 3};
static const uint8_t prefix[MP_SEAL_PREFIX_LEN] = {9, 8, 7, 6, 5, 4, 3, 2};

START_TEST(sealed_chunks_open_only_as_sealed)
{
	uint8_t plain[300], sealed[300 + MP_SEAL_TAG_LEN], back[300];
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 7);
	ck_assert(mp_seal_chunk(key, prefix, 3, plain, sizeof(plain), sealed));
	ck_assert(memcmp(sealed, plain, sizeof(plain)) != 0);
	ck_assert(mp_open_chunk(key, prefix, 3, sealed, sizeof(sealed), back));
	ck_assert_mem_eq(back, plain, sizeof(plain));
	/* Another index, prefix or key: refused. */
	ck_assert(!mp_open_chunk(key, prefix, 4, sealed, sizeof(sealed), back));
	uint8_t p2[MP_SEAL_PREFIX_LEN];
	memcpy(p2, prefix, sizeof(p2));
	p2[0] ^= 1;
	ck_assert(!mp_open_chunk(key, p2, 3, sealed, sizeof(sealed), back));
	uint8_t k2[MP_SEAL_KEY_LEN];
	memcpy(k2, key, sizeof(k2));
	k2[31] ^= 1;
	ck_assert(!mp_open_chunk(k2, prefix, 3, sealed, sizeof(sealed), back));
	/* Any flipped byte, tag included, or a truncated chunk: refused. */
	for (size_t i = 0; i < sizeof(sealed); i++) {
		sealed[i] ^= 0x80;
		ck_assert_msg(!mp_open_chunk(key, prefix, 3, sealed, sizeof(sealed), back), "%zu",
			      i);
		sealed[i] ^= 0x80;
	}
	ck_assert(!mp_open_chunk(key, prefix, 3, sealed, sizeof(sealed) - 1, back));
	ck_assert(!mp_open_chunk(key, prefix, 3, sealed, MP_SEAL_TAG_LEN - 1, back));
	/* An empty chunk seals to its tag alone and opens. */
	uint8_t tag_only[MP_SEAL_TAG_LEN];
	ck_assert(mp_seal_chunk(key, prefix, 0, plain, 0, tag_only));
	ck_assert(mp_open_chunk(key, prefix, 0, tag_only, sizeof(tag_only), back));
}
END_TEST

/* The same key, prefix and chunk seal to the same bytes (the merchant seals again on every
 * ChunkReq and the Offer's hash must hold). */
START_TEST(sealing_is_deterministic)
{
	uint8_t a[100 + MP_SEAL_TAG_LEN], b[100 + MP_SEAL_TAG_LEN], plain[100] = {0};
	ck_assert(mp_seal_chunk(key, prefix, 0, plain, 100, a));
	ck_assert(mp_seal_chunk(key, prefix, 1, plain, 100, b));
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	uint8_t again[sizeof(a)];
	ck_assert(mp_seal_chunk(key, prefix, 0, plain, 100, again));
	ck_assert_mem_eq(again, a, sizeof(a));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("offer");
	TCase *tc = tcase_create("offer");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, offer_opens_under_the_holder_key);
	tcase_add_test(tc, every_body_byte_flip_refused);
	tcase_add_test(tc, malformed_fields_refused);
	tcase_add_test(tc, units_round_up_within_max_jump);
	tcase_add_test(tc, sealed_chunks_open_only_as_sealed);
	tcase_add_test(tc, sealing_is_deterministic);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
