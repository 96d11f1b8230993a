/* Goods bought chunk by chunk: the ChunkReq handler (chunk.c) and the chunk reads on the worker
 * pool that answer it (chunk_read.c). docs/goods.md "Buying"; purchase.h has the rules. */
#pragma once
#include <stdint.h>

#include "merchant.h"
#include "purchase.h"

/* Answer a ChunkReq; p fills the purchase's fields when given, data the chunk's bytes. */
void chunk_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		 const char *detail, const struct purchase *p, const struct channel *ch,
		 uint32_t chunk, const uint8_t *data, size_t len);
/* Read chunk k of p on the worker pool and answer it (OK with the bytes, or why not). False if
 * the pool's queue is full (nothing queued, nothing answered). */
bool chunk_read_submit(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		       const struct channel *ch, struct purchase *p, uint32_t k);
