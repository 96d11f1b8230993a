/* The fixed world the custody fuzz target verifies chains in, shared with the seed generator:
 * a channel of N units (holder0 = merchant 1, segment 0 owned by owner key 0), three merchants,
 * four owner keys, two hash chains (segment 0's and one for a new segment), and the record
 * format of a fuzz input:
 *   record = kind byte, be16 length, body (protobuf of the statement)
 *   kind: low 2 bits 0 Handoff, 1 Transfer, 2 Cap, 3 a raw Signed (taken as a Handoff);
 *         bits 2-3 the signer: for a Handoff or Cap merchant 1..3 (0: the broker key), for a
 *         Transfer owner key 0..3.
 * The target signs each body with the chosen key as the kind's statement type. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "custody.h"
#include "sig.h"
#include "stmt.h"

#define WORLD_N		  64
#define WORLD_NEW_LEN	  64 /* the new segment's chain length */
#define WORLD_MERCHANTS	  3
#define WORLD_OWNERS	  4
#define WORLD_MAX_RECORDS (MP_MAX_HANDOFFS + 2 * MP_MAX_SEGMENTS)
#define WORLD_KEY_VALID	  1800000000u

enum record_kind { RECORD_HANDOFF, RECORD_TRANSFER, RECORD_CAP, RECORD_RAW };

struct world {
	struct mp_key merchant[WORLD_MERCHANTS + 1]; /* 1..3 */
	uint8_t mid[WORLD_MERCHANTS + 1][MP_ID_LEN];
	struct mp_key owner[WORLD_OWNERS];
	struct mp_key broker;
	uint8_t channel_id[MP_ID_LEN], cert_hash[MP_HASH_LEN];
	uint8_t nonce0[MP_NONCE_LEN], nonce1[MP_NONCE_LEN];
	uint8_t w0[WORLD_N + 1][MP_HASH_LEN];	    /* segment 0's words by index */
	uint8_t w1[WORLD_NEW_LEN + 1][MP_HASH_LEN]; /* the new chain's words, chain-relative */
	struct mp_custody_segment seg0;
	struct mp_custody_channel ch;
	struct mp_hasher *hasher;
};

/* Build the world (deterministic). False if a key or the hasher cannot be made. */
bool world_init(struct world *w);
void world_free(struct world *w);
/* The MerchantCert lookup of the verifier: merchants 1..3. */
bool world_key(void *arg, const uint8_t merchant_id[MP_ID_LEN], uint64_t valid_until,
	       uint8_t pk[MP_PK_LEN]);
/* Sign body as a statement of type with key. NULL if out of memory. */
MpSigned *world_sign(const struct mp_key *key, uint32_t type, const uint8_t *body, size_t len);
