/* Outgoing connections, the host name resolved with libevent's asynchronous resolver (dns.h),
 * never blocking the loop.
 *
 *   mp_connect --resolver answers at once (numeric, hosts file)--> connect()
 *                    --else--> RESOLVING --answer--> connect() --> the TLS handshake (net.c)
 *   RESOLVING --mp_conn_close--> the lookup is cancelled (its reference dropped)
 * A failure seen inside mp_connect is returned (NULL) without calling the ops; a later
 * one closes the connection, which calls ops->on_close. */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "net_internal.h"

/* The attempt failed after the name was resolved or connect() was called. */
static void connect_failed(struct mp_conn *c, const char *why)
{
	if (c->in_connect)
		c->connect_error = why; /* mp_connect returns NULL: one outcome */
	else
		mp_conn_close(c, "%s", why);
}

static void connect_to(struct mp_conn *c, const struct sockaddr *sa, int salen)
{
	if ((size_t)salen <= sizeof(c->addr))
		memcpy(&c->addr, sa, (size_t)salen);
	if (bufferevent_socket_connect(c->bev, sa, salen) != 0)
		connect_failed(c, "connect failed");
}

static const struct evutil_addrinfo *pick_address(const struct evutil_addrinfo *ai)
{
	for (const struct evutil_addrinfo *a = ai; a; a = a->ai_next)
		if (a->ai_family == AF_INET)
			return a;
	return ai;
}

/* The resolver's answer: possibly called from inside mp_connect (a numeric address or a
 * name from the hosts file), or from net_connect_cancel. */
static void on_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct mp_conn *c = arg;
	c->dns_req = NULL;
	c->resolving = false;
	if (err == EVUTIL_EAI_CANCEL || c->closed) {
		/* closed while resolving: nothing more to do */
	} else if (err != 0 || !ai) {
		log_warn("%s %s: cannot resolve: %s", c->opts.name, c->peer,
			 err ? evutil_gai_strerror(err) : "no address");
		connect_failed(c, "cannot resolve the host name");
	} else {
		const struct evutil_addrinfo *a = pick_address(ai);
		connect_to(c, a->ai_addr, (int)a->ai_addrlen);
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	mp_conn_unref(c);
}

void net_connect_cancel(struct mp_conn *c)
{
	evdns_getaddrinfo_cancel(c->dns_req);
}

static void start_connect(struct mp_conn *c, struct evdns_base *dns, const char *host,
			  uint16_t port)
{
	struct evutil_addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
	char service[8];
	snprintf(service, sizeof(service), "%u", port);
	mp_conn_ref(c); /* held by the lookup, dropped in on_resolved */
	c->resolving = true;
	struct evdns_getaddrinfo_request *req =
	    evdns_getaddrinfo(dns, host, service, &hints, on_resolved, c);
	if (c->resolving && req)
		c->dns_req = req; /* answered later */
	else if (c->resolving)
		on_resolved(EVUTIL_EAI_FAIL, NULL, c); /* neither answered nor pending */
}

struct mp_conn *mp_connect(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
			   const char *host, uint16_t port, const struct mp_net_opts *opts,
			   const struct mp_conn_ops *ops, void *arg)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	struct sockaddr_storage unknown = {.ss_family = AF_UNSPEC}; /* until resolved */
	struct mp_conn *c =
	    net_conn_new(base, bev, opts, ops, arg, (struct sockaddr *)&unknown, NULL);
	if (!c) {
		bufferevent_free(bev);
		return NULL;
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
	c->in_connect = true;
	start_connect(c, dns, host, port);
	c->in_connect = false;
	if (c->connect_error) {
		/* The caller never saw this connection: close it without calling its ops. */
		log_warn("%s %s: %s", opts->name, c->peer, c->connect_error);
		c->ops = &(const struct mp_conn_ops){0};
		mp_conn_close(c, "%s", c->connect_error);
		return NULL;
	}
	return c;
}
