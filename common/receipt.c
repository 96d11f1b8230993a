#include "receipt.h"

#include <string.h>

#include "stmt.h"

void mp_receipt_body(const struct mp_receipt *r, Micropay__V1__Receipt *body)
{
	*body = (Micropay__V1__Receipt)MICROPAY__V1__RECEIPT__INIT;
	body->channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)r->channel_id};
	body->seg_seq = r->seg_seq;
	body->index = r->index;
	body->order_ref = (ProtobufCBinaryData){r->order_ref_len, (uint8_t *)r->order_ref};
	body->merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)r->merchant_id};
	body->time = r->time;
}

static const char *open_cert(const MpSigned *cert, const uint8_t broker_pk[MP_PK_LEN],
			     struct mp_receipt *out)
{
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, broker_pk,
				   &micropay__v1__merchant_cert__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return "merchant_cert: not a MerchantCert signed by the given broker key";
	if (code != MP_ST(OK))
		return "merchant_cert: malformed MerchantCert";
	const Micropay__V1__MerchantCert *mc = (const Micropay__V1__MerchantCert *)body;
	uint8_t key_id[MP_KEY_ID_LEN];
	mp_key_id(broker_pk, key_id);
	const char *bad = NULL;
	if (!mp_bytes_len_is(mc->broker_key_id, MP_KEY_ID_LEN) ||
	    memcmp(mc->broker_key_id.data, key_id, MP_KEY_ID_LEN))
		bad = "merchant_cert: broker_key_id is not the given broker key's";
	else if (!mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) ||
		 !mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN))
		bad = "merchant_cert: malformed merchant_id or merchant_pk";
	if (!bad) {
		memcpy(out->merchant_id, mc->merchant_id.data, MP_ID_LEN);
		memcpy(out->merchant_pk, mc->merchant_pk.data, MP_PK_LEN);
		out->cert_valid_until = mc->valid_until;
	}
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

static const char *take_fields(const Micropay__V1__Receipt *r, struct mp_receipt *out)
{
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN))
		return "receipt: channel_id is not 16 bytes";
	if (!mp_bytes_len_is(r->merchant_id, MP_ID_LEN))
		return "receipt: merchant_id is not 16 bytes";
	if (r->order_ref.len < 1 || r->order_ref.len > MP_RECEIPT_ORDER_REF_MAX)
		return "receipt: order_ref is not 1-32 bytes";
	if (r->index < 1)
		return "receipt: index 0 is a root, never a payment";
	if (memcmp(r->merchant_id.data, out->merchant_id, MP_ID_LEN))
		return "receipt: names another merchant than the MerchantCert";
	memcpy(out->channel_id, r->channel_id.data, MP_ID_LEN);
	out->seg_seq = r->seg_seq;
	out->index = r->index;
	memcpy(out->order_ref, r->order_ref.data, r->order_ref.len);
	out->order_ref_len = r->order_ref.len;
	out->time = r->time;
	return NULL;
}

const char *mp_receipt_verify(const MpSigned *receipt, const MpSigned *merchant_cert,
			      const uint8_t broker_pk[MP_PK_LEN], struct mp_receipt *out)
{
	memset(out, 0, sizeof(*out));
	if (!receipt || !merchant_cert)
		return "receipt and merchant_cert are both needed";
	const char *bad = open_cert(merchant_cert, broker_pk, out);
	if (bad)
		return bad;
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(receipt, MP_STMT_RECEIPT, out->merchant_pk,
				   &micropay__v1__receipt__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return "receipt: not a Receipt signed by the MerchantCert's key (type, signer or "
		       "signature)";
	if (code != MP_ST(OK))
		return "receipt: malformed Receipt body";
	bad = take_fields((const Micropay__V1__Receipt *)body, out);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}
