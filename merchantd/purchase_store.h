/* Purchases in merchantd's store (table purchases; purchase.h). A purchase's row is inserted
 * by its batch entry (ENTRY_PURCHASE) before its first chunk is sent; the Pays that pay its
 * chunks update its paid count in their own batch's transaction, with their journal rows.
 * At start the newest purchase of each channel is loaded (older ones were replaced). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "purchase.h"
#include "store.h"

bool purchase_store_migrate(struct store *s);
bool purchase_store_put(struct store *s, const struct purchase *p, int64_t now);
bool purchase_store_paid(struct store *s, const uint8_t id[PURCHASE_ID_LEN], uint32_t paid);
/* Each channel's newest purchase, in the order they were made; each(arg, p) takes p. False
 * (logged) on a store error or an unreadable row. */
typedef void (*purchase_each_fn)(void *arg, struct purchase *p);
bool purchase_store_load(struct store *s, purchase_each_fn each, void *arg);

/* One row of the listing (admin `purchases`). */
struct purchase_listed {
	int64_t seq; /* the row's order: the listing's paging key */
	struct purchase p;
	int64_t created_at;
};
typedef void (*purchase_list_fn)(void *arg, const struct purchase_listed *row);
/* At most limit purchases with seq below `before` (0: from the newest), newest first; false
 * (logged) on a store error. */
bool purchase_store_list(struct store *s, int64_t before, unsigned limit, purchase_list_fn each,
			 void *arg);
