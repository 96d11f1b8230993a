/* The load engine: C TLS connections (common/net.c), each keeping up to W requests in flight,
 * until the scenario has no more work or the duration is over; every answer's latency goes to
 * a histogram.
 *
 *   CONNECTING --handshake--> RUNNING --duration over / no more work--> DRAINING
 *        |                      |  ^ answer: count it, send the next      | last answer in
 *        | failed               |  | (or the same again when retried)      v
 *        +--------> DEAD <------+ closed                                   IDLE
 * The loop ends when no connection is CONNECTING, RUNNING or DRAINING, or at the drain
 * deadline (answers still missing then are counted as lost).
 *
 * Paced (spec.rate > 0): a slot whose answer came is parked instead of sending at once; a
 * timer every PACE_MS releases parked slots at the rate (a token bucket of at most
 * PACE_BURST_MS worth of requests). Tokens that find no parked slot are counted as `behind`:
 * then the window, not the rate, limited the load and latency figures are closed-loop. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "mpbench.h"
#include "proto.h"

struct load;
struct mp_conn;

enum load_outcome {
	LOAD_DONE,  /* the request did its work: counted */
	LOAD_RETRY, /* the server asked to retry (busy): sent again, counted as a retry */
	LOAD_FAIL,  /* a refusal: counted as failed, not sent again */
};

struct load_ops {
	/* Send the next request of slot on c with load_send; false when there is no more work
	 * (or none for this slot now). */
	bool (*next)(void *arg, struct load *l, struct mp_conn *c, unsigned slot);
	/* Send slot's request again (after LOAD_RETRY). */
	bool (*again)(void *arg, struct load *l, struct mp_conn *c, unsigned slot);
	/* Judge the answer to slot's request. */
	enum load_outcome (*answer)(void *arg, unsigned slot, const MpEnvelope *env);
};

struct load_spec {
	const char *name;      /* for progress lines */
	const char *endpoint;  /* host:port */
	const char *endpoint2; /* if set, the odd-numbered connections go here */
	const char *ca, *cert, *key;
	unsigned conns, window;
	double duration; /* 0: until the scenario has no more work */
	double rate;	 /* requests per second over all connections; 0: as fast as answered */
	bool quiet;
	const struct load_ops *ops;
	void *arg;
};

struct load_result {
	uint64_t done, failed, retried, lost;
	double seconds; /* first send to last answer */
	struct hist latency;
	unsigned conns_open; /* connections that completed their handshake */
	uint64_t behind;     /* paced sends that found no free slot (the window was too small) */
};

/* A spec with the load flags of o (connections, window, duration, client certificate, quiet)
 * and the network's CA, against endpoint. */
struct load_spec load_spec_for(const struct bench_opts *o, const struct bench_net *n,
			       const char *name, const char *endpoint, const struct load_ops *ops,
			       void *arg);
/* Run the load; false if no connection could be opened (said on stderr). */
bool load_run(const struct load_spec *spec, struct load_result *out);
/* Send env as slot's request on c (the latency starts now). */
bool load_send(struct load *l, struct mp_conn *c, unsigned slot, MpEnvelope *env);
/* slot numbers are global: connection i owns slots [i * window, (i + 1) * window). */

/* The result as JSON: count, rate, failures, latency percentiles. */
json_t *load_json(const struct load_result *r, const char *rate_name);
