/* Building Redeems (redeem_build.c): claims of the channels with unredeemed durable payments
 * (the epoch held now, from the channel table, then the epochs held earlier and handed off, from
 * the store), each with hseq_in = its epoch, our complete custody record for the channel and
 * every Transfer/Cap pair we know of it (Claim.segments; a point may lie in any segment),
 * packed within the limits the redeemer currently assumes of the broker, lowered after each
 * LIMIT. Every Redeem built here has a fresh redeem_id and is handed back unsigned (its body
 * serialised): the redeemer signs it on a worker thread and stores it in the outbox (on the
 * store thread) before it can be sent. */
#pragma once
#include <stdatomic.h>
#include <stdint.h>

#include "merchant.h"
#include "store_redeem.h"

/* What one Redeem may hold: the configured [redeem] values, lowered by LIMIT answers. */
struct redeem_limits {
	uint32_t max_claims;
	uint64_t budget; /* hashes the broker may need, estimated as index - redeemed_end */
};

/* A pass over the channel table: each channel is claimed at most once per pass, so a claim the
 * broker refuses is not asked again in a loop. A channel redeemed in steps needs one pass per
 * step. */
struct redeem_pass {
	uint32_t number;  /* compared with channel.redeem_pass */
	size_t bucket;	  /* where the next Redeem of this pass continues */
	bool epochs_done; /* the handed-off epochs (custody_store.h) were claimed in this pass */
};

enum build_result {
	BUILD_SEALED,	    /* *out holds a Redeem's serialised body, not signed nor stored yet */
	BUILD_NOTHING_LEFT, /* the pass is over */
	BUILD_FAILED,
	BUILD_WALK, /* a step's word needs a long walk: *walk, then redeem_build_step */
};

/* A chain walk for a step claim, too long for the loop: self-contained for a worker thread. */
struct step_walk {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t seg_seq, target;
	uint32_t from, to;	/* segment-relative indices, from > to */
	uint8_t w[MP_HASH_LEN]; /* the word at from; the worker leaves the word at to here */
	bool done;		/* the walk reached to */
};

/* On a worker thread (it touches only *w): hash w down from `from` to `to`, stopping early if
 * *stop becomes true. */
void redeem_step_walk(struct step_walk *w, const atomic_bool *stop);

/* The next Redeem of the pass, its body serialised (out->bytes malloc'd), not signed. A channel
 * whose own range is above the budget gets a step claim (see step_word in redeem_build.c); *steps
 * counts them. */
enum build_result redeem_build_next(struct merchant *m, struct redeem_pass *pass,
				    const struct redeem_limits *lim, struct outbox_item *out,
				    unsigned *steps, struct step_walk *walk);
/* The step claim of a finished walk, alone in a Redeem (body serialised, unsigned)
 * (BUILD_NOTHING_LEFT if the channel no longer needs it). */
enum build_result redeem_build_step(struct merchant *m, struct redeem_pass *pass,
				    const struct step_walk *walk, struct outbox_item *out);

/* The broker refused a Redeem (body parsed) with LIMIT: lower *lim so that the Redeems built
 * next are smaller: half as many claims, or for a single claim half as many hashes, so that its
 * channel is redeemed in steps. False if nothing smaller can be claimed (the LIMIT is not about
 * this Redeem's size). */
bool redeem_limits_shrink(struct merchant *m, const Micropay__V1__Redeem *body,
			  struct redeem_limits *lim);
