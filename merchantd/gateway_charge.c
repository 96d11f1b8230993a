/* A request the gateway forwards, and the charge of a paid one (gateway_internal.h):
 *
 *   FORWARDED | HELD --gw_upstream_send--> waiting, under one deadline for the whole answer
 *        ([gateway] upstream_timeout; libevent's own timeouts are per read or write)
 *   FORWARDED --answer--> relayed;  --none, deadline--> 502 / 504
 *   HELD --answer with a status that rendered the service (< 500, not 408 or 429)-->
 *        the channel checked again (a ForcedClose waits for the hold; the clock does not):
 *        still payable --> the Pay on the pay path, queued in the group commit (hold ends)
 *        --> COMMITTING --committed (gateway_paid)--> the answer relayed, charged (after its
 *        Receipt is signed when the payment asked for one: gateway_receipt.c)
 *        no longer payable --> released, 503, nothing charged, the answer not relayed
 *   HELD --answer >= 500, 408 or 429, none, deadline--> released, relayed (or 502 / 504) with
 *        charged: false; the same index may pay again
 *   HELD --answered, the group commit full--> WAIT_ROOM: room looked for every millisecond
 *        for at most 2 s, then released, 503, nothing charged
 *
 * The channel's point cannot move while it is held (channel_busy: its Pays, Handoffs,
 * Transfers, Closes and Offers are answered LIMIT; release_poll.c defers a ForcedClose). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "batch.h"
#include "gateway_internal.h"
#include "http_deferred.h"
#include "log.h"

#define ROOM_WAIT_MS 2000

static void release(struct gw_call *c)
{
	if (c->ch)
		c->ch->gateway_hold = false;
}

/* Released, answered without charge (a = the upstream's answer to relay, or NULL), freed. */
static void not_charged(struct gw_call *c, struct gw_answer *a, int status, const char *why)
{
	if (c->state != CALL_FORWARDED) {
		release(c);
		log_info("gateway: %s %s not charged: %s", c->method,
			 evhttp_request_get_uri(c->req), why);
	}
	gw_relay(c, a, status, why, false);
	gw_answer_free(a);
	gw_call_free(c);
}

static void commit(struct gw_call *c);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	commit(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct gw_call *c = arg;
	if (c->state == CALL_WAIT_ROOM) {
		struct gw_answer *a = c->answer;
		c->answer = NULL;
		gw_answer_free(a); /* not relayed: it is not paid for */
		not_charged(c, NULL, 503, "the merchant could not record the payment in time");
		return;
	}
	gw_upstream_cancel(c->up);
	c->up = NULL;
	not_charged(c, NULL, 504, "the upstream did not answer in time");
}

/* The channel may still take this payment (the hold kept its point; the clock moved on). */
static const char *still_payable(const struct gw_call *c)
{
	const char *detail = NULL;
	const struct merchant *m = c->g->m;
	if (merchant_pay_precheck(m, c->pay.seg_seq, c->pay.j, c->ch, &detail) != MP_ST(OK))
		return detail;
	return c->pay.j > c->ch->last ? NULL : "the channel's point moved";
}

/* The Pay on the pay path (as pay.c's settle, the price known), queued in the group commit. */
static void queue_pay(struct gw_call *c)
{
	struct channel *ch = c->ch;
	uint64_t added = 0, credit = 0;
	mp_amount_mul(c->pay.j - ch->last, ch->unit_value, &added); /* checked when verified */
	mp_amount_add(ch->credit, added, &credit);
	c->credit = credit - c->route->price;
	struct batch_entry e = {.kind = ENTRY_PAY,
				.ch = ch,
				.seg_seq = c->pay.seg_seq,
				.j = c->pay.j,
				.order_ref_len = GW_REF_LEN,
				.code = MP_ST(OK),
				.credit = c->credit,
				.price = c->route->price,
				.http = c,
				.read_us = mp_metrics_now_us()};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	memcpy(e.w, c->pay.w, MP_HASH_LEN);
	memcpy(e.order_ref, c->pay.ref, GW_REF_LEN);
	ch->last = c->pay.j;
	memcpy(ch->w_last, c->pay.w, MP_HASH_LEN);
	ch->credit = c->credit;
	memcpy(ch->last_order_ref, c->pay.ref, GW_REF_LEN);
	ch->last_order_ref_len = GW_REF_LEN;
	ch->gateway_hold = false;
	c->state = CALL_COMMITTING;
	evtimer_del(c->deadline);
	batch_add(c->g->m, &e);
}

static void commit(struct gw_call *c)
{
	const char *why = still_payable(c);
	if (why) {
		struct gw_answer *a = c->answer;
		c->answer = NULL;
		gw_answer_free(a);
		not_charged(c, NULL, 503, why);
		return;
	}
	if (batch_has_room(c->g->m)) {
		queue_pay(c);
		return;
	}
	struct timeval ms = {0, 1000};
	if (c->state != CALL_WAIT_ROOM) {
		c->state = CALL_WAIT_ROOM;
		struct timeval wait = {ROOM_WAIT_MS / 1000, (ROOM_WAIT_MS % 1000) * 1000};
		c->retry = evtimer_new(c->g->m->base, on_retry, c);
		if (!c->retry || evtimer_add(c->deadline, &wait) != 0) {
			on_deadline(-1, 0, c);
			return;
		}
	}
	evtimer_add(c->retry, &ms);
}

/* Statuses that rendered no service: not charged. */
static bool renders_service(int status)
{
	return status < 500 && status != 408 && status != 429;
}

static void on_upstream(void *arg, struct gw_answer *a, const char *why)
{
	struct gw_call *c = arg;
	c->up = NULL;
	if (c->state == CALL_FORWARDED) {
		evtimer_del(c->deadline);
		gw_relay(c, a, 502, why ? why : "no answer", false);
		gw_answer_free(a);
		gw_call_free(c);
		return;
	}
	if (!a || !renders_service(a->code)) {
		char text[120];
		if (a)
			snprintf(text, sizeof(text), "the upstream answered %d", a->code);
		evtimer_del(c->deadline);
		not_charged(c, a, 502, a ? text : why);
		return;
	}
	c->answer = a;
	commit(c);
}

void gw_forward(struct gw_call *c)
{
	struct gateway *g = c->g;
	struct timeval total = {(time_t)g->m->cfg.gateway_upstream_timeout, 0};
	c->deadline = evtimer_new(g->m->base, on_deadline, c);
	if (c->deadline && evtimer_add(c->deadline, &total) == 0)
		c->up = gw_upstream_send(&g->up, c->req, on_upstream, c);
	if (c->up) {
		mp_http_defer(c->req); /* answered later: not read meanwhile */
		return;
	}
	release(c);
	gw_unserved(c, "out of memory");
	gw_call_free(c);
}
