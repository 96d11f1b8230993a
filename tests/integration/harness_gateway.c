/* The gateway suites' parts (harness_gateway.h). */
#include "harness_gateway.h"

#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "b64.h"
#include "gateway_header.h"
#include "harness_ledger.h"

/* ---- the upstream ---- */
struct delayed {
	struct evhttp_request *req;
	struct event *ev;
};

static void on_delayed(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	struct evbuffer *out = evbuffer_new();
	evbuffer_add_printf(out, "slow answer to %s", evhttp_request_get_uri(d->req));
	evhttp_send_reply(d->req, 200, "OK", out);
	evbuffer_free(out);
	event_free(d->ev);
	free(d);
}

/* A 402 as a gateway of a merchant registered with another broker would send it. */
static void fake_402(struct evhttp_request *req, struct evbuffer *out)
{
	char *value = gw_header_value(
	    json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "scheme", GW_SCHEME, "merchant",
		      "00112233445566778899aabbccddeeff", "broker_key", "0011223344556677", "price",
		      1, "currency", "EUR", "endpoint", "127.0.0.1:9"));
	evhttp_add_header(evhttp_request_get_output_headers(req), GW_HEADER_REQUIRED, value);
	free(value);
	evhttp_send_reply(req, 402, "Payment Required", out);
}

/* The mimicked 402, its price raised to 7, refusing the payment as UNDERPAID. */
static void raised_402(struct gw_upstream *u, struct evhttp_request *req, struct evbuffer *out)
{
	size_t len = 0;
	uint8_t *raw = mp_b64_decode(u->mimic_required, sizeof(u->mimic_required), &len);
	json_t *obj = raw ? json_loadb((const char *)raw, len, 0, NULL) : NULL;
	free(raw);
	if (obj)
		json_object_set_new(obj, "price", json_integer(7));
	char *value = gw_header_value(obj);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	if (value)
		evhttp_add_header(h, GW_HEADER_REQUIRED, value);
	free(value);
	evhttp_add_header(h, GW_HEADER_ERROR, "UNDERPAID the price is 7");
	evhttp_send_reply(req, 402, "Payment Required", out);
}

static void on_upstream(struct evhttp_request *req, void *arg)
{
	struct gw_upstream *u = arg;
	const char *target = evhttp_request_get_uri(req);
	if (strncmp(target, "/slow/", 6) == 0) { /* /slow/MS: answered MS milliseconds later */
		__atomic_add_fetch(&u->hits, 1, __ATOMIC_SEQ_CST);
		long ms = atol(target + 6);
		struct delayed *d = calloc(1, sizeof(*d));
		d->req = req;
		d->ev = evtimer_new(u->base, on_delayed, d);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(d->ev, &tv);
		return;
	}
	__atomic_add_fetch(&u->hits, 1, __ATOMIC_SEQ_CST);
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *out = evbuffer_new();
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	evbuffer_add_printf(out, "upstream saw %s body=", uri);
	evbuffer_add_buffer(out, in);
	const char *pay = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Payment");
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Upstream", "yes");
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Saw-Payment",
			  pay ? "yes" : "no");
	if (strncmp(uri, "/fail408", 8) == 0)
		evhttp_send_reply(req, 408, "Request Timeout", out);
	else if (strncmp(uri, "/fail429", 8) == 0)
		evhttp_send_reply(req, 429, "Too Many Requests", out);
	else if (strncmp(uri, "/fail", 5) == 0)
		evhttp_send_reply(req, 503, "Down For Maintenance", out);
	else if (strncmp(uri, "/fake402", 8) == 0)
		fake_402(req, out);
	else if (strncmp(uri, "/mimic-raise", 12) == 0 && pay)
		raised_402(u, req, out);
	else if (strncmp(uri, "/mimic", 6) == 0 && !pay) {
		evhttp_add_header(evhttp_request_get_output_headers(req), GW_HEADER_REQUIRED,
				  u->mimic_required);
		evhttp_send_reply(req, 402, "Payment Required", out);
	} else
		evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct gw_upstream *u = arg;
	if (__atomic_load_n(&u->stop, __ATOMIC_SEQ_CST))
		event_base_loopbreak(u->base);
}

static void *upstream_run(void *arg)
{
	event_base_dispatch(((struct gw_upstream *)arg)->base);
	return NULL;
}

void gw_upstream_start(struct gw_upstream *u, uint16_t port)
{
	u->base = event_base_new();
	u->http = evhttp_new(u->base);
	evhttp_set_gencb(u->http, on_upstream, u);
	struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(u->http, "127.0.0.1", port);
	ck_assert_msg(s, "upstream cannot listen");
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &len);
	u->port = ntohs(sa.sin_port);
	u->stop = 0;
	u->tick = event_new(u->base, -1, EV_PERSIST, on_tick, u);
	struct timeval ms20 = {0, 20000};
	event_add(u->tick, &ms20);
	pthread_create(&u->thread, NULL, upstream_run, u);
}

void gw_upstream_stop(struct gw_upstream *u)
{
	__atomic_store_n(&u->stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(u->thread, NULL);
	event_free(u->tick);
	evhttp_free(u->http);
	event_base_free(u->base);
}

uint16_t gw_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	close(fd);
	return ntohs(sa.sin_port);
}

/* ---- a blocking HTTP/1.1 client (Connection: close) ---- */
void gw_http(const struct gw_net *g, const char *method, const char *uri, const char *body,
	     const char *payment, struct http_answer *a)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(g->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "gateway unreachable");
	char req[4096];
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n%s%s%s"
			 "Content-Length: %zu\r\n\r\n%s",
			 method, uri, payment ? "X-Payment: " : "", payment ? payment : "",
			 payment ? "\r\n" : "", strlen(body), body);
	ck_assert(write(fd, req, (size_t)n) == n);
	static char raw[20000];
	size_t got = 0;
	ssize_t r;
	while ((r = read(fd, raw + got, sizeof(raw) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	raw[got] = 0;
	memset(a, 0, sizeof(*a));
	ck_assert_msg(sscanf(raw, "HTTP/1.1 %d", &a->status) == 1, "no status line: %s", raw);
	char *end = strstr(raw, "\r\n\r\n");
	ck_assert(end);
	snprintf(a->head, sizeof(a->head), "%.*s", (int)(end - raw), raw);
	snprintf(a->body, sizeof(a->body), "%s", end + 4);
}

json_t *gw_header_json(const struct http_answer *a, const char *name)
{
	char key[80];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(a->head, key);
	if (!p)
		return NULL;
	p += strlen(key);
	size_t len = strcspn(p, "\r\n");
	unsigned char raw[4096];
	char b64[4096];
	snprintf(b64, sizeof(b64), "%.*s", (int)len, p);
	int n = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)len);
	ck_assert_int_gt(n, 0);
	while (n > 0 && raw[n - 1] == 0)
		n--;
	return json_loadb((char *)raw, (size_t)n, 0, NULL);
}

bool gw_has_error(const struct http_answer *a, const char *code)
{
	char key[80];
	snprintf(key, sizeof(key), "\r\nX-Payment-Error: %s ", code);
	return strstr(a->head, key) != NULL;
}

/* ---- channels ---- */
void gw_open_channel(const struct gw_net *g, struct tchannel *ch, uint32_t n)
{
	struct twallet tw;
	struct wire b, m;
	ck_assert(wire_connect(&b, g->broker_ep, g->ca, NULL, NULL));
	twallet_register(&tw, &b);
	net_fund_id(&g->net, tw.account_id, n);
	tchannel_make(ch, &tw, n, 1, g->m1);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
	mp_key_free(&tw.account);
	ck_assert(wire_connect(&m, g->m1_ep, g->ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(ch, &m);
	ck_assert(ack && ack->open_ack->status->code == MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	wire_close(&m);
}

char *gw_payment(const struct tchannel *ch, uint32_t j, const char *method, const char *uri,
		 const char *body)
{
	struct gw_payment p = {.seg_seq = 0, .j = j};
	tchannel_id(ch, p.channel_id);
	tchannel_word(ch, j, p.w);
	ck_assert(gw_request_ref(method, uri, body, strlen(body), p.ref));
	return gw_payment_encode(&p);
}

static json_t *m1_channel(const struct gw_net *g, const struct tchannel *ch)
{
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *all = admin_ok(&g->net, "m1", "channels", NULL);
	json_t *list = json_object_get(all, "channels"), *v, *found = NULL;
	size_t i;
	json_array_foreach(list, i, v) if (strcmp(json_str(v, "channel_id"), hex) == 0) found = v;
	ck_assert_msg(found, "m1 does not list the channel");
	json_incref(found);
	json_decref(all);
	return found;
}

int64_t gw_m1_last(const struct gw_net *g, const struct tchannel *ch)
{
	json_t *c = m1_channel(g, ch);
	int64_t last = json_int(c, "last");
	json_decref(c);
	return last;
}

int gw_upstream_hits(struct gw_upstream *u)
{
	return __atomic_load_n(&u->hits, __ATOMIC_SEQ_CST);
}

void gw_net_up(struct gw_net *g, const char *routes)
{
	net_up(&g->net);
	net_path(&g->net, "tls/ca.crt", g->ca, sizeof(g->ca));
	net_read(&g->net, "broker", "endpoint", g->broker_ep, sizeof(g->broker_ep));
	net_read(&g->net, "m1", "endpoint", g->m1_ep, sizeof(g->m1_ep));
	net_read(&g->net, "m1", "merchant_id", g->m1_hex, sizeof(g->m1_hex));
	hex_to_bytes(g->m1_hex, g->m1, MP_ID_LEN);
	gw_upstream_start(&g->up, 0);
	g->port = gw_free_port();
	char settings[700];
	snprintf(settings, sizeof(settings),
		 "listen = 127.0.0.1:%u\nupstream = 127.0.0.1:%u\nupstream_timeout = 2\n"
		 "routes = %s\n",
		 g->port, g->up.port, routes);
	net_restart_with(&g->net, "m1", "gateway", settings);
}

void gw_net_down(struct gw_net *g)
{
	gw_upstream_stop(&g->up);
	net_down(&g->net);
}
