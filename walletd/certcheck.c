#include "certcheck.h"

#include <string.h>

#include "chain.h"
#include "ids.h"
#include "stmt.h"

static bool same_bytes(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool bytes_equal(ProtobufCBinaryData a, const uint8_t *b, size_t len)
{
	return mp_bytes_len_is(a, len) && memcmp(a.data, b, len) == 0;
}

static const char *compare(const Micropay__V1__ChannelCert *cc, const uint8_t broker_pk[MP_PK_LEN],
			   const Micropay__V1__IssueRequest *req)
{
	uint8_t key_id[MP_KEY_ID_LEN], channel_id[MP_ID_LEN];
	mp_key_id(broker_pk, key_id);
	if (!bytes_equal(cc->broker_key_id, key_id, MP_KEY_ID_LEN))
		return "broker_key_id is not the configured broker's key id";
	if (!mp_bytes_len_is(req->account_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(req->issue_req_id, MP_ID_LEN))
		return "the request lacks account_id or issue_req_id";
	mp_channel_id(req->account_id.data, req->issue_req_id.data, channel_id);
	if (!bytes_equal(cc->channel_id, channel_id, MP_ID_LEN))
		return "channel_id is not SHA256(\"MPAY1-CID\" || account_id || issue_req_id)";
	if (!same_bytes(cc->owner_pk, req->owner_pk))
		return "owner_pk differs from the request";
	if (!same_bytes(cc->chain_nonce, req->chain_nonce))
		return "chain_nonce differs from the request";
	if (!same_bytes(cc->root, req->root))
		return "root differs from the request";
	if (cc->n != req->n)
		return "n differs from the request";
	if (cc->unit_value != req->unit_value)
		return "unit_value differs from the request";
	if (strcmp(cc->currency, req->currency) != 0)
		return "currency differs from the request";
	if (!same_bytes(cc->holder0, req->holder0))
		return "holder0 differs from the request";
	if (cc->issued_at > UINT64_MAX - 30 * WALLET_DAY || cc->issued_at % WALLET_HOUR != 0)
		return "issued_at is not a time rounded down to the hour";
	if (cc->pay_until != cc->issued_at + req->pay_until_days * WALLET_DAY)
		return "pay_until is not issued_at + pay_until_days";
	if (cc->redeem_until <= cc->pay_until)
		return "redeem_until is not after pay_until";
	return NULL;
}

const char *wallet_cert_check(const MpSigned *cert, const uint8_t broker_pk[MP_PK_LEN],
			      const Micropay__V1__IssueRequest *req,
			      Micropay__V1__ChannelCert **out)
{
	*out = NULL;
	ProtobufCMessage *body;
	MpCode code = mp_stmt_open(cert, MP_STMT_CHANNEL_CERT, broker_pk,
				   &micropay__v1__channel_cert__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return "not a ChannelCert signed by the configured broker_pk (BAD_SIG)";
	if (code != MP_ST(OK))
		return "ChannelCert is malformed";
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)body;
	const char *why = compare(cc, broker_pk, req);
	if (why) {
		protobuf_c_message_free_unpacked(body, NULL);
		return why;
	}
	*out = cc;
	return NULL;
}
