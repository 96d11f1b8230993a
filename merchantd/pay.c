/* Pay, in the order of protocol.md section 6: steps 1-5 without hashing, then the chain
 * check, then the state change, which is acknowledged only once its batch has committed.
 * Indices are absolute; the chain check is relative to the current segment's start (a segment
 * after a transfer is paid with its owner's own chain, docs/transfer.md). A Pay of an earlier
 * segment gets STALE_SEGMENT carrying the Cap that ended that segment (once it is durable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "batch.h"
#include "chan_sign.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "offer.h"
#include "purchase.h"
#include "restore.h"
#include "merchant.h"
#include "segments.h"
#include "stmt.h"
#include "store.h"

struct peer_state {
	unsigned bad_chain;
};

static void reply_pay_evidence(struct mp_conn *c, uint64_t request_id, MpCode code,
			       const char *detail, uint32_t last, uint64_t credit, uint64_t price,
			       const MpSigned *evidence)
{
	Micropay__V1__PayAck ack = MICROPAY__V1__PAY_ACK__INIT;
	MpStatus st;
	ack.status = merchant_status(&st, code, detail);
	st.evidence = (MpSigned *)evidence;
	ack.last = last;
	ack.credit = credit;
	ack.order_price = price;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_ACK);
	env.pay_ack = &ack;
	merchant_send(c, request_id, &env);
}

void reply_pay(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
	       uint32_t last, uint64_t credit, uint64_t price)
{
	reply_pay_evidence(c, request_id, code, detail, last, credit, price, NULL);
}

static bool same_pay(const uint8_t *w, const uint8_t *ref, size_t ref_len, const uint8_t *w2,
		     const uint8_t *ref2, size_t ref_len2)
{
	return ref_len == ref_len2 && memcmp(w, w2, MP_HASH_LEN) == 0 &&
	       memcmp(ref, ref2, ref_len) == 0;
}

/* Refusals and replays report the channel's durable point, never a pending one. */
static void refuse(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, MpCode code,
		   const char *detail, const struct channel *ch)
{
	m->stats.pays_refused++;
	merchant_count_pay_answer(m, code);
	reply_pay(c, env->request_id, code, detail, ch ? ch->durable_last : 0,
		  ch ? ch->durable_credit : 0, 0);
}

/* A Pay of segment k < current: the Cap k+1 that ended it, once durable (while it waits for
 * its commit the answer carries no evidence: nothing unjournalled is sent). */
static void stale_segment(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
			  const struct channel *ch, const char *detail)
{
	uint32_t k = env->pay_req->seg_seq;
	bool pending = ch->cap_pending && k + 1 == ch->seg_seq;
	const struct segment_row *ended = &ch->segs[k];
	MpSigned *cap = pending ? NULL : mp_stmt_decode(ended->cap, ended->cap_len);
	m->stats.pays_refused++;
	m->stats.stale_segment++;
	merchant_count_pay_answer(m, MP_ST(STALE_SEGMENT));
	reply_pay_evidence(c, env->request_id, MP_ST(STALE_SEGMENT), detail, ch->durable_last,
			   ch->durable_credit, 0, cap);
	mp_stmt_free(cap);
}

/* The pipeline is full (a batch committing, the next one at commit_max): refuse before any
 * state change; the wallet keeps its Pay in flight and resends it verbatim. */
static bool store_busy(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		       const struct channel *ch)
{
	if (batch_has_room(m))
		return false;
	m->stats.store_busy++;
	refuse(m, c, env, MP_ST(LIMIT), "merchant busy: payments are being committed; retry", ch);
	return true;
}

/* Step 3, j <= last (the pay path's last, pending payments included): an identical retry gets
 * its answer, anything else STALE_INDEX. Where the retried Pay is found:
 *  - pending in a batch: the retry joins the filling batch and is answered DUPLICATE_OK once
 *    that batch has committed, which is after the original's (batches commit in order). This
 *    is the case of a wallet that reconnected while its Pay was pending: its OpenAck showed
 *    the durable last, below j, and it resends the Pay verbatim;
 *  - the channel's durable last Pay: answered from memory (kept in the channel row, so also
 *    after compaction folded its journal row away);
 *  - an older journalled Pay (at least T_dedupe after it was accepted): from the journal. */
static void answer_retry(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
			 struct channel *ch, uint64_t read_us)
{
	const Micropay__V1__PayReq *p = env->pay_req;
	const struct batch_entry *pending = batch_find(m, ch, p->seg_seq, p->j);
	if (pending && same_pay(pending->w, pending->order_ref, pending->order_ref_len, p->w_j.data,
				p->order_ref.data, p->order_ref.len)) {
		if (store_busy(m, c, env, ch))
			return;
		struct batch_entry retry = {.kind = ENTRY_RETRY,
					    .ch = ch,
					    .seg_seq = p->seg_seq,
					    .j = p->j,
					    .code = pending->code,
					    .credit = pending->credit,
					    .price = pending->price,
					    .conn = c,
					    .request_id = env->request_id,
					    .read_us = read_us};
		memcpy(retry.channel_id, ch->id, MP_ID_LEN);
		batch_add(m, &retry);
		return;
	}
	if (!pending && p->j == ch->durable_last && p->j > 0 &&
	    same_pay(ch->durable_w, ch->durable_order_ref, ch->durable_order_ref_len, p->w_j.data,
		     p->order_ref.data, p->order_ref.len)) {
		m->stats.pays_duplicate++;
		merchant_count_pay_answer(m, MP_ST(DUPLICATE_OK));
		reply_pay(c, env->request_id, MP_ST(DUPLICATE_OK), mp_code_name(ch->durable_code),
			  p->j, ch->durable_credit, ch->durable_price);
		return;
	}
	struct stored_pay sp;
	if (!pending && store_find_pay(m->store, ch->id, ch->journal_head, p->seg_seq, p->j, &sp) &&
	    same_pay(sp.w, sp.order_ref, sp.order_ref_len, p->w_j.data, p->order_ref.data,
		     p->order_ref.len)) {
		m->stats.pays_duplicate++;
		merchant_count_pay_answer(m, MP_ST(DUPLICATE_OK));
		reply_pay(c, env->request_id, MP_ST(DUPLICATE_OK), mp_code_name(sp.code), sp.j,
			  sp.credit, sp.price);
		return;
	}
	refuse(m, c, env, MP_ST(STALE_INDEX), "index already paid", ch);
}

const char *channel_busy(const struct channel *ch)
{
	if (ch->signing)
		return CHAN_SIGNING_DETAIL;
	if (ch->gateway_hold)
		return GATEWAY_HOLD_DETAIL;
	return NULL;
}

MpCode merchant_holding(const struct channel *ch, const char **detail)
{
	if (!ch) {
		*detail = "unknown channel: Open it first";
		return MP_ST(UNKNOWN_CHANNEL);
	}
	if (ch->state == CHANNEL_HANDED_OFF) {
		*detail = "handed off to another merchant: pay there";
		return MP_ST(HANDED_OFF);
	}
	if (ch->state == CHANNEL_CLOSED) {
		*detail = channel_closed_by_broker(ch)
			      ? "closed by the broker's ForcedClose: no more "
				"payments"
			      : "closed by its owner: no more payments";
		return MP_ST(CLOSED);
	}
	if (ch->state != CHANNEL_HELD) {
		*detail = "this merchant does not hold the channel";
		return MP_ST(NOT_HOLDER);
	}
	if (restore_unconfirmed(ch)) {
		*detail = RESTORE_DETAIL;
		return MP_ST(NOT_HOLDER);
	}
	return MP_ST(OK);
}

MpCode merchant_pay_precheck(const struct merchant *m, uint32_t seg_seq, uint32_t j,
			     const struct channel *ch, const char **detail)
{
	MpCode held = merchant_holding(ch, detail);
	if (held != MP_ST(OK))
		return held;
	if (seg_seq < ch->seg_seq) {
		*detail = "segment transferred: the Cap ended it";
		return MP_ST(STALE_SEGMENT);
	}
	if (seg_seq > ch->seg_seq) {
		*detail = "unknown segment";
		return MP_ST(STALE_SEGMENT);
	}
	if (j <= ch->last)
		return MP_ST(OK); /* step 3: a retry or a stale index, decided by the caller */
	if (j > ch->n) {
		*detail = "index beyond n";
		return MP_ST(OUT_OF_RANGE);
	}
	if (j - ch->last > m->cfg.max_jump) {
		*detail = "jump above MAX_JUMP";
		return MP_ST(OUT_OF_RANGE);
	}
	if (mp_clock_now(&m->clock) + m->cfg.pay_margin >= ch->pay_until) {
		*detail = "channel no longer payable";
		return MP_ST(EXPIRED);
	}
	return MP_ST(OK);
}

/* Step 6 failed: count it against the connection, never against the channel. */
static void bad_chain(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		      const struct channel *ch)
{
	struct peer_state *ps = mp_conn_data(c);
	m->stats.bad_chain++;
	refuse(m, c, env, MP_ST(BAD_CHAIN), "payword does not verify", ch);
	if (ps && ++ps->bad_chain >= m->cfg.max_bad_chain)
		mp_conn_close_after_flush(c, "%u BAD_CHAIN answers", ps->bad_chain);
}

/* Step 8: credit the units, settle the order if the credit covers its price; an order_ref
 * naming the channel's purchase pays as many of its next chunks as the credit covers
 * (purchase.h); one naming the channel's offer pays its price (offer.h, checked before). */
static bool settle(struct merchant *m, struct channel *ch, struct batch_entry *e)
{
	uint64_t added, credit;
	if (!mp_amount_mul(e->j - ch->last, ch->unit_value, &added) ||
	    !mp_amount_add(ch->credit, added, &credit))
		return false;
	struct order *o = order_find(&m->orders, e->order_ref, e->order_ref_len);
	e->code = MP_ST(UNDERPAID);
	if (o && !o->paid && credit >= o->price) {
		credit -= o->price;
		o->paid = true;
		e->order = o;
		e->price = o->price;
		e->code = MP_ST(OK);
	} else if (!o && purchase_is_ref(channel_purchase(ch), e->order_ref, e->order_ref_len) &&
		   purchase_settle(ch->purchase, &credit, &e->price)) {
		e->pays_purchase = true;
		memcpy(e->purchase_id, ch->purchase->id, PURCHASE_ID_LEN);
		e->purchase_paid = ch->purchase->paid;
		e->code = MP_ST(OK);
	} else if (!o) {
		offer_settle(channel_offer(ch), e, &credit);
	}
	ch->last = e->j;
	memcpy(ch->w_last, e->w, MP_HASH_LEN);
	ch->credit = credit;
	memcpy(ch->last_order_ref, e->order_ref, e->order_ref_len);
	ch->last_order_ref_len = e->order_ref_len;
	e->credit = credit;
	return true;
}

void handle_pay(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	/* Called from the read callback that took the frame: the pay latency starts here. */
	uint64_t read_us = mp_metrics_now_us();
	const Micropay__V1__PayReq *p = env->pay_req;
	if (!mp_bytes_len_is(p->channel_id, MP_ID_LEN) || !mp_bytes_len_is(p->w_j, MP_HASH_LEN) ||
	    p->order_ref.len < 1 || p->order_ref.len > MP_ORDER_REF_MAX) {
		refuse(m, c, env, MP_ST(MALFORMED), "field lengths", NULL);
		return;
	}
	struct channel *ch = channel_find(&m->channels, p->channel_id.data);
	char why[200];
	if (!mp_clock_guard_serving(m->clock_guard, why, sizeof(why))) {
		refuse(m, c, env, MP_ST(INTERNAL), why, ch); /* nothing stored: resent later */
		return;
	}
	const char *busy = ch ? channel_busy(ch) : NULL;
	if (busy) { /* chan_sign.h, gateway.h: the point must stay where it is */
		refuse(m, c, env, MP_ST(LIMIT), busy, ch);
		return;
	}
	const char *detail = NULL;
	MpCode code = merchant_pay_precheck(m, p->seg_seq, p->j, ch, &detail);
	if (code == MP_ST(OK) && p->j <= ch->last) {
		answer_retry(m, c, env, ch, read_us);
		return;
	}
	if (code == MP_ST(STALE_SEGMENT) && p->seg_seq < ch->seg_seq) {
		stale_segment(m, c, env, ch, detail);
		return;
	}
	if (code != MP_ST(OK)) {
		refuse(m, c, env, code, detail, ch);
		return;
	}
	/* A Pay naming an offer pays the current one exactly, or nothing (offer.h). */
	code = offer_pay_check(m, ch, p->order_ref.data, p->order_ref.len, p->j, why, sizeof(why));
	if (code != MP_ST(OK)) {
		refuse(m, c, env, code, why, ch);
		return;
	}
	if (store_busy(m, c, env, ch))
		return;
	if (!mp_chain_verify(m->hasher, ch->nonce, ch->last - ch->seg_start, ch->w_last,
			     p->j - ch->seg_start, p->w_j.data)) {
		bad_chain(m, c, env, ch);
		return;
	}
	struct batch_entry e = {.kind = ENTRY_PAY,
				.ch = ch,
				.seg_seq = p->seg_seq,
				.j = p->j,
				.order_ref_len = (uint8_t)p->order_ref.len,
				.conn = c,
				.request_id = env->request_id,
				.read_us = read_us};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	memcpy(e.w, p->w_j.data, MP_HASH_LEN);
	memcpy(e.order_ref, p->order_ref.data, p->order_ref.len);
	if (!settle(m, ch, &e)) {
		refuse(m, c, env, MP_ST(LIMIT), "channel credit would overflow", ch);
		return;
	}
	batch_add(m, &e);
}

MpCode pay_from_dispute(struct merchant *m, struct channel *ch, const struct offer *o,
			const uint8_t w[MP_HASH_LEN], char *why, size_t len)
{
	const char *detail = NULL;
	MpCode code = merchant_holding(ch, &detail);
	if (code == MP_ST(OK) && (channel_busy(ch) || !batch_has_room(m))) {
		code = MP_ST(LIMIT);
		detail = "the channel is signing or the store is behind";
	}
	if (code != MP_ST(OK)) {
		snprintf(why, len, "%s", detail ? detail : mp_code_name(code));
		return code;
	}
	if (o != offer_holding(ch) || o->seg_seq != ch->seg_seq) {
		snprintf(why, len, "the offer no longer holds the channel");
		return MP_ST(CONFLICT);
	}
	if (!mp_chain_verify(m->hasher, ch->nonce, ch->last - ch->seg_start, ch->w_last,
			     o->pay_index - ch->seg_start, w)) {
		snprintf(why, len, "the Dispute's word is not our chain at pay_index %u",
			 o->pay_index);
		return MP_ST(BAD_CHAIN);
	}
	struct batch_entry e = {.kind = ENTRY_PAY,
				.ch = ch,
				.seg_seq = ch->seg_seq,
				.j = o->pay_index,
				.order_ref_len = OFFER_REF_LEN,
				.read_us = mp_metrics_now_us()};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	memcpy(e.w, w, MP_HASH_LEN);
	memcpy(e.order_ref, o->order_ref, OFFER_REF_LEN);
	if (!settle(m, ch, &e) || !e.pays_offer) {
		snprintf(why, len,
			 "the channel's credit would overflow or does not cover the offer");
		return MP_ST(LIMIT);
	}
	e.offer_by_dispute = true;
	ch->offer->by_dispute = true; /* ch->offer is o (checked above) */
	batch_add(m, &e);
	return MP_ST(OK);
}

void *merchant_peer_new(void)
{
	return calloc(1, sizeof(struct peer_state));
}
