/* Claims the broker answered INSUFFICIENT_FUNDS: a fork excess that neither the liable signer
 * (pending credit, bond) nor the loss reserve can cover yet (docs/custody.md "Forks"). The
 * broker moved nothing; the claim waits until the operator funds the reserve. merchantd keeps
 * such claims in memory and claims them again, with backoff, until they are credited or
 * refused otherwise:
 *
 *   (none) --a claim answered INSUFFICIENT_FUNDS--> WAITING (attempt 1: 1 s)
 *   WAITING --the delay passed--> a redemption round: the channel's claim built again (a new
 *           Redeem; a resent one would replay the stored answer)
 *   WAITING --answered INSUFFICIENT_FUNDS again--> WAITING (the delay doubles, at most
 *           [redeem] retry_max)
 *   WAITING --answered anything else (credited, DUPLICATE_OK, TOO_LATE, ...)--> (none)
 *
 * At most REDEEM_WAIT_MAX claims are kept; one more is dropped (logged and counted: the next
 * scheduled round claims it anyway). The claims kept are also in the store (redeem_wait_store.h,
 * written with the answer): a restarted merchantd loads them and claims them again after 1 s,
 * with the same backoff:
 *
 *   (start) --rows in redeem_waiting--> WAITING (attempt 1: 1 s) */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "util.h"

#define REDEEM_WAIT_MAX 256

struct redeem_waiting {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq;
};

struct redeem_wait {
	struct redeem_waiting items[REDEEM_WAIT_MAX];
	size_t n;
	unsigned attempts; /* retries since nothing waited */
	uint64_t retries, dropped;
};

/* A claim's answer: INSUFFICIENT_FUNDS keeps (channel, hseq) waiting, anything else ends its
 * wait. True when its wait began or ended (to be recorded in the store). */
bool redeem_wait_result(struct redeem_wait *w, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq,
			MpCode status);
/* A round is over: the seconds until claims that wait are claimed again (1, 2, 4, ... at most
 * max_secs), counting the attempt; 0 when nothing waits. */
/* Start-up: the claims the store keeps waiting; false (logged) on a store error. */
struct store;
bool redeem_wait_load(struct redeem_wait *w, struct store *s);
uint64_t redeem_wait_next_delay(struct redeem_wait *w, uint64_t max_secs);

struct mp_metrics;
/* Registers the claims waiting, the rounds run for them and those not kept; w must outlive
 * every exposition. */
void redeem_wait_metrics_register(const struct redeem_wait *w, struct mp_metrics *reg);
