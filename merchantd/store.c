#include "store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS channels ("
    " channel_id BLOB PRIMARY KEY, cert BLOB NOT NULL, state INTEGER NOT NULL,"
    " hseq INTEGER NOT NULL, seg_seq INTEGER NOT NULL, seg_start INTEGER NOT NULL,"
    " last INTEGER NOT NULL, w_last BLOB NOT NULL, credit INTEGER NOT NULL,"
    " last_order_ref BLOB NOT NULL, redeemed_end INTEGER NOT NULL DEFAULT 0,"
    " redeem_until INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS pay_journal ("
    " seq INTEGER PRIMARY KEY, channel_id BLOB NOT NULL, seg_seq INTEGER NOT NULL,"
    " j INTEGER NOT NULL, w BLOB NOT NULL, order_ref BLOB NOT NULL, code INTEGER NOT NULL,"
    " credit INTEGER NOT NULL, price INTEGER NOT NULL, at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS pay_journal_channel ON pay_journal (channel_id, j);"
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
	ST_CHANNEL_UPDATE,
	ST_ORDER_PAID,
	ST_FIND_PAY,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_JOURNAL] = "INSERT INTO pay_journal (channel_id, seg_seq, j, w, order_ref, code, "
		   "credit, price, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_CHANNEL_UPDATE] = "UPDATE channels SET last = ?, w_last = ?, credit = ?, "
			  "last_order_ref = ? WHERE channel_id = ?",
    [ST_ORDER_PAID] = "UPDATE orders SET paid = 1 WHERE order_ref = ?",
    [ST_FIND_PAY] = "SELECT w, order_ref, code, credit, price FROM pay_journal "
		    "WHERE channel_id = ? AND j = ? ORDER BY seq DESC LIMIT 1",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char path[512];
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

struct store *store_open(const char *path, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	int fd = open(path, O_RDWR | O_CREAT, 0600); /* created private, before SQLite sees it */
	if (fd >= 0)
		close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "cannot open");
		store_close(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (!exec(s, "PRAGMA journal_mode=WAL") || !exec(s, "PRAGMA synchronous=FULL") ||
	    !exec(s, schema)) {
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

void store_close(struct store *s)
{
	if (!s)
		return;
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

/* Fill the fields of a channel that come from its ChannelCert. */
bool channel_from_cert(struct channel *ch, const uint8_t *cert, size_t len);

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
	ch->credit = (uint64_t)sqlite3_column_int64(st, 8);
	ch->last_order_ref_len = (uint8_t)ref_len;
	if (ref_len)
		memcpy(ch->last_order_ref, sqlite3_column_blob(st, 9), (size_t)ref_len);
	ch->redeemed_end = (uint32_t)sqlite3_column_int64(st, 10);
	return ch;
}

bool store_load_channels(struct store *s, struct table *channels)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT channel_id, cert, state, hseq, seg_seq, seg_start, last, "
			       "w_last, credit, last_order_ref, redeemed_end FROM channels",
			       -1, &st, NULL) != SQLITE_OK)
		return false;
	bool ok = true;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct channel *ch = channel_from_row(st);
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
		o->paid = sqlite3_column_int(st, 2) != 0;
		order_insert(orders, o);
	}
	sqlite3_finalize(st);
	return ok;
}

bool store_insert_channel(struct store *s, const struct channel *ch)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO channels (channel_id, cert, state, hseq, seg_seq, "
			       "seg_start, last, w_last, credit, last_order_ref, redeem_until) "
			       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_blob(st, 1, ch->id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, ch->cert, (int)ch->cert_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, ch->state);
	sqlite3_bind_int64(st, 4, ch->hseq);
	sqlite3_bind_int64(st, 5, ch->seg_seq);
	sqlite3_bind_int64(st, 6, ch->seg_start);
	sqlite3_bind_int64(st, 7, ch->last);
	sqlite3_bind_blob(st, 8, ch->w_last, MP_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)ch->credit);
	sqlite3_bind_blob(st, 10, ch->last_order_ref, ch->last_order_ref_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)ch->redeem_until);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: inserting a channel: %s", s->path, sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return ok;
}

bool store_insert_order(struct store *s, const struct order *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO orders (order_ref, price, created_at) VALUES (?, ?, "
			       "strftime('%s', 'now'))",
			       -1, &st, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_blob(st, 1, o->ref, o->ref_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)o->price);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: inserting an order: %s", s->path, sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return ok;
}

static bool journal_entry(struct store *s, const struct pay_entry *e, int64_t now)
{
	sqlite3_stmt *st = s->st[ST_JOURNAL];
	sqlite3_bind_blob(st, 1, e->ch->id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, e->seg_seq);
	sqlite3_bind_int64(st, 3, e->j);
	sqlite3_bind_blob(st, 4, e->w, MP_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, e->order_ref, e->order_ref_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, e->code);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)e->credit);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)e->price);
	sqlite3_bind_int64(st, 9, now);
	if (!step_done(s, st))
		return false;
	if (!e->price)
		return true;
	st = s->st[ST_ORDER_PAID];
	sqlite3_bind_blob(st, 1, e->order_ref, e->order_ref_len, SQLITE_STATIC);
	return step_done(s, st);
}

/* The channel row takes the state after the batch's last payment of that channel. */
static bool channel_entry(struct store *s, const struct pay_entry *e)
{
	sqlite3_stmt *st = s->st[ST_CHANNEL_UPDATE];
	sqlite3_bind_int64(st, 1, e->j);
	sqlite3_bind_blob(st, 2, e->w, MP_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)e->credit);
	sqlite3_bind_blob(st, 4, e->order_ref, e->order_ref_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, e->ch->id, MP_ID_LEN, SQLITE_STATIC);
	return step_done(s, st);
}

bool store_commit_batch(struct store *s, const struct pay_entry *entries, size_t n)
{
	int64_t now = (int64_t)mp_now();
	if (!step_done(s, s->st[ST_BEGIN]))
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < n; i++)
		if (entries[i].fresh)
			ok = journal_entry(s, &entries[i], now);
	/* Walk backwards: the first entry seen per channel is its last payment of the batch. */
	for (size_t i = n; ok && i-- > 0;) {
		struct channel *ch = entries[i].ch;
		if (!entries[i].fresh || !ch->dirty)
			continue;
		ch->dirty = false;
		ok = channel_entry(s, &entries[i]);
	}
	if (ok && step_done(s, s->st[ST_COMMIT]))
		return true;
	step_done(s, s->st[ST_ROLLBACK]);
	return false;
}

bool store_find_pay(struct store *s, const uint8_t ch[MP_ID_LEN], uint32_t j,
		    struct stored_pay *out)
{
	sqlite3_stmt *st = s->st[ST_FIND_PAY];
	sqlite3_bind_blob(st, 1, ch, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, j);
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
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	bool found = false;
	if (sqlite3_step(st) == SQLITE_ROW) {
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
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, value, (int)len, SQLITE_STATIC);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
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
	sqlite3_bind_blob(st, 1, redeem_id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, stmt, (int)len, SQLITE_STATIC);
	bool ok = sqlite3_step(st) == SQLITE_DONE;
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
	sqlite3_stmt *up = NULL, *done = NULL;
	bool ok = exec(s, "BEGIN IMMEDIATE") &&
		  sqlite3_prepare_v2(s->db,
				     "UPDATE channels SET redeemed_end = max(redeemed_end, ?) "
				     "WHERE channel_id = ?",
				     -1, &up, NULL) == SQLITE_OK &&
		  sqlite3_prepare_v2(s->db,
				     "UPDATE redeem_outbox SET answered_at = strftime('%s', 'now') "
				     "WHERE redeem_id = ?",
				     -1, &done, NULL) == SQLITE_OK;
	for (size_t i = 0; ok && i < n; i++) {
		sqlite3_bind_int64(up, 1, claims[i].credited_end);
		sqlite3_bind_blob(up, 2, claims[i].channel_id, MP_ID_LEN, SQLITE_STATIC);
		ok = step_done(s, up);
	}
	if (ok) {
		sqlite3_bind_blob(done, 1, redeem_id, MP_ID_LEN, SQLITE_STATIC);
		ok = step_done(s, done);
	}
	sqlite3_finalize(up);
	sqlite3_finalize(done);
	if (ok)
		return exec(s, "COMMIT");
	exec(s, "ROLLBACK");
	return false;
}
