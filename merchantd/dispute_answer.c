/* merchantd's poller of disputes (docs/disputes.md "The merchant's key"; protocol.md section 6
 * "Fair exchange"): a wallet that got no key disputes at the broker, which asks the merchant
 * through this poll on the existing broker link (redeemer_link). Every [merchant]
 * dispute_poll seconds: OpenDisputesReq (at most MP_MAX_OPEN_DISPUTES, the oldest answer time
 * first), then for each dispute whose offer the store holds (offer_lookup) one DisputeKeyReq
 * with its key, or with the buyer's OfferCancel when the buyer gave the offer up (offer_cancel.h:
 * the broker ends the dispute CANCELLED), one at a time. A dispute of an offer the store does not
 * hold is counted and logged (the broker refunds it after answer_by). Every request is idempotent
 * at the broker, so a lost answer is only asked again at the next poll.
 *
 *   IDLE --timer--> link up? --no: broker_link_want--> IDLE (next poll)
 *      | yes
 *      v
 *   LISTING --OpenDisputesResp OK--> ANSWERING --(each: offer_lookup, DisputeKeyReq, its
 *      |                                          answer counted)--> IDLE (next poll)
 *      |   an offer that still holds its channel unpaid (offer.h): the Dispute's word at
 *      |   pay_index (in the list) is first applied as the offer's Pay (pay_from_dispute), and
 *      |   the key goes at the next poll, once that Pay is durable; a cancelled offer is
 *      |   answered with the buyer's cancel, never the key
 *      +--no answer / refused--> IDLE (counted; next poll)
 *   ANSWERING done --> ENDED: the disputes of offers still holding their channels past their
 *      deadlines, asked one by one (dispute_ended.c) --> IDLE (next poll) */
#include "dispute_answer.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "broker_link.h"
#include "dispute_ended.h"
#include "log.h"
#include "merchant.h"
#include "metrics.h"
#include "offer.h"
#include "proto_limits.h"
#include "sealed.h"
#include "stmt.h"
#include "util.h"

struct open_dispute {
	uint8_t channel_id[MP_ID_LEN], order_ref[MP_ID_LEN];
	uint8_t w[MP_HASH_LEN]; /* the Dispute's word at pay_index (zero: a broker too old) */
	bool has_w;
};

struct dispute_answer {
	struct merchant *m;
	struct event *timer;
	bool busy, stopping;
	struct open_dispute list[MP_MAX_OPEN_DISPUTES];
	size_t n, next;
	struct dispute_answer_stats stats;
	struct dispute_ended *ended; /* dispute_ended.c: held offers whose dispute ended */
};

static void arm(struct dispute_answer *da, uint32_t seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	da->busy = false;
	if (!da->stopping)
		evtimer_add(da->timer, &tv);
}

static void answer_next(struct dispute_answer *da);

static void on_ended_round(void *arg)
{
	struct dispute_answer *da = arg;
	arm(da, da->m->cfg.dispute_poll);
}

static void ids_hex(const struct open_dispute *d, char ch[MP_HEX_ID_LEN + 1],
		    char ref[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(d->channel_id, MP_ID_LEN, ch);
	mp_hex_encode(d->order_ref, MP_ID_LEN, ref);
}

/* ---- ANSWERING ---- */

static void on_key_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	(void)c;
	struct dispute_answer *da = arg;
	const struct open_dispute *d = &da->list[da->next++];
	char ch[MP_HEX_ID_LEN + 1], ref[MP_HEX_ID_LEN + 1];
	ids_hex(d, ch, ref);
	if (!env || env->body_case != MP_BODY(DISPUTE_KEY_RESP) || !env->dispute_key_resp->status) {
		log_warn("dispute %s/%s: no answer to the key; asked again at the next poll", ch,
			 ref);
		da->stats.failures++;
	} else {
		const MpStatus *st = env->dispute_key_resp->status;
		if ((st->code == MP_ST(OK) || st->code == MP_ST(DUPLICATE_OK)) &&
		    env->dispute_key_resp->state ==
			MICROPAY__V1__DISPUTE_STATE__DISPUTE_CANCELLED) {
			log_info("dispute %s/%s: ended by the buyer's OfferCancel", ch, ref);
			da->stats.cancelled++;
		} else if (st->code == MP_ST(OK) || st->code == MP_ST(DUPLICATE_OK)) {
			log_info("dispute %s/%s: key released to the broker", ch, ref);
			da->stats.released++;
		} else {
			log_warn("dispute %s/%s: the broker refused the key: %s %s", ch, ref,
				 mp_code_name(st->code), st->detail ? st->detail : "");
			da->stats.refused++;
		}
	}
	if (da->stopping)
		return;
	answer_next(da);
}

/* Answer da->list[da->next] with the offer's cancel if the buyer gave it up, else its key;
 * false if it cannot be sent. */
static bool send_answer(struct dispute_answer *da, const struct offer *o)
{
	Micropay__V1__DisputeKeyReq req = MICROPAY__V1__DISPUTE_KEY_REQ__INIT;
	const struct open_dispute *d = &da->list[da->next];
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, da->m->mid};
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)d->channel_id};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)d->order_ref};
	MpSigned *cancel = o->cancel ? mp_stmt_decode(o->cancel, o->cancel_len) : NULL;
	if (o->cancel && !cancel)
		return false;
	if (cancel)
		req.cancel = cancel;
	else
		req.key = (ProtobufCBinaryData){MP_SEAL_KEY_LEN, (uint8_t *)o->key};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(DISPUTE_KEY_REQ);
	env.dispute_key_req = &req;
	bool sent = broker_link_call(redeemer_link(da->m->redeemer), &env, on_key_answer, da) == 0;
	mp_stmt_free(cancel);
	return sent;
}

/* d's offer holds its channel unpaid: its Dispute's word is its payment (the broker credited
 * us up to pay_index), applied as the offer's Pay before the key leaves, so that the channel
 * goes on after pay_index and the buyer can no longer cancel the offer. True if it was (or
 * could not be) applied now: the key waits for the next poll, once that Pay is durable. */
static bool paid_by_the_dispute(struct dispute_answer *da, const struct open_dispute *d,
				const char *ch_hex, const char *ref_hex)
{
	struct channel *ch = channel_find(&da->m->channels, d->channel_id);
	const struct offer *held = ch ? offer_holding(ch) : NULL;
	if (!offer_is_ref(held, d->order_ref, OFFER_REF_LEN))
		return false;
	char why[200];
	MpCode code =
	    d->has_w ? pay_from_dispute(da->m, ch, held, d->w, why, sizeof(why)) : MP_ST(MALFORMED);
	if (code == MP_ST(OK))
		log_info("dispute %s/%s: the Dispute's word pays the offer (pay_index %u); the key "
			 "goes once that is durable",
			 ch_hex, ref_hex, held->pay_index);
	else
		log_warn("dispute %s/%s: the offer holds the channel unpaid and the Dispute's word "
			 "cannot pay it (%s: %s); no key sent",
			 ch_hex, ref_hex, mp_code_name(code),
			 d->has_w ? why : "the broker sent no word");
	return true;
}

static void answer_next(struct dispute_answer *da)
{
	char ch[MP_HEX_ID_LEN + 1], ref[MP_HEX_ID_LEN + 1];
	for (; da->next < da->n; da->next++) {
		const struct open_dispute *d = &da->list[da->next];
		ids_hex(d, ch, ref);
		struct offer *o = NULL;
		int found = offer_lookup(da->m, d->channel_id, d->order_ref, &o);
		if (found < 0) {
			log_warn("dispute %s/%s: the offer cannot be read from the store; at the "
				 "next poll",
				 ch, ref);
			da->stats.failures++;
			continue; /* the others are still answered */
		}
		if (!o) {
			log_warn(
			    "dispute %s/%s: no such offer in the store; the broker will refund "
			    "it",
			    ch, ref);
			da->stats.unknown++;
			continue;
		}
		bool wait = !o->cancel &&
			    (paid_by_the_dispute(da, d, ch, ref) || (o->paid && !o->paid_durable));
		bool sent = !wait && send_answer(da, o);
		offer_free(o);
		if (sent)
			return;
		if (wait)
			continue; /* the next poll answers it */
		log_warn("dispute %s/%s: the key cannot be sent; at the next poll", ch, ref);
		da->stats.failures++;
		break;
	}
	dispute_ended_round(da->ended, on_ended_round, da);
}

/* ---- LISTING ---- */

static void on_listed(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	(void)c;
	struct dispute_answer *da = arg;
	if (!env || env->body_case != MP_BODY(OPEN_DISPUTES_RESP) ||
	    !env->open_disputes_resp->status ||
	    env->open_disputes_resp->status->code != MP_ST(OK)) {
		log_warn("disputes: the broker did not list the open disputes (%s)",
			 env && env->body_case == MP_BODY(OPEN_DISPUTES_RESP) &&
				 env->open_disputes_resp->status
			     ? mp_code_name(env->open_disputes_resp->status->code)
			     : "no answer");
		da->stats.failures++;
		arm(da, da->m->cfg.dispute_poll);
		return;
	}
	const Micropay__V1__OpenDisputesResp *r = env->open_disputes_resp;
	da->stats.polls++;
	da->n = da->next = 0;
	for (size_t i = 0; i < r->n_disputes && da->n < MP_MAX_OPEN_DISPUTES; i++) {
		const Micropay__V1__OpenDispute *d = r->disputes[i];
		if (!d || !mp_bytes_len_is(d->channel_id, MP_ID_LEN) ||
		    !mp_bytes_len_is(d->order_ref, MP_ID_LEN))
			continue;
		struct open_dispute *o = &da->list[da->n++];
		memcpy(o->channel_id, d->channel_id.data, MP_ID_LEN);
		memcpy(o->order_ref, d->order_ref.data, MP_ID_LEN);
		o->has_w = mp_bytes_len_is(d->w_pay_index, MP_HASH_LEN);
		memset(o->w, 0, MP_HASH_LEN);
		if (o->has_w)
			memcpy(o->w, d->w_pay_index.data, MP_HASH_LEN);
	}
	if (da->n)
		log_info("disputes: %zu open against this merchant", da->n);
	if (!da->stopping)
		answer_next(da);
}

static void poll_now(struct dispute_answer *da)
{
	struct broker_link *link = redeemer_link(da->m->redeemer);
	if (!broker_link_is_up(link)) {
		broker_link_want(link);
		arm(da, da->m->cfg.dispute_poll);
		return;
	}
	Micropay__V1__OpenDisputesReq req = MICROPAY__V1__OPEN_DISPUTES_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, da->m->mid};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(OPEN_DISPUTES_REQ);
	env.open_disputes_req = &req;
	da->busy = true;
	if (broker_link_call(link, &env, on_listed, da) != 0) {
		da->stats.failures++;
		arm(da, da->m->cfg.dispute_poll);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct dispute_answer *da = arg;
	if (!da->stopping && !da->busy)
		poll_now(da);
}

bool dispute_answer_start(struct merchant *m)
{
	struct dispute_answer *da = calloc(1, sizeof(*da));
	if (!da)
		return false;
	m->dispute_answer = da;
	da->m = m;
	da->timer = evtimer_new(m->base, on_timer, da);
	da->ended = dispute_ended_new(m);
	if (!da->timer || !da->ended)
		return false;
	arm(da, m->cfg.dispute_poll); /* the first poll one period after the start */
	return true;
}

void dispute_answer_stop(struct merchant *m)
{
	if (m->dispute_answer) {
		m->dispute_answer->stopping = true;
		dispute_ended_stop(m->dispute_answer->ended);
		evtimer_del(m->dispute_answer->timer);
	}
}

void dispute_answer_free(struct merchant *m)
{
	struct dispute_answer *da = m->dispute_answer;
	if (!da)
		return;
	if (da->timer)
		event_free(da->timer);
	dispute_ended_free(da->ended);
	free(da);
	m->dispute_answer = NULL;
}

const struct dispute_answer_stats *dispute_answer_stats(const struct merchant *m)
{
	return m->dispute_answer ? &m->dispute_answer->stats : NULL;
}

void dispute_answer_metrics_register(struct merchant *m, struct mp_metrics *reg)
{
	struct dispute_answer_stats *s = &m->dispute_answer->stats;
	const char *help = "Open disputes answered with a key (or the buyer's cancel), by result.";
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_polls_total",
		       "OpenDisputesReq answered by the broker.", NULL, &s->polls);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_keys_total", help,
		       (const char *[]){"result", "released", NULL}, &s->released);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_keys_total", help,
		       (const char *[]){"result", "refused", NULL}, &s->refused);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_keys_total", help,
		       (const char *[]){"result", "unknown_offer", NULL}, &s->unknown);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_keys_total", help,
		       (const char *[]){"result", "cancelled", NULL}, &s->cancelled);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_failures_total",
		       "Dispute polls or key answers without a usable answer.", NULL, &s->failures);
	struct dispute_ended_stats *e = dispute_ended_stats(m->dispute_answer->ended);
	const char *ended = "Offers holding their channels past their deadlines freed after a "
			    "dispute poll: by a dispute that ended while we were away, or by the "
			    "dispute window closing with none, by how.";
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_state_asks_total",
		       "DisputeStateReq about held offers answered by the broker.", NULL,
		       &e->asked);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_ended_offers_total",
		       ended, (const char *[]){"end", "refunded", NULL}, &e->refunded);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_ended_offers_total",
		       ended, (const char *[]){"end", "key_released", NULL}, &e->released);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_dispute_ended_offers_total",
		       ended, (const char *[]){"end", "window_closed", NULL}, &e->lapsed);
}
