/* One HTTP exchange on walletd's loop (http_fetch.h); the exchange itself, its connections and
 * the moment done runs (from a zero-delay event, never inside libevent) are
 * common/http_client.c's. */
#include "http_fetch.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_header.h"
#include "http_client.h"

/* What the request carries and whom to tell. */
struct http_fetch {
	const char *body, *payment; /* until sent */
	size_t body_len;
	http_fetch_fn done;
	void *arg;
};

void http_result_free(struct http_result *r)
{
	if (!r)
		return;
	free(r->required);
	free(r->response);
	free(r->error);
	free(r->content_type);
	free(r->body);
	free(r);
}

static void on_done(void *arg, void *copy, const char *why)
{
	struct http_fetch *f = arg;
	http_fetch_fn done = f->done;
	void *done_arg = f->arg;
	free(f);
	done(done_arg, copy, why);
}

static void result_discard(void *copy)
{
	http_result_free(copy);
}

static char *header_copy(struct evhttp_request *r, const char *name)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(r), name);
	return v ? strdup(v) : NULL;
}

static void *result_copy(struct evhttp_request *req)
{
	struct http_result *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->status = evhttp_request_get_response_code(req);
	r->required = header_copy(req, GW_HEADER_REQUIRED);
	r->response = header_copy(req, GW_HEADER_RESPONSE);
	r->error = header_copy(req, GW_HEADER_ERROR);
	r->content_type = header_copy(req, "Content-Type");
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	r->body_len = evbuffer_get_length(in);
	r->body = malloc(r->body_len + 1);
	if (!r->body) {
		http_result_free(r);
		return NULL;
	}
	evbuffer_copyout(in, r->body, r->body_len);
	r->body[r->body_len] = 0;
	return r;
}

static bool request_fill(void *arg, struct evhttp_request *req)
{
	const struct http_fetch *f = arg;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char n[32];
	snprintf(n, sizeof(n), "%zu", f->body_len);
	return evhttp_add_header(h, "Content-Length", n) == 0 &&
	       (!f->payment || evhttp_add_header(h, GW_HEADER_PAYMENT, f->payment) == 0) &&
	       (!f->body_len ||
		evbuffer_add(evhttp_request_get_output_buffer(req), f->body, f->body_len) == 0);
}

struct mp_http_client *http_fetch_client(struct event_base *base, struct evdns_base *dns,
					 unsigned timeout_s)
{
	struct mp_http_limits limits = {.timeout_s = timeout_s,
					.max_body = HTTP_FETCH_BODY_MAX,
					.max_headers = 64 * 1024,
					.keep_idle = 8};
	return mp_http_client_new(base, dns, &limits);
}

bool http_fetch_start(struct mp_http_client *http, const char *host, uint16_t port,
		      enum evhttp_cmd_type method, const char *uri, const char *body,
		      size_t body_len, const char *payment, http_fetch_fn done, void *arg)
{
	struct http_fetch *f = calloc(1, sizeof(*f));
	if (!f)
		return false;
	*f = (struct http_fetch){
	    .body = body, .body_len = body_len, .payment = payment, .done = done, .arg = arg};
	struct mp_http_exchange x = {.method = method,
				     .uri = uri,
				     .fill = request_fill,
				     .copy = result_copy,
				     .discard = result_discard,
				     .done = on_done,
				     .arg = f};
	if (mp_http_send(http, host, port, &x))
		return true;
	free(f);
	return false;
}
