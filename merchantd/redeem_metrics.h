/* The redeemer's metrics (redeem_metrics.c): the redemption lag, the unredeemed amount and the
 * redeemer's and broker link's counters. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "broker_link.h"

struct merchant;
struct mp_metrics;

struct redeem_stats {
	uint64_t sent, answered, limits, splits, steps, refused, failed_rounds;
};

/* Registers the unredeemed amount (durable payments above each channel's redeemed end, in
 * minor units), the age of the oldest such payment (the redemption lag) and the counters.
 * s and ls must outlive every exposition. */
void redeem_metrics_register(struct merchant *m, const struct redeem_stats *s,
			     const struct broker_link_stats *ls, struct mp_metrics *reg);
