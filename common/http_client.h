/* HTTP/1.1 exchanges from a daemon's loop: libevent's evhttp client, resolved with the daemon's
 * asynchronous resolver, a deadline on connect, send and answer (libevent's, per step), and a
 * few idle connections kept per client for the next exchange to the same host:port (HTTP
 * keep-alive). merchantd's gateway forwards to its upstream with it (gateway_upstream.c),
 * walletd fetches from gateways (http_fetch.c).
 *
 * What the caller keeps of an answer is copied out of libevent's request by its copy function,
 * inside libevent's callback (which frees the request after it returns); done gets it later,
 * from a zero-delay event, never from inside libevent (whose callback may run inside
 * evhttp_make_request, a connection failing at once). Loop thread only. */
#pragma once
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;

struct mp_http_limits {
	unsigned timeout_s; /* connect, send, answer: each */
	size_t max_body;    /* answer bodies above: no answer */
	size_t max_headers; /* answer headers above: no answer */
	unsigned keep_idle; /* idle connections kept for reuse, 0: one connection per exchange */
};

/* One exchange: the request's method and target, then what is done with it. */
struct mp_http_exchange {
	enum evhttp_cmd_type method;
	const char *uri; /* origin-form */
	/* Headers (Host is added) and body of the request; false: out of memory. */
	bool (*fill)(void *arg, struct evhttp_request *req);
	/* What the caller keeps of an answer (status > 0); NULL: out of memory (no answer). */
	void *(*copy)(struct evhttp_request *answer);
	void (*discard)(void *copy); /* frees a copy that done will not get */
	/* copy: the answer (the callee's), or NULL and why none came. */
	void (*done)(void *arg, void *copy, const char *why);
	void *arg;
};

struct mp_http_client;
struct mp_http_call;

struct mp_http_client *mp_http_client_new(struct event_base *base, struct evdns_base *dns,
					  const struct mp_http_limits *limits);
/* Every exchange in progress dropped (done not called), the idle connections closed. */
void mp_http_client_free(struct mp_http_client *c);
/* Every exchange in progress ends now: done(arg, the answer if it was already copied, else
 * NULL and why); exchanges sent from such a done are refused (NULL). */
void mp_http_client_abort(struct mp_http_client *c, const char *why);
/* Exchanges in progress. */
bool mp_http_client_busy(const struct mp_http_client *c);

/* Send x to host:port; NULL (nothing sent, done never called) when out of memory or libevent
 * refused the request. A connection that fails is reported through done. done may free the
 * client. */
struct mp_http_call *mp_http_send(struct mp_http_client *c, const char *host, uint16_t port,
				  const struct mp_http_exchange *x);
/* Drop an exchange whose done has not run: it never will; its connection is closed. */
void mp_http_cancel(struct mp_http_call *call);
