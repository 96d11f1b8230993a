#include "net.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frame.h"
#include "log.h"
#include "tls.h"

struct pending_call {
	uint64_t request_id;
	mp_reply_fn fn;
	void *arg;
	struct pending_call *next;
};

struct mp_conn {
	struct bufferevent *bev;
	struct mp_net_opts opts;
	const struct mp_conn_ops *ops;
	void *arg;
	void *data;
	unsigned refs;
	bool open; /* handshake done and not closed */
	bool closed;
	uint64_t next_request_id;
	struct pending_call *pending;
	char peer[64];
};

struct mp_listener {
	struct evconnlistener *evl;
	SSL_CTX *ctx;
	struct mp_net_opts opts;
	const struct mp_conn_ops *ops;
	void *arg;
	uint16_t port;
};

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

void mp_conn_set_data(struct mp_conn *c, void *data)
{
	c->data = data;
}

void *mp_conn_data(const struct mp_conn *c)
{
	return c->data;
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

void mp_conn_close(struct mp_conn *c, const char *fmt, ...)
{
	if (c->closed)
		return;
	c->closed = true;
	c->open = false;
	char reason[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	log_info("%s %s: closing connection: %s", c->opts.name, c->peer, reason);
	if (c->bev) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl && c->open)
			SSL_shutdown(
			    ssl); /* close_notify, best effort: the socket is closed next */
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	fail_pending(c);
	if (c->ops->on_close)
		c->ops->on_close(c, reason, c->arg);
	mp_conn_unref(c);
}

int mp_conn_send(struct mp_conn *c, const MpEnvelope *env)
{
	if (c->closed || !c->bev)
		return -1;
	return mp_frame_push(bufferevent_get_output(c->bev), env, c->opts.max_frame);
}

int mp_conn_call(struct mp_conn *c, MpEnvelope *env, mp_reply_fn fn, void *arg)
{
	if (c->closed)
		return -1;
	struct pending_call *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	env->request_id = ++c->next_request_id;
	if (mp_conn_send(c, env) != 0) {
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

static void on_read(struct bufferevent *bev, void *ctx)
{
	struct mp_conn *c = ctx;
	mp_conn_ref(c);
	while (!c->closed) {
		MpEnvelope *env = NULL;
		size_t len = 0;
		enum mp_frame_result r =
		    mp_frame_take(bufferevent_get_input(bev), c->opts.max_frame, &env, &len);
		if (r == MP_FRAME_NEED_MORE)
			break;
		if (r != MP_FRAME_OK) {
			mp_conn_close(c, "bad frame: %s", mp_frame_result_str(r));
			break;
		}
		if (!env) {
			mp_conn_close(c, "unparsable envelope (%zu bytes)", len);
			break;
		}
		if (env->version != MP_PROTOCOL_VERSION) {
			mp_conn_close(c, "protocol version %u, expected %u", env->version,
				      MP_PROTOCOL_VERSION);
		} else if (!deliver_reply(c, env) && c->ops->on_envelope) {
			c->ops->on_envelope(c, env, c->arg);
		}
		micropay__v1__envelope__free_unpacked(env, NULL);
	}
	mp_conn_unref(c);
}

static const char *ssl_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);
	if (!e)
		return NULL;
	ERR_error_string_n(e, buf, len);
	return buf;
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
	struct mp_conn *c = ctx;
	if (what & BEV_EVENT_CONNECTED) {
		c->open = true;
		if (c->ops->on_open)
			c->ops->on_open(c, c->arg);
		return;
	}
	char buf[256];
	if (what & BEV_EVENT_TIMEOUT)
		mp_conn_close(c, c->open ? "idle timeout" : "TLS handshake timed out");
	else if (what & BEV_EVENT_EOF)
		mp_conn_close(c, "peer closed the connection");
	else if (what & BEV_EVENT_ERROR) {
		const char *tls = ssl_error_text(bev, buf, sizeof(buf));
		if (tls)
			mp_conn_close(c, "TLS error: %s", tls);
		else
			mp_conn_close(c, "socket error: %s",
				      evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
}

static struct mp_conn *conn_new(struct bufferevent *bev, const struct mp_net_opts *opts,
				const struct mp_conn_ops *ops, void *arg, const char *peer)
{
	struct mp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->bev = bev;
	c->opts = *opts;
	c->ops = ops;
	c->arg = arg;
	c->refs = 1; /* held by the open connection, dropped by mp_conn_close */
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, on_read, NULL, on_event, c);
	if (opts->idle_timeout_s) {
		struct timeval tv = {(time_t)opts->idle_timeout_s, 0};
		bufferevent_set_timeouts(bev, &tv, NULL);
	}
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return c;
}

static void format_addr(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, len, "%s:%u", host, port);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct mp_listener *l = arg;
	char peer[64];
	format_addr(sa, peer, sizeof(peer));
	SSL *ssl = SSL_new(l->ctx);
	if (!ssl) {
		log_err("%s %s: SSL_new failed; dropping connection", l->opts.name, peer);
		evutil_closesocket(fd);
		return;
	}
	struct bufferevent *bev =
	    bufferevent_openssl_socket_new(evconnlistener_get_base(evl), fd, ssl,
					   BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		log_err("%s %s: cannot create TLS bufferevent; dropping connection", l->opts.name,
			peer);
		SSL_free(ssl);
		evutil_closesocket(fd);
		return;
	}
	if (!conn_new(bev, &l->opts, l->ops, l->arg, peer)) {
		log_err("%s %s: out of memory; dropping connection", l->opts.name, peer);
		bufferevent_free(bev);
	}
}

static bool resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, int *sslen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	char service[8];
	snprintf(service, sizeof(service), "%u", port);
	if (getaddrinfo(host, service, &hints, &res) != 0 || !res)
		return false;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = (int)res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

struct mp_listener *mp_listen(struct event_base *base, SSL_CTX *ctx, const char *host,
			      uint16_t port, const struct mp_net_opts *opts,
			      const struct mp_conn_ops *ops, void *arg)
{
	struct sockaddr_storage ss;
	int sslen;
	if (!resolve(host, port, &ss, &sslen)) {
		log_err("%s listener: cannot resolve %s:%u", opts->name, host, port);
		return NULL;
	}
	struct mp_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	*l = (struct mp_listener){NULL, ctx, *opts, ops, arg, port};
	l->evl =
	    evconnlistener_new_bind(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				    128, (struct sockaddr *)&ss, sslen);
	if (!l->evl) {
		log_err("%s listener: cannot listen on %s:%u: %s", opts->name, host, port,
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		free(l);
		return NULL;
	}
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&bound, &blen) == 0)
		l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	log_info("%s listener: listening on %s:%u", opts->name, host, l->port);
	return l;
}

uint16_t mp_listener_port(const struct mp_listener *l)
{
	return l->port;
}

void mp_listener_free(struct mp_listener *l)
{
	if (!l)
		return;
	evconnlistener_free(l->evl);
	free(l);
}

struct mp_conn *mp_connect(struct event_base *base, SSL_CTX *ctx, const char *host, uint16_t port,
			   const struct mp_net_opts *opts, const struct mp_conn_ops *ops, void *arg)
{
	struct sockaddr_storage ss;
	int sslen;
	if (!resolve(host, port, &ss, &sslen)) {
		log_warn("%s %s:%u: cannot resolve", opts->name, host, port);
		return NULL;
	}
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	char peer[64];
	snprintf(peer, sizeof(peer), "%s:%u", host, port);
	struct mp_conn *c = conn_new(bev, opts, ops, arg, peer);
	if (!c) {
		bufferevent_free(bev);
		return NULL;
	}
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss, sslen) != 0) {
		/* The error event has not fired: close here so the caller sees one outcome. */
		log_warn("%s %s: connect failed", opts->name, peer);
		c->ops = &(const struct mp_conn_ops){0};
		mp_conn_close(c, "connect failed");
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
