/* Helpers for the settlement tests (docs/settlement.md): time moved with the test clock,
 * sweeps run on demand, a channel's settlement and the `unclaimed` account (funding and
 * balances: harness_ledger.h). */
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "harness.h"

/* The broker's protocol time (admin clock.show). */
uint64_t settle_broker_now(const struct net *n);
/* Move every daemon's test clock so that the broker's time is at least t. */
void settle_advance_to(const struct net *n, uint64_t t);
/* The broker's test clock alone to at least t (the others stay where they are). */
void settle_advance_broker_to(const struct net *n, uint64_t t);
/* Admin sweep.run: {time, expired, finalized, failures, passes} (caller frees). */
json_t *settle_sweep(const struct net *n);
/* Admin channel.settlement of a channel (hex id) (caller frees). */
json_t *settle_channel(const struct net *n, const char *channel_hex);
/* The channel is FINALIZED with these figures of its finalisation. */
void settle_expect_finalized(const struct net *n, const char *channel_hex, int64_t spent,
			     int64_t refund, int64_t unclaimed, int64_t credited);
/* The balance of the broker's `unclaimed` account of EUR. */
int64_t settle_unclaimed(const struct net *n);
