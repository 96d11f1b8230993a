/* HTTP 402 gateway (gateway.h, docs/gateway.md). One request, from evhttp's callback:
 *
 *   RECEIVED --no route--> 404;  --route price 0--> FORWARDED (unpaid)
 *   RECEIVED --too many in flight--> 503;  --no X-Payment--> 402 with Payment-Required
 *   RECEIVED --X-Payment fails a check (Pay's steps, in protocol order; the reference not this
 *            request's; the units short of the price)--> 402, 409 or 503 with X-Payment-Error,
 *            nothing changed
 *   RECEIVED --verified (one chain check)--> HELD: the channel's point is held (gateway_hold:
 *            Pays, Handoffs, Transfers, Closes and Offers of it answered LIMIT)
 *   HELD --upstream answered < 500--> the Pay settled on the pay path and queued in the group
 *            commit (the hold ends) --> COMMITTING --committed--> upstream's answer relayed
 *            with X-Payment-Response (charged)
 *   HELD --upstream answered >= 500, or did not answer--> released, nothing charged: its answer
 *            (or 502) relayed with X-Payment-Response (charged: false)
 *   HELD --answered but the group commit full--> WAIT_ROOM, retried every millisecond
 *   HELD | WAIT_ROOM --gateway_stop--> released, 503, nothing charged
 *   FORWARDED --answer--> relayed;  --none--> 502
 *
 * evhttp does not report a client that goes away while its request is out (the request lives
 * until it is answered), so a request whose upstream answered is charged either way. */
#include "gateway.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "batch.h"
#include "gateway_header.h"
#include "gateway_routes.h"
#include "gateway_upstream.h"
#include "log.h"
#include "merchant.h"
#include "offer.h"

enum call_state { CALL_FORWARDED, CALL_HELD, CALL_WAIT_ROOM, CALL_COMMITTING };

struct gw_call {
	struct gateway *g;
	struct gw_call *prev, *next;
	struct evhttp_request *req;
	const struct gw_route *route;
	enum call_state state;
	struct channel *ch; /* HELD and after */
	struct gw_payment pay;
	struct gw_upstream_call *up;
	struct gw_answer *answer; /* WAIT_ROOM, COMMITTING */
	struct event *retry;	  /* WAIT_ROOM */
};

struct gateway {
	struct merchant *m;
	struct evhttp *http;
	struct gw_routes routes;
	struct gw_upstream up;
	struct gw_call *calls;
	size_t n_calls;
	bool stopping;
};

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return NULL;
	}
}

static void call_free(struct gw_call *c)
{
	struct gateway *g = c->g;
	if (c->prev)
		c->prev->next = c->next;
	else
		g->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g->n_calls--;
	g->m->stats.gateway_in_flight = g->n_calls;
	gw_upstream_cancel(c->up);
	gw_answer_free(c->answer);
	if (c->retry)
		event_free(c->retry);
	free(c);
}

static struct gw_call *call_new(struct gateway *g, struct evhttp_request *req,
				const struct gw_route *route)
{
	struct gw_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct gw_call){.g = g, .req = req, .route = route, .next = g->calls};
	if (c->next)
		c->next->prev = c;
	g->calls = c;
	g->n_calls++;
	g->m->stats.gateway_in_flight = g->n_calls;
	return c;
}

static void count(struct gateway *g, enum gateway_result r)
{
	g->m->stats.gateway[r]++;
}

static void add_header_value(struct evhttp_request *req, const char *name, char *value)
{
	if (value)
		evhttp_add_header(evhttp_request_get_output_headers(req), name, value);
	free(value);
}

static void reply_text(struct evhttp_request *req, int status, const char *reason, const char *text)
{
	struct evbuffer *body = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (status == 503)
		evhttp_add_header(h, "Retry-After", "1");
	if (body)
		evbuffer_add_printf(body, "%s\n", text);
	evhttp_send_reply(req, status, reason, body);
	if (body)
		evbuffer_free(body);
}

/* Payment-Required: what this request costs and where a channel is opened. */
static char *requirements(const struct gateway *g, const struct gw_route *r, const char *method,
			  const char *path)
{
	const struct merchant *m = g->m;
	char mid[MP_HEX_ID_LEN + 1], key_id[2 * MP_KEY_ID_LEN + 1];
	mp_hex_encode(m->mid, MP_ID_LEN, mid);
	mp_hex_encode(m->broker_key_id, MP_KEY_ID_LEN, key_id);
	const char *endpoint = m->cfg.endpoint ? m->cfg.endpoint : m->cfg.listen;
	return gw_header_value(json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "scheme",
					 GW_SCHEME, "merchant", mid, "broker_key", key_id, "price",
					 (json_int_t)r->price, "currency",
					 m->cfg.currency ? m->cfg.currency : "EUR", "endpoint",
					 endpoint, "method", method, "path", path));
}

/* A payment refused, or none sent: status (402, 409 or 503), the requirements again, the
 * reason as "CODE detail" in X-Payment-Error and in the body. */
static void refuse(struct gateway *g, struct evhttp_request *req, const struct gw_route *r,
		   const char *method, const char *path, int status, const char *code,
		   const char *detail)
{
	char line[300];
	snprintf(line, sizeof(line), "%s %s", code, detail);
	count(g, strcmp(code, "REQUIRED") == 0 ? GW_REQUIRED : GW_REFUSED);
	add_header_value(req, GW_HEADER_REQUIRED, requirements(g, r, method, path));
	if (strcmp(code, "REQUIRED") != 0)
		evhttp_add_header(evhttp_request_get_output_headers(req), GW_HEADER_ERROR, line);
	char text[400];
	snprintf(text, sizeof(text), "payment required: %llu %s for %s %s (%s)",
		 (unsigned long long)r->price, g->m->cfg.currency ? g->m->cfg.currency : "EUR",
		 method, path, line);
	reply_text(req, status,
		   status == 402   ? "Payment Required"
		   : status == 409 ? "Conflict"
				   : "Service Unavailable",
		   text);
}

static char *payment_response(const struct gw_call *c, bool charged)
{
	char channel[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->pay.channel_id, MP_ID_LEN, channel);
	const struct channel *ch = c->ch;
	return gw_header_value(
	    json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "scheme", GW_SCHEME, "channel",
		      channel, "seg", (json_int_t)c->pay.seg_seq, "j",
		      (json_int_t)(charged ? c->pay.j : ch->last), "credit", (json_int_t)ch->credit,
		      "price", (json_int_t)(charged ? c->route->price : 0), "charged", charged));
}

/* Relay an upstream answer (NULL: 502 with why), with X-Payment-Response for a paid route. */
static void relay(struct gw_call *c, struct gw_answer *a, const char *why, bool charged)
{
	count(c->g, charged ? GW_PAID : c->route->price ? GW_NOT_CHARGED : GW_FREE);
	if (c->route->price)
		add_header_value(c->req, GW_HEADER_RESPONSE, payment_response(c, charged));
	if (!a) {
		char text[300];
		snprintf(text, sizeof(text), "bad gateway: %s%s", why,
			 c->route->price ? "; you were not charged" : "");
		reply_text(c->req, 502, "Bad Gateway", text);
		return;
	}
	gw_headers_copy(&a->headers, evhttp_request_get_output_headers(c->req));
	evhttp_send_reply(c->req, a->code, a->reason[0] ? a->reason : "OK", a->body);
}

static void release(struct gw_call *c)
{
	if (c->ch)
		c->ch->gateway_hold = false;
}

static void commit(struct gw_call *c);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	commit(arg);
}

/* The upstream answered a paid request: the Pay on the pay path, then the group commit. */
static void commit(struct gw_call *c)
{
	struct merchant *m = c->g->m;
	struct channel *ch = c->ch;
	if (!batch_has_room(m)) {
		c->state = CALL_WAIT_ROOM;
		if (!c->retry)
			c->retry = evtimer_new(m->base, on_retry, c);
		struct timeval ms = {0, 1000};
		if (c->retry && evtimer_add(c->retry, &ms) == 0)
			return;
		log_err("gateway: cannot wait for room in the group commit: not charged");
		release(c);
		relay(c, c->answer, NULL, false);
		call_free(c);
		return;
	}
	uint64_t added = 0, credit = 0;
	mp_amount_mul(c->pay.j - ch->last, ch->unit_value, &added); /* checked when verified */
	mp_amount_add(ch->credit, added, &credit);
	credit -= c->route->price;
	struct batch_entry e = {.kind = ENTRY_PAY,
				.ch = ch,
				.seg_seq = c->pay.seg_seq,
				.j = c->pay.j,
				.order_ref_len = GW_REF_LEN,
				.code = MP_ST(OK),
				.credit = credit,
				.price = c->route->price,
				.http = c,
				.read_us = mp_metrics_now_us()};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	memcpy(e.w, c->pay.w, MP_HASH_LEN);
	memcpy(e.order_ref, c->pay.ref, GW_REF_LEN);
	ch->last = c->pay.j;
	memcpy(ch->w_last, c->pay.w, MP_HASH_LEN);
	ch->credit = credit;
	memcpy(ch->last_order_ref, c->pay.ref, GW_REF_LEN);
	ch->last_order_ref_len = GW_REF_LEN;
	ch->gateway_hold = false;
	c->state = CALL_COMMITTING;
	batch_add(m, &e);
}

static void on_upstream(void *arg, struct gw_answer *a, const char *why)
{
	struct gw_call *c = arg;
	c->up = NULL;
	if (c->state == CALL_FORWARDED || !a || a->code >= 500) {
		if (c->state == CALL_HELD) {
			release(c);
			log_info("gateway: %s %s not charged: %s",
				 method_name(evhttp_request_get_command(c->req)),
				 evhttp_request_get_uri(c->req),
				 a ? "the upstream answered >= 500" : why);
		}
		relay(c, a, why, false);
		gw_answer_free(a);
		call_free(c);
		return;
	}
	c->answer = a;
	commit(c);
}

void gateway_paid(struct merchant *m, struct batch_entry *e)
{
	struct gw_call *c = e->http;
	relay(c, c->answer, NULL, true);
	call_free(c);
}

static void forward(struct gw_call *c)
{
	c->up = gw_upstream_send(&c->g->up, c->req, on_upstream, c);
	if (c->up)
		return;
	release(c);
	count(c->g, GW_BUSY);
	reply_text(c->req, 503, "Service Unavailable", "out of memory; you were not charged");
	call_free(c);
}

/* What a refused payment is answered with. */
struct verdict {
	int status; /* 0: verified */
	const char *code, *detail;
};

static struct verdict refused(int status, const char *code, const char *detail)
{
	return (struct verdict){status, code, detail};
}

/* The checks of a Pay (protocol order), then the reference and the price: no hashing before
 * the chain check, which comes last. */
static struct verdict verify(struct gateway *g, struct gw_call *c, const char *method, char *why,
			     size_t whylen)
{
	struct merchant *m = g->m;
	const char *value =
	    evhttp_find_header(evhttp_request_get_input_headers(c->req), GW_HEADER_PAYMENT);
	const char *detail = NULL;
	if (!value)
		return refused(402, "REQUIRED", "send the payment in " GW_HEADER_PAYMENT);
	if (!gw_payment_parse(value, &c->pay, &detail))
		return refused(402, "MALFORMED", detail);
	struct evbuffer *body = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(body);
	uint8_t ref[GW_REF_LEN];
	if (!gw_request_ref(method, evhttp_request_get_uri(c->req),
			    len ? evbuffer_pullup(body, -1) : NULL, len, ref))
		return refused(503, "INTERNAL", "cannot hash the request");
	if (memcmp(ref, c->pay.ref, GW_REF_LEN) != 0)
		return refused(402, "CONFLICT",
			       "the payment's ref is bound to another method, URI or body");
	struct channel *ch = channel_find(&m->channels, c->pay.channel_id);
	if (!mp_clock_guard_serving(m->clock_guard, why, whylen))
		return refused(503, "INTERNAL", why);
	if (ch && ch->gateway_hold)
		return refused(409, "LIMIT", GATEWAY_HOLD_DETAIL);
	if (ch && ch->signing)
		return refused(503, "LIMIT", channel_busy(ch));
	MpCode code = merchant_pay_precheck(m, c->pay.seg_seq, c->pay.j, ch, &detail);
	if (code != MP_ST(OK))
		return refused(402, mp_code_name(code), detail);
	if (c->pay.j <= ch->last)
		return refused(402, "STALE_INDEX", "index already paid: this payment was used");
	/* an offer holding the channel (key release, offer.h): nothing else is paid past it */
	code = offer_pay_check(m, ch, c->pay.ref, GW_REF_LEN, c->pay.j, why, whylen);
	if (code != MP_ST(OK))
		return refused(code == MP_ST(INTERNAL) ? 503 : 402, mp_code_name(code), why);
	uint64_t added, credit;
	if (!mp_amount_mul(c->pay.j - ch->last, ch->unit_value, &added) ||
	    !mp_amount_add(ch->credit, added, &credit))
		return refused(402, "LIMIT", "channel credit would overflow");
	if (credit < c->route->price) {
		snprintf(why, whylen, "%llu units of %llu and a credit of %llu pay %llu of %llu",
			 (unsigned long long)(c->pay.j - ch->last),
			 (unsigned long long)ch->unit_value, (unsigned long long)ch->credit,
			 (unsigned long long)credit, (unsigned long long)c->route->price);
		return refused(402, "UNDERPAID", why);
	}
	if (!batch_has_room(m))
		return refused(503, "LIMIT", "merchant busy: payments are being committed; retry");
	if (!mp_chain_verify(m->hasher, ch->nonce, ch->last - ch->seg_start, ch->w_last,
			     c->pay.j - ch->seg_start, c->pay.w))
		return refused(402, "BAD_CHAIN", "payword does not verify");
	c->ch = ch;
	return (struct verdict){0};
}

/* The request's path, percent-decoded, for the price list; NULL if it is not origin-form or
 * names a dot segment (never priced one way here and read another way upstream). */
static char *request_path(struct evhttp_request *req)
{
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *raw = u ? evhttp_uri_get_path(u) : NULL;
	if (!uri || uri[0] != '/' || !raw)
		return NULL;
	size_t n = 0;
	char *path = evhttp_uridecode(raw, 0, &n);
	if (path && (n != strlen(path) || strstr(path, "/../") || strstr(path, "/./") ||
		     (n >= 3 && strcmp(path + n - 3, "/..") == 0) ||
		     (n >= 2 && strcmp(path + n - 2, "/.") == 0))) {
		free(path);
		path = NULL;
	}
	return path;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct gateway *g = arg;
	const char *method = method_name(evhttp_request_get_command(req));
	char *path = method ? request_path(req) : NULL;
	const struct gw_route *r = path ? gw_routes_match(&g->routes, method, path) : NULL;
	struct gw_call *c = NULL;
	if (!method || !path)
		reply_text(req, 400, "Bad Request", "unsupported method or request target");
	else if (!r)
		reply_text(req, 404, "Not Found", "no route of this gateway serves this path");
	else if (g->stopping || g->n_calls >= g->m->cfg.gateway_max_pending)
		reply_text(req, 503, "Service Unavailable", "gateway busy or stopping; retry");
	else if (!(c = call_new(g, req, r)))
		reply_text(req, 503, "Service Unavailable", "out of memory");
	if (!c) {
		count(g, !method || !path || !r ? GW_NO_ROUTE : GW_BUSY);
		free(path);
		return;
	}
	if (r->price == 0) {
		c->state = CALL_FORWARDED;
		free(path);
		forward(c);
		return;
	}
	char why[200];
	struct verdict v = verify(g, c, method, why, sizeof(why));
	if (v.status) {
		refuse(g, req, r, method, path, v.status, v.code, v.detail);
		free(path);
		call_free(c);
		return;
	}
	free(path);
	c->state = CALL_HELD;
	c->ch->gateway_hold = true;
	forward(c);
}

static bool upstream_parse(struct gateway *g, const struct merchant_config *cfg)
{
	if (!cfg->gateway_upstream || !mp_split_endpoint(cfg->gateway_upstream, g->up.host,
							 sizeof(g->up.host), &g->up.port)) {
		log_err("gateway: [gateway] upstream must be host:port of a plain HTTP service, "
			"not '%s'",
			cfg->gateway_upstream ? cfg->gateway_upstream : "(unset)");
		return false;
	}
	g->up.base = g->m->base;
	g->up.dns = g->m->dns;
	g->up.timeout_s = cfg->gateway_upstream_timeout;
	g->up.max_response = cfg->gateway_max_response;
	return true;
}

static bool listen_on(struct gateway *g, const char *endpoint)
{
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(endpoint, host, sizeof(host), &port)) {
		log_err("gateway: [gateway] listen must be host:port, not '%s'", endpoint);
		return false;
	}
	g->http = evhttp_new(g->m->base);
	if (!g->http)
		return false;
	const struct merchant_config *cfg = &g->m->cfg;
	evhttp_set_max_body_size(g->http, (ev_ssize_t)cfg->gateway_max_body);
	evhttp_set_max_headers_size(g->http, 16 * 1024);
	evhttp_set_timeout(g->http, (int)cfg->gateway_read_timeout);
	evhttp_set_allowed_methods(g->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(g->http, on_request, g);
	if (!evhttp_bind_socket_with_handle(g->http, host, port)) {
		log_err("gateway: cannot listen on %s", endpoint);
		return false;
	}
	return true;
}

bool gateway_start(struct merchant *m)
{
	const struct merchant_config *cfg = &m->cfg;
	if (!cfg->gateway_listen)
		return true;
	struct gateway *g = calloc(1, sizeof(*g));
	if (!g)
		return false;
	g->m = m;
	m->gateway = g;
	char err[300];
	if (!gw_routes_parse(cfg->gateway_routes, &g->routes, err, sizeof(err))) {
		log_err("gateway: [gateway] routes: %s", err);
		return false;
	}
	if (!upstream_parse(g, cfg) || !listen_on(g, cfg->gateway_listen))
		return false;
	log_info("gateway: listening on %s for %s, %zu routes", cfg->gateway_listen,
		 cfg->gateway_upstream, g->routes.n);
	return true;
}

void gateway_stop(struct merchant *m)
{
	struct gateway *g = m->gateway;
	if (!g)
		return;
	g->stopping = true;
	for (struct gw_call *c = g->calls, *next; c; c = next) {
		next = c->next;
		if (c->state == CALL_COMMITTING)
			continue; /* answered by batch_drain */
		release(c);
		count(g, c->route->price ? GW_NOT_CHARGED : GW_BUSY);
		reply_text(c->req, 503, "Service Unavailable",
			   "the merchant is stopping; you were not charged");
		call_free(c);
	}
}

void gateway_free(struct merchant *m)
{
	struct gateway *g = m->gateway;
	if (!g)
		return;
	while (g->calls)
		call_free(g->calls);
	gw_upstream_free_all(&g->up);
	if (g->http)
		evhttp_free(g->http);
	gw_routes_free(&g->routes);
	free(g);
	m->gateway = NULL;
}
