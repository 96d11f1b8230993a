/* walletd's check of a ChannelCert against its own IssueRequest (walletd/certcheck.c): a cert
 * that matches is taken; one mismatched field, a foreign signer or a wrong type is refused. */
#include <check.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "certcheck.h"
#include "ids.h"
#include "stmt.h"
#include "../check_run.h"

static struct mp_key broker, other;
static uint8_t issue_req_id[MP_ID_LEN], account_id[MP_ID_LEN], owner_pk[MP_PK_LEN],
    nonce[MP_NONCE_LEN], root[MP_HASH_LEN], holder0[MP_ID_LEN], channel_id[MP_ID_LEN],
    key_id[MP_KEY_ID_LEN];
static Micropay__V1__IssueRequest req;
static Micropay__V1__ChannelCert cert;

static void fill(uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(v + i);
}

#define BYTES(a) ((ProtobufCBinaryData){sizeof(a), (a)})

static void setup(void)
{
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&broker, seed));
	ck_assert(mp_key_generate(&other, seed));
	fill(issue_req_id, sizeof(issue_req_id), 1);
	fill(account_id, sizeof(account_id), 2);
	fill(owner_pk, sizeof(owner_pk), 3);
	fill(nonce, sizeof(nonce), 4);
	fill(root, sizeof(root), 5);
	fill(holder0, sizeof(holder0), 6);
	/* channel_id = SHA256("MPAY1-CID" || account_id || issue_req_id)[0..16], computed here */
	uint8_t buf[9 + 2 * MP_ID_LEN], digest[SHA256_DIGEST_LENGTH];
	memcpy(buf, "MPAY1-CID", 9);
	memcpy(buf + 9, account_id, MP_ID_LEN);
	memcpy(buf + 9 + MP_ID_LEN, issue_req_id, MP_ID_LEN);
	SHA256(buf, sizeof(buf), digest);
	memcpy(channel_id, digest, MP_ID_LEN);
	mp_key_id(broker.pk, key_id);

	micropay__v1__issue_request__init(&req);
	req.issue_req_id = BYTES(issue_req_id);
	req.account_id = BYTES(account_id);
	req.owner_pk = BYTES(owner_pk);
	req.chain_nonce = BYTES(nonce);
	req.root = BYTES(root);
	req.n = 10000;
	req.unit_value = 5;
	req.currency = "EUR";
	req.holder0 = BYTES(holder0);
	req.pay_until_days = 7;

	micropay__v1__channel_cert__init(&cert);
	cert.broker_key_id = BYTES(key_id);
	cert.channel_id = BYTES(channel_id);
	cert.owner_pk = req.owner_pk;
	cert.chain_nonce = req.chain_nonce;
	cert.root = req.root;
	cert.n = req.n;
	cert.unit_value = req.unit_value;
	cert.currency = "EUR";
	cert.holder0 = req.holder0;
	cert.issued_at = 1795248000; /* on the hour */
	cert.pay_until = cert.issued_at + 7 * 86400;
	cert.redeem_until = cert.pay_until + 48 * 3600;
}

static void teardown(void)
{
	mp_key_free(&broker);
	mp_key_free(&other);
}

/* Sign the (possibly altered) cert with key and check it; the message or NULL. */
static const char *check_signed(const struct mp_key *key, enum mp_stmt_type type)
{
	MpSigned *s = mp_stmt_sign(key, type, &cert.base);
	ck_assert_ptr_nonnull(s);
	Micropay__V1__ChannelCert *out = NULL;
	const char *why = wallet_cert_check(s, broker.pk, &req, &out);
	if (why)
		ck_assert_ptr_null(out);
	else
		ck_assert_ptr_nonnull(out);
	if (out)
		protobuf_c_message_free_unpacked(&out->base, NULL);
	mp_stmt_free(s);
	return why;
}

static void expect_refused(const char *word)
{
	const char *why = check_signed(&broker, MP_STMT_CHANNEL_CERT);
	ck_assert_msg(why != NULL, "a cert with a wrong %s was accepted", word);
	ck_assert_msg(strstr(why, word) != NULL, "refusal '%s' does not name %s", why, word);
}

START_TEST(matching_cert_accepted)
{
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	Micropay__V1__ChannelCert *out = NULL;
	ck_assert_ptr_null(wallet_cert_check(s, broker.pk, &req, &out));
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(out->pay_until, cert.pay_until);
	ck_assert_mem_eq(out->channel_id.data, channel_id, MP_ID_LEN);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	mp_stmt_free(s);
	uint8_t id[MP_ID_LEN];
	mp_channel_id(account_id, issue_req_id, id);
	ck_assert_mem_eq(id, channel_id, MP_ID_LEN);
}
END_TEST

START_TEST(wrong_signer_or_type_refused)
{
	ck_assert_ptr_nonnull(check_signed(&other, MP_STMT_CHANNEL_CERT));
	ck_assert_ptr_nonnull(check_signed(&broker, MP_STMT_MERCHANT_CERT));
	ck_assert_ptr_nonnull(check_signed(&broker, MP_STMT_ISSUE_REQUEST));
	/* The broker's signature with another key claimed as signer. */
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	memcpy(s->signer_pk.data, other.pk, MP_PK_LEN);
	Micropay__V1__ChannelCert *out = NULL;
	ck_assert_ptr_nonnull(wallet_cert_check(s, broker.pk, &req, &out));
	/* A flipped bit in the body. */
	memcpy(s->signer_pk.data, broker.pk, MP_PK_LEN);
	s->body.data[s->body.len - 1] ^= 1;
	ck_assert_ptr_nonnull(wallet_cert_check(s, broker.pk, &req, &out));
	ck_assert_ptr_null(out);
	mp_stmt_free(s);
	ck_assert_ptr_nonnull(wallet_cert_check(NULL, broker.pk, &req, &out));
}
END_TEST

START_TEST(each_field_mismatch_refused)
{
	uint8_t bad[MP_HASH_LEN];
	fill(bad, sizeof(bad), 99);
	ProtobufCBinaryData saved;

#define SWAP_BYTES(field, len)                                                                     \
	do {                                                                                       \
		saved = cert.field;                                                                \
		cert.field = (ProtobufCBinaryData){len, bad};                                      \
		expect_refused(#field);                                                            \
		cert.field = (ProtobufCBinaryData){0, NULL};                                       \
		expect_refused(#field);                                                            \
		cert.field = saved;                                                                \
	} while (0)
	SWAP_BYTES(broker_key_id, MP_KEY_ID_LEN);
	SWAP_BYTES(channel_id, MP_ID_LEN);
	SWAP_BYTES(owner_pk, MP_PK_LEN);
	SWAP_BYTES(chain_nonce, MP_NONCE_LEN);
	SWAP_BYTES(root, MP_HASH_LEN);
	SWAP_BYTES(holder0, MP_ID_LEN);
#undef SWAP_BYTES

	ck_assert_ptr_null(check_signed(&broker, MP_STMT_CHANNEL_CERT));
	cert.n = req.n + 1;
	expect_refused("n differs");
	cert.n = req.n;
	cert.unit_value = req.unit_value - 1;
	expect_refused("unit_value");
	cert.unit_value = req.unit_value;
	cert.currency = "USD";
	expect_refused("currency");
	cert.currency = "EUR";
	cert.issued_at += 1;
	expect_refused("issued_at");
	cert.issued_at -= 1;
	cert.pay_until += 86400;
	expect_refused("pay_until");
	cert.pay_until -= 86400;
	cert.redeem_until = cert.pay_until;
	expect_refused("redeem_until");
	cert.redeem_until = cert.pay_until + 48 * 3600;
	ck_assert_ptr_null(check_signed(&broker, MP_STMT_CHANNEL_CERT)); /* all restored */
	cert.issued_at = UINT64_MAX - UINT64_MAX % 3600;		 /* would wrap */
	cert.pay_until = cert.issued_at + 7 * 86400;
	expect_refused("issued_at");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("walletd certcheck");
	TCase *tc = tcase_create("certcheck");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, matching_cert_accepted);
	tcase_add_test(tc, wrong_signer_or_type_refused);
	tcase_add_test(tc, each_field_mismatch_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
