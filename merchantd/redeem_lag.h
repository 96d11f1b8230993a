/* The redemption lag (micropay_merchant_unredeemed_oldest_age_seconds): how long the oldest
 * payment not yet credited by the broker has waited, answered from memory when the metrics are
 * read. Each channel keeps when its first durable Pay above its redeemed end was journalled
 * (struct channel unredeemed_since); it was a journal walk per channel on every read of the
 * metric, on the loop (seconds at a million channels).
 *
 *   NOTHING UNREDEEMED (durable_last <= redeemed_end; unredeemed_since means nothing)
 *        | a Pay becomes durable (batch.c): since = that Pay's journal time
 *        v
 *   UNREDEEMED --more Pays--> unchanged
 *        | a credit (redeemer.c) covering every durable Pay --> NOTHING UNREDEEMED
 *        | a credit covering part: since = the first Pay above the new redeemed end, one
 *        |   journal read on the loop (as the redeemer reads a word per claim); if the read
 *        |   fails, since stays (older: the lag reads high, never low)
 *   start (main.c): one journal read per channel with something unredeemed */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct channel;
struct merchant;
struct store;
struct table;

/* Before a Pay's durable_last moves (batch.c), with the time its journal row was stamped. */
void redeem_lag_paid(struct channel *ch, uint64_t journal_at);
/* After ch's redeemed_end moved. */
void redeem_lag_credited(struct merchant *m, struct channel *ch);
/* At start, every channel of the table read from s. False (logged) on a store error. */
bool redeem_lag_load(struct store *s, struct table *channels);
/* The oldest unredeemed payment's journal time over the table, 0 if there is none. */
uint64_t redeem_lag_oldest(const struct table *channels);
