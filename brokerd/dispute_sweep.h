/* The dispute refunds of a sweep pass (dispute_sweep.c, docs/disputes.md "Refund"). */
#pragma once
#include <stdint.h>

#include "broker.h"

/* Refund every OPEN dispute past its answer time at `now` (at most `batch` per pass), one
 * transaction each (mp_dispute_refund), one call in flight at a time; then done(arg, refunded,
 * failures). Returns false (done never called) if nothing could be started. */
bool dispute_sweep_run(struct broker *b, uint64_t now, uint32_t batch,
		       void (*done)(void *arg, uint64_t refunded, uint64_t failures), void *arg);
