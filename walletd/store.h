/* walletd's store (SQLite, file mode 0600, WAL, synchronous=FULL, exclusive lock so that no
 * second walletd can use the same store): the account key, channels with their secrets and
 * exact signed request bytes, chain checkpoints and in-flight Pays. Every write is durable when
 * the call returns; nothing is sent before the write it depends on has returned. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "proto.h"
#include "sig.h"
#include "util.h"

struct mp_clock;

struct wstore;
struct wchannel;

/* Make SQLite clear every block of its heap before freeing it (store_memory.c): the store's
 * pages and values hold seeds. Process-wide; call before any other SQLite call (false if SQLite
 * had started already). */
bool wstore_wipe_freed_memory(void);
struct wstore *wstore_open(const char *path, const struct mp_clock *clock, char *err,
			   size_t errlen);
void wstore_close(struct wstore *s);

/* ---- encryption (store_vault.c, docs/wallet-store.md) ---- */

struct wvault_kdf;
/* Right after wstore_open, before any other call: pass is the passphrase (len bytes) or NULL.
 * An encrypted store is opened with it (refused without one, or with a wrong one); a plain
 * store given one is encrypted in one transaction, its new key derived with scrypt N = 2^log2_n;
 * a plain store without one stays plain. Runs scrypt: seconds, never on a serving loop. False
 * with err set when refused. */
bool wstore_unlock(struct wstore *s, const char *pass, size_t len, uint8_t log2_n, char *err,
		   size_t errlen);
bool wstore_is_sealed(const struct wstore *s);
/* The stored vault record (WVAULT_RECORD_LEN bytes): 1 found, 0 a plain store, -1 error. */
int wstore_vault_record(struct wstore *s, uint8_t *record);
/* The data key wrapped again under kek (derived by kdf from a new passphrase); the secrets are
 * not touched. False in a plain store or on a store error. */
bool wstore_rewrap(struct wstore *s, const struct wvault_kdf *kdf, const uint8_t *kek);

/* A transaction around several writes (BEGIN IMMEDIATE ... COMMIT). */
bool wstore_begin(struct wstore *s);
bool wstore_commit(struct wstore *s);
void wstore_rollback(struct wstore *s);

/* 1 found, 0 absent, -1 error. */
int wstore_account_seed(struct wstore *s, uint8_t seed[MP_SK_LEN]);
bool wstore_set_account_seed(struct wstore *s, const uint8_t seed[MP_SK_LEN]);
/* The account's public key, recorded at the first start whatever holds the key. */
int wstore_account_pk(struct wstore *s, uint8_t pk[MP_PK_LEN]);
bool wstore_set_account_pk(struct wstore *s, const uint8_t pk[MP_PK_LEN]);
int wstore_account_id(struct wstore *s, uint8_t id[MP_ID_LEN]);
bool wstore_set_account_id(struct wstore *s, const uint8_t id[MP_ID_LEN]);

/* A new ISSUING channel with its secrets and the exact signed request (ch->request). */
bool wstore_channel_insert(struct wstore *s, const struct wchannel *ch,
			   const uint8_t chain_seed[MP_SEED_LEN],
			   const uint8_t owner_seed[MP_SK_LEN]);
/* ACTIVE with ch->cert, issued_at, pay_until and redeem_until. */
bool wstore_channel_activate(struct wstore *s, const struct wchannel *ch);
/* State and detail (detail may be NULL). */
bool wstore_channel_set_state(struct wstore *s, const uint8_t id[MP_ID_LEN], const char *state,
			      const char *detail);
bool wstore_channel_progress(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t last,
			     uint64_t credit);
/* The channel's holder, epoch and holder_cert (may be NULL) as in ch. */
bool wstore_channel_holder(struct wstore *s, const struct wchannel *ch);
/* The channel's owner key seed: 1 found, 0 absent, -1 error. */
int wstore_owner_seed(struct wstore *s, const uint8_t id[MP_ID_LEN], uint8_t seed[MP_SK_LEN]);
/* Every channel, oldest first; fn takes ownership of each (heap) channel. */
bool wstore_channels_load(struct wstore *s, void (*fn)(void *arg, struct wchannel *ch), void *arg);

bool wstore_checkpoint_put(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t index,
			   const uint8_t w[MP_HASH_LEN]);
bool wstore_checkpoint_get(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t index,
			   uint8_t w[MP_HASH_LEN]);

struct wstore_pay {
	uint32_t j;
	uint8_t w[MP_HASH_LEN];
	uint8_t order_ref[32];
	size_t order_ref_len;
};

/* Record a Pay as in flight and sent := j, in one transaction, before it is sent. */
bool wstore_inflight_add(struct wstore *s, const uint8_t id[MP_ID_LEN],
			 const struct wstore_pay *pay);
/* The merchant accepted Pay j: forget it and store last and credit, in one transaction. */
bool wstore_inflight_done(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint32_t last,
			  uint64_t credit);
/* The channel's in-flight Pays by ascending j (*out malloc'd); the count, or -1. */
int wstore_inflight_list(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_pay **out);

/* ---- customer-to-customer transfers (store_transfer.c; docs/transfer.md) ---- */

/* The channel's Transfer/Cap pairs 1..S in order (Transfer 1, Cap 1, ...; *out malloc'd, free
 * with wstore_stmts_free). */
bool wstore_segments_load(struct wstore *s, const uint8_t id[MP_ID_LEN], MpSigned ***out,
			  size_t *count);
void wstore_stmts_free(MpSigned **stmts, size_t count);

/* B's offer for a channel: its chain (checkpoints under chain_key), the exact TransferOffer
 * bytes shown, and the bundle once accepted (NULL before). */
struct wstore_offer {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t chain_key[MP_ID_LEN];
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t len, interval;
	uint8_t *offer;
	size_t offer_len;
	uint8_t *bundle;
	size_t bundle_len;
	uint64_t created_at;
};
/* Inside a transaction: forget our accepted offer for a channel (it came to us with it and we
 * gave it away since; a new offer for it comes next). No-op if there is none. */
bool wstore_offer_drop_accepted(struct wstore *s, const uint8_t id[MP_ID_LEN]);
bool wstore_offer_insert(struct wstore *s, const struct wstore_offer *o,
			 const uint8_t chain_seed[MP_SEED_LEN],
			 const uint8_t owner_seed[MP_SK_LEN]);
/* 1 found (o filled; free with wstore_offer_clear), 0 absent, -1 error. */
int wstore_offer_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_offer *o);
bool wstore_offers_each(struct wstore *s, void (*fn)(void *arg, const struct wstore_offer *o),
			void *arg);
void wstore_offer_clear(struct wstore_offer *o);
/* The offer's owner key seed (the new segment's key): 1 found, 0 absent, -1 error. */
int wstore_offer_seed(struct wstore *s, const uint8_t id[MP_ID_LEN], uint8_t seed[MP_SK_LEN]);

/* Accepting a bundle, in one transaction: the channel row ACTIVE in ch's segment (chain
 * secrets copied from the offer row), pairs 1..s, the SegmentClaimReq to send, and the bundle
 * on the offer row. */
struct wstore_accept {
	MpSigned *const *segments;
	size_t n_segments;
	const uint8_t *claim_req;
	size_t claim_req_len;
	const uint8_t *bundle;
	size_t bundle_len;
	bool returning; /* the channel is in this wallet, TRANSFERRED_OUT: its row is updated */
};
bool wstore_accept(struct wstore *s, const struct wchannel *ch, const struct wstore_accept *a);

/* B's SegmentClaimReq for (channel, seg_seq) and the broker's answer so far. */
/* The broker's answer to a received segment's SegmentClaim, as stored (column acked). */
enum wclaim_answer {
	WCLAIM_WAITING = 0, /* not acknowledged yet: sent again */
	WCLAIM_ACKED = 1,   /* OK or DUPLICATE_OK */
	WCLAIM_REFUSED = 2, /* CLOSED or CONFLICT: refused for good, never sent again */
};
struct wstore_claim {
	uint8_t *request;
	size_t request_len;
	enum wclaim_answer answer;
	char status[200];
};
int wstore_claim_get(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
		     struct wstore_claim *c);
void wstore_claim_clear(struct wstore_claim *c);
bool wstore_claim_answer(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
			 enum wclaim_answer answer, const char *status);

/* A channel's refund (store_refund.c): the exact signed RefundRequest and the broker's answer.
 * refunded: the broker answered OK or DUPLICATE_OK with the result below (written once). */
struct wstore_refund {
	MpSigned *request;
	bool refunded;
	uint64_t amount, refunded_at, not_before;
	uint8_t payout[MP_ID_LEN];
	bool has_payout;
	char status[200]; /* the broker's last answer, for the operator */
};
bool wstore_refund_insert(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request);
/* A request of a channel not refunded yet replaced (the early refund after a close). */
bool wstore_refund_replace(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request);
/* 1 found (free with wstore_refund_clear), 0 absent, -1 error. */
int wstore_refund_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_refund *r);
void wstore_refund_clear(struct wstore_refund *r);
/* Store the answer; a refund once recorded as refunded is never changed. */
bool wstore_refund_answer(struct wstore *s, const uint8_t id[MP_ID_LEN],
			  const struct wstore_refund *r);

/* A's transfer out: the offer it answers, the exact signed Transfer (state TRANSFERRING, one
 * transaction), then the bundle (state TRANSFERRED_OUT, one transaction). */
struct wstore_xfer {
	uint8_t *offer;
	size_t offer_len;
	MpSigned *transfer;
	uint8_t *bundle; /* NULL while TRANSFERRING */
	size_t bundle_len;
};
bool wstore_xfer_begin(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *offer,
		       size_t offer_len, const MpSigned *transfer);
bool wstore_xfer_done(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *bundle,
		      size_t bundle_len);
/* Replace the stored Transfer `dead` (still without a bundle) by `transfer` (docs/transfer.md,
 * "Bound while TRANSFERRING"): 1 done, 0 the stored one is not `dead` any more, -1 error. */
int wstore_xfer_resign(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *dead,
		       const MpSigned *transfer);
int wstore_xfer_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_xfer *x);
void wstore_xfer_clear(struct wstore_xfer *x);
