/* The holder's Cap outbox (docs/transfer.md, "The holder's Cap outbox"): every Cap we signed
 * has a durable row (written with the pair, segment_store.h); a CapNoticeReq{Transfer, Cap,
 * Handoffs up to the Cap's epoch, earlier pairs} goes to the broker over the broker link at once
 * after the commit and again, with a doubling backoff (1 s up to min([redeem] retry_max,
 * T_notify)), until the broker answers OK or DUPLICATE_OK (row DELIVERED) or CONFLICT or CLOSED
 * (the channel was closed early, e.g. by the broker's ForcedClose: row CONFLICT, logged as an
 * error and kept for the operator). Rows survive restarts: the outbox
 * starts with a sweep. Whether or not the channel has anything to redeem.
 *
 *   IDLE | BACKOFF --kick (a Cap committed) | timer--> NEXT (sweep from the oldest pending row;
 *         a Cap committed during a sweep is reached by it: rows are read in order as it goes)
 *   NEXT --no row after the cursor--> IDLE, or BACKOFF if a row of this sweep failed
 *   NEXT --a row whose notice cannot be built (logged)--> NEXT (after it; the sweep failed)
 *   NEXT --a row, link not up--> WAITING (want the link; poll every 200 ms up to the broker's
 *         connect timeout) --up--> NEXT;  --still down--> BACKOFF
 *   NEXT --a row, link up--> SENDING (CapNoticeReq)
 *   SENDING --OK / DUPLICATE_OK / CONFLICT / CLOSED--> MARKING (store thread) --written-->
 *         NEXT (after it)
 *   SENDING --another answer (e.g. an unroutable request before the broker serves CapNotice)-->
 *         NEXT (after it; the sweep is marked failed)
 *   SENDING --no answer (connection lost, deadline)--> BACKOFF
 *   BACKOFF --timer--> NEXT from the oldest pending row
 * One row in flight at a time. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct merchant;

/* At start-up (after the store is open): count the rows and sweep them at once. */
bool cap_outbox_start(struct merchant *m);
/* A Cap was committed: sweep now unless a sweep is under way. */
void cap_outbox_kick(struct merchant *m);
/* At shutdown, first: nothing more is sent or started. */
void cap_outbox_stop(struct merchant *m);
/* Last (after the broker link and the store thread are gone). */
void cap_outbox_free(struct merchant *m);
/* Rows waiting for the broker's acknowledgement; rows kept after a CONFLICT. */
int64_t cap_outbox_pending(const struct merchant *m);
int64_t cap_outbox_conflicts(const struct merchant *m);
/* Prometheus lines; the length written (truncated to len - 1). */
struct mp_metrics;
void cap_outbox_metrics_register(struct merchant *m, struct mp_metrics *reg);
