/* The gateway's upstream requests (gateway_upstream.h): what is forwarded and what is copied
 * back; the exchange itself is common/http_client.c's.
 *
 *   SENT --answer or failure--> done(arg, a | NULL, why) from a zero-delay event
 *   SENT --gw_upstream_cancel--> the exchange dropped, its connection closed (no callback)
 */
#include <sys/queue.h>

#include "gateway_upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway_header.h"
#include "http_client.h"
#include "log.h"

struct gw_upstream_call {
	struct gw_upstream *up;
	struct mp_http_call *call;
	struct evhttp_request *client; /* until sent: what is forwarded */
	gw_upstream_done_fn done;
	void *arg;
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

static void on_done(void *arg, void *copy, const char *why)
{
	struct gw_upstream_call *c = arg;
	gw_upstream_done_fn done = c->done;
	void *done_arg = c->arg;
	free(c);
	done(done_arg, copy, why);
}

static void answer_discard(void *copy)
{
	gw_answer_free(copy);
}

static void *answer_copy(struct evhttp_request *r)
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

/* The client's end-to-end headers and a copy of its body (the client's body stays for the
 * reference and for logging). */
static bool request_fill(void *arg, struct evhttp_request *r)
{
	struct gw_upstream_call *c = arg;
	struct evkeyvalq *out = evhttp_request_get_output_headers(r);
	gw_headers_copy(evhttp_request_get_input_headers(c->client), out);
	struct evbuffer *body = evhttp_request_get_input_buffer(c->client);
	size_t len = evbuffer_get_length(body);
	if (!len)
		return true;
	char n[32];
	snprintf(n, sizeof(n), "%zu", len);
	return evhttp_add_header(out, "Content-Length", n) == 0 &&
	       evbuffer_add(evhttp_request_get_output_buffer(r), evbuffer_pullup(body, -1), len) ==
		   0;
}

bool gw_upstream_init(struct gw_upstream *up, struct event_base *base, struct evdns_base *dns,
		      uint32_t timeout_s, uint64_t max_response, uint32_t keep_idle)
{
	struct mp_http_limits limits = {.timeout_s = timeout_s,
					.max_body = (size_t)max_response,
					.max_headers = 64 * 1024,
					.keep_idle = keep_idle};
	up->http = mp_http_client_new(base, dns, &limits);
	return up->http != NULL;
}

struct gw_upstream_call *gw_upstream_send(struct gw_upstream *up, struct evhttp_request *client,
					  gw_upstream_done_fn done, void *arg)
{
	struct gw_upstream_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct gw_upstream_call){.up = up, .client = client, .done = done, .arg = arg};
	struct mp_http_exchange x = {.method = evhttp_request_get_command(client),
				     .uri = evhttp_request_get_uri(client),
				     .fill = request_fill,
				     .copy = answer_copy,
				     .discard = answer_discard,
				     .done = on_done,
				     .arg = c};
	c->call = mp_http_send(up->http, up->host, up->port, &x);
	if (!c->call) {
		free(c);
		return NULL;
	}
	c->client = NULL;
	return c;
}

void gw_upstream_cancel(struct gw_upstream_call *c)
{
	if (!c)
		return;
	mp_http_cancel(c->call);
	free(c);
}

void gw_upstream_free_all(struct gw_upstream *up)
{
	mp_http_client_free(up->http);
	up->http = NULL;
}
