/* Shared between common/custody.c (Handoffs, the driver) and common/custody_segments.c
 * (Transfer/Cap pairs): the verifier's running state and the point-bounds helpers. */
#pragma once
#include "custody.h"

struct verifier {
	const struct mp_custody_channel *ch;
	mp_custody_key_fn key;
	void *key_arg;
	struct mp_hasher *h;
	const atomic_bool *stop;
	struct mp_custody_event *events; /* 0..n_events-1 verified */
	uint32_t n_events;
	struct mp_custody_result *res;
	struct mp_custody_segment *segs; /* 0..n_segs-1 verified, the last one current */
	size_t n_segs;
	struct mp_custody_cap *caps; /* caps[s-1] established segment s */
};

/* The nearest verified points below (or at) and above (or at) an index, within one segment. */
struct bounds {
	uint32_t index;
	bool has_lo, has_hi;
	uint32_t lo, hi;
	const uint8_t *w_lo, *w_hi;
};

/* The segment's base point (start, root) is the first bound below; pt->index must lie in it. */
void custody_bounds_init(struct bounds *b, const struct mp_custody_segment *seg,
			 const struct mp_custody_point *pt);
/* Take p as a bound if it is a point of seg nearer to the index than the current ones. */
void custody_bounds_add(struct bounds *b, const struct mp_custody_segment *seg,
			const struct mp_custody_point *p);
/* Verify pt against the bounds found; *cost receives the hashes taken. */
enum mp_point_verdict custody_verify_bounded(const struct mp_custody_segment *seg,
					     const struct bounds *b,
					     const struct mp_custody_point *pt, struct mp_hasher *h,
					     const atomic_bool *stop, uint64_t *cost);

enum mp_custody_rule custody_fail(struct mp_custody_result *res, enum mp_custody_rule rule,
				  uint32_t hseq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
enum mp_custody_rule custody_segment_fail(struct verifier *v, enum mp_custody_rule rule,
					  uint32_t seg_seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Transfer s = v->n_segs and its Cap, signed in epoch g (events 0..g verified): on
 * MP_CUSTODY_OK segment s is appended to v->segs, segment s-1 capped, v->caps[s-1] filled. */
enum mp_custody_rule custody_verify_pair(struct verifier *v, const MpSigned *transfer,
					 const MpSigned *cap, uint32_t g);
