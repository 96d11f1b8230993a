/* The HTTP 402 gateway's parts (gateway.h): gateway.c (listener, requests, drain),
 * gateway_verify.c (a payment's checks), gateway_charge.c (upstream, charging, commit),
 * gateway_reply.c (what the client is sent), gateway_receipt.c (a Receipt in the answer). Loop
 * thread only. */
#pragma once
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "gateway_header.h"
#include "gateway_routes.h"
#include "gateway_upstream.h"
#include "merchant.h"

enum call_state {
	CALL_FORWARDED,	 /* a free route: waiting for the upstream */
	CALL_HELD,	 /* verified, the channel held: waiting for the upstream */
	CALL_WAIT_ROOM,	 /* the upstream answered; the group commit is full */
	CALL_COMMITTING, /* the Pay is in the group commit */
	CALL_SIGNING,	 /* committed; its Receipt is being signed on the worker pool */
};

struct gw_call {
	struct gateway *g;
	struct gw_call *prev, *next;
	struct evhttp_request *req;
	const struct gw_route *route;
	char method[8];
	enum call_state state;
	struct channel *ch; /* HELD and after */
	struct gw_payment pay;
	uint64_t credit;	      /* COMMITTING: the channel's credit after this payment */
	struct gw_upstream_call *up;  /* FORWARDED, HELD */
	struct gw_answer *answer;     /* WAIT_ROOM, COMMITTING */
	struct event *deadline;	      /* the upstream's whole answer, then the room's wait */
	struct event *retry;	      /* WAIT_ROOM: looks for room every millisecond */
	char *receipt_b64, *cert_b64; /* SIGNING done: the Receipt and our MerchantCert */
	char receipt_error[160];      /* a Receipt asked for and not given: why */
};

struct gateway {
	struct merchant *m;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	SSL_CTX *tls; /* HTTPS ([gateway] tls_cert), or NULL: plain HTTP */
	struct gw_routes routes;
	struct gw_upstream up;
	struct gw_call *calls;
	size_t n_calls;
	bool stopping; /* draining: no new requests */
	bool stopped;  /* the worker pool is gone: no Receipt is signed */
};

/* gateway.c */
void gw_count(struct gateway *g, enum gateway_result r);
void gw_call_free(struct gw_call *c);

/* gateway_verify.c: what a refused payment is answered with (status 0: verified, c->ch set). */
struct gw_verdict {
	int status;
	const char *code, *detail;
};
struct gw_verdict gw_verify(struct gateway *g, struct gw_call *c, char *why, size_t whylen);
/* The request's path for the price list (malloc'd), or NULL when its target is refused. */
char *gw_request_path(struct evhttp_request *req);

/* gateway_charge.c */
void gw_forward(struct gw_call *c);

/* gateway_reply.c. A deferred request (common/http_deferred.h) is answered through
 * mp_http_reply, which reads its client again. */
void gw_reply_text(struct gateway *g, struct evhttp_request *req, int status, const char *reason,
		   const char *text);
/* A payment refused, or none sent: status, the requirements, "CODE detail" (X-Payment-Error). */
void gw_refuse(struct gateway *g, struct evhttp_request *req, const struct gw_route *r,
	       const char *method, const char *path, int status, const char *code,
	       const char *detail);
/* A request the gateway could not serve (stopping, out of memory): 503 with why, and on a paid
 * route X-Payment-Response with charged: false. */
void gw_unserved(struct gw_call *c, const char *why);
/* The upstream's answer (NULL: status with why), X-Payment-Response on a paid route. */
void gw_relay(struct gw_call *c, struct gw_answer *a, int status, const char *why, bool charged);
