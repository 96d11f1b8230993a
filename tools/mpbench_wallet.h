/* The benchmark's wallet: one registered, funded account and its channels, issued by the
 * broker with the merchant as holder0 and opened there, with the paywords to spend them.
 *
 *   fresh --register--> REGISTERED --fund (broker admin)--> FUNDED --make chains--> MADE
 *     --issue (the `issue` load)--> ISSUED --open (a load)--> OPEN (payable at the merchant) */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "mpbench.h"
#include "mpbench_load.h"
#include "sig.h"
#include "util.h"

#define CHAIN_CHECKPOINT 64u

struct bench_channel {
	uint8_t nonce[MP_NONCE_LEN];
	uint8_t id[MP_ID_LEN];
	uint32_t n;
	uint8_t *checkpoints; /* word of index i * CHAIN_CHECKPOINT, and of n, 32 bytes each */
	MpSigned *request;    /* the signed IssueRequest */
	MpSigned *cert;	      /* the ChannelCert once issued */
	uint64_t pay_until;   /* from the cert */
	uint8_t
	    owner_seed[MP_SK_LEN]; /* segment 0's owner key (handoff and transfer sign with it) */
	/* Paying: the words of [base, base + CHAIN_CHECKPOINT] kept, next index to pay. */
	uint32_t base;
	bool have_words;
	uint8_t words[CHAIN_CHECKPOINT + 1][MP_HASH_LEN];
	uint32_t next_j; /* the last index sent */
	bool open;
};

struct bench_wallet {
	struct mp_key account;
	uint8_t account_id[MP_ID_LEN];
	uint8_t merchant_id[MP_ID_LEN];
	struct bench_channel *channels;
	unsigned n_channels, issued, opened;
	MpSigned *holder_cert; /* the merchant's MerchantCert, from its first OpenAck */
	const char *broker2;   /* if set, issue over both brokers (half the connections each) */
	struct mp_hasher *hasher;
};

/* Register and fund the account (needs the broker's admin socket). */
bool wallet_setup(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n);
/* Chains and signed IssueRequests for o->channels channels of o->units units. */
bool wallet_make_channels(struct bench_wallet *w, const struct bench_opts *o);
/* Issue every channel: the `issue` load. */
bool wallet_issue(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n,
		  struct load_result *r);
/* Open every issued channel at the merchant. */
bool wallet_open(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n,
		 struct load_result *r);
/* The word of index j of ch (j above the last one asked for in most calls: cheap). */
const uint8_t *wallet_word(struct bench_wallet *w, struct bench_channel *ch, uint32_t j);
void wallet_free(struct bench_wallet *w);
