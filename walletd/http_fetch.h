/* One HTTP/1.1 exchange from walletd's loop (common/http_client.h: evhttp, the wallet's
 * asynchronous resolver, a deadline on connect, send and answer, a few connections kept open
 * for the next exchange): what the paying client of the HTTP 402 gateway (http_pay.c) needs of
 * an answer, copied out of libevent's request. */
#pragma once
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;

#define HTTP_FETCH_BODY_MAX (1u << 20) /* answer bodies above: no answer */

struct http_result {
	int status;
	char *required;	    /* Payment-Required, or NULL */
	char *response;	    /* X-Payment-Response, or NULL */
	char *error;	    /* X-Payment-Error, or NULL */
	char *content_type; /* Content-Type, or NULL */
	char *body;	    /* NUL-terminated copy (may hold NULs before it) */
	size_t body_len;
};
void http_result_free(struct http_result *r);

/* r: the answer (the callee's), or NULL when none came (why says what happened). */
typedef void (*http_fetch_fn)(void *arg, struct http_result *r, const char *why);

struct mp_http_client;

/* walletd's client (w->http): [wallet] idle_timeout per step, bodies up to HTTP_FETCH_BODY_MAX,
 * a few idle connections kept. NULL when out of memory. */
struct mp_http_client *http_fetch_client(struct event_base *base, struct evdns_base *dns,
					 unsigned timeout_s);

/* Send method uri (origin-form) with body and, if payment is not NULL, X-Payment to
 * host:port. False (done never called) when out of memory or libevent refused the request; a
 * connection that fails is reported through done. */
bool http_fetch_start(struct mp_http_client *http, const char *host, uint16_t port,
		      enum evhttp_cmd_type method, const char *uri, const char *body,
		      size_t body_len, const char *payment, http_fetch_fn done, void *arg);
