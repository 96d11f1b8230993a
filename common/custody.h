/* Custody chains (protocol.md section 4, "A custody chain is valid iff"): pure protocol logic,
 * no I/O, shared by merchantd (receiving a Handoff) and brokerd (settling claims).
 *
 * Event 0 is holder0 of the ChannelCert at the base point of segment 0; event h >= 1 is the
 * Handoff with hseq h. The verifier derives everything it checks from its own state: the
 * expected signer of Handoff h is the merchant named by event h-1, whose key comes from the
 * caller's MerchantCert lookup, never from the statement.
 *
 * Per Handoff h, in this order (the first rule broken is the result):
 *   signer known -> type 6 -> signer_pk -> signature -> strict parse -> field lengths ->
 *   channel_id -> hseq == h -> prev_handoff_hash -> from_mid -> to_mid != from_mid ->
 *   segment (only 0 for now) -> segments_head -> index range [seg_start, n] ->
 *   at_index >= previous event's index -> at_index < n -> w_at verifies
 * Only the last step hashes. w_at is verified from the nearest verified point of its segment
 * (the root, a point the caller already verified, or an earlier Handoff's point), above or
 * below; a point at the index of a verified one is valid iff the words are equal. A whole
 * chain thus costs at most n hashes. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "proto.h"
#include "proto_limits.h"
#include "sig.h"
#include "util.h"

/* A segment as the verifier knows it. Segment 0 comes from the ChannelCert: start 0, len n,
 * the cert's chain nonce, root and owner_pk, head = stmt_hash(ChannelCert). Segment s >= 1
 * comes from Transfer s and its Cap (mp_custody_verify_all): start = the Cap's index, len, nonce,
 * root and owner_pk from the Transfer, head = stmt_hash(Transfer s). A point of the segment has
 * start <= index <= min(n, start + len), and <= cap_index once a Cap has ended it. */
struct mp_custody_segment {
	uint32_t seg_seq;
	uint32_t start; /* absolute cap index c; 0 for segment 0 */
	uint32_t len;
	uint8_t nonce[MP_NONCE_LEN];
	uint8_t root[MP_HASH_LEN];
	uint8_t head[MP_HASH_LEN]; /* segments_head while this is the latest segment */
	uint8_t owner_pk[MP_PK_LEN];
	bool capped;	    /* Cap seg_seq+1 ended it ... */
	uint32_t cap_index; /* ... at this absolute index */
};

/* The highest absolute index a point of seg may carry in a channel of n units. */
uint32_t mp_custody_segment_end(const struct mp_custody_segment *seg, uint32_t n);

/* (seg_seq, absolute index, word) */
struct mp_custody_point {
	uint32_t seg_seq;
	uint32_t index;
	uint8_t w[MP_HASH_LEN];
};

struct mp_custody_channel {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t cert_hash[MP_HASH_LEN]; /* stmt_hash(ChannelCert): segment 0's head */
	/* Event 0: holder0 of the cert, or the merchant of the broker's Bind for a channel issued
	 * without one; bind_hash then holds stmt_hash(Bind), which Handoff 1's prev_handoff_hash
	 * links to (else it links to cert_hash). The caller verified the Bind under the broker key.
	 */
	uint8_t holder0[MP_ID_LEN];
	bool bound;
	uint8_t bind_hash[MP_HASH_LEN];
	/* A channel issued without holder0 (issued_unbound) may have been transferred through the
	 * broker before any Bind: that Cap is signed by broker_pk, in epoch 0 at index 0. */
	bool issued_unbound;
	uint8_t broker_pk[MP_PK_LEN];
	uint32_t n;
	uint64_t key_valid_until; /* redeem_until + T_grace: signers' MerchantCerts must reach it */
	const struct mp_custody_segment *segments; /* segment 0 (later entries are ignored: */
	size_t n_segments;			   /* they come from verified Transfer/Cap pairs) */
	const struct mp_custody_point *known; /* points the caller verified before; may be NULL */
	size_t n_known;
};

/* The merchant_pk of a MerchantCert of merchant_id valid until at least valid_until; false if
 * the caller knows none. Called from the verifying thread (a worker thread at the broker). */
typedef bool (*mp_custody_key_fn)(void *arg, const uint8_t merchant_id[MP_ID_LEN],
				  uint64_t valid_until, uint8_t pk[MP_PK_LEN]);

struct mp_custody_event {
	uint32_t hseq;
	uint8_t merchant_id[MP_ID_LEN]; /* the holder of epoch hseq */
	struct mp_custody_point point;	/* event 0: (0, 0, root) */
	uint8_t stmt_hash[MP_HASH_LEN]; /* event 0: stmt_hash(ChannelCert), or of the Bind */
};

/* Segment s >= 1 as established by Transfer s and the Cap that ended segment s-1. */
struct mp_custody_cap {
	uint32_t seg_seq;	       /* s, the new segment */
	uint32_t hseq;		       /* the epoch whose holder signed the Cap */
	uint8_t holder[MP_ID_LEN];     /* all zero when by_broker */
	bool by_broker;		       /* signed by the broker for a channel no merchant held yet */
	struct mp_custody_point point; /* (s-1, cap_index, w_cap) */
	uint32_t declared_last;
	uint8_t transfer_hash[MP_HASH_LEN];
	uint8_t cap_hash[MP_HASH_LEN];
};

enum mp_custody_rule {
	MP_CUSTODY_OK,
	MP_CUSTODY_TOO_MANY,	    /* more than MP_MAX_HANDOFFS Handoffs */
	MP_CUSTODY_BAD_CHANNEL,	    /* the caller's channel description is unusable */
	MP_CUSTODY_SIGNER_UNKNOWN,  /* no MerchantCert of the expected signer */
	MP_CUSTODY_TYPE,	    /* Signed.type is not 6 */
	MP_CUSTODY_SIGNER,	    /* Signed.signer_pk is not the expected signer's key */
	MP_CUSTODY_SIGNATURE,	    /* the signature does not verify */
	MP_CUSTODY_MALFORMED,	    /* strict parse or a field of the wrong length */
	MP_CUSTODY_CHANNEL,	    /* channel_id is another channel */
	MP_CUSTODY_HSEQ,	    /* hseq is not h */
	MP_CUSTODY_PREV_HASH,	    /* prev_handoff_hash does not link to event h-1 */
	MP_CUSTODY_FROM_MID,	    /* from_mid is not the merchant of event h-1 */
	MP_CUSTODY_SELF_HANDOFF,    /* to_mid == from_mid */
	MP_CUSTODY_SEGMENTS_HEAD,   /* segments_head is not the head of the point's segment */
	MP_CUSTODY_OUT_OF_RANGE,    /* at_index outside [seg_start, n] */
	MP_CUSTODY_INDEX_BACKWARDS, /* at_index below the previous event's index */
	MP_CUSTODY_EXHAUSTED,	    /* at_index == n: an exhausted channel is not handed off */
	MP_CUSTODY_W_AT,	    /* w_at does not verify in its segment */
	MP_CUSTODY_STOPPED,	    /* *stop turned true while hashing: no verdict */
	/* Transfer/Cap pairs (seg_seq in the result) */
	MP_CUSTODY_SEGMENTS_ODD,  /* the segment statements are not Transfer/Cap pairs */
	MP_CUSTODY_SEG_SEQ,	  /* new_seg_seq is not s (Transfer or Cap) */
	MP_CUSTODY_PREV_SEG_HASH, /* prev_seg_hash is not the head of segment s-1 */
	MP_CUSTODY_CAP_LINK,	  /* transfer_hash, or holder_epoch != the Cap's hseq */
	MP_CUSTODY_CAP_EPOCH,	  /* the Cap's hseq names no epoch before the next Handoff */
	MP_CUSTODY_CAP_RANGE,	  /* cap_index outside its epoch, segment, or above declared_last */
	MP_CUSTODY_TRANSFER_SHORT, /* cap_index + new_len < n: the new chain cannot reach n */
	MP_CUSTODY_W_CAP,	   /* w_cap does not verify in segment s-1 */
	MP_CUSTODY_SEGMENT_ORDER,  /* a Handoff's point is not in the latest segment of its time */
};

struct mp_custody_result {
	enum mp_custody_rule rule;
	uint32_t hseq;	  /* the Handoff that broke it (0: the chain as a whole) */
	uint32_t seg_seq; /* the segment whose Transfer/Cap broke it (0: none) */
	char detail[192];
};

/* Verify Handoffs 1..n_handoffs of ch in order. events must hold n_handoffs + 1 entries; on
 * MP_CUSTODY_OK all are filled (event 0 from holder0), otherwise events 0..hseq-1 are (and
 * for MP_CUSTODY_W_AT event hseq too, with the point that failed).
 * h is a hasher of the calling thread; stop may be NULL (never stop). */
enum mp_custody_rule mp_custody_verify(const struct mp_custody_channel *ch,
				       MpSigned *const *handoffs, size_t n_handoffs,
				       mp_custody_key_fn key, void *key_arg, struct mp_hasher *h,
				       const atomic_bool *stop, struct mp_custody_event *events,
				       struct mp_custody_result *res);

/* Everything a party holds for a channel: Handoffs 1..H and the Transfer/Cap pairs of
 * segments 1..S as statements Transfer 1, Cap 1, Transfer 2, Cap 2, ... */
struct mp_custody_evidence {
	MpSigned *const *handoffs;
	size_t n_handoffs;
	MpSigned *const *segment_stmts;
	size_t n_segment_stmts;
};

/* Verify Handoffs and Transfer/Cap pairs together, in the order they were signed: the pairs
 * whose Cap was signed in epoch g are checked once events 0..g are, before Handoff g+1.
 *
 * Per pair s, in this order (the first rule broken is the result):
 *   Transfer: type 7 -> signer_pk = owner_pk of segment s-1 -> signature -> strict parse ->
 *     lengths -> channel_id -> new_seg_seq == s -> prev_seg_hash = head of segment s-1
 *   Cap: its hseq g (read before parsing, to know the expected signer) names an epoch already
 *     verified -> type 8 -> signer_pk = the key of the merchant of event g (or, for epoch 0
 *     of a channel issued without holder0, the broker key, and then cap_index must be 0) ->
 *     signature ->
 *     strict parse -> lengths -> channel_id -> new_seg_seq == s -> transfer_hash =
 *     stmt_hash(Transfer s) and Transfer.holder_epoch == g -> point in segment s-1 ->
 *     cap_index in [epoch g's start, its end if Handoff g+1 is known], within segment s-1,
 *     < n and <= declared_last -> cap_index + new_len >= n -> w_cap verifies (hashes)
 * A Handoff's point must lie in the latest segment at its time (segment_order), and its
 * segments_head must be that segment's head. More than MP_MAX_SEGMENTS - 1 pairs is too_many.
 * events: n_handoffs + 1 entries; segments: n_segment_stmts / 2 + 1 (segment 0 first, each
 * ended by the next one's Cap); caps: n_segment_stmts / 2 (may be NULL when there are none).
 * On MP_CUSTODY_OK all are filled. */
enum mp_custody_rule
mp_custody_verify_all(const struct mp_custody_channel *ch, const struct mp_custody_evidence *ev,
		      mp_custody_key_fn key, void *key_arg, struct mp_hasher *h,
		      const atomic_bool *stop, struct mp_custody_event *events,
		      struct mp_custody_segment *segments, struct mp_custody_cap *caps,
		      struct mp_custody_result *res);

/* A stable lower-case name for logs and stored evidence ("w_at", "self_handoff", ...). */
const char *mp_custody_rule_name(enum mp_custody_rule rule);
/* The protocol status answering a chain that broke the rule (OK for MP_CUSTODY_OK). */
MpCode mp_custody_rule_code(enum mp_custody_rule rule);

enum mp_point_verdict {
	MP_POINT_VALID,
	MP_POINT_INVALID,
	MP_POINT_STOPPED, /* *stop turned true: no verdict */
};

/* Verify point pt (absolute index, in segment seg, seg_start <= index <= seg start + len) from
 * the nearest of the segment's root and the given verified points of the same segment, above or
 * below; *cost (may be NULL) receives the hashes it took. */
enum mp_point_verdict mp_custody_point_verify(const struct mp_custody_segment *seg,
					      const struct mp_custody_point *verified,
					      size_t n_verified, const struct mp_custody_point *pt,
					      struct mp_hasher *h, const atomic_bool *stop,
					      uint64_t *cost);
