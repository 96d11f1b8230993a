/* buy (buy.c, buy_admin.c): one purchase of an item at the channel's holder, chunk by chunk. */
#pragma once
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "ids.h"

#define BUY_PURCHASE_ID_LEN 16
#define BUY_ITEM_MAX	    128

struct pay_op;
struct wchannel;
struct event;
struct buy_file;
struct buy_key;

struct buy_op {
	struct wchannel *ch;	   /* channels live as long as the wallet */
	uint8_t target[MP_ID_LEN]; /* the merchant bought at (not the holder: a handoff) */
	struct pay_op *s;	   /* the session, once open */
	char item[BUY_ITEM_MAX + 1];
	char out[PATH_MAX];
	bool overwrite;
	bool has_max;
	uint64_t max_price;
	struct buy_file *file; /* OUT.part; NULL once renamed */
	/* the purchase, pinned by chunk 0's answer */
	bool pinned;
	uint8_t purchase_id[BUY_PURCHASE_ID_LEN];
	char purchase_hex[2 * BUY_PURCHASE_ID_LEN + 1];
	uint32_t chunks, chunk_size;
	uint64_t size, total;
	/* the last answer */
	uint32_t paid;	 /* chunks paid */
	uint64_t price;	 /* what chunk `paid` costs */
	uint64_t credit; /* the channel's credit at the merchant */
	uint32_t asked;	 /* the chunk asked for (chunks: the state) */
	uint32_t received;
	unsigned early_tries;
	uint64_t reported;   /* when the last progress line went out (monotonic s) */
	struct event *retry; /* TOO_EARLY: ask again */
	char what[BUY_ITEM_MAX + 64];
	bool answered;
	bool by_key;	     /* delivery=key: bought by key release (buy_key.c) */
	struct buy_key *key; /* ... its state */
};

/* The session's continuation (session.h) and the free of its argument. */
void buy_on_opened(struct pay_op *s, void *arg);
void buy_op_free(void *arg);
/* buy_key.c: the session is open and its Pays resolved: buy x->item by key release. */
void buy_key_start(struct buy_op *x);
void buy_key_free(struct buy_key *k);
/* buy.c: the progress line (logged at milestones, sent to the admin client). */
void buy_report(struct buy_op *x);
