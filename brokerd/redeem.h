/* A Redeem being answered, shared by redeem.c (the flow up to the hashing) and redeem_credit.c
 * (the one crediting SQL call and the answer). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "custody_verify.h"

/* What was decided for one claim before the crediting call; OK claims go to the SQL function,
 * which decides the rest under its locks. */
struct claim_check {
	MpCode status;
	const char *detail;
	bool verify; /* above the credited end: its word is hashed before crediting */
};

struct redeem;

/* A Redeem run for another flow (a dispute's evidence, dispute_evidence.c): the same custody,
 * checks and hashing, then the flow's own last step instead of mp_redeem and the answer. */
struct redeem_hooks {
	/* Every claim decided or verified (instead of redeem_credit); the hook owns rd and ends
	 * with redeem_discard or redeem_reply. */
	void (*credit)(struct redeem *rd);
	/* A refusal before that (instead of the RedeemResp); rd is freed after it returns. */
	void (*refused)(struct redeem *rd, MpCode code, const char *detail);
	bool verify_all; /* hash every claim's word, also at or below the credited end */
	bool no_budget;	 /* not charged to the merchant's bad-chain budget (not its request) */
};

struct redeem {
	struct broker_call *call;	  /* with hooks: the flow's call, never answered here */
	const struct redeem_hooks *hooks; /* NULL: a merchant's Redeem */
	void *hook_arg;
	MpSigned *stmt; /* lent to the signature job while it runs */
	uint8_t peer_mid[MP_ID_LEN];
	Micropay__V1__Redeem *r;
	struct claim_check *checks;
	struct custody_claim *custody; /* per claim, from the custody step; NULL if none ran */
	uint64_t reserved; /* hashes reserved in the merchant's bad-chain bucket, not settled */
};

/* uint32 protocol values into SQL int: anything above is out of range anyway. */
static inline int64_t redeem_sql_int(uint32_t v)
{
	return v > INT32_MAX ? INT32_MAX : v;
}

/* Answer and free rd (an unsettled reservation is returned first). evidence: CONFLICT's
 * stored statement, or NULL. */
void redeem_reply(struct redeem *rd, MpCode code, const char *detail,
		  Micropay__V1__ClaimResult **results, size_t n_results, const MpSigned *evidence);

/* Free rd without an answer (a hooked flow's end). */
void redeem_discard(struct redeem *rd);

/* Answer a failed database step (redeem_timeout.c): LIMIT "split it" after a statement
 * timeout, else INTERNAL with error (or fallback when there is none). */
void redeem_reply_db_error(struct redeem *rd, const char *step, const char *error,
			   const char *fallback);

/* The custody step (redeem_custody.c): verify custody chains, record Handoffs and conflicts,
 * then redeem_prepare. */
void redeem_custody(struct redeem *rd);
/* Read each claim's channel, epoch and nearest verified points, then check and hash. */
void redeem_prepare(struct redeem *rd);

struct pg_array;
/* Claim i's epoch opener for mp_redeem_prepare / mp_redeem: the stmt_hash of its own Handoff
 * when its custody puts it on a second branch of a fork, else '' (brokerd/sql
 * 0023-fork-epoch-branch.sql). */
void redeem_array_opener(struct pg_array *a, const struct redeem *rd, size_t i);

/* Every claim is decided or verified: credit in one SQL call (mp_redeem), then answer. */
void redeem_credit(struct redeem *rd);
