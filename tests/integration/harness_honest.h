/* An honest customer served while a test attacks a daemon: a thread that pays one-unit orders
 * at a merchant, one at a time, and repeats its channel's IssueRequest at the broker (answered
 * DUPLICATE_OK from the stored result), over connections it opens when it starts (before the
 * attack) and keeps until it stops.
 * The test reads how many payments were acknowledged (PayAck OK) and broker requests answered,
 * and every failure with its reason. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

struct honest {
	const struct net *net;
	const char *merchant; /* its daemon name in the network, e.g. "m1" */
	char merchant_ep[128], broker_ep[128], ca[700];
	const struct tchannel *ch; /* issued and opened at merchant; only this thread pays it */
	uint32_t last;		   /* the last acknowledged index (read at each start) */
	struct wire m, b;
	pthread_t thread;
	pthread_mutex_t lock;
	bool running, stop;
	/* Since honest_start: */
	uint32_t acked, broker_answered, failures;
	char failure[512]; /* the first failure */
};

/* ch is issued and opened at the merchant. */
void honest_init(struct honest *h, const struct net *n, const char *merchant,
		 const struct tchannel *ch);
/* Connect to the merchant and the broker (the test fails if either is impossible) and start
 * paying in the background (a payment about every 20 ms, a broker request every fourth). */
void honest_start(struct honest *h);
/* Wait until `acked` payments were acknowledged since the start and one broker request was
 * answered (true), or a failure, or ms (false). */
bool honest_wait(struct honest *h, uint32_t acked, int ms);
/* Wait (up to 5 s) for one acknowledged payment, stop, close its connections, and fail the test
 * unless at least one payment was acknowledged and one broker request answered meanwhile, with no
 * failure. Returns the payments acknowledged since honest_start. */
uint32_t honest_stop(struct honest *h, const char *during);
void honest_close(struct honest *h);
