#include "custody_cap_conflict.h"

#include <stdbool.h>
#include <string.h>

#include "pb_peek.h"
#include "stmt.h"
#include "util.h"

/* Rules a Handoff breaks when its point or segments_head leave out a segment a verified Cap
 * started: the point in an older segment, segments_head of an older one, at_index below the
 * segment's start (the cap index). */
static bool segment_rule(enum mp_custody_rule rule)
{
	return rule == MP_CUSTODY_SEGMENT_ORDER || rule == MP_CUSTODY_SEGMENTS_HEAD ||
	       rule == MP_CUSTODY_OUT_OF_RANGE;
}

/* Pairs verified before Handoff g: the leading ones whose Cap was signed in an epoch < g. */
static size_t pairs_verified(MpSigned *const *stmts, size_t n_stmts, uint32_t g)
{
	size_t k = 0;
	for (; k < n_stmts / 2; k++) {
		const MpSigned *cap = stmts[2 * k + 1];
		uint64_t epoch;
		if (!cap || !mp_pb_peek_uint(cap->body.data, cap->body.len, 4, &epoch) ||
		    epoch >= g)
			break;
	}
	return k;
}

/* Consistent: the Handoff's point lies in the Cap's new segment or a later one, its
 * segments_head is not the head before that segment, and at_index >= the cap index. */
static bool consistent(const Micropay__V1__Handoff *h, const struct mp_custody_cap *cap)
{
	if (!h->point || h->point->seg_seq < cap->seg_seq || h->point->index < cap->point.index)
		return false;
	return h->point->seg_seq > cap->seg_seq ||
	       (mp_bytes_len_is(h->segments_head, MP_HASH_LEN) &&
		memcmp(h->segments_head.data, cap->transfer_hash, MP_HASH_LEN) == 0);
}

int custody_inconsistent_cap(enum mp_custody_rule rule, const MpSigned *handoff, uint32_t g,
			     const uint8_t signer[MP_ID_LEN], const struct mp_custody_cap *caps,
			     MpSigned *const *stmts, size_t n_stmts)
{
	if (!segment_rule(rule) || g == 0 || !handoff)
		return -1;
	size_t n = pairs_verified(stmts, n_stmts, g);
	int found = -1;
	for (size_t k = n; k-- > 0 && found < 0;)
		if (caps[k].hseq == g - 1 && !caps[k].by_broker &&
		    memcmp(caps[k].holder, signer, MP_ID_LEN) == 0)
			found = (int)k;
	if (found < 0)
		return -1;
	Micropay__V1__Handoff *h = (Micropay__V1__Handoff *)mp_strict_unpack(
	    &micropay__v1__handoff__descriptor, handoff->body.data, handoff->body.len);
	if (!h)
		return -1;
	bool ok = consistent(h, &caps[found]);
	micropay__v1__handoff__free_unpacked(h, NULL);
	return ok ? -1 : found;
}
