/* pay (protocol.md section 6, "Open and pay"): TLS to the merchant, whose certificate must name
 * the merchant we mean to pay (merchant_id, by default the channel's holder) before anything is
 * sent; Open with the cert; the OpenAck's point is checked against our own chain before any
 * payword leaves; stored in-flight Pays are resent verbatim first; then new Pays of at most
 * max_jump units, each persisted as in flight before it is sent.
 *
 * Paying a merchant that is not the holder moves the channel there (move.c): the Open carries a
 * Move from our epoch, signed by the owner key, with the holder's id and MerchantCert as the
 * hint; the merchant fetches a Handoff from the holder, so its OpenAck may take a while: it is
 * awaited at most WALLET_OPEN_TIMEOUT seconds. The OpenAck must then carry Handoff epoch+1 from
 * the old holder naming the new one with our Move; only then do we record the new holder and
 * epoch (durably) and pay strictly after its point (at_index).
 *
 * A channel received by transfer is in segment s >= 1: the Open carries its Transfer/Cap pairs,
 * the OpenAck's point must lie in segment s and match our chain at index - seg_start, Pays carry
 * seg_seq s and the Move is signed by segment s's owner key.
 *
 *   CONNECTING --CN names the merchant--> OPENING --OpenAck checked--> RESENDING (in-flight Pays)
 *   --the OpenAck named an unpaid Offer holding the channel--> CANCELLING (offer_cancel.c)
 *   --> PAYING --units paid--> DONE;   any --refusal, timeout, lost connection--> FAILED
 *   (each Pay's answer is awaited at most idle_timeout, however the merchant keeps the
 *   connection busy: bytes trickled, frames that answer no request)
 *   OPENING --HANDED_OFF with a redirect (after a Move), checked (redirect.c)--> new holder and
 *         epoch recorded, a Move from that epoch signed --> OPENING again on the same
 *         connection; at most MP_MAX_HANDOFFS redirects, all within WALLET_OPEN_TIMEOUT of the
 *         first Open
 *
 * The same session serves transfer.send, close, receipt and buy (session.h): after RESENDING it
 * hands the open connection to its continuation instead of PAYING. A continuation may pay on
 * the session (wallet_session_pay, buy.c):
 *
 *   CONTINUATION --wallet_session_pay(units, order_ref)--> PAYING (new Pays, each persisted in
 *   flight, at most max_jump) --all accepted--> paid(s, arg): CONTINUATION again
 *   PAYING --refusal, timeout, lost connection, pay_until reached--> FAILED (the session's
 *   admin request answered with the units accepted so far) */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "frame.h"
#include "log.h"
#include "proto_limits.h"
#include "stmt.h"
#include "store.h"
#include "tls.h"
#include "session.h"
#include "wallet.h"
#include "wallet_receipt.h"

struct pay_op {
	struct wallet_op op; /* first: the wallet's list of exchanges in progress */
	struct wallet *w;
	struct mp_admin_req *req;
	struct wchannel *ch; /* channels live as long as the wallet */
	char hex[MP_HEX_ID_LEN + 1];
	char endpoint[300];
	uint32_t units; /* requested */
	uint8_t order_ref[WALLET_ORDER_REF_MAX];
	size_t order_ref_len;
	uint8_t target[MP_ID_LEN]; /* the merchant we pay */
	char target_hex[MP_HEX_ID_LEN + 1];
	MpSigned *move; /* when target is not the holder */
	struct event *open_timer;
	struct event *pay_timer; /* the answer to the Pay in cur: within idle_timeout */
	uint32_t open_last;	 /* OpenAck's point index */
	uint32_t merchant_last;	 /* the merchant's last as far as we know */
	uint32_t max_jump;
	struct wstore_pay *resend; /* stored in-flight Pays, resent first */
	int n_resend, next_resend;
	struct wstore_pay cur; /* the Pay awaiting its PayAck */
	bool cur_is_resend;
	uint32_t paid; /* units of new Pays accepted */
	unsigned resent;
	bool have_ack;
	MpCode ack_status;
	uint64_t order_price;
	bool done;
	/* session.h: the admin method answering ("pay", "transfer.send") and the continuation
	 * run once the in-flight Pays are resolved (NULL for pay). */
	const char *verb;
	wallet_session_fn then;
	void *then_arg;
	void (*then_free)(void *arg);
	MpSigned *custody_event; /* the OpenAck's, when it had one */
	bool in_segment;	 /* the OpenAck's point was in our segment, checked */
	uint64_t open_started;	 /* when the first Open was sent (redirects share its deadline) */
	unsigned redirects;	 /* HANDED_OFF redirects followed so far */
	bool want_receipt;	 /* receipt=true: the last new Pay's Receipt (receipt.c) */
	uint32_t last_paid;	 /* the j of the last new Pay this call had accepted */
	wallet_session_fn session_paid;	     /* wallet_session_pay: called once units are paid */
	wallet_session_progress_fn progress; /* the continuation's progress, for failures */
	MpSigned *held; /* the OpenAck's held_by_offer, until offer_cancel.c dealt with it */
};

static json_t *pay_answer(struct pay_op *p, bool complete)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "status",
			 p->have_ack ? mp_code_name(p->ack_status) : "NONE", "last",
			 (json_int_t)p->ch->last, "credit", (json_int_t)p->ch->credit,
			 "order_price", (json_int_t)p->order_price, "paid_units",
			 (json_int_t)p->paid, "requested_units", (json_int_t)p->units, "resent",
			 (json_int_t)p->resent, "complete", complete);
}

static void pay_reply(struct pay_op *p, bool complete)
{
	p->done = true;
	p->ch->busy = false;
	json_t *answer = pay_answer(p, complete);
	/* receipt=true: the answer waits for the Receipt of the last new Pay (receipt.c) */
	if (p->want_receipt && p->last_paid &&
	    wallet_receipt_after_pay(p->w, p->req, answer, p->ch, p->last_paid, p->target,
				     p->endpoint, p->order_ref, p->order_ref_len))
		return;
	if (p->want_receipt)
		json_object_set_new(answer, "receipt_error",
				    json_string(p->last_paid ? "cannot ask for the receipt"
							     : "no new payment was accepted"));
	mp_admin_reply(p->req, answer);
}

/* Answer the admin call with an error and close the connection (which frees p). */
__attribute__((format(printf, 2, 3))) static void pay_fail(struct pay_op *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!p->done) {
		p->done = true;
		p->ch->busy = false;
		log_warn("channel %s: %s at %s: %s", p->hex, p->verb, p->endpoint, msg);
		char extra[300] = "";
		if (p->progress)
			p->progress(p->then_arg, extra, sizeof(extra));
		if (extra[0])
			mp_admin_fail(
			    p->req, MP_ADMIN_FAILED,
			    "%s: %s (%s; %u new units accepted, %u in-flight Pays resent; "
			    "last %u)",
			    p->verb, msg, extra, p->paid, p->resent, p->ch->last);
		else if (p->paid || p->resent)
			mp_admin_fail(p->req, MP_ADMIN_FAILED,
				      "%s: %s (before this: %u new units accepted, %u in-flight "
				      "Pays resent; last %u)",
				      p->verb, msg, p->paid, p->resent, p->ch->last);
		else
			mp_admin_fail(p->req, MP_ADMIN_FAILED, "%s: %s", p->verb, msg);
	}
	if (p->op.conn)
		mp_conn_close(p->op.conn, "pay failed: %s", msg);
}

#define WALLET_OPEN_TIMEOUT 30

static void on_open_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pay_op *p = arg;
	pay_fail(p,
		 "no OpenAck from m-%s within %d s (it may be unable to reach the holder); no "
		 "payword sent",
		 p->target_hex, WALLET_OPEN_TIMEOUT);
}

/* A merchant that answers nothing, trickles its answer or sends frames that answer no request
 * would otherwise hold the channel busy for ever (each byte resets the idle timeout). */
static void on_pay_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pay_op *p = arg;
	pay_fail(
	    p,
	    "no answer to Pay j=%u from m-%s within %u s (idle_timeout); it stays in flight for "
	    "a verbatim retry",
	    p->cur.j, p->target_hex, p->w->cfg.idle_timeout);
}

/* Arm the deadline of the Pay just sent; false (p failed) if it cannot be armed. */
static bool arm_pay_timer(struct pay_op *p)
{
	struct timeval tv = {(time_t)p->w->cfg.idle_timeout, 0};
	if ((p->pay_timer || (p->pay_timer = evtimer_new(p->w->base, on_pay_timeout, p))) &&
	    evtimer_add(p->pay_timer, &tv) == 0)
		return true;
	pay_fail(p, "cannot arm the deadline of Pay j=%u (it stays in flight)", p->cur.j);
	return false;
}

static void pay_succeed(struct pay_op *p, bool complete)
{
	pay_reply(p, complete);
	mp_conn_close(p->op.conn, "payment done");
}

static void send_next(struct pay_op *p);

static void on_pay_ack(struct mp_conn *c, const MpEnvelope *env, void *arg);

static void send_pay(struct pay_op *p)
{
	Micropay__V1__PayReq pr = MICROPAY__V1__PAY_REQ__INIT;
	pr.channel_id = (ProtobufCBinaryData){MP_ID_LEN, p->ch->channel_id};
	pr.seg_seq = p->ch->seg_seq;
	pr.j = p->cur.j;
	pr.w_j = (ProtobufCBinaryData){MP_HASH_LEN, p->cur.w};
	pr.order_ref = (ProtobufCBinaryData){p->cur.order_ref_len, p->cur.order_ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pr;
	if (mp_conn_call(p->op.conn, &env, on_pay_ack, p) != 0) {
		pay_fail(p, "cannot send Pay j=%u (it stays in flight for a verbatim retry)",
			 p->cur.j);
		return;
	}
	if (!arm_pay_timer(p))
		return;
	if (p->cur_is_resend)
		p->w->stats.pays_resent++;
	else
		p->w->stats.pays_sent++;
}

static bool accepted(MpCode code)
{
	return code == MP_ST(OK) || code == MP_ST(UNDERPAID) || code == MP_ST(DUPLICATE_OK);
}

/* The merchant has Pay cur: forget it as in flight, store last and credit. */
static bool settle(struct pay_op *p, uint64_t credit)
{
	struct wchannel *ch = p->ch;
	uint32_t last = ch->last > p->cur.j ? ch->last : p->cur.j;
	if (!wstore_inflight_done(p->w->store, ch->channel_id, p->cur.j, last, credit))
		return false;
	ch->last = last;
	ch->credit = credit;
	if (ch->inflight)
		ch->inflight--;
	if (p->merchant_last < p->cur.j)
		p->merchant_last = p->cur.j;
	return true;
}

static void on_pay_ack(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *p = arg;
	if (!env)
		return; /* on_close reports why */
	evtimer_del(p->pay_timer);
	char text[400];
	if (env->body_case != MP_BODY(PAY_ACK) || !env->pay_ack->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		pay_fail(p, "unexpected answer to Pay j=%u: %s (it stays in flight)", p->cur.j,
			 text);
		return;
	}
	const Micropay__V1__PayAck *ack = env->pay_ack;
	MpCode code = ack->status->code;
	wallet_status_text(ack->status, text, sizeof(text));
	bool stale_but_taken =
	    p->cur_is_resend && code == MP_ST(STALE_INDEX) && p->cur.j <= p->open_last;
	if (!accepted(code) && !stale_but_taken) {
		p->w->stats.pays_refused++;
		pay_fail(p, "%s Pay j=%u refused: %s (kept in flight for a verbatim retry)",
			 p->cur_is_resend ? "in-flight" : "new", p->cur.j, text);
		return;
	}
	/* A replayed answer (DUPLICATE_OK) or a STALE_INDEX carries an old credit: keep ours. */
	bool fresh = code == MP_ST(OK) || code == MP_ST(UNDERPAID);
	uint32_t before = p->merchant_last;
	if (!settle(p, fresh ? ack->credit : p->ch->credit)) {
		pay_fail(p, "cannot store the acknowledgement of Pay j=%u", p->cur.j);
		return;
	}
	p->have_ack = true;
	p->ack_status = code;
	p->order_price = ack->order_price;
	if (p->cur_is_resend) {
		p->resent++;
	} else {
		p->paid += p->cur.j - before;
		p->last_paid = p->cur.j;
		p->w->stats.units_paid += p->cur.j - before;
		if (ack->last != p->cur.j)
			log_warn("channel %s: PayAck for j=%u says last %u", p->hex, p->cur.j,
				 ack->last);
	}
	log_debug("channel %s: Pay j=%u %s, credit %llu", p->hex, p->cur.j, text,
		  (unsigned long long)p->ch->credit);
	send_next(p);
}

static void send_new_pay(struct pay_op *p)
{
	struct wchannel *ch = p->ch;
	uint32_t remaining = p->units - p->paid;
	uint32_t step = remaining < p->max_jump ? remaining : p->max_jump;
	if (mp_clock_now(&p->w->clock) + WALLET_PAY_MARGIN >= ch->pay_until) {
		if (p->paid == 0 || p->then)
			pay_fail(p, "payments on this channel stopped at pay_until - %d s",
				 WALLET_PAY_MARGIN);
		else
			pay_succeed(p, false);
		return;
	}
	struct wstore_pay *cur = &p->cur;
	cur->j = p->merchant_last + step;
	memcpy(cur->order_ref, p->order_ref, p->order_ref_len);
	cur->order_ref_len = p->order_ref_len;
	p->cur_is_resend = false;
	if (!wallet_channel_word(p->w, ch, cur->j, cur->w)) {
		pay_fail(p, "cannot compute the chain word at %u", cur->j);
		return;
	}
	if (!wstore_inflight_add(p->w->store, ch->channel_id, cur)) {
		pay_fail(p, "cannot record Pay j=%u as in flight; not sent", cur->j);
		return;
	}
	if (ch->sent < cur->j)
		ch->sent = cur->j;
	ch->inflight++;
	send_pay(p);
}

/* wallet_session_pay: the next new Pay, or the continuation once every unit is paid. */
static void session_pay_next(struct pay_op *p)
{
	if (p->paid < p->units) {
		send_new_pay(p);
		return;
	}
	wallet_session_fn paid = p->session_paid;
	p->session_paid = NULL;
	paid(p, p->then_arg);
}

static void send_next(struct pay_op *p)
{
	struct wchannel *ch = p->ch;
	if (p->next_resend < p->n_resend) {
		p->cur = p->resend[p->next_resend++];
		p->cur_is_resend = true;
		send_pay(p);
		return;
	}
	if (p->held) { /* an unpaid Offer holds the channel: offer_cancel.c */
		wallet_session_cancel_held(p, p->held);
		return;
	}
	if (p->session_paid) {
		session_pay_next(p);
		return;
	}
	if (p->then) {
		p->then(p, p->then_arg);
		return;
	}
	if (p->paid == 0 && p->resent == (unsigned)p->n_resend) {
		/* First new Pay: everything sent before must be at the merchant by now. */
		if (ch->sent > p->merchant_last) {
			pay_fail(
			    p,
			    "the merchant's last index %u is below index %u already sent on this "
			    "channel; not paying",
			    p->merchant_last, ch->sent);
			return;
		}
		if (p->units > ch->n - p->merchant_last) {
			pay_fail(p, "only %u units left on this channel (n %u, last %u)",
				 ch->n - p->merchant_last, ch->n, p->merchant_last);
			return;
		}
	}
	if (p->paid < p->units)
		send_new_pay(p);
	else
		pay_succeed(p, true);
}

/* An unbound channel opened with a Move: the OpenAck must carry the broker's Bind naming the
 * merchant we opened at, in epoch 0. */
static const char *check_bind(struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	uint8_t mid[MP_ID_LEN];
	const char *bad = wallet_bind_check(p->w, p->ch, ack->custody_event, mid);
	if (bad)
		return bad;
	if (memcmp(mid, p->target, MP_ID_LEN))
		return "the Bind names another merchant";
	return ack->hseq == 0 ? NULL : "the OpenAck after a Bind is not in epoch 0";
}

/* After a Move: the OpenAck's Handoff (or Bind) checks out; record the new holder, epoch and
 * cert. */
static const char *adopt_holder(struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	struct wchannel *ch = p->ch;
	const char *bad = NULL;
	bool binding = p->move && wallet_id_is_zero(ch->holder);
	if (binding && (bad = check_bind(p, ack)))
		return bad;
	if (p->move && !binding && ack->hseq != ch->epoch + 1)
		return "the OpenAck after a Move is not in the next epoch";
	if (!p->move && ack->hseq != ch->epoch)
		return "the OpenAck is not in the channel's epoch";
	if (p->move && !binding &&
	    (bad = wallet_move_check_handoff(p->w, ch, ack->custody_event, p->move, p->target)))
		return bad;
	if (wallet_merchant_cert_check(p->w, ack->holder_cert, p->target, NULL))
		return p->move ? "the OpenAck carries no MerchantCert of the merchant" : NULL;
	MpSigned *cert = mp_stmt_copy(ack->holder_cert);
	if (!cert)
		return "out of memory";
	mp_stmt_free(ch->holder_cert);
	ch->holder_cert = cert;
	memcpy(ch->holder, p->target, MP_ID_LEN);
	ch->epoch = ack->hseq;
	if (!wstore_channel_holder(p->w->store, ch))
		return "cannot store the new holder";
	if (p->move)
		log_info("channel %s: moved to m-%s (epoch %u)", p->hex, p->target_hex, ch->epoch);
	return NULL;
}

/* An unbound channel another merchant was bound to first (NOT_HOLDER carrying the broker's
 * Bind): record that merchant as the holder, so that a pay without merchant_id goes there. */
static const char *note_bound(struct pay_op *p, const Micropay__V1__OpenAck *ack, char *note,
			      size_t note_len)
{
	uint8_t mid[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	const char *bad = wallet_bind_check(p->w, p->ch, ack->status->evidence, mid);
	if (bad)
		return bad;
	memcpy(p->ch->holder, mid, MP_ID_LEN);
	p->ch->epoch = 0;
	if (!wstore_channel_holder(p->w->store, p->ch))
		return "cannot store the bound merchant";
	mp_hex_encode(mid, MP_ID_LEN, hex);
	snprintf(note, note_len, "the broker bound the channel to m-%s: pay there", hex);
	log_info("channel %s: bound to m-%s", p->hex, hex);
	return note;
}

/* transfer.send retried after the holder switched to the segment our Transfer created. */
static bool capped_already(const struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	return p->then && p->ch->state == WCH_TRANSFERRING && p->ch->inflight == 0 && ack->point &&
	       ack->point->seg_seq == p->ch->seg_seq + 1;
}

/* close retried after the holder closed the channel: its Open answers CLOSED; the CloseRequest
 * we stored gets the stored Close (close.c). */
static bool closed_already(const struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	return p->then && p->ch->state == WCH_CLOSING && ack->status->code == MP_ST(CLOSED);
}

/* transfer.send of a channel TRANSFERRING at a merchant that handed it on: the Transfer itself
 * asks for the redirect (transfer_moved.c), since only the owner's signature may reveal it. */
static bool handed_off_transferring(const struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	return p->then && p->ch->state == WCH_TRANSFERRING && !p->move &&
	       ack->status->code == MP_ST(HANDED_OFF);
}

static void follow_redirect(struct pay_op *p, const Micropay__V1__OpenAck *ack);

/* The OpenAck proves the merchant holds the channel at a point of our own chain. */
static void on_open_ack(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *p = arg;
	struct wchannel *ch = p->ch;
	if (!env)
		return;
	evtimer_del(p->open_timer);
	char text[400];
	if (env->body_case != MP_BODY(OPEN_ACK) || !env->open_ack->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		pay_fail(p, "unexpected answer to Open: %s; no payword sent", text);
		return;
	}
	const Micropay__V1__OpenAck *ack = env->open_ack;
	const MpPoint *pt = ack->point;
	uint8_t ours[MP_HASH_LEN];
	const char *bad = NULL;
	if (ack->status->code == MP_ST(NOT_HOLDER) && wallet_id_is_zero(ch->holder) &&
	    ack->status->evidence) {
		wallet_status_text(ack->status, text, sizeof(text));
		char note[160];
		pay_fail(p, "Open refused: %s; %s; no payword sent", text,
			 note_bound(p, ack, note, sizeof(note)));
	} else if (closed_already(p, ack) || handed_off_transferring(p, ack)) {
		p->then(p, p->then_arg);
	} else if (ack->status->code == MP_ST(HANDED_OFF) && ack->redirect && p->move) {
		follow_redirect(p, ack);
	} else if (ack->status->code != MP_ST(OK)) {
		wallet_status_text(ack->status, text, sizeof(text));
		pay_fail(p, "Open refused: %s; no payword sent", text);
	} else if (capped_already(p, ack)) {
		/* A TRANSFERRING retry after the holder capped our segment: the holder is in the
		 * next segment (not our chain), nothing of ours is in flight; ask for the Cap. */
		if ((bad = adopt_holder(p, ack)))
			pay_fail(p, "OpenAck epoch %u: %s", ack->hseq, bad);
		else
			p->then(p, p->then_arg);
	} else if (!pt || pt->seg_seq != ch->seg_seq || pt->index < ch->seg_start ||
		   pt->index > ch->n || !mp_bytes_len_is(pt->w, MP_HASH_LEN)) {
		pay_fail(p,
			 "OpenAck point is missing or not in our segment %u (%u .. %u); no payword "
			 "sent",
			 ch->seg_seq, ch->seg_start, ch->n);
	} else if (!wallet_channel_word(p->w, ch, pt->index, ours)) {
		pay_fail(p, "cannot compute our chain word at %u; no payword sent", pt->index);
	} else if (CRYPTO_memcmp(ours, pt->w.data, MP_HASH_LEN) != 0) {
		pay_fail(p, "OpenAck point at index %u does not match our chain; no payword sent",
			 pt->index);
	} else if (ack->max_jump == 0) {
		pay_fail(p, "OpenAck announces max_jump 0; no payword sent");
	} else if ((bad = adopt_holder(p, ack))) {
		pay_fail(p, "OpenAck epoch %u: %s; no payword sent", ack->hseq, bad);
	} else if ((ack->custody_event && !(p->custody_event = mp_stmt_copy(ack->custody_event))) ||
		   (ack->held_by_offer && !(p->held = mp_stmt_copy(ack->held_by_offer)))) {
		pay_fail(p, "out of memory");
	} else {
		p->open_last = p->merchant_last = pt->index;
		p->max_jump = ack->max_jump;
		p->in_segment = true;
		uint32_t last = ch->last > pt->index ? ch->last : pt->index;
		if (!wstore_channel_progress(p->w->store, ch->channel_id, last, ack->credit)) {
			pay_fail(p, "cannot store the OpenAck's point; no payword sent");
			return;
		}
		ch->last = last;
		ch->credit = ack->credit;
		p->n_resend = wstore_inflight_list(p->w->store, ch->channel_id, &p->resend);
		if (p->n_resend < 0) {
			p->n_resend = 0;
			pay_fail(p, "cannot read the in-flight Pays; no payword sent");
			return;
		}
		log_info("channel %s: open at %s, epoch %u, last %u, max_jump %u, %d in-flight to "
			 "resend",
			 p->hex, p->endpoint, ch->epoch, pt->index, p->max_jump, p->n_resend);
		send_next(p);
	}
}

static void send_open(struct pay_op *p);

/* HANDED_OFF with a redirect: the holder we named had handed the channel on. Step one epoch
 * (redirect.c), then open again with a Move from it, or without one if the target is now the
 * holder. */
static void follow_redirect(struct pay_op *p, const Micropay__V1__OpenAck *ack)
{
	char text[400];
	wallet_status_text(ack->status, text, sizeof(text));
	const char *bad = NULL;
	if (++p->redirects > MP_MAX_HANDOFFS) {
		pay_fail(p, "Open refused: %s; more than %d redirects; no payword sent", text,
			 MP_MAX_HANDOFFS);
		return;
	}
	if ((bad = wallet_redirect_follow(p->w, p->ch, ack->redirect))) {
		pay_fail(p, "Open refused: %s; redirect not followed: %s; no payword sent", text,
			 bad);
		return;
	}
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(p->ch->holder, MP_ID_LEN, hex);
	log_info("channel %s: redirected by m-%s to the holder m-%s (epoch %u)", p->hex,
		 p->target_hex, hex, p->ch->epoch);
	mp_stmt_free(p->move);
	p->move = NULL;
	if (memcmp(p->target, p->ch->holder, MP_ID_LEN) &&
	    !(p->move = wallet_move_sign(p->w, p->ch, p->target))) {
		pay_fail(p, "cannot sign the Move from epoch %u; no payword sent", p->ch->epoch);
		return;
	}
	send_open(p);
}

static void send_open(struct pay_op *p)
{
	uint64_t spent = mp_monotonic_s() - p->open_started;
	if (spent >= WALLET_OPEN_TIMEOUT) {
		pay_fail(p, "no OpenAck accepted within %d s (%u redirects); no payword sent",
			 WALLET_OPEN_TIMEOUT, p->redirects);
		return;
	}
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	open.cert = p->ch->cert;
	open.n_segments = p->ch->n_segments;
	open.segments = p->ch->segments;
	if (p->move) {
		open.move = p->move;
		if (!wallet_id_is_zero(p->ch->holder)) /* else unbound: the merchant binds it */
			open.holder_hint = (ProtobufCBinaryData){MP_ID_LEN, p->ch->holder};
		open.holder_cert = p->ch->holder_cert;
	}
	struct timeval tv = {(time_t)(WALLET_OPEN_TIMEOUT - spent), 0};
	if (evtimer_add(p->open_timer, &tv) != 0) {
		pay_fail(p, "cannot arm the OpenAck timer; nothing sent");
		return;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &open;
	if (mp_conn_call(p->op.conn, &env, on_open_ack, p) != 0)
		pay_fail(p, "cannot send Open");
}

static void on_open(struct mp_conn *c, void *arg)
{
	struct pay_op *p = arg;
	if (!mp_tls_peer_is_merchant(mp_conn_ssl(c), p->target)) {
		char cn[128] = "none";
		mp_tls_peer_cn(mp_conn_ssl(c), cn, sizeof(cn));
		pay_fail(
		    p,
		    "the server at %s presented certificate CN '%s', not m-%s (the merchant to "
		    "pay); nothing sent",
		    p->endpoint, cn, p->target_hex);
		return;
	}
	p->open_started = mp_monotonic_s();
	send_open(p);
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct pay_op *p = arg;
	p->op.conn = NULL;
	pay_fail(p, "connection to %s closed: %s", p->endpoint, reason);
	wallet_op_remove(p->w, &p->op);
	free(p->resend);
	mp_stmt_free(p->move);
	mp_stmt_free(p->custody_event);
	mp_stmt_free(p->held);
	if (p->then_free)
		p->then_free(p->then_arg);
	event_free(p->open_timer);
	if (p->pay_timer)
		event_free(p->pay_timer);
	OPENSSL_cleanse(&p->cur, sizeof(p->cur));
	free(p);
}

static const struct mp_conn_ops pay_ops = {
    .on_open = on_open,
    .on_close = on_close,
};

/* merchant_id: the merchant to pay, by default the channel's holder. False (answered, p freed)
 * on a bad value. */
static bool target_param(struct mp_admin_req *req, json_t *params, struct pay_op *p)
{
	memcpy(p->target, p->ch->holder, MP_ID_LEN);
	if (!json_object_get(params, "merchant_id") && wallet_id_is_zero(p->ch->holder)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
			      "pay: the channel is not bound to a merchant yet: give merchant_id");
		free(p);
		return false;
	}
	if (json_object_get(params, "merchant_id") &&
	    !wallet_param_hex(req, params, "merchant_id", p->target, MP_ID_LEN, true, NULL)) {
		free(p);
		return false;
	}
	mp_hex_encode(p->target, MP_ID_LEN, p->target_hex);
	return true;
}

/* Channel, endpoint, units, order_ref and merchant_id; NULL (answered) on a bad parameter. */
static struct pay_op *pay_params(struct wallet *w, struct mp_admin_req *req, json_t *params,
				 char host[256], uint16_t *port)
{
	uint8_t id[MP_ID_LEN];
	const char *endpoint;
	uint64_t units;
	struct pay_op *p = calloc(1, sizeof(*p));
	if (!p) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return NULL;
	}
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL) ||
	    !mp_admin_param_str(req, params, "endpoint", &endpoint, true) ||
	    !mp_admin_param_u64(req, params, "units", &units, true) ||
	    !wallet_param_hex(req, params, "order_ref", p->order_ref, WALLET_ORDER_REF_MAX, false,
			      &p->order_ref_len)) {
		free(p);
		return NULL;
	}
	const char *bad = NULL;
	if (units < 1 || units > UINT32_MAX)
		bad = "units must be 1 .. 2^32-1";
	else if (!mp_split_endpoint(endpoint, host, 256, port) ||
		 strlen(endpoint) >= sizeof(p->endpoint))
		bad = "endpoint must be host:port";
	else if (!(p->ch = wallet_channel_find(w, id)))
		bad = "no such channel in this wallet";
	if (!bad && !target_param(req, params, p))
		return NULL;
	if (bad) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "pay: %s", bad);
		free(p);
		return NULL;
	}
	p->w = w;
	p->req = req;
	p->units = (uint32_t)units;
	p->want_receipt = json_is_true(json_object_get(params, "receipt"));
	snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
	mp_hex_encode(id, MP_ID_LEN, p->hex);
	return p;
}

/* Connect to host:port for p (whose open_timer is armed on open); false (nothing to free but
 * p's own parts, done by the caller) if the connection could not even start. */
static bool session_connect(struct pay_op *p, const char *host, uint16_t port)
{
	struct wallet *w = p->w;
	struct mp_net_opts opts = {.max_frame = MP_FRAME_MAX_WALLET,
				   .idle_timeout_s = w->cfg.idle_timeout,
				   .name = "merchant"};
	p->op.conn = mp_connect(w->base, w->dns, w->tls, host, port, &opts, &pay_ops, p);
	if (!p->op.conn)
		return false;
	p->ch->busy = true;
	wallet_op_add(w, &p->op);
	return true;
}

/* ---- a Move behind an unpaid Offer ----
 * A holder hands off no channel that an unpaid Offer holds (docs/disputes.md "A held channel
 * does not leave the merchant"): when our store has an Offer of the holder that may still hold
 * it (wallet_offer_may_hold: OFFERED, or PAYING with its Pay unacknowledged, made at the
 * holder's last acknowledged index), the Move waits for a session at the holder first, whose
 * Open resends the in-flight Pays (one may pay the Offer) and cancels an Offer never paid
 * (offer_cancel.c):
 *   MOVE --an Offer of ours may hold the channel--> HOLDER SESSION (Open, in-flight Pays
 *   resent, a held Offer never paid cancelled) --done--> connect to the target with the Move
 *   HOLDER SESSION --fails--> the request answered with its failure, the Move never sent */

static void pending_move_free(void *arg)
{
	struct pay_op *p = arg;
	mp_stmt_free(p->move);
	if (p->then_free)
		p->then_free(p->then_arg);
	event_free(p->open_timer);
	free(p);
}

static void move_after_holder(struct pay_op *s, void *arg)
{
	struct mp_admin_req *req;
	struct pay_op *p = wallet_session_handover(s, &req);
	char host[256];
	uint16_t port;
	if (mp_split_endpoint(p->endpoint, host, sizeof(host), &port) &&
	    session_connect(p, host, port))
		return;
	mp_admin_fail(req, MP_ADMIN_FAILED, "%s: cannot connect to %s", p->verb, p->endpoint);
	pending_move_free(p);
}

/* Connect p to host:port, after a session at the holder when an Offer of ours may still hold
 * the channel there; false (p's parts are the caller's, err says why) if nothing could be
 * started. */
static bool start_session(struct pay_op *p, const char *host, uint16_t port, char *err,
			  size_t errlen)
{
	char at[300];
	snprintf(err, errlen, "cannot connect to %s", p->endpoint);
	if (!p->move || !wallet_offer_may_hold(p->w, p->ch) ||
	    !wallet_holder_endpoint(p->w, p->ch, at, sizeof(at)))
		return session_connect(p, host, port);
	log_info("channel %s: an offer of ours may still hold it at its holder: a session there "
		 "first, then the Move",
		 p->hex);
	char why[200];
	bool started = wallet_session_open(p->w, p->req, p->verb, p->ch, at, move_after_holder, p,
					   pending_move_free, why, sizeof(why));
	if (!started)
		snprintf(err, errlen, "the holder first (at %s): %s", at, why);
	return started;
}

static const char *pay_refusal(struct wallet *w, struct pay_op *p, char *why, size_t len)
{
	struct wchannel *ch = p->ch;
	uint32_t spent = wallet_channel_spent(ch);
	if (w->stopping)
		return "walletd is stopping";
	if (!mp_clock_guard_serving(w->clock_guard, why, len))
		return why;
	if (ch->state == WCH_TRANSFERRED_OUT)
		return "channel transferred out (its rest belongs to the customer it was given to)";
	if (ch->state == WCH_TRANSFERRING)
		return "channel is TRANSFERRING: no more payments (finish it with transfer.send)";
	if (ch->state != WCH_ACTIVE) {
		snprintf(why, len, "the channel is %s, not ACTIVE", wch_state_name(ch->state));
		return why;
	}
	if (wallet_channel_claim_refusal(ch))
		return wallet_channel_claim_refusal(ch);
	if (ch->busy)
		return "another pay or transfer on this channel is in progress";
	if (mp_clock_now(&w->clock) + WALLET_PAY_MARGIN >= ch->pay_until) {
		snprintf(why, len, "payments on this channel stopped at pay_until - %d s",
			 WALLET_PAY_MARGIN);
		return why;
	}
	if (p->units > ch->n - spent) {
		snprintf(why, len, "only %u units left on this channel (n %u, last %u)",
			 ch->n - spent, ch->n, spent);
		return why;
	}
	if (memcmp(p->target, ch->holder, MP_ID_LEN) && !ch->holder_cert &&
	    !wallet_id_is_zero(ch->holder))
		return "no MerchantCert of the holder is known yet: pay at the holder once, then "
		       "at other merchants";
	if (memcmp(p->target, ch->holder, MP_ID_LEN) &&
	    !(p->move = wallet_move_sign(w, ch, p->target)))
		return "cannot sign the Move";
	return NULL;
}

void wallet_admin_pay(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	char host[256];
	uint16_t port;
	struct pay_op *p = pay_params(w, req, params, host, &port);
	if (!p)
		return;
	p->verb = "pay";
	char why[200];
	const char *refuse = pay_refusal(w, p, why, sizeof(why));
	if (refuse || !(p->open_timer = evtimer_new(w->base, on_open_timeout, p))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "pay: %s", refuse ? refuse : "out of memory");
		mp_stmt_free(p->move);
		free(p);
		return;
	}
	char err[400];
	if (!start_session(p, host, port, err, sizeof(err))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "pay: %s", err);
		mp_stmt_free(p->move);
		event_free(p->open_timer);
		free(p);
	}
}

/* ---- session.h ---- */

bool wallet_session_open(struct wallet *w, struct mp_admin_req *req, const char *verb,
			 struct wchannel *ch, const char *endpoint, wallet_session_fn then,
			 void *arg, void (*free_arg)(void *arg), char *err, size_t errlen)
{
	return wallet_session_open_at(w, req, verb, ch, ch->holder, endpoint, then, arg, free_arg,
				      err, errlen);
}

/* The Move to target when it is not the holder (as pay_refusal signs it); NULL reason if
 * none is needed or it is signed. */
static const char *session_move(struct pay_op *p)
{
	const struct wchannel *ch = p->ch;
	if (!memcmp(p->target, ch->holder, MP_ID_LEN))
		return NULL;
	if (!ch->holder_cert && !wallet_id_is_zero(ch->holder))
		return "no MerchantCert of the holder is known yet: use the channel at its holder "
		       "once, then at other merchants";
	return (p->move = wallet_move_sign(p->w, ch, p->target)) ? NULL : "cannot sign the Move";
}

bool wallet_session_open_at(struct wallet *w, struct mp_admin_req *req, const char *verb,
			    struct wchannel *ch, const uint8_t target[MP_ID_LEN],
			    const char *endpoint, wallet_session_fn then, void *arg,
			    void (*free_arg)(void *arg), char *err, size_t errlen)
{
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(endpoint, host, sizeof(host), &port)) {
		snprintf(err, errlen, "the merchant's endpoint '%s' is not host:port", endpoint);
		return false;
	}
	struct pay_op *p = calloc(1, sizeof(*p));
	if (!p || !(p->open_timer = evtimer_new(w->base, on_open_timeout, p))) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	p->w = w;
	p->req = req;
	p->ch = ch;
	p->verb = verb;
	p->then = then;
	p->then_arg = arg;
	memcpy(p->target, target, MP_ID_LEN);
	mp_hex_encode(p->target, MP_ID_LEN, p->target_hex);
	mp_hex_encode(ch->channel_id, MP_ID_LEN, p->hex);
	snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
	const char *bad = session_move(p);
	if (bad || !start_session(p, host, port, err, errlen)) {
		if (bad)
			snprintf(err, errlen, "%s", bad);
		mp_stmt_free(p->move);
		event_free(p->open_timer);
		free(p);
		return false;
	}
	p->then_free = free_arg; /* from here on the session owns arg */
	return true;
}

struct mp_conn *wallet_session_conn(struct pay_op *p)
{
	return p->op.conn;
}

struct wallet *wallet_session_wallet(struct pay_op *p)
{
	return p->w;
}

const MpSigned *wallet_session_custody_event(const struct pay_op *p)
{
	return p->custody_event;
}

void wallet_session_fail(struct pay_op *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pay_fail(p, "%s", msg);
}

void wallet_session_reply(struct pay_op *p, json_t *result)
{
	p->done = true;
	p->ch->busy = false;
	mp_admin_reply(p->req, result);
	mp_conn_close(p->op.conn, "%s done", p->verb);
}

bool wallet_session_pay(struct pay_op *p, uint32_t units, const uint8_t *order_ref, size_t len,
			wallet_session_fn paid)
{
	struct wchannel *ch = p->ch;
	if (units == 0 || len > WALLET_ORDER_REF_MAX || !p->in_segment || p->session_paid) {
		pay_fail(p, "cannot pay %u units here", units);
		return false;
	}
	if (ch->sent > p->merchant_last || units > ch->n - p->merchant_last) {
		pay_fail(p,
			 "cannot pay %u units: %u units left (n %u, merchant's last %u, sent %u)",
			 units, ch->n - p->merchant_last, ch->n, p->merchant_last, ch->sent);
		return false;
	}
	memcpy(p->order_ref, order_ref, len);
	p->order_ref_len = len;
	p->units = p->paid + units;
	p->session_paid = paid;
	send_new_pay(p);
	return true;
}

void wallet_session_set_progress(struct pay_op *p, wallet_session_progress_fn fn)
{
	p->progress = fn;
}

uint32_t wallet_session_units_paid(const struct pay_op *p)
{
	return p->paid;
}

uint32_t wallet_session_max_jump(const struct pay_op *p)
{
	return p->max_jump;
}

struct mp_admin_req *wallet_session_req(struct pay_op *p)
{
	return p->req;
}

void *wallet_session_arg(struct pay_op *p)
{
	return p->then_arg;
}

bool wallet_session_in_segment(const struct pay_op *p)
{
	return p->in_segment;
}

const struct wchannel *wallet_session_channel(const struct pay_op *p)
{
	return p->ch;
}

uint32_t wallet_session_point(const struct pay_op *p)
{
	return p->open_last;
}

bool wallet_session_resent_ref(const struct pay_op *p, const uint8_t *ref, size_t len)
{
	for (int i = 0; i < p->n_resend; i++)
		if (p->resend[i].order_ref_len == len && !memcmp(p->resend[i].order_ref, ref, len))
			return true;
	return false;
}

void wallet_session_held_done(struct pay_op *p)
{
	mp_stmt_free(p->held);
	p->held = NULL;
	send_next(p);
}

void *wallet_session_handover(struct pay_op *p, struct mp_admin_req **req)
{
	void *arg = p->then_arg;
	*req = p->req;
	p->done = true; /* the admin request is the caller's now */
	p->ch->busy = false;
	p->then_free = NULL;
	mp_conn_close(p->op.conn, "%s goes on elsewhere", p->verb);
	return arg;
}
