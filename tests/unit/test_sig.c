/* Ed25519 (common/sig.c) and signed statements (common/stmt.c). */
#include <check.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sig.h"
#include "stmt.h"
#include "util.h"
#include "../check_run.h"

static void hex32(const char *hex, uint8_t *out, size_t len)
{
	ck_assert(mp_hex_decode(hex, out, len));
}

START_TEST(rfc8032_test1)
{
	uint8_t sk[MP_SK_LEN], pk[MP_PK_LEN], want_sig[MP_SIG_LEN], sig[MP_SIG_LEN];
	hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", sk, sizeof(sk));
	hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pk, sizeof(pk));
	hex32("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc6"
	      "1e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
	      want_sig, sizeof(want_sig));
	struct mp_key key;
	ck_assert(mp_key_from_seed(&key, sk));
	ck_assert_mem_eq(key.pk, pk, MP_PK_LEN);
	const uint8_t *empty = (const uint8_t *)"";
	ck_assert(mp_sign(&key, empty, 0, sig));
	ck_assert_mem_eq(sig, want_sig, MP_SIG_LEN);
	ck_assert(mp_verify(pk, empty, 0, sig));
	sig[0] ^= 1;
	ck_assert(!mp_verify(pk, empty, 0, sig));
	sig[0] ^= 1;
	ck_assert(!mp_verify(pk, (const uint8_t *)"x", 1, sig));
	mp_key_free(&key);
}
END_TEST

/* Two keys and a ChannelCert body used by the statement tests. */
static struct mp_key broker, other;
static uint8_t id16[16], k32[32];
static Micropay__V1__ChannelCert cert;

static void stmt_setup(void)
{
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x11, sizeof(seed));
	ck_assert(mp_key_from_seed(&broker, seed));
	memset(seed, 0x22, sizeof(seed));
	ck_assert(mp_key_from_seed(&other, seed));
	memset(id16, 0xab, sizeof(id16));
	memset(k32, 0xcd, sizeof(k32));
	micropay__v1__channel_cert__init(&cert);
	cert.channel_id = (ProtobufCBinaryData){sizeof(id16), id16};
	cert.chain_nonce = (ProtobufCBinaryData){sizeof(id16), id16};
	cert.owner_pk = (ProtobufCBinaryData){sizeof(k32), k32};
	cert.root = (ProtobufCBinaryData){sizeof(k32), k32};
	cert.n = 1000;
	cert.unit_value = 5;
	cert.currency = "EUR";
	cert.pay_until = 1700000000;
}

static void stmt_teardown(void)
{
	mp_key_free(&broker);
	mp_key_free(&other);
}

static MpCode open_cert(const MpSigned *s, enum mp_stmt_type type, const uint8_t pk[MP_PK_LEN])
{
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(s, type, pk, &micropay__v1__channel_cert__descriptor, &body);
	ck_assert(code == MP_ST(OK) ? body != NULL : body == NULL);
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
	return code;
}

/* A statement over arbitrary body bytes, signed correctly by key under type. */
static MpSigned *sign_raw(const struct mp_key *key, enum mp_stmt_type type, const uint8_t *body,
			  size_t len)
{
	uint8_t *msg = malloc(6 + len);
	ck_assert_ptr_nonnull(msg);
	memcpy(msg, "MPAY1", 5);
	msg[5] = (uint8_t)type;
	memcpy(msg + 6, body, len);
	uint8_t sig[MP_SIG_LEN];
	ck_assert(mp_sign(key, msg, 6 + len, sig));
	free(msg);
	MpSigned *s = mp_stmt_from_parts(type, body, len, key->pk, sig);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* The packed cert followed by extra bytes. */
static uint8_t *cert_plus(const uint8_t *extra, size_t extra_len, size_t *len)
{
	size_t n = micropay__v1__channel_cert__get_packed_size(&cert);
	uint8_t *buf = malloc(n + extra_len);
	ck_assert_ptr_nonnull(buf);
	micropay__v1__channel_cert__pack(&cert, buf);
	if (extra_len)
		memcpy(buf + n, extra, extra_len);
	*len = n + extra_len;
	return buf;
}

START_TEST(sign_open_round_trip)
{
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->type, MP_STMT_CHANNEL_CERT);
	ck_assert_mem_eq(s->signer_pk.data, broker.pk, MP_PK_LEN);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(s, MP_STMT_CHANNEL_CERT, broker.pk,
				      &micropay__v1__channel_cert__descriptor, &body),
			 MP_ST(OK));
	Micropay__V1__ChannelCert *got = (Micropay__V1__ChannelCert *)body;
	ck_assert_uint_eq(got->n, 1000);
	ck_assert_uint_eq(got->unit_value, 5);
	ck_assert_str_eq(got->currency, "EUR");
	ck_assert_uint_eq(got->channel_id.len, sizeof(id16));
	ck_assert_mem_eq(got->root.data, k32, sizeof(k32));
	protobuf_c_message_free_unpacked(body, NULL);
	mp_stmt_free(s);
}
END_TEST

START_TEST(other_type_refused)
{
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	ck_assert_int_eq(open_cert(s, MP_STMT_MERCHANT_CERT, broker.pk), MP_ST(BAD_SIG));
	/* Relabelling the type does not help: the signature covers it. */
	s->type = MP_STMT_MERCHANT_CERT;
	ck_assert_int_eq(open_cert(s, MP_STMT_MERCHANT_CERT, broker.pk), MP_ST(BAD_SIG));
	mp_stmt_free(s);
}
END_TEST

START_TEST(unexpected_key_refused)
{
	/* Validly signed by `other`, and signer_pk honestly names `other`. */
	MpSigned *s = mp_stmt_sign(&other, MP_STMT_CHANNEL_CERT, &cert.base);
	ck_assert_mem_eq(s->signer_pk.data, other.pk, MP_PK_LEN);
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, other.pk), MP_ST(OK));
	/* A verifier that expects the broker refuses it. */
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(BAD_SIG));
	mp_stmt_free(s);
}
END_TEST

START_TEST(tampered_body_refused)
{
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	s->body.data[s->body.len - 1] ^= 1;
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(BAD_SIG));
	mp_stmt_free(s);
}
END_TEST

START_TEST(trailing_unknown_field_malformed)
{
	static const uint8_t field127[] = {0xF8, 0x07, 0x01}; /* field 127, varint 1 */
	size_t len;
	uint8_t *body = cert_plus(field127, sizeof(field127), &len);
	MpSigned *s = sign_raw(&broker, MP_STMT_CHANNEL_CERT, body, len);
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(MALFORMED));
	mp_stmt_free(s);
	free(body);
}
END_TEST

START_TEST(duplicated_field_malformed)
{
	static const uint8_t n_again[] = {0x30, 0x05}; /* field 6 (n) a second time */
	size_t len;
	uint8_t *body = cert_plus(n_again, sizeof(n_again), &len);
	MpSigned *s = sign_raw(&broker, MP_STMT_CHANNEL_CERT, body, len);
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(MALFORMED));
	mp_stmt_free(s);
	free(body);
}
END_TEST

START_TEST(explicit_default_malformed)
{
	static const uint8_t issued_at_zero[] = {0x50, 0x00}; /* field 10 = 0, normally omitted */
	ck_assert_uint_eq(cert.issued_at, 0);
	size_t len;
	uint8_t *body = cert_plus(issued_at_zero, sizeof(issued_at_zero), &len);
	MpSigned *s = sign_raw(&broker, MP_STMT_CHANNEL_CERT, body, len);
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(MALFORMED));
	mp_stmt_free(s);
	free(body);
}
END_TEST

START_TEST(raw_signing_matches_stmt_sign)
{
	/* Guards the helper above: the canonical body signed by hand opens fine. */
	size_t len;
	uint8_t *body = cert_plus(NULL, 0, &len);
	MpSigned *s = sign_raw(&broker, MP_STMT_CHANNEL_CERT, body, len);
	ck_assert_int_eq(open_cert(s, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(OK));
	mp_stmt_free(s);
	free(body);
}
END_TEST

START_TEST(stmt_hash_identity)
{
	MpSigned *a = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	MpSigned *b = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	MpSigned *c = mp_stmt_sign(&broker, MP_STMT_MERCHANT_CERT, &cert.base);
	uint8_t ha[MP_HASH_LEN], hb[MP_HASH_LEN], hc[MP_HASH_LEN], want[MP_HASH_LEN];
	mp_stmt_hash(a, ha);
	mp_stmt_hash(b, hb);
	mp_stmt_hash(c, hc);
	/* Same fields signed twice: same bytes, same identity; another type: another one. */
	ck_assert_uint_eq(a->body.len, b->body.len);
	ck_assert_mem_eq(a->body.data, b->body.data, a->body.len);
	ck_assert_mem_eq(a->signature.data, b->signature.data, MP_SIG_LEN);
	ck_assert_mem_eq(ha, hb, MP_HASH_LEN);
	ck_assert(memcmp(ha, hc, MP_HASH_LEN) != 0);
	/* SHA256("MPAY1-H" || u8(type) || body). */
	size_t len = 8 + a->body.len;
	uint8_t *in = malloc(len);
	memcpy(in, "MPAY1-H", 7);
	in[7] = MP_STMT_CHANNEL_CERT;
	memcpy(in + 8, a->body.data, a->body.len);
	SHA256(in, len, want);
	ck_assert_mem_eq(ha, want, MP_HASH_LEN);
	free(in);
	mp_stmt_free(a);
	mp_stmt_free(b);
	mp_stmt_free(c);
}
END_TEST

START_TEST(encode_decode_round_trip)
{
	MpSigned *s = mp_stmt_sign(&broker, MP_STMT_CHANNEL_CERT, &cert.base);
	size_t len;
	uint8_t *bytes = mp_stmt_encode(s, &len);
	ck_assert_ptr_nonnull(bytes);
	MpSigned *d = mp_stmt_decode(bytes, len);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(d->type, s->type);
	ck_assert_uint_eq(d->body.len, s->body.len);
	ck_assert_mem_eq(d->body.data, s->body.data, s->body.len);
	ck_assert_mem_eq(d->signer_pk.data, s->signer_pk.data, MP_PK_LEN);
	ck_assert_mem_eq(d->signature.data, s->signature.data, MP_SIG_LEN);
	ck_assert_int_eq(open_cert(d, MP_STMT_CHANNEL_CERT, broker.pk), MP_ST(OK));
	/* Garbage does not decode. */
	bytes[0] = 0xFF;
	ck_assert_ptr_null(mp_stmt_decode(bytes, len));
	free(bytes);
	mp_stmt_free(d);
	mp_stmt_free(s);
}
END_TEST

START_TEST(key_file_round_trip)
{
	char dir[] = "/tmp/mp-test-sig-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[sizeof(dir) + 16];
	snprintf(path, sizeof(path), "%s/key", dir);
	uint8_t seed[MP_SK_LEN];
	struct mp_key made, loaded;
	char err[256];
	ck_assert(mp_key_generate(&made, seed));
	ck_assert_msg(mp_key_save_seed(seed, path, err, sizeof(err)), "%s", err);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_msg(mp_key_load(&loaded, path, err, sizeof(err)), "%s", err);
	ck_assert_mem_eq(loaded.pk, made.pk, MP_PK_LEN);
	/* Refused while group or others may read it, with the mode and the fix in the message. */
	ck_assert_int_eq(chmod(path, 0640), 0);
	struct mp_key refused;
	ck_assert(!mp_key_load(&refused, path, err, sizeof(err)));
	ck_assert_msg(strstr(err, "mode 0640") && strstr(err, "chmod 600"), "%s", err);
	ck_assert_int_eq(chmod(path, 0600), 0);
	/* An existing key file is never overwritten. */
	ck_assert(!mp_key_save_seed(seed, path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, path));
	mp_key_free(&made);
	mp_key_free(&loaded);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(key_id_is_sha256_prefix)
{
	uint8_t id[MP_KEY_ID_LEN], digest[SHA256_DIGEST_LENGTH];
	mp_key_id(broker.pk, id);
	SHA256(broker.pk, MP_PK_LEN, digest);
	ck_assert_mem_eq(id, digest, MP_KEY_ID_LEN);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sig");
	TCase *tc = tcase_create("ed25519");
	tcase_add_test(tc, rfc8032_test1);
	suite_add_tcase(s, tc);

	tc = tcase_create("statements");
	tcase_add_checked_fixture(tc, stmt_setup, stmt_teardown);
	tcase_add_test(tc, sign_open_round_trip);
	tcase_add_test(tc, other_type_refused);
	tcase_add_test(tc, unexpected_key_refused);
	tcase_add_test(tc, tampered_body_refused);
	tcase_add_test(tc, trailing_unknown_field_malformed);
	tcase_add_test(tc, duplicated_field_malformed);
	tcase_add_test(tc, explicit_default_malformed);
	tcase_add_test(tc, raw_signing_matches_stmt_sign);
	tcase_add_test(tc, stmt_hash_identity);
	tcase_add_test(tc, encode_decode_round_trip);
	tcase_add_test(tc, key_file_round_trip);
	tcase_add_test(tc, key_id_is_sha256_prefix);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
