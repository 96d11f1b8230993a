/* A Dispute being answered (protocol.md section 6 "Fair exchange", statement 16;
 * docs/disputes.md), shared by dispute.c (intake, signatures, the answer) and
 * dispute_evidence.c (custody and w_pay_index verified as a claim at pay_index, then
 * mp_dispute_open). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "broker.h"
#include "offer.h"

/* MAX_JUMP (protocol.md section 11): the most units one Offer may cost. */
#define DISPUTE_MAX_JUMP 4096

struct dispute {
	struct broker_call *call;
	MpSigned *stmt; /* the Dispute, our copy */
	uint8_t stmt_hash[MP_HASH_LEN];
	MpSigned **custody, **segments; /* copies of the request's */
	size_t n_custody, n_segments;
	/* peeked before the signature, checked against the parsed Offer after it */
	uint8_t channel_id[MP_ID_LEN], merchant_id[MP_ID_LEN];
	uint32_t seg_seq;
	/* from mp_dispute_lookup */
	uint32_t n;
	uint64_t unit_value;
	/* parsed and verified */
	struct mp_offer offer;
	uint8_t w[MP_HASH_LEN], payout[MP_ID_LEN];
	char what[MP_HEX_ID_LEN + 80]; /* "channel X from PEER" for logs */
	bool budgeted; /* counted by dispute_budget_admit: dispute_budget_done when answered */
	/* the request's BadKeyProof, packed (NULL: none); proven once checked on the worker */
	uint8_t *proof;
	size_t proof_len;
	bool proven;
};

/* The DisputeState of a disputes.state text (NONE for NULL). */
Micropay__V1__DisputeState dispute_state_of(const char *state);
/* Answer with code and detail only, and free d. */
void dispute_reply(struct dispute *d, MpCode code, const char *detail);
/* Answer the one row of mp_dispute_check / mp_dispute_open and free d. */
void dispute_reply_row(struct dispute *d, const PGresult *res, const char *error);
/* The evidence step (dispute_evidence.c): w_pay_index and the custody verified as the
 * merchant's claim at pay_index, then mp_dispute_open. Answers and frees d. */
void dispute_evidence_run(struct dispute *d);
/* The proven BadKeyProof recorded on the stored dispute (dispute_prove.c, mp_dispute_prove).
 * Answers and frees d. */
void dispute_prove(struct dispute *d);

/* The merchant's answer to an open dispute (dispute_key.c, on its mutual-TLS link). */
struct key_call {
	struct broker_call *call;
	char mid[MP_HEX_ID_LEN + 1];
	uint64_t window_end; /* DisputeStateReq: the Offer's deadline + T_dispute (0: unknown) */
};
/* Answer the DisputeKeyReq and free k. */
void dispute_key_reply(struct key_call *k, MpCode code, const char *detail,
		       Micropay__V1__DisputeState state);
/* DisputeKeyReq carrying the buyer's OfferCancel instead of the key (dispute_cancel.c; its
 * lengths and the peer checked): answers and frees k. */
void dispute_cancel_run(struct key_call *k, const Micropay__V1__DisputeKeyReq *req);
