/* Transfer/Cap pairs of a custody chain (protocol.md sections 4 and 6, "Customer-to-customer
 * transfer"; docs/transfer.md). Segment s >= 1 exists once Transfer s, signed by the owner of
 * segment s-1, and the Cap that ends segment s-1, signed by the holder of the epoch it names,
 * both verify. Every key is derived from verified state: the owner key from the cert or the
 * verified Transfer s-1, the holder's key from the MerchantCert lookup for event g. */
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "custody_internal.h"
#include "stmt.h"

enum mp_custody_rule custody_segment_fail(struct verifier *v, enum mp_custody_rule rule,
					  uint32_t seg_seq, const char *fmt, ...)
{
	v->res->rule = rule;
	v->res->hseq = 0;
	v->res->seg_seq = seg_seq;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->res->detail, sizeof(v->res->detail), fmt, ap);
	va_end(ap);
	return rule;
}

/* type -> signer_pk -> signature -> strict parse, for a statement of an expected key. */
static enum mp_custody_rule open_stmt(struct verifier *v, const MpSigned *s, uint32_t seg,
				      enum mp_stmt_type type, const uint8_t pk[MP_PK_LEN],
				      const ProtobufCMessageDescriptor *desc,
				      ProtobufCMessage **out)
{
	const char *what = type == MP_STMT_TRANSFER ? "transfer" : "cap";
	if (!s || s->type != type)
		return custody_segment_fail(v, MP_CUSTODY_TYPE, seg, "%s %u: statement type %u",
					    what, seg, s ? (unsigned)s->type : 0u);
	if (!mp_bytes_len_is(s->signer_pk, MP_PK_LEN) ||
	    CRYPTO_memcmp(s->signer_pk.data, pk, MP_PK_LEN) != 0)
		return custody_segment_fail(v, MP_CUSTODY_SIGNER, seg,
					    "%s %u: signer_pk is not the expected key", what, seg);
	MpCode code = mp_stmt_open(s, type, pk, desc, out);
	if (code == MP_ST(BAD_SIG))
		return custody_segment_fail(v, MP_CUSTODY_SIGNATURE, seg,
					    "%s %u: signature does not verify", what, seg);
	if (code != MP_ST(OK))
		return custody_segment_fail(v, MP_CUSTODY_MALFORMED, seg,
					    "%s %u: body is not a strict statement", what, seg);
	return MP_CUSTODY_OK;
}

static bool transfer_lengths_ok(const Micropay__V1__Transfer *t)
{
	return mp_bytes_len_is(t->channel_id, MP_ID_LEN) &&
	       mp_bytes_len_is(t->to_owner_pk, MP_PK_LEN) &&
	       mp_bytes_len_is(t->new_nonce, MP_NONCE_LEN) &&
	       mp_bytes_len_is(t->new_root, MP_HASH_LEN) &&
	       mp_bytes_len_is(t->prev_seg_hash, MP_HASH_LEN) && t->new_len >= 1;
}

static enum mp_custody_rule check_transfer(struct verifier *v, const Micropay__V1__Transfer *t,
					   uint32_t s)
{
	const struct mp_custody_segment *prev = &v->segs[s - 1];
	if (!transfer_lengths_ok(t))
		return custody_segment_fail(
		    v, MP_CUSTODY_MALFORMED, s,
		    "transfer %u: a field is missing or of the wrong length", s);
	if (memcmp(t->channel_id.data, v->ch->channel_id, MP_ID_LEN) != 0)
		return custody_segment_fail(v, MP_CUSTODY_CHANNEL, s,
					    "transfer %u: names another channel", s);
	if (t->new_seg_seq != s)
		return custody_segment_fail(v, MP_CUSTODY_SEG_SEQ, s,
					    "transfer %u: carries new_seg_seq %u", s,
					    t->new_seg_seq);
	if (memcmp(t->prev_seg_hash.data, prev->head, MP_HASH_LEN) != 0)
		return custody_segment_fail(
		    v, MP_CUSTODY_PREV_SEG_HASH, s,
		    "transfer %u: prev_seg_hash is not the head of segment %u", s, s - 1);
	return MP_CUSTODY_OK;
}

static bool cap_lengths_ok(const Micropay__V1__Cap *c)
{
	return mp_bytes_len_is(c->channel_id, MP_ID_LEN) &&
	       mp_bytes_len_is(c->transfer_hash, MP_HASH_LEN) && c->point &&
	       mp_bytes_len_is(c->point->w, MP_HASH_LEN);
}

/* Links to Transfer s and epoch g; the point's segment. */
static enum mp_custody_rule check_cap_links(struct verifier *v, const Micropay__V1__Cap *c,
					    const Micropay__V1__Transfer *t,
					    const uint8_t transfer_hash[MP_HASH_LEN], uint32_t s,
					    uint32_t g)
{
	if (!cap_lengths_ok(c))
		return custody_segment_fail(v, MP_CUSTODY_MALFORMED, s,
					    "cap %u: a field is missing or of the wrong length", s);
	if (memcmp(c->channel_id.data, v->ch->channel_id, MP_ID_LEN) != 0)
		return custody_segment_fail(v, MP_CUSTODY_CHANNEL, s,
					    "cap %u: names another channel", s);
	if (c->new_seg_seq != s || c->point->seg_seq != s - 1)
		return custody_segment_fail(v, MP_CUSTODY_SEG_SEQ, s,
					    "cap %u: new_seg_seq %u, point in segment %u", s,
					    c->new_seg_seq, c->point->seg_seq);
	if (memcmp(c->transfer_hash.data, transfer_hash, MP_HASH_LEN) != 0 ||
	    t->holder_epoch != g || c->hseq != g)
		return custody_segment_fail(v, MP_CUSTODY_CAP_LINK, s,
					    "cap %u: does not link to its Transfer and epoch %u", s,
					    g);
	return MP_CUSTODY_OK;
}

/* The index: within epoch g, segment s-1, below n and declared_last; the new chain reaches n. */
static enum mp_custody_rule check_cap_range(struct verifier *v, const Micropay__V1__Cap *c,
					    const Micropay__V1__Transfer *t, uint32_t s, uint32_t g,
					    uint32_t verified_events)
{
	const struct mp_custody_segment *prev = &v->segs[s - 1];
	uint32_t k = c->point->index, n = v->ch->n;
	uint32_t epoch_start = v->events[g].point.index;
	bool epoch_ended = g + 1 < verified_events;
	if (k < epoch_start || (epoch_ended && k > v->events[g + 1].point.index))
		return custody_segment_fail(v, MP_CUSTODY_CAP_RANGE, s,
					    "cap %u: index %u outside epoch %u", s, k, g);
	if (k < prev->start || k > mp_custody_segment_end(prev, n) || k >= n ||
	    k > t->declared_last)
		return custody_segment_fail(v, MP_CUSTODY_CAP_RANGE, s,
					    "cap %u: index %u outside segment %u, not below n %u, "
					    "or above declared_last %u",
					    s, k, s - 1, n, t->declared_last);
	if ((uint64_t)k + t->new_len < n)
		return custody_segment_fail(v, MP_CUSTODY_TRANSFER_SHORT, s,
					    "transfer %u: cap index %u + new_len %u < n %u", s, k,
					    t->new_len, n);
	return MP_CUSTODY_OK;
}

/* w_cap from the nearest verified point of segment s-1 (its root, the caller's known points,
 * the events' points and earlier caps). */
static enum mp_custody_rule check_w_cap(struct verifier *v, const struct mp_custody_point *pt,
					uint32_t s, uint32_t verified_events)
{
	const struct mp_custody_segment *prev = &v->segs[s - 1];
	struct bounds b;
	custody_bounds_init(&b, prev, pt);
	for (size_t i = 0; i < v->ch->n_known; i++)
		custody_bounds_add(&b, prev, &v->ch->known[i]);
	for (uint32_t e = 1; e < verified_events; e++)
		custody_bounds_add(&b, prev, &v->events[e].point);
	uint64_t cost;
	switch (custody_verify_bounded(prev, &b, pt, v->h, v->stop, &cost)) {
	case MP_POINT_VALID:
		return MP_CUSTODY_OK;
	case MP_POINT_INVALID:
		return custody_segment_fail(
		    v, MP_CUSTODY_W_CAP, s,
		    "cap %u: w_cap at index %u does not verify in segment %u", s, pt->index, s - 1);
	case MP_POINT_STOPPED:
		return custody_segment_fail(v, MP_CUSTODY_STOPPED, s,
					    "cap %u: stopped while hashing", s);
	}
	return custody_segment_fail(v, MP_CUSTODY_STOPPED, s, "cap %u: no verdict", s);
}

/* The new segment and its cap record, once everything verified. */
static void establish(struct verifier *v, const MpSigned *ts, const Micropay__V1__Transfer *t,
		      const MpSigned *cs, const struct mp_custody_point *pt, uint32_t g,
		      bool by_broker)
{
	uint32_t s = (uint32_t)v->n_segs;
	struct mp_custody_segment *prev = &v->segs[s - 1], *seg = &v->segs[s];
	prev->capped = true;
	prev->cap_index = pt->index;
	*seg = (struct mp_custody_segment){.seg_seq = s, .start = pt->index, .len = t->new_len};
	memcpy(seg->nonce, t->new_nonce.data, MP_NONCE_LEN);
	memcpy(seg->root, t->new_root.data, MP_HASH_LEN);
	memcpy(seg->owner_pk, t->to_owner_pk.data, MP_PK_LEN);
	mp_stmt_hash(ts, seg->head);
	struct mp_custody_cap *cap = &v->caps[s - 1];
	*cap = (struct mp_custody_cap){
	    .seg_seq = s, .hseq = g, .point = *pt, .declared_last = t->declared_last};
	cap->by_broker = by_broker;
	if (!by_broker)
		memcpy(cap->holder, v->events[g].merchant_id, MP_ID_LEN);
	memcpy(cap->transfer_hash, seg->head, MP_HASH_LEN);
	mp_stmt_hash(cs, cap->cap_hash);
	v->n_segs++;
}

/* Epoch 0 of a channel issued without holder0: a Cap signed by the broker key (the channel was
 * transferred through the broker before any merchant held it). Both possible signers come
 * from the verifier's state; the statement's key only selects between them. */
static bool broker_capped(const struct verifier *v, const MpSigned *cs, uint32_t g)
{
	return v->ch->issued_unbound && g == 0 && cs && mp_bytes_len_is(cs->signer_pk, MP_PK_LEN) &&
	       CRYPTO_memcmp(cs->signer_pk.data, v->ch->broker_pk, MP_PK_LEN) == 0;
}

static enum mp_custody_rule verify_cap(struct verifier *v, const MpSigned *ts,
				       const Micropay__V1__Transfer *t, const MpSigned *cs,
				       uint32_t g)
{
	uint32_t s = (uint32_t)v->n_segs, verified_events = v->n_events;
	uint8_t pk[MP_PK_LEN];
	bool by_broker = broker_capped(v, cs, g);
	if (by_broker)
		memcpy(pk, v->ch->broker_pk, MP_PK_LEN);
	else if (!v->key(v->key_arg, v->events[g].merchant_id, v->ch->key_valid_until, pk))
		return custody_segment_fail(v, MP_CUSTODY_SIGNER_UNKNOWN, s,
					    "cap %u: no MerchantCert of the holder of epoch %u", s,
					    g);
	ProtobufCMessage *body = NULL;
	if (open_stmt(v, cs, s, MP_STMT_CAP, pk, &micropay__v1__cap__descriptor, &body) !=
	    MP_CUSTODY_OK)
		return v->res->rule;
	Micropay__V1__Cap *c = (Micropay__V1__Cap *)body;
	uint8_t th[MP_HASH_LEN];
	mp_stmt_hash(ts, th);
	enum mp_custody_rule rule = check_cap_links(v, c, t, th, s, g);
	if (rule == MP_CUSTODY_OK)
		rule = check_cap_range(v, c, t, s, g, verified_events);
	if (rule == MP_CUSTODY_OK && by_broker && c->point->index != 0)
		rule = custody_segment_fail(v, MP_CUSTODY_CAP_RANGE, s,
					    "cap %u: the broker caps only at index 0, not %u", s,
					    c->point->index);
	struct mp_custody_point pt = {0};
	if (rule == MP_CUSTODY_OK) {
		pt.seg_seq = s - 1;
		pt.index = c->point->index;
		memcpy(pt.w, c->point->w.data, MP_HASH_LEN);
		rule = check_w_cap(v, &pt, s, verified_events);
	}
	if (rule == MP_CUSTODY_OK)
		establish(v, ts, t, cs, &pt, g, by_broker);
	protobuf_c_message_free_unpacked(body, NULL);
	return rule;
}

enum mp_custody_rule custody_verify_pair(struct verifier *v, const MpSigned *transfer,
					 const MpSigned *cap, uint32_t g)
{
	uint32_t s = (uint32_t)v->n_segs;
	if (s > 1 && g < v->caps[s - 2].hseq)
		return custody_segment_fail(v, MP_CUSTODY_CAP_EPOCH, s,
					    "cap %u: epoch %u is before cap %u's epoch %u", s, g,
					    s - 1, v->caps[s - 2].hseq);
	ProtobufCMessage *body = NULL;
	if (open_stmt(v, transfer, s, MP_STMT_TRANSFER, v->segs[s - 1].owner_pk,
		      &micropay__v1__transfer__descriptor, &body) != MP_CUSTODY_OK)
		return v->res->rule;
	Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)body;
	enum mp_custody_rule rule = check_transfer(v, t, s);
	if (rule == MP_CUSTODY_OK)
		rule = verify_cap(v, transfer, t, cap, g);
	protobuf_c_message_free_unpacked(body, NULL);
	return rule;
}
