/* The RefundReq handler's shared parts (refund.c): the call, its answer, and the early refund
 * with a Close (refund_early.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "broker.h"

struct refund_call {
	struct broker_call *call;
	uint8_t channel_id[MP_ID_LEN];
	MpSigned *stmt;
	uint32_t last_seg;	       /* the channel's last segment (mp_refund_lookup) */
	char what[MP_HEX_ID_LEN + 80]; /* "channel X from PEER" for logs */
};

/* The answer's fields besides the status. */
struct refund_result {
	uint64_t not_before, refund, unclaimed, refunded_at;
	uint32_t spent;
	uint8_t payout[MP_ID_LEN];
	bool has_payout;
	MpSigned *evidence; /* CONFLICT: the stored statement */
};

/* Answer (r may be NULL) and free rc. */
void refund_reply(struct refund_call *rc, MpCode code, const char *detail,
		  const struct refund_result *r);
/* Answer the one result row of mp_refund_request or mp_refund_early (columns it lacks stay 0)
 * and free rc. */
void refund_reply_row(struct refund_call *rc, const PGresult *res, const char *error);
/* A RefundRequest carrying a Close, its signature and body checked: verify the Close and its
 * custody on the worker pool, then mp_refund_early (refund_early.c). Answers and frees rc. */
void refund_early_run(struct refund_call *rc, const Micropay__V1__RefundRequest *rq);
