/* The channel rows brought up to date from the journal when batches stop coming
 * (journal_sync.c): a batch folds them at most once in JOURNAL_FOLD_MS (journal_chain.h), so
 * after the last batch of a burst this does it, and a quiet merchant's rows never lag for long
 * (which would keep its newest journal rows from compaction). */
#pragma once
#include <stdbool.h>

struct merchant;

bool journal_sync_start(struct merchant *m);
/* Loop: a batch with Pays committed. */
void journal_sync_note(struct merchant *m);
/* After the store thread stopped (its connection folded what was left at close). */
void journal_sync_free(struct merchant *m);
