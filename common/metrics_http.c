/* GET /metrics over evhttp on the loop (metrics_http.h). */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"

struct mp_metrics_http {
	struct event_base *base;
	const struct mp_metrics *reg;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct event *resume; /* re-enables accepting after a paused second */
	unsigned accepted_this_second;
	uint64_t second_start_us;
	uint16_t port;
};

bool mp_metrics_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct mp_metrics_http *h = arg;
	h->accepted_this_second = 0;
	h->second_start_us = mp_metrics_now_us();
	evconnlistener_enable(h->listener);
}

/* Called by evhttp for every accepted connection: counts accepts per second and pauses the
 * listener above the rate. Returns NULL: evhttp makes its usual socket bufferevent. */
static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
	struct mp_metrics_http *h = arg;
	uint64_t now = mp_metrics_now_us();
	if (now - h->second_start_us >= 1000000) {
		h->second_start_us = now;
		h->accepted_this_second = 0;
	}
	if (++h->accepted_this_second >= MP_METRICS_HTTP_ACCEPT_RATE) {
		log_warn("metrics http: more than %d connections in a second: pausing accepts for "
			 "a second",
			 MP_METRICS_HTTP_ACCEPT_RATE);
		evconnlistener_disable(h->listener);
		struct timeval second = {1, 0};
		event_add(h->resume, &second);
	}
	return NULL;
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct mp_metrics_http *h = arg;
	struct evbuffer *body = evbuffer_new();
	if (!body || !mp_metrics_write(h->reg, body)) {
		log_err("metrics http: cannot build the exposition (out of memory)");
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		if (body)
			evbuffer_free(body);
		return;
	}
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
}

static bool bind_listener(struct mp_metrics_http *h, const struct sockaddr *sa, int salen)
{
	h->listener = evconnlistener_new_bind(h->base, NULL, NULL,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						  LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
					      16, sa, salen);
	if (!h->listener)
		return false;
	if (!evhttp_bind_listener(h->http, h->listener)) {
		evconnlistener_free(h->listener);
		h->listener = NULL;
		return false;
	}
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	evutil_socket_t fd = evconnlistener_get_fd(h->listener);
	if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0)
		h->port =
		    ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	evconnlistener_enable(h->listener);
	return true;
}

static bool setup(struct mp_metrics_http *h, const struct sockaddr *sa, int salen)
{
	h->http = evhttp_new(h->base);
	h->resume = event_new(h->base, -1, 0, on_resume, h);
	if (!h->http || !h->resume)
		return false;
	evhttp_set_timeout(h->http, MP_METRICS_HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(h->http, 8192);
	evhttp_set_max_body_size(h->http, 0);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_bevcb(h->http, on_accept, h);
	evhttp_set_gencb(h->http, on_other, h);
	return evhttp_set_cb(h->http, "/metrics", on_metrics, h) == 0 &&
	       bind_listener(h, sa, salen);
}

/* "a.b.c.d:port" or "[v6]:port", port 0..65535 (0: any free port, for tests). evutil's
 * parser takes a bare address too (a mistake here, not "any port") and refuses port 0, so the
 * port is split off and set here. */
static bool parse_listen(const char *listen, struct sockaddr_storage *ss, int *salen)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || !colon[1] || strlen(colon + 1) > 5 ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return false;
	if (listen[0] == '[' ? colon == listen || colon[-1] != ']' : strchr(listen, ':') != colon)
		return false;
	unsigned long port = strtoul(colon + 1, NULL, 10);
	char host[64];
	size_t hl = (size_t)(colon - listen);
	if (port > 65535 || hl == 0 || hl >= sizeof(host))
		return false;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (evutil_parse_sockaddr_port(host, (struct sockaddr *)ss, salen) != 0)
		return false;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	return true;
}

struct mp_metrics_http *mp_metrics_http_open(struct event_base *base, const char *listen,
					     bool allow_non_loopback, const struct mp_metrics *reg)
{
	struct sockaddr_storage ss;
	int salen = sizeof(ss);
	if (!parse_listen(listen, &ss, &salen)) {
		log_err("config: [metrics] http_listen = '%s' is not a numeric address:port",
			listen);
		return NULL;
	}
	if (!allow_non_loopback && !mp_metrics_addr_is_loopback((struct sockaddr *)&ss)) {
		log_err("config: [metrics] http_listen = '%s' is not a loopback address; the port "
			"has no authentication (set [metrics] http_allow_non_loopback = true to "
			"serve it anyway)",
			listen);
		return NULL;
	}
	struct mp_metrics_http *h = calloc(1, sizeof(*h));
	if (!h) {
		log_err("metrics http: out of memory");
		return NULL;
	}
	h->base = base;
	h->reg = reg;
	h->second_start_us = mp_metrics_now_us();
	if (!setup(h, (struct sockaddr *)&ss, salen)) {
		log_err("metrics http: cannot listen on %s: %s", listen,
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		mp_metrics_http_close(h);
		return NULL;
	}
	log_info("metrics http: serving GET /metrics on %s (port %u)", listen, h->port);
	return h;
}

void mp_metrics_http_close(struct mp_metrics_http *h)
{
	if (!h)
		return;
	if (h->http)
		evhttp_free(h->http); /* frees the bound listener too */
	else if (h->listener)
		evconnlistener_free(h->listener);
	if (h->resume)
		event_free(h->resume);
	free(h);
}

uint16_t mp_metrics_http_port(const struct mp_metrics_http *h)
{
	return h ? h->port : 0;
}

bool mp_metrics_http_start(struct event_base *base, const struct mp_metrics_config *cfg,
			   const struct mp_metrics *reg, struct mp_metrics_http **out)
{
	*out = NULL;
	if (!cfg->http_listen || !cfg->http_listen[0])
		return true;
	*out = mp_metrics_http_open(base, cfg->http_listen, cfg->http_allow_non_loopback, reg);
	return *out != NULL;
}
