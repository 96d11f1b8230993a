/* The forced releases of a sweep pass (release_sweep.c, docs/release.md "The sweep"). */
#pragma once
#include <stdint.h>

#include "broker.h"

/* Force every PENDING release due at `now` (at most `batch` per pass), one at a time: its
 * point decided (mp_release_prepare), the ForcedClose signed on the worker pool, then stored
 * with its early refund in one transaction (mp_release_force); then done(arg, forced,
 * failures). Returns false (done never called) if nothing could be started. */
bool release_sweep_run(struct broker *b, uint64_t now, uint32_t batch,
		       void (*done)(void *arg, uint64_t forced, uint64_t failures), void *arg);
