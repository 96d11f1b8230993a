/* The load client's record of what the daemons acknowledged, shared by the randomized suites
 * (settlement_random, chaos): a seeded PRNG, and per channel its epochs (merchant, start, last
 * acknowledged index, index redeemed in time), its owner, its state; from it what the broker's
 * finalisation of a channel must find and what each merchant must have been credited
 * (docs/settlement.md "Finalisation"). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* splitmix64: the same seed gives the same sequence. */
struct rng {
	uint64_t state;
};
uint64_t rng_next(struct rng *r);
/* Uniform in [lo, hi]. */
uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi);
/* An index of items[0..n) (each `size` bytes, with an unsigned weight at weight_offset) drawn
 * with probability proportional to its weight. */
size_t rng_weighted(struct rng *r, const void *items, size_t n, size_t size, size_t weight_offset);

#define MODEL_MAX_CHANNELS 512
#define MODEL_MAX_EPOCHS   24

struct mepoch {
	int merchant;
	unsigned start, end; /* acknowledged (start, end] */
	unsigned redeemed;   /* index the broker credited (start when nothing yet) */
};

enum mstate { CH_ACTIVE, CH_CLOSED };

struct mchannel {
	char id[MP_HEX_ID_LEN + 1];
	int owner;  /* wallet 1.. */
	int holder; /* merchant 1.., 0: not bound yet */
	unsigned n, last;
	uint64_t unit;
	uint64_t pay_until, finalize_at;
	enum mstate state;
	unsigned close_index;  /* CH_CLOSED: the Close's final_index */
	uint64_t early_refund; /* CH_CLOSED: paid at once after the close */
	bool finalized;
	/* The owner's wallet has the holder's MerchantCert (from an OpenAck or a bundle): it can
	 * pay elsewhere through a handoff. */
	bool holder_cert_known;
	struct mepoch epochs[MODEL_MAX_EPOCHS];
	int n_epochs;
};

struct model {
	struct mchannel chans[MODEL_MAX_CHANNELS];
	int n_chans;
};

/* What finalisation must find: spent counts the Close's index, and the refund is what the
 * early refund left. */
struct mexpect {
	unsigned spent;
	uint64_t credited, refund, unclaimed;
};

struct mexpect model_expect(const struct mchannel *c);
/* Units (in money) of merchant m's epochs the broker credited, and that m acknowledged. */
uint64_t model_credit(const struct model *md, int m);
uint64_t model_acknowledged(const struct model *md, int m);
/* The channel's current epoch, NULL before its first holder. */
struct mepoch *model_epoch(struct mchannel *c);
/* Merchant m holds c from c->last on. */
void model_new_epoch(struct mchannel *c, int m);
/* Every epoch of merchant m of a channel not yet finalised is credited to its end. */
void model_redeemed(struct model *md, int m);
/* The broker's channel.settlement of c is FINALIZED with the model's figures, escrow =
 * credited + early refund + refund + unclaimed, the refund paid to owner_account (hex); marks
 * c finalised. */
void model_check_finalized(const struct net *n, struct mchannel *c, const char *owner_account);
