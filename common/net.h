/* Framed protobuf connections over libevent's OpenSSL bufferevents: listeners, outgoing
 * connections, request/response pairing by request_id. A bad frame, a failed handshake or an
 * idle peer closes that one connection with a logged reason; everyone else is still served.
 *
 * What one peer can make a daemon hold is bounded (the limits are in mp_net_opts):
 * connections per listener (the excess is closed at accept), the TLS handshake's total time,
 * a frame's wire size, the time from a frame's first byte to its last (frame_timeout_s: bytes
 * trickled one by one reset the idle timeout but not this), its decoded size and item counts
 * (common/decode.h), the requests a connection has in flight and the answers it leaves unread
 * (reading from it pauses), and the time it stays idle or leaves its answers unread; what all
 * its connections hold in partially read frames together is bounded by the listener's read
 * budget (net_budget.h: a large frame waits for its share). Every refusal is logged and counted in
 * the listener's metrics.
 *
 * A connection (server side; a client connection is the same without the limits):
 *
 *   HANDSHAKE --TLS done--> OPEN --mp_conn_close_after_flush, refused frame--> DRAINING
 *       |                   |  ^                                                   |
 *       | deadline          |  | in flight < max and unsent answers <= low water   | answers
 *       v                   v  |                                                   | sent
 *    CLOSED <--error, EOF-- PAUSED (not reading) <--in flight = max or             v
 *       ^   timeout, close            unsent answers > high water               CLOSED
 *       +---------------------------- (from any state: mp_conn_close, EOF, error, timeout)
 *
 * In OPEN, part of a frame in the input starts the frame deadline (restarted by each frame
 * taken, stopped in PAUSED); when it passes, the connection is CLOSED (frame_timeout).
 * DRAINING reads and discards whatever the peer still sends (so that closing does not reset
 * the connection under the answers), sends the answers still owed, then closes; it has a
 * deadline too. */
#pragma once
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct event_base;
struct evdns_base;
struct mp_conn;
struct mp_listener;
struct sockaddr;

struct mp_conn_ops {
	/* TLS handshake complete (server and client side). */
	void (*on_open)(struct mp_conn *c, void *arg);
	/* A request or unsolicited message; env is freed after the call returns. Each request
	 * is answered exactly once with mp_conn_send (now or later): that ends it being in
	 * flight. */
	void (*on_envelope)(struct mp_conn *c, const MpEnvelope *env, void *arg);
	/* The connection is gone (reason says why); called once. Pending calls fail first. */
	void (*on_close)(struct mp_conn *c, const char *reason, void *arg);
};

/* The first three fields are what a client connection needs; a zero limit is "none". */
struct mp_net_opts {
	size_t max_frame;	      /* bytes of one frame; mp_conn_set_max_frame may change it */
	unsigned idle_timeout_s;      /* no request read, or no answer byte taken by the peer */
	const char *name;	      /* for logs and metrics: "wallet", "merchant", "broker" */
	unsigned handshake_timeout_s; /* total, from accept or connect; 0: idle_timeout_s */
	unsigned frame_timeout_s;     /* a frame whole within this of its first byte; 0: none */
	unsigned max_conns;	      /* per listener */
	unsigned max_in_flight;	      /* requests read and not yet answered, per connection */
	size_t out_high_water;	      /* unsent answer bytes above which reading pauses */
	size_t out_low_water;	      /* ... and at or below which it resumes */
	size_t read_budget; /* bytes of partial frames, all connections together (net_budget.h) */
};

struct mp_listener *mp_listen(struct event_base *base, SSL_CTX *ctx, const char *host,
			      uint16_t port, const struct mp_net_opts *opts,
			      const struct mp_conn_ops *ops, void *arg);
/* Stops listening and closes the listener's connections ("shutting down"). */
void mp_listener_free(struct mp_listener *l);
/* Serve new connections with ctx (a renewed certificate); connections already open keep the
 * context they were accepted with (each SSL holds a reference to it). The listener does not
 * own ctx: the caller frees the old one once it swapped in the new. */
void mp_listener_set_ctx(struct mp_listener *l, SSL_CTX *ctx);
/* Graceful stop: close the listening socket (new connections are refused) and move every open
 * connection to DRAINING (answers still in flight are sent, then it closes;
 * mp_conn_close_after_flush). */
void mp_listener_drain(struct mp_listener *l, const char *reason);
/* Connections open (including those still in their handshake or DRAINING). */
unsigned mp_listener_connections(const struct mp_listener *l);
/* The port actually bound (useful with port 0). */
uint16_t mp_listener_port(const struct mp_listener *l);
/* Registers the listener's connection counters and limit refusals in reg under prefix (e.g.
 * "micropay_broker"): <prefix>_connections{listener}, ..._closed_total{listener,reason}, ...
 * (docs/metrics.md). The listener must outlive every exposition of reg. */
struct mp_metrics;
void mp_listener_metrics_register(const struct mp_listener *l, struct mp_metrics *reg,
				  const char *prefix);

/* Start an outgoing TLS connection to host:port; ops->on_open fires after the handshake. The
 * host name is resolved with the asynchronous resolver dns (dns.h) on the loop: the first IPv4
 * address it returns, else the first address. A failure to resolve or connect after this
 * returned is reported by ops->on_close, never from inside this call, which returns NULL for a
 * failure it sees itself. */
struct mp_conn *mp_connect(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
			   const char *host, uint16_t port, const struct mp_net_opts *opts,
			   const struct mp_conn_ops *ops, void *arg);

/* Send one envelope: the answer to a request (one fewer in flight) or an unsolicited message.
 * Returns -1 if the connection is closed or the frame is refused. */
int mp_conn_send(struct mp_conn *c, const MpEnvelope *env);

/* Response callback: env is NULL when the connection closed before the answer came. */
typedef void (*mp_reply_fn)(struct mp_conn *c, const MpEnvelope *env, void *arg);
/* Send a request (its request_id is assigned here) and call fn with the matching response. */
int mp_conn_call(struct mp_conn *c, MpEnvelope *env, mp_reply_fn fn, void *arg);

/* Close now: unsent output is dropped. */
void mp_conn_close(struct mp_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Read no further request; send what was already sent and the answers still in flight, then
 * close (DRAINING above). The reason is logged now and passed to on_close at the end. */
void mp_conn_close_after_flush(struct mp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* True from the handshake until the close: answers may be sent (also while DRAINING). */
bool mp_conn_is_open(const struct mp_conn *c);
void mp_conn_ref(struct mp_conn *c);
void mp_conn_unref(struct mp_conn *c);
SSL *mp_conn_ssl(struct mp_conn *c);
const char *mp_conn_peer(const struct mp_conn *c);
/* The peer's socket address (for limits keyed by address). */
const struct sockaddr *mp_conn_peer_addr(const struct mp_conn *c);
/* Change the frame maximum of one connection (e.g. once its peer has authenticated). */
void mp_conn_set_max_frame(struct mp_conn *c, size_t max_frame);
void mp_conn_set_data(struct mp_conn *c, void *data);
void *mp_conn_data(const struct mp_conn *c);
/* Split "host:port" (IPv6 as "[::1]:port"); false if malformed. */
bool mp_split_endpoint(const char *endpoint, char *host, size_t hostlen, uint16_t *port);
