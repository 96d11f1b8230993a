/* The goods a merchant sells (docs/goods.md): a catalogue file named by [merchant] catalogue,
 * one INI section per item, read and validated whole at start and on reload (SIGHUP or the
 * admin method `reload`); a catalogue that fails validation is never adopted, and a reload
 * that fails keeps the previous one.
 *
 *   [ITEM-ID]                   ; 1 .. 128 of A-Z a-z 0-9 . _ - /, no "..", no leading '/'
 *   file = /srv/goods/a.ogg     ; a regular, readable, non-empty file ...
 *   dir = /srv/goods/books      ; ... or a directory: each regular file NAME in it (not
 *                               ;     recursive, hidden files skipped) is item ITEM-ID/NAME
 *   price = 120                 ; minor units of [merchant] currency, 1 .. 2^63-1
 *   metered = false             ; true: price is per chunk; false: for the whole item
 *   chunk_size = 65536          ; bytes per chunk, 1024 .. 524288, default 65536
 *   delivery = chunks           ; chunks (default): bought chunk by chunk (purchase.h);
 *                               ; key: sold whole by key release (offer.h), metered = false
 *
 * Every item is delivered in chunks of chunk_size bytes (the last may be shorter). A metered
 * item costs `price` per chunk; an item priced whole costs `price` in all, split over its
 * chunks in shares that add up to it exactly (catalogue_chunk_price). Loading reads only
 * metadata (stat, the directory listing), never a file's contents. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CATALOGUE_ID_MAX	128
#define CATALOGUE_ITEMS_MAX	10000
#define CATALOGUE_CHUNK_MIN	1024u
#define CATALOGUE_CHUNK_MAX	(512u * 1024u)
#define CATALOGUE_CHUNK_DEFAULT (64u * 1024u)

struct catalogue_item {
	char id[CATALOGUE_ID_MAX + 1];
	char *path;	     /* the file */
	uint64_t price;	     /* minor units: per chunk if metered, else for the whole item */
	bool metered;	     /* priced per chunk */
	bool key_release;    /* delivery = key: sold by key release (offer.h), never metered */
	uint32_t chunk_size; /* bytes */
	uint64_t size;	     /* bytes, at load */
	uint64_t chunks;     /* ceil(size / chunk_size), >= 1 */
	uint64_t total;	     /* the whole item's price: price * chunks if metered, else price */
};

struct catalogue {
	struct catalogue_item *items; /* sorted by id, ids unique */
	size_t n;
	char *source; /* the catalogue file */
};

/* Read and validate the catalogue file at path. NULL with err ("file:line: ..." or
 * "file: item X: ...") on any fault: nothing half-loaded is returned. */
struct catalogue *catalogue_load(const char *path, char *err, size_t errlen);
/* An empty catalogue (no [merchant] catalogue configured). NULL on out of memory. */
struct catalogue *catalogue_empty(void);
void catalogue_free(struct catalogue *c);
/* The item with this id, or NULL. */
const struct catalogue_item *catalogue_find(const struct catalogue *c, const char *id);
/* What chunk k (0 .. chunks-1) costs: price if metered, else its share of the whole price,
 * floor(price*(k+1)/chunks) - floor(price*k/chunks) (shares add up to price exactly); 0 for
 * k >= chunks. */
uint64_t catalogue_chunk_price(const struct catalogue_item *it, uint64_t k);
/* What chunks 0 .. k-1 cost together (k clamped to chunks): the sum of their prices. */
uint64_t catalogue_price_through(const struct catalogue_item *it, uint64_t k);
/* The largest b (from <= b <= chunks) such that chunks from .. b-1 cost at most credit
 * together: how far a credit pays, in order, starting at chunk from. */
uint64_t catalogue_chunks_covered(const struct catalogue_item *it, uint64_t from, uint64_t credit);
/* Bytes of chunk k: chunk_size, the remainder for the last, 0 for k >= chunks. */
uint32_t catalogue_chunk_len(const struct catalogue_item *it, uint64_t k);
