#include "close_verify.h"

#include <stdio.h>
#include <string.h>

#include "stmt.h"

size_t close_split(const Micropay__V1__Claim *cl, const MpSigned **close)
{
	size_t n = cl->n_custody;
	*close = NULL;
	if (n > 0 && cl->custody[n - 1] && cl->custody[n - 1]->type == MP_STMT_CLOSE)
		*close = cl->custody[--n];
	return n;
}

static MpCode fail(MpCode code, char *detail, size_t len, const char *what)
{
	snprintf(detail, len, "Close: %s", what);
	return code;
}

/* The point's checks before hashing; the verified points of its segment to start from. */
static MpCode check_point(const struct close_check *cc, const MpPoint *pt,
			  struct mp_custody_point *from, size_t *n_from, char *detail, size_t len)
{
	if (!pt || !mp_bytes_len_is(pt->w, MP_HASH_LEN))
		return fail(MP_ST(MALFORMED), detail, len, "no point");
	if (pt->seg_seq >= cc->n_segments)
		return fail(MP_ST(MALFORMED), detail, len, "its segment is not in the evidence");
	const struct mp_custody_segment *seg = &cc->segments[pt->seg_seq];
	const struct mp_custody_event *ev = &cc->events[cc->n_handoffs];
	if (pt->index < seg->start || pt->index > mp_custody_segment_end(seg, cc->ch->n))
		return fail(MP_ST(OUT_OF_RANGE), detail, len, "final_index outside its segment");
	*n_from = 0;
	if (ev->point.seg_seq == pt->seg_seq) {
		if (pt->index < ev->point.index)
			return fail(MP_ST(OUT_OF_RANGE), detail, len,
				    "final_index below the start of the epoch it ends");
		if (cc->n_handoffs > 0) /* event 0's point is the root: start from the root */
			from[(*n_from)++] = ev->point;
	} else if (ev->point.seg_seq > pt->seg_seq) {
		return fail(MP_ST(OUT_OF_RANGE), detail, len,
			    "its segment ended before the epoch it ends");
	}
	return MP_ST(OK);
}

MpCode close_verify(const struct close_check *cc, const MpSigned *close, uint32_t *final_index,
		    char *detail, size_t len)
{
	const struct mp_custody_event *ev = &cc->events[cc->n_handoffs];
	uint8_t pk[MP_PK_LEN];
	if (!cc->key(cc->key_arg, ev->merchant_id, cc->ch->finalize_at, pk))
		return fail(MP_ST(NOT_HOLDER), detail, len,
			    "no MerchantCert of the holder of the epoch it ends");
	ProtobufCMessage *body = NULL;
	MpCode code =
	    mp_stmt_open(close, MP_STMT_CLOSE, pk, &micropay__v1__close__descriptor, &body);
	if (code != MP_ST(OK))
		return fail(code, detail, len, "not signed by the holder of the epoch it ends");
	const Micropay__V1__Close *cl = (const Micropay__V1__Close *)body;
	struct mp_custody_point from[1], pt = {0};
	size_t n_from = 0;
	if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN) ||
	    memcmp(cl->channel_id.data, cc->ch->channel_id, MP_ID_LEN))
		code = fail(MP_ST(MALFORMED), detail, len, "another channel");
	else if (cl->hseq != cc->n_handoffs)
		code = fail(MP_ST(MALFORMED), detail, len,
			    "hseq is not the latest epoch of the custody chain");
	else
		code = check_point(cc, cl->point, from, &n_from, detail, len);
	if (code == MP_ST(OK)) {
		pt.seg_seq = cl->point->seg_seq;
		pt.index = cl->point->index;
		memcpy(pt.w, cl->point->w.data, MP_HASH_LEN);
	}
	protobuf_c_message_free_unpacked(body, NULL);
	if (code != MP_ST(OK))
		return code;
	switch (mp_custody_point_verify(&cc->segments[pt.seg_seq], from, n_from, &pt, cc->h,
					cc->stop, NULL)) {
	case MP_POINT_VALID:
		*final_index = pt.index;
		return MP_ST(OK);
	case MP_POINT_INVALID:
		return fail(MP_ST(BAD_CHAIN), detail, len, "w_final does not verify");
	case MP_POINT_STOPPED:
		break;
	}
	return fail(MP_ST(INTERNAL), detail, len, "verification stopped");
}
