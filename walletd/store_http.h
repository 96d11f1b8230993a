/* What walletd paid HTTP 402 gateways, per host (docs/gateway.md "The forward proxy"): table
 * http_spend, one row per host:port, the price of every charged request added once its
 * charge is stored. The forward proxy's budget per host is counted against it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_http_migrate(struct wstore *s);
/* Add one charged request of price to host. */
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
