/* refund {channel_id} (protocol.md section 6, "Finalisation and refund"; docs/settlement.md
 * "The wallet"): the owner of the channel's current segment asks the broker for the refund.
 * The broker pays it at finalisation to the recorded payout account (this wallet's account for
 * a channel it issued, or named in its SegmentClaim for one it received); the RefundRequest
 * learns the result. It names this wallet's account as payout too, which the broker uses only
 * when none was recorded. The exact signed request is stored before it is first sent and resent
 * verbatim on every later call (refund_id is its idempotency key), so a second call gets the
 * stored result again (DUPLICATE_OK).
 *
 *   ACTIVE --refund: RefundRequest signed and stored--> sent to the broker
 *     (a stored request of an earlier segment: signed again for the current one, replacing it)
 *     sent --TOO_EARLY (not_before)--> unchanged: the answer shows when to ask again
 *     sent --OK / DUPLICATE_OK--> REFUNDED (amount, account, time stored)
 *     sent --refused, unreachable--> unchanged (the answer is kept for the operator)
 *   An ACTIVE channel past pay_until shows as REFUND_PENDING until it is REFUNDED.
 *
 * The wallet also asks on its own, every [wallet] refund_check_interval seconds (0: never), for
 * each channel past pay_until that is not REFUNDED and has no request in flight: first at once
 * (the broker's TOO_EARLY says when: not_before), then again once not_before has passed. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

struct refund_op {
	struct wallet *w;
	struct mp_admin_req *req; /* NULL: asked by the wallet's own check */
	uint8_t channel_id[MP_ID_LEN];
};

static json_t *time_or_null(uint64_t t)
{
	return t ? json_integer((json_int_t)t) : json_null();
}

/* {channel_id, state, broker_status, detail, not_before, refund, payout_account, spent,
 * unclaimed, refunded_at}: the same shape for every answer. */
static void refund_reply(struct refund_op *op, const struct wchannel *ch, const char *status,
			 const char *detail, const struct wstore_refund *r, uint32_t spent,
			 uint64_t unclaimed)
{
	if (!op->req)
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(op->channel_id, MP_ID_LEN, hex);
	json_t *payout = r->has_payout ? mp_json_hex(r->payout, MP_ID_LEN) : json_null();
	mp_admin_reply(op->req, json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:o,s:I,s:I,s:o}", "channel_id",
					  hex, "state", wallet_channel_state_name(op->w, ch),
					  "broker_status", status, "detail", detail ? detail : "",
					  "not_before", time_or_null(r->not_before), "refund",
					  (json_int_t)r->amount, "payout_account", payout, "spent",
					  (json_int_t)spent, "unclaimed", (json_int_t)unclaimed,
					  "refunded_at", time_or_null(r->refunded_at)));
}

static void on_refund_reply(void *arg, const MpEnvelope *reply, const char *error)
{
	struct refund_op *op = arg;
	struct wchannel *ch = wallet_channel_find(op->w, op->channel_id);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(op->channel_id, MP_ID_LEN, hex);
	if (ch && !op->req)
		ch->refund_busy = false;
	if (!ch || !reply || reply->body_case != MP_BODY(REFUND_RESP) ||
	    !reply->refund_resp->status) {
		char st[400] = "";
		if (reply)
			wallet_status_text(reply->body_case == MP_BODY(ERROR) ? reply->error : NULL,
					   st, sizeof(st));
		log_warn("channel %s: refund request not answered: %s", hex, reply ? st : error);
		if (ch && ch->state == WCH_CLOSED)
			wallet_refund_retry(op->w, ch);
		if (op->req)
			mp_admin_fail(op->req, MP_ADMIN_FAILED, "refund: %s",
				      reply ? st : (error ? error : "no answer"));
		free(op);
		return;
	}
	const Micropay__V1__RefundResp *resp = reply->refund_resp;
	MpCode code = resp->status->code;
	struct wstore_refund r = {0};
	r.refunded = code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK);
	if (r.refunded) {
		r.amount = resp->refund;
		r.refunded_at = resp->refunded_at;
		r.has_payout = resp->payout_account_id.len == MP_ID_LEN;
		if (r.has_payout)
			memcpy(r.payout, resp->payout_account_id.data, MP_ID_LEN);
	}
	if (code == MP_ST(TOO_EARLY))
		r.not_before = resp->not_before;
	wallet_status_text(resp->status, r.status, sizeof(r.status));
	if (!wstore_refund_answer(op->w->store, op->channel_id, &r)) {
		if (op->req)
			mp_admin_fail(op->req, MP_ADMIN_INTERNAL,
				      "refund: cannot store the broker's answer (%s)", r.status);
		free(op);
		return;
	}
	if (r.refunded && !ch->refunded) {
		ch->refunded = true;
		ch->refund_amount = r.amount;
		log_info("channel %s: REFUNDED %llu (%s)", hex, (unsigned long long)r.amount,
			 r.status);
	} else if (!r.refunded) {
		log_info("channel %s: refund: %s", hex, r.status);
	}
	ch->refund_not_before = r.not_before;
	if (ch->state == WCH_CLOSED && !r.refunded &&
	    (code == MP_ST(LIMIT) || code == MP_ST(INTERNAL)))
		wallet_refund_retry(op->w, ch);
	else if (ch->state == WCH_CLOSED && !r.refunded)
		log_warn("channel %s: the early refund was refused: %s", hex, r.status);
	refund_reply(op, ch, mp_code_name(code), resp->status->detail, &r, resp->spent,
		     resp->unclaimed);
	free(op);
}

static MpSigned *sign_request(struct wallet *w, const struct wchannel *ch)
{
	Micropay__V1__CloseResp *closed = NULL;
	if (ch->state == WCH_CLOSED && !(closed = wallet_refund_close_evidence(w, ch)))
		return NULL;
	struct mp_key owner;
	if (!wallet_owner_key(w, ch, &owner)) {
		if (closed)
			protobuf_c_message_free_unpacked(&closed->base, NULL);
		return NULL;
	}
	uint8_t refund_id[MP_ID_LEN];
	MpSigned *s = NULL;
	if (mp_random_bytes(refund_id, MP_ID_LEN)) {
		Micropay__V1__RefundRequest rq = MICROPAY__V1__REFUND_REQUEST__INIT;
		rq.refund_id = (ProtobufCBinaryData){MP_ID_LEN, refund_id};
		rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->channel_id};
		rq.seg_seq = ch->seg_seq;
		rq.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, w->account_id};
		if (closed) { /* the early refund: the Close and the Handoffs 1..hseq it ends */
			rq.close = closed->close;
			rq.custody = closed->custody;
			rq.n_custody = closed->n_custody;
		}
		s = mp_stmt_sign(&owner, MP_STMT_REFUND_REQUEST, &rq.base);
	}
	mp_key_free(&owner);
	if (closed)
		protobuf_c_message_free_unpacked(&closed->base, NULL);
	return s;
}

/* The stored request was signed for the channel's current segment (a channel given away and
 * received back is in a later segment, whose owner key alone the broker accepts). */
static bool signed_for_current_segment(const MpSigned *request, const struct wchannel *ch)
{
	Micropay__V1__RefundRequest *rq = (Micropay__V1__RefundRequest *)protobuf_c_message_unpack(
	    &micropay__v1__refund_request__descriptor, NULL, request->body.len, request->body.data);
	bool current = rq && rq->seg_seq == ch->seg_seq;
	if (rq)
		protobuf_c_message_free_unpacked(&rq->base, NULL);
	return current;
}

/* The stored RefundRequest, or a new one signed and stored now; NULL (req answered) if
 * neither. */
static MpSigned *stored_request(struct wallet *w, const struct wchannel *ch,
				struct mp_admin_req *req)
{
	struct wstore_refund r;
	int found = wstore_refund_get(w->store, ch->channel_id, &r);
	/* A request stored before the channel was closed (TOO_EARLY then) is replaced by one
	 * carrying the Close, and one stored in an earlier segment (the channel was given away
	 * and came back) by one signed for the current segment; once refunded the stored one
	 * stays. */
	bool replace = found == 1 && !r.refunded &&
		       ((ch->state == WCH_CLOSED && !wallet_refund_request_has_close(r.request)) ||
			!signed_for_current_segment(r.request, ch));
	if (found == 1 && !replace)
		return r.request;
	if (replace)
		wstore_refund_clear(&r);
	if (found < 0) {
		if (req)
			mp_admin_fail(req, MP_ADMIN_INTERNAL, "refund: cannot read the store");
		return NULL;
	}
	MpSigned *s = sign_request(w, ch);
	if (!s || !(replace ? wstore_refund_replace(w->store, ch->channel_id, s)
			    : wstore_refund_insert(w->store, ch->channel_id, s))) {
		mp_stmt_free(s);
		if (req)
			mp_admin_fail(req, MP_ADMIN_INTERNAL,
				      "refund: cannot sign and store the request");
		return NULL;
	}
	return s;
}

/* Send the channel's stored (or a new) RefundRequest; req (NULL: the wallet's own check) gets
 * the answer. */
void wallet_refund_send(struct wallet *w, struct wchannel *ch, struct mp_admin_req *req)
{
	MpSigned *stmt = stored_request(w, ch, req);
	if (!stmt)
		return;
	struct refund_op *op = calloc(1, sizeof(*op));
	char err[300] = "out of memory";
	if (op) {
		*op = (struct refund_op){w, req, {0}};
		memcpy(op->channel_id, ch->channel_id, MP_ID_LEN);
	}
	if (!op || !wallet_broker_send(w, MP_BODY(REFUND_REQ), stmt, on_refund_reply, op, err,
				       sizeof(err))) {
		free(op);
		if (req)
			mp_admin_fail(req, MP_ADMIN_FAILED, "refund: %s", err);
		else
			log_warn("refund: %s", err);
		if (ch->state == WCH_CLOSED)
			wallet_refund_retry(w, ch);
	} else if (!req) {
		ch->refund_busy = true;
	}
	mp_stmt_free(stmt);
}

void wallet_admin_refund(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t id[MP_ID_LEN];
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL))
		return;
	struct wchannel *ch = wallet_channel_find(w, id);
	if (!ch) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "refund: unknown channel");
		return;
	}
	if ((ch->state != WCH_ACTIVE && ch->state != WCH_CLOSED) || !w->registered) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "refund: channel is %s; only an ACTIVE or CLOSED channel of a "
			      "registered wallet has a refund to ask for",
			      wch_state_name(ch->state));
		return;
	}
	if (wallet_channel_claim_refusal(ch)) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "refund: %s", wallet_channel_claim_refusal(ch));
		return;
	}
	wallet_refund_send(w, ch, req);
}

bool wallet_refund_load(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		struct wstore_refund r;
		int found = wstore_refund_get(w->store, ch->channel_id, &r);
		if (found < 0)
			return false;
		if (found == 1) {
			ch->refunded = r.refunded;
			ch->refund_amount = r.amount;
			ch->refund_not_before = r.not_before;
			wstore_refund_clear(&r);
		}
	}
	return true;
}

static void on_refund_check(evutil_socket_t fd, short what, void *arg)
{
	struct wallet *w = arg;
	uint64_t now = wallet_now(w);
	for (struct wchannel *ch = w->channels; ch && !w->stopping; ch = ch->next) {
		if (ch->state != WCH_ACTIVE || ch->refunded || ch->refund_busy || !ch->pay_until ||
		    now < ch->pay_until || now < ch->refund_not_before || !w->registered ||
		    wallet_channel_claim_refusal(ch))
			continue;
		wallet_refund_send(w, ch, NULL);
	}
}

bool wallet_refund_start(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (ch->state == WCH_CLOSED && !ch->refunded)
			wallet_refund_retry(w, ch); /* a closed channel's refund, after a restart */
	if (!w->cfg.refund_check_interval)
		return true;
	w->refund_timer = event_new(w->base, -1, EV_PERSIST, on_refund_check, w);
	struct timeval tv = {.tv_sec = w->cfg.refund_check_interval};
	if (!w->refund_timer || event_add(w->refund_timer, &tv) != 0) {
		log_err("refund: cannot start the check timer");
		return false;
	}
	return true;
}

void wallet_refund_stop(struct wallet *w)
{
	w->stopping = true; /* no retry is scheduled after this */
	for (struct wchannel *ch = w->channels; ch; ch = ch->next)
		wallet_refund_retry_free(ch);
	if (w->refund_timer)
		event_free(w->refund_timer);
	w->refund_timer = NULL;
}
