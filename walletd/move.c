/* Moving a channel to another merchant (protocol.md sections 4 and 6, "Handoff"): the Move is
 * the customer's consent, signed by the current segment's owner key; the new merchant asks the
 * holder for a Handoff and proves holding in its OpenAck with that Handoff, which the wallet
 * checks against the previous holder's key before it sends a payword. */
#include <openssl/crypto.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

MpSigned *wallet_move_sign(struct wallet *w, const struct wchannel *ch,
			   const uint8_t to_mid[MP_ID_LEN])
{
	struct mp_key owner = {0};
	if (!wallet_owner_key(w, ch, &owner))
		return NULL;
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->channel_id};
	mv.seg_seq = ch->seg_seq; /* signed by this segment's owner key */
	mv.from_epoch = ch->epoch;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to_mid};
	MpSigned *s = mp_stmt_sign(&owner, MP_STMT_MOVE, &mv.base);
	mp_key_free(&owner);
	return s;
}

bool wallet_id_is_zero(const uint8_t id[MP_ID_LEN])
{
	static const uint8_t zero[MP_ID_LEN];
	return memcmp(id, zero, MP_ID_LEN) == 0;
}

const char *wallet_bind_check(const struct wallet *w, const struct wchannel *ch,
			      const MpSigned *bind, uint8_t mid[MP_ID_LEN])
{
	ProtobufCMessage *body = NULL;
	if (!bind || mp_stmt_open(bind, MP_STMT_BIND, w->cfg.broker_pk,
				  &micropay__v1__bind__descriptor, &body) != MP_ST(OK))
		return "not a Bind signed by the broker";
	Micropay__V1__Bind *b = (Micropay__V1__Bind *)body;
	const char *bad = NULL;
	if (!mp_bytes_len_is(b->channel_id, MP_ID_LEN) ||
	    memcmp(b->channel_id.data, ch->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(b->merchant_id, MP_ID_LEN))
		bad = "a Bind of another channel";
	else
		memcpy(mid, b->merchant_id.data, MP_ID_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

const char *wallet_merchant_cert_check(const struct wallet *w, const MpSigned *cert,
				       const uint8_t mid[MP_ID_LEN], uint8_t pk[MP_PK_LEN])
{
	ProtobufCMessage *body = NULL;
	if (!cert || mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, w->cfg.broker_pk,
				  &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return "not a MerchantCert signed by the broker";
	Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)body;
	const char *bad = NULL;
	if (!mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) ||
	    memcmp(mc->merchant_id.data, mid, MP_ID_LEN) ||
	    !mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN))
		bad = "a MerchantCert of another merchant";
	else if (pk)
		memcpy(pk, mc->merchant_pk.data, MP_PK_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

const char *wallet_move_check_handoff(const struct wallet *w, const struct wchannel *ch,
				      const MpSigned *event, const MpSigned *move,
				      const uint8_t to_mid[MP_ID_LEN])
{
	uint8_t pk[MP_PK_LEN], move_hash[MP_HASH_LEN];
	const char *bad = wallet_merchant_cert_check(w, ch->holder_cert, ch->holder, pk);
	if (bad)
		return "no MerchantCert of the previous holder";
	ProtobufCMessage *body = NULL;
	if (!event || mp_stmt_open(event, MP_STMT_HANDOFF, pk, &micropay__v1__handoff__descriptor,
				   &body) != MP_ST(OK))
		return "the custody event is not a Handoff signed by the previous holder";
	Micropay__V1__Handoff *h = (Micropay__V1__Handoff *)body;
	mp_stmt_hash(move, move_hash);
	if (!mp_bytes_len_is(h->channel_id, MP_ID_LEN) ||
	    memcmp(h->channel_id.data, ch->channel_id, MP_ID_LEN))
		bad = "the Handoff is for another channel";
	else if (h->hseq != ch->epoch + 1)
		bad = "the Handoff does not end our epoch";
	else if (!mp_bytes_len_is(h->from_mid, MP_ID_LEN) ||
		 memcmp(h->from_mid.data, ch->holder, MP_ID_LEN) ||
		 !mp_bytes_len_is(h->to_mid, MP_ID_LEN) ||
		 memcmp(h->to_mid.data, to_mid, MP_ID_LEN))
		bad = "the Handoff names other merchants";
	else if (!mp_bytes_len_is(h->move_hash, MP_HASH_LEN) ||
		 memcmp(h->move_hash.data, move_hash, MP_HASH_LEN))
		bad = "the Handoff does not carry our Move";
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}
