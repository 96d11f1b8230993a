/* merchantd's custody records in its SQLite store (tables custody, epochs, peer_certs; store.c
 * creates them): the Handoffs received and signed per channel, the epochs it held and handed
 * off (kept for redemption only) and the MerchantCerts of the merchants that signed them.
 * Writes run inside a batch's transaction on the store thread (store_commit_batch); reads on
 * the loop's connection see only committed batches. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

struct store;

/* Store thread, inside the batch transaction. */
bool custody_store_handoff(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			   const struct custody_write *cw);
bool custody_store_takeover(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			    const struct custody_write *cw, const struct channel_row *row);

/* The channel's Handoffs by ascending hseq (each data malloc'd; free with custody_blobs_free).
 * False on a store error. */
bool custody_store_chain(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			 struct custody_blob **out, size_t *n);
/* The stored Handoff hseq of the channel (data malloc'd); false if absent. */
bool custody_store_get(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq,
		       struct custody_blob *out);
/* The body of the stored Handoff hseq of the channel (free with
 * micropay__v1__handoff__free_unpacked); NULL if absent or unreadable. */
Micropay__V1__Handoff *
custody_store_handoff_body(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq);
/* The highest hseq recorded for the channel, 0 if none. */
uint32_t custody_store_max_hseq(struct store *s, const uint8_t channel_id[MP_ID_LEN]);
/* A peer's stored MerchantCert (malloc'd); false if absent. */
bool custody_store_peer_cert(struct store *s, const uint8_t mid[MP_ID_LEN], uint8_t **cert,
			     size_t *len);

/* Epochs we held and handed off with points above what the broker credited. */
struct held_epoch {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq, seg_seq, end_index; /* the end point (seg_seq, end_index, w_end) */
	uint8_t w_end[MP_HASH_LEN];
};
/* At most max of them (malloc'd array); the count, or -1 on a store error. */
int custody_store_unredeemed_epochs(struct store *s, size_t max, struct held_epoch **out);

void custody_blobs_free(struct custody_blob *b, size_t n);
