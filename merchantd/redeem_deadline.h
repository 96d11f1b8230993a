/* Redeeming before the deadline (docs/settlement.md "The merchant"): a timer that starts a
 * redemption round on its own when a channel with unredeemed payments comes within
 * [redeem] deadline_margin of its redeem_until, and counts and logs the channels at risk of
 * expiring unredeemed. Claims the broker answers TOO_LATE are counted here too. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct merchant;
struct redeem_deadline;

struct redeem_deadline_stats {
	uint64_t rounds_started;  /* rounds this timer started */
	uint64_t at_risk;	  /* channels at risk at the last check */
	uint64_t amount_at_risk;  /* their unredeemed amount */
	uint64_t claims_too_late; /* claims answered TOO_LATE (never retried) */
	uint64_t amount_too_late; /* the unredeemed amount of those channels, lost */
};

/* Checks every check_s seconds. NULL on failure (logged). */
struct redeem_deadline *redeem_deadline_start(struct merchant *m, uint32_t check_s);
void redeem_deadline_free(struct redeem_deadline *d);
/* The redeemer got TOO_LATE for a claim of channel id in epoch hseq at index, the broker's
 * credited end of that epoch being credited_end: that epoch is never claimed again; logged
 * with the amount lost, counted; returns that amount. The redeemer stores the epoch with the
 * answer (too_late_store.h), and a restarted merchantd loads it back
 * (redeem_deadline_start). */
uint64_t redeem_deadline_too_late(struct merchant *m, const uint8_t id[16], uint32_t hseq,
				  uint32_t index, uint32_t credited_end, const char *detail);
/* Whether a claim of channel id in epoch hseq was answered TOO_LATE (redeem_build.c skips it). */
bool redeem_deadline_is_too_late(const struct merchant *m, const uint8_t id[16], uint32_t hseq);
/* Prometheus lines (prefix micropay_merchant_); returns the length written. */
struct mp_metrics;
void redeem_deadline_metrics_register(struct redeem_deadline *d, struct mp_metrics *reg);
