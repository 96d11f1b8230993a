/* buy (buy.c, buy_admin.c): one purchase of an item at the channel's holder, chunk by chunk. */
#pragma once
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "ids.h"
#include "issue.h"

#define BUY_PURCHASE_ID_LEN 16
#define BUY_ITEM_MAX	    128

struct pay_op;
struct wchannel;
struct event;
struct buy_file;
struct buy_key;
struct wallet;
struct mp_admin_req;

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
	/* buy_budget.c: a channel issued for this buy within [wallet] auto_issue_budget */
	bool issued;		       /* x->ch was issued (or its issue resumed) by this buy */
	bool opening_unit;	       /* key: an auto-issued channel never paid, one unit first */
	struct wallet_issue_spec spec; /* ... the new channel (x->ch NULL until stored) */
	uint64_t escrow;	       /* ... its n * unit_value */
	struct wallet *w;	       /* while issuing */
	struct mp_admin_req *req;      /* ... */
	char endpoint[300];	       /* ... */
};

/* The session's continuation (session.h) and the free of its argument. */
void buy_on_opened(struct pay_op *s, void *arg);
void buy_op_free(void *arg);
/* buy_key.c: the session is open and its Pays resolved: buy x->item by key release. */
void buy_key_start(struct buy_op *x);
void buy_key_free(struct buy_key *k);
/* buy.c: the progress line (logged at milestones, sent to the admin client). */
void buy_report(struct buy_op *x);
/* buy_admin.c: the session at x->target on x->ch, then buy_on_opened; answers req on failure
 * (x freed). */
void buy_open(struct wallet *w, struct mp_admin_req *req, struct buy_op *x, const char *endpoint);

/* buy_budget.c (docs/goods.md "Buying with a budget"). */
/* ch (never NULL) can pay the item: its units left (and credit, by chunks) cover max_price, or
 * no max_price was given (the price is not known before chunk 0). */
bool buy_budget_fits(const struct buy_op *x, const struct wchannel *ch);
/* No channel fits x: plan one within the budget (x->spec, x->escrow; x->ch an ISSUING channel
 * issued for an earlier buy at this merchant, resumed). False (answered) if refused. */
bool buy_budget_plan(struct wallet *w, struct mp_admin_req *req, json_t *params, struct buy_op *x);
/* Issue the planned channel (or resend the resumed one's request), then buy_open. */
void buy_budget_issue(struct wallet *w, struct mp_admin_req *req, struct buy_op *x,
		      const char *endpoint);
/* By key: ch was issued by buy and never paid in segment 0 (the holder makes offers only on a
 * channel with a paid unit). */
bool buy_budget_needs_unit(struct wallet *w, const struct wchannel *ch);
