#include "offer.h"

#include <string.h>

#include "stmt.h"

void mp_offer_body(const struct mp_offer *o, Micropay__V1__Offer *body)
{
	*body = (Micropay__V1__Offer)MICROPAY__V1__OFFER__INIT;
	body->merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->merchant_id};
	body->channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->channel_id};
	body->seg_seq = o->seg_seq;
	body->after_index = o->after_index;
	body->pay_index = o->pay_index;
	body->order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->order_ref};
	body->price = o->price;
	body->key_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)o->key_hash};
	body->ciphertext_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)o->ciphertext_hash};
	body->deadline = o->deadline;
}

bool mp_offer_units(uint64_t price, uint64_t unit_value, uint32_t max_jump, uint32_t *units)
{
	if (!price || !unit_value)
		return false;
	uint64_t u = price / unit_value + (price % unit_value != 0);
	if (u > max_jump)
		return false;
	*units = (uint32_t)u;
	return true;
}

static const char *take_fields(const Micropay__V1__Offer *b, struct mp_offer *out)
{
	if (!mp_bytes_len_is(b->merchant_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(b->channel_id, MP_ID_LEN))
		return "offer: merchant_id or channel_id is not 16 bytes";
	if (!mp_bytes_len_is(b->order_ref, MP_ID_LEN))
		return "offer: order_ref is not 16 bytes";
	if (!mp_bytes_len_is(b->key_hash, MP_HASH_LEN) ||
	    !mp_bytes_len_is(b->ciphertext_hash, MP_HASH_LEN))
		return "offer: key_hash or ciphertext_hash is not 32 bytes";
	if (b->price < 1 || b->price > INT64_MAX)
		return "offer: price is not 1 .. 2^63-1";
	if (b->after_index < 1 || b->pay_index <= b->after_index)
		return "offer: not 1 <= after_index < pay_index";
	memcpy(out->merchant_id, b->merchant_id.data, MP_ID_LEN);
	memcpy(out->channel_id, b->channel_id.data, MP_ID_LEN);
	out->seg_seq = b->seg_seq;
	out->after_index = b->after_index;
	out->pay_index = b->pay_index;
	memcpy(out->order_ref, b->order_ref.data, MP_ID_LEN);
	out->price = b->price;
	memcpy(out->key_hash, b->key_hash.data, MP_HASH_LEN);
	memcpy(out->ciphertext_hash, b->ciphertext_hash.data, MP_HASH_LEN);
	out->deadline = b->deadline;
	return NULL;
}

const char *mp_offer_open(const MpSigned *offer, const uint8_t merchant_pk[MP_PK_LEN],
			  struct mp_offer *out)
{
	memset(out, 0, sizeof(*out));
	if (!offer)
		return "offer: missing";
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(offer, MP_STMT_OFFER, merchant_pk,
				   &micropay__v1__offer__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return "offer: not an Offer signed by the holder's key (type, signer or signature)";
	if (code != MP_ST(OK))
		return "offer: malformed Offer body";
	const char *bad = take_fields((const Micropay__V1__Offer *)body, out);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}
