/* The worker-pool half of making an offer (offer.c): the item's file read chunk by chunk,
 * each chunk sealed under the offer's key and prefix (common/sealed.h) only to be hashed;
 * nothing of the ciphertext is kept. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "goods_read.h"
#include "offer.h"

struct merchant;

struct offer_hashed {
	enum goods_read outcome; /* GOODS_OK: the hash below is the whole file's, unchanged */
	int err;		 /* GOODS_FAILED: errno (0: a sealing or memory failure) */
	struct goods_seen seen;	 /* the file's mtime and identity while it was read */
	uint8_t ciphertext_hash[32];
};

/* r: the outcome, NULL if the job was cancelled (shutdown). On the loop. */
typedef void (*offer_hashed_fn)(void *arg, const struct offer_hashed *r);

/* Hash o's item sealed under o's key and prefix on the worker pool (o is copied: the caller
 * may free it meanwhile). False if the queue is full or memory short (done never called). */
bool offer_hash_submit(struct merchant *m, const struct offer *o, offer_hashed_fn done, void *arg);
