/* The redeemer's Prometheus lines (redeem_metrics.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "broker_link.h"

struct merchant;

struct redeem_stats {
	uint64_t sent, answered, limits, splits, steps, refused, failed_rounds;
	/* claims waiting for the broker's funds (redeem_wait.h), the rounds run for them, and
	 * those not kept */
	uint64_t claims_waiting, waiting_retries, waiting_dropped;
};

/* The unredeemed amount (durable payments above each channel's redeemed end, in minor units),
 * the age of the oldest such payment, and the counters. Returns the length written (at most
 * len - 1). */
size_t redeem_metrics_text(struct merchant *m, const struct redeem_stats *s,
			   const struct broker_link_stats *ls, char *out, size_t len);
