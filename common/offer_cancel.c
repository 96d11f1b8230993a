/* OfferCancel statements (offer_cancel.h). */
#include "offer_cancel.h"

#include <string.h>

#include "stmt.h"

MpSigned *mp_offer_cancel_sign(const struct mp_key *owner, const MpSigned *offer,
			       const struct mp_offer *o)
{
	uint8_t hash[MP_HASH_LEN];
	mp_stmt_hash(offer, hash);
	Micropay__V1__OfferCancel body = MICROPAY__V1__OFFER_CANCEL__INIT;
	body.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->merchant_id};
	body.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->channel_id};
	body.seg_seq = o->seg_seq;
	body.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->order_ref};
	body.offer_hash = (ProtobufCBinaryData){MP_HASH_LEN, hash};
	return mp_stmt_sign(owner, MP_STMT_OFFER_CANCEL, &body.base);
}

const char *mp_offer_cancel_names(const Micropay__V1__OfferCancel *c, const MpSigned *offer,
				  const struct mp_offer *o)
{
	uint8_t hash[MP_HASH_LEN];
	if (!mp_bytes_len_is(c->merchant_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(c->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(c->order_ref, MP_ID_LEN) ||
	    !mp_bytes_len_is(c->offer_hash, MP_HASH_LEN))
		return "cancel: ids must be 16 bytes and offer_hash 32";
	mp_stmt_hash(offer, hash);
	if (memcmp(c->merchant_id.data, o->merchant_id, MP_ID_LEN) != 0 ||
	    memcmp(c->channel_id.data, o->channel_id, MP_ID_LEN) != 0 || c->seg_seq != o->seg_seq ||
	    memcmp(c->order_ref.data, o->order_ref, MP_ID_LEN) != 0)
		return "cancel: its merchant, channel, segment or order_ref is not the Offer's";
	if (memcmp(c->offer_hash.data, hash, MP_HASH_LEN) != 0)
		return "cancel: offer_hash is not the Offer's stmt_hash";
	return NULL;
}

const char *mp_offer_cancel_check(const MpSigned *cancel, const uint8_t owner_pk[MP_PK_LEN],
				  const MpSigned *offer, const struct mp_offer *o)
{
	if (!cancel)
		return "cancel: missing";
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(cancel, MP_STMT_OFFER_CANCEL, owner_pk,
				   &micropay__v1__offer_cancel__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return "cancel: not an OfferCancel signed by the segment's owner key (type, signer "
		       "or signature)";
	if (code != MP_ST(OK))
		return "cancel: malformed OfferCancel body";
	const char *bad = mp_offer_cancel_names((const Micropay__V1__OfferCancel *)body, offer, o);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}
