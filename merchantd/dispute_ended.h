/* Held offers whose dispute ended while merchantd was away (docs/disputes.md "A dispute that
 * ended while the merchant was away"), asked after each dispute poll (dispute_answer.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct merchant;
struct dispute_ended;

struct dispute_ended_stats {
	uint64_t asked;	   /* DisputeStateReq answered */
	uint64_t refunded; /* offers freed by a REFUNDED dispute's word (the buyer gets no key) */
	uint64_t released; /* offers freed by a KEY_RELEASED dispute's word */
	uint64_t lapsed;   /* offers never disputed past the broker's dispute window */
};

struct dispute_ended *dispute_ended_new(struct merchant *m);
void dispute_ended_free(struct dispute_ended *de);
/* One round: ask the state of the dispute of each offer that holds its channel past its
 * deadline (a bounded number), one at a time on the broker link, and free those a REFUNDED or
 * KEY_RELEASED dispute paid; then done(arg). Once stopped, done is not called. */
void dispute_ended_round(struct dispute_ended *de, void (*done)(void *arg), void *arg);
void dispute_ended_stop(struct dispute_ended *de);
struct dispute_ended_stats *dispute_ended_stats(struct dispute_ended *de);
