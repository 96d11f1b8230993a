/* One HTTP exchange on walletd's loop (http_fetch.h).
 *
 *   SENT --libevent's callback: an answer (copied) or none--> kept
 *        --> from a zero-delay event: done(arg, r | NULL, why), then the connection freed.
 *            Never from libevent's callback: it frees the request after it returns, and it
 *            may run inside evhttp_make_request (a connection failing at once). */
#include "http_fetch.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_header.h"

struct http_fetch {
	struct http_fetch_list *list;
	struct http_fetch *prev, *next;
	struct evhttp_connection *evcon;
	struct event *reap;
	http_fetch_fn done;
	void *arg;
	bool answered;		    /* libevent's callback ran */
	struct http_result *result; /* kept for done */
	const char *why;
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

static void fetch_free(struct http_fetch *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		f->list->head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	http_result_free(f->result);
	if (f->evcon)
		evhttp_connection_free(f->evcon);
	if (f->reap)
		event_free(f->reap);
	free(f);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct http_fetch *f = arg;
	struct http_result *r = f->result;
	f->result = NULL;
	f->done(f->arg, r, r ? NULL : f->why);
	fetch_free(f);
}

static char *header_copy(struct evhttp_request *r, const char *name)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(r), name);
	return v ? strdup(v) : NULL;
}

static struct http_result *result_copy(struct evhttp_request *req)
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

static void on_answer(struct evhttp_request *req, void *arg)
{
	struct http_fetch *f = arg;
	f->answered = true;
	f->why = "no answer (refused, reset, timed out or above the size limits)";
	if (req && evhttp_request_get_response_code(req) > 0) {
		f->result = result_copy(req);
		if (!f->result)
			f->why = "out of memory copying the answer";
	}
	event_active(f->reap, EV_TIMEOUT, 0);
}

static bool request_fill(struct evhttp_request *req, const char *host, uint16_t port,
			 const char *body, size_t len, const char *payment)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char hostport[300], n[32];
	snprintf(hostport, sizeof(hostport), "%s:%u", host, port);
	snprintf(n, sizeof(n), "%zu", len);
	return evhttp_add_header(h, "Host", hostport) == 0 &&
	       evhttp_add_header(h, "Connection", "close") == 0 &&
	       evhttp_add_header(h, "Content-Length", n) == 0 &&
	       (!payment || evhttp_add_header(h, GW_HEADER_PAYMENT, payment) == 0) &&
	       (!len || evbuffer_add(evhttp_request_get_output_buffer(req), body, len) == 0);
}

void http_fetch_abort_all(struct http_fetch_list *list)
{
	while (list->head) {
		struct http_fetch *f = list->head;
		http_result_free(f->result);
		f->result = NULL;
		f->why = "walletd is stopping";
		on_deliver(-1, 0, f);
	}
}

struct http_fetch *http_fetch_start(struct http_fetch_list *list, struct event_base *base,
				    struct evdns_base *dns, const char *host, uint16_t port,
				    enum evhttp_cmd_type method, const char *uri, const char *body,
				    size_t body_len, const char *payment, unsigned timeout_s,
				    http_fetch_fn done, void *arg)
{
	struct http_fetch *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->list = list;
	f->next = list->head;
	if (f->next)
		f->next->prev = f;
	list->head = f;
	f->done = done;
	f->arg = arg;
	f->reap = event_new(base, -1, 0, on_deliver, f);
	f->evcon = f->reap ? evhttp_connection_base_new(base, dns, host, port) : NULL;
	struct evhttp_request *req = f->evcon ? evhttp_request_new(on_answer, f) : NULL;
	if (!req) {
		fetch_free(f);
		return NULL;
	}
	evhttp_connection_set_timeout(f->evcon, (int)timeout_s);
	evhttp_connection_set_retries(f->evcon, 0);
	evhttp_connection_set_max_body_size(f->evcon, HTTP_FETCH_BODY_MAX);
	evhttp_connection_set_max_headers_size(f->evcon, 64 * 1024);
	if (!request_fill(req, host, port, body, body_len, payment)) {
		evhttp_request_free(req);
		fetch_free(f);
		return NULL;
	}
	if (evhttp_make_request(f->evcon, req, method, uri) != 0) {
		if (!f->answered) /* a failed connect leaves req unlinked, not freed */
			evhttp_request_free(req);
		fetch_free(f);
		return NULL;
	}
	return f;
}
