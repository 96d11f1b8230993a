/* merchantd's admin socket: status, channels, orders, redeem, store compaction, metrics,
 * shutdown. Everything it reports is durable state (the channels' and orders' durable view,
 * batch.h): what a crash cannot take back. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "admin_orders.h"
#include "clock.h"
#include "amount.h"
#include "batch.h"
#include "cap_outbox.h"
#include "catalogue_admin.h"
#include "offer_admin.h"
#include "purchase_admin.h"
#include "compact.h"
#include "drain.h"
#include "admin_service.h"
#include "reload.h"
#include "log.h"
#include "metrics_admin.h"
#include "redeem_deadline.h"
#include "restore.h"
#include "merchant.h"
#include "offer.h"
#include "segments.h"
#include "store.h"

static void admin_status(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	const struct merchant_stats *s = &m->stats;
	mp_admin_reply(
	    req,
	    json_pack(
		"{s:s,s:o,s:b,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		"s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I},s:o,s:o}",
		"daemon", "merchantd", "merchant_id", mp_json_hex(m->mid, MP_ID_LEN), "registered",
		m->cert_valid_until != 0, "cert_valid_until", (json_int_t)m->cert_valid_until,
		"channels", (json_int_t)m->channels_recorded, "time",
		(json_int_t)mp_clock_now(&m->clock), "counters", "opens", (json_int_t)s->opens,
		"pays_ok", (json_int_t)s->pays_ok, "pays_underpaid", (json_int_t)s->pays_underpaid,
		"pays_duplicate", (json_int_t)s->pays_duplicate, "pays_refused",
		(json_int_t)s->pays_refused, "bad_chain", (json_int_t)s->bad_chain, "batches",
		(json_int_t)s->batches, "redeems_sent", (json_int_t)s->redeems_sent,
		"amount_credited", (json_int_t)s->amount_credited, "handoffs_signed",
		(json_int_t)s->handoffs_signed, "handoffs_taken", (json_int_t)s->handoffs_taken,
		"handoff_refusals", (json_int_t)s->handoff_refusals, "handoff_redirects",
		(json_int_t)s->handoff_redirects, "caps_signed", (json_int_t)s->caps_signed,
		"transfer_refusals", (json_int_t)s->transfer_refusals, "stale_segment",
		(json_int_t)s->stale_segment, "closes_signed", (json_int_t)s->closes_signed,
		"close_refusals", (json_int_t)s->close_refusals, "cap_outbox", "pending",
		(json_int_t)cap_outbox_pending(m), "conflicts", (json_int_t)cap_outbox_conflicts(m),
		"restore", restore_status_json(m), "clock", mp_clock_guard_json(m->clock_guard)));
}

static void admin_metrics(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	mp_admin_metrics_reply(req, m->metrics);
}

/* Where the segment of the durable point starts (a Cap waiting for its commit moved the pay
 * path already). */
static uint32_t durable_seg_start(const struct channel *ch)
{
	return ch->durable_seg == 0 ? 0 : ch->segs[ch->durable_seg - 1].start;
}

/* held_by_offer: the order_ref of the unpaid offer holding the channel (offer.h), or null. */
static json_t *channel_json(const struct channel *ch)
{
	const struct offer *held = offer_holding(ch);
	return json_pack("{s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:o}", "channel_id",
			 mp_json_hex(ch->id, MP_ID_LEN), "state", channel_state_name(ch->state),
			 "epoch", (json_int_t)ch->hseq, "segment", (json_int_t)ch->durable_seg,
			 "seg_start", (json_int_t)durable_seg_start(ch), "n", (json_int_t)ch->n,
			 "unit_value", (json_int_t)ch->unit_value, "last",
			 (json_int_t)ch->durable_last, "credit", (json_int_t)ch->durable_credit,
			 "redeemed_end", (json_int_t)ch->redeemed_end, "pay_until",
			 (json_int_t)ch->pay_until, "redeem_until", (json_int_t)ch->redeem_until,
			 "custody_unconfirmed", ch->custody_unconfirmed, "held_by_offer",
			 held ? mp_json_hex(held->order_ref, OFFER_REF_LEN) : json_null());
}

static void admin_channels(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	json_t *list = json_array();
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		if (ch->recorded)
			json_array_append_new(list, channel_json(ch));
	}
	mp_admin_reply(req, json_pack("{s:o}", "channels", list));
}

/* The order is usable by the pay path at once; the call is answered once its record is
 * durable (batch.h), so a reference the application hands out survives a crash. */
static void admin_order_create(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	uint64_t price;
	if (!mp_admin_param_u64(req, params, "price", &price, true))
		return;
	if (price == 0 || !mp_amount_valid(price)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "price must be 1 .. 2^63-1 minor units");
		return;
	}
	if (!batch_has_room(m)) {
		m->stats.store_busy++;
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE, "the store is behind; retry");
		return;
	}
	struct order *o = calloc(1, sizeof(*o));
	if (!o || !mp_random_bytes(o->ref, MP_ID_LEN)) {
		free(o);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "cannot create an order reference");
		return;
	}
	o->ref_len = MP_ID_LEN;
	o->price = price;
	order_insert(&m->orders, o);
	struct batch_entry e = {.kind = ENTRY_ORDER,
				.order = o,
				.order_ref_len = o->ref_len,
				.price = price,
				.req = req};
	memcpy(e.order_ref, o->ref, o->ref_len);
	batch_add(m, &e);
}

void order_acknowledge(struct merchant *m, struct mp_admin_req *req, const struct order *o)
{
	mp_admin_reply(req, json_pack("{s:o,s:I,s:s}", "order_ref", mp_json_hex(o->ref, o->ref_len),
				      "price", (json_int_t)o->price, "currency", m->cfg.currency));
}

static void admin_order_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	const char *hex;
	uint8_t ref[MP_ORDER_REF_MAX];
	if (!mp_admin_param_str(req, params, "order_ref", &hex, true))
		return;
	size_t len = strlen(hex) / 2;
	struct order *o = NULL;
	if (len >= 1 && len <= MP_ORDER_REF_MAX && mp_hex_decode(hex, ref, len))
		o = order_find(&m->orders, ref, len);
	if (!o || !o->recorded) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "no such order");
		return;
	}
	mp_admin_reply(req, json_pack("{s:s,s:I,s:b}", "order_ref", hex, "price",
				      (json_int_t)o->price, "paid", o->paid_durable));
}

static void on_redeem_done(void *arg, bool ok, const char *summary, uint64_t credited)
{
	struct mp_admin_req *req = arg;
	if (!ok)
		mp_admin_fail(req, MP_ADMIN_FAILED, "%s", summary);
	else
		mp_admin_reply(req, json_pack("{s:s,s:I}", "summary", summary, "credited",
					      (json_int_t)credited));
}

static void admin_redeem(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	redeemer_run(m->redeemer, on_redeem_done, req);
}

static void on_compacted(void *arg, bool ok, const struct compact_report *r, const char *detail)
{
	struct mp_admin_req *req = arg;
	if (!ok) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "compaction: %s", detail);
		return;
	}
	mp_admin_reply(
	    req, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I}", "journal_rows",
			   (json_int_t)r->journal_rows, "outbox_rows", (json_int_t)r->outbox_rows,
			   "goods_rows", (json_int_t)r->goods_rows, "pages_before",
			   (json_int_t)r->pages_before, "pages_after", (json_int_t)r->pages_after,
			   "pages_freed", (json_int_t)r->pages_freed, "file_bytes_before",
			   (json_int_t)r->file_bytes_before, "file_bytes_after",
			   (json_int_t)r->file_bytes_after, "wal_bytes_before",
			   (json_int_t)r->wal_bytes_before, "wal_bytes_after",
			   (json_int_t)r->wal_bytes_after, "checkpointed", r->checkpointed, "steps",
			   (json_int_t)r->steps));
}

static void admin_store_compact(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	if (!compact_run(m, on_compacted, req))
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE,
			      "too many compactions waiting, or stopping");
}

static void admin_shutdown(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	mp_admin_answer_shutdown(req, m->drain);
}

/* What SIGHUP does: the TLS certificate, key and CA and the log level from the configuration
 * file (merchantd/service.c). */
static void admin_reload(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	mp_admin_answer_reload(req, m->reload);
}

static void admin_clock_advance(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	mp_clock_admin_advance(req, params, &m->clock);
	mp_clock_guard_moved(m->clock_guard);
}

static void admin_clock_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	mp_clock_admin_show(req, &m->clock);
}

static const struct mp_admin_method merchant_methods[] = {
    {"status", admin_status, "daemon status and counters", NULL},
    {"metrics", admin_metrics, "Prometheus text", NULL},
    {"channels", admin_channels, "channels held", NULL},
    {"order.create", admin_order_create, "an order reference to pay",
     MP_ADMIN_PARAMS({"price", MP_ADMIN_T_UINT, true, NULL, "price in minor units"})},
    {"orders", admin_orders, "orders by reference, paged", admin_orders_params},
    {"order.show", admin_order_show, "one order",
     MP_ADMIN_PARAMS({"order_ref", MP_ADMIN_T_HEX, true, NULL, "the order reference (hex)"})},
    {"catalogue", admin_catalogue, "the goods on sale (docs/goods.md)", NULL},
    {"purchases", admin_purchases, "purchases of goods, newest first, paged (docs/goods.md)",
     admin_purchases_params},
    {"offers", admin_offers, "key-release offers, newest first, paged (docs/goods.md)",
     admin_offers_params},
    {"redeem", admin_redeem, "redeem accepted payments now", NULL},
    {"restore.confirm", restore_admin_confirm,
     "after a restore (--restored): serve a channel as held again, once its custody is confirmed",
     MP_ADMIN_PARAMS({"channel", MP_ADMIN_T_HEX, true, NULL,
		      "the channel id (32 hex digits) whose custody is confirmed"})},
    {"store.compact", admin_store_compact,
     "fold old redeemed payments, drop old answered Redeems, old offers and finished purchases, "
     "shrink the store",
     NULL},
    {"clock.show", admin_clock_show, "protocol time: {test_clock, offset, now}", NULL},
    {"clock.advance", admin_clock_advance, "move the test clock forward (--test-clock only)",
     MP_ADMIN_PARAMS({"seconds", MP_ADMIN_T_UINT, true, NULL, "seconds to add"})},
    {"reload", admin_reload,
     "re-read the TLS certificate, key, CA, log level and catalogue (as SIGHUP)", NULL},
    {"shutdown", admin_shutdown, "stop gracefully: answer what is in flight, then exit", NULL},
    {NULL, NULL, NULL, NULL},
};

bool merchant_admin_open(struct merchant *m)
{
	m->admin =
	    mp_admin_open(m->base, m->cfg.admin_socket, m->cfg.admin_group, merchant_methods, m);
	return m->admin != NULL;
}
