/* mprelay: a fault-injecting TCP relay for deploy/testnet (a test tool, not installed).
 *
 *   mprelay --host ADDR --port P [--port P ...] --faults FILE [--limit BYTES] [--seed N]
 *
 * It runs in a namespace that stands on HOST's link (deploy/testnet inserts it), where every
 * TCP connection to or from ADDR on one of the ports is delivered to it (policy routing makes
 * the link's traffic local; the listeners are IP_TRANSPARENT). Each connection is accepted,
 * the relay connects on to the address the client asked for (getsockname), and bytes are
 * copied both ways through relay_pipe.c: "out" is from ADDR to the rest, "in" toward ADDR.
 * FILE holds `key = value` lines, read at start and again on SIGHUP (open connections keep
 * going with the new values): delay_out_ms, delay_in_ms, loss_pct, stall_ms, cut_pct.
 * What "loss" means for TCP is in relay_pipe.h and docs/testnet.md. One line per event on
 * stderr; totals on SIGTERM/SIGINT, then exit 0.
 *
 * A connection: CONNECTING (client accepted, connecting on, deadline 5 s) --connected-->
 * RELAYING --either pipe ends it (cut, end of stream delivered, error)--> CLOSED (both sockets
 * closed; a cut closes with a reset). */
#include "relay_pipe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_MAX_PORTS 8
#define RELAY_MAX_CONNS 256
#define RELAY_CONNECT_S 5

struct relay;

struct relay_conn {
	struct relay *r;
	struct bufferevent *client, *server;
	struct relay_pipe to_server, to_client;
	bool outbound; /* the client is the host: to_server is "out" */
	bool connected;
	char name[80]; /* client -> original destination */
	struct relay_conn *prev, *next;
};

struct relay {
	struct event_base *base;
	struct in_addr host;
	const char *faults_path;
	struct relay_faults out, in;
	struct relay_stats out_stats, in_stats;
	uint64_t rng;
	size_t limit;
	uint16_t ports[RELAY_MAX_PORTS];
	size_t n_ports;
	struct evconnlistener *listeners[RELAY_MAX_PORTS];
	struct relay_conn *conns;
	size_t n_conns;
	uint64_t accepted, refused;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char when[32];
	time_t t = time(NULL);
	strftime(when, sizeof(when), "%H:%M:%S", gmtime(&t));
	fprintf(stderr, "mprelay %s ", when);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- the faults file ---- */

static bool set_fault(struct relay *r, const char *key, unsigned long v)
{
	if (!strcmp(key, "delay_out_ms"))
		r->out.delay_ms = (uint32_t)v;
	else if (!strcmp(key, "delay_in_ms"))
		r->in.delay_ms = (uint32_t)v;
	else if (!strcmp(key, "loss_pct") && v <= 100)
		r->out.loss_permille = r->in.loss_permille = (uint32_t)v * 10;
	else if (!strcmp(key, "stall_ms") && v > 0)
		r->out.stall_ms = r->in.stall_ms = (uint32_t)v;
	else if (!strcmp(key, "cut_pct") && v <= 100)
		r->out.cut_permille = r->in.cut_permille = (uint32_t)v * 10;
	else
		return false;
	return true;
}

static bool load_faults(struct relay *r)
{
	FILE *f = fopen(r->faults_path, "r");
	if (!f) {
		say("cannot read %s: %s", r->faults_path, strerror(errno));
		return false;
	}
	struct relay_faults out = r->out, in = r->in;
	r->out = r->in = (struct relay_faults){.stall_ms = 200};
	char line[128], key[64];
	unsigned long v;
	bool ok = true;
	for (unsigned no = 1; fgets(line, sizeof(line), f); no++) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, " %63[a-z_] = %lu", key, &v) != 2 || v > 3600000 ||
		    !set_fault(r, key, v)) {
			say("%s:%u: expected `key = number` with key delay_out_ms, delay_in_ms, "
			    "loss_pct (0-100), stall_ms, cut_pct (0-100): %s",
			    r->faults_path, no, line);
			ok = false;
		}
	}
	fclose(f);
	if (!ok) {
		r->out = out, r->in = in; /* a bad file changes nothing */
		return false;
	}
	say("faults: out %u ms, in %u ms, loss %u%% (stall %u ms), cut %u%%", r->out.delay_ms,
	    r->in.delay_ms, r->out.loss_permille / 10, r->out.stall_ms, r->out.cut_permille / 10);
	return true;
}

/* ---- connections ---- */

static void conn_free(struct relay_conn *c, bool cut, const char *why)
{
	struct relay *r = c->r;
	say("%s %s: %s", c->name, cut ? "cut" : "closed", why);
	if (cut) { /* a reset on both sides, as a broken path looks to the endpoints */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(bufferevent_getfd(c->client), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (c->connected)
			setsockopt(bufferevent_getfd(c->server), SOL_SOCKET, SO_LINGER, &lg,
				   sizeof(lg));
	}
	relay_pipe_free(&c->to_server);
	relay_pipe_free(&c->to_client);
	bufferevent_free(c->client);
	bufferevent_free(c->server);
	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->n_conns--;
	free(c);
}

static void end_cb(void *arg, bool cut, const char *why)
{
	conn_free(arg, cut, why);
}

static void client_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_pipe_readable(&((struct relay_conn *)arg)->to_server);
}

static void server_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_pipe_readable(&((struct relay_conn *)arg)->to_client);
}

static void client_drained(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_pipe_drained(&((struct relay_conn *)arg)->to_client);
}

static void server_drained(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_pipe_drained(&((struct relay_conn *)arg)->to_server);
}

static void side_event(struct relay_conn *c, struct relay_pipe *from_it, short what,
		       const char *side)
{
	if (what & BEV_EVENT_EOF) {
		relay_pipe_eof(from_it);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "%s: %s", side,
		 what & BEV_EVENT_TIMEOUT ? "no answer" : strerror(EVUTIL_SOCKET_ERROR()));
	conn_free(c, false, why);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct relay_conn *c = arg;
	side_event(c, &c->to_server, what, "client");
}

static void server_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct relay_conn *c = arg;
	if ((what & BEV_EVENT_CONNECTED) && !c->connected) {
		c->connected = true;
		bufferevent_set_timeouts(c->server, NULL, NULL);
		bufferevent_enable(c->client, EV_READ);
		say("%s relaying (%s)", c->name, c->outbound ? "out" : "in");
		return;
	}
	side_event(c, &c->to_client, what, c->connected ? "server" : "connect");
}

static bool pipes_init(struct relay *r, struct relay_conn *c)
{
	c->to_server = (struct relay_pipe){
	    .from = c->client, .to = c->server, .rng = &r->rng, .end = end_cb, .end_arg = c};
	c->to_client = (struct relay_pipe){
	    .from = c->server, .to = c->client, .rng = &r->rng, .end = end_cb, .end_arg = c};
	c->to_server.faults = c->outbound ? &r->out : &r->in;
	c->to_server.stats = c->outbound ? &r->out_stats : &r->in_stats;
	c->to_client.faults = c->outbound ? &r->in : &r->out;
	c->to_client.stats = c->outbound ? &r->in_stats : &r->out_stats;
	return relay_pipe_init(&c->to_server, r->base, r->limit) &&
	       relay_pipe_init(&c->to_client, r->base, r->limit);
}

static struct relay_conn *conn_new(struct relay *r, evutil_socket_t fd,
				   const struct sockaddr_in *from, const struct sockaddr_in *to)
{
	struct relay_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->r = r;
	c->outbound = from->sin_addr.s_addr == r->host.s_addr;
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	snprintf(c->name, sizeof(c->name), "%s:%u -> %s:%u",
		 inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)), ntohs(from->sin_port),
		 inet_ntop(AF_INET, &to->sin_addr, b, sizeof(b)), ntohs(to->sin_port));
	c->client = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->server = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->client || !c->server || !pipes_init(r, c)) {
		if (c->client)
			bufferevent_free(c->client);
		else
			evutil_closesocket(fd);
		if (c->server)
			bufferevent_free(c->server);
		relay_pipe_free(&c->to_server);
		relay_pipe_free(&c->to_client);
		free(c);
		return NULL;
	}
	bufferevent_setcb(c->client, client_read, client_drained, client_event, c);
	bufferevent_setcb(c->server, server_read, server_drained, server_event, c);
	return c;
}

static void link_conn(struct relay *r, struct relay_conn *c)
{
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->n_conns++;
}

static void accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		     void *arg)
{
	(void)l, (void)len;
	struct relay *r = arg;
	struct sockaddr_in to;
	socklen_t tolen = sizeof(to);
	if (r->n_conns >= RELAY_MAX_CONNS || sa->sa_family != AF_INET ||
	    getsockname(fd, (struct sockaddr *)&to, &tolen) != 0) {
		r->refused++;
		say("connection refused (%zu open, limit %d)", r->n_conns, RELAY_MAX_CONNS);
		evutil_closesocket(fd);
		return;
	}
	struct relay_conn *c = conn_new(r, fd, (const struct sockaddr_in *)sa, &to);
	if (!c) {
		r->refused++;
		say("connection refused: out of memory");
		return;
	}
	link_conn(r, c);
	r->accepted++;
	struct timeval deadline = {.tv_sec = RELAY_CONNECT_S};
	bufferevent_set_timeouts(c->server, NULL, &deadline);
	bufferevent_disable(c->client, EV_READ); /* until the server side is connected */
	if (bufferevent_socket_connect(c->server, (struct sockaddr *)&to, sizeof(to)) != 0) {
		conn_free(c, false, "connect failed");
		return;
	}
	bufferevent_enable(c->server, EV_READ);
}

/* ---- start-up ---- */

static bool listen_port(struct relay *r, size_t i)
{
	evutil_socket_t fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(r->ports[i])};
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		say("cannot listen on port %u (IP_TRANSPARENT needs CAP_NET_ADMIN): %s",
		    r->ports[i], strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	r->listeners[i] = evconnlistener_new(r->base, accepted, r, LEV_OPT_CLOSE_ON_FREE, 64, fd);
	if (!r->listeners[i]) {
		close(fd);
		return false;
	}
	return true;
}

static void print_totals(const struct relay *r)
{
	say("totals: connections %llu accepted, %llu refused; out %llu bytes in %llu chunks, "
	    "%llu lost, %llu cuts; in %llu bytes in %llu chunks, %llu lost, %llu cuts",
	    (unsigned long long)r->accepted, (unsigned long long)r->refused,
	    (unsigned long long)r->out_stats.bytes, (unsigned long long)r->out_stats.chunks,
	    (unsigned long long)r->out_stats.lost, (unsigned long long)r->out_stats.cuts,
	    (unsigned long long)r->in_stats.bytes, (unsigned long long)r->in_stats.chunks,
	    (unsigned long long)r->in_stats.lost, (unsigned long long)r->in_stats.cuts);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct relay *r = arg;
	if (sig == SIGHUP) {
		load_faults(r);
		return;
	}
	if (sig == SIGUSR1) {
		print_totals(r);
		return;
	}
	event_base_loopbreak(r->base);
}

static int usage(void)
{
	fprintf(stderr, "usage: mprelay --host ADDR --port P [--port P ...] --faults FILE "
			"[--limit BYTES] [--seed N]\n");
	return 2;
}

static bool parse_args(struct relay *r, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"host", required_argument, NULL, 'h'},   {"port", required_argument, NULL, 'p'},
	    {"faults", required_argument, NULL, 'f'}, {"limit", required_argument, NULL, 'l'},
	    {"seed", required_argument, NULL, 's'},   {NULL, 0, NULL, 0}};
	bool have_host = false;
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		char *end;
		unsigned long v = o == 'h' || o == 'f' ? 0 : strtoul(optarg, &end, 10);
		if (o == 'h')
			have_host = inet_pton(AF_INET, optarg, &r->host) == 1;
		else if (o == 'f')
			r->faults_path = optarg;
		else if (o == 'p' && *end == 0 && v > 0 && v < 65536 &&
			 r->n_ports < RELAY_MAX_PORTS)
			r->ports[r->n_ports++] = (uint16_t)v;
		else if (o == 'l' && *end == 0 && v >= RELAY_CHUNK)
			r->limit = v;
		else if (o == 's' && *end == 0)
			r->rng = v ? v : 1;
		else
			return false;
	}
	return have_host && r->n_ports > 0 && r->faults_path && optind == argc;
}

static int run(struct relay *r)
{
	int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};
	struct event *ev[4] = {0};
	int rc = 1;
	for (size_t i = 0; i < 4; i++)
		if (!(ev[i] = evsignal_new(r->base, sigs[i], on_signal, r)) ||
		    event_add(ev[i], NULL))
			goto out;
	for (size_t i = 0; i < r->n_ports; i++)
		if (!listen_port(r, i))
			goto out;
	say("relaying host %s, %zu port(s), at most %d connections, %zu bytes per direction",
	    inet_ntoa(r->host), r->n_ports, RELAY_MAX_CONNS, r->limit);
	fflush(stderr);
	event_base_dispatch(r->base);
	print_totals(r);
	rc = 0;
out:
	while (r->conns)
		conn_free(r->conns, false, "relay stopping");
	for (size_t i = 0; i < r->n_ports; i++)
		if (r->listeners[i])
			evconnlistener_free(r->listeners[i]);
	for (size_t i = 0; i < 4; i++)
		if (ev[i])
			event_free(ev[i]);
	return rc;
}

int main(int argc, char **argv)
{
	struct relay r = {.limit = 256 * 1024, .rng = 0x9e3779b97f4a7c15u};
	if (!parse_args(&r, argc, argv))
		return usage();
	setvbuf(stderr, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (!load_faults(&r))
		return 1;
	r.base = event_base_new();
	if (!r.base)
		return 1;
	int rc = run(&r);
	event_base_free(r.base);
	return rc;
}
