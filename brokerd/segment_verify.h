/* The verification of a CapNoticeReq or SegmentClaimReq, written to run on the worker pool
 * (docs/transfer.md "The broker"): the Transfer/Cap pair of segment s with the pairs before it
 * and the custody chain up to the Cap's epoch, checked by mp_custody_verify_all against what
 * the broker recorded of the channel (its stored Handoffs, pairs and verified points). The job
 * owns everything it reads. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "custody_verify.h"
#include "proto.h"
#include "segment_record.h"

struct segment_job {
	void *owner;
	/* inputs, owned by the job */
	struct custody_chan *chans; /* the channel, as mp_custody_prepare gave it (one) */
	size_t n_chans;
	struct custody_key *keys;
	size_t n_keys;
	uint32_t seg_seq;	  /* s >= 1: the segment the request is about */
	MpSigned *transfer, *cap; /* Transfer s and its Cap */
	MpSigned **given;	  /* the request's earlier pairs: Transfer 1, Cap 1, ... */
	size_t n_given;
	MpSigned **custody; /* CapNoticeReq: its custody chain; NULL for a SegmentClaim */
	size_t n_custody;
	MpSigned *claim_stmt; /* SegmentClaimReq: the SegmentClaim, verified here */
	/* results */
	MpCode code; /* OK, or the refusal */
	char detail[200];
	Micropay__V1__SegmentClaim *claim;     /* the parsed SegmentClaim (its custody was used) */
	MpSigned *stmts[MP_MAX_SEGMENT_STMTS]; /* the segment evidence verified (borrowed) */
	size_t n_stmts;
	struct segment_found found[MP_MAX_SEGMENTS]; /* pairs 1..s, verified */
	size_t n_found;
};

void segment_work(void *arg, const atomic_bool *stop);
void segment_job_free(struct segment_job *job);
