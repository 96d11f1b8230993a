#include "redeem_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody_store.h"
#include "log.h"
#include "redeem_deadline.h"
#include "redeem_lag.h"
#include "segments.h"
#include "stmt.h"
#include "store.h"

/* The claims of one Redeem being built; words are copied, channel ids point at live memory. */
struct claim_set {
	Micropay__V1__Claim *claims;
	Micropay__V1__Claim **ptrs;
	MpPoint *points;
	uint8_t (*words)[MP_HASH_LEN];
	size_t n, cap;
};

static bool set_init(struct claim_set *cs, size_t cap)
{
	*cs = (struct claim_set){.cap = cap};
	cs->claims = calloc(cap, sizeof(*cs->claims));
	cs->ptrs = calloc(cap, sizeof(*cs->ptrs));
	cs->points = calloc(cap, sizeof(*cs->points));
	cs->words = calloc(cap, sizeof(*cs->words));
	if (cs->claims && cs->ptrs && cs->points && cs->words)
		return true;
	log_err("redeem: out of memory for %zu claims", cap);
	return false;
}

static void set_free(struct claim_set *cs)
{
	for (size_t i = 0; cs->claims && i < cs->n; i++) {
		for (size_t k = 0; k < cs->claims[i].n_custody; k++)
			mp_stmt_free(cs->claims[i].custody[k]);
		free(cs->claims[i].custody);
		segment_stmts_free(cs->claims[i].segments, cs->claims[i].n_segments);
	}
	free(cs->claims);
	free(cs->ptrs);
	free(cs->points);
	free(cs->words);
}

/* Every Transfer/Cap pair we know of the channel (Claim.segments), the durable ones: a Cap
 * waiting for its commit is not sent anywhere yet. */
static bool add_segments(struct merchant *m, Micropay__V1__Claim *cl)
{
	const struct channel *ch = channel_find(&m->channels, cl->channel_id.data);
	if (!ch)
		return true; /* a handed-off epoch of a channel no longer in memory: none known */
	uint32_t durable = ch->seg_seq - (ch->cap_pending ? 1 : 0);
	if (segment_stmts(ch, 1, durable, &cl->segments, &cl->n_segments))
		return true;
	log_err("redeem: cannot read a channel's Transfer/Cap pairs");
	return false;
}

/* Our complete custody record for the channel (protocol.md section 6, "Redemption"): every
 * Handoff we received and every Handoff we signed, in hseq order, then the Close we signed if
 * we closed the channel (close.c: durable once close_pending is clear), which ends our last
 * epoch (brokerd/close_verify.h). */
static bool add_custody(struct merchant *m, Micropay__V1__Claim *cl)
{
	struct custody_blob *chain;
	size_t n;
	if (!custody_store_chain(m->store, cl->channel_id.data, &chain, &n))
		return false;
	const struct channel *ch = channel_find(&m->channels, cl->channel_id.data);
	bool closed = ch && ch->close && !ch->close_pending;
	bool ok =
	    n + closed == 0 || (cl->custody = calloc(n + closed, sizeof(*cl->custody))) != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		cl->custody[i] = mp_stmt_decode(chain[i].data, chain[i].len);
		ok = cl->custody[i] != NULL;
		cl->n_custody += ok;
	}
	custody_blobs_free(chain, n);
	if (ok && closed) {
		cl->custody[n] = mp_stmt_decode(ch->close, ch->close_len);
		ok = cl->custody[n] != NULL;
		cl->n_custody += ok;
	}
	if (!ok)
		log_err("redeem: cannot read a channel's custody record");
	return ok;
}

static void set_add(struct claim_set *cs, const uint8_t *channel_id, uint32_t hseq,
		    uint32_t seg_seq, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	size_t i = cs->n++;
	micropay__v1__claim__init(&cs->claims[i]);
	memcpy(cs->words[i], w, MP_HASH_LEN);
	cs->claims[i].channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)channel_id};
	cs->claims[i].hseq_in = hseq;
	cs->points[i] = (MpPoint)MICROPAY__V1__POINT__INIT;
	cs->points[i].seg_seq = seg_seq;
	cs->points[i].index = index;
	cs->points[i].w = (ProtobufCBinaryData){MP_HASH_LEN, cs->words[i]};
	cs->claims[i].point = &cs->points[i];
	cs->ptrs[i] = &cs->claims[i];
}

/* The set as a Redeem body under a fresh redeem_id, serialised (the redeemer signs it on a
 * worker thread, never here on the loop). */
static bool seal(struct merchant *m, const struct claim_set *cs, struct outbox_item *out)
{
	*out = (struct outbox_item){0};
	for (size_t i = 0; i < cs->n; i++)
		if (!add_custody(m, &cs->claims[i]) || !add_segments(m, &cs->claims[i]))
			return false;
	if (!mp_random_bytes(out->redeem_id, MP_ID_LEN))
		return false;
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, out->redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
	rd.claims = cs->ptrs;
	rd.n_claims = cs->n;
	out->bytes = mp_stmt_pack_body(&rd.base, &out->len);
	if (!out->bytes)
		log_err("redeem: cannot serialise a Redeem of %zu claims", cs->n);
	return out->bytes != NULL;
}

/* The segment of the channel's durable range that holds index target (redeemed_end < target
 * <= durable_last): the lowest segment k whose range (start_k, end_k] contains it, where end_k is
 * the index the Cap k+1 ended it at, or durable_last for the segment of the durable point. Its
 * chain nonce and start, and its highest word we hold: the Cap's w_cap (we signed or verified
 * it), or the durable last word. */
struct seg_view {
	uint32_t seg_seq, start, top;
	const uint8_t *nonce, *top_w;
};

static void segment_at(const struct channel *ch, uint32_t target, struct seg_view *v)
{
	for (uint32_t k = 0;; k++) {
		bool last = k == ch->durable_seg;
		uint32_t end = last ? ch->durable_last : ch->segs[k].start;
		if (target <= end || last) {
			v->seg_seq = k;
			v->start = k ? ch->segs[k - 1].start : 0;
			v->nonce = k ? ch->segs[k - 1].nonce : ch->nonce0;
			v->top = end;
			v->top_w = last ? ch->durable_w : ch->segs[k].w_cap;
			return;
		}
	}
}

/* The chain word at index `target` of the channel, for a claim of part of its unredeemed range
 * (redeemed_end < target < durable_last) when the whole range costs the broker more hashes than
 * one Redeem may. The claim point lies in the segment that holds target (segment_at): after a
 * transfer, the range may span segments.
 *
 * Which words does the merchant hold? The channel row keeps the last accepted word, the journal
 * every accepted Pay (j, w_j) that is not redeemed yet (compaction folds only redeemed ones), and
 * each Cap the point that ended a segment. An earlier Pay's word is a word the customer revealed,
 * and so is every word below a revealed one: w_i = link^(j-i)(w_j) is exactly what the broker
 * computes to verify w_j, so claiming (i, w_i) with i < j states nothing the merchant cannot
 * prove. We take the accepted word of that segment with the smallest index j >= target and hash
 * it down to target. The Pay before it left the channel at an index below target, and a Pay
 * moves at most MAX_JUMP, so this costs fewer than max_jump hashes on the loop, as little as
 * verifying one Pay. If the journal has no such word we start from the segment's highest word;
 * a walk longer than max_jump is not done on the loop: it is handed to the redeemer (*walk
 * filled, false returned with *need_walk), which runs it on a worker thread and seals the step
 * with redeem_build_step. */
static bool step_word(struct merchant *m, const struct channel *ch, uint32_t target,
		      uint32_t *seg_seq, uint8_t w[MP_HASH_LEN], struct step_walk *walk,
		      bool *need_walk)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	struct seg_view v;
	segment_at(ch, target, &v);
	uint32_t j;
	uint8_t wj[MP_HASH_LEN];
	if (!store_word_at_or_above(m->store, ch, v.seg_seq, target, &j, wj) || j > v.top) {
		log_warn("redeem: channel %s: no journalled word at or above %u in segment %u; "
			 "hashing down from its highest (%u)",
			 hex, target, v.seg_seq, v.top);
		j = v.top;
		memcpy(wj, v.top_w, MP_HASH_LEN);
	}
	if (target <= v.start || j < target) {
		log_err("redeem: channel %s: step %u outside segment %u (%u, %u]", hex, target,
			v.seg_seq, v.start, v.top);
		return false;
	}
	*seg_seq = v.seg_seq;
	if (j - target > m->cfg.max_jump) {
		*walk = (struct step_walk){.seg_seq = v.seg_seq,
					   .from = j - v.start,
					   .to = target - v.start,
					   .target = target};
		memcpy(walk->channel_id, ch->id, MP_ID_LEN);
		memcpy(walk->nonce, v.nonce, MP_NONCE_LEN);
		memcpy(walk->w, wj, MP_HASH_LEN);
		log_info("redeem: channel %s: %u hashes down to %u on a worker thread", hex,
			 j - target, target);
		*need_walk = true;
		return false;
	}
	mp_chain_walk(m->hasher, v.nonce, j - v.start, wj, target - v.start, w);
	return true;
}

static void log_step(const struct channel *ch, uint32_t target)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	log_info("redeem: channel %s: claiming %u of (%u, %u] in this step", hex, target,
		 ch->redeemed_end, ch->durable_last);
}

static bool add_step(struct merchant *m, struct claim_set *cs, struct channel *ch, uint32_t target,
		     struct step_walk *walk, bool *need_walk)
{
	uint8_t w[MP_HASH_LEN];
	uint32_t seg_seq;
	if (!step_word(m, ch, target, &seg_seq, w, walk, need_walk))
		return false;
	set_add(cs, ch->id, ch->hseq, seg_seq, target, w);
	log_step(ch, target);
	return true;
}

/* A point at the base of its segment s > 0 (index = the Cap's index, word = the segment's root)
 * is no payword of segment s: the broker takes a claim only strictly inside its segment
 * (docs/transfer.md, "Segments and indices"), and answers OUT_OF_RANGE "index outside its
 * segment" for ever. Such a point is where a Transfer left the channel when nothing was paid in
 * the new segment since (the durable point after the Cap, a Handoff or Close signed right after
 * it). The same units are proven by the Cap's point (s-1, cap_index, w_cap), which the holder
 * signed or verified: step back until the point lies inside its segment (several Caps can sit
 * at one index). */
static void claim_point_inside(const struct channel *ch, uint32_t *seg_seq, uint32_t index,
			       const uint8_t **w)
{
	while (ch && *seg_seq > 0 && *seg_seq <= ch->seg_seq &&
	       ch->segs[*seg_seq - 1].start == index) {
		*w = ch->segs[*seg_seq - 1].w_cap;
		(*seg_seq)--;
	}
}

/* Once per pass, after the channel table: the epochs we held and handed off with points above
 * what the broker credited, as far as the claim set has room. */
static void fill_epochs(struct merchant *m, struct redeem_pass *pass, struct claim_set *cs,
			struct held_epoch **epochs)
{
	if (pass->epochs_done || cs->n == cs->cap || pass->bucket < m->channels.nbuckets)
		return;
	int n = custody_store_unredeemed_epochs(m->store, cs->cap - cs->n, epochs);
	if (n < 0)
		return; /* logged; the next round asks again */
	pass->epochs_done = true;
	for (int i = 0; i < n; i++) {
		const struct held_epoch *e = &(*epochs)[i];
		if (redeem_deadline_is_too_late(m, e->channel_id, e->hseq))
			continue; /* the broker finalised the channel: never again */
		uint32_t seg_seq = e->seg_seq;
		const uint8_t *w = e->w_end;
		claim_point_inside(channel_find(&m->channels, e->channel_id), &seg_seq,
				   e->end_index, &w);
		set_add(cs, e->channel_id, e->hseq, seg_seq, e->end_index, w);
	}
}

/* Claims from the pass's bucket on, until the claim or hash budget is full. */
static void fill(struct merchant *m, struct redeem_pass *pass, const struct redeem_limits *lim,
		 struct claim_set *cs, unsigned *steps, struct step_walk *walk, bool *need_walk)
{
	struct table *t = &m->channels;
	uint64_t cost = 0;
	for (; pass->bucket < t->nbuckets; pass->bucket++) {
		for (struct channel *ch = t->buckets[pass->bucket]; ch; ch = ch->next) {
			if (ch->redeem_pass == pass->number || ch->state != CHANNEL_HELD ||
			    ch->too_late || redeem_deadline_is_too_late(m, ch->id, ch->hseq) ||
			    !ch->recorded || ch->cap_pending ||
			    ch->durable_last <= ch->redeemed_end)
				continue;
			uint64_t need = ch->durable_last - ch->redeemed_end;
			if (cost + need <= lim->budget) {
				uint32_t seg_seq = ch->durable_seg;
				const uint8_t *w = ch->durable_w;
				claim_point_inside(ch, &seg_seq, ch->durable_last, &w);
				set_add(cs, ch->id, ch->hseq, seg_seq, ch->durable_last, w);
				redeem_lag_claimed(ch);
				cost += need;
			} else if (cs->n > 0) {
				return; /* the next Redeem takes it */
			} else if (add_step(m, cs, ch, ch->redeemed_end + (uint32_t)lim->budget,
					    walk, need_walk)) {
				(*steps)++;
				cost = lim->budget;
			} else if (*need_walk) {
				return; /* claimed once the walk is done (redeem_build_step) */
			}
			ch->redeem_pass = pass->number;
			if (cs->n == cs->cap || cost >= lim->budget)
				return; /* this bucket again next time: the marks skip what is done
					 */
		}
	}
}

enum build_result redeem_build_next(struct merchant *m, struct redeem_pass *pass,
				    const struct redeem_limits *lim, struct outbox_item *out,
				    unsigned *steps, struct step_walk *walk)
{
	size_t cap = lim->max_claims < m->channels.count ? lim->max_claims : m->channels.count;
	struct claim_set cs;
	if (cap == 0)
		return BUILD_NOTHING_LEFT;
	if (!set_init(&cs, cap)) {
		set_free(&cs);
		return BUILD_FAILED;
	}
	struct held_epoch *epochs = NULL;
	bool need_walk = false;
	*out = (struct outbox_item){0};
	fill(m, pass, lim, &cs, steps, walk, &need_walk);
	if (!need_walk)
		fill_epochs(m, pass, &cs, &epochs);
	enum build_result res = need_walk ? BUILD_WALK : BUILD_NOTHING_LEFT;
	if (!need_walk && cs.n > 0)
		res = seal(m, &cs, out) ? BUILD_SEALED : BUILD_FAILED;
	if (res == BUILD_FAILED) {
		free(out->bytes);
		out->bytes = NULL;
	}
	set_free(&cs);
	free(epochs);
	return res;
}

enum build_result redeem_build_step(struct merchant *m, struct redeem_pass *pass,
				    const struct step_walk *walk, struct outbox_item *out)
{
	*out = (struct outbox_item){0};
	struct channel *ch = channel_find(&m->channels, walk->channel_id);
	if (ch)
		ch->redeem_pass = pass->number; /* claimed in this pass, or not at all */
	if (!ch || ch->durable_seg < walk->seg_seq || walk->target <= ch->redeemed_end ||
	    walk->target > ch->durable_last) {
		log_info("redeem: a step walked on a worker is no longer needed (the channel "
			 "moved on)");
		return BUILD_NOTHING_LEFT;
	}
	struct claim_set cs;
	if (!set_init(&cs, 1)) {
		set_free(&cs);
		return BUILD_FAILED;
	}
	set_add(&cs, ch->id, ch->hseq, walk->seg_seq, walk->target, walk->w);
	log_step(ch, walk->target);
	enum build_result res = seal(m, &cs, out) ? BUILD_SEALED : BUILD_FAILED;
	if (res == BUILD_FAILED) {
		free(out->bytes);
		out->bytes = NULL;
	}
	set_free(&cs);
	return res;
}

#define WALK_CHUNK (1u << 20) /* hashes between looks at the stop flag */

void redeem_step_walk(struct step_walk *w, const atomic_bool *stop)
{
	struct mp_hasher *h = mp_hasher_new();
	if (!h)
		return; /* w->done stays false */
	while (w->from > w->to && !atomic_load(stop)) {
		uint32_t next = w->from - w->to > WALK_CHUNK ? w->from - WALK_CHUNK : w->to;
		mp_chain_walk(h, w->nonce, w->from, w->w, next, w->w);
		w->from = next;
	}
	w->done = w->from == w->to;
	mp_hasher_free(h);
}

bool redeem_limits_shrink(struct merchant *m, const Micropay__V1__Redeem *body,
			  struct redeem_limits *lim)
{
	size_t k = body->n_claims;
	if (k > 1) {
		/* Too many claims or too many hashes: either way, half as many claims. */
		uint32_t half_up = (uint32_t)((k + 1) / 2);
		if (lim->max_claims > half_up)
			lim->max_claims = half_up;
		return true;
	}
	const Micropay__V1__Claim *c = k == 1 ? body->claims[0] : NULL;
	struct channel *ch = c && mp_bytes_len_is(c->channel_id, MP_ID_LEN)
				 ? channel_find(&m->channels, c->channel_id.data)
				 : NULL;
	if (!ch || !c->point || c->point->index <= ch->redeemed_end + 1)
		return false; /* a claim of one hash or none: the LIMIT is not about its size */
	uint64_t cost = c->point->index - ch->redeemed_end;
	if (lim->budget > cost / 2)
		lim->budget = cost / 2; /* the channel is redeemed in steps of at most this */
	return true;
}
