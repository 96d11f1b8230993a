/* Framed protobuf connections over libevent's OpenSSL bufferevents: listeners, outgoing
 * connections, request/response pairing by request_id. A bad frame, a failed handshake or an
 * idle peer closes that one connection with a logged reason; everyone else is still served. */
#pragma once
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct event_base;
struct mp_conn;
struct mp_listener;

struct mp_conn_ops {
	/* TLS handshake complete (server and client side). */
	void (*on_open)(struct mp_conn *c, void *arg);
	/* A request or unsolicited message; env is freed after the call returns. */
	void (*on_envelope)(struct mp_conn *c, const MpEnvelope *env, void *arg);
	/* The connection is gone (reason says why); called once. Pending calls fail first. */
	void (*on_close)(struct mp_conn *c, const char *reason, void *arg);
};

struct mp_net_opts {
	size_t max_frame;
	unsigned idle_timeout_s; /* 0: none; also bounds the TLS handshake */
	const char *name;	 /* for logs: "wallet", "merchant", "broker" */
};

struct mp_listener *mp_listen(struct event_base *base, SSL_CTX *ctx, const char *host,
			      uint16_t port, const struct mp_net_opts *opts,
			      const struct mp_conn_ops *ops, void *arg);
void mp_listener_free(struct mp_listener *l);
/* The port actually bound (useful with port 0). */
uint16_t mp_listener_port(const struct mp_listener *l);

/* Start an outgoing TLS connection to host:port; ops->on_open fires after the handshake. */
struct mp_conn *mp_connect(struct event_base *base, SSL_CTX *ctx, const char *host, uint16_t port,
			   const struct mp_net_opts *opts, const struct mp_conn_ops *ops,
			   void *arg);

/* Send one envelope. Returns -1 if the connection is closed or the frame is refused. */
int mp_conn_send(struct mp_conn *c, const MpEnvelope *env);

/* Response callback: env is NULL when the connection closed before the answer came. */
typedef void (*mp_reply_fn)(struct mp_conn *c, const MpEnvelope *env, void *arg);
/* Send a request (its request_id is assigned here) and call fn with the matching response. */
int mp_conn_call(struct mp_conn *c, MpEnvelope *env, mp_reply_fn fn, void *arg);

void mp_conn_close(struct mp_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool mp_conn_is_open(const struct mp_conn *c);
void mp_conn_ref(struct mp_conn *c);
void mp_conn_unref(struct mp_conn *c);
SSL *mp_conn_ssl(struct mp_conn *c);
const char *mp_conn_peer(const struct mp_conn *c);
void mp_conn_set_data(struct mp_conn *c, void *data);
void *mp_conn_data(const struct mp_conn *c);
/* Split "host:port" (IPv6 as "[::1]:port"); false if malformed. */
bool mp_split_endpoint(const char *endpoint, char *host, size_t hostlen, uint16_t *port);
