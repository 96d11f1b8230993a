/* The gateway's upstream requests (gateway_upstream.h).
 *
 *   SENT --answer or failure (libevent's callback)--> answer copied out, done(arg, a | NULL)
 *        --> DONE: the connection is freed from a zero-delay timer, never inside libevent's own
 *            callback (which frees the request after it returns)
 *   SENT --gw_upstream_cancel--> the connection freed at once (its request with it, without a
 *        callback)
 */
#include <sys/queue.h>

#include "gateway_upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway_header.h"
#include "log.h"

struct gw_upstream_call {
	struct gw_upstream *up;
	struct gw_upstream_call *prev, *next; /* up->calls */
	struct evhttp_connection *evcon;
	struct event *reap; /* frees evcon after libevent's callback returned */
	gw_upstream_done_fn done;
	void *arg;
	bool answered;		  /* libevent's callback ran: the request is libevent's to free */
	struct gw_answer *answer; /* DELIVERING: handed to done */
	const char *why;	  /* DELIVERING without an answer */
};

/* Hop-by-hop headers (RFC 9110 section 7.6.1), Expect (the body is sent whole), and the
 * payment headers, which only the gateway writes: never passed on. */
static bool hop_by_hop(const char *key)
{
	static const char *const names[] = {"Connection",
					    "Keep-Alive",
					    "Proxy-Connection",
					    "Proxy-Authenticate",
					    "Proxy-Authorization",
					    "TE",
					    "Trailer",
					    "Transfer-Encoding",
					    "Upgrade",
					    "Host",
					    "Content-Length",
					    "Expect",
					    GW_HEADER_PAYMENT,
					    GW_HEADER_REQUIRED,
					    GW_HEADER_RESPONSE,
					    GW_HEADER_ERROR};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(key, names[i]) == 0)
			return true;
	return false;
}

/* A header the Connection header names (hop-by-hop too). */
static bool named_by_connection(const struct evkeyvalq *from, const char *key)
{
	const char *conn = evhttp_find_header(from, "Connection");
	size_t len = strlen(key);
	for (const char *p = conn; p && *p;) {
		p += strspn(p, " \t,");
		size_t n = strcspn(p, " \t,");
		if (n == len && strncasecmp(p, key, n) == 0)
			return true;
		p += n;
	}
	return false;
}

void gw_headers_copy(const struct evkeyvalq *from, struct evkeyvalq *out)
{
	for (const struct evkeyval *h = TAILQ_FIRST(from); h; h = TAILQ_NEXT(h, next))
		if (!hop_by_hop(h->key) && !named_by_connection(from, h->key))
			evhttp_add_header(out, h->key, h->value);
}

void gw_answer_free(struct gw_answer *a)
{
	if (!a)
		return;
	evhttp_clear_headers(&a->headers);
	if (a->body)
		evbuffer_free(a->body);
	free(a);
}

static void call_free(struct gw_upstream_call *c)
{
	gw_answer_free(c->answer);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->up->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->evcon)
		evhttp_connection_free(c->evcon);
	if (c->reap)
		event_free(c->reap);
	free(c);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct gw_upstream_call *c = arg;
	struct gw_answer *a = c->answer;
	c->answer = NULL;
	c->done(c->arg, a, a ? NULL : c->why);
	call_free(c);
}

static struct gw_answer *answer_copy(struct evhttp_request *r)
{
	struct gw_answer *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	TAILQ_INIT(&a->headers);
	a->code = evhttp_request_get_response_code(r);
	const char *reason = evhttp_request_get_response_code_line(r);
	snprintf(a->reason, sizeof(a->reason), "%s", reason ? reason : "");
	gw_headers_copy(evhttp_request_get_input_headers(r), &a->headers);
	a->body = evbuffer_new();
	if (!a->body || evbuffer_add_buffer(a->body, evhttp_request_get_input_buffer(r)) != 0) {
		gw_answer_free(a);
		return NULL;
	}
	return a;
}

static void on_answer(struct evhttp_request *r, void *arg)
{
	struct gw_upstream_call *c = arg;
	c->answered = true;
	c->why = "the upstream did not answer (refused, reset, too large or timed out)";
	if (r && evhttp_request_get_response_code(r) > 0) {
		c->answer = answer_copy(r);
		if (!c->answer)
			c->why = "out of memory copying the upstream's answer";
	}
	event_active(c->reap, EV_TIMEOUT, 0);
}

static bool request_fill(const struct gw_upstream *cfg, struct evhttp_request *client,
			 struct evhttp_request *r)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(r);
	gw_headers_copy(evhttp_request_get_input_headers(client), out);
	char host[300];
	snprintf(host, sizeof(host), "%s:%u", cfg->host, cfg->port);
	evhttp_add_header(out, "Host", host);
	struct evbuffer *body = evhttp_request_get_input_buffer(client);
	size_t len = evbuffer_get_length(body);
	if (len) {
		char n[32];
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(out, "Content-Length", n);
		/* a copy: the client's body stays for the reference and for logging */
		if (evbuffer_add(evhttp_request_get_output_buffer(r), evbuffer_pullup(body, -1),
				 len) != 0)
			return false;
	}
	return true;
}

struct gw_upstream_call *gw_upstream_send(struct gw_upstream *cfg, struct evhttp_request *client,
					  gw_upstream_done_fn done, void *arg)
{
	struct gw_upstream_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->up = cfg;
	c->next = cfg->calls;
	if (c->next)
		c->next->prev = c;
	cfg->calls = c;
	c->done = done;
	c->arg = arg;
	c->reap = event_new(cfg->base, -1, 0, on_deliver, c);
	c->evcon =
	    c->reap ? evhttp_connection_base_new(cfg->base, cfg->dns, cfg->host, cfg->port) : NULL;
	struct evhttp_request *r = c->evcon ? evhttp_request_new(on_answer, c) : NULL;
	if (!r) {
		call_free(c);
		return NULL;
	}
	evhttp_connection_set_timeout(c->evcon, (int)cfg->timeout_s);
	evhttp_connection_set_retries(c->evcon, 0);
	evhttp_connection_set_max_body_size(c->evcon, (ev_ssize_t)cfg->max_response);
	evhttp_connection_set_max_headers_size(c->evcon, 64 * 1024);
	if (!request_fill(cfg, client, r)) {
		evhttp_request_free(r);
		call_free(c);
		return NULL;
	}
	if (evhttp_make_request(c->evcon, r, evhttp_request_get_command(client),
				evhttp_request_get_uri(client)) != 0) {
		/* a failed connect leaves r unlinked but not freed, unless it was answered (and
		 * freed) on the way */
		if (!c->answered)
			evhttp_request_free(r);
		call_free(c);
		return NULL;
	}
	return c;
}

void gw_upstream_cancel(struct gw_upstream_call *c)
{
	if (c)
		call_free(c);
}

void gw_upstream_free_all(struct gw_upstream *up)
{
	while (up->calls)
		call_free(up->calls);
}
