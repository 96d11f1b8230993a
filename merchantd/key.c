/* KeyReq (docs/goods.md "Key release"): the key of an offer whose paying Pay is committed.
 *
 *   KeyReq --lengths (channel_id, order_ref 16 bytes)--(else MALFORMED)-->
 *   the channel's current offer (memory) or else its row in the store (one primary-key read)
 *        --none on that channel--> UNKNOWN_ITEM
 *        --paid by a Dispute's word (pay_from_dispute)--> CONFLICT, no key: it goes only
 *          through the broker, which releases it to the buyer or refunds the buyer, never both
 *        --paid by a committed Pay--> OK with the key (also after the deadline)
 *        --paid by a Pay in a batch--> TOO_EARLY (retry once it is committed)
 *        --not paid--> UNDERPAID, naming pay_index
 *
 * Nothing changes: the same answer for as long as the store keeps the offer. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "offer.h"
#include "offer_store.h"

static void reply_key(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
		      const uint8_t *ref, const uint8_t *key)
{
	Micropay__V1__KeyResp resp = MICROPAY__V1__KEY_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	if (ref)
		resp.order_ref = (ProtobufCBinaryData){OFFER_REF_LEN, (uint8_t *)ref};
	if (key)
		resp.key = (ProtobufCBinaryData){MP_SEAL_KEY_LEN, (uint8_t *)key};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(KEY_RESP);
	env.key_resp = &resp;
	merchant_send(c, request_id, &env);
}

static void answer(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		   const struct offer *o)
{
	const Micropay__V1__KeyReq *r = env->key_req;
	char why[200], hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(r->channel_id.data, MP_ID_LEN, hex);
	if (o->paid_durable && m->fault == MP_FAULT_KEY_WITHHOLD) { /* fault.h */
		log_warn("%s: MP_FAULT=key_withhold: the key of the offer of '%s' withheld",
			 mp_conn_peer(c), o->item.id);
		reply_key(c, env->request_id, MP_ST(INTERNAL),
			  "key withheld (MP_FAULT=key_withhold)", o->order_ref, NULL);
		return;
	}
	if (o->paid && o->by_dispute) {
		log_info("%s: key of the offer of '%s' on channel %s refused: paid by its Dispute",
			 mp_conn_peer(c), o->item.id, hex);
		reply_key(
		    c, env->request_id, MP_ST(CONFLICT),
		    "this offer was paid by its Dispute's word: its key goes only through the "
		    "broker (the Dispute's answer carries it once released; a refunded dispute "
		    "has none)",
		    o->order_ref, NULL);
		return;
	}
	if (o->paid_durable) {
		m->stats.keys_released++;
		log_info("%s: key of the offer of '%s' on channel %s released", mp_conn_peer(c),
			 o->item.id, hex);
		reply_key(c, env->request_id, MP_ST(OK), "", o->order_ref, o->key);
		return;
	}
	MpCode code = o->paid ? MP_ST(TOO_EARLY) : MP_ST(UNDERPAID);
	if (o->paid)
		snprintf(why, sizeof(why), "the Pay at %u is committing; retry", o->pay_index);
	else
		snprintf(why, sizeof(why),
			 "the offer is not paid: pay index %u (right after %u) naming it",
			 o->pay_index, o->after_index);
	log_info("%s: key of the offer of '%s' on channel %s refused: %s: %s", mp_conn_peer(c),
		 o->item.id, hex, mp_code_name(code), why);
	reply_key(c, env->request_id, code, why, o->order_ref, NULL);
}

void handle_key(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__KeyReq *r = env->key_req;
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(r->order_ref, OFFER_REF_LEN)) {
		log_info("%s: KeyReq refused: MALFORMED", mp_conn_peer(c));
		reply_key(c, env->request_id, MP_ST(MALFORMED),
			  "field lengths (channel_id, order_ref)", NULL, NULL);
		return;
	}
	const struct channel *ch = channel_find(&m->channels, r->channel_id.data);
	const struct offer *cur = ch ? ch->offer : NULL;
	if (cur && !memcmp(cur->order_ref, r->order_ref.data, OFFER_REF_LEN)) {
		answer(m, c, env, cur); /* recorded or not: paid only once recorded */
		return;
	}
	struct offer *stored = NULL;
	int found = ch ? offer_store_find(m->store, ch->id, r->order_ref.data, &stored) : 0;
	if (found == 1)
		answer(m, c, env, stored);
	else
		reply_key(c, env->request_id, found < 0 ? MP_ST(INTERNAL) : MP_ST(UNKNOWN_ITEM),
			  found < 0 ? "cannot read the store; retry"
				    : "no such offer on this channel",
			  r->order_ref.data, NULL);
	offer_free(stored);
}
