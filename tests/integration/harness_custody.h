/* Forging custody evidence for the broker's settlement suites (custody_settle, conflicts,
 * segment_claim, unbound_transfer): the test acts as merchants (harness_merchant.h) and
 * customers at the wire level and signs, by hand, what an honest party would and what a
 * cheating one does: channels issued to a holder0, Handoffs, Transfers with a new owner's
 * segment, Caps, SegmentClaims and Redeems carrying custody; then reads what the broker
 * recorded (conflicts, segments) through its admin socket. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "harness_merchant.h"

/* A funded test wallet's channel (unit value 1) and the hashes statements link to. */
struct tchan {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	uint8_t cert_hash[MP_HASH_LEN];
};

/* Register a fresh test wallet at the broker (no client certificate). */
void tchan_register_wallet(const struct net *n, struct twallet *tw);
/* Register the test wallet tw, fund it with n_units and issue ch: n_units units of 1 held by
 * holder0. */
void channel_issue_funded(const struct net *n, struct twallet *tw, struct tchannel *ch,
			  uint32_t n_units, const uint8_t holder0[MP_ID_LEN]);
/* Register a wallet, fund it with n_units and issue a channel of n_units units of 1 with
 * holder0 = the given merchant. */
void tchan_issue(const struct net *n, struct tchan *c, uint32_t n_units,
		 const struct tmerchant *holder0);
void tchan_release(struct tchan *c);

/* Handoff hseq of c from `from` (its signer) to `to` at index at (segment 0), linked to prev
 * (NULL: the cert). w: the word at `at`, or NULL for the channel's true word. */
MpSigned *tchan_handoff(const struct tchan *c, uint32_t hseq, const struct tmerchant *from,
			const struct tmerchant *to, uint32_t at, const MpSigned *prev,
			const uint8_t *w);

/* One claim of segment 0 with its custody evidence. */
struct cclaim {
	const struct tchan *c;
	uint32_t hseq, index;
	MpSigned **custody;
	size_t n_custody;
};

/* A Redeem of claims (at most 8; each point with the channel's true word) signed by tm with a
 * fresh redeem_id. */
MpSigned *cclaim_redeem(const struct tmerchant *tm, const struct cclaim *claims, size_t count);
/* Send the Redeem as tm over mutual TLS; the answer (the caller frees it). */
MpEnvelope *redeem_as(const struct net *n, const struct tmerchant *tm, const MpSigned *stmt);
/* Claim result i of a RedeemResp has this status and credited amount (and, if detail_part is
 * not NULL, a detail containing it). */
void expect_claim_result(const MpEnvelope *resp, size_t i, MpCode status, uint64_t amount,
			 const char *detail_part);
/* Redeem claims as tm, expect every claim's status and amount; replay it, expect DUPLICATE_OK
 * with the same results. */
void cclaim_redeem_expect(const struct net *n, const struct tmerchant *tm,
			  const struct cclaim *claims, size_t count, const MpCode *status,
			  const uint64_t *amount);

/* The recorded conflicts of a channel, as the admin method lists them (caller frees). */
json_t *channel_conflicts(const struct net *n, const uint8_t channel_id[MP_ID_LEN]);
/* list has a conflict of this kind at hseq against liable, with stmt_a and a stmt_b. */
void expect_conflict(json_t *list, const char *kind, uint32_t hseq, const struct tmerchant *liable);
/* admin channel.segments of a channel: its "segments" array (caller frees). */
json_t *channel_segments(const struct net *n, const uint8_t channel_id[MP_ID_LEN]);

void stmts_free(MpSigned **s, size_t count);

/* A new owner's segment material (what B's offer carries) and its key. */
struct tseg {
	struct mp_key owner;
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN], root[MP_HASH_LEN];
	uint32_t len;
};

/* Fresh owner key, seed and nonce; the root of a chain of len words. */
void tseg_make(struct tseg *s, uint32_t len);
/* The word of chain-relative index k of s. */
void tseg_word(const struct tseg *s, uint32_t k, uint8_t out[MP_HASH_LEN]);

/* Transfer seg_seq of a channel to `to`, signed by `signer`, after the segment whose head is
 * prev_hash (valid for an hour). */
MpSigned *transfer_sign(const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq, uint32_t epoch,
			uint32_t declared_last, const struct tseg *to, const struct mp_key *signer,
			const uint8_t prev_hash[MP_HASH_LEN]);
/* The Cap is the broker's (broker_pk), for Transfer t of the channel, ending segment
 * seg_seq-1 at (0, root0): an unbound channel's transfer (docs/transfer.md). */
void expect_broker_cap(const MpSigned *cap, const MpSigned *t, uint32_t seg_seq,
		       const uint8_t root0[MP_HASH_LEN], const uint8_t channel_id[MP_ID_LEN],
		       const uint8_t broker_pk[MP_PK_LEN]);
/* The same for c; prev: Transfer seg_seq-1 (NULL: the cert). */
MpSigned *tchan_transfer(const struct tchan *c, uint32_t seg_seq, uint32_t epoch,
			 uint32_t declared_last, const struct tseg *to, const struct mp_key *signer,
			 const MpSigned *prev);
/* Cap of Transfer t signed by `by` in epoch hseq at point (seg_seq - 1, at, w). */
MpSigned *tchan_cap(const struct tchan *c, const MpSigned *t, uint32_t seg_seq, uint32_t hseq,
		    uint32_t at, const uint8_t w[MP_HASH_LEN], const struct tmerchant *by);

/* A CapNoticeReq as merchant tm (NULL: no client certificate); returns the status code, the
 * evidence's stmt_hash into evidence (if not NULL; zeros when none). */
MpCode cap_notice(const struct net *n, const struct tmerchant *tm, MpSigned *t, MpSigned *cp,
		  MpSigned **pairs, size_t n_pairs, uint8_t evidence[MP_HASH_LEN]);

/* A SegmentClaim of segment seg_seq (Transfer t, Cap cp) naming payout, signed by signer. */
MpSigned *segment_claim_sign(const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			     const MpSigned *t, const MpSigned *cp, const uint8_t payout[MP_ID_LEN],
			     const struct mp_key *signer);
/* A SegmentClaimReq carrying stmt and the pairs before it, without a client certificate;
 * returns the status code, the evidence's stmt_hash into evidence and the detail into detail
 * (each if not NULL; zeros / "" when none). */
MpCode segment_claim_send(const struct net *n, MpSigned *stmt, MpSigned **pairs, size_t n_pairs,
			  uint8_t evidence[MP_HASH_LEN], char *detail, size_t detail_len);
