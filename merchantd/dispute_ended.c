/* Held offers whose dispute ended while merchantd was away (docs/disputes.md "A dispute that
 * ended while the merchant was away"). The broker lists only OPEN disputes (dispute_answer.c):
 * one refunded after its answer time, while merchantd was down, is never listed again, and its
 * offer, unpaid here, would hold the channel for good (no Pay past after_index, no Handoff,
 * Transfer or Close) although the broker already took the Dispute's word as our payment up to
 * pay_index. So after each dispute poll merchantd asks the broker the state of the dispute of
 * each offer that still holds its channel past its deadline (a Dispute is taken only after
 * it), at most DISPUTE_ENDED_MAX a round and each offer at most once every
 * DISPUTE_ENDED_EVERY polls, one request at a time on the broker link:
 *
 *   SCAN (the channel table, in memory) --held offers past their deadline, not asked lately-->
 *   ASKING --DisputeStateReq (with the Offer's deadline)--> UNKNOWN_CHANNEL (no dispute yet) /
 *      |     OPEN (the open list answers it) / CANCELLED / no answer: nothing changes (asked
 *      |     again later)
 *      +--UNKNOWN_CHANNEL, window_closed (the broker's now past deadline + T_dispute: no Dispute
 *      |     of it can come any more)--> lapsed (memory only; asked again after a restart):
 *      |     the offer holds the channel no longer, which pays on from after_index
 *      +--REFUNDED--> the Dispute's word applied as the offer's Pay (pay_from_dispute: its key
 *      |     goes only through the broker, KeyReq answers CONFLICT, so a refunded buyer gets
 *      |     none): the channel goes on after pay_index
 *      +--KEY_RELEASED--> the same (the buyer has the key through the broker)
 *   --list done--> done(arg) */
#include "dispute_ended.h"

#include <stdlib.h>
#include <string.h>

#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "offer.h"
#include "util.h"

#define DISPUTE_ENDED_MAX   16
#define DISPUTE_ENDED_EVERY 10 /* polls between two asks of one offer */

struct asked_offer {
	uint8_t channel_id[MP_ID_LEN], order_ref[OFFER_REF_LEN];
	uint64_t deadline;
};

struct dispute_ended {
	struct merchant *m;
	bool stopping;
	struct asked_offer list[DISPUTE_ENDED_MAX];
	size_t n, next;
	void (*done)(void *arg);
	void *done_arg;
	struct dispute_ended_stats stats;
};

struct dispute_ended *dispute_ended_new(struct merchant *m)
{
	struct dispute_ended *de = calloc(1, sizeof(*de));
	if (de)
		de->m = m;
	return de;
}

void dispute_ended_free(struct dispute_ended *de)
{
	free(de);
}

void dispute_ended_stop(struct dispute_ended *de)
{
	if (de)
		de->stopping = true;
}

struct dispute_ended_stats *dispute_ended_stats(struct dispute_ended *de)
{
	return &de->stats;
}

/* The offers to ask about this round, marked asked now. */
static void scan(struct dispute_ended *de)
{
	struct merchant *m = de->m;
	uint64_t now = merchant_now(m), every = (uint64_t)m->cfg.dispute_poll * DISPUTE_ENDED_EVERY;
	de->n = de->next = 0;
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		struct offer *o = ch->offer;
		if (!o || o != offer_holding(ch) || !o->recorded || now < o->deadline ||
		    (o->state_asked_at && now < o->state_asked_at + every))
			continue;
		o->state_asked_at = now;
		memcpy(de->list[de->n].channel_id, ch->id, MP_ID_LEN);
		memcpy(de->list[de->n].order_ref, o->order_ref, OFFER_REF_LEN);
		de->list[de->n].deadline = o->deadline;
		if (++de->n == DISPUTE_ENDED_MAX)
			return;
	}
}

static void ask_next(struct dispute_ended *de);

/* The dispute of a's offer ended (REFUNDED or KEY_RELEASED) with word w: its payment. */
static void apply_word(struct dispute_ended *de, const struct asked_offer *a, const uint8_t *w,
		       bool refunded)
{
	char hex[MP_HEX_ID_LEN + 1], why[200];
	mp_hex_encode(a->channel_id, MP_ID_LEN, hex);
	struct channel *ch = channel_find(&de->m->channels, a->channel_id);
	const struct offer *held = ch ? offer_holding(ch) : NULL;
	if (!offer_is_ref(held, a->order_ref, OFFER_REF_LEN))
		return; /* paid or cancelled meanwhile */
	MpCode code = pay_from_dispute(de->m, ch, held, w, why, sizeof(why));
	if (code != MP_ST(OK)) {
		log_warn("channel %s: the offer's dispute %s, but its word cannot pay the offer "
			 "(%s: %s); asked again later",
			 hex, refunded ? "was refunded" : "released the key", mp_code_name(code),
			 why);
		return;
	}
	log_info("channel %s: the offer of '%s' (pay_index %u) %s while we were away: its "
		 "Dispute's word pays it, the channel goes on after pay_index (its key only "
		 "through the broker)",
		 hex, held->item.id, held->pay_index,
		 refunded ? "was refunded to the buyer" : "had its key released");
	if (refunded)
		de->stats.refunded++;
	else
		de->stats.released++;
}

/* No Dispute of a's offer was taken, and none can be any more: the offer lapses. */
static void lapse(struct dispute_ended *de, const struct asked_offer *a)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(a->channel_id, MP_ID_LEN, hex);
	struct channel *ch = channel_find(&de->m->channels, a->channel_id);
	if (!ch || !ch->offer || ch->offer != offer_holding(ch) ||
	    !offer_is_ref(ch->offer, a->order_ref, OFFER_REF_LEN))
		return; /* paid or cancelled meanwhile */
	ch->offer->lapsed = true;
	de->stats.lapsed++;
	log_info("channel %s: the offer of '%s' (after_index %u) was never disputed and can no "
		 "longer be: it holds the channel no longer",
		 hex, ch->offer->item.id, ch->offer->after_index);
}

static void on_state(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	(void)c;
	struct dispute_ended *de = arg;
	if (de->stopping)
		return;
	const struct asked_offer *a = &de->list[de->next++];
	const Micropay__V1__DisputeStateResp *r =
	    env && env->body_case == MP_BODY(DISPUTE_STATE_RESP) ? env->dispute_state_resp : NULL;
	if (r && r->status && r->status->code == MP_ST(OK)) {
		de->stats.asked++;
		bool refunded = r->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_REFUNDED;
		if ((refunded || r->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED) &&
		    mp_bytes_len_is(r->w_pay_index, MP_HASH_LEN))
			apply_word(de, a, r->w_pay_index.data, refunded);
	} else if (r && r->status && r->status->code == MP_ST(UNKNOWN_CHANNEL) &&
		   r->window_closed) {
		de->stats.asked++;
		lapse(de, a);
	} else if (!r || !r->status || r->status->code != MP_ST(UNKNOWN_CHANNEL)) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(a->channel_id, MP_ID_LEN, hex);
		log_warn("channel %s: no usable answer to the state of its offer's dispute (%s); "
			 "asked again later",
			 hex, r && r->status ? mp_code_name(r->status->code) : "no answer");
	} else {
		de->stats.asked++;
	}
	ask_next(de);
}

static void ask_next(struct dispute_ended *de)
{
	if (de->next >= de->n) {
		de->done(de->done_arg);
		return;
	}
	const struct asked_offer *a = &de->list[de->next];
	Micropay__V1__DisputeStateReq req = MICROPAY__V1__DISPUTE_STATE_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, de->m->mid};
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)a->channel_id};
	req.order_ref = (ProtobufCBinaryData){OFFER_REF_LEN, (uint8_t *)a->order_ref};
	req.deadline = a->deadline;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(DISPUTE_STATE_REQ);
	env.dispute_state_req = &req;
	if (broker_link_call(redeemer_link(de->m->redeemer), &env, on_state, de) != 0) {
		log_warn("disputes: cannot ask the broker the state of a held offer's dispute; at "
			 "the next poll");
		de->done(de->done_arg);
	}
}

void dispute_ended_round(struct dispute_ended *de, void (*done)(void *arg), void *arg)
{
	de->done = done;
	de->done_arg = arg;
	scan(de);
	ask_next(de);
}
