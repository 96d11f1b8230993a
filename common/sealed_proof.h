/* A BadKeyProof (docs/disputes.md "A key that does not open"): the merchant's key matches the
 * Offer's key_hash, the chunk is chunk k of the ciphertext the Offer's ciphertext_hash names,
 * and the key does not open it. Checked by the broker before it refunds; built by walletd when
 * a released key fails on a chunk.
 *
 *   proof --fields: key 32 bytes, k < count, a sealed chunk of 16 .. 512 KiB + 16 bytes, every
 *   path entry 32 bytes, at most MP_MAX_PROOF_PATH--(else)--> MALFORMED
 *     --SHA-256(key) != key_hash--> NOT_THE_KEY
 *     --the chunk and path do not hash to ciphertext_hash--> NOT_IN_OFFER
 *     --the key opens the chunk (nonce mp_sealed_prefix(key) || be32(k))--> OPENS
 *     --> PROVEN
 * Thread-safe; costs one AES-GCM pass over the chunk and path_len + 2 hashes. */
#pragma once
#include <stdint.h>

#include "proto.h"

/* The largest sealed chunk a proof may carry: the catalogue's largest chunk and its tag. */
#define MP_PROOF_CHUNK_MAX (512u * 1024u + 16u)
/* The smallest frame maximum a broker may give wallets: a DisputeReq carrying the largest
 * proof (MP_PROOF_CHUNK_MAX and an audit path of at most MP_MAX_PROOF_PATH hashes) with room
 * left for the Dispute and its custody chain. brokerd refuses a smaller [limits] max_frame. */
#define MP_PROOF_FRAME_MIN (768u * 1024u)

enum mp_bad_key_verdict {
	MP_BAD_KEY_PROVEN = 0,
	MP_BAD_KEY_MALFORMED,
	MP_BAD_KEY_NOT_THE_KEY,
	MP_BAD_KEY_NOT_IN_OFFER,
	MP_BAD_KEY_OPENS,
};

enum mp_bad_key_verdict mp_bad_key_check(const Micropay__V1__BadKeyProof *p,
					 const uint8_t key_hash[32],
					 const uint8_t ciphertext_hash[32]);
/* A line for logs and answers. */
const char *mp_bad_key_verdict_text(enum mp_bad_key_verdict v);
