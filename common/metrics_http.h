/* The optional HTTP exposition of a daemon's metrics registry ([metrics] http_listen), with
 * libevent's evhttp on the daemon's loop. GET /metrics only (HEAD too, as HTTP wants); every
 * other path is 404, every other method 405.
 *
 * Bounded: request headers at most 8 KiB, no body, every connection closed after 5 s idle
 * (evhttp_set_timeout), and at most MP_METRICS_HTTP_ACCEPT_RATE connections accepted a second
 * (above it the listener pauses for the rest of the second), so at most about rate x timeout
 * connections live at once. The exposition is built on the loop from memory (no I/O) and sent
 * without blocking.
 *
 * Only a loopback address (127.0.0.0/8, ::1) is accepted unless allow_non_loopback is set
 * ([metrics] http_allow_non_loopback = true): metrics name channels' counts and amounts, and
 * the port has no authentication. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct sockaddr;
struct mp_metrics;
struct mp_metrics_http;

/* The [metrics] section every daemon has. */
struct mp_metrics_config {
	char *http_listen;	      /* NULL (the default): no HTTP port */
	bool http_allow_non_loopback; /* default false */
};

/* The [metrics] keys, for a daemon's key table (type: its config struct, member: the struct
 * mp_metrics_config in it). */
#define MP_METRICS_KEYS(type, member)                                                              \
	{"metrics",                                                                                \
	 "http_listen",                                                                            \
	 MP_CFG_STRING,                                                                            \
	 offsetof(type, member.http_listen),                                                       \
	 false,                                                                                    \
	 "numeric address:port for GET /metrics (loopback only unless allowed); default off",      \
	 0,                                                                                        \
	 0},                                                                                       \
	{                                                                                          \
		"metrics", "http_allow_non_loopback", MP_CFG_BOOL,                                 \
		    offsetof(type, member.http_allow_non_loopback), false,                         \
		    "serve http_listen on a non-loopback address (no authentication); default "    \
		    "false",                                                                       \
		    0, 0                                                                           \
	}

#define MP_METRICS_HTTP_ACCEPT_RATE 64
#define MP_METRICS_HTTP_TIMEOUT_S   5

/* listen: "host:port" with a numeric host (IPv6 in brackets). NULL, logged, when the address
 * is not numeric, not loopback (and not allowed), or cannot be bound. */
struct mp_metrics_http *mp_metrics_http_open(struct event_base *base, const char *listen,
					     bool allow_non_loopback, const struct mp_metrics *reg);
void mp_metrics_http_close(struct mp_metrics_http *h);
/* Opens the HTTP port if cfg->http_listen is set. True (and *out NULL) when it is not set;
 * false, logged, when it is set and cannot be served. */
bool mp_metrics_http_start(struct event_base *base, const struct mp_metrics_config *cfg,
			   const struct mp_metrics *reg, struct mp_metrics_http **out);
/* The port bound (for port 0). */
uint16_t mp_metrics_http_port(const struct mp_metrics_http *h);
/* True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z). */
bool mp_metrics_addr_is_loopback(const struct sockaddr *sa);
