/* Shared by net.c (connections) and net_listen.c (listeners, their counters): not for daemons. */
#pragma once
#include <sys/socket.h>

#include "decode.h"
#include "net.h"
#include "net_budget.h"

struct bufferevent;
struct event;

/* Why a connection ended, for the listener's counters. */
enum net_end {
	NET_END_PEER_CLOSED,
	NET_END_TLS_ERROR,
	NET_END_SOCKET_ERROR,
	NET_END_HANDSHAKE_TIMEOUT,
	NET_END_IDLE_TIMEOUT,
	NET_END_WRITE_TIMEOUT, /* the peer did not take its answers */
	NET_END_DRAIN_TIMEOUT,
	NET_END_FRAME_TIMEOUT, /* a frame begun was not whole in time (bytes trickled) */
	NET_END_FRAME_TOO_BIG,
	NET_END_BAD_FRAME, /* zero length, out of memory */
	NET_END_UNPARSABLE,
	NET_END_DECODE_BUDGET,
	NET_END_TOO_MANY_ITEMS,
	NET_END_BAD_VERSION,
	NET_END_BY_DAEMON, /* mp_conn_close or mp_conn_close_after_flush by the daemon */
	NET_END_SHUTDOWN,
	NET_END_COUNT,
};

const char *net_end_name(enum net_end e);

struct net_stats {
	uint64_t accepted;
	uint64_t refused_max_conns;
	uint64_t ended[NET_END_COUNT];
	uint64_t paused_in_flight, paused_output;
	unsigned current;
};

struct pending_call {
	uint64_t request_id;
	mp_reply_fn fn;
	void *arg;
	struct pending_call *next;
};

struct mp_conn {
	struct bufferevent *bev;
	struct event *deadline; /* the handshake's, a partial frame's, then the drain's */
	struct mp_net_opts opts;
	const struct mp_conn_ops *ops;
	void *arg;
	void *data;
	unsigned refs;
	bool open;     /* handshake done and not closed */
	bool closed;   /* closed: no more I/O, only references remain */
	bool draining; /* closing once the answers are sent */
	bool paused;   /* not reading: too many in flight or unread answers */
	bool output_full;
	bool frame_timer_on;		      /* deadline runs for the partial frame in the input */
	bool logged_in_flight, logged_output; /* one log line per connection and reason */
	bool logged_budget;
	bool logged_unsolicited; /* a frame that answered no call was dropped */
	/* net_budget.c: the large frame at the head of the input, reserved or waiting */
	uint64_t budget_held, budget_want;
	bool budget_waiting;
	struct mp_conn *wait_prev, *wait_next; /* the listener's line for the read budget */
	unsigned in_flight;
	enum net_end drain_end;
	char drain_reason[256];
	uint64_t next_request_id;
	struct pending_call *pending;
	struct sockaddr_storage addr;
	char peer[64];
	struct mp_listener *listener; /* NULL for an outgoing connection or after its free */
	struct mp_conn *prev, *next;  /* the listener's connections */
	/* net_connect.c: an outgoing connection while its host name is resolved */
	struct evdns_getaddrinfo_request *dns_req; /* holds a reference until answered */
	bool resolving;
	bool in_connect;	   /* inside mp_connect: failures are returned */
	const char *connect_error; /* a failure seen inside mp_connect */
};

struct mp_listener {
	struct evconnlistener *evl;
	SSL_CTX *ctx;
	struct mp_net_opts opts;
	const struct mp_conn_ops *ops;
	void *arg;
	uint16_t port;
	struct mp_conn *conns;
	struct net_stats stats;
	struct net_budget budget;
	struct mp_decode_arena arena; /* frames of its connections are decoded here (decode.h) */
	uint64_t refusal_logged_at;   /* refusals at accept are logged at most once a second */
	uint64_t refusals_unlogged;
};

/* net.c: a connection over bev (which it then owns), registered with l if not NULL. */
struct mp_conn *net_conn_new(struct event_base *base, struct bufferevent *bev,
			     const struct mp_net_opts *opts, const struct mp_conn_ops *ops,
			     void *arg, const struct sockaddr *sa, struct mp_listener *l);
void net_conn_end(struct mp_conn *c, enum net_end why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* net_connect.c: cancel the resolution of a connection that is being closed (its callback
 * runs now and drops the lookup's reference). */
void net_connect_cancel(struct mp_conn *c);

/* net_listen.c */
void net_format_addr(const struct sockaddr *sa, char *out, size_t len);
bool net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, int *sslen);
void net_listener_forget(struct mp_listener *l, struct mp_conn *c, enum net_end why);
