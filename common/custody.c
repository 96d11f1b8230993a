#include "custody.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "custody_internal.h"
#include "pb_peek.h"
#include "stmt.h"

/* Hashes walked between two looks at the stop flag: about 10 ms. */
#define WALK_CHUNK 65536

const char *mp_custody_rule_name(enum mp_custody_rule rule)
{
	switch (rule) {
	case MP_CUSTODY_OK:
		return "ok";
	case MP_CUSTODY_TOO_MANY:
		return "too_many";
	case MP_CUSTODY_BAD_CHANNEL:
		return "bad_channel";
	case MP_CUSTODY_SIGNER_UNKNOWN:
		return "signer_unknown";
	case MP_CUSTODY_TYPE:
		return "type";
	case MP_CUSTODY_SIGNER:
		return "signer";
	case MP_CUSTODY_SIGNATURE:
		return "signature";
	case MP_CUSTODY_MALFORMED:
		return "malformed";
	case MP_CUSTODY_CHANNEL:
		return "channel";
	case MP_CUSTODY_HSEQ:
		return "hseq";
	case MP_CUSTODY_PREV_HASH:
		return "prev_hash";
	case MP_CUSTODY_FROM_MID:
		return "from_mid";
	case MP_CUSTODY_SELF_HANDOFF:
		return "self_handoff";
	case MP_CUSTODY_SEGMENTS_HEAD:
		return "segments_head";
	case MP_CUSTODY_OUT_OF_RANGE:
		return "out_of_range";
	case MP_CUSTODY_INDEX_BACKWARDS:
		return "index_backwards";
	case MP_CUSTODY_EXHAUSTED:
		return "exhausted";
	case MP_CUSTODY_W_AT:
		return "w_at";
	case MP_CUSTODY_STOPPED:
		return "stopped";
	case MP_CUSTODY_SEGMENTS_ODD:
		return "segments_odd";
	case MP_CUSTODY_SEG_SEQ:
		return "seg_seq";
	case MP_CUSTODY_PREV_SEG_HASH:
		return "prev_seg_hash";
	case MP_CUSTODY_CAP_LINK:
		return "cap_link";
	case MP_CUSTODY_CAP_EPOCH:
		return "cap_epoch";
	case MP_CUSTODY_CAP_RANGE:
		return "cap_range";
	case MP_CUSTODY_TRANSFER_SHORT:
		return "transfer_short";
	case MP_CUSTODY_W_CAP:
		return "w_cap";
	case MP_CUSTODY_SEGMENT_ORDER:
		return "segment_order";
	}
	return "?";
}

MpCode mp_custody_rule_code(enum mp_custody_rule rule)
{
	switch (rule) {
	case MP_CUSTODY_OK:
		return MP_ST(OK);
	case MP_CUSTODY_TOO_MANY:
		return MP_ST(LIMIT);
	case MP_CUSTODY_BAD_CHANNEL:
	case MP_CUSTODY_STOPPED:
		return MP_ST(INTERNAL);
	case MP_CUSTODY_SIGNER_UNKNOWN:
	case MP_CUSTODY_TYPE:
	case MP_CUSTODY_SIGNER:
	case MP_CUSTODY_SIGNATURE:
		return MP_ST(BAD_SIG);
	case MP_CUSTODY_MALFORMED:
	case MP_CUSTODY_CHANNEL:
	case MP_CUSTODY_HSEQ:
	case MP_CUSTODY_PREV_HASH:
	case MP_CUSTODY_FROM_MID:
	case MP_CUSTODY_SELF_HANDOFF:
	case MP_CUSTODY_SEGMENTS_HEAD:
	case MP_CUSTODY_SEGMENTS_ODD:
	case MP_CUSTODY_SEG_SEQ:
	case MP_CUSTODY_PREV_SEG_HASH:
	case MP_CUSTODY_CAP_LINK:
	case MP_CUSTODY_SEGMENT_ORDER:
		return MP_ST(MALFORMED);
	case MP_CUSTODY_CAP_EPOCH:
		return MP_ST(NOT_HOLDER);
	case MP_CUSTODY_CAP_RANGE:
	case MP_CUSTODY_TRANSFER_SHORT:
		return MP_ST(OUT_OF_RANGE);
	case MP_CUSTODY_W_CAP:
		return MP_ST(BAD_CHAIN);
	case MP_CUSTODY_OUT_OF_RANGE:
	case MP_CUSTODY_INDEX_BACKWARDS:
	case MP_CUSTODY_EXHAUSTED:
		return MP_ST(OUT_OF_RANGE);
	case MP_CUSTODY_W_AT:
		return MP_ST(BAD_CHAIN);
	}
	return MP_ST(INTERNAL);
}

uint32_t mp_custody_segment_end(const struct mp_custody_segment *seg, uint32_t n)
{
	if (seg->capped)
		return seg->cap_index;
	uint64_t end = (uint64_t)seg->start + seg->len;
	return end < n ? (uint32_t)end : n;
}

void custody_bounds_add(struct bounds *b, const struct mp_custody_segment *seg,
			const struct mp_custody_point *p)
{
	if (p->seg_seq != seg->seg_seq || p->index < seg->start || p->index - seg->start > seg->len)
		return;
	if (p->index <= b->index && (!b->has_lo || p->index > b->lo))
		b->has_lo = true, b->lo = p->index, b->w_lo = p->w;
	if (p->index >= b->index && (!b->has_hi || p->index < b->hi))
		b->has_hi = true, b->hi = p->index, b->w_hi = p->w;
}

/* x := w_hi hashed down from hi to lo (chain-relative), looking at *stop between chunks. */
static bool walk(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t lo, uint32_t hi,
		 const uint8_t w_hi[MP_HASH_LEN], const atomic_bool *stop, uint8_t x[MP_HASH_LEN])
{
	memcpy(x, w_hi, MP_HASH_LEN);
	for (uint32_t k = hi; k > lo;) {
		uint32_t step = k - lo < WALK_CHUNK ? k - lo : WALK_CHUNK;
		mp_chain_walk(h, nonce, k, x, k - step, x);
		k -= step;
		if (stop && atomic_load(stop))
			return false;
	}
	return true;
}

/* Verify pt against the bounds found (the root is always among them). */
enum mp_point_verdict custody_verify_bounded(const struct mp_custody_segment *seg,
					     const struct bounds *b,
					     const struct mp_custody_point *pt, struct mp_hasher *h,
					     const atomic_bool *stop, uint64_t *cost)
{
	uint32_t c = seg->start, j = pt->index;
	uint8_t x[MP_HASH_LEN];
	const uint8_t *want;
	if (b->has_hi && (b->hi == j || !b->has_lo || b->hi - j < j - b->lo)) {
		/* a verified point above (or at) the claim: hash it down to the claim */
		*cost = b->hi - j;
		if (!walk(h, seg->nonce, j - c, b->hi - c, b->w_hi, stop, x))
			return MP_POINT_STOPPED;
		want = pt->w;
	} else {
		*cost = j - b->lo;
		if (!walk(h, seg->nonce, b->lo - c, j - c, pt->w, stop, x))
			return MP_POINT_STOPPED;
		want = b->w_lo;
	}
	return CRYPTO_memcmp(x, want, MP_HASH_LEN) == 0 ? MP_POINT_VALID : MP_POINT_INVALID;
}

/* The segment's base point (start, root) is always the first bound below; pt->index must lie
 * in the segment. */
void custody_bounds_init(struct bounds *b, const struct mp_custody_segment *seg,
			 const struct mp_custody_point *pt)
{
	*b = (struct bounds){
	    .index = pt->index, .has_lo = true, .lo = seg->start, .w_lo = seg->root};
	if (pt->index == seg->start)
		b->has_hi = true, b->hi = seg->start, b->w_hi = seg->root;
}

enum mp_point_verdict mp_custody_point_verify(const struct mp_custody_segment *seg,
					      const struct mp_custody_point *verified,
					      size_t n_verified, const struct mp_custody_point *pt,
					      struct mp_hasher *h, const atomic_bool *stop,
					      uint64_t *cost)
{
	uint64_t spent = 0;
	if (!cost)
		cost = &spent;
	*cost = 0;
	if (pt->seg_seq != seg->seg_seq || pt->index < seg->start ||
	    pt->index - seg->start > seg->len || (seg->capped && pt->index > seg->cap_index))
		return MP_POINT_INVALID;
	struct bounds b;
	custody_bounds_init(&b, seg, pt);
	for (size_t i = 0; i < n_verified; i++)
		custody_bounds_add(&b, seg, &verified[i]);
	return custody_verify_bounded(seg, &b, pt, h, stop, cost);
}

/* ---- one Handoff ---- */

enum mp_custody_rule custody_fail(struct mp_custody_result *res, enum mp_custody_rule rule,
				  uint32_t hseq, const char *fmt, ...)
{
	res->rule = rule;
	res->hseq = hseq;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
	va_end(ap);
	return rule;
}

/* Signer, type, key, signature, then the strict parse (mp_stmt_open). */
static enum mp_custody_rule open_handoff(struct verifier *v, const MpSigned *s, uint32_t h,
					 Micropay__V1__Handoff **out)
{
	const struct mp_custody_event *prev = &v->events[h - 1];
	char mid[MP_HEX_ID_LEN + 1];
	mp_hex_encode(prev->merchant_id, MP_ID_LEN, mid);
	uint8_t pk[MP_PK_LEN];
	if (!v->key(v->key_arg, prev->merchant_id, v->ch->key_valid_until, pk))
		return custody_fail(
		    v->res, MP_CUSTODY_SIGNER_UNKNOWN, h,
		    "handoff %u: no MerchantCert of expected signer %s valid until %llu", h, mid,
		    (unsigned long long)v->ch->key_valid_until);
	if (!s || s->type != MP_STMT_HANDOFF)
		return custody_fail(v->res, MP_CUSTODY_TYPE, h,
				    "handoff %u: statement type %u, not 6", h,
				    s ? (unsigned)s->type : 0u);
	if (!mp_bytes_len_is(s->signer_pk, MP_PK_LEN) ||
	    CRYPTO_memcmp(s->signer_pk.data, pk, MP_PK_LEN) != 0)
		return custody_fail(v->res, MP_CUSTODY_SIGNER, h,
				    "handoff %u: signer_pk is not the key of merchant %s", h, mid);
	ProtobufCMessage *body = NULL;
	MpCode code =
	    mp_stmt_open(s, MP_STMT_HANDOFF, pk, &micropay__v1__handoff__descriptor, &body);
	if (code == MP_ST(BAD_SIG))
		return custody_fail(v->res, MP_CUSTODY_SIGNATURE, h,
				    "handoff %u: signature of merchant %s does not verify", h, mid);
	if (code != MP_ST(OK))
		return custody_fail(v->res, MP_CUSTODY_MALFORMED, h,
				    "handoff %u: body is not a strict Handoff", h);
	*out = (Micropay__V1__Handoff *)body;
	return MP_CUSTODY_OK;
}

static bool lengths_ok(const Micropay__V1__Handoff *m)
{
	return mp_bytes_len_is(m->channel_id, MP_ID_LEN) &&
	       mp_bytes_len_is(m->from_mid, MP_ID_LEN) && mp_bytes_len_is(m->to_mid, MP_ID_LEN) &&
	       m->point && mp_bytes_len_is(m->point->w, MP_HASH_LEN) &&
	       mp_bytes_len_is(m->segments_head, MP_HASH_LEN) &&
	       mp_bytes_len_is(m->prev_handoff_hash, MP_HASH_LEN) &&
	       mp_bytes_len_is(m->move_hash, MP_HASH_LEN);
}

/* The rules that need no hashing: lengths, links, merchants, segment, indices. */
static enum mp_custody_rule check_fields(struct verifier *v, const Micropay__V1__Handoff *m,
					 uint32_t h, const struct mp_custody_segment **seg_out)
{
	const struct mp_custody_channel *ch = v->ch;
	const struct mp_custody_event *prev = &v->events[h - 1];
	if (!lengths_ok(m))
		return custody_fail(v->res, MP_CUSTODY_MALFORMED, h,
				    "handoff %u: a field is missing or of the wrong length", h);
	if (memcmp(m->channel_id.data, ch->channel_id, MP_ID_LEN) != 0)
		return custody_fail(v->res, MP_CUSTODY_CHANNEL, h,
				    "handoff %u: names another channel", h);
	if (m->hseq != h)
		return custody_fail(v->res, MP_CUSTODY_HSEQ, h, "handoff %u: carries hseq %u", h,
				    m->hseq);
	if (memcmp(m->prev_handoff_hash.data, prev->stmt_hash, MP_HASH_LEN) != 0)
		return custody_fail(v->res, MP_CUSTODY_PREV_HASH, h,
				    "handoff %u: prev_handoff_hash does not link to event %u", h,
				    h - 1);
	if (memcmp(m->from_mid.data, prev->merchant_id, MP_ID_LEN) != 0)
		return custody_fail(v->res, MP_CUSTODY_FROM_MID, h,
				    "handoff %u: from_mid is not the holder of epoch %u", h, h - 1);
	if (memcmp(m->to_mid.data, m->from_mid.data, MP_ID_LEN) == 0)
		return custody_fail(v->res, MP_CUSTODY_SELF_HANDOFF, h,
				    "handoff %u: hands off to itself", h);
	const MpPoint *p = m->point;
	const struct mp_custody_segment *seg = &v->segs[v->n_segs - 1];
	if (p->seg_seq != seg->seg_seq)
		return custody_fail(v->res, MP_CUSTODY_SEGMENT_ORDER, h,
				    "handoff %u: point in segment %u, the latest is %u", h,
				    p->seg_seq, seg->seg_seq);
	if (memcmp(m->segments_head.data, seg->head, MP_HASH_LEN) != 0)
		return custody_fail(v->res, MP_CUSTODY_SEGMENTS_HEAD, h,
				    "handoff %u: segments_head is not the head of segment %u", h,
				    p->seg_seq);
	if (p->index < seg->start || p->index > ch->n)
		return custody_fail(v->res, MP_CUSTODY_OUT_OF_RANGE, h,
				    "handoff %u: at_index %u outside [%u, %u]", h, p->index,
				    seg->start, ch->n);
	if (p->index < prev->point.index)
		return custody_fail(v->res, MP_CUSTODY_INDEX_BACKWARDS, h,
				    "handoff %u: at_index %u below event %u's index %u", h,
				    p->index, h - 1, prev->point.index);
	if (p->index == ch->n)
		return custody_fail(v->res, MP_CUSTODY_EXHAUSTED, h,
				    "handoff %u: at_index %u = n: the channel is exhausted", h,
				    p->index);
	*seg_out = seg;
	return MP_CUSTODY_OK;
}

/* w_at from the nearest of the root, the caller's known points and earlier events' points. */
static enum mp_custody_rule check_w_at(struct verifier *v, const struct mp_custody_segment *seg,
				       const struct mp_custody_point *pt, uint32_t h)
{
	struct bounds b;
	custody_bounds_init(&b, seg, pt);
	for (size_t i = 0; i < v->ch->n_known; i++)
		custody_bounds_add(&b, seg, &v->ch->known[i]);
	for (uint32_t e = 1; e < h; e++)
		custody_bounds_add(&b, seg, &v->events[e].point);
	for (size_t c = 0; c + 1 < v->n_segs; c++)
		custody_bounds_add(&b, seg, &v->caps[c].point);
	uint64_t cost;
	switch (custody_verify_bounded(seg, &b, pt, v->h, v->stop, &cost)) {
	case MP_POINT_VALID:
		return MP_CUSTODY_OK;
	case MP_POINT_INVALID:
		return custody_fail(v->res, MP_CUSTODY_W_AT, h,
				    "handoff %u: w_at at index %u does not verify in segment %u", h,
				    pt->index, pt->seg_seq);
	case MP_POINT_STOPPED:
		return custody_fail(v->res, MP_CUSTODY_STOPPED, h,
				    "handoff %u: stopped while hashing", h);
	}
	return custody_fail(v->res, MP_CUSTODY_STOPPED, h, "handoff %u: no verdict", h);
}

static enum mp_custody_rule verify_one(struct verifier *v, const MpSigned *s, uint32_t h)
{
	Micropay__V1__Handoff *m = NULL;
	enum mp_custody_rule rule = open_handoff(v, s, h, &m);
	const struct mp_custody_segment *seg = NULL;
	if (rule == MP_CUSTODY_OK)
		rule = check_fields(v, m, h, &seg);
	struct mp_custody_event *ev = &v->events[h];
	if (rule == MP_CUSTODY_OK) {
		*ev = (struct mp_custody_event){.hseq = h};
		memcpy(ev->merchant_id, m->to_mid.data, MP_ID_LEN);
		ev->point.seg_seq = m->point->seg_seq;
		ev->point.index = m->point->index;
		memcpy(ev->point.w, m->point->w.data, MP_HASH_LEN);
		mp_stmt_hash(s, ev->stmt_hash);
		rule = check_w_at(v, seg, &ev->point, h);
	}
	if (m)
		protobuf_c_message_free_unpacked(&m->base, NULL);
	return rule;
}

static enum mp_custody_rule check_channel(const struct mp_custody_channel *ch,
					  struct mp_custody_result *res)
{
	const struct mp_custody_segment *s0 = ch->n_segments ? &ch->segments[0] : NULL;
	if (!s0 || s0->seg_seq != 0 || s0->start != 0 || s0->len != ch->n || ch->n == 0)
		return custody_fail(
		    res, MP_CUSTODY_BAD_CHANNEL, 0,
		    "channel description: segment 0 must come first with start 0, len n");
	if (memcmp(s0->head, ch->cert_hash, MP_HASH_LEN) != 0)
		return custody_fail(res, MP_CUSTODY_BAD_CHANNEL, 0,
				    "channel description: segment 0's head must be the cert hash");
	return MP_CUSTODY_OK;
}

/* Verify the pairs whose Cap was signed in an epoch up to last_epoch. */
static enum mp_custody_rule verify_pairs_upto(struct verifier *v,
					      const struct mp_custody_evidence *ev, size_t *next,
					      uint32_t last_epoch)
{
	while (*next < ev->n_segment_stmts / 2) {
		uint64_t g;
		const MpSigned *cap = ev->segment_stmts[2 * *next + 1];
		if (!cap || !mp_pb_peek_uint(cap->body.data, cap->body.len, 4, &g))
			return custody_segment_fail(v, MP_CUSTODY_MALFORMED, (uint32_t)*next + 1,
						    "cap %zu: body is not a protobuf message",
						    *next + 1);
		if (g > last_epoch)
			return MP_CUSTODY_OK;
		if (custody_verify_pair(v, ev->segment_stmts[2 * *next], cap, (uint32_t)g) !=
		    MP_CUSTODY_OK)
			return v->res->rule;
		(*next)++;
	}
	return MP_CUSTODY_OK;
}

static void segment0_init(const struct mp_custody_channel *ch, struct mp_custody_segment *segs,
			  struct mp_custody_event *events)
{
	segs[0] = ch->segments[0];
	segs[0].capped = false;
	events[0] = (struct mp_custody_event){.hseq = 0};
	memcpy(events[0].merchant_id, ch->holder0, MP_ID_LEN);
	memcpy(events[0].point.w, ch->segments[0].root, MP_HASH_LEN);
	memcpy(events[0].stmt_hash, ch->bound ? ch->bind_hash : ch->cert_hash, MP_HASH_LEN);
}

/* Handoff h follows the pairs capped in epochs up to h-1; pairs capped in the last epoch
 * follow the last Handoff. */
enum mp_custody_rule
mp_custody_verify_all(const struct mp_custody_channel *ch, const struct mp_custody_evidence *ev,
		      mp_custody_key_fn key, void *key_arg, struct mp_hasher *h,
		      const atomic_bool *stop, struct mp_custody_event *events,
		      struct mp_custody_segment *segments, struct mp_custody_cap *caps,
		      struct mp_custody_result *res)
{
	*res = (struct mp_custody_result){.rule = MP_CUSTODY_OK};
	if (ev->n_handoffs > MP_MAX_HANDOFFS)
		return custody_fail(res, MP_CUSTODY_TOO_MANY, MP_MAX_HANDOFFS + 1,
				    "%zu handoffs, at most %d", ev->n_handoffs, MP_MAX_HANDOFFS);
	if (ev->n_segment_stmts % 2)
		return custody_fail(res, MP_CUSTODY_SEGMENTS_ODD, 0,
				    "%zu segment statements: not Transfer/Cap pairs",
				    ev->n_segment_stmts);
	if (ev->n_segment_stmts / 2 > MP_MAX_SEGMENTS - 1)
		return custody_fail(res, MP_CUSTODY_TOO_MANY, 0, "%zu transfers, at most %d",
				    ev->n_segment_stmts / 2, MP_MAX_SEGMENTS - 1);
	if (check_channel(ch, res) != MP_CUSTODY_OK)
		return res->rule;
	segment0_init(ch, segments, events);
	struct verifier v = {ch, key, key_arg, h, stop, events, 1, res, segments, 1, caps};
	size_t next = 0;
	for (size_t i = 0; i < ev->n_handoffs; i++) {
		if (verify_pairs_upto(&v, ev, &next, (uint32_t)i) != MP_CUSTODY_OK ||
		    verify_one(&v, ev->handoffs[i], (uint32_t)(i + 1)) != MP_CUSTODY_OK)
			return res->rule;
		v.n_events = (uint32_t)i + 2;
	}
	if (verify_pairs_upto(&v, ev, &next, (uint32_t)ev->n_handoffs) != MP_CUSTODY_OK)
		return res->rule;
	if (next < ev->n_segment_stmts / 2)
		return custody_segment_fail(&v, MP_CUSTODY_CAP_EPOCH, (uint32_t)next + 1,
					    "cap %zu: signed in an epoch after the last of %zu "
					    "handoffs",
					    next + 1, ev->n_handoffs);
	snprintf(res->detail, sizeof(res->detail), "%zu handoffs and %zu transfers verified",
		 ev->n_handoffs, next);
	return MP_CUSTODY_OK;
}

enum mp_custody_rule mp_custody_verify(const struct mp_custody_channel *ch,
				       MpSigned *const *handoffs, size_t n_handoffs,
				       mp_custody_key_fn key, void *key_arg, struct mp_hasher *h,
				       const atomic_bool *stop, struct mp_custody_event *events,
				       struct mp_custody_result *res)
{
	struct mp_custody_evidence ev = {.handoffs = handoffs, .n_handoffs = n_handoffs};
	struct mp_custody_segment segs[1];
	return mp_custody_verify_all(ch, &ev, key, key_arg, h, stop, events, segs, NULL, res);
}
