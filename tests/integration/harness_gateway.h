/* The gateway suites' parts (test_gateway.c, test_gateway_edges.c; docs/gateway.md): a network
 * whose m1 runs [gateway] in front of an upstream HTTP server on a thread of the test, a
 * blocking HTTP/1.1 client, and channels opened over TLS that pay by header. The tests run in
 * the process of the upstream's thread (CK_FORK=no). */
#pragma once
#include <event2/http.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

/* The upstream: echoes the target and body (X-Upstream: yes, X-Saw-Payment); /fail answers
 * 503, /fail408 408, /fail429 429; /slow/MS answers MS milliseconds later; /fake402 answers
 * 402 with the Payment-Required of a merchant of another broker; /mimic answers 402 with
 * mimic_required when it comes without X-Payment, else 200 without X-Payment-Response (a
 * gateway whose answer says nothing of the charge); /mimic-raise the same, but with a payment
 * 402 with the price raised to 7 and UNDERPAID (a price changed after the 402). */
struct gw_upstream {
	struct event_base *base;
	struct evhttp *http;
	pthread_t thread;
	struct event *tick; /* looks at stop: the base is not shared with this thread's lock */
	int stop;
	uint16_t port;
	int hits;		   /* requests seen (atomic) */
	char mimic_required[1024]; /* set before the thread is asked for /mimic */
};
void gw_upstream_start(struct gw_upstream *u, uint16_t port);
void gw_upstream_stop(struct gw_upstream *u);
int gw_upstream_hits(struct gw_upstream *u);

struct gw_net {
	struct net net;
	char ca[700], broker_ep[128], m1_ep[128], m1_hex[64];
	uint8_t m1[MP_ID_LEN];
	uint16_t port; /* the gateway's */
	struct gw_upstream up;
};
/* The network up, the upstream started, m1 restarted with [gateway] listen, upstream,
 * upstream_timeout = 2 and routes. */
void gw_net_up(struct gw_net *g, const char *routes);
void gw_net_down(struct gw_net *g);
uint16_t gw_free_port(void);

struct http_answer {
	int status;
	char head[8192];
	char body[8192];
};
/* One request to the gateway (Connection: close), payment the X-Payment value or NULL. */
void gw_http(const struct gw_net *g, const char *method, const char *uri, const char *body,
	     const char *payment, struct http_answer *a);
/* The JSON in header name of a (base64), or NULL. */
json_t *gw_header_json(const struct http_answer *a, const char *name);
/* X-Payment-Error names code. */
bool gw_has_error(const struct http_answer *a, const char *code);

/* A test wallet's channel of n units of 1, issued and opened at m1 over TLS. */
void gw_open_channel(const struct gw_net *g, struct tchannel *ch, uint32_t n);
/* An X-Payment for method uri body at index j of segment 0 (malloc'd). */
char *gw_payment(const struct tchannel *ch, uint32_t j, const char *method, const char *uri,
		 const char *body);
/* m1's last index of ch. */
int64_t gw_m1_last(const struct gw_net *g, const struct tchannel *ch);
