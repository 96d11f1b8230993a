/* Open: check a ChannelCert off-line against the broker key from our own configuration, apply
 * the holder rule from our own durable record, and prove holding in the OpenAck
 * (PROTOCOL.md section 6, "Open and pay"). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "stmt.h"
#include "store.h"

static Micropay__V1__ChannelCert *parse_cert(const uint8_t *bytes, size_t len)
{
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (!s)
		return NULL;
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, s->body.data, s->body.len);
	mp_stmt_free(s);
	return cc;
}

/* From our own stored (already verified) cert bytes. */
bool channel_from_cert(struct channel *ch, const uint8_t *cert, size_t len)
{
	Micropay__V1__ChannelCert *cc = parse_cert(cert, len);
	if (!cc || !mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN)) {
		if (cc)
			micropay__v1__channel_cert__free_unpacked(cc, NULL);
		return false;
	}
	memcpy(ch->nonce, cc->chain_nonce.data, MP_NONCE_LEN);
	ch->n = cc->n;
	ch->unit_value = cc->unit_value;
	ch->pay_until = cc->pay_until;
	ch->redeem_until = cc->redeem_until;
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
	ch->cert = malloc(len);
	if (!ch->cert)
		return false;
	memcpy(ch->cert, cert, len);
	ch->cert_len = len;
	return true;
}

static void reply_open(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
		       const struct merchant *m, const struct channel *ch)
{
	Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
	MpStatus st;
	MpPoint point = MICROPAY__V1__POINT__INIT;
	ack.status = merchant_status(&st, code, detail);
	if (ch) {
		ack.hseq = ch->hseq;
		point.seg_seq = ch->seg_seq;
		point.index = ch->last;
		point.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)ch->w_last};
		ack.point = &point;
		ack.credit = ch->credit;
		ack.last_order_ref =
		    (ProtobufCBinaryData){ch->last_order_ref_len, (uint8_t *)ch->last_order_ref};
		ack.max_jump = m->cfg.max_jump;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_ACK);
	env.open_ack = &ack;
	merchant_send(c, request_id, &env);
}

/* Policy checks of a verified cert; OK or the refusal with its detail. */
static MpCode check_cert(const struct merchant *m, const Micropay__V1__ChannelCert *cc,
			 const char **detail)
{
	uint64_t now = mp_now();
	*detail = NULL;
	if (!mp_bytes_len_is(cc->broker_key_id, MP_KEY_ID_LEN) ||
	    memcmp(cc->broker_key_id.data, m->broker_key_id, MP_KEY_ID_LEN) != 0 ||
	    !mp_bytes_len_is(cc->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(cc->owner_pk, MP_PK_LEN) ||
	    !mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) ||
	    !mp_bytes_len_is(cc->root, MP_HASH_LEN)) {
		*detail = "cert fields";
		return MP_ST(MALFORMED);
	}
	if (cc->n < 1 || cc->unit_value < 1 || cc->unit_value > INT64_MAX ||
	    cc->redeem_until < cc->pay_until) {
		*detail = "cert bounds";
		return MP_ST(MALFORMED);
	}
	if (strcmp(cc->currency, m->cfg.currency) != 0) {
		*detail = "currency not accepted here";
		return MP_ST(MALFORMED);
	}
	if (now + m->cfg.pay_margin >= cc->pay_until) {
		*detail = "channel no longer payable";
		return MP_ST(EXPIRED);
	}
	if (cc->pay_until > now + m->cfg.max_pay_window ||
	    cc->redeem_until + m->cfg.t_grace > m->cert_valid_until) {
		*detail = "channel outlives this merchant's policy or MerchantCert";
		return MP_ST(OUT_OF_RANGE);
	}
	if (!mp_bytes_len_is(cc->holder0, MP_ID_LEN) ||
	    memcmp(cc->holder0.data, m->mid, MP_ID_LEN)) {
		*detail = "this merchant is not the holder";
		return MP_ST(NOT_HOLDER);
	}
	return MP_ST(OK);
}

static struct channel *adopt_channel(struct merchant *m, const MpSigned *cert,
				     const Micropay__V1__ChannelCert *cc)
{
	struct channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	memcpy(ch->id, cc->channel_id.data, MP_ID_LEN);
	size_t len;
	uint8_t *bytes = mp_stmt_encode(cert, &len);
	bool ok = bytes && channel_from_cert(ch, bytes, len);
	free(bytes);
	ch->state = CHANNEL_HELD;
	memcpy(ch->w_last, cc->root.data, MP_HASH_LEN);
	memcpy(ch->durable_w, cc->root.data, MP_HASH_LEN);
	/* Durable before the OpenAck: a restart must still know it holds this channel. */
	if (!ok || !store_insert_channel(m->store, ch)) {
		free(ch->cert);
		free(ch);
		return NULL;
	}
	channel_insert(&m->channels, ch);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	log_info("channel %s: held (epoch 0, n %u, unit %llu)", hex, ch->n,
		 (unsigned long long)ch->unit_value);
	return ch;
}

void handle_open(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__OpenReq *req = env->open_req;
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(req->cert, MP_STMT_CHANNEL_CERT, m->broker_pk,
				   &micropay__v1__channel_cert__descriptor, &body);
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)body;
	const char *detail = "ChannelCert refused";
	if (code == MP_ST(OK))
		code = check_cert(m, cc, &detail);
	struct channel *ch = NULL;
	if (code == MP_ST(OK)) {
		ch = channel_find(&m->channels, cc->channel_id.data);
		if (!ch && !(ch = adopt_channel(m, req->cert, cc))) {
			code = MP_ST(INTERNAL);
			detail = "cannot record the channel";
		}
	}
	if (code != MP_ST(OK))
		log_info("%s: open refused: %s (%s)", mp_conn_peer(c), mp_code_name(code), detail);
	else
		m->stats.opens++;
	reply_open(c, env->request_id, code, code == MP_ST(OK) ? NULL : detail, m, ch);
	if (cc)
		micropay__v1__channel_cert__free_unpacked(cc, NULL);
}
