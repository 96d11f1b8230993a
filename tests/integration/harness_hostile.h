/* A hostile TLS server for the daemons acting as clients (walletd paying a merchant, ...):
 * real TLS on a loopback port with a certificate of the test CA (a merchant's own, or another
 * merchant's), one connection at a time on its own thread. The first `honest` requests get the
 * answer the test's callback builds; every later one gets the hostile reply of `mode`. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

enum hostile_mode {
	HOSTILE_SILENT,		 /* reads the request, never answers */
	HOSTILE_TRICKLE,	 /* announces a 1000-byte frame, then a byte every 200 ms */
	HOSTILE_REPLAY,		 /* the previous answer again, byte for byte, every 200 ms */
	HOSTILE_WRONG_TYPE,	 /* the previous answer under this request's request_id */
	HOSTILE_GARBAGE,	 /* a frame of 64 bytes that is no Envelope */
	HOSTILE_OVERSIZED,	 /* a frame announced one byte above 16 MiB, then junk */
	HOSTILE_CLOSE_MID_FRAME, /* half of the honest answer, then the socket closed */
};

/* The honest answer to req as a frame (env_frame) into frame; its length, 0 for none. */
typedef size_t (*hostile_answer_fn)(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg);

struct hostile {
	SSL_CTX *ctx;
	int lfd;
	char endpoint[64];
	pthread_t thread;
	enum hostile_mode mode;
	unsigned honest;
	hostile_answer_fn answer;
	void *arg;
	atomic_bool stop;
	atomic_uint requests; /* requests read over all connections */
};

/* Listen on 127.0.0.1:port (0: a free port; else e.g. the port of a daemon just stopped) with
 * cert/key; fails the test if impossible. */
void hostile_start(struct hostile *h, uint16_t port, const char *cert, const char *key,
		   enum hostile_mode mode, unsigned honest, hostile_answer_fn answer, void *arg);
/* Stop the thread, close everything. */
void hostile_stop(struct hostile *h);
