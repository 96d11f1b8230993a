/* A channel's segments as merchantd keeps them (protocol.md section 4; docs/transfer.md).
 * Segment 0 comes from the ChannelCert; segment s >= 1 from Transfer s and the Cap that ended
 * segment s-1. struct channel keeps the pairs 1..seg_seq in memory (segs[s-1] for segment s),
 * loaded from the store at start-up (segment_store.h) and appended when we sign a Cap
 * (transfer.c) or receive pairs with a Handoff (takeover.c). The channel's nonce, root,
 * owner_pk, seg_seq, seg_start and seg_head are those of its current segment, always the last
 * pair's (or the cert's while there is none). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merchant.h"

/* Transfer s and its Cap: the exact stored bytes and the fields we act on. */
struct segment_row {
	uint32_t seg_seq; /* s */
	uint32_t start;	  /* the Cap's index: segment s starts there */
	uint32_t len;	  /* Transfer.new_len */
	uint32_t hseq;	  /* the epoch whose holder signed the Cap */
	uint32_t declared_last;
	uint8_t nonce[MP_NONCE_LEN], root[MP_HASH_LEN], owner_pk[MP_PK_LEN];
	uint8_t transfer_hash[MP_HASH_LEN]; /* the segment's head */
	uint8_t w_cap[MP_HASH_LEN];	    /* the Cap's word: point (s-1, start, w_cap) */
	uint8_t *transfer, *cap;	    /* encoded Signed */
	size_t transfer_len, cap_len;
};

/* A copy of row (bytes duplicated) into *out; false on out of memory. */
bool segment_row_copy(struct segment_row *out, const struct segment_row *row);
void segment_row_clear(struct segment_row *row);
void segment_rows_free(struct segment_row *rows, size_t n);

/* The row of a verified Transfer (its fields) and Cap (index, word, hseq), with copies of both
 * statements' bytes. False if a field is missing or of the wrong length, or out of memory. */
bool segment_row_from(struct segment_row *row, const MpSigned *transfer, const MpSigned *cap);

/* Append row (copied) to the channel's pairs and make it the current segment: nonce, root,
 * owner, seg_seq, seg_start, seg_head. row->seg_seq must be ch->seg_seq + 1. */
bool channel_push_segment(struct channel *ch, const struct segment_row *row);
/* Make the cert's segment 0 current (at load, before any pair is pushed). */
void channel_segment0(struct channel *ch);
/* The owner key of segment k <= ch->seg_seq. */
const uint8_t *channel_segment_owner(const struct channel *ch, uint32_t k);

/* Decoded copies of the channel's pairs first..last (1-based, inclusive) as statements
 * Transfer, Cap, ... (malloc'd array; free with segment_stmts_free). *n = 0 for none. */
bool segment_stmts(const struct channel *ch, uint32_t first, uint32_t last, MpSigned ***out,
		   size_t *n);
void segment_stmts_free(MpSigned **stmts, size_t n);
