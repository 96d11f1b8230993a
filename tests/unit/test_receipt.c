/* Receipts (common/receipt.c): a merchant's Receipt checked against its MerchantCert under the
 * broker key; every field tampered, the wrong signer, the wrong type, the wrong broker. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "receipt.h"
#include "sig.h"
#include "stmt.h"
#include "../check_run.h"

static struct mp_key broker, merchant, other;
static struct mp_receipt fields;
static MpSigned *cert, *receipt;

static MpSigned *sign_cert(const struct mp_key *signer, const struct mp_key *subject,
			   const uint8_t mid[MP_ID_LEN], const uint8_t *key_id_of)
{
	uint8_t key_id[MP_KEY_ID_LEN];
	mp_key_id(key_id_of, key_id);
	Micropay__V1__MerchantCert mc = MICROPAY__V1__MERCHANT_CERT__INIT;
	mc.broker_key_id = (ProtobufCBinaryData){MP_KEY_ID_LEN, key_id};
	mc.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)mid};
	mc.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)subject->pk};
	mc.endpoint = "shop.example:7000";
	mc.valid_until = 1900000000;
	return mp_stmt_sign(signer, MP_STMT_MERCHANT_CERT, &mc.base);
}

static MpSigned *sign_receipt(const struct mp_key *key, enum mp_stmt_type type,
			      const struct mp_receipt *r)
{
	Micropay__V1__Receipt body;
	mp_receipt_body(r, &body);
	return mp_stmt_sign(key, type, &body.base);
}

static void setup(void)
{
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x31, sizeof(seed));
	ck_assert(mp_key_from_seed(&broker, seed));
	memset(seed, 0x32, sizeof(seed));
	ck_assert(mp_key_from_seed(&merchant, seed));
	memset(seed, 0x33, sizeof(seed));
	ck_assert(mp_key_from_seed(&other, seed));
	memset(&fields, 0, sizeof(fields));
	memset(fields.channel_id, 0xc1, MP_ID_LEN);
	fields.seg_seq = 2;
	fields.index = 17;
	memcpy(fields.order_ref, "order-42", 8);
	fields.order_ref_len = 8;
	memset(fields.merchant_id, 0x4d, MP_ID_LEN);
	fields.time = 1780000000;
	cert = sign_cert(&broker, &merchant, fields.merchant_id, broker.pk);
	receipt = sign_receipt(&merchant, MP_STMT_RECEIPT, &fields);
	ck_assert(cert && receipt);
}

static void teardown(void)
{
	mp_stmt_free(cert);
	mp_stmt_free(receipt);
	mp_key_free(&broker);
	mp_key_free(&merchant);
	mp_key_free(&other);
}

static const char *verify(const MpSigned *r, const MpSigned *c)
{
	struct mp_receipt out;
	return mp_receipt_verify(r, c, broker.pk, &out);
}

static void assert_refused(const MpSigned *r, const MpSigned *c, const char *reason_part)
{
	const char *why = verify(r, c);
	ck_assert_msg(why != NULL, "accepted, expected a refusal containing '%s'", reason_part);
	ck_assert_msg(strstr(why, reason_part), "refused with '%s', expected '%s'", why,
		      reason_part);
}

START_TEST(valid_receipt_fields)
{
	struct mp_receipt out;
	ck_assert_ptr_null(mp_receipt_verify(receipt, cert, broker.pk, &out));
	ck_assert_mem_eq(out.channel_id, fields.channel_id, MP_ID_LEN);
	ck_assert_uint_eq(out.seg_seq, 2);
	ck_assert_uint_eq(out.index, 17);
	ck_assert_uint_eq(out.order_ref_len, 8);
	ck_assert_mem_eq(out.order_ref, "order-42", 8);
	ck_assert_mem_eq(out.merchant_id, fields.merchant_id, MP_ID_LEN);
	ck_assert_uint_eq(out.time, 1780000000);
	ck_assert_mem_eq(out.merchant_pk, merchant.pk, MP_PK_LEN);
	ck_assert_uint_eq(out.cert_valid_until, 1900000000);
}
END_TEST

/* Ed25519 is deterministic: the same fields give the same bytes (a replay's Receipt). */
START_TEST(same_fields_same_bytes)
{
	MpSigned *again = sign_receipt(&merchant, MP_STMT_RECEIPT, &fields);
	size_t a_len, b_len;
	uint8_t *a = mp_stmt_encode(receipt, &a_len), *b = mp_stmt_encode(again, &b_len);
	ck_assert_uint_eq(a_len, b_len);
	ck_assert_mem_eq(a, b, a_len);
	free(a);
	free(b);
	mp_stmt_free(again);
}
END_TEST

/* The body with one field changed, under the original signature and signer. */
static MpSigned *tampered(int field)
{
	struct mp_receipt t = fields;
	switch (field) {
	case 0:
		t.channel_id[3] ^= 1;
		break;
	case 1:
		t.seg_seq++;
		break;
	case 2:
		t.index++;
		break;
	case 3:
		t.order_ref[0] ^= 1;
		break;
	case 4:
		t.merchant_id[0] ^= 1;
		break;
	case 5:
		t.time++;
		break;
	default:
		ck_abort();
	}
	Micropay__V1__Receipt body;
	mp_receipt_body(&t, &body);
	size_t len;
	uint8_t *packed = mp_stmt_pack_body(&body.base, &len);
	MpSigned *s = mp_stmt_from_parts(MP_STMT_RECEIPT, packed, len, receipt->signer_pk.data,
					 receipt->signature.data);
	free(packed);
	return s;
}

START_TEST(each_field_tampered_refused)
{
	MpSigned *t = tampered(_i);
	assert_refused(t, cert, "receipt: not a Receipt signed by the MerchantCert's key");
	mp_stmt_free(t);
}
END_TEST

START_TEST(every_body_byte_flip_refused)
{
	for (size_t i = 0; i < receipt->body.len; i++) {
		MpSigned *t = mp_stmt_copy(receipt);
		t->body.data[i] ^= 0x01;
		ck_assert_msg(verify(t, cert) != NULL, "flip at byte %zu accepted", i);
		mp_stmt_free(t);
	}
	MpSigned *t = mp_stmt_copy(receipt);
	t->signature.data[10] ^= 0x80;
	assert_refused(t, cert, "not a Receipt signed");
	mp_stmt_free(t);
}
END_TEST

START_TEST(wrong_signer_refused)
{
	MpSigned *by_other = sign_receipt(&other, MP_STMT_RECEIPT, &fields);
	assert_refused(by_other, cert, "not a Receipt signed by the MerchantCert's key");
	/* claims the merchant's key, signed by another */
	memcpy(by_other->signer_pk.data, merchant.pk, MP_PK_LEN);
	assert_refused(by_other, cert, "not a Receipt signed by the MerchantCert's key");
	mp_stmt_free(by_other);
	/* a cert of another merchant key for the same merchant id does not vouch for ours */
	MpSigned *other_cert = sign_cert(&broker, &other, fields.merchant_id, broker.pk);
	assert_refused(receipt, other_cert, "not a Receipt signed by the MerchantCert's key");
	mp_stmt_free(other_cert);
}
END_TEST

START_TEST(other_statement_type_refused)
{
	MpSigned *as_redeem = sign_receipt(&merchant, MP_STMT_REDEEM, &fields);
	assert_refused(as_redeem, cert, "not a Receipt signed");
	mp_stmt_free(as_redeem);
}
END_TEST

START_TEST(cert_not_from_the_broker_refused)
{
	MpSigned *self_signed = sign_cert(&merchant, &merchant, fields.merchant_id, broker.pk);
	assert_refused(receipt, self_signed,
		       "merchant_cert: not a MerchantCert signed by the given");
	mp_stmt_free(self_signed);
	MpSigned *other_key_id = sign_cert(&broker, &merchant, fields.merchant_id, other.pk);
	assert_refused(receipt, other_key_id, "merchant_cert: broker_key_id");
	mp_stmt_free(other_key_id);
	/* checked under another broker key than the cert's */
	struct mp_receipt out;
	const char *why = mp_receipt_verify(receipt, cert, other.pk, &out);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "merchant_cert: not a MerchantCert signed"));
	/* a Receipt given where the cert belongs */
	assert_refused(receipt, receipt, "merchant_cert: not a MerchantCert");
}
END_TEST

START_TEST(receipt_of_another_merchant_refused)
{
	struct mp_receipt t = fields;
	t.merchant_id[15] ^= 0xff;
	MpSigned *s = sign_receipt(&merchant, MP_STMT_RECEIPT, &t);
	assert_refused(s, cert, "names another merchant than the MerchantCert");
	mp_stmt_free(s);
}
END_TEST

START_TEST(malformed_fields_refused)
{
	struct mp_receipt t = fields;
	t.index = 0;
	MpSigned *s = sign_receipt(&merchant, MP_STMT_RECEIPT, &t);
	assert_refused(s, cert, "index 0");
	mp_stmt_free(s);
	t = fields;
	t.order_ref_len = 0;
	s = sign_receipt(&merchant, MP_STMT_RECEIPT, &t);
	assert_refused(s, cert, "order_ref");
	mp_stmt_free(s);
	assert_refused(NULL, cert, "both needed");
	assert_refused(receipt, NULL, "both needed");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("receipt");
	TCase *tc = tcase_create("verify");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_receipt_fields);
	tcase_add_test(tc, same_fields_same_bytes);
	tcase_add_loop_test(tc, each_field_tampered_refused, 0, 6);
	tcase_add_test(tc, every_body_byte_flip_refused);
	tcase_add_test(tc, wrong_signer_refused);
	tcase_add_test(tc, other_statement_type_refused);
	tcase_add_test(tc, cert_not_from_the_broker_refused);
	tcase_add_test(tc, receipt_of_another_merchant_refused);
	tcase_add_test(tc, malformed_fields_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
