#include "segment_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "journal_chain.h"
#include "log.h"
#include "store.h"

static const char schema_segments[] =
    "CREATE TABLE IF NOT EXISTS segments ("
    " channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
    " seg_seq INTEGER NOT NULL CHECK (seg_seq >= 1), seg_start INTEGER NOT NULL,"
    " len INTEGER NOT NULL, hseq INTEGER NOT NULL, declared_last INTEGER NOT NULL,"
    " nonce BLOB NOT NULL, root BLOB NOT NULL, owner_pk BLOB NOT NULL,"
    " transfer_hash BLOB NOT NULL, w_cap BLOB NOT NULL, transfer BLOB NOT NULL,"
    " cap BLOB NOT NULL, PRIMARY KEY (channel_id, seg_seq));"
    "CREATE TABLE IF NOT EXISTS cap_outbox ("
    " channel_id BLOB NOT NULL, seg_seq INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '',"
    " answered_at INTEGER, PRIMARY KEY (channel_id, seg_seq));";

static bool exec(struct store *s, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(store_db(s), sql, NULL, NULL, &err) == SQLITE_OK)
		return true;
	log_err("store %s: %s: %s", store_path(s), sql, err ? err : "?");
	sqlite3_free(err);
	return false;
}

bool segment_store_migrate(struct store *s)
{
	if (!store_has_column(s, "SELECT seg_seq FROM segments LIMIT 0")) {
		log_info("store %s: adding segments (Transfer/Cap pairs) and the Cap outbox",
			 store_path(s));
		if (!exec(s, "BEGIN IMMEDIATE;") || !exec(s, schema_segments) ||
		    !exec(s, "COMMIT;"))
			return false;
	}
	if (store_has_column(s, "SELECT seg_seq FROM epochs LIMIT 0"))
		return true;
	log_info("store %s: adding the segment of each handed-off epoch's end", store_path(s));
	return exec(s, "ALTER TABLE epochs ADD COLUMN seg_seq INTEGER NOT NULL DEFAULT 0;");
}

static sqlite3_stmt *prep(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return NULL;
	}
	return st;
}

/* A failed bind would leave its parameter NULL: refuse the statement (logged, finalised). */
static sqlite3_stmt *bound(struct store *s, sqlite3_stmt *st, int rcs)
{
	if (!st || rcs == SQLITE_OK)
		return st;
	log_err("store %s: binding the parameters of %s: %s", store_path(s), sqlite3_sql(st),
		sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return NULL;
}

static bool run(struct store *s, sqlite3_stmt *st)
{
	if (!st)
		return false;
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: %s: %s", store_path(s), sqlite3_sql(st),
			sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

static bool column(sqlite3_stmt *st, int col, uint8_t *out, size_t len)
{
	if (sqlite3_column_bytes(st, col) != (int)len)
		return false;
	memcpy(out, sqlite3_column_blob(st, col), len);
	return true;
}

static bool column_dup(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
	*len = (size_t)sqlite3_column_bytes(st, col);
	*out = malloc(*len ? *len : 1);
	if (*out && *len)
		memcpy(*out, sqlite3_column_blob(st, col), *len);
	return *out != NULL && *len > 0;
}

static bool row_from(sqlite3_stmt *st, struct segment_row *r)
{
	memset(r, 0, sizeof(*r));
	r->seg_seq = (uint32_t)sqlite3_column_int64(st, 0);
	r->start = (uint32_t)sqlite3_column_int64(st, 1);
	r->len = (uint32_t)sqlite3_column_int64(st, 2);
	r->hseq = (uint32_t)sqlite3_column_int64(st, 3);
	r->declared_last = (uint32_t)sqlite3_column_int64(st, 4);
	bool ok = column(st, 5, r->nonce, MP_NONCE_LEN) && column(st, 6, r->root, MP_HASH_LEN) &&
		  column(st, 7, r->owner_pk, MP_PK_LEN) &&
		  column(st, 8, r->transfer_hash, MP_HASH_LEN) &&
		  column(st, 9, r->w_cap, MP_HASH_LEN) &&
		  column_dup(st, 10, &r->transfer, &r->transfer_len) &&
		  column_dup(st, 11, &r->cap, &r->cap_len);
	if (!ok)
		segment_row_clear(r);
	return ok;
}

bool segment_store_load(struct store *s, struct channel *ch)
{
	uint32_t want_seq = ch->seg_seq, want_start = ch->seg_start;
	channel_segment0(ch);
	if (want_seq == 0)
		return want_start == 0;
	sqlite3_stmt *st =
	    prep(s, "SELECT seg_seq, seg_start, len, hseq, declared_last, nonce, "
		    "root, owner_pk, transfer_hash, w_cap, transfer, cap FROM "
		    "segments WHERE channel_id = ? AND seg_seq <= ? ORDER BY seg_seq");
	st = bound(s, st,
		   st ? sqlite3_bind_blob(st, 1, ch->id, MP_ID_LEN, SQLITE_STATIC) |
			    sqlite3_bind_int64(st, 2, want_seq)
		      : 0);
	if (!st)
		return false;
	bool ok = true;
	while (ok && sqlite3_step(st) == SQLITE_ROW) {
		struct segment_row r;
		ok = row_from(st, &r) && channel_push_segment(ch, &r);
		segment_row_clear(&r);
	}
	sqlite3_finalize(st);
	ok = ok && ch->seg_seq == want_seq && ch->seg_start == want_start;
	if (!ok)
		log_err("store %s: the channel row names segment %u at %u, its stored pairs do "
			"not",
			store_path(s), want_seq, want_start);
	return ok;
}

static bool insert_pair(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			const struct segment_row *r, bool or_ignore)
{
	sqlite3_stmt *st =
	    prep(s, or_ignore ? "INSERT OR IGNORE INTO segments (channel_id, seg_seq, seg_start, "
				"len, hseq, declared_last, nonce, root, owner_pk, transfer_hash, "
				"w_cap, transfer, cap) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
			      : "INSERT INTO segments (channel_id, seg_seq, seg_start, len, hseq, "
				"declared_last, nonce, root, owner_pk, transfer_hash, w_cap, "
				"transfer, cap) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (!st)
		return false;
	int rcs = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, r->seg_seq) | sqlite3_bind_int64(st, 3, r->start) |
		  sqlite3_bind_int64(st, 4, r->len) | sqlite3_bind_int64(st, 5, r->hseq) |
		  sqlite3_bind_int64(st, 6, r->declared_last) |
		  sqlite3_bind_blob(st, 7, r->nonce, MP_NONCE_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 8, r->root, MP_HASH_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 9, r->owner_pk, MP_PK_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 10, r->transfer_hash, MP_HASH_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 11, r->w_cap, MP_HASH_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 12, r->transfer, (int)r->transfer_len, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 13, r->cap, (int)r->cap_len, SQLITE_STATIC);
	return run(s, bound(s, st, rcs));
}

/* The channel row at the new segment's base point: no credit, no last Pay. */
static bool move_row(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		     const struct segment_row *r)
{
	if (!journal_heads_fold(s, channel_id)) /* its last Pay folded first (journal_chain.h) */
		return false;
	sqlite3_stmt *st =
	    prep(s, "UPDATE channels SET seg_seq = ?1, seg_start = ?2, last = ?2, w_last = ?3, "
		    "credit = 0, last_order_ref = x'', last_code = 0, last_price = 0 "
		    "WHERE channel_id = ?4");
	if (!st)
		return false;
	int rcs = sqlite3_bind_int64(st, 1, r->seg_seq) | sqlite3_bind_int64(st, 2, r->start) |
		  sqlite3_bind_blob(st, 3, r->root, MP_HASH_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 4, channel_id, MP_ID_LEN, SQLITE_STATIC);
	if (!run(s, bound(s, st, rcs)))
		return false;
	if (sqlite3_changes(store_db(s)) == 1)
		return true;
	log_err("store %s: a Cap for a channel without a row", store_path(s));
	return false;
}

static bool outbox_insert(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			  int64_t now)
{
	sqlite3_stmt *st = prep(s, "INSERT INTO cap_outbox (channel_id, seg_seq, created_at) "
				   "VALUES (?, ?, ?)");
	if (!st)
		return false;
	int rcs = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, seg_seq) | sqlite3_bind_int64(st, 3, now);
	return run(s, bound(s, st, rcs));
}

bool segment_store_cap(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		       const struct segment_row *row, int64_t now)
{
	return insert_pair(s, channel_id, row, false) && move_row(s, channel_id, row) &&
	       outbox_insert(s, channel_id, row->seg_seq, now);
}

bool segment_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		       const struct segment_row *row)
{
	return insert_pair(s, channel_id, row, true);
}

int64_t cap_outbox_count(struct store *s, enum cap_outbox_state state)
{
	sqlite3_stmt *st = prep(s, "SELECT count(*) FROM cap_outbox WHERE state = ?");
	st = bound(s, st, st ? sqlite3_bind_int(st, 1, state) : 0);
	if (!st)
		return -1;
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	return n;
}

bool cap_outbox_next(struct store *s, int64_t after_rowid, uint8_t channel_id[MP_ID_LEN],
		     uint32_t *seg_seq, int64_t *rowid)
{
	sqlite3_stmt *st = prep(s, "SELECT rowid, channel_id, seg_seq FROM cap_outbox "
				   "WHERE state = 0 AND rowid > ? ORDER BY rowid LIMIT 1");
	st = bound(s, st, st ? sqlite3_bind_int64(st, 1, after_rowid) : 0);
	if (!st)
		return false;
	bool found = sqlite3_step(st) == SQLITE_ROW && column(st, 1, channel_id, MP_ID_LEN);
	if (found) {
		*rowid = sqlite3_column_int64(st, 0);
		*seg_seq = (uint32_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	return found;
}

bool cap_outbox_mark(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
		     enum cap_outbox_state state, const char *detail)
{
	sqlite3_stmt *st =
	    prep(s, "UPDATE cap_outbox SET state = ?, detail = ?, answered_at = strftime('%s', "
		    "'now') WHERE channel_id = ? AND seg_seq = ?");
	if (!st)
		return false;
	int rcs = sqlite3_bind_int(st, 1, state) |
		  sqlite3_bind_text(st, 2, detail ? detail : "", -1, SQLITE_TRANSIENT) |
		  sqlite3_bind_blob(st, 3, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 4, seg_seq);
	return run(s, bound(s, st, rcs));
}
