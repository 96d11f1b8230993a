/* `http` (issue 12): requests per second through merchantd's HTTP 402 gateway, against the same
 * upstream without it, in one run. mpbench runs the upstream itself (an evhttp server on a
 * thread of its own answering "ok"); at network open m1 is restarted with a [gateway] section
 * in front of it (bench_http_gateway). Three loads of the same length and connections, one
 * request in flight per connection (HTTP/1.1 keep-alive, no pipelining), one after the other:
 *   direct  GET /direct straight to the upstream: what the service does alone
 *   free    GET /free/x through the gateway, a route of price 0: the cost of the proxying
 *   paid    GET /paid/x through the gateway, each request paying one unit with X-Payment
 *           (channels issued and opened as `pay` does; each connection pays with its own)
 * The paid load is the result (count, per_second, latency); direct and free are reported
 * beside it with the ratios paid/direct and paid/free and merchantd's CPU per paid request.
 * The client is one libevent loop on mpbench's thread: on this 2-core machine it shares the
 * CPU with the daemons, as every other scenario's does. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway_header.h"
#include "mpbench_load.h"
#include "mpbench_wallet.h"
#include "net.h"

#define HTTP_PRICE 1 /* one unit of mpbench's channels (unit value 1) */

struct bench_upstream {
	struct event_base *base;
	struct evhttp *http;
	struct event *tick;
	pthread_t thread;
	int stop;
	uint16_t port;
};

static void on_upstream(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	if (out)
		evbuffer_add(out, "ok\n", 3);
	evhttp_send_reply(req, 200, "OK", out);
	if (out)
		evbuffer_free(out);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct bench_upstream *u = arg;
	if (__atomic_load_n(&u->stop, __ATOMIC_SEQ_CST))
		event_base_loopbreak(u->base);
}

static void *upstream_run(void *arg)
{
	event_base_dispatch(((struct bench_upstream *)arg)->base);
	return NULL;
}

static struct bench_upstream *upstream_start(void)
{
	struct bench_upstream *u = calloc(1, sizeof(*u));
	u->base = u ? event_base_new() : NULL;
	u->http = u && u->base ? evhttp_new(u->base) : NULL;
	struct evhttp_bound_socket *s =
	    u && u->http ? evhttp_bind_socket_with_handle(u->http, "127.0.0.1", 0) : NULL;
	struct timeval ms20 = {0, 20000};
	if (s)
		u->tick = event_new(u->base, -1, EV_PERSIST, on_tick, u);
	if (!u || !s || !u->tick || event_add(u->tick, &ms20) != 0) {
		fprintf(stderr, "mpbench: cannot start the http upstream\n");
		return NULL; /* the process ends with the run: nothing to free */
	}
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &len);
	u->port = ntohs(sa.sin_port);
	evhttp_set_gencb(u->http, on_upstream, u);
	if (pthread_create(&u->thread, NULL, upstream_run, u) != 0)
		return NULL;
	return u;
}

void bench_http_stop(struct bench_net *n)
{
	struct bench_upstream *u = n->upstream;
	if (!u)
		return;
	__atomic_store_n(&u->stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(u->thread, NULL);
	event_free(u->tick);
	evhttp_free(u->http);
	event_base_free(u->base);
	free(u);
	n->upstream = NULL;
}

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

bool bench_http_gateway(struct bench_net *n, const struct bench_opts *o)
{
	if (!n->dir[0]) {
		fprintf(stderr, "mpbench: http needs the network's folder (--spawn or --net DIR): "
				"m1 is restarted with a [gateway] section\n");
		return false;
	}
	n->upstream = upstream_start();
	uint16_t port = free_port();
	if (!n->upstream || !port)
		return false;
	char ini[700];
	snprintf(ini, sizeof(ini), "%s/m1/config.ini", n->dir);
	FILE *f = fopen(ini, "a");
	if (!f)
		return false;
	fprintf(f,
		"\n[gateway]\nlisten = 127.0.0.1:%u\nupstream = 127.0.0.1:%u\nmax_pending = 4096\n"
		"routes = GET /paid/* %d; GET /free/* 0\n",
		port, n->upstream->port, HTTP_PRICE);
	fclose(f);
	snprintf(n->gateway, sizeof(n->gateway), "127.0.0.1:%u", port);
	return bench_net_restart(n, o, "m1", "merchantd");
}

/* ---- the load: one loop, C keep-alive connections, one request in flight each ---- */

struct http_conn {
	struct http_load *l;
	struct evhttp_connection *evcon;
	unsigned index;
	unsigned next_channel; /* paid: the connection's channels are index, index + C, ... */
	double sent_at;
};

struct http_load {
	struct event_base *base;
	struct bench_wallet *w; /* paid load; NULL otherwise */
	const char *path;
	char host[256];
	uint16_t port;
	unsigned conns;
	double t0, until;
	unsigned running;
	struct load_result r;
};

static bool send_next(struct http_conn *c);

static void on_answer(struct evhttp_request *req, void *arg)
{
	struct http_conn *c = arg;
	struct http_load *l = c->l;
	double now = bench_now();
	if (req && evhttp_request_get_response_code(req) == 200) {
		l->r.done++;
		hist_add(&l->r.latency, (uint64_t)((now - c->sent_at) * 1e6));
	} else {
		l->r.failed++;
	}
	l->r.seconds = now - l->t0;
	if (now >= l->until || !send_next(c)) {
		if (--l->running == 0)
			event_base_loopbreak(l->base);
	}
}

/* The paid request's X-Payment: the connection's next channel, its next index. */
static char *payment(struct http_conn *c, const char *uri)
{
	struct bench_wallet *w = c->l->w;
	unsigned n = w->n_channels, C = c->l->conns;
	for (unsigned tries = 0; tries < n; tries++) {
		unsigned i = c->index + C * c->next_channel;
		c->next_channel = i + C < n ? c->next_channel + 1 : 0;
		struct bench_channel *ch = i < n ? &w->channels[i] : NULL;
		if (!ch || !ch->open || ch->next_j >= ch->n)
			continue;
		struct gw_payment p = {.seg_seq = 0, .j = ++ch->next_j};
		memcpy(p.channel_id, ch->id, MP_ID_LEN);
		memcpy(p.w, wallet_word(w, ch, p.j), MP_HASH_LEN);
		if (!gw_request_ref("GET", uri, NULL, 0, p.ref))
			return NULL;
		return gw_payment_encode(&p);
	}
	return NULL;
}

static bool send_next(struct http_conn *c)
{
	struct http_load *l = c->l;
	struct evhttp_request *req = evhttp_request_new(on_answer, c);
	if (!req)
		return false;
	char uri[64];
	snprintf(uri, sizeof(uri), "%s", l->path);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", l->host);
	if (l->w) {
		char *pay = payment(c, uri);
		if (!pay) {
			evhttp_request_free(req);
			return false; /* no unit left on this connection's channels */
		}
		evhttp_add_header(h, GW_HEADER_PAYMENT, pay);
		free(pay);
	}
	c->sent_at = bench_now();
	return evhttp_make_request(c->evcon, req, EVHTTP_REQ_GET, uri) == 0;
}

static bool http_run(struct http_load *l, const char *endpoint, double duration)
{
	if (!mp_split_endpoint(endpoint, l->host, sizeof(l->host), &l->port))
		return false;
	l->base = event_base_new();
	struct http_conn *cs = calloc(l->conns, sizeof(*cs));
	if (!l->base || !cs)
		return false;
	l->t0 = bench_now();
	l->until = l->t0 + duration;
	for (unsigned i = 0; i < l->conns; i++) {
		cs[i] = (struct http_conn){.l = l, .index = i};
		cs[i].evcon = evhttp_connection_base_new(l->base, NULL, l->host, l->port);
		if (cs[i].evcon) {
			evhttp_connection_set_timeout(cs[i].evcon, 10);
			l->running += send_next(&cs[i]);
		}
	}
	if (l->running)
		event_base_dispatch(l->base);
	l->r.conns_open = l->conns;
	for (unsigned i = 0; i < l->conns; i++)
		if (cs[i].evcon)
			evhttp_connection_free(cs[i].evcon);
	free(cs);
	event_base_free(l->base);
	return l->r.done > 0;
}

static json_t *phase(const struct bench_opts *o, const char *endpoint, const char *path,
		     struct bench_wallet *w, struct load_result *r)
{
	struct http_load l = {.w = w, .path = path, .conns = o->conns ? o->conns : 1};
	double duration = o->duration > 0 ? o->duration : 10;
	if (!http_run(&l, endpoint, duration)) {
		fprintf(stderr, "mpbench: http: no %s request answered 200 through %s\n", path,
			endpoint);
		return NULL;
	}
	*r = l.r;
	return load_json(&l.r, "per_second");
}

json_t *scenario_http(const struct bench_opts *o, const struct bench_net *n)
{
	if (!n->upstream || !n->gateway[0]) {
		fprintf(stderr, "mpbench: http: no gateway in front of an upstream\n");
		return NULL;
	}
	char direct_ep[64];
	snprintf(direct_ep, sizeof(direct_ep), "127.0.0.1:%u", n->upstream->port);
	struct load_result rd, rf, rp, issued, opened;
	json_t *direct = phase(o, direct_ep, "/direct", NULL, &rd);
	json_t *free_ = direct ? phase(o, n->gateway, "/free/x", NULL, &rf) : NULL;
	struct bench_wallet w;
	json_t *out = NULL;
	if (free_ && wallet_setup(&w, o, n)) {
		struct bench_cpu c0, c1;
		if (wallet_make_channels(&w, o) && wallet_issue(&w, o, n, &issued) &&
		    wallet_open(&w, o, n, &opened)) {
			cpu_sample(n, &c0);
			out = phase(o, n->gateway, "/paid/x", &w, &rp);
			cpu_sample(n, &c1);
		}
		if (out) {
			json_t *cpu = cpu_delta(n, &c0, &c1);
			double merchant = json_number_value(json_object_get(cpu, "merchantd"));
			json_object_set_new(out, "unit", json_string("paid HTTP requests"));
			json_object_set_new(out, "cpu_seconds", cpu);
			json_object_set_new(out, "merchantd_cpu_us_per_request",
					    json_real(merchant * 1e6 / (double)rp.done));
			json_object_set_new(out, "direct", json_incref(direct));
			json_object_set_new(out, "free", json_incref(free_));
			json_object_set_new(
			    out, "paid_vs_direct",
			    json_real(rp.done / rp.seconds / (rd.done / rd.seconds)));
			json_object_set_new(
			    out, "paid_vs_free",
			    json_real(rp.done / rp.seconds / (rf.done / rf.seconds)));
			json_object_set_new(out, "connections", json_integer(o->conns));
			json_object_set_new(out, "channels", json_integer(w.opened));
		}
		wallet_free(&w);
	}
	json_decref(direct);
	json_decref(free_);
	return out;
}
