#include "stmt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "log.h"

static const char sign_prefix[] = "MPAY1";
static const char hash_prefix[] = "MPAY1-H";

static bool dup_bytes(ProtobufCBinaryData *dst, const uint8_t *src, size_t len)
{
	dst->len = len;
	dst->data = malloc(len ? len : 1);
	if (!dst->data)
		return false;
	if (len)
		memcpy(dst->data, src, len);
	return true;
}

void mp_stmt_free(MpSigned *s)
{
	if (!s)
		return;
	free(s->body.data);
	free(s->signer_pk.data);
	free(s->signature.data);
	free(s);
}

MpSigned *mp_stmt_from_parts(uint32_t type, const uint8_t *body, size_t body_len,
			     const uint8_t pk[MP_PK_LEN], const uint8_t sig[MP_SIG_LEN])
{
	MpSigned *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	micropay__v1__signed__init(s);
	s->type = type;
	if (!dup_bytes(&s->body, body, body_len) || !dup_bytes(&s->signer_pk, pk, MP_PK_LEN) ||
	    !dup_bytes(&s->signature, sig, MP_SIG_LEN)) {
		mp_stmt_free(s);
		return NULL;
	}
	return s;
}

MpSigned *mp_stmt_copy(const MpSigned *s)
{
	MpSigned *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	micropay__v1__signed__init(c);
	c->type = s->type;
	if (!dup_bytes(&c->body, s->body.data, s->body.len) ||
	    !dup_bytes(&c->signer_pk, s->signer_pk.data, s->signer_pk.len) ||
	    !dup_bytes(&c->signature, s->signature.data, s->signature.len)) {
		mp_stmt_free(c);
		return NULL;
	}
	return c;
}

/* "MPAY1" || u8(type) || body, the bytes a signature covers. */
static uint8_t *signing_input(uint32_t type, const uint8_t *body, size_t len, size_t *out_len)
{
	size_t plen = sizeof(sign_prefix) - 1;
	uint8_t *msg = malloc(plen + 1 + len);
	if (!msg)
		return NULL;
	memcpy(msg, sign_prefix, plen);
	msg[plen] = (uint8_t)type;
	if (len)
		memcpy(msg + plen + 1, body, len);
	*out_len = plen + 1 + len;
	return msg;
}

MpSigned *mp_stmt_sign_packed(const struct mp_key *key, enum mp_stmt_type type, const uint8_t *body,
			      size_t body_len)
{
	size_t msg_len;
	uint8_t *msg = signing_input(type, body, body_len, &msg_len);
	uint8_t sig[MP_SIG_LEN];
	MpSigned *s = NULL;
	if (msg && mp_sign(key, msg, msg_len, sig))
		s = mp_stmt_from_parts(type, body, body_len, key->pk, sig);
	else
		log_err("stmt: signing a type %u statement failed", (unsigned)type);
	free(msg);
	return s;
}

uint8_t *mp_stmt_pack_body(const ProtobufCMessage *body, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(body);
	uint8_t *packed = malloc(*len ? *len : 1);
	if (packed)
		protobuf_c_message_pack(body, packed);
	return packed;
}

MpSigned *mp_stmt_sign(const struct mp_key *key, enum mp_stmt_type type,
		       const ProtobufCMessage *body)
{
	size_t body_len;
	uint8_t *packed = mp_stmt_pack_body(body, &body_len);
	if (!packed)
		return NULL;
	MpSigned *s = mp_stmt_sign_packed(key, type, packed, body_len);
	free(packed);
	return s;
}

uint8_t *mp_stmt_encode(const MpSigned *s, size_t *len)
{
	*len = micropay__v1__signed__get_packed_size(s);
	uint8_t *buf = malloc(*len ? *len : 1);
	if (buf)
		micropay__v1__signed__pack(s, buf);
	return buf;
}

MpSigned *mp_stmt_decode(const uint8_t *data, size_t len)
{
	MpSigned *wire = (MpSigned *)mp_strict_unpack(&micropay__v1__signed__descriptor, data, len);
	if (!wire)
		return NULL;
	MpSigned *s = mp_stmt_copy(wire);
	micropay__v1__signed__free_unpacked(wire, NULL);
	return s;
}

static bool has_unknown_fields(const ProtobufCMessage *m)
{
	if (m->n_unknown_fields != 0)
		return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)m;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *items =
			    *(ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t k = 0; k < n; k++)
				if (has_unknown_fields(items[k]))
					return true;
		} else {
			const ProtobufCMessage *sub =
			    *(const ProtobufCMessage *const *)(base + f->offset);
			if (sub && has_unknown_fields(sub))
				return true;
		}
	}
	return false;
}

ProtobufCMessage *mp_strict_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
				   size_t len)
{
	struct mp_decode_error err;
	ProtobufCMessage *m = mp_decode(desc, data, len, &err, NULL);
	if (!m) {
		if (err.code != MP_DECODE_UNPARSABLE)
			log_warn("stmt: refusing a statement body: %s", err.detail);
		return NULL;
	}
	bool canonical = !has_unknown_fields(m) && protobuf_c_message_get_packed_size(m) == len;
	if (canonical && len > 0) {
		uint8_t *again = malloc(len);
		canonical = again && protobuf_c_message_pack(m, again) == len &&
			    memcmp(again, data, len) == 0;
		free(again);
	}
	if (!canonical) {
		protobuf_c_message_free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

#ifdef MP_FUZZ_SKIP_SIGNATURE_CHECK
/* Only in the fuzz target fuzz_custody_fast (tests/fuzz/meson.build compiles this file again
 * for it with this macro; docs/fuzzing.md): the Ed25519 check is skipped so that the fuzzer
 * reaches the custody rules behind it without signing each input (the practice of
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION). Signer, type and key are still checked by the
 * caller; the daemons and every other target link the real check below. */
static MpCode signature_check(enum mp_stmt_type type, const MpSigned *s,
			      const uint8_t pk[MP_PK_LEN])
{
	(void)type, (void)s, (void)pk;
	return MP_ST(OK);
}
#else
/* The Ed25519 signature over the signing input: OK, BAD_SIG, or INTERNAL (out of memory). */
static MpCode signature_check(enum mp_stmt_type type, const MpSigned *s,
			      const uint8_t pk[MP_PK_LEN])
{
	size_t msg_len;
	uint8_t *msg = signing_input(type, s->body.data, s->body.len, &msg_len);
	if (!msg)
		return MP_ST(INTERNAL);
	bool good = mp_verify(pk, msg, msg_len, s->signature.data);
	free(msg);
	return good ? MP_ST(OK) : MP_ST(BAD_SIG);
}
#endif

MpCode mp_stmt_open(const MpSigned *s, enum mp_stmt_type type, const uint8_t pk[MP_PK_LEN],
		    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **body)
{
	*body = NULL;
	if (!s)
		return MP_ST(MALFORMED);
	if (!mp_bytes_len_is(s->signer_pk, MP_PK_LEN) || !mp_bytes_len_is(s->signature, MP_SIG_LEN))
		return MP_ST(MALFORMED);
	if (s->type != (uint32_t)type || CRYPTO_memcmp(s->signer_pk.data, pk, MP_PK_LEN) != 0)
		return MP_ST(BAD_SIG);
	MpCode sig = signature_check(type, s, pk);
	if (sig != MP_ST(OK))
		return sig;
	*body = mp_strict_unpack(desc, s->body.data, s->body.len);
	return *body ? MP_ST(OK) : MP_ST(MALFORMED);
}

void mp_stmt_hash(const MpSigned *s, uint8_t out[MP_HASH_LEN])
{
	uint8_t t = (uint8_t)s->type;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, hash_prefix, sizeof(hash_prefix) - 1) != 1 ||
	    EVP_DigestUpdate(ctx, &t, 1) != 1 ||
	    (s->body.len && EVP_DigestUpdate(ctx, s->body.data, s->body.len) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, NULL) != 1)
		abort(); /* out of memory inside OpenSSL: nothing sensible to return */
	EVP_MD_CTX_free(ctx);
}
