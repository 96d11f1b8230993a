/* OfferReq (docs/goods.md "Key release"; the offer's rules are in offer.h):
 *
 *   OfferReq --lengths--(else MALFORMED)--> clock guard (else INTERNAL) --> channel held here
 *        (else UNKNOWN_CHANNEL, HANDED_OFF, CLOSED, NOT_HOLDER; its statement signing: LIMIT)
 *        ITEM not in the catalogue, or sold chunk by chunk --> UNKNOWN_ITEM
 *        an offer of the channel being hashed or signed, or its row being recorded,
 *        or Pays of the channel committing, or its Cap committing --> TOO_EARLY
 *        the current offer is of ITEM, unpaid, at the channel's last, before its deadline
 *             --> OK with the SAME stored Offer bytes
 *        the current offer holds the channel (offer_holding: unpaid, not cancelled, also
 *             past its deadline) and is not that one --> CONFLICT: pay it or cancel it
 *        no paid unit in the holder's epoch (last <= its start) --> UNDERPAID
 *        a purchase of the channel with a chunk out unpaid --> UNDERPAID
 *        channel no longer payable --> EXPIRED
 *        units above MAX_JUMP, pay_index beyond n, the worker queue full --> LIMIT
 *        v
 *   HASHING [worker pool, offer_seal.c]: K and order_ref drawn, the prefix derived from K;
 *        the file read, sealed and hashed into the Merkle tree (common/sealed_tree.h)
 *        --(changed)--> CONFLICT; --(unreadable)--> INTERNAL
 *        v   (its last or epoch moved, it is no longer held, or a Handoff, Cap or
 *            Close of it is being signed or committed --> CONFLICT: ask again; so
 *            no offer comes to hold a channel that is leaving, offer_blocks)
 *   SIGNING [worker pool, common/sign_job.h]: the Offer statement under our key
 *        --(queue full)--> LIMIT; --(failed)--> INTERNAL
 *        v   (the same checks again; the batch full --> LIMIT)
 *   RECORDING: ch->offer = the offer (the previous one stays in the store only), its row with
 *        K and the Offer bytes queued (ENTRY_OFFER) --committed--> OfferResp{OK, offer, item,
 *        size, chunk_size, chunks, nonce_prefix}
 *
 * While HASHING or SIGNING the channel is offer_busy: another OfferReq is TOO_EARLY. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "chan_sign.h"
#include "custody_store.h"
#include "log.h"
#include "merchant.h"
#include "offer.h"
#include "gateway.h"
#include "offer_seal.h"
#include "purchase.h"
#include "sign_job.h"
#include "stmt.h"

/* One offer being made, from the request to its recording. */
struct prep {
	struct merchant *m;
	struct mp_conn *conn; /* referenced until answered */
	uint64_t request_id;
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq; /* the channel's epoch when the offer was asked for */
	struct offer *o;
};

static void reply_offer(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
			const struct offer *o)
{
	Micropay__V1__OfferResp resp = MICROPAY__V1__OFFER_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	MpSigned *offer = o ? mp_stmt_decode(o->signed_offer, o->signed_len) : NULL;
	if (o && !offer) {
		log_err("offer of '%s': its stored Offer does not decode", o->item.id);
		resp.status =
		    merchant_status(&st, MP_ST(INTERNAL), "the stored Offer is unreadable");
	} else if (o) {
		resp.offer = offer;
		resp.item = (char *)o->item.id;
		resp.size = o->item.size;
		resp.chunk_size = o->item.chunk_size;
		resp.chunks = (uint32_t)o->item.chunks;
		resp.nonce_prefix = (ProtobufCBinaryData){MP_SEAL_PREFIX_LEN, (uint8_t *)o->prefix};
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_RESP);
	env.offer_resp = &resp;
	merchant_send(c, request_id, &env);
	mp_stmt_free(offer);
}

static void refuse(struct mp_conn *c, uint64_t request_id, const uint8_t *channel_id,
		   const char *item, MpCode code, const char *detail)
{
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (channel_id)
		mp_hex_encode(channel_id, MP_ID_LEN, hex);
	log_info("%s: offer of '%.128s' on channel %s refused: %s: %s", mp_conn_peer(c), item, hex,
		 mp_code_name(code), detail);
	reply_offer(c, request_id, code, detail, NULL);
}

static void prep_free(struct prep *p)
{
	mp_conn_unref(p->conn);
	offer_free(p->o);
	free(p);
}

/* The prep failed: answer (if the wallet is still there), the channel free for offers again. */
static void prep_fail(struct prep *p, MpCode code, const char *detail)
{
	struct channel *ch = channel_find(&p->m->channels, p->channel_id);
	if (ch)
		ch->offer_busy = false;
	if (mp_conn_is_open(p->conn))
		refuse(p->conn, p->request_id, p->channel_id, p->o->item.id, code, detail);
	prep_free(p);
}

/* The index the holder's epoch starts at: 0 for the first holder, else its Handoff's point
 * (one primary-key read of the stored Handoff). False if it cannot be read. */
static bool epoch_start(struct merchant *m, const struct channel *ch, uint32_t *start)
{
	*start = 0;
	if (ch->hseq == 0)
		return true;
	Micropay__V1__Handoff *h = custody_store_handoff_body(m->store, ch->id, ch->hseq);
	bool ok = h && h->point;
	if (ok)
		*start = h->point->index;
	if (h)
		micropay__v1__handoff__free_unpacked(h, NULL);
	return ok;
}

/* The channel is still where the offer was made: held, same segment, its last (durable) at
 * after_index. NULL if so, else why not. */
static const char *moved(struct prep *p, struct channel **out)
{
	struct channel *ch = channel_find(&p->m->channels, p->channel_id);
	const char *detail = NULL;
	*out = ch;
	if (merchant_holding(ch, &detail) != MP_ST(OK))
		return "the channel is no longer held here";
	if (ch->signing || ch->handoff_pending || ch->cap_pending || ch->close_pending)
		return "a Handoff, Cap or Close of the channel is being made; ask again";
	if (ch->gateway_hold)
		return GATEWAY_HOLD_DETAIL;
	if (ch->seg_seq != p->o->seg_seq || ch->hseq != p->hseq || ch->last != p->o->after_index ||
	    ch->durable_last != p->o->after_index)
		return "the channel's last moved while the offer was made; ask again";
	return NULL;
}

static void on_signed(void *arg, MpSigned *offer)
{
	struct prep *p = arg;
	struct merchant *m = p->m;
	struct channel *ch;
	if (offer)
		merchant_count_worker_signature(m);
	p->o->signed_offer = offer ? mp_stmt_encode(offer, &p->o->signed_len) : NULL;
	mp_stmt_free(offer);
	const char *why = moved(p, &ch);
	struct offer *row = p->o->signed_offer ? offer_copy(p->o) : NULL;
	if (!row || why || !batch_has_room(m)) {
		offer_free(row);
		if (!p->o->signed_offer)
			log_err("offer of '%s': the Offer could not be signed", p->o->item.id);
		prep_fail(p,
			  why	? MP_ST(CONFLICT)
			  : row ? MP_ST(LIMIT)
				: MP_ST(INTERNAL),
			  why	? why
			  : row ? "merchant busy: payments are being committed; retry"
				: "the Offer could not be signed; retry");
		return;
	}
	ch->offer_busy = false;
	offer_free(ch->offer);
	ch->offer = p->o;
	p->o = NULL;
	m->stats.offers++;
	struct batch_entry e = {.kind = ENTRY_OFFER,
				.ch = ch,
				.conn = p->conn,
				.request_id = p->request_id,
				.offer_row = row};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
	prep_free(p);
}

static void sign(struct prep *p, const uint8_t ciphertext_hash[32])
{
	struct offer *o = p->o;
	struct mp_offer stmt = {.seg_seq = o->seg_seq,
				.after_index = o->after_index,
				.pay_index = o->pay_index,
				.price = o->price,
				.deadline = o->deadline};
	memcpy(stmt.merchant_id, p->m->mid, MP_ID_LEN);
	memcpy(stmt.channel_id, o->channel_id, MP_ID_LEN);
	memcpy(stmt.order_ref, o->order_ref, OFFER_REF_LEN);
	SHA256(o->key, MP_SEAL_KEY_LEN, stmt.key_hash);
	memcpy(stmt.ciphertext_hash, ciphertext_hash, MP_HASH_LEN);
	Micropay__V1__Offer body;
	mp_offer_body(&stmt, &body);
	if (!mp_sign_job_submit(p->m->workers, &p->m->key, MP_STMT_OFFER, &body.base, on_signed, p))
		prep_fail(p, MP_ST(LIMIT), "merchant busy: signing queue full; retry");
}

static void on_hashed(void *arg, const struct offer_hashed *r)
{
	struct prep *p = arg;
	struct channel *ch;
	const char *why = r ? moved(p, &ch) : NULL;
	if (!r) {
		prep_fail(p, MP_ST(INTERNAL), "merchantd is stopping; retry");
	} else if (r->outcome == GOODS_CHANGED) {
		log_warn("offer of '%s': %s changed since the catalogue was loaded (not a regular "
			 "file of %llu bytes, or written while it was read)",
			 p->o->item.id, p->o->item.path, (unsigned long long)p->o->item.size);
		prep_fail(p, MP_ST(CONFLICT),
			  "the item's file changed since the catalogue was loaded; retry later");
	} else if (r->outcome == GOODS_FAILED) {
		log_err("offer of '%s': reading or sealing %s: %s", p->o->item.id, p->o->item.path,
			r->err ? strerror(r->err) : "sealing failed or out of memory");
		prep_fail(p, MP_ST(INTERNAL), "cannot read the item; retry");
	} else if (why) {
		prep_fail(p, MP_ST(CONFLICT), why);
	} else {
		p->o->mtime_ns = r->seen.mtime_ns;
		p->o->ident = r->seen.ident;
		sign(p, r->ciphertext_hash);
	}
}

struct offer *offer_sealing_copy(const struct merchant *m, const struct offer *o)
{
	struct offer *c = offer_copy(o);
	if (c && m->fault == MP_FAULT_OFFER_WRONG_KEY) { /* fault.h: a dishonest seller */
		uint8_t other[SHA256_DIGEST_LENGTH];
		SHA256(o->key, MP_SEAL_KEY_LEN, other);
		memcpy(c->key, other, MP_SEAL_KEY_LEN);
	}
	return c;
}

/* A new offer of it on ch (arithmetic checked by the caller): K and order_ref drawn, the nonce
 * prefix derived from K (mp_sealed_prefix). */
static struct offer *offer_new(const struct merchant *m, const struct catalogue_item *it,
			       const struct channel *ch, uint32_t units)
{
	struct offer *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->item = *it;
	o->item.path = strdup(it->path);
	if (!o->item.path || !mp_random_bytes(o->key, MP_SEAL_KEY_LEN) ||
	    !mp_random_bytes(o->order_ref, OFFER_REF_LEN)) {
		offer_free(o);
		return NULL;
	}
	mp_sealed_prefix(o->key, o->prefix);
	memcpy(o->channel_id, ch->id, MP_ID_LEN);
	o->seg_seq = ch->seg_seq;
	o->after_index = ch->last;
	o->pay_index = ch->last + units;
	o->price = it->total;
	o->deadline = merchant_now(m) + m->cfg.key_deadline;
	return o;
}

/* Why ch cannot get a new offer now (the code, the detail in buf), or OK. */
static MpCode not_now(struct merchant *m, const struct channel *ch, char *buf, size_t len)
{
	uint32_t start;
	const struct purchase *p = channel_purchase(ch);
	if (!epoch_start(m, ch, &start)) {
		snprintf(buf, len, "cannot read the channel's custody; retry");
		return MP_ST(INTERNAL);
	}
	if (ch->last <= start) {
		snprintf(buf, len,
			 "an offer needs at least one paid unit on the channel here (its last is "
			 "%u, the holder's epoch starts at %u): pay one unit first",
			 ch->last, start);
		return MP_ST(UNDERPAID);
	}
	if (p && purchase_owes(p)) {
		snprintf(buf, len, "pay chunk %u of this channel's purchase of '%s' first",
			 p->paid_durable, p->item.id);
		return MP_ST(UNDERPAID);
	}
	if (merchant_now(m) + m->cfg.pay_margin >= ch->pay_until) {
		snprintf(buf, len, "channel no longer payable");
		return MP_ST(EXPIRED);
	}
	return MP_ST(OK);
}

/* The arithmetic: units and pay_index within MAX_JUMP and n, or LIMIT with why in buf. */
static bool units_fit(const struct merchant *m, const struct channel *ch,
		      const struct catalogue_item *it, uint32_t *units, char *buf, size_t len)
{
	if (!mp_offer_units(it->total, ch->unit_value, m->cfg.max_jump, units)) {
		snprintf(buf, len, "the price %llu needs more than MAX_JUMP (%u) units of %llu",
			 (unsigned long long)it->total, m->cfg.max_jump,
			 (unsigned long long)ch->unit_value);
		return false;
	}
	if (*units > ch->n - ch->last) {
		snprintf(buf, len, "the price needs %u units; the channel has %u left", *units,
			 ch->n - ch->last);
		return false;
	}
	return true;
}

/* The channel's current offer may be answered again: of it, open (offer_open). */
static bool same_open_offer(const struct merchant *m, const struct channel *ch,
			    const struct offer *o, const char *item)
{
	return offer_open(m, ch, o) && !strcmp(o->item.id, item);
}

static const char *settling(const struct channel *ch)
{
	if (ch->offer_busy)
		return "an offer for this channel is being made; retry";
	if (ch->offer && !ch->offer->recorded)
		return "the channel's offer is being recorded; retry";
	if (ch->last != ch->durable_last || ch->cap_pending)
		return "payments of this channel are committing; retry";
	return NULL;
}

static void start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, struct channel *ch,
		  const struct catalogue_item *it)
{
	const Micropay__V1__OfferReq *r = env->offer_req;
	char why[300];
	const char *wait = settling(ch);
	if (wait) {
		refuse(c, env->request_id, ch->id, r->item, MP_ST(TOO_EARLY), wait);
		return;
	}
	if (same_open_offer(m, ch, channel_offer(ch), r->item)) {
		reply_offer(c, env->request_id, MP_ST(OK), "", ch->offer);
		return;
	}
	const struct offer *held = offer_holding(ch);
	if (held) {
		snprintf(
		    why, sizeof(why),
		    "an offer of '%s' (deadline %llu) holds this channel: pay it, or cancel it "
		    "(OfferCancelReq; the OpenAck names it)",
		    held->item.id, (unsigned long long)held->deadline);
		refuse(c, env->request_id, ch->id, r->item, MP_ST(CONFLICT), why);
		return;
	}
	MpCode code = not_now(m, ch, why, sizeof(why));
	uint32_t units = 0;
	if (code == MP_ST(OK) && !units_fit(m, ch, it, &units, why, sizeof(why)))
		code = MP_ST(LIMIT);
	if (code != MP_ST(OK)) {
		refuse(c, env->request_id, ch->id, r->item, code, why);
		return;
	}
	struct prep *p = calloc(1, sizeof(*p));
	if (!p || !(p->o = offer_new(m, it, ch, units))) {
		free(p);
		refuse(c, env->request_id, ch->id, r->item, MP_ST(LIMIT), "out of memory; retry");
		return;
	}
	*p = (struct prep){
	    .m = m, .conn = c, .request_id = env->request_id, .hseq = ch->hseq, .o = p->o};
	memcpy(p->channel_id, ch->id, MP_ID_LEN);
	mp_conn_ref(c);
	if (!offer_hash_submit(m, p->o, on_hashed, p)) {
		prep_free(p);
		refuse(c, env->request_id, ch->id, r->item, MP_ST(LIMIT),
		       "merchant busy: worker queue full; retry");
		return;
	}
	ch->offer_busy = true;
}

void handle_offer(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__OfferReq *r = env->offer_req;
	char why[200];
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN) || !r->item || !r->item[0] ||
	    strlen(r->item) > CATALOGUE_ID_MAX) {
		refuse(c, env->request_id, NULL, "?", MP_ST(MALFORMED),
		       "field lengths (channel_id, item)");
		return;
	}
	struct channel *ch = channel_find(&m->channels, r->channel_id.data);
	const char *detail = NULL;
	MpCode code = merchant_holding(ch, &detail);
	if (code == MP_ST(OK) && channel_busy(ch)) {
		code = MP_ST(LIMIT);
		detail = channel_busy(ch);
	}
	if (!mp_clock_guard_serving(m->clock_guard, why, sizeof(why))) {
		code = MP_ST(INTERNAL);
		detail = why;
	}
	const struct catalogue_item *it = catalogue_find(m->catalogue, r->item);
	if (code == MP_ST(OK) && (!it || !it->key_release)) {
		code = MP_ST(UNKNOWN_ITEM);
		detail = it ? "this item is sold chunk by chunk: ask for its chunk 0 (ChunkReq)"
			    : "no such item in the catalogue";
	}
	if (code != MP_ST(OK)) {
		refuse(c, env->request_id, r->channel_id.data, r->item, code, detail);
		return;
	}
	start(m, c, env, ch, it);
}

void offer_acknowledge(struct merchant *m, struct batch_entry *e)
{
	if (mp_conn_is_open(e->conn))
		reply_offer(e->conn, e->request_id, MP_ST(OK), "", e->offer_row);
}
