/* ChunkReq (docs/goods.md "Buying"; the purchase rules are in purchase.h):
 *
 *   ChunkReq --lengths--(else MALFORMED)--> channel held here --(else UNKNOWN_CHANNEL,
 *        HANDED_OFF, CLOSED, NOT_HOLDER)-->
 *   no purchase_id (chunk 0 of ITEM):
 *        the channel's purchase unrecorded or a Pay for it committing --> TOO_EARLY
 *        its purchase is of ITEM and not paid in full --> resume: chunk 0 read and sent
 *        ITEM not in the catalogue, or sold by key release --> UNKNOWN_ITEM
 *        its purchase has a chunk out unpaid --> UNDERPAID, naming that purchase
 *        channel no longer payable --> EXPIRED;  batch full --> LIMIT
 *        --> new purchase, row queued (ENTRY_PURCHASE) --committed--> chunk 0 read and sent
 *   purchase_id = the channel's offer's order_ref: its sealed chunk k (offer_chunk.c)
 *   purchase_id (chunk k):
 *        not the channel's purchase --> OUT_OF_RANGE;  k > chunks --> OUT_OF_RANGE
 *        k > paid_durable --> TOO_EARLY (the paying Pay is committing) or UNDERPAID
 *        k = chunks --> OK, the purchase's state, no data
 *        --> chunk k read on the worker pool and sent (again, if asked again)
 *   a read: the queue full --> LIMIT; the file changed since the purchase --> CONFLICT */
#include "chunk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "log.h"
#include "offer.h"

void chunk_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		 const char *detail, const struct purchase *p, const struct channel *ch,
		 uint32_t chunk, const uint8_t *data, size_t len)
{
	Micropay__V1__ChunkResp resp = MICROPAY__V1__CHUNK_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	resp.chunk = chunk;
	if (p) {
		resp.purchase_id = (ProtobufCBinaryData){PURCHASE_ID_LEN, (uint8_t *)p->id};
		resp.item = (char *)p->item.id;
		resp.chunks = (uint32_t)p->item.chunks;
		resp.size = p->item.size;
		resp.chunk_size = p->item.chunk_size;
		resp.paid = p->paid_durable;
		resp.price = purchase_next_price(p);
		resp.total = p->item.total;
	}
	if (ch)
		resp.credit = ch->durable_credit;
	resp.data = (ProtobufCBinaryData){len, (uint8_t *)data};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CHUNK_RESP);
	env.chunk_resp = &resp;
	if (code != MP_ST(OK))
		m->stats.chunk_refusals++;
	merchant_send(c, request_id, &env);
}

static void refuse(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, MpCode code,
		   const char *detail, const struct purchase *p, const struct channel *ch)
{
	const Micropay__V1__ChunkReq *r = env->chunk_req;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (mp_bytes_len_is(r->channel_id, MP_ID_LEN))
		mp_hex_encode(r->channel_id.data, MP_ID_LEN, hex);
	log_info("%s: chunk %u of '%.128s' on channel %s refused: %s: %s", mp_conn_peer(c),
		 r->chunk, p ? p->item.id : r->item, hex, mp_code_name(code), detail);
	chunk_reply(m, c, env->request_id, code, detail, p, ch, r->chunk, NULL, 0);
}

static void serve(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		  const struct channel *ch, struct purchase *p, uint32_t k)
{
	if (!chunk_read_submit(m, c, env->request_id, ch, p, k))
		refuse(m, c, env, MP_ST(LIMIT), "merchant busy: read queue full; retry", p, ch);
}

/* The channel's purchase is settled enough to be replaced or resumed: TOO_EARLY otherwise. */
static const char *unsettled(const struct purchase *p)
{
	if (p && !p->recorded)
		return "the channel's purchase is being recorded; retry";
	if (p && p->paid != p->paid_durable)
		return "a payment for the channel's purchase is committing; retry";
	return NULL;
}

static void start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, struct channel *ch)
{
	const Micropay__V1__ChunkReq *r = env->chunk_req;
	struct purchase *p = channel_purchase(ch);
	const char *wait = unsettled(p);
	char why[256];
	if (r->chunk != 0) {
		refuse(m, c, env, MP_ST(MALFORMED),
		       "a purchase starts at chunk 0; later chunks name the purchase_id", NULL, ch);
		return;
	}
	if (wait) {
		refuse(m, c, env, MP_ST(TOO_EARLY), wait, p, ch);
		return;
	}
	if (p && strcmp(p->item.id, r->item) == 0 && p->paid_durable < p->item.chunks) {
		serve(m, c, env, ch, p, 0); /* resumed: chunk 0 again */
		return;
	}
	const struct catalogue_item *it = catalogue_find(m->catalogue, r->item);
	if (!it || it->key_release) {
		refuse(m, c, env, MP_ST(UNKNOWN_ITEM),
		       it ? "this item is sold by key release: ask for an Offer (OfferReq)"
			  : "no such item in the catalogue",
		       NULL, ch);
		return;
	}
	if (p && purchase_owes(p)) {
		snprintf(why, sizeof(why), "pay chunk %u of this channel's purchase of '%s' first",
			 p->paid_durable, p->item.id);
		refuse(m, c, env, MP_ST(UNDERPAID), why, p, ch);
		return;
	}
	if (mp_clock_now(&m->clock) + m->cfg.pay_margin >= ch->pay_until) {
		refuse(m, c, env, MP_ST(EXPIRED), "channel no longer payable", NULL, ch);
		return;
	}
	if (!batch_has_room(m)) {
		refuse(m, c, env, MP_ST(LIMIT),
		       "merchant busy: payments are being committed; retry", NULL, ch);
		return;
	}
	struct purchase *np = purchase_new(it, ch->id, ch->seg_seq);
	struct purchase *row = np ? purchase_copy(np) : NULL;
	if (!row) {
		purchase_free(np);
		{
			refuse(m, c, env, MP_ST(LIMIT),
			       it->chunks > UINT32_MAX ? "the item has more than 2^32-1 chunks"
						       : "out of memory; retry",
			       NULL, ch);
			return;
		}
	}
	purchase_free(ch->purchase);
	ch->purchase = np;
	m->stats.purchases++;
	struct batch_entry e = {.kind = ENTRY_PURCHASE,
				.ch = ch,
				.conn = c,
				.request_id = env->request_id,
				.purchase_row = row};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
}

static void go_on(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, struct channel *ch)
{
	const Micropay__V1__ChunkReq *r = env->chunk_req;
	struct purchase *p = channel_purchase(ch);
	char why[256];
	if (!p || memcmp(p->id, r->purchase_id.data, PURCHASE_ID_LEN)) {
		refuse(m, c, env, MP_ST(OUT_OF_RANGE), "not this channel's current purchase", NULL,
		       ch);
		return;
	}
	if (!p->recorded) {
		refuse(m, c, env, MP_ST(TOO_EARLY), unsettled(p), p, ch);
		return;
	}
	if (r->chunk > p->item.chunks) {
		refuse(m, c, env, MP_ST(OUT_OF_RANGE), "chunk beyond the item's last", p, ch);
		return;
	}
	if (r->chunk > p->paid_durable) {
		bool committing = r->chunk <= p->paid;
		snprintf(why, sizeof(why), "chunk %u is not paid yet%s", r->chunk - 1,
			 committing ? " (its payment is committing; retry)" : "");
		refuse(m, c, env, committing ? MP_ST(TOO_EARLY) : MP_ST(UNDERPAID), why, p, ch);
		return;
	}
	if (r->chunk == p->item.chunks) { /* the purchase's state only */
		chunk_reply(m, c, env->request_id, MP_ST(OK), "paid in full", p, ch, r->chunk, NULL,
			    0);
		return;
	}
	serve(m, c, env, ch, p, r->chunk);
}

void handle_chunk(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__ChunkReq *r = env->chunk_req;
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN) ||
	    (r->purchase_id.len && r->purchase_id.len != PURCHASE_ID_LEN) || !r->item ||
	    strlen(r->item) > CATALOGUE_ID_MAX || (!r->purchase_id.len && !r->item[0])) {
		refuse(m, c, env, MP_ST(MALFORMED), "field lengths (channel_id, purchase_id, item)",
		       NULL, NULL);
		return;
	}
	struct channel *ch = channel_find(&m->channels, r->channel_id.data);
	const char *detail = NULL;
	MpCode code = merchant_holding(ch, &detail);
	if (code != MP_ST(OK)) {
		refuse(m, c, env, code, detail, NULL, NULL);
		return;
	}
	struct offer *o = channel_offer(ch);
	if (offer_is_ref(o, r->purchase_id.data, r->purchase_id.len))
		offer_chunk(m, c, env->request_id, ch, o, r->chunk); /* sealed, free (offer.h) */
	else if (r->purchase_id.len)
		go_on(m, c, env, ch);
	else
		start(m, c, env, ch);
}

void purchase_acknowledge(struct merchant *m, struct batch_entry *e)
{
	struct purchase *p = channel_purchase_with_id(e->ch, e->purchase_row->id);
	if (!mp_conn_is_open(e->conn))
		return; /* the wallet asks again and resumes it */
	if (!p) {
		chunk_reply(m, e->conn, e->request_id, MP_ST(OUT_OF_RANGE),
			    "the channel's purchase changed meanwhile (a transfer); ask again",
			    NULL, e->ch, 0, NULL, 0);
		return;
	}
	if (!chunk_read_submit(m, e->conn, e->request_id, e->ch, p, 0))
		chunk_reply(m, e->conn, e->request_id, MP_ST(LIMIT),
			    "merchant busy: read queue full; ask for chunk 0 again to resume", p,
			    e->ch, 0, NULL, 0);
}
