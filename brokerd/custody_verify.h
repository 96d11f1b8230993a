/* The custody step of a Redeem, the part that runs on the worker pool: each claim's custody
 * chain verified (common/custody.c) against what the broker already knows of its channel, the
 * claimant's epoch and its end decided, conflicts collected (protocol.md sections 6 and 7;
 * docs/custody.md). The job owns copies of everything it reads except the Redeem body, which
 * the loop does not touch until the job is handed back. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "custody.h"
#include "proto.h"

/* A Handoff the broker verified and stored before (mp_custody_prepare 'handoff' rows). */
struct custody_stored {
	uint32_t hseq;
	MpSigned *stmt;
	uint8_t hash[MP_HASH_LEN];
	uint8_t from[MP_ID_LEN], to[MP_ID_LEN];
	struct mp_custody_point pt;
};

/* A Transfer/Cap pair the broker recorded (mp_custody_prepare 'pair' rows). */
struct custody_pair {
	uint32_t seg_seq;
	MpSigned *transfer, *cap;
	uint8_t t_hash[MP_HASH_LEN], c_hash[MP_HASH_LEN];
};

struct custody_chan {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t n;
	uint64_t finalize_at; /* redeem_until + T_grace */
	bool has_holder0;
	uint8_t holder0[MP_ID_LEN];
	bool bound; /* holder0 comes from the broker's Bind, whose stmt_hash is bind_hash */
	uint8_t bind_hash[MP_HASH_LEN];
	struct mp_custody_segment seg0; /* with the cert's owner_pk */
	MpSigned *cert;
	struct custody_stored *stored; /* hseq 1..n_stored in order */
	size_t n_stored;
	struct custody_pair *pairs; /* segments 1..n_pairs in order */
	size_t n_pairs;
	struct mp_custody_point *known; /* every point the broker verified (chain_points) */
	size_t n_known;
};

struct custody_key {
	uint8_t mid[MP_ID_LEN];
	uint8_t pk[MP_PK_LEN];
	uint64_t valid_until;
};

/* custody_load.c: mp_custody_prepare rows into channels and keys (malloc'd; free with
 * custody_chans_free). False: unreadable rows or out of memory (what was loaded must still be
 * freed). */
bool custody_load(const PGresult *res, struct custody_chan **chans, size_t *n_chans,
		  struct custody_key **keys, size_t *n_keys);
void custody_chans_free(struct custody_chan *chans, size_t n_chans);
/* The key of a MerchantCert of mid valid until at least valid_until, among keys. */
bool custody_key_find(const struct custody_key *keys, size_t n_keys, const uint8_t mid[MP_ID_LEN],
		      uint64_t valid_until, uint8_t pk[MP_PK_LEN]);
/* The verifier's description of ch (segment 0, the known points); valid while ch is. */
void custody_channel_desc(const struct custody_chan *ch, struct mp_custody_channel *desc);
/* The segment statements to verify for a segment upto: the given ones (Transfer 1, Cap 1, ...),
 * then the recorded pairs after them up to segment upto. out holds MP_MAX_SEGMENT_STMTS
 * entries; returns the count (given ones beyond MP_MAX_SEGMENT_STMTS are cut: the verifier
 * refuses them as too many anyway when upto says so). */
size_t custody_segment_evidence(const struct custody_chan *ch, MpSigned *const *given,
				size_t n_given, uint32_t upto, MpSigned **out);

enum custody_conflict_kind {
	CONFLICT_DOUBLE_HANDOFF,
	CONFLICT_CLAIM_ABOVE_HANDOFF,
	CONFLICT_OMITTED_CUSTODY,
	CONFLICT_BAD_W_AT,
	CONFLICT_CAP_AFTER_HANDOFF,
};
const char *custody_conflict_name(enum custody_conflict_kind kind);

struct custody_conflict {
	enum custody_conflict_kind kind;
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq;
	uint8_t liable[MP_ID_LEN];
	const MpSigned *stmt;  /* the liable signer's statement (borrowed from the job's inputs) */
	const MpSigned *other; /* the second Handoff of a double handoff, the Handoff of a Cap
				  after it; else NULL (the Redeem) */
	bool has_index;
	uint32_t claim_index;
	char detail[160];
};

/* A Handoff verified now and not yet stored. */
struct custody_new {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq;
	const MpSigned *stmt; /* borrowed from the Redeem body */
	uint8_t hash[MP_HASH_LEN];
	uint8_t from[MP_ID_LEN], to[MP_ID_LEN];
	struct mp_custody_point pt;
};

/* A Handoff of a second branch of a fork (docs/custody.md "Forks"): one of a claim's verified
 * Handoffs from where its chain forks from the stored one (a different Handoff f naming
 * another merchant) on. */
struct custody_branch {
	uint8_t branch[MP_HASH_LEN]; /* stmt_hash of the branch's Handoff f */
	uint8_t liable[MP_ID_LEN];   /* its signer, the double signer */
	uint8_t prev[MP_HASH_LEN];   /* stmt_hash of the Handoff before h in the claim's chain */
	struct custody_new h;
};

#include "segment_record.h"

/* Per claim: untouched (no custody and a channel without stored Handoffs), or decided here:
 * a refusal, or accepted for the usual checks and hashing of its point. */
struct custody_claim {
	bool checked;
	MpCode status; /* OK: holds epoch hseq_in and lies within its end, as far as known */
	char detail[192];
	/* A claim on a second branch of a fork names its epoch by the Handoff that opened it:
	 * the stmt_hash of the claim's own Handoff hseq_in (the same merchant can hold hseq_in on
	 * another branch too). */
	bool on_branch;
	uint8_t opener[MP_HASH_LEN];
};

struct custody_job {
	void *owner;
	uint8_t claimant[MP_ID_LEN];
	const Micropay__V1__Redeem *r; /* borrowed, read only */
	struct custody_chan *chans;
	size_t n_chans;
	struct custody_key *keys;
	size_t n_keys;
	uint64_t hash_budget;
	/* results */
	struct custody_claim *claims; /* r->n_claims */
	struct custody_conflict *conflicts;
	size_t n_conflicts, cap_conflicts;
	struct custody_new *news;
	size_t n_news, cap_news;
	struct custody_branch *branches; /* by channel, branch, hseq */
	size_t n_branches, cap_branches;
	struct segment_found *found; /* verified Transfer/Cap pairs of the claims' segments */
	size_t n_found, cap_found;
	bool complete;	  /* every claim was considered */
	bool over_budget; /* the chains to verify could need more than hash_budget hashes */
};

void custody_work(void *arg, const atomic_bool *stop);
void custody_job_free(struct custody_job *job);

/* A RefundRequest's Close and its custody chain (protocol.md section 6 "Close"; docs/close.md),
 * verified exactly as a claim carrying them would be: Handoffs 1..H against the channel as the
 * broker knows it (its recorded pairs complete the segments up to seg_seq, its stored Handoffs
 * must agree), then the Close by the merchant of event H, whose point must lie in seg_seq, the
 * last segment. The job owns everything it holds. */
struct custody_close_job {
	void *owner;
	struct custody_chan *chans; /* the one channel (mp_custody_prepare) */
	size_t n_chans;
	struct custody_key *keys;
	size_t n_keys;
	MpSigned **custody; /* Handoffs 1..H, then the Close */
	size_t n_custody;
	uint32_t seg_seq;
	/* results */
	MpCode code; /* OK: the Close ends epoch hseq at final_index */
	char detail[200];
	uint32_t hseq, final_index;
	uint8_t closer[MP_ID_LEN];
	struct custody_new *news; /* the Handoffs 1..hseq the broker has not stored (custody) */
	size_t n_news;
};

void custody_close_work(void *arg, const atomic_bool *stop);
void custody_close_job_free(struct custody_close_job *job);
