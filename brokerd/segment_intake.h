/* The broker learning a segment (docs/transfer.md "The broker"): the flow shared by a holder's
 * CapNoticeReq (cap_notice.c) and a wallet's SegmentClaimReq (segment_claim.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "segment_verify.h"

struct segment_intake {
	struct broker_call *call;
	bool is_claim; /* SegmentClaimReq, else CapNoticeReq */
	uint8_t channel_id[MP_ID_LEN];
	char what[2 * MP_HEX_ID_LEN + 48]; /* "channel X segment s from P" for logs */
	struct segment_job *job;	   /* the inputs, filled by the handler */
};

/* Read the channel, verify on the worker pool, record, answer after COMMIT; in frees in. */
void segment_intake_run(struct segment_intake *in);
/* Answer (evidence: CONFLICT's stored statement, or NULL) and free in. */
void segment_intake_reply(struct segment_intake *in, MpCode code, const char *detail,
			  const MpSigned *evidence);
/* Copies of a request's statements for the job (*out NULL when n is 0). False: out of memory
 * (what was copied is kept in *out and *n_out, for segment_job_free). */
bool segment_intake_copy(MpSigned *const *src, size_t n, MpSigned ***out, size_t *n_out);
/* A new intake with its job and call; NULL (nothing answered) if out of memory. */
struct segment_intake *segment_intake_new(struct broker *b, struct mp_conn *c,
					  const MpEnvelope *env, bool is_claim);
