/* Recording verified Transfer/Cap pairs (mp_segment_record, brokerd/sql/0010-segments.sql):
 * the one SQL call shared by CapNoticeReq, SegmentClaimReq and the segments of a Redeem's
 * claims (docs/transfer.md "The broker"). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "custody.h"
#include "db.h"
#include "proto.h"

/* Segment s >= 1 as mp_custody_verify_all established it: its Transfer and the Cap that ended
 * segment s-1 at start (the statements are borrowed from the verified evidence). */
struct segment_found {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, start, len, hseq, declared_last;
	uint8_t nonce[MP_NONCE_LEN], root[MP_HASH_LEN], owner_pk[MP_PK_LEN];
	uint8_t w_cap[MP_HASH_LEN], holder[MP_ID_LEN];
	uint8_t t_hash[MP_HASH_LEN], c_hash[MP_HASH_LEN];
	const MpSigned *transfer, *cap;
};

/* Pair k (1-based) of verified evidence: segments[k] and caps[k-1] of mp_custody_verify_all,
 * stmts the evidence's segment statements (Transfer k at 2k-2, Cap k at 2k-1). */
void segment_found_set(struct segment_found *out, const uint8_t channel_id[MP_ID_LEN],
		       const struct mp_custody_segment *segments, const struct mp_custody_cap *caps,
		       MpSigned *const *stmts, uint32_t k);

/* What a call records: the pairs of one channel in seg_seq order, and for a SegmentClaim its
 * statement and payout account (claim NULL: none). source: "notice", "claim" or "redeem". */
struct segment_record_req {
	const uint8_t *channel_id;
	const char *source;
	uint32_t main_seg; /* the request's own segment (0: none) */
	const struct segment_found *pairs;
	size_t n_pairs;
	const MpSigned *claim;
	const uint8_t *payout; /* MP_ID_LEN bytes when claim */
};

/* Queue mp_segment_record; NULL when queued (done called once later with its one row: status,
 * detail, evidence, pairs_new, conflicts_new), else why not (words for an INTERNAL answer). */
const char *segment_record_call(struct db_pool *db, const struct segment_record_req *req,
				db_done_fn done, void *arg);
