/* A byte-forwarding proxy in front of the test cluster's Unix socket (a thread of the test), so
 * that a test can lose the answer of a statement that did commit: the connection breaks, or
 * falls silent, after COMMIT, the case a client can only learn about by retrying. */
#pragma once
#include <stdbool.h>

#include "harness.h"

struct pg_proxy;

/* Listen in DIR/pgproxy (as PostgreSQL's socket .s.PGSQL.5432) and forward every connection to
 * DIR/pg. Fails the test if it cannot. */
struct pg_proxy *pg_proxy_start(const struct net *n);
/* libpq conninfo that goes through the proxy. */
void pg_proxy_conninfo(const struct net *n, char *out, size_t len);
/* The next bytes the server sends on the link of backend `backend_pid` are dropped; close_client:
 * that link is closed too (the client sees the connection break), else it stays open and mute (the
 * client waits for an answer that never comes). The links after it are forwarded normally. */
void pg_proxy_lose_next_answer(struct pg_proxy *p, int backend_pid, bool close_client);
/* True once that answer was lost. */
bool pg_proxy_answer_lost(struct pg_proxy *p);
void pg_proxy_stop(struct pg_proxy *p);
