/* Connections: the read loop, request accounting and flow control, timeouts, closing (now or
 * once the answers are sent). The state diagram is in net.h; listeners are in net_listen.c. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "log.h"
#include "net_internal.h"

/* DRAINING's deadline when the connection has no idle timeout. */
#define DRAIN_TIMEOUT_DEFAULT_S 10

void mp_conn_ref(struct mp_conn *c)
{
	c->refs++;
}

__attribute__((noinline)) void mp_conn_unref(struct mp_conn *c)
{
	if (--c->refs == 0)
		free(c);
}

bool mp_conn_is_open(const struct mp_conn *c)
{
	return c->open && !c->closed;
}

SSL *mp_conn_ssl(struct mp_conn *c)
{
	return c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

const char *mp_conn_peer(const struct mp_conn *c)
{
	return c->peer;
}

const struct sockaddr *mp_conn_peer_addr(const struct mp_conn *c)
{
	return (const struct sockaddr *)&c->addr;
}

void mp_conn_set_data(struct mp_conn *c, void *data)
{
	c->data = data;
}

void *mp_conn_data(const struct mp_conn *c)
{
	return c->data;
}

void mp_conn_set_max_frame(struct mp_conn *c, size_t max_frame)
{
	c->opts.max_frame = max_frame;
	if (c->bev)
		bufferevent_setwatermark(c->bev, EV_READ, 0, net_read_high_water(c));
}

static void fail_pending(struct mp_conn *c)
{
	while (c->pending) {
		struct pending_call *p = c->pending;
		c->pending = p->next;
		p->fn(c, NULL, p->arg);
		free(p);
	}
}

static void conn_vend(struct mp_conn *c, enum net_end why, const char *fmt, va_list ap)
{
	if (c->closed)
		return;
	bool was_open = c->open;
	c->closed = true;
	c->open = false;
	char reason[512];
	vsnprintf(reason, sizeof(reason), fmt, ap);
	log_info("%s %s: closing connection: %s", c->opts.name, c->peer, reason);
	if (c->dns_req)
		net_connect_cancel(c);
	net_budget_forget(c);
	if (c->deadline) {
		event_free(c->deadline);
		c->deadline = NULL;
	}
	if (c->bev) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl && was_open) {
			SSL_shutdown(
			    ssl); /* close_notify, best effort: the socket is closed next */
			ERR_clear_error();
		}
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->listener)
		net_listener_forget(c->listener, c, why);
	fail_pending(c);
	if (c->ops->on_close)
		c->ops->on_close(c, reason, c->arg);
	mp_conn_unref(c);
}

void net_conn_end(struct mp_conn *c, enum net_end why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_vend(c, why, fmt, ap);
	va_end(ap);
}

void mp_conn_close(struct mp_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_vend(c, NET_END_BY_DAEMON, fmt, ap);
	va_end(ap);
}

static size_t output_len(struct mp_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* DRAINING ends once nothing is owed and everything was handed to the socket. */
static void finish_drain_if_done(struct mp_conn *c)
{
	if (c->draining && !c->closed && c->in_flight == 0 && output_len(c) == 0)
		net_conn_end(c, c->drain_end, "%s", c->drain_reason);
}

static void conn_vdrain(struct mp_conn *c, enum net_end why, const char *fmt, va_list ap)
{
	if (c->closed || c->draining)
		return;
	if (!c->open) {
		conn_vend(c, why, fmt, ap); /* nothing can have been answered yet */
		return;
	}
	c->draining = true;
	c->frame_timer_on = false; /* deadline now the drain's */
	c->drain_end = why;
	vsnprintf(c->drain_reason, sizeof(c->drain_reason), fmt, ap);
	log_info("%s %s: closing once the answers are sent (%u in flight): %s", c->opts.name,
		 c->peer, c->in_flight, c->drain_reason);
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	net_budget_forget(c);
	/* Keep reading (and discarding): closing with unread input would reset the connection,
	 * and the peer could lose the answers still in transit. */
	c->paused = false;
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	unsigned secs = c->opts.idle_timeout_s ? c->opts.idle_timeout_s : DRAIN_TIMEOUT_DEFAULT_S;
	struct timeval tv = {(time_t)secs, 0};
	evtimer_add(c->deadline, &tv);
	finish_drain_if_done(c);
}

void mp_conn_close_after_flush(struct mp_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_vdrain(c, NET_END_BY_DAEMON, fmt, ap);
	va_end(ap);
}

static void watch_partial_frame(struct mp_conn *c, bool took_frame);

static void count_pause(struct mp_conn *c, bool in_flight_full)
{
	struct net_stats *st = c->listener ? &c->listener->stats : NULL;
	if (in_flight_full) {
		if (st)
			st->paused_in_flight++;
		if (!c->logged_in_flight)
			log_info("%s %s: reading paused: %u requests in flight (max_in_flight; "
				 "logged once per connection)",
				 c->opts.name, c->peer, c->in_flight);
		c->logged_in_flight = true;
	}
	if (c->output_full) {
		if (st)
			st->paused_output++;
		if (!c->logged_output)
			log_info(
			    "%s %s: reading paused: the peer leaves %zu bytes of answers unread "
			    "(output_high_water; logged once per connection)",
			    c->opts.name, c->peer, output_len(c));
		c->logged_output = true;
	}
}

/* PAUSED <-> OPEN: read only while fewer than max_in_flight requests are unanswered and the
 * unsent answers have not passed the high-water mark (or have fallen back to the low one). */
static void update_reading(struct mp_conn *c)
{
	if (c->closed || c->draining || !c->open)
		return;
	size_t out = output_len(c);
	if (c->opts.out_high_water && out > c->opts.out_high_water)
		c->output_full = true;
	else if (out <= c->opts.out_low_water)
		c->output_full = false;
	bool in_flight_full = c->opts.max_in_flight && c->in_flight >= c->opts.max_in_flight;
	bool pause = in_flight_full || c->output_full;
	if (pause == c->paused)
		return;
	c->paused = pause;
	if (pause) {
		count_pause(c, in_flight_full);
		bufferevent_disable(c->bev, EV_READ);
		watch_partial_frame(c, false);
		return;
	}
	bufferevent_enable(c->bev, EV_READ);
	/* Frames that arrived before the pause are still in the input: read them (later). */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		bufferevent_trigger(c->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static int push(struct mp_conn *c, const MpEnvelope *env)
{
	if (c->closed || !c->bev)
		return -1;
	return mp_frame_push(bufferevent_get_output(c->bev), env, c->opts.max_frame);
}

int mp_conn_send(struct mp_conn *c, const MpEnvelope *env)
{
	if (c->closed || !c->bev)
		return -1;
	int rc = push(c, env);
	if (c->in_flight)
		c->in_flight--;
	if (c->draining)
		finish_drain_if_done(c);
	else
		update_reading(c);
	return rc;
}

int mp_conn_call(struct mp_conn *c, MpEnvelope *env, mp_reply_fn fn, void *arg)
{
	if (c->closed)
		return -1;
	struct pending_call *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	env->request_id = ++c->next_request_id;
	if (push(c, env) != 0) {
		free(p);
		return -1;
	}
	*p = (struct pending_call){env->request_id, fn, arg, c->pending};
	c->pending = p;
	return 0;
}

/* A response to one of our calls? Then hand it over and return true. */
static bool deliver_reply(struct mp_conn *c, const MpEnvelope *env)
{
	for (struct pending_call **pp = &c->pending; *pp; pp = &(*pp)->next) {
		struct pending_call *p = *pp;
		if (p->request_id != env->request_id)
			continue;
		*pp = p->next;
		p->fn(c, env, p->arg);
		free(p);
		return true;
	}
	return false;
}

/* A frame this side will not serve. On an accepted connection the peer is told why
 * (error{MALFORMED}: a request it could not route, as the .proto says), then the connection
 * closes once that answer is sent. */
static void refuse(struct mp_conn *c, enum net_end why, uint64_t request_id, const char *answer,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void refuse(struct mp_conn *c, enum net_end why, uint64_t request_id, const char *answer,
		   const char *fmt, ...)
{
	if (c->listener) {
		MpStatus st = MICROPAY__V1__STATUS__INIT;
		st.code = MP_ST(MALFORMED);
		st.detail = (char *)answer;
		MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
		env.version = MP_PROTOCOL_VERSION;
		env.request_id = request_id;
		env.body_case = MP_BODY(ERROR);
		env.error = &st;
		push(c, &env);
	}
	va_list ap;
	va_start(ap, fmt);
	conn_vdrain(c, why, fmt, ap);
	va_end(ap);
}

static void refuse_frame(struct mp_conn *c, enum mp_frame_result r)
{
	char answer[96];
	switch (r) {
	case MP_FRAME_TOO_BIG:
		snprintf(answer, sizeof(answer), "frame above the maximum of %zu bytes",
			 c->opts.max_frame);
		refuse(c, NET_END_FRAME_TOO_BIG, 0, answer, "bad frame: %s (%zu bytes)",
		       mp_frame_result_str(r), c->opts.max_frame);
		return;
	case MP_FRAME_EMPTY:
	case MP_FRAME_NOMEM:
		refuse(c, NET_END_BAD_FRAME, 0, mp_frame_result_str(r), "bad frame: %s",
		       mp_frame_result_str(r));
		return;
	case MP_FRAME_NEED_MORE:
	case MP_FRAME_OK:
		return;
	}
}

static void refuse_envelope(struct mp_conn *c, const struct mp_decode_error *err, size_t len)
{
	switch (err->code) {
	case MP_DECODE_OVER_BUDGET:
		refuse(c, NET_END_DECODE_BUDGET, 0, err->detail, "envelope refused: %s",
		       err->detail);
		return;
	case MP_DECODE_TOO_MANY:
		refuse(c, NET_END_TOO_MANY_ITEMS, 0, err->detail, "envelope refused: %s",
		       err->detail);
		return;
	case MP_DECODE_UNPARSABLE:
	case MP_DECODE_OK:
		refuse(c, NET_END_UNPARSABLE, 0, "unparsable envelope",
		       "unparsable envelope (%zu bytes)", len);
		return;
	}
}

/* A frame on a connection that takes only answers (an outgoing one) that answers none of its
 * calls: a stale or forged answer from a hostile server. Dropped, logged once per connection;
 * the caller's own deadline ends a wait that such frames keep busy. */
static void drop_unsolicited(struct mp_conn *c, const MpEnvelope *env)
{
	if (!c->logged_unsolicited)
		log_warn(
		    "%s %s: dropping a frame that answers no request of ours (request_id %llu, "
		    "body %d; logged once per connection)",
		    c->opts.name, c->peer, (unsigned long long)env->request_id,
		    (int)env->body_case);
	c->logged_unsolicited = true;
}

/* Take and route one frame; false when there is nothing more to do now. */
static bool take_one(struct mp_conn *c)
{
	MpEnvelope *env = NULL;
	size_t len = 0;
	struct mp_decode_error err = {MP_DECODE_OK, ""};
	/* Accepted connections decode into their listener's arena: no allocation per frame. */
	struct mp_decode_arena *arena = c->listener ? &c->listener->arena : NULL;
	enum mp_frame_result r = mp_frame_take_in(bufferevent_get_input(c->bev), c->opts.max_frame,
						  arena, &env, &len, &err);
	if (r != MP_FRAME_OK) {
		refuse_frame(c, r);
		return false;
	}
	net_budget_frame_taken(c);
	if (!env) {
		refuse_envelope(c, &err, len);
		return false;
	}
	if (env->version != MP_PROTOCOL_VERSION) {
		refuse(c, NET_END_BAD_VERSION, env->request_id, "unsupported version",
		       "protocol version %u, expected %u", env->version, MP_PROTOCOL_VERSION);
	} else if (deliver_reply(c, env)) {
		/* handed to the caller */
	} else if (c->ops->on_envelope) {
		c->in_flight++;
		c->ops->on_envelope(c, env, c->arg);
		update_reading(c);
	} else {
		drop_unsolicited(c, env);
	}
	mp_decode_release(arena, &env->base);
	return true;
}

/* The frame deadline (slowloris): a frame whose first byte has been read must be whole within
 * frame_timeout, however steadily its bytes trickle (each byte resets the idle timeout, not
 * this). It runs while reading with part of a frame in the input, restarts once a frame was
 * taken, and stops while reading is paused (the peer is not at fault then). */
static void watch_partial_frame(struct mp_conn *c, bool took_frame)
{
	if (c->closed || c->draining || !c->open || !c->opts.frame_timeout_s)
		return;
	bool partial = !c->paused && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	if (!partial) {
		if (c->frame_timer_on)
			evtimer_del(c->deadline);
		c->frame_timer_on = false;
		return;
	}
	if (c->frame_timer_on && !took_frame)
		return;
	struct timeval tv = {(time_t)c->opts.frame_timeout_s, 0};
	evtimer_add(c->deadline, &tv);
	c->frame_timer_on = true;
}

static void on_read(struct bufferevent *bev, void *ctx)
{
	struct mp_conn *c = ctx;
	if (c->draining) {
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	mp_conn_ref(c);
	bool took = false;
	while (!c->closed && !c->draining && !c->paused && take_one(c))
		took = true;
	net_budget_admit(c);
	watch_partial_frame(c, took);
	mp_conn_unref(c);
}

static void on_write(struct bufferevent *bev, void *ctx)
{
	struct mp_conn *c = ctx;
	if (c->draining)
		finish_drain_if_done(c);
	else
		update_reading(c);
}

static const char *ssl_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);
	if (!e)
		return NULL;
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* Why the peer's certificate was refused in the handshake ("; peer certificate: certificate
 * has expired"), or "" when it was not: "certificate verify failed" alone does not tell an
 * operator an expired certificate from one of another CA. */
static const char *peer_cert_problem(struct mp_conn *c, char *out, size_t len)
{
	SSL *ssl = c->open ? NULL : bufferevent_openssl_get_ssl(c->bev);
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (v == X509_V_OK)
		return "";
	snprintf(out, len, "; peer certificate: %s", X509_verify_cert_error_string(v));
	return out;
}

static void on_connected(struct mp_conn *c)
{
	c->open = true;
	evtimer_del(c->deadline);
	if (c->opts.idle_timeout_s) {
		/* Read: the peer sends nothing; write: it takes none of our answers. */
		struct timeval tv = {(time_t)c->opts.idle_timeout_s, 0};
		bufferevent_set_timeouts(c->bev, &tv, &tv);
	}
	if (c->opts.out_high_water)
		bufferevent_setwatermark(c->bev, EV_WRITE, c->opts.out_low_water, 0);
	if (c->ops->on_open)
		c->ops->on_open(c, c->arg);
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
	struct mp_conn *c = ctx;
	if (what & BEV_EVENT_CONNECTED) {
		on_connected(c);
		return;
	}
	char buf[256], why[160];
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING))
		net_conn_end(c, NET_END_WRITE_TIMEOUT,
			     "peer does not read its answers (%zu bytes unsent after %us)",
			     output_len(c), c->opts.idle_timeout_s);
	else if (what & BEV_EVENT_TIMEOUT)
		net_conn_end(c, NET_END_IDLE_TIMEOUT, "idle timeout");
	else if (what & BEV_EVENT_EOF)
		net_conn_end(c, NET_END_PEER_CLOSED, "peer closed the connection");
	else if (what & BEV_EVENT_ERROR) {
		const char *tls = ssl_error_text(bev, buf, sizeof(buf));
		if (tls)
			net_conn_end(c, NET_END_TLS_ERROR, "TLS error: %s%s", tls,
				     peer_cert_problem(c, why, sizeof(why)));
		else
			net_conn_end(c, NET_END_SOCKET_ERROR, "socket error: %s",
				     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct mp_conn *c = arg;
	if (!c->open)
		net_conn_end(c, NET_END_HANDSHAKE_TIMEOUT, "%s timed out",
			     c->listener ? "TLS handshake" : "connect and TLS handshake");
	else if (c->draining)
		net_conn_end(c, NET_END_DRAIN_TIMEOUT, "answers not taken in time; %s",
			     c->drain_reason);
	else if (c->frame_timer_on)
		net_conn_end(c, NET_END_FRAME_TIMEOUT,
			     "frame not whole %us after its first byte (%zu bytes of it read; "
			     "frame_timeout)",
			     c->opts.frame_timeout_s,
			     evbuffer_get_length(bufferevent_get_input(c->bev)));
}

static size_t sockaddr_len(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

struct mp_conn *net_conn_new(struct event_base *base, struct bufferevent *bev,
			     const struct mp_net_opts *opts, const struct mp_conn_ops *ops,
			     void *arg, const struct sockaddr *sa, struct mp_listener *l)
{
	struct mp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->deadline = evtimer_new(base, on_deadline, c);
	if (!c->deadline) {
		free(c);
		return NULL;
	}
	c->bev = bev;
	c->opts = *opts;
	c->ops = ops;
	c->arg = arg;
	c->listener = l;
	c->refs = 1; /* held by the open connection, dropped when it ends */
	size_t salen = sockaddr_len(sa);
	if (salen <= sizeof(c->addr))
		memcpy(&c->addr, sa, salen);
	net_format_addr(sa, c->peer, sizeof(c->peer));
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(bev, EV_READ, 0, net_read_high_water(c));
	unsigned handshake_s =
	    opts->handshake_timeout_s ? opts->handshake_timeout_s : opts->idle_timeout_s;
	if (handshake_s) {
		struct timeval tv = {(time_t)handshake_s, 0};
		evtimer_add(c->deadline, &tv);
	}
	if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0) {
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		free(c); /* the caller frees bev */
		return NULL;
	}
	return c;
}

bool mp_split_endpoint(const char *endpoint, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(endpoint, ':');
	if (!colon || colon == endpoint)
		return false;
	const char *h = endpoint;
	size_t hl = (size_t)(colon - endpoint);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return false;
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] == '\0' || p == 0 || p > 65535)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return true;
}
