/* The forward proxy (docs/gateway.md "The forward proxy"): a loopback HTTP port through which
 * any program (curl -x, HTTP_PROXY) fetches plain-HTTP URLs, walletd paying their HTTP 402
 * gateways within a budget per host ([proxy] host_budget, counted in table http_spend).
 *
 *   RECEIVED --not absolute-form http:// (CONNECT, origin-form)--> 501 / 400
 *   RECEIVED --more than PROXY_MAX_PENDING requests in flight--> 503
 *   RECEIVED --the host's budget read--> the wallet's `http` method run for it (http_pay.c),
 *            max_price = the least of [wallet] http_max_price and what is left of the budget
 *            once the max_price of each request to that host still in flight is set aside
 *            (so concurrent requests cannot together pay more than the budget);
 *            the client's connection not read meanwhile (libevent 2.1, see gateway_reply.c)
 *   RECEIVED --walletd draining--> 503
 *   --answered--> the upstream's status, Content-Type and body, X-Micropay-Paid when paid
 *   --refused before paying (over budget or max_price, no channel, unknown broker, ...)-->
 *            402, nothing paid;  --no answer once the payment left--> 502 (the payment stays
 *            in flight: the channel's next use resolves it); the body "micropay proxy: <why>"
 *   --proxy stopped first--> 503 to the client; the method's later answer is dropped */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "http_deferred.h"
#include "log.h"
#include "store_http.h"
#include "wallet.h"

struct proxied {
	struct wallet_proxy *p; /* NULL once the proxy stopped */
	struct proxied *prev, *next;
	struct evhttp_request *req;
	char host[300];
	uint64_t spent;	   /* the host's spending when the request came */
	uint64_t reserved; /* the most it may pay: set aside from the host's budget */
};

#define PROXY_MAX_PENDING 64

struct wallet_proxy {
	struct wallet *w;
	struct evhttp *http;
	struct proxied *pending;
	size_t n_pending;
};

static void reply_text(struct evhttp_request *req, int status, const char *reason, const char *text)
{
	struct evbuffer *body = evbuffer_new();
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; charset=utf-8");
	if (body)
		evbuffer_add_printf(body, "micropay proxy: %s\n", text);
	mp_http_reply(req, status, reason, body);
	if (body)
		evbuffer_free(body);
}

static void unlink_pending(struct proxied *x)
{
	if (!x->p)
		return;
	if (x->prev)
		x->prev->next = x->next;
	else
		x->p->pending = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->p->n_pending--;
	x->p = NULL;
}

/* What the requests to host still in flight may pay in all. */
static uint64_t reserved_for(const struct wallet_proxy *p, const char *host)
{
	uint64_t sum = 0;
	for (const struct proxied *x = p->pending; x; x = x->next)
		if (!strcmp(x->host, host))
			sum += x->reserved; /* each at most the budget, at most 64 of them */
	return sum;
}

/* The method's result: the upstream's answer, relayed. */
static void relay_result(struct proxied *x, json_t *res)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
	const char *type = json_string_value(json_object_get(res, "content_type"));
	if (type)
		evhttp_add_header(h, "Content-Type", type);
	json_t *paid = json_object_get(res, "paid");
	if (json_is_object(paid)) {
		char line[160];
		snprintf(line, sizeof(line), "%lld %s, channel %s index %lld",
			 (long long)json_integer_value(json_object_get(paid, "price")),
			 json_string_value(json_object_get(paid, "currency")),
			 json_string_value(json_object_get(paid, "channel_id")),
			 (long long)json_integer_value(json_object_get(paid, "j")));
		evhttp_add_header(h, "X-Micropay-Paid", line);
	}
	if (json_is_true(json_object_get(res, "not_charged")))
		evhttp_add_header(h, "X-Micropay-Paid", "nothing (not charged)");
	if (json_is_true(json_object_get(res, "charge_unknown")))
		evhttp_add_header(h, "X-Micropay-Paid",
				  "not known (counted against the budget; the payment is resolved "
				  "at the channel's next use)");
	struct evbuffer *body = evbuffer_new();
	const char *text = json_string_value(json_object_get(res, "body"));
	const char *b64 = json_string_value(json_object_get(res, "body_base64"));
	if (body && text) {
		evbuffer_add(body, text, json_string_length(json_object_get(res, "body")));
	} else if (body && b64) {
		size_t len = 0;
		uint8_t *raw = mp_b64_decode(b64, HTTP_FETCH_BODY_MAX, &len);
		if (raw)
			evbuffer_add(body, raw, len);
		free(raw);
	}
	int status = (int)json_integer_value(json_object_get(res, "status"));
	mp_http_reply(x->req, status, status == 200 ? "OK" : "Upstream", body);
	if (body)
		evbuffer_free(body);
}

static void on_answer(void *arg, json_t *msg)
{
	struct proxied *x = arg;
	struct wallet_proxy *p = x->p;
	if (p) {
		unlink_pending(x);
		json_t *res = json_object_get(msg, "result");
		if (res) {
			relay_result(x, res);
		} else {
			const char *why = json_string_value(
			    json_object_get(json_object_get(msg, "error"), "message"));
			char text[700];
			snprintf(
			    text, sizeof(text),
			    "%s (%s: %llu spent of a budget of %llu, %llu set aside for requests "
			    "in flight)",
			    why ? why : "failed", x->host, (unsigned long long)x->spent,
			    (unsigned long long)p->w->cfg.proxy_host_budget,
			    (unsigned long long)(reserved_for(p, x->host)));
			bool in_flight = why && strstr(why, "is in flight");
			reply_text(x->req, in_flight ? 502 : 402,
				   in_flight ? "Bad Gateway" : "Payment Required", text);
		}
	}
	free(x);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct wallet_proxy *p = arg;
	struct wallet *w = p->w;
	const char *target = evhttp_request_get_uri(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	if (w->stopping) {
		reply_text(req, 503, "Service Unavailable", "walletd is stopping");
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT || !scheme ||
	    strcasecmp(scheme, "http") || !host) {
		reply_text(req, 501, "Not Implemented",
			   "only plain http:// URLs in absolute form (no CONNECT, no https)");
		return;
	}
	if (p->n_pending >= PROXY_MAX_PENDING) {
		reply_text(req, 503, "Service Unavailable", "too many requests in flight; retry");
		return;
	}
	struct proxied *x = calloc(1, sizeof(*x));
	int port = evhttp_uri_get_port(u);
	if (x)
		snprintf(x->host, sizeof(x->host), "%s:%d", host, port > 0 ? port : 80);
	if (!x || !wstore_http_spent(w->store, x->host, &x->spent)) {
		free(x);
		reply_text(req, 503, "Service Unavailable", "out of memory or store error");
		return;
	}
	uint64_t used = x->spent + reserved_for(p, x->host);
	uint64_t left = w->cfg.proxy_host_budget > used ? w->cfg.proxy_host_budget - used : 0;
	uint64_t max = left < w->cfg.http_max_price ? left : w->cfg.http_max_price;
	x->reserved = max;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *params = json_pack("{s:s, s:s#, s:I}", "url", target, "body",
				   len ? (const char *)evbuffer_pullup(in, -1) : "", len,
				   "max_price", (json_int_t)max);
	const char *cmd = evhttp_request_get_command(req) == EVHTTP_REQ_POST	 ? "POST"
			  : evhttp_request_get_command(req) == EVHTTP_REQ_PUT	 ? "PUT"
			  : evhttp_request_get_command(req) == EVHTTP_REQ_DELETE ? "DELETE"
			  : evhttp_request_get_command(req) == EVHTTP_REQ_HEAD	 ? "HEAD"
										 : "GET";
	struct mp_admin_req *local = params ? mp_admin_req_local("http", on_answer, x) : NULL;
	if (!local) {
		json_decref(params);
		free(x);
		reply_text(req, 503, "Service Unavailable", "out of memory (or a body not UTF-8)");
		return;
	}
	json_object_set_new(params, "method", json_string(cmd));
	x->p = p;
	x->req = req;
	x->next = p->pending;
	if (x->next)
		x->next->prev = x;
	p->pending = x;
	p->n_pending++;
	mp_http_defer(req);
	wallet_admin_http(local, params, w); /* answers through on_answer, maybe at once */
	json_decref(params);
}

static void spending_row(void *arg, const struct whttp_row *r)
{
	json_t **list = arg;
	json_array_append_new(*list,
			      json_pack("{s:s, s:I, s:I, s:I}", "host", r->host, "spent",
					(json_int_t)r->spent, "requests", (json_int_t)r->requests,
					"last_at", (json_int_t)r->last_at));
}

void wallet_admin_http_spending(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	json_t *list = json_array();
	if (!list || !wstore_http_each(w->store, spending_row, &list)) {
		json_decref(list);
		mp_admin_fail(req, MP_ADMIN_FAILED, "http.spending: cannot read the store");
		return;
	}
	mp_admin_reply(req,
		       json_pack("{s:o, s:I, s:I, s:s?}", "hosts", list, "host_budget",
				 (json_int_t)w->cfg.proxy_host_budget, "max_price",
				 (json_int_t)w->cfg.http_max_price, "proxy", w->cfg.proxy_listen));
}

static bool loopback(const char *host)
{
	return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

bool wallet_proxy_start(struct wallet *w)
{
	if (!w->cfg.proxy_listen)
		return true;
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(w->cfg.proxy_listen, host, sizeof(host), &port) || !loopback(host)) {
		log_err("proxy: [proxy] listen must be a loopback host:port (it pays for whoever "
			"connects), not '%s'",
			w->cfg.proxy_listen);
		return false;
	}
	struct wallet_proxy *p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	p->w = w;
	w->proxy = p;
	p->http = evhttp_new(w->base);
	if (!p->http)
		return false;
	evhttp_set_max_body_size(p->http, 1 << 20);
	evhttp_set_max_headers_size(p->http, 16 * 1024);
	evhttp_set_timeout(p->http, 30);
	evhttp_set_allowed_methods(p->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_CONNECT);
	evhttp_set_gencb(p->http, on_request, p);
	if (evhttp_bind_socket(p->http, host, port) != 0) {
		log_err("proxy: cannot listen on %s", w->cfg.proxy_listen);
		return false;
	}
	log_info("proxy: listening on %s (budget %llu per host)", w->cfg.proxy_listen,
		 (unsigned long long)w->cfg.proxy_host_budget);
	return true;
}

bool wallet_proxy_idle(const struct wallet *w)
{
	return !w->proxy || !w->proxy->pending;
}

void wallet_proxy_stop(struct wallet *w)
{
	struct wallet_proxy *p = w->proxy;
	if (!p)
		return;
	while (p->pending) {
		struct proxied *x = p->pending;
		unlink_pending(x); /* freed when its answer comes */
		reply_text(x->req, 503, "Service Unavailable", "walletd is stopping");
	}
	if (p->http)
		evhttp_free(p->http);
	free(p);
	w->proxy = NULL;
}
