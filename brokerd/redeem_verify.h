/* The CPU-heavy steps of a Redeem, written to run on the worker pool (common/workers.h): the
 * signature and strict parse of the statement, and the chain verification of its claims. Each
 * job owns copies of everything it reads; its owner pointer is only for the done callback on
 * the loop, the work function never follows it. */
#pragma once
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "proto.h"
#include "sig.h"
#include "stmt.h"

/* Signature first, then the strict parse (mp_stmt_open), under the merchant's key. */
struct redeem_sig_job {
	void *owner;
	MpSigned *stmt; /* handed to the job while it runs, handed back after */
	uint8_t pk[MP_PK_LEN];
	MpCode code;		    /* result: OK, BAD_SIG or MALFORMED */
	Micropay__V1__Redeem *body; /* result, when OK */
};
void redeem_sig_work(void *arg, const atomic_bool *stop);

/* One claim: verify(nonce, a, w_a, b, w_b) with chain-relative a <= b, i.e. hash w_b down to
 * a and compare with w_a; one of the two points is the claim, the other the nearest verified
 * point of its segment. */
struct chain_task {
	size_t claim; /* position in the Redeem */
	uint64_t cost;
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t a, b;
	uint8_t w_a[MP_HASH_LEN], w_b[MP_HASH_LEN];
	bool ok; /* result */
};

/* Build the task of a claim from its mp_redeem_prepare row (nearest points lo/hi, the
 * segment's start and nonce): the nearer point is chosen and the cost is the distance. False if
 * the stored row cannot be read (then nothing is hashed for that claim). */
bool chain_task_init(struct chain_task *t, size_t claim, const MpPoint *pt, const PGresult *res,
		     int row);

struct redeem_chain_job {
	void *owner;
	size_t n;
	struct chain_task *tasks;
	bool complete; /* result: every task ran (false: stopped early or out of memory) */
};
/* Runs every task; returns early, incomplete, when *stop turns true. */
void redeem_chain_work(void *arg, const atomic_bool *stop);
