/* Signed statements and their bodies under the strict-parsing rules (common/stmt.h): the
 * first byte picks a statement type (1..20), the rest is parsed as a Signed (mp_stmt_decode)
 * and as that type's body (mp_strict_unpack). What the strict parser accepts must be canonical:
 * it encodes back to exactly the input bytes. A decoded Signed is also opened against a fixed
 * key (mp_stmt_open), which must refuse it unless the key and signature match. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "stmt.h"

static const ProtobufCMessageDescriptor *body_descriptor(uint8_t type)
{
	switch (type) {
	case MP_STMT_CHANNEL_CERT:
		return &micropay__v1__channel_cert__descriptor;
	case MP_STMT_MERCHANT_CERT:
		return &micropay__v1__merchant_cert__descriptor;
	case MP_STMT_ISSUE_REQUEST:
		return &micropay__v1__issue_request__descriptor;
	case MP_STMT_BIND:
		return &micropay__v1__bind__descriptor;
	case MP_STMT_MOVE:
		return &micropay__v1__move__descriptor;
	case MP_STMT_HANDOFF:
		return &micropay__v1__handoff__descriptor;
	case MP_STMT_TRANSFER:
		return &micropay__v1__transfer__descriptor;
	case MP_STMT_CAP:
		return &micropay__v1__cap__descriptor;
	case MP_STMT_CLOSE_REQUEST:
		return &micropay__v1__close_request__descriptor;
	case MP_STMT_CLOSE:
		return &micropay__v1__close__descriptor;
	case MP_STMT_SEGMENT_CLAIM:
		return &micropay__v1__segment_claim__descriptor;
	case MP_STMT_REFUND_REQUEST:
		return &micropay__v1__refund_request__descriptor;
	case MP_STMT_REDEEM:
		return &micropay__v1__redeem__descriptor;
	case MP_STMT_RECEIPT:
		return &micropay__v1__receipt__descriptor;
	case MP_STMT_OFFER:
		return &micropay__v1__offer__descriptor;
	case MP_STMT_DISPUTE:
		return &micropay__v1__dispute__descriptor;
	case MP_STMT_RELEASE_REQUEST:
		return &micropay__v1__release_request__descriptor;
	case MP_STMT_FORCED_CLOSE:
		return &micropay__v1__forced_close__descriptor;
	case MP_STMT_REGISTER_ACCOUNT:
		return &micropay__v1__register_account__descriptor;
	case MP_STMT_REGISTER_MERCHANT:
		return &micropay__v1__register_merchant__descriptor;
	}
	return NULL;
}

static struct mp_key fixed_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	uint8_t seed[MP_SK_LEN];
	memset(seed, 0x5e, sizeof(seed));
	if (!mp_key_from_seed(&fixed_key, seed))
		abort();
	return 0;
}

/* A strictly parsed message packs to exactly the bytes it came from. */
static void check_canonical(const ProtobufCMessage *m, const uint8_t *data, size_t len)
{
	size_t packed = protobuf_c_message_get_packed_size(m);
	uint8_t *out = malloc(packed ? packed : 1);
	if (!out)
		return;
	protobuf_c_message_pack(m, out);
	if (packed != len || memcmp(out, data, len) != 0)
		abort(); /* the strict parser accepted a non-canonical encoding */
	free(out);
}

static void open_signed(const uint8_t *data, size_t len, uint8_t type)
{
	MpSigned *s = mp_stmt_decode(data, len);
	if (!s)
		return;
	size_t enc_len = 0;
	uint8_t *enc = mp_stmt_encode(s, &enc_len);
	if (enc && (enc_len != len || memcmp(enc, data, len) != 0))
		abort(); /* a decoded Signed does not encode back to its bytes */
	free(enc);
	const ProtobufCMessageDescriptor *desc = body_descriptor(type);
	ProtobufCMessage *body = NULL;
	if (desc && mp_stmt_open(s, type, fixed_key.pk, desc, &body) == MP_ST(OK)) {
		if (memcmp(s->signer_pk.data, fixed_key.pk, MP_PK_LEN) != 0)
			abort(); /* opened under a key that is not the verifier's */
		protobuf_c_message_free_unpacked(body, NULL);
	}
	mp_stmt_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t type = (uint8_t)(data[0] % 20 + 1);
	const ProtobufCMessageDescriptor *desc = body_descriptor(type);
	ProtobufCMessage *m = mp_strict_unpack(desc, data + 1, size - 1);
	if (m) {
		check_canonical(m, data + 1, size - 1);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	open_signed(data + 1, size - 1, type);
	return 0;
}
