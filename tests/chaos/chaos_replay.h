/* The chaos test's replays of Handoffs and Closes (protocol.md section 5: every statement a
 * party acknowledged can be produced again byte for byte; a retry gets the stored bytes, never
 * a re-signed statement).
 *
 * A record is taken once the operation was acknowledged (and its victim is running again):
 *   Handoff h: the bytes its successor stored (and proved holding with to the wallet), and the
 *     Move that asked for it: the wallet's, signed again with the segment's owner key read from
 *     the wallet's store (Ed25519 is deterministic: the same bytes; checked against the
 *     Handoff's move_hash);
 *   Close: the bytes the wallet's `close` answered, and the CloseRequest the wallet stored.
 * A replay sends the request again and checks the protocol's answer (protocol.md section 6):
 *   HandoffReq, as the successor (its TLS certificate), to the signer:
 *     EXPECT_SAME          the signer's latest custody event is that Handoff -> DUPLICATE_OK,
 *                          the Handoff byte for byte
 *     EXPECT_IN_CHAIN      the signer held the channel again and handed it on -> HANDED_OFF
 *                          with its latest Handoff, the recorded one byte for byte in the chain
 *     EXPECT_NO_STATEMENT  the signer holds the channel again -> CLOSED (its own Close), or
 *                          NOT_HOLDER / STALE_SEGMENT (the Move is for an epoch or segment it
 *                          ended); nothing to compare
 *   CloseReq, without a client certificate, to the holder: DUPLICATE_OK, the Close byte for
 *     byte.
 * An answer that says "retry" (LIMIT, INTERNAL, no answer: the daemon is still starting) is
 * retried for up to a minute. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "harness_merchant.h"

#define REPLAY_MAX 1024

/* What a replay needs of the network: merchants 1..n_merchants (identity, endpoint). */
struct chaos_peers {
	const struct net *net;
	const struct tmerchant *tm;
	const char (*ep)[128];
	const char *ca;
};

struct handoff_rec {
	uint8_t id[MP_ID_LEN];
	uint32_t hseq;
	int signer, successor; /* merchants */
	uint8_t *move, *handoff;
	size_t move_len, handoff_len;
};

struct close_rec {
	uint8_t id[MP_ID_LEN];
	int holder;
	uint8_t *request, *close;
	size_t request_len, close_len;
};

struct owner_key {
	uint8_t id[MP_ID_LEN];
	uint32_t seg_seq;
	struct mp_key key;
};

struct chaos_replays {
	struct handoff_rec handoffs[REPLAY_MAX];
	struct close_rec closes[REPLAY_MAX];
	struct owner_key keys[REPLAY_MAX];
	int n_handoffs, n_closes, n_keys;
	unsigned handoff_replays, close_replays, superseded, wallet_reads;
};

enum replay_expect { EXPECT_SAME, EXPECT_IN_CHAIN, EXPECT_NO_STATEMENT };

/* Record Handoff hseq of channel channel_hex from merchant signer to successor, asked for by a
 * Move of walletd `wallet` (stopped once per channel segment to read the owner key). NULL when
 * the table is full. */
const struct handoff_rec *chaos_handoff_record(struct chaos_replays *r, const struct chaos_peers *p,
					       const char *channel_hex, uint32_t hseq, int signer,
					       int successor, const char *wallet);
/* Send h's HandoffReq again and check the answer as `expect` says (closed: the channel is
 * closed, for EXPECT_NO_STATEMENT). */
void chaos_handoff_replay(struct chaos_replays *r, const struct chaos_peers *p,
			  const struct handoff_rec *h, enum replay_expect expect, bool closed);

/* Record the Close of channel_hex signed by merchant holder (close_b64: walletd's `close`
 * answer) with the CloseRequest walletd `wallet` stored (it is stopped for the read). NULL when
 * the table is full. */
const struct close_rec *chaos_close_record(struct chaos_replays *r, const struct chaos_peers *p,
					   const char *channel_hex, int holder,
					   const char *close_b64, const char *wallet);
/* Send c's CloseRequest again: DUPLICATE_OK with the same Close. */
void chaos_close_replay(struct chaos_replays *r, const struct chaos_peers *p,
			const struct close_rec *c);

void chaos_replays_free(struct chaos_replays *r);
