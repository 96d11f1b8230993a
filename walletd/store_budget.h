/* The budget for channels `buy` issues by itself (docs/goods.md "Buying with a budget"): table
 * auto_issues keeps one row per such channel (its escrow, the merchant and the item it was
 * issued for), written in the transaction that stores the channel, so that a restart neither
 * forgets what was committed nor issues a second channel for one buy. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_budget_migrate(struct wstore *s);
/* Inside the transaction that inserts the channel. */
bool wstore_budget_add(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
		       const uint8_t merchant_id[MP_ID_LEN], uint64_t amount, const char *item);
/* The escrow of every auto-issued channel the broker did not refuse (FAILED: nothing was
 * escrowed). False (logged) on a store error. */
bool wstore_budget_committed(struct wstore *s, uint64_t *committed);
/* 1 the channel was issued by buy, 0 not, -1 error. */
int wstore_budget_has(struct wstore *s, const uint8_t channel_id[MP_ID_LEN]);

struct wbudget_row {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t merchant_id[MP_ID_LEN];
	uint64_t amount, created_at;
	const char *item, *state; /* state: the channels row's, NULL if it has none */
};
/* Each row, oldest first. False (logged) on a store error. */
bool wstore_budget_each(struct wstore *s, void (*fn)(void *arg, const struct wbudget_row *r),
			void *arg);
