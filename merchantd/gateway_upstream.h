/* The gateway's upstream: one HTTP/1.1 request per client request (common/http_client.h: an
 * evhttp client resolved with the daemon's asynchronous resolver, with libevent's per-step
 * deadline, [gateway] upstream_idle connections kept open for the next requests). The answer
 * is copied out of libevent's request before its callback returns. */
#pragma once
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct evbuffer;

struct gw_upstream_call;

struct mp_http_client;

struct gw_upstream {
	struct mp_http_client *http;
	char host[256];
	uint16_t port;
};
/* The client to host:port; false when out of memory. */
bool gw_upstream_init(struct gw_upstream *up, struct event_base *base, struct evdns_base *dns,
		      uint32_t timeout_s, uint64_t max_response, uint32_t keep_idle);

/* An upstream answer, owned by whoever the done callback hands it to. */
struct gw_answer {
	int code;
	char reason[64];
	struct evkeyvalq headers; /* end-to-end headers only */
	struct evbuffer *body;
};
void gw_answer_free(struct gw_answer *a);

/* a: the answer (the callee owns it), or NULL with why when no answer came. */
typedef void (*gw_upstream_done_fn)(void *arg, struct gw_answer *a, const char *why);

/* Forward client's method, uri, end-to-end headers and body. NULL (nothing sent, done never
 * called) when out of memory. */
struct gw_upstream_call *gw_upstream_send(struct gw_upstream *up, struct evhttp_request *client,
					  gw_upstream_done_fn done, void *arg);
/* Drop a call whose done has not been called: it never will be. */
void gw_upstream_cancel(struct gw_upstream_call *c);
/* At shutdown: every call still held is dropped (done is not called), the client freed. */
void gw_upstream_free_all(struct gw_upstream *up);
/* Copy a's end-to-end headers into out. */
void gw_headers_copy(const struct evkeyvalq *from, struct evkeyvalq *out);
