/* PostgreSQL array parameters of verified Handoffs (the p_h_* arrays of mp_custody_record and
 * mp_refund_early): a Redeem's custody step and the early refund store Handoffs alike. */
#pragma once
#include "custody_verify.h"
#include "pg_array.h"

/* The arrays of one Handoff list: channel, hseq, statement, hash, from, to, point. */
struct handoff_arrays {
	struct pg_array cid, hseq, stmt, hash, from, to, seg, idx, w;
};
#define HANDOFF_ARRAYS 9

/* The i-th array of a, in the order of the SQL parameters (cid first). */
struct pg_array *custody_handoff_array(struct handoff_arrays *a, int i);
/* A statement's exact bytes into an array (an empty element when s is NULL). */
void custody_array_stmt(struct pg_array *a, const MpSigned *s);
/* One verified Handoff into every array of a. */
void custody_fill_handoff(struct handoff_arrays *a, const struct custody_new *nw);
