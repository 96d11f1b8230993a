/* The redemption lag (micropay_merchant_unredeemed_oldest_age_seconds): how long the oldest
 * payment not yet credited by the broker has waited, answered from memory when the metrics are
 * read. Each channel keeps when its first durable Pay above its redeemed end was journalled
 * (struct channel unredeemed_since); it was a journal walk per channel on every read of the
 * metric, on the loop (0.12-0.17 s at 10,000 channels). No store read on the loop: a Redeem's
 * claim up to the channel's durable point records that point (claim_top), and the first Pay
 * made durable above it records its time (next_since), so a credit up to the claim knows the
 * first Pay it left unredeemed.
 *
 *   NOTHING UNREDEEMED (durable_last <= redeemed_end; unredeemed_since means nothing)
 *        | a Pay becomes durable (batch.c): since = its journal time
 *        v
 *   UNREDEEMED --more Pays--> unchanged (the first above claim_top sets next_since)
 *        | a credit covering every durable Pay --> NOTHING UNREDEEMED
 *        | a credit up to claim_top, Pays above it: since = next_since
 *        | any other credit (a step, a partial one): since unchanged, so the lag reads high
 *        |   until the next credit up to a claim, never low
 *   start (main.c): since read from the journal for every channel with something unredeemed */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct channel;
struct store;
struct table;

/* Before a Pay's durable_last moves (batch.c), with the time its journal row was stamped. */
void redeem_lag_paid(struct channel *ch, uint32_t j, uint64_t journal_at);
/* A Redeem claims ch up to its durable point (redeem_build.c). */
void redeem_lag_claimed(struct channel *ch);
/* After ch's redeemed_end moved to a credited end (redeemer.c). */
void redeem_lag_credited(struct channel *ch);
/* At start, every channel of the table read from s; on a store error (logged) those channels'
 * times are unknown and read as old as can be until a credit. */
void redeem_lag_load(struct store *s, struct table *channels);
/* The oldest unredeemed payment's journal time over the table, 0 if there is none. */
uint64_t redeem_lag_oldest(const struct table *channels);
