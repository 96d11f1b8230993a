/* HTTP 402 gateway (docs/gateway.md): merchantd in front of an HTTP service, each request paid
 * with one payword in a header, verified off-line as a Pay is, and charged only once the
 * upstream answered. Off unless [gateway] listen is set. */
#pragma once
#include <stdbool.h>

struct merchant;
struct batch_entry;

/* The LIMIT detail for requests on a channel a paid HTTP request holds. */
#define GATEWAY_HOLD_DETAIL "a paid HTTP request on this channel waits for its upstream; retry"

/* Listen if configured (true when off); false (logged) when the listener cannot start. */
bool gateway_start(struct merchant *m);
/* Drain (SIGTERM): no new connection or request; those in flight go on. */
void gateway_drain(struct merchant *m);
/* Nothing in flight (or no gateway). */
bool gateway_idle(const struct merchant *m);
/* No new requests; requests waiting for the upstream are answered 503, uncharged, their
 * channels released. Requests whose payment is committing stay until batch_drain. */
void gateway_stop(struct merchant *m);
/* After batch_drain: the listener and every connection freed. */
void gateway_free(struct merchant *m);
/* batch.c: the committed Pay of a paid HTTP request (e->http): answer it. */
void gateway_paid(struct merchant *m, struct batch_entry *e);
