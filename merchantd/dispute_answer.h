/* merchantd's answers to disputes (docs/disputes.md "The merchant's key"): a timer every
 * [merchant] dispute_poll seconds asks the broker for the disputes open against this merchant
 * and answers each whose offer the store holds with its key (dispute_answer.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct merchant;
struct mp_metrics;

struct dispute_answer_stats {
	uint64_t polls;	    /* OpenDisputesReq answered OK */
	uint64_t released;  /* keys the broker took (OK or DUPLICATE_OK) */
	uint64_t refused;   /* keys it refused (logged with its detail) */
	uint64_t unknown;   /* open disputes of offers the store does not hold */
	uint64_t cancelled; /* disputes ended by the buyer's OfferCancel (CANCELLED) */
	uint64_t failures;  /* polls or answers that got no usable answer */
};

/* Starts the timer (the first poll one period after the start); false on failure. */
bool dispute_answer_start(struct merchant *m);
void dispute_answer_stop(struct merchant *m);
/* After the broker link is freed (a request in flight got its answer: none). */
void dispute_answer_free(struct merchant *m);
const struct dispute_answer_stats *dispute_answer_stats(const struct merchant *m);
void dispute_answer_metrics_register(struct merchant *m, struct mp_metrics *reg);
