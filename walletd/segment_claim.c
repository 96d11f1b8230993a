/* B's SegmentClaim (docs/transfer.md, "B: transfer.accept", steps 3-4): the exact
 * SegmentClaimReq stored when the channel was accepted is sent to the broker, and resent
 * verbatim until the broker acknowledges it (OK or DUPLICATE_OK): on every repeated
 * transfer.accept, at start-up, and on its own after a cut exchange (no answer, LIMIT,
 * INTERNAL), after 1, 2, 4, ... seconds (at most CLAIM_RETRY_MAX). B should be paid by A only
 * once broker_ack is true.
 *
 *   STORED --sent--> (broker) --OK / DUPLICATE_OK--> ACKNOWLEDGED (stored)
 *     sent --no answer, LIMIT, INTERNAL--> retry timer (backoff) --> sent again (same bytes)
 *     sent --CLOSED (the channel closed early) or CONFLICT (another claim or Cap of the
 *       segment stored)--> REFUSED (stored; shown CLAIM_REFUSED, never sent again; pay, buy,
 *       transfer.send, close and refund refuse the channel)
 *     sent --another refusal--> STORED (answer kept for the operator; sent again on the next
 *       transfer.accept or start) */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "store.h"
#include "wallet.h"

#define CLAIM_RETRY_MAX 60 /* seconds */

struct claim_op {
	struct wallet *w;
	struct mp_admin_req *req; /* NULL at start-up */
	uint8_t channel_id[MP_ID_LEN];
};

static void claim_retry_schedule(struct wallet *w);

static void claim_reply(struct claim_op *op, const struct wchannel *ch, const char *status)
{
	if (!op->req)
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	uint32_t spent = wallet_channel_spent(ch);
	mp_admin_reply(op->req,
		       json_pack("{s:s,s:I,s:I,s:I,s:b,s:s}", "channel_id", hex, "seg_seq",
				 (json_int_t)ch->seg_seq, "start", (json_int_t)ch->seg_start,
				 "spendable", (json_int_t)(ch->n - spent), "broker_ack",
				 ch->claim_state == WCLAIM_ACKED, "broker_status", status));
}

static void on_claim_reply(void *arg, const MpEnvelope *reply, const char *error)
{
	struct claim_op *op = arg;
	struct wchannel *ch = wallet_channel_find(op->w, op->channel_id);
	char hex[MP_HEX_ID_LEN + 1], text[600];
	mp_hex_encode(op->channel_id, MP_ID_LEN, hex);
	enum wclaim_answer answer = WCLAIM_WAITING;
	bool transient = true;
	if (ch)
		ch->claim_busy = false;
	if (!reply) {
		snprintf(text, sizeof(text), "broker unreachable: %s", error);
	} else if (reply->body_case != MP_BODY(SEGMENT_CLAIM_RESP) ||
		   !reply->segment_claim_resp->status) {
		char st[400];
		wallet_status_text(reply->body_case == MP_BODY(ERROR) ? reply->error : NULL, st,
				   sizeof(st));
		snprintf(text, sizeof(text), "unexpected answer from the broker: %s", st);
	} else {
		MpCode code = reply->segment_claim_resp->status->code;
		wallet_status_text(reply->segment_claim_resp->status, text, sizeof(text));
		answer = code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)   ? WCLAIM_ACKED
			 : code == MP_ST(CLOSED) || code == MP_ST(CONFLICT) ? WCLAIM_REFUSED
									    : WCLAIM_WAITING;
		transient = code == MP_ST(LIMIT) || code == MP_ST(INTERNAL);
	}
	if (!ch) {
		free(op);
		return;
	}
	if (!wstore_claim_answer(op->w->store, ch->channel_id, ch->seg_seq, answer, text)) {
		if (op->req)
			mp_admin_fail(op->req, MP_ADMIN_INTERNAL,
				      "transfer.accept: cannot store the broker's answer (%s)",
				      text);
		free(op);
		return;
	}
	if (answer == WCLAIM_ACKED) {
		ch->claim_state = WCLAIM_ACKED;
		op->w->claim_backoff = 0;
		log_info("channel %s: segment %u claimed at the broker (%s)", hex, ch->seg_seq,
			 text);
	} else if (answer == WCLAIM_REFUSED) {
		wallet_channel_claim_refused(ch, text);
		log_warn("channel %s: segment %u claim refused for good: %s (not sent again; the "
			 "channel cannot be spent)",
			 hex, ch->seg_seq, text);
	} else if (transient) {
		log_warn("channel %s: segment %u claim not acknowledged: %s (resent on its own)",
			 hex, ch->seg_seq, text);
		claim_retry_schedule(op->w);
	} else {
		log_warn("channel %s: segment %u claim refused: %s (resent on the next "
			 "transfer.accept or start)",
			 hex, ch->seg_seq, text);
	}
	claim_reply(op, ch, text);
	free(op);
}

void wallet_segment_claim_send(struct wallet *w, struct wchannel *ch, struct mp_admin_req *req)
{
	struct claim_op *op = calloc(1, sizeof(*op));
	struct wstore_claim c;
	int found = op ? wstore_claim_get(w->store, ch->channel_id, ch->seg_seq, &c) : -1;
	if (found != 1) {
		if (req)
			mp_admin_fail(req, MP_ADMIN_INTERNAL,
				      "transfer.accept: the stored SegmentClaim cannot be read");
		free(op);
		return;
	}
	*op = (struct claim_op){w, req, {0}};
	memcpy(op->channel_id, ch->channel_id, MP_ID_LEN);
	char err[300];
	if (c.answer != WCLAIM_WAITING) { /* answered for good: the stored answer again */
		if (c.answer == WCLAIM_REFUSED)
			wallet_channel_claim_refused(ch, c.status);
		else
			ch->claim_state = WCLAIM_ACKED;
		claim_reply(op, ch, c.status);
		free(op);
	} else if (!wallet_broker_send_claim(w, c.request, c.request_len, on_claim_reply, op, err,
					     sizeof(err))) {
		on_claim_reply(op, NULL, err);
	} else {
		ch->claim_busy = true;
	}
	wstore_claim_clear(&c);
}

void wallet_segment_claim_resume(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		if (ch->claim_state != WCLAIM_WAITING)
			continue;
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
		log_info("channel %s: segment %u not yet acknowledged by the broker; resending the "
			 "stored SegmentClaim",
			 hex, ch->seg_seq);
		wallet_segment_claim_send(w, ch, NULL);
	}
}

/* The retry timer: every claim not yet acknowledged and not on its way is sent again. */
static void on_claim_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct wallet *w = arg;
	if (w->stopping)
		return;
	for (struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (ch->claim_state == WCLAIM_WAITING && !ch->claim_busy)
			wallet_segment_claim_send(w, ch, NULL);
}

static void claim_retry_schedule(struct wallet *w)
{
	if (!w->stopping && !wallet_backoff_arm(w, &w->claim_timer, on_claim_retry, w,
						&w->claim_backoff, CLAIM_RETRY_MAX))
		log_err("transfer: cannot schedule the resend of a SegmentClaim");
}

void wallet_segment_claim_stop(struct wallet *w)
{
	if (w->claim_timer)
		event_free(w->claim_timer);
	w->claim_timer = NULL;
}
