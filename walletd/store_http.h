/* What walletd paid HTTP 402 gateways, per host (docs/gateway.md "The forward proxy"): table
 * http_spend, one row per host:port, the price of every charged request added in the
 * transaction that stores its charge. The forward proxy's budget per host is counted against
 * it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_http_migrate(struct wstore *s);
/* A charged HTTP payment, in one transaction: the in-flight Pay j of channel id done (the
 * channel's last = j, its credit), and price added to what host was paid. */
bool wstore_http_charged(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint64_t credit,
			 const char *host, uint64_t price);
/* Add price to what host was paid: a payment whose charge is not known (its answer was lost). */
bool wstore_http_add(struct wstore *s, const char *host, uint64_t price);
/* What host was paid in all (0 if never). False (logged) on a store error. */
bool wstore_http_spent(struct wstore *s, const char *host, uint64_t *spent);

struct whttp_row {
	const char *host;
	uint64_t spent, requests, last_at;
};
/* Each host, most spent first. False (logged) on a store error. */
bool wstore_http_each(struct wstore *s, void (*fn)(void *arg, const struct whttp_row *r),
		      void *arg);
