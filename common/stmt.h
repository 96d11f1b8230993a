/* Signed statements: Signed{type, body, signer_pk, signature}, signature over
 * "MPAY1" || u8(type) || body; identity stmt_hash = SHA256("MPAY1-H" || u8(type) || body).
 * A verifier never takes the type or the key from the statement (protocol.md section 2). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "proto.h"
#include "sig.h"

enum mp_stmt_type {
	MP_STMT_CHANNEL_CERT = 1,
	MP_STMT_MERCHANT_CERT = 2,
	MP_STMT_ISSUE_REQUEST = 3,
	MP_STMT_BIND = 4,
	MP_STMT_MOVE = 5,
	MP_STMT_HANDOFF = 6,
	MP_STMT_TRANSFER = 7,
	MP_STMT_CAP = 8,
	MP_STMT_CLOSE_REQUEST = 9,
	MP_STMT_CLOSE = 10,
	MP_STMT_SEGMENT_CLAIM = 11,
	MP_STMT_REFUND_REQUEST = 12,
	MP_STMT_REDEEM = 13,
	MP_STMT_RECEIPT = 14,
	MP_STMT_OFFER = 15,
	MP_STMT_DISPUTE = 16,
	MP_STMT_RELEASE_REQUEST = 17,
	MP_STMT_FORCED_CLOSE = 18,
	MP_STMT_REGISTER_ACCOUNT = 19,
	MP_STMT_REGISTER_MERCHANT = 20,
	MP_STMT_OFFER_CANCEL = 21,
};

/* A heap Signed owning its buffers, built from parts (copied). Free with mp_stmt_free. */
MpSigned *mp_stmt_from_parts(uint32_t type, const uint8_t *body, size_t body_len,
			     const uint8_t pk[MP_PK_LEN], const uint8_t sig[MP_SIG_LEN]);
/* Serialise body and sign it under type. NULL on failure (logged). */
MpSigned *mp_stmt_sign(const struct mp_key *key, enum mp_stmt_type type,
		       const ProtobufCMessage *body);
/* The two halves of mp_stmt_sign: the body serialised (malloc'd; NULL when memory is short),
 * then signed (any thread: the key is only read; common/sign_job.h runs it on a worker). */
uint8_t *mp_stmt_pack_body(const ProtobufCMessage *body, size_t *len);
MpSigned *mp_stmt_sign_packed(const struct mp_key *key, enum mp_stmt_type type, const uint8_t *body,
			      size_t body_len);
MpSigned *mp_stmt_copy(const MpSigned *s);
void mp_stmt_free(MpSigned *s);

/* Serialised Signed bytes (malloc'd) for storage; the inverse is mp_stmt_decode. */
uint8_t *mp_stmt_encode(const MpSigned *s, size_t *len);
MpSigned *mp_stmt_decode(const uint8_t *data, size_t len);

/* Check a statement against the type and key the verifier derived from its own state:
 * Signed.type and Signed.signer_pk must equal them, the signature must verify, and only then
 * is the body parsed strictly into *body (free with protobuf_c_message_free_unpacked).
 * Returns OK, BAD_SIG (type, key or signature) or MALFORMED (shape or body). */
MpCode mp_stmt_open(const MpSigned *s, enum mp_stmt_type type, const uint8_t pk[MP_PK_LEN],
		    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **body);

/* Strict parse: no unknown field at any depth, canonical (serialize(parse(x)) == x), decoded
 * size and repeated-field counts bounded (common/decode.h; a refusal on those grounds is
 * logged). */
ProtobufCMessage *mp_strict_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
				   size_t len);

void mp_stmt_hash(const MpSigned *s, uint8_t out[MP_HASH_LEN]);
