/* HTTP 402 gateway (gateway.h, docs/gateway.md): the listener and each request's first steps.
 *
 *   RECEIVED --target refused (not origin-form, ambiguous: gateway_verify.c)--> 400
 *   RECEIVED --no route--> 404;  --too many in flight, stopping--> 503
 *   RECEIVED --route price 0--> FORWARDED (gateway_charge.c)
 *   RECEIVED --no X-Payment--> 402 with Payment-Required
 *   RECEIVED --X-Payment fails a check (gateway_verify.c)--> 402, 409 or 503 with
 *            X-Payment-Error, nothing changed
 *   RECEIVED --verified (one chain check)--> HELD: the channel's point held (gateway_hold),
 *            the request forwarded; charged only once the upstream answered
 *            (gateway_charge.c has the rest)
 *
 * Drain (SIGTERM): no new request is taken (the listening socket is closed); those in flight
 * finish (answered, committed) before the loop ends. At shutdown after the loop, what is left
 * waiting for the upstream is answered 503 uncharged; committing ones by batch_drain. */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_internal.h"
#include "log.h"
#include "tls.h"

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

void gw_count(struct gateway *g, enum gateway_result r)
{
	g->m->stats.gateway[r]++;
}

void gw_call_free(struct gw_call *c)
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
	if (c->deadline)
		event_free(c->deadline);
	if (c->retry)
		event_free(c->retry);
	free(c->receipt_b64);
	free(c->cert_b64);
	free(c);
}

static struct gw_call *call_new(struct gateway *g, struct evhttp_request *req,
				const struct gw_route *route, const char *method)
{
	struct gw_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct gw_call){.g = g, .req = req, .route = route, .next = g->calls};
	snprintf(c->method, sizeof(c->method), "%s", method);
	if (c->next)
		c->next->prev = c;
	g->calls = c;
	g->n_calls++;
	g->m->stats.gateway_in_flight = g->n_calls;
	return c;
}

/* The answers that need no call: a bad target, no route, busy. NULL when one was sent. */
static struct gw_call *admit(struct gateway *g, struct evhttp_request *req, const char *method,
			     const char *path)
{
	const struct gw_route *r = path ? gw_routes_match(&g->routes, method, path) : NULL;
	struct gw_call *c = NULL;
	if (!method || !path)
		gw_reply_text(
		    g, req, 400, "Bad Request",
		    "unsupported method, or a request target this gateway does not "
		    "serve (absolute-form, //, ;, \\, #, encoded / \\ or NUL, dot segments)");
	else if (!r)
		gw_reply_text(g, req, 404, "Not Found",
			      "no route of this gateway serves this path");
	else if (g->stopping || g->n_calls >= g->m->cfg.gateway_max_pending)
		gw_reply_text(g, req, 503, "Service Unavailable",
			      "gateway busy or stopping; retry");
	else if (!(c = call_new(g, req, r, method)))
		gw_reply_text(g, req, 503, "Service Unavailable", "out of memory");
	if (!c)
		gw_count(g, !method || !path || !r ? GW_NO_ROUTE : GW_BUSY);
	return c;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct gateway *g = arg;
	const char *method = method_name(evhttp_request_get_command(req));
	char *path = method ? gw_request_path(req) : NULL;
	struct gw_call *c = admit(g, req, method, path);
	if (!c) {
		free(path);
		return;
	}
	if (c->route->price == 0) {
		free(path);
		c->state = CALL_FORWARDED;
		gw_forward(c);
		return;
	}
	char why[200];
	struct gw_verdict v = gw_verify(g, c, why, sizeof(why));
	if (v.status) {
		gw_refuse(g, req, c->route, method, path, v.status, v.code, v.detail);
		free(path);
		gw_call_free(c);
		return;
	}
	free(path);
	c->state = CALL_HELD;
	c->ch->gateway_hold = true;
	gw_forward(c);
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
	if (gw_upstream_init(&g->up, g->m->base, g->m->dns, cfg->gateway_upstream_timeout,
			     cfg->gateway_max_response, cfg->gateway_upstream_idle))
		return true;
	log_err("gateway: out of memory");
	return false;
}

/* HTTPS: each accepted connection wrapped in TLS (the [gateway] tls_cert's context). */
static struct bufferevent *https_bev(struct event_base *base, void *arg)
{
	struct gateway *g = arg;
	SSL *ssl = SSL_new(g->tls);
	struct bufferevent *bev =
	    ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
						 BEV_OPT_CLOSE_ON_FREE)
		: NULL;
	if (!bev && ssl)
		SSL_free(ssl);
	return bev; /* NULL (out of memory): evhttp makes a plain socket, no TLS client can use */
}

static bool tls_setup(struct gateway *g, const struct merchant_config *cfg)
{
	if (!cfg->gateway_tls_cert && !cfg->gateway_tls_key)
		return true;
	char err[400];
	if (!cfg->gateway_tls_cert || !cfg->gateway_tls_key) {
		log_err("gateway: [gateway] tls_cert and tls_key go together");
		return false;
	}
	g->tls = mp_tls_server_ctx(cfg->gateway_tls_cert, cfg->gateway_tls_key, cfg->tls_ca,
				   MP_CLIENT_CERT_NONE, err, sizeof(err));
	if (!g->tls) {
		log_err("gateway: HTTPS: %s", err);
		return false;
	}
	evhttp_set_bevcb(g->http, https_bev, g);
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
	if (!tls_setup(g, cfg))
		return false;
	g->bound = evhttp_bind_socket_with_handle(g->http, host, port);
	if (!g->bound) {
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
	log_info("gateway: listening on %s (%s) for %s, %zu routes", cfg->gateway_listen,
		 g->tls ? "HTTPS" : "plain HTTP", cfg->gateway_upstream, g->routes.n);
	return true;
}

void gateway_drain(struct merchant *m)
{
	struct gateway *g = m->gateway;
	if (!g || g->stopping)
		return;
	g->stopping = true;
	if (g->bound) {
		evhttp_del_accept_socket(g->http, g->bound);
		g->bound = NULL;
	}
}

bool gateway_idle(const struct merchant *m)
{
	return !m->gateway || m->gateway->n_calls == 0;
}

void gateway_stop(struct merchant *m)
{
	struct gateway *g = m->gateway;
	if (!g)
		return;
	gateway_drain(m);
	g->stopped = true;
	for (struct gw_call *c = g->calls, *next; c; c = next) {
		next = c->next;
		if (c->state == CALL_COMMITTING || c->state == CALL_SIGNING)
			continue; /* answered by batch_drain, or when signed */
		if (c->ch && c->state != CALL_FORWARDED)
			c->ch->gateway_hold = false;
		gw_unserved(c, "the merchant is stopping");
		gw_call_free(c);
	}
}

void gateway_free(struct merchant *m)
{
	struct gateway *g = m->gateway;
	if (!g)
		return;
	while (g->calls)
		gw_call_free(g->calls);
	gw_upstream_free_all(&g->up);
	if (g->http)
		evhttp_free(g->http);
	if (g->tls)
		SSL_CTX_free(g->tls);
	gw_routes_free(&g->routes);
	free(g);
	m->gateway = NULL;
}
