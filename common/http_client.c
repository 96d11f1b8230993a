/* HTTP/1.1 exchanges from a daemon's loop (http_client.h).
 *
 *   SENT (on an idle connection to host:port, or a new one)
 *        --libevent's callback: an answer (copied by x.copy) or none--> DELIVERING
 *        --> from a zero-delay event: unlinked; the connection back among the idle ones when
 *            the exchange was answered, else closed; then done(arg, copy | NULL, why)
 *   SENT --mp_http_cancel / mp_http_client_free--> the connection closed with its request (no
 *        callback)
 *   SENT --mp_http_client_abort--> done at once: with the answer if it was already copied,
 *        else NULL and why; the connection closed
 *
 * The request is ours from the start (evhttp_request_own): libevent never frees it, whatever
 * path its failure takes (evhttp_make_request failing before or after queueing it, the callback
 * run with NULL), and call_free frees it once, after its connection.
 *
 * Idle connections: at most keep_idle per client, the oldest closed first, none kept longer
 * than IDLE_MAX_MS. evhttp itself closes a connection whose answer said Connection: close (or
 * came over HTTP/1.0 without keep-alive) and watches an idle one, resetting it when the peer
 * closes it, so the next exchange on it connects again. A peer closing an idle connection at
 * the moment it is reused still loses that exchange ("no answer", never sent twice: retries
 * are 0); keeping idle connections at most IDLE_MAX_MS, below the usual keep-alive timeouts of
 * HTTP servers (5 s and more), keeps that rare. */
#include "http_client.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_MAX_MS 2000

struct idle_conn {
	struct evhttp_connection *evcon;
	char host[256];
	uint16_t port;
	struct timeval since;
};

struct mp_http_client {
	struct event_base *base;
	struct evdns_base *dns;
	struct mp_http_limits limits;
	struct mp_http_call *calls; /* exchanges not yet delivered */
	bool aborting;		    /* mp_http_client_abort: no new exchange */
	struct idle_conn *idle;	    /* keep_idle slots, oldest first */
	size_t n_idle;
};

struct mp_http_call {
	struct mp_http_client *client;
	struct mp_http_call *prev, *next;
	struct evhttp_connection *evcon;
	struct evhttp_request *req; /* ours (evhttp_request_own), freed by call_free */
	struct event *reap;	    /* delivers after libevent's callback returned */
	struct mp_http_exchange x;
	char host[256];
	uint16_t port;
	bool answered; /* libevent's callback ran: the request is libevent's to free */
	bool reusable; /* answered with a status: the connection may serve the next exchange */
	void *copy;
	const char *why;
};

struct mp_http_client *mp_http_client_new(struct event_base *base, struct evdns_base *dns,
					  const struct mp_http_limits *limits)
{
	struct mp_http_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct mp_http_client){.base = base, .dns = dns, .limits = *limits};
	if (limits->keep_idle && !(c->idle = calloc(limits->keep_idle, sizeof(*c->idle)))) {
		free(c);
		return NULL;
	}
	return c;
}

static void unlink_call(struct mp_http_call *call)
{
	struct mp_http_client *c = call->client;
	if (!c)
		return;
	if (call->prev)
		call->prev->next = call->next;
	else if (c->calls == call)
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	call->client = NULL; /* done may free the client: nothing of it is used after */
}

static void call_free(struct mp_http_call *call)
{
	unlink_call(call);
	if (call->copy && call->x.discard)
		call->x.discard(call->copy);
	if (call->evcon) /* unlinks the request, which is ours to free */
		evhttp_connection_free(call->evcon);
	if (call->req)
		evhttp_request_free(call->req);
	if (call->reap)
		event_free(call->reap);
	free(call);
}

static void drop_idle(struct mp_http_client *c, size_t i)
{
	memmove(&c->idle[i], &c->idle[i + 1], (c->n_idle - i - 1) * sizeof(*c->idle));
	c->n_idle--;
}

/* Close the idle connections kept longer than IDLE_MAX_MS (the oldest are first). */
static void expire_idle(struct mp_http_client *c)
{
	struct timeval now;
	event_base_gettimeofday_cached(c->base, &now);
	while (c->n_idle) {
		struct timeval *t = &c->idle[0].since;
		long ms = (now.tv_sec - t->tv_sec) * 1000 + (now.tv_usec - t->tv_usec) / 1000;
		if (ms < IDLE_MAX_MS)
			return;
		evhttp_connection_free(c->idle[0].evcon);
		drop_idle(c, 0);
	}
}

/* An idle connection to host:port, taken out of the idle set; NULL if none. */
static struct evhttp_connection *take_idle(struct mp_http_client *c, const char *host,
					   uint16_t port)
{
	expire_idle(c);
	for (size_t i = c->n_idle; i-- > 0;) {
		struct idle_conn *s = &c->idle[i];
		if (s->port != port || strcmp(s->host, host) != 0)
			continue;
		struct evhttp_connection *evcon = s->evcon;
		drop_idle(c, i);
		return evcon;
	}
	return NULL;
}

static void keep_idle(struct mp_http_client *c, struct mp_http_call *call)
{
	if (!c->limits.keep_idle)
		return;
	if (c->n_idle == c->limits.keep_idle) { /* the oldest goes */
		evhttp_connection_free(c->idle[0].evcon);
		drop_idle(c, 0);
	}
	struct idle_conn *s = &c->idle[c->n_idle++];
	s->evcon = call->evcon;
	s->port = call->port;
	event_base_gettimeofday_cached(c->base, &s->since);
	snprintf(s->host, sizeof(s->host), "%s", call->host);
	call->evcon = NULL;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct mp_http_call *call = arg;
	struct mp_http_client *c = call->client;
	unlink_call(call); /* done may free the client: this call is no longer its */
	if (call->reusable && !c->aborting)
		keep_idle(c, call);
	void *copy = call->copy;
	call->copy = NULL;
	call->x.done(call->x.arg, copy, copy ? NULL : call->why);
	call_free(call);
}

static void on_answer(struct evhttp_request *req, void *arg)
{
	struct mp_http_call *call = arg;
	call->answered = true;
	call->why = "no answer (refused, reset, timed out or above the size limits)";
	if (req && evhttp_request_get_response_code(req) > 0) {
		call->copy = call->x.copy(req);
		call->reusable = call->copy != NULL;
		if (!call->copy)
			call->why = "out of memory copying the answer";
	}
	event_active(call->reap, EV_TIMEOUT, 0);
}

static struct evhttp_connection *connection(struct mp_http_client *c, const char *host,
					    uint16_t port)
{
	struct evhttp_connection *evcon = take_idle(c, host, port);
	if (evcon)
		return evcon;
	evcon = evhttp_connection_base_new(c->base, c->dns, host, port);
	if (!evcon)
		return NULL;
	evhttp_connection_set_timeout(evcon, (int)c->limits.timeout_s);
	evhttp_connection_set_retries(evcon, 0);
	evhttp_connection_set_max_body_size(evcon, (ev_ssize_t)c->limits.max_body);
	evhttp_connection_set_max_headers_size(evcon, (ev_ssize_t)c->limits.max_headers);
	return evcon;
}

static bool host_header(struct evhttp_request *req, const char *host, uint16_t port)
{
	char value[300];
	snprintf(value, sizeof(value), "%s:%u", host, port);
	return evhttp_add_header(evhttp_request_get_output_headers(req), "Host", value) == 0;
}

struct mp_http_call *mp_http_send(struct mp_http_client *c, const char *host, uint16_t port,
				  const struct mp_http_exchange *x)
{
	if (c->aborting)
		return NULL;
	struct mp_http_call *call = calloc(1, sizeof(*call));
	if (!call || strlen(host) >= sizeof(call->host)) {
		free(call);
		return NULL;
	}
	*call = (struct mp_http_call){.client = c, .x = *x, .port = port, .next = c->calls};
	snprintf(call->host, sizeof(call->host), "%s", host);
	if (call->next)
		call->next->prev = call;
	c->calls = call;
	call->reap = event_new(c->base, -1, 0, on_deliver, call);
	call->evcon = call->reap ? connection(c, host, port) : NULL;
	call->req = call->evcon ? evhttp_request_new(on_answer, call) : NULL;
	if (!call->req) {
		call_free(call);
		return NULL;
	}
	evhttp_request_own(call->req);
	if (!host_header(call->req, host, port) || !x->fill(x->arg, call->req) ||
	    evhttp_make_request(call->evcon, call->req, x->method, x->uri) != 0) {
		call_free(call); /* the connection (and with it the request's queueing) first */
		return NULL;
	}
	return call;
}

void mp_http_cancel(struct mp_http_call *call)
{
	if (call)
		call_free(call);
}

void mp_http_client_abort(struct mp_http_client *c, const char *why)
{
	c->aborting = true; /* a done sending again gets NULL: the loop ends */
	while (c->calls) {
		struct mp_http_call *call = c->calls;
		if (!call->copy) /* an answer already copied is delivered as it is */
			call->why = why;
		on_deliver(-1, 0, call);
	}
	c->aborting = false;
}

bool mp_http_client_busy(const struct mp_http_client *c)
{
	return c->calls != NULL;
}

void mp_http_client_free(struct mp_http_client *c)
{
	if (!c)
		return;
	while (c->calls)
		call_free(c->calls);
	for (size_t i = 0; i < c->n_idle; i++)
		evhttp_connection_free(c->idle[i].evcon);
	free(c->idle);
	free(c);
}
