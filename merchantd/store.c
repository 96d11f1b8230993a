#include "store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel_cert.h"
#include "bind_store.h"
#include "close_store.h"
#include "redeem_wait_store.h"
#include "too_late_store.h"
#include "offer_store.h"
#include "purchase_store.h"
#include "restore_store.h"
#include "custody_store.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "segment_store.h"
#include "journal_chain.h"
#include "wal_checkpointer.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS channels ("
    " channel_id BLOB PRIMARY KEY, cert BLOB NOT NULL, state INTEGER NOT NULL,"
    " hseq INTEGER NOT NULL, seg_seq INTEGER NOT NULL, seg_start INTEGER NOT NULL,"
    " last INTEGER NOT NULL, w_last BLOB NOT NULL, credit INTEGER NOT NULL,"
    " last_order_ref BLOB NOT NULL, redeemed_end INTEGER NOT NULL DEFAULT 0,"
    " redeem_until INTEGER NOT NULL, last_code INTEGER NOT NULL DEFAULT 0,"
    " last_price INTEGER NOT NULL DEFAULT 0, head_seq INTEGER);"
    "CREATE TABLE IF NOT EXISTS pay_journal ("
    " seq INTEGER PRIMARY KEY, channel_id BLOB NOT NULL, seg_seq INTEGER NOT NULL,"
    " j INTEGER NOT NULL, w BLOB NOT NULL, order_ref BLOB NOT NULL, code INTEGER NOT NULL,"
    " credit INTEGER NOT NULL, price INTEGER NOT NULL, at INTEGER NOT NULL,"
    " prev_seq INTEGER, mark INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS orders ("
    " order_ref BLOB PRIMARY KEY, price INTEGER NOT NULL, paid INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS redeem_outbox ("
    " redeem_id BLOB PRIMARY KEY, stmt BLOB NOT NULL, created_at INTEGER NOT NULL,"
    " answered_at INTEGER);";

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_JOURNAL,
	ST_CHANNEL_INSERT,
	ST_ORDER_INSERT,
	ST_ORDER_PAID,
	ST_FIND_PAY,
	ST_JOURNAL_HEAD,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* journal_chain.h: linked to the channel's newest row, marked at a block or segment; a
     * head compacted away (its seq perhaps reused by another channel) starts a new chain */
    [ST_JOURNAL] = "INSERT INTO pay_journal (channel_id, seg_seq, j, w, order_ref, code, "
		   "credit, price, at, prev_seq, mark) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
		   "h.seq, h.seq IS NULL OR h.seg_seq <> ?2 OR h.j / 64 <> ?3 / 64 "
		   "FROM channels c LEFT JOIN pay_journal h ON h.seq = coalesce((SELECT "
		   "t.head_seq FROM temp.journal_heads t WHERE t.channel_id = ?1), c.head_seq) "
		   "AND h.channel_id = c.channel_id WHERE c.channel_id = ?1",
    [ST_JOURNAL_HEAD] = "INSERT INTO temp.journal_heads (channel_id, head_seq, first_seq) "
			"VALUES (?, last_insert_rowid(), last_insert_rowid()) ON CONFLICT "
			"(channel_id) DO UPDATE SET head_seq = excluded.head_seq",
    [ST_CHANNEL_INSERT] = "INSERT INTO channels (channel_id, cert, state, hseq, seg_seq, "
			  "seg_start, last, w_last, credit, last_order_ref, redeem_until) "
			  "VALUES (?, ?, ?, ?, ?, ?, 0, ?, 0, x'', ?)",
    [ST_ORDER_INSERT] = "INSERT INTO orders (order_ref, price, created_at) VALUES (?, ?, ?)",
    [ST_ORDER_PAID] = "UPDATE orders SET paid = 1 WHERE order_ref = ?",
    [ST_FIND_PAY] = JOURNAL_WALK "SELECT p.w, p.order_ref, p.code, p.credit, p.price "
				 "FROM walk JOIN pay_journal p ON p.seq = walk.seq "
				 "WHERE p.j = ?2 AND p.seg_seq = ?3 ORDER BY p.seq DESC LIMIT 1",
};

struct store {
	const struct mp_clock *clock; /* protocol time for the rows it stamps */
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char path[512];
	bool heads_unsynced;   /* writer: journal_heads has rows no checkpoint folded yet */
	uint64_t synced_at_us; /* writer: when the last fold ended (mp_metrics_now_us) */
	int64_t fold_upto;     /* writer: a fold in progress, of the channels paid up to here */
	int64_t newest_seq;    /* writer: the newest journal row it wrote */
	struct wal_checkpointer *checkpointer; /* writer: beside it, NULL if none */
};

static bool exec(struct store *s, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_err("store %s: %s: %s", s->path, sql, msg ? msg : "?");
		sqlite3_free(msg);
		return false;
	}
	return true;
}

bool store_exec(struct store *s, const char *sql)
{
	return exec(s, sql);
}

bool store_has_column(struct store *s, const char *probe)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, probe, -1, &st, NULL) != SQLITE_OK)
		return false;
	sqlite3_finalize(st);
	return true;
}

static bool step_done(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_err("store %s: %s: %s", s->path, sqlite3_sql(st), sqlite3_errmsg(s->db));
		return false;
	}
	return true;
}

/* rcs is the OR of a statement's sqlite3_bind_* results: SQLITE_OK (0) only if every one
 * succeeded. A failed bind leaves its parameter NULL, which could match nothing or store
 * nothing without an error: refuse the statement instead (logged, its bindings cleared). */
static bool bound(struct store *s, sqlite3_stmt *st, int rcs)
{
	if (rcs == SQLITE_OK)
		return true;
	log_err("store %s: binding the parameters of %s: %s", s->path, sqlite3_sql(st),
		sqlite3_errmsg(s->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return false;
}

/* Stores written before the channel row kept its last Pay's answer: add the columns and fill
 * them from the journal. */
static bool migrate_last_answer(struct store *s)
{
	sqlite3_stmt *probe;
	if (sqlite3_prepare_v2(s->db, "SELECT last_code, last_price FROM channels LIMIT 0", -1,
			       &probe, NULL) == SQLITE_OK) {
		sqlite3_finalize(probe);
		return true;
	}
	log_info("store %s: adding each channel's last answer to its row", s->path);
	return exec(s, "BEGIN IMMEDIATE;"
		       "ALTER TABLE channels ADD COLUMN last_code INTEGER NOT NULL DEFAULT 0;"
		       "ALTER TABLE channels ADD COLUMN last_price INTEGER NOT NULL DEFAULT 0;"
		       "UPDATE channels SET"
		       " last_code = coalesce((SELECT code FROM pay_journal p WHERE"
		       "  p.channel_id = channels.channel_id AND p.j = channels.last"
		       "  ORDER BY seq DESC LIMIT 1), 0),"
		       " last_price = coalesce((SELECT price FROM pay_journal p WHERE"
		       "  p.channel_id = channels.channel_id AND p.j = channels.last"
		       "  ORDER BY seq DESC LIMIT 1), 0);"
		       "COMMIT;");
}

/* Stores written before custody chains (issue 6): the Handoffs received and signed per
 * channel, the epochs this merchant held and handed off (kept for redemption only), and the
 * MerchantCerts of other merchants that signed Handoffs we hold. */
static const char schema_custody[] =
    "CREATE TABLE IF NOT EXISTS custody ("
    " channel_id BLOB NOT NULL, hseq INTEGER NOT NULL CHECK (hseq >= 1),"
    " from_mid BLOB NOT NULL, stmt BLOB NOT NULL, PRIMARY KEY (channel_id, hseq));"
    "CREATE TABLE IF NOT EXISTS epochs ("
    " channel_id BLOB NOT NULL, hseq INTEGER NOT NULL, end_index INTEGER NOT NULL,"
    " w_end BLOB NOT NULL, redeemed_end INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (channel_id, hseq));"
    "CREATE TABLE IF NOT EXISTS peer_certs ("
    " merchant_id BLOB PRIMARY KEY, cert BLOB NOT NULL);";

static bool migrate_custody(struct store *s)
{
	sqlite3_stmt *probe;
	if (sqlite3_prepare_v2(s->db, "SELECT hseq FROM epochs LIMIT 0", -1, &probe, NULL) ==
	    SQLITE_OK) {
		sqlite3_finalize(probe);
		return true;
	}
	log_info("store %s: adding custody chains, held epochs and peer MerchantCerts", s->path);
	return exec(s, "BEGIN IMMEDIATE;") && exec(s, schema_custody) && exec(s, "COMMIT;");
}

/* Freed pages go back to the file system only with incremental auto-vacuum (compact.c). A new
 * store gets it before its first table; an older one is converted by one VACUUM. */
static bool ensure_incremental_vacuum(struct store *s)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA auto_vacuum", -1, &st, NULL) != SQLITE_OK)
		return false;
	int mode = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (mode == 2)
		return true;
	log_info("store %s: converting to incremental auto-vacuum (one VACUUM)", s->path);
	return exec(s, "PRAGMA auto_vacuum=INCREMENTAL") && exec(s, "VACUUM");
}

static bool initialise(struct store *s)
{
	sqlite3_busy_timeout(s->db, 5000);
	return exec(s, "PRAGMA auto_vacuum=INCREMENTAL") && exec(s, "PRAGMA journal_mode=WAL") &&
	       exec(s, "PRAGMA synchronous=FULL") && exec(s, schema) && migrate_last_answer(s) &&
	       journal_chain_migrate(s) && migrate_custody(s) && segment_store_migrate(s) &&
	       bind_store_migrate(s) && close_store_migrate(s) && too_late_store_migrate(s) &&
	       redeem_wait_store_migrate(s) && restore_store_migrate(s) &&
	       purchase_store_migrate(s) && offer_store_migrate(s) &&
	       ensure_incremental_vacuum(s) && journal_heads_open(s);
}

static struct store *open_with(const char *path, const struct mp_clock *clock, int mutex_flag,
			       char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->clock = clock;
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (!mp_store_is_private(path, err, errlen)) { /* the journal holds paywords */
		store_close(s);
		return NULL;
	}
	/* Created private before SQLite sees it. Only when absent: closing a descriptor of a file
	 * this process has open drops every POSIX lock the process holds on it, including those
	 * of another connection (the loop's, when the store thread opens its own). */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd >= 0)
		close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | mutex_flag,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "cannot open");
		store_close(s);
		return NULL;
	}
	if (!initialise(s)) {
		snprintf(err, errlen, "%s: cannot initialise the store", path);
		store_close(s);
		return NULL;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v2(s->db, stmt_sql[i], -1, &s->st[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: preparing '%s': %s", path, stmt_sql[i],
				 sqlite3_errmsg(s->db));
			store_close(s);
			return NULL;
		}
	}
	return s;
}

struct store *store_open(const char *path, const struct mp_clock *clock, char *err, size_t errlen)
{
	return open_with(path, clock, SQLITE_OPEN_FULLMUTEX, err, errlen);
}

/* One thread at a time uses the connection (handed over, never shared): no lock per call. */
struct store *store_open_unshared(const char *path, const struct mp_clock *clock, char *err,
				  size_t errlen)
{
	return open_with(path, clock, SQLITE_OPEN_NOMUTEX, err, errlen);
}

void store_set_lock_wait(struct store *s, int ms)
{
	sqlite3_busy_timeout(s->db, ms);
}

struct sqlite3 *store_db(struct store *s)
{
	return s->db;
}

void store_attach_checkpointer(struct store *s, struct wal_checkpointer *c)
{
	s->checkpointer = c;
	wal_checkpointer_attach(c, s->db);
}

int store_checkpoint(struct store *s, int mode)
{
	return wal_checkpointer_run_after_thread(s->checkpointer, s->db, mode, NULL, NULL);
}

const char *store_path(const struct store *s)
{
	return s->path;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->db && !store_sync_heads(s)) /* else the next open folds them */
		log_err("store %s: the paid channels' rows were not brought up to date at close; "
			"the next start does it from the journal",
			s->path);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

static bool column_blob(sqlite3_stmt *st, int col, uint8_t *out, size_t len)
{
	if (sqlite3_column_bytes(st, col) != (int)len)
		return false;
	memcpy(out, sqlite3_column_blob(st, col), len);
	return true;
}

static struct channel *channel_from_row(sqlite3_stmt *st)
{
	struct channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	int cert_len = sqlite3_column_bytes(st, 1);
	bool ok = column_blob(st, 0, ch->id, MP_ID_LEN) &&
		  channel_from_cert(ch, sqlite3_column_blob(st, 1), (size_t)cert_len) &&
		  column_blob(st, 7, ch->w_last, MP_HASH_LEN);
	int ref_len = sqlite3_column_bytes(st, 9);
	if (!ok || ref_len > MP_ORDER_REF_MAX) {
		free(ch->cert);
		free(ch);
		return NULL;
	}
	ch->state = (enum channel_state)sqlite3_column_int(st, 2);
	ch->hseq = (uint32_t)sqlite3_column_int64(st, 3);
	ch->seg_seq = (uint32_t)sqlite3_column_int64(st, 4);
	ch->seg_start = (uint32_t)sqlite3_column_int64(st, 5);
	ch->last = ch->durable_last = (uint32_t)sqlite3_column_int64(st, 6);
	memcpy(ch->durable_w, ch->w_last, MP_HASH_LEN);
	ch->credit = ch->durable_credit = (uint64_t)sqlite3_column_int64(st, 8);
	ch->last_order_ref_len = ch->durable_order_ref_len = (uint8_t)ref_len;
	if (ref_len) {
		memcpy(ch->last_order_ref, sqlite3_column_blob(st, 9), (size_t)ref_len);
		memcpy(ch->durable_order_ref, ch->last_order_ref, (size_t)ref_len);
	}
	ch->redeemed_end = (uint32_t)sqlite3_column_int64(st, 10);
	ch->durable_code = (MpCode)sqlite3_column_int(st, 11);
	ch->durable_price = (uint64_t)sqlite3_column_int64(st, 12);
	ch->recorded = true;
	return ch;
}

bool store_load_channels(struct store *s, struct table *channels)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
		s->db,
		"SELECT channel_id, cert, state, hseq, seg_seq, seg_start, last, "
		"w_last, credit, last_order_ref, redeemed_end, last_code, last_price "
		"FROM channels",
		-1, &st, NULL) != SQLITE_OK)
		return false;
	bool ok = true;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct channel *ch = channel_from_row(st);
		if (ch && ch->unbound && !bind_store_load(s, ch)) {
			log_err("store %s: a channel without holder0 and without its Bind",
				s->path);
			channel_free(ch);
			ch = NULL;
		}
		if (ch && ch->state == CHANNEL_CLOSED && !close_store_load(s, ch)) {
			log_err("store %s: a CLOSED channel without its Close", s->path);
			channel_free(ch);
			ch = NULL;
		}
		if (ch && !segment_store_load(s, ch)) {
			channel_free(ch);
			ch = NULL;
		}
		if (ch)
			ch->durable_seg = ch->seg_seq;
		if (!ch) {
			log_err("store %s: an unreadable channel row; refusing to start", s->path);
			ok = false;
			break;
		}
		channel_insert(channels, ch);
	}
	sqlite3_finalize(st);
	return ok && (rc == SQLITE_ROW || rc == SQLITE_DONE);
}

bool store_load_orders(struct store *s, struct table *orders)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT order_ref, price, paid FROM orders", -1, &st, NULL) !=
	    SQLITE_OK)
		return false;
	bool ok = true;
	while (ok && sqlite3_step(st) == SQLITE_ROW) {
		struct order *o = calloc(1, sizeof(*o));
		int len = sqlite3_column_bytes(st, 0);
		ok = o && len >= 1 && len <= MP_ORDER_REF_MAX;
		if (!ok) {
			free(o);
			break;
		}
		memcpy(o->ref, sqlite3_column_blob(st, 0), (size_t)len);
		o->ref_len = (uint8_t)len;
		o->price = (uint64_t)sqlite3_column_int64(st, 1);
		o->paid = o->paid_durable = sqlite3_column_int(st, 2) != 0;
		o->recorded = true;
		order_insert(orders, o);
	}
	sqlite3_finalize(st);
	return ok;
}

static bool journal_entry(struct store *s, struct batch_entry *e, int64_t now)
{
	sqlite3_stmt *st = s->st[ST_JOURNAL];
	int rcs =
	    sqlite3_bind_blob(st, 1, e->channel_id, MP_ID_LEN, SQLITE_STATIC) |
	    sqlite3_bind_int64(st, 2, e->seg_seq) | sqlite3_bind_int64(st, 3, e->j) |
	    sqlite3_bind_blob(st, 4, e->w, MP_HASH_LEN, SQLITE_STATIC) |
	    sqlite3_bind_blob(st, 5, e->order_ref, e->order_ref_len, SQLITE_STATIC) |
	    sqlite3_bind_int(st, 6, e->code) | sqlite3_bind_int64(st, 7, (sqlite3_int64)e->credit) |
	    sqlite3_bind_int64(st, 8, (sqlite3_int64)e->price) | sqlite3_bind_int64(st, 9, now);
	if (!bound(s, st, rcs) || !step_done(s, st))
		return false;
	if (sqlite3_changes(s->db) != 1) { /* INSERT ... SELECT: no channel row, no row */
		log_err("store %s: a Pay of a channel without a row", s->path);
		return false;
	}
	e->journal_seq = sqlite3_last_insert_rowid(s->db);
	e->journal_at = (uint64_t)now;
	s->newest_seq = e->journal_seq;
	s->heads_unsynced = true;
	st = s->st[ST_JOURNAL_HEAD];
	rcs = sqlite3_bind_blob(st, 1, e->channel_id, MP_ID_LEN, SQLITE_STATIC);
	if (!bound(s, st, rcs) || !step_done(s, st))
		return false;
	if (!e->price || e->pays_purchase || e->pays_offer) /* purchase_/offer_store_paid */
		return true;
	st = s->st[ST_ORDER_PAID];
	rcs = sqlite3_bind_blob(st, 1, e->order_ref, e->order_ref_len, SQLITE_STATIC);
	return bound(s, st, rcs) && step_done(s, st);
}

static bool channel_insert_row(struct store *s, const struct channel_row *r)
{
	sqlite3_stmt *st = s->st[ST_CHANNEL_INSERT];
	int rcs = sqlite3_bind_blob(st, 1, r->id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 2, r->cert, (int)r->cert_len, SQLITE_STATIC) |
		  sqlite3_bind_int(st, 3, r->state) | sqlite3_bind_int64(st, 4, r->hseq) |
		  sqlite3_bind_int64(st, 5, r->seg_seq) | sqlite3_bind_int64(st, 6, r->seg_start) |
		  sqlite3_bind_blob(st, 7, r->w_last, MP_HASH_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 8, (sqlite3_int64)r->redeem_until);
	return bound(s, st, rcs) && step_done(s, st);
}

static bool order_insert_row(struct store *s, const struct batch_entry *e, int64_t now)
{
	sqlite3_stmt *st = s->st[ST_ORDER_INSERT];
	int rcs = sqlite3_bind_blob(st, 1, e->order_ref, e->order_ref_len, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, (sqlite3_int64)e->price) |
		  sqlite3_bind_int64(st, 3, now);
	return bound(s, st, rcs) && step_done(s, st);
}

/* A channel transferred through the broker before its Bind: its pairs with its record. */
static bool open_segments_put(struct store *s, const struct batch_entry *e)
{
	bool ok = true;
	for (size_t i = 0; ok && e->custody && i < e->custody->n_segs; i++)
		ok = segment_store_put(s, e->channel_id, &e->custody->segs[i]);
	return ok;
}

static bool write_entry(struct store *s, struct batch_entry *e, int64_t now)
{
	switch (e->kind) {
	case ENTRY_PAY:
		return journal_entry(s, e, now) &&
		       (!e->pays_purchase ||
			purchase_store_paid(s, e->purchase_id, e->purchase_paid)) &&
		       (!e->pays_offer || offer_store_paid(s, e->offer_ref, e->offer_by_dispute));
	case ENTRY_PURCHASE:
		return purchase_store_put(s, e->purchase_row, now);
	case ENTRY_OFFER:
		return offer_store_put(s, e->offer_row, now);
	case ENTRY_OFFER_CANCEL:
		return offer_store_cancel(s, e->offer_row->order_ref, e->offer_row->cancel,
					  e->offer_row->cancel_len);
	case ENTRY_OPEN:
		return !e->insert || (channel_insert_row(s, &e->row) &&
				      (!e->row.bind || bind_store_put(s, e->channel_id, e->row.bind,
								      e->row.bind_len)) &&
				      open_segments_put(s, e));
	case ENTRY_ORDER:
		return order_insert_row(s, e, now);
	case ENTRY_HANDOFF:
		return custody_store_handoff(s, e->channel_id, e->custody);
	case ENTRY_TAKEOVER:
		return custody_store_takeover(s, e->channel_id, e->custody, &e->row);
	case ENTRY_CAP:
		return segment_store_cap(s, e->channel_id, e->seg, now);
	case ENTRY_CLOSE:
		return close_store_put(s, e->channel_id, e->custody);
	case ENTRY_RETRY:
		return true;
	}
	return false;
}

/* The batch's share of a fold of the paid channels' journal rows into their rows
 * (journal_chain.h): a fold starts JOURNAL_FOLD_MS after the last one ended, takes the channels
 * paid up to the journal's newest row then, JOURNAL_FOLD_PER_BATCH a batch, so a channel's row
 * page is written about once a JOURNAL_FOLD_MS, not once a batch, and a fold of many channels
 * is spread over batches. (The fields move before the commit: a batch that does not commit
 * stops the daemon.) */
static bool fold_share(struct store *s)
{
	uint64_t now_us = mp_metrics_now_us();
	if (!s->fold_upto) {
		if (!s->heads_unsynced || now_us - s->synced_at_us < JOURNAL_FOLD_MS * 1000ull)
			return true;
		s->fold_upto = s->newest_seq;
	}
	bool more, unfolded;
	if (!journal_heads_checkpoint(s, s->fold_upto, JOURNAL_FOLD_PER_BATCH, &more, &unfolded))
		return false;
	if (!more) {
		s->fold_upto = 0;
		s->synced_at_us = now_us;
		s->heads_unsynced = unfolded;
	}
	return true;
}

bool store_commit_batch(struct store *s, struct batch_entry *entries, size_t n)
{
	int64_t now = (int64_t)mp_clock_now(s->clock);
	if (!step_done(s, s->st[ST_BEGIN]))
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < n; i++)
		ok = write_entry(s, &entries[i], now);
	if (ok && fold_share(s) && step_done(s, s->st[ST_COMMIT]))
		return true;
	step_done(s, s->st[ST_ROLLBACK]); /* the TEMP table's rows roll back with it */
	return false;
}

bool store_sync_heads_some(struct store *s, int limit, bool *more)
{
	*more = false;
	if (!s->heads_unsynced)
		return true;
	if (!step_done(s, s->st[ST_BEGIN]))
		return false;
	bool unfolded;
	if (journal_heads_checkpoint(s, INT64_MAX, limit, more, &unfolded) &&
	    step_done(s, s->st[ST_COMMIT])) {
		if (!*more) {
			s->heads_unsynced = unfolded;
			s->fold_upto = 0;
			s->synced_at_us = mp_metrics_now_us();
		}
		return true;
	}
	step_done(s, s->st[ST_ROLLBACK]);
	*more = false;
	return false;
}

bool store_sync_heads(struct store *s)
{
	bool more;
	return store_sync_heads_some(s, -1, &more);
}

bool store_find_pay(struct store *s, const uint8_t ch[MP_ID_LEN], int64_t head, uint32_t seg_seq,
		    uint32_t j, struct stored_pay *out)
{
	sqlite3_stmt *st = s->st[ST_FIND_PAY];
	int rcs = sqlite3_bind_blob(st, 1, ch, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, j) | sqlite3_bind_int64(st, 3, seg_seq) |
		  journal_bind_head(st, head);
	if (!bound(s, st, rcs))
		return false;
	bool found = false;
	if (sqlite3_step(st) == SQLITE_ROW) {
		int ref_len = sqlite3_column_bytes(st, 1);
		found = ref_len <= MP_ORDER_REF_MAX && column_blob(st, 0, out->w, MP_HASH_LEN);
		if (found) {
			out->j = j;
			out->order_ref_len = (uint8_t)ref_len;
			memcpy(out->order_ref, sqlite3_column_blob(st, 1), (size_t)ref_len);
			out->code = (MpCode)sqlite3_column_int(st, 2);
			out->credit = (uint64_t)sqlite3_column_int64(st, 3);
			out->price = (uint64_t)sqlite3_column_int64(st, 4);
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return found;
}

bool store_meta_get(struct store *s, const char *key, uint8_t **value, size_t *len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return false;
	bool found = false;
	if (bound(s, st, sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC)) &&
	    sqlite3_step(st) == SQLITE_ROW) {
		*len = (size_t)sqlite3_column_bytes(st, 0);
		*value = malloc(*len ? *len : 1);
		found = *value != NULL;
		if (found && *len)
			memcpy(*value, sqlite3_column_blob(st, 0), *len);
	}
	sqlite3_finalize(st);
	return found;
}

bool store_meta_put(struct store *s, const char *key, const uint8_t *value, size_t len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", -1,
			       &st, NULL) != SQLITE_OK)
		return false;
	int rcs = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 2, value, (int)len, SQLITE_STATIC);
	bool ok = bound(s, st, rcs) && sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok;
}

bool store_outbox_put(struct store *s, const uint8_t redeem_id[MP_ID_LEN], const uint8_t *stmt,
		      size_t len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO redeem_outbox (redeem_id, stmt, created_at) VALUES "
			       "(?, ?, strftime('%s', 'now'))",
			       -1, &st, NULL) != SQLITE_OK)
		return false;
	int rcs = sqlite3_bind_blob(st, 1, redeem_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 2, stmt, (int)len, SQLITE_STATIC);
	bool ok = bound(s, st, rcs) && sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: outbox: %s", s->path, sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return ok;
}

bool store_outbox_next(struct store *s, uint8_t redeem_id[MP_ID_LEN], uint8_t **stmt, size_t *len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
		s->db,
		"SELECT redeem_id, stmt FROM redeem_outbox WHERE answered_at IS NULL "
		"ORDER BY created_at, rowid LIMIT 1",
		-1, &st, NULL) != SQLITE_OK)
		return false;
	bool found = false;
	if (sqlite3_step(st) == SQLITE_ROW && column_blob(st, 0, redeem_id, MP_ID_LEN)) {
		*len = (size_t)sqlite3_column_bytes(st, 1);
		*stmt = malloc(*len ? *len : 1);
		found = *stmt != NULL;
		if (found)
			memcpy(*stmt, sqlite3_column_blob(st, 1), *len);
	}
	sqlite3_finalize(st);
	return found;
}

bool store_outbox_answered(struct store *s, const uint8_t redeem_id[MP_ID_LEN],
			   const struct redeemed_claim *claims, size_t n)
{
	sqlite3_stmt *up = NULL, *ep = NULL, *done = NULL;
	bool ok = exec(s, "BEGIN IMMEDIATE") &&
		  sqlite3_prepare_v2(s->db,
				     "UPDATE channels SET redeemed_end = max(redeemed_end, ?1) "
				     "WHERE channel_id = ?2 AND hseq = ?3",
				     -1, &up, NULL) == SQLITE_OK &&
		  sqlite3_prepare_v2(s->db,
				     "UPDATE epochs SET redeemed_end = max(redeemed_end, ?1) "
				     "WHERE channel_id = ?2 AND hseq = ?3",
				     -1, &ep, NULL) == SQLITE_OK &&
		  sqlite3_prepare_v2(s->db,
				     "UPDATE redeem_outbox SET answered_at = strftime('%s', 'now') "
				     "WHERE redeem_id = ?",
				     -1, &done, NULL) == SQLITE_OK;
	for (size_t i = 0; ok && i < n; i++) {
		int rcs = sqlite3_bind_int64(up, 1, claims[i].credited_end) |
			  sqlite3_bind_blob(up, 2, claims[i].channel_id, MP_ID_LEN, SQLITE_STATIC) |
			  sqlite3_bind_int64(up, 3, claims[i].hseq);
		ok = bound(s, up, rcs) && step_done(s, up);
		rcs = sqlite3_bind_int64(ep, 1, claims[i].credited_end) |
		      sqlite3_bind_blob(ep, 2, claims[i].channel_id, MP_ID_LEN, SQLITE_STATIC) |
		      sqlite3_bind_int64(ep, 3, claims[i].hseq);
		ok = ok && bound(s, ep, rcs) && step_done(s, ep);
		ok = ok && (!claims[i].too_late || too_late_store_put(s, &claims[i]));
		ok = ok && (!claims[i].wait_changed || redeem_wait_store_put(s, &claims[i]));
	}
	if (ok)
		ok = bound(s, done,
			   sqlite3_bind_blob(done, 1, redeem_id, MP_ID_LEN, SQLITE_STATIC)) &&
		     step_done(s, done);
	sqlite3_finalize(up);
	sqlite3_finalize(ep);
	sqlite3_finalize(done);
	if (ok)
		return exec(s, "COMMIT");
	exec(s, "ROLLBACK");
	return false;
}
