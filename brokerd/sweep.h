/* brokerd's settlement sweep (docs/settlement.md): moves channels OPEN -> EXPIRED at pay_until
 * and -> FINALIZED at redeem_until + T_grace in the background, one channel per transaction
 * through the database pool, in bounded batches. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct broker;
struct sweep;
struct mp_admin_req;

struct sweep_stats {
	uint64_t passes;	     /* passes completed */
	uint64_t channels_expired;   /* OPEN -> EXPIRED steps committed */
	uint64_t channels_finalized; /* -> FINALIZED steps committed */
	uint64_t refunds_paid;	     /* finalisations that paid the refund at once */
	uint64_t disputes_refunded;  /* OPEN disputes past answer_by refunded (dispute_sweep.c) */
	uint64_t releases_forced;    /* PENDING releases forced (release_sweep.c) */
	uint64_t failures;	     /* channel steps or listings that failed (logged) */
	uint64_t last_pass_at;	     /* broker time of the last completed pass, 0: none */
	uint64_t last_pass_ms;	     /* its duration */
};

/* Starts the timer (every interval_s seconds) and a first pass at once. NULL on failure. */
struct sweep *sweep_start(struct broker *b, uint32_t interval_s, uint32_t batch);
/* Before the database pool closes: no new pass, no new step. */
void sweep_stop(struct sweep *s);
/* Call after the database pool is closed (its callbacks have run). Unanswered admin requests
 * waiting for a pass are answered with an error. */
void sweep_free(struct sweep *s);
/* Admin `sweep.run`: a pass now (or right after the one running); req is answered when that
 * pass completes, with what it did. */
void sweep_run_admin(struct sweep *s, struct mp_admin_req *req);
void sweep_get_stats(const struct sweep *s, struct sweep_stats *out);
/* Registers the sweep's figures (micropay_broker_sweep_*); s must outlive every exposition. */
struct mp_metrics;
void sweep_metrics_register(struct sweep *s, struct mp_metrics *reg);
