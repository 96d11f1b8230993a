/* Listeners: accept within max_conns (the excess is closed at once, logged at most once a
 * second), keep the list of their connections, count how connections end, render the counters
 * as metrics. */
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "net_internal.h"
#include "util.h"

const char *net_end_name(enum net_end e)
{
	switch (e) {
	case NET_END_PEER_CLOSED:
		return "peer_closed";
	case NET_END_TLS_ERROR:
		return "tls_error";
	case NET_END_SOCKET_ERROR:
		return "socket_error";
	case NET_END_HANDSHAKE_TIMEOUT:
		return "handshake_timeout";
	case NET_END_IDLE_TIMEOUT:
		return "idle_timeout";
	case NET_END_WRITE_TIMEOUT:
		return "write_timeout";
	case NET_END_DRAIN_TIMEOUT:
		return "drain_timeout";
	case NET_END_FRAME_TIMEOUT:
		return "frame_timeout";
	case NET_END_FRAME_TOO_BIG:
		return "frame_too_big";
	case NET_END_BAD_FRAME:
		return "bad_frame";
	case NET_END_UNPARSABLE:
		return "unparsable";
	case NET_END_DECODE_BUDGET:
		return "decode_budget";
	case NET_END_TOO_MANY_ITEMS:
		return "too_many_items";
	case NET_END_BAD_VERSION:
		return "bad_version";
	case NET_END_BY_DAEMON:
		return "by_daemon";
	case NET_END_SHUTDOWN:
		return "shutdown";
	case NET_END_COUNT:
		break;
	}
	return "?";
}

void net_format_addr(const struct sockaddr *sa, char *out, size_t len)
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

bool net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, int *sslen)
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

void net_listener_forget(struct mp_listener *l, struct mp_conn *c, enum net_end why)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->listener = NULL;
	l->stats.current--;
	l->stats.ended[why]++;
}

static void adopt(struct mp_listener *l, struct mp_conn *c)
{
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	l->stats.current++;
	l->stats.accepted++;
}

/* An attacker opening connections in a loop must not flood the log: one line a second. */
static void log_refusal(struct mp_listener *l, const char *peer)
{
	uint64_t now = mp_monotonic_s();
	if (now == l->refusal_logged_at) {
		l->refusals_unlogged++;
		return;
	}
	log_warn("%s listener: refusing connection from %s: %u connections open (max_connections)"
		 "; %llu more refused since the last such line",
		 l->opts.name, peer, l->stats.current, (unsigned long long)l->refusals_unlogged);
	l->refusal_logged_at = now;
	l->refusals_unlogged = 0;
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct mp_listener *l = arg;
	char peer[64];
	net_format_addr(sa, peer, sizeof(peer));
	if (l->opts.max_conns && l->stats.current >= l->opts.max_conns) {
		l->stats.refused_max_conns++;
		log_refusal(l, peer);
		evutil_closesocket(fd);
		return;
	}
	SSL *ssl = SSL_new(l->ctx);
	if (!ssl) {
		log_err("%s %s: SSL_new failed; dropping connection", l->opts.name, peer);
		evutil_closesocket(fd);
		return;
	}
	struct event_base *base = evconnlistener_get_base(evl);
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		log_err("%s %s: cannot create TLS bufferevent; dropping connection", l->opts.name,
			peer);
		SSL_free(ssl);
		evutil_closesocket(fd);
		return;
	}
	struct mp_conn *c = net_conn_new(base, bev, &l->opts, l->ops, l->arg, sa, l);
	if (!c) {
		log_err("%s %s: out of memory; dropping connection", l->opts.name, peer);
		bufferevent_free(bev);
		return;
	}
	adopt(l, c);
}

/* Every connection needs a descriptor: say so at start if the limit cannot be reached. */
static void check_fd_limit(const struct mp_net_opts *opts)
{
	struct rlimit rl;
	if (opts->max_conns && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)opts->max_conns + 64)
		log_warn("%s listener: max_connections is %u but the process may open only %llu "
			 "descriptors (ulimit -n); accept will fail before the limit",
			 opts->name, opts->max_conns, (unsigned long long)rl.rlim_cur);
}

struct mp_listener *mp_listen(struct event_base *base, SSL_CTX *ctx, const char *host,
			      uint16_t port, const struct mp_net_opts *opts,
			      const struct mp_conn_ops *ops, void *arg)
{
	struct sockaddr_storage ss;
	int sslen;
	if (!net_resolve(host, port, &ss, &sslen)) {
		log_err("%s listener: cannot resolve %s:%u", opts->name, host, port);
		return NULL;
	}
	struct mp_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->ctx = ctx;
	l->opts = *opts;
	l->budget.limit = opts->read_budget;
	if (!mp_decode_arena_init(&l->arena, MP_DECODE_ARENA_SIZE)) {
		log_err("%s listener: out of memory for its decode arena", opts->name);
		free(l);
		return NULL;
	}
	l->ops = ops;
	l->arg = arg;
	l->port = port;
	l->evl =
	    evconnlistener_new_bind(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				    128, (struct sockaddr *)&ss, sslen);
	if (!l->evl) {
		log_err("%s listener: cannot listen on %s:%u: %s", opts->name, host, port,
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		mp_decode_arena_fini(&l->arena);
		free(l);
		return NULL;
	}
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&bound, &blen) == 0)
		l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	check_fd_limit(opts);
	log_info("%s listener: listening on %s:%u (max_connections %u, max_in_flight %u, "
		 "max_frame %zu, handshake %us, idle %us)",
		 opts->name, host, l->port, opts->max_conns, opts->max_in_flight, opts->max_frame,
		 opts->handshake_timeout_s, opts->idle_timeout_s);
	return l;
}

void mp_listener_set_ctx(struct mp_listener *l, SSL_CTX *ctx)
{
	l->ctx = ctx;
}

void mp_listener_drain(struct mp_listener *l, const char *reason)
{
	if (!l)
		return;
	if (l->evl) { /* closes the listening socket: new connections are refused at once */
		evconnlistener_free(l->evl);
		l->evl = NULL;
	}
	log_info("%s listener: closed (%s); draining %u connections", l->opts.name, reason,
		 l->stats.current);
	/* A connection with nothing owed ends inside the call and leaves the list. */
	for (struct mp_conn *c = l->conns, *next; c; c = next) {
		next = c->next;
		mp_conn_close_after_flush(c, "%s", reason);
	}
}

unsigned mp_listener_connections(const struct mp_listener *l)
{
	return l ? l->stats.current : 0;
}

uint16_t mp_listener_port(const struct mp_listener *l)
{
	return l->port;
}

void mp_listener_free(struct mp_listener *l)
{
	if (!l)
		return;
	if (l->evl)
		evconnlistener_free(l->evl);
	while (l->conns)
		net_conn_end(l->conns, NET_END_SHUTDOWN, "shutting down");
	mp_decode_arena_fini(&l->arena);
	free(l);
}

/* Registers the listener's counters under prefix (e.g. "micropay_broker"); the listener must
 * outlive the registry's expositions. */
void mp_listener_metrics_register(const struct mp_listener *l, struct mp_metrics *reg,
				  const char *prefix)
{
	const struct net_stats *s = &l->stats;
	const char *n = l->opts.name;
	char name[128];
	snprintf(name, sizeof(name), "%s_connections", prefix);
	mp_metrics_u32(reg, MP_METRIC_GAUGE, name, "Open connections, handshakes included.",
		       (const char *[]){"listener", n, NULL}, &s->current);
	snprintf(name, sizeof(name), "%s_connections_max", prefix);
	mp_metrics_u32(reg, MP_METRIC_GAUGE, name, "[limits] max_connections of the listener.",
		       (const char *[]){"listener", n, NULL}, &l->opts.max_conns);
	snprintf(name, sizeof(name), "%s_connections_accepted_total", prefix);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, "Connections accepted.",
		       (const char *[]){"listener", n, NULL}, &s->accepted);
	snprintf(name, sizeof(name), "%s_connections_refused_total", prefix);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, "Connections closed at accept by a limit.",
		       (const char *[]){"listener", n, "reason", "max_connections", NULL},
		       &s->refused_max_conns);
	snprintf(name, sizeof(name), "%s_connections_closed_total", prefix);
	for (int e = 0; e < NET_END_COUNT; e++)
		mp_metrics_u64(
		    reg, MP_METRIC_COUNTER, name, "Connections ended, by reason.",
		    (const char *[]){"listener", n, "reason", net_end_name((enum net_end)e), NULL},
		    &s->ended[e]);
	snprintf(name, sizeof(name), "%s_reads_paused_total", prefix);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, "Times reading from a peer paused, by limit.",
		       (const char *[]){"listener", n, "reason", "max_in_flight", NULL},
		       &s->paused_in_flight);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, "Times reading from a peer paused, by limit.",
		       (const char *[]){"listener", n, "reason", "output_high_water", NULL},
		       &s->paused_output);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, "Times reading from a peer paused, by limit.",
		       (const char *[]){"listener", n, "reason", "read_budget", NULL},
		       &l->budget.waits);
	snprintf(name, sizeof(name), "%s_decode_heap_allocs_total", prefix);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name,
		       "Allocations on the heap while decoding frames: the rest of a frame whose "
		       "decoded form did not fit the listener's decode arena, or a nested decode.",
		       (const char *[]){"listener", n, NULL}, &l->arena.heap_allocs);
	snprintf(name, sizeof(name), "%s_read_budget_bytes", prefix);
	mp_metrics_u64(reg, MP_METRIC_GAUGE, name, "[limits] read_budget of the listener.",
		       (const char *[]){"listener", n, NULL}, &l->budget.limit);
	snprintf(name, sizeof(name), "%s_read_budget_reserved_bytes", prefix);
	mp_metrics_u64(reg, MP_METRIC_GAUGE, name,
		       "Bytes of the read budget reserved by large frames being read.",
		       (const char *[]){"listener", n, NULL}, &l->budget.reserved);
}
