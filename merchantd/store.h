/* merchantd's durable state in SQLite (WAL, synchronous=FULL, incremental auto-vacuum): the
 * channels it holds (each row also keeps its last Pay with the answer given), an append-only
 * journal of accepted payments (one transaction per group-committed batch; compact.c folds
 * old redeemed rows away), the orders its application priced, and the redemption outbox.
 * A struct store is one SQLite connection, used by one thread: the loop has one (reads), the
 * store thread another (batches, the outbox, our MerchantCert, compaction). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "merchant.h"

struct mp_clock;

struct store;
struct wal_checkpointer;

struct stored_pay {
	uint32_t j;
	uint8_t w[MP_HASH_LEN];
	uint8_t order_ref[MP_ORDER_REF_MAX];
	uint8_t order_ref_len;
	MpCode code;
	uint64_t credit;
	uint64_t price;
};

/* A connection any thread may call (SQLite serialises the calls). */
struct store *store_open(const char *path, const struct mp_clock *clock, char *err, size_t errlen);
/* A connection one thread uses at a time (the store thread's): no lock taken per call. */
struct store *store_open_unshared(const char *path, const struct mp_clock *clock, char *err,
				  size_t errlen);
void store_close(struct store *s);
/* How long a statement on this connection waits for a lock another connection holds before it
 * fails SQLITE_BUSY (store_open: 5 s, for start-up and the store thread). The loop's connection
 * only reads once serving (WAL: readers do not wait for the writer) and waits at most a few
 * milliseconds (main.c); every write runs on the store thread (batch.c, store_writes.c). */
void store_set_lock_wait(struct store *s, int ms);
/* For compact.c and store_redeem.c: the connection and the file it opened. */
struct sqlite3 *store_db(struct store *s);
/* The writer's connection: its WAL checkpointer (wal_checkpointer.h) is attached (the hook
 * installed) and kept for store_checkpoint. */
void store_attach_checkpointer(struct store *s, struct wal_checkpointer *c);
/* A checkpoint of the store's WAL in mode (SQLITE_CHECKPOINT_*), after the checkpointer's
 * running one if any: compaction's. An SQLite result code. */
int store_checkpoint(struct store *s, int mode);
const char *store_path(const struct store *s);
/* Run sql (statements without results, e.g. a table's creation); false (logged with the sql)
 * on an error. */
bool store_exec(struct store *s, const char *sql);
/* Whether probe (a "SELECT column FROM table LIMIT 0") prepares: the column exists. */
bool store_has_column(struct store *s, const char *probe);

bool store_load_channels(struct store *s, struct table *channels);
bool store_load_orders(struct store *s, struct table *orders);

/* One transaction, entries in order: insert new channel and order records, journal every
 * fresh Pay (its journal_seq set) and mark the orders it paid; the paid channels' rows are
 * brought up to date from the journal at most JOURNAL_FOLD_MS later (journal_chain.h). False
 * (logged) if it did not commit. Store thread. */
bool store_commit_batch(struct store *s, struct batch_entry *entries, size_t n);
/* The paid channels' rows brought up to date from the journal now, in a transaction of its
 * own (store_close does it). Store thread. */
bool store_sync_heads(struct store *s);
/* The same for at most limit channels (oldest first, -1: all) in a transaction of its own;
 * *more: channels are left. Store thread. */
bool store_sync_heads_some(struct store *s, int limit, bool *more);
/* The journalled Pay of channel ch in segment seg_seq at index j, if any. head: the channel's
 * newest committed journal row known to the loop (struct channel's journal_head), or 0. */
bool store_find_pay(struct store *s, const uint8_t ch[MP_ID_LEN], int64_t head, uint32_t seg_seq,
		    uint32_t j, struct stored_pay *out);

bool store_meta_get(struct store *s, const char *key, uint8_t **value, size_t *len);
bool store_meta_put(struct store *s, const char *key, const uint8_t *value, size_t len);

/* Redemption outbox: a signed Redeem is stored before it is sent, and resent verbatim until
 * the broker answers. */
bool store_outbox_put(struct store *s, const uint8_t redeem_id[MP_ID_LEN], const uint8_t *stmt,
		      size_t len);
/* The oldest unanswered Redeem, if any (malloc'd bytes). */
bool store_outbox_next(struct store *s, uint8_t redeem_id[MP_ID_LEN], uint8_t **stmt, size_t *len);
/* Record the broker's answer: per channel and epoch credited_end (the channel row's epoch or
 * a handed-off epoch), and the outbox entry answered. */
struct redeemed_claim {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq;
	uint32_t credited_end;
	bool too_late;	/* answered TOO_LATE: recorded in too_late_epochs (too_late_store.h) */
	uint32_t index; /* too_late: the claim's index, and the amount it lost */
	uint64_t lost;
	bool wait_changed; /* its wait for funds began or ended (redeem_wait_store.h) */
	bool waits;	   /* wait_changed: answered INSUFFICIENT_FUNDS, kept waiting */
};
bool store_outbox_answered(struct store *s, const uint8_t redeem_id[MP_ID_LEN],
			   const struct redeemed_claim *claims, size_t n);
