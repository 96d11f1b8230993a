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
 * the cert's chain nonce and root, head = stmt_hash(ChannelCert). Later segments (customer
 * transfers) are refused for now with MP_CUSTODY_SEGMENT_UNSUPPORTED. */
struct mp_custody_segment {
	uint32_t seg_seq;
	uint32_t start; /* absolute cap index c; 0 for segment 0 */
	uint32_t len;
	uint8_t nonce[MP_NONCE_LEN];
	uint8_t root[MP_HASH_LEN];
	uint8_t head[MP_HASH_LEN]; /* segments_head while this is the latest segment */
};

/* (seg_seq, absolute index, word) */
struct mp_custody_point {
	uint32_t seg_seq;
	uint32_t index;
	uint8_t w[MP_HASH_LEN];
};

struct mp_custody_channel {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t cert_hash[MP_HASH_LEN]; /* stmt_hash(ChannelCert): Handoff 1's prev_handoff_hash */
	uint8_t holder0[MP_ID_LEN];
	uint32_t n;
	uint64_t key_valid_until; /* redeem_until + T_grace: signers' MerchantCerts must reach it */
	const struct mp_custody_segment *segments; /* segment 0 first */
	size_t n_segments;
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
	uint8_t stmt_hash[MP_HASH_LEN]; /* event 0: stmt_hash(ChannelCert) */
};

enum mp_custody_rule {
	MP_CUSTODY_OK,
	MP_CUSTODY_TOO_MANY,		/* more than MP_MAX_HANDOFFS Handoffs */
	MP_CUSTODY_BAD_CHANNEL,		/* the caller's channel description is unusable */
	MP_CUSTODY_SIGNER_UNKNOWN,	/* no MerchantCert of the expected signer */
	MP_CUSTODY_TYPE,		/* Signed.type is not 6 */
	MP_CUSTODY_SIGNER,		/* Signed.signer_pk is not the expected signer's key */
	MP_CUSTODY_SIGNATURE,		/* the signature does not verify */
	MP_CUSTODY_MALFORMED,		/* strict parse or a field of the wrong length */
	MP_CUSTODY_CHANNEL,		/* channel_id is another channel */
	MP_CUSTODY_HSEQ,		/* hseq is not h */
	MP_CUSTODY_PREV_HASH,		/* prev_handoff_hash does not link to event h-1 */
	MP_CUSTODY_FROM_MID,		/* from_mid is not the merchant of event h-1 */
	MP_CUSTODY_SELF_HANDOFF,	/* to_mid == from_mid */
	MP_CUSTODY_SEGMENT_UNSUPPORTED, /* seg_seq != 0: segments are not supported yet */
	MP_CUSTODY_SEGMENTS_HEAD,	/* segments_head is not the head of the point's segment */
	MP_CUSTODY_OUT_OF_RANGE,	/* at_index outside [seg_start, n] */
	MP_CUSTODY_INDEX_BACKWARDS,	/* at_index below the previous event's index */
	MP_CUSTODY_EXHAUSTED,		/* at_index == n: an exhausted channel is not handed off */
	MP_CUSTODY_W_AT,		/* w_at does not verify in its segment */
	MP_CUSTODY_STOPPED,		/* *stop turned true while hashing: no verdict */
};

struct mp_custody_result {
	enum mp_custody_rule rule;
	uint32_t hseq; /* the Handoff that broke it (0: the chain as a whole) */
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
