/* The gateway's upstream: one HTTP/1.1 request per client request, on a connection of its own
 * (evhttp client, resolved with the daemon's asynchronous resolver), with a deadline. The
 * answer is copied out of libevent's request before its callback returns. */
#pragma once
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct evbuffer;

struct gw_upstream_call;

struct gw_upstream {
	struct event_base *base;
	struct evdns_base *dns;
	char host[256];
	uint16_t port;
	uint32_t timeout_s;		/* connect, send and answer, each */
	uint64_t max_response;		/* body bytes */
	struct gw_upstream_call *calls; /* every call not yet freed (sent or being reaped) */
};

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
/* At shutdown: every call still held is freed (done is not called). */
void gw_upstream_free_all(struct gw_upstream *up);
/* Copy a's end-to-end headers into out. */
void gw_headers_copy(const struct evkeyvalq *from, struct evkeyvalq *out);
