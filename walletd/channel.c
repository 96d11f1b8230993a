/* The wallet's channels in memory (loaded from the store at start, written through on change)
 * and their chain words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

const char *wch_state_name(enum wch_state s)
{
	switch (s) {
	case WCH_ISSUING:
		return "ISSUING";
	case WCH_ACTIVE:
		return "ACTIVE";
	case WCH_FAILED:
		return "FAILED";
	case WCH_TRANSFERRING:
		return "TRANSFERRING";
	case WCH_TRANSFERRED_OUT:
		return "TRANSFERRED_OUT";
	case WCH_CLOSING:
		return "CLOSING";
	case WCH_CLOSED:
		return "CLOSED";
	case WCH_RELEASED:
		return "RELEASED";
	}
	return "?";
}

bool wch_state_parse(const char *name, enum wch_state *out)
{
	static const enum wch_state all[] = {WCH_ISSUING, WCH_ACTIVE, WCH_FAILED, WCH_TRANSFERRING,
					     WCH_TRANSFERRED_OUT};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(name, wch_state_name(all[i])) == 0) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

struct wchannel *wallet_channel_find(struct wallet *w, const uint8_t id[MP_ID_LEN])
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (memcmp(ch->channel_id, id, MP_ID_LEN) == 0)
			return ch;
	return NULL;
}

unsigned wallet_channel_count(const struct wallet *w)
{
	unsigned n = 0;
	for (const struct wchannel *ch = w->channels; ch; ch = ch->next)
		n++;
	return n;
}

void wallet_channel_free(struct wchannel *ch)
{
	if (!ch)
		return;
	mp_stmt_free(ch->request);
	mp_stmt_free(ch->cert);
	mp_stmt_free(ch->holder_cert);
	free(ch->detail);
	wstore_stmts_free(ch->segments, ch->n_segments);
	wchain_free(&ch->chain);
	free(ch);
}

struct fetch_arg {
	struct wstore *store;
	const uint8_t *channel_id;
};

static bool fetch_checkpoint(void *arg, uint32_t index, uint8_t w[MP_HASH_LEN])
{
	struct fetch_arg *f = arg;
	return wstore_checkpoint_get(f->store, f->channel_id, index, w);
}

bool wallet_channel_word(struct wallet *w, struct wchannel *ch, uint32_t j,
			 uint8_t out[MP_HASH_LEN])
{
	struct fetch_arg f = {w->store, ch->chain_key};
	if (j < ch->seg_start || j > ch->n)
		return false;
	return wchain_word(&ch->chain, w->hasher, j - ch->seg_start, fetch_checkpoint, &f, out);
}

static json_t *hex_json(const uint8_t *data, size_t len)
{
	char hex[2 * 32 + 1];
	mp_hex_encode(data, len, hex);
	return json_string(hex);
}

/* A time, or null before the channel has its cert. */
static json_t *time_json(uint64_t t)
{
	return t ? json_integer((json_int_t)t) : json_null();
}

void wallet_channel_claim_refused(struct wchannel *ch, const char *status)
{
	char text[400];
	snprintf(text, sizeof(text),
		 "the broker refused this channel's SegmentClaim for good (%s): nothing can be "
		 "paid, transferred or closed with it; ask the customer who gave it",
		 status);
	ch->claim_state = WCLAIM_REFUSED;
	free(ch->detail);
	ch->detail = strdup(text); /* shown in `channels`; NULL (out of memory): a fixed text */
}

const char *wallet_channel_claim_refusal(const struct wchannel *ch)
{
	if (ch->claim_state != WCLAIM_REFUSED)
		return NULL;
	return ch->detail ? ch->detail : "the broker refused this channel's SegmentClaim for good";
}

const char *wallet_channel_state_name(const struct wallet *w, const struct wchannel *ch)
{
	if (ch->state == WCH_ACTIVE && ch->claim_state == WCLAIM_REFUSED)
		return "CLAIM_REFUSED";
	if (ch->state == WCH_CLOSED) /* closed early: its refund is asked for at once */
		return ch->refunded ? "REFUNDED" : "REFUND_PENDING";
	if (ch->state != WCH_ACTIVE)
		return wch_state_name(ch->state);
	if (ch->refunded)
		return "REFUNDED";
	if (ch->pay_until && wallet_now(w) >= ch->pay_until)
		return "REFUND_PENDING";
	return wch_state_name(ch->state);
}

json_t *wallet_channel_json(const struct wallet *w, const struct wchannel *ch)
{
	json_t *o =
	    json_pack("{s:o,s:s,s:o,s:o,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:I,"
		      "s:s?}",
		      "channel_id", hex_json(ch->channel_id, MP_ID_LEN), "state",
		      wallet_channel_state_name(w, ch), "holder0", hex_json(ch->holder0, MP_ID_LEN),
		      "holder", hex_json(ch->holder, MP_ID_LEN), "epoch", (json_int_t)ch->epoch,
		      "n", (json_int_t)ch->n, "unit_value", (json_int_t)ch->unit_value, "currency",
		      ch->currency, "days", (json_int_t)ch->days, "last", (json_int_t)ch->last,
		      "sent", (json_int_t)ch->sent, "inflight", (json_int_t)ch->inflight, "credit",
		      (json_int_t)ch->credit, "issued_at", time_json(ch->issued_at), "pay_until",
		      time_json(ch->pay_until), "redeem_until", time_json(ch->redeem_until),
		      "checkpoint_interval", (json_int_t)ch->interval, "detail", ch->detail);
	if (o) {
		json_object_set_new(o, "segment", wallet_segment_json(ch));
		json_object_set_new(o, "broker_ack",
				    ch->claim_state < 0
					? json_null()
					: json_boolean(ch->claim_state == WCLAIM_ACKED));
	}
	return o;
}

void wallet_op_add(struct wallet *w, struct wallet_op *op)
{
	op->next = w->ops;
	w->ops = op;
}

void wallet_op_remove(struct wallet *w, struct wallet_op *op)
{
	for (struct wallet_op **pp = &w->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			return;
		}
	}
}
