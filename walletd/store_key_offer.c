#include "store_key_offer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "stmt.h"
#include "store_internal.h"

const char *wkey_offer_state_name(enum wkey_offer_state s)
{
	static const char *const names[] = {"OFFERED",	 "PAID",	 "KEYED",    "DISPUTED",
					    "REFUNDED",	 "PAYING",	 "TOO_LATE", "KEY_BAD",
					    "CANCELLED", "PROOF_REFUSED"};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* The table's columns; TABLE is its name (the rebuild below creates it under another). */
#define KEY_OFFERS_TABLE(TABLE)                                                                    \
	"CREATE TABLE IF NOT EXISTS " TABLE " ("                                                   \
	"  channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"                              \
	"  order_ref BLOB NOT NULL CHECK (length(order_ref) = 16),"                                \
	"  offer BLOB NOT NULL, custody BLOB,"                                                     \
	"  prefix BLOB NOT NULL CHECK (length(prefix) = 8),"                                       \
	"  item TEXT NOT NULL, out TEXT NOT NULL,"                                                 \
	"  size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,"                                    \
	"  chunks INTEGER NOT NULL, deadline INTEGER NOT NULL,"                                    \
	"  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 9),"                                  \
	"  key BLOB CHECK (key IS NULL OR length(key) = 32),"                                      \
	"  refunded INTEGER NOT NULL DEFAULT 0,"                                                   \
	"  stored_at INTEGER NOT NULL,"                                                            \
	"  bad_key_proof BLOB CHECK (bad_key_proof IS NULL OR state IN (3, 4, 6, 7, 9)),"          \
	"  PRIMARY KEY (channel_id, order_ref));"

/* The stored table's age: 0 none yet or current; 1 before states TOO_LATE and KEY_BAD (no
 * bad_key_proof column); 2 before state CANCELLED (its CHECK ends at 7); 3 before state
 * PROOF_REFUSED (its CHECK ends at 8); -1 on error. */
static int table_age(struct wstore *s)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND "
	       "name = 'key_offers') THEN 0 WHEN NOT EXISTS (SELECT 1 FROM "
	       "pragma_table_info('key_offers') WHERE name = 'bad_key_proof') THEN 1 WHEN (SELECT "
	       "sql FROM sqlite_schema WHERE type = 'table' AND name = 'key_offers') LIKE "
	       "'%BETWEEN 0 AND 7%' THEN 2 WHEN (SELECT sql FROM sqlite_schema WHERE type = "
	       "'table' AND name = 'key_offers') LIKE '%BETWEEN 0 AND 8%' THEN 3 ELSE 0 END");
	if (!st)
		return -1;
	int rc = sqlite3_step(st);
	int age = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	return age;
}

#define OLD_COLUMNS                                                                                \
	"channel_id, order_ref, offer, custody, prefix, item, out, size, chunk_size, chunks, "     \
	"deadline, state, key, refunded, stored_at"

/* SQLite cannot change a CHECK in place: the table is copied under the new one. */
#define WIDEN_SQL(COLUMNS)                                                                         \
	KEY_OFFERS_TABLE("key_offers_v2")                                                          \
	"INSERT INTO key_offers_v2 (" COLUMNS ") SELECT " COLUMNS " FROM key_offers;"              \
	"DROP TABLE key_offers;"                                                                   \
	"ALTER TABLE key_offers_v2 RENAME TO key_offers;"

bool wstore_key_offer_migrate(struct wstore *s)
{
	static const char *const sql[] = {
	    KEY_OFFERS_TABLE("key_offers"),
	    WIDEN_SQL(OLD_COLUMNS),
	    WIDEN_SQL(OLD_COLUMNS ", bad_key_proof"),
	    WIDEN_SQL(OLD_COLUMNS ", bad_key_proof"),
	};
	int age = table_age(s);
	return age >= 0 && wsql_exec(s, sql[age]);
}

bool wstore_key_offer_put(struct wstore *s, const struct wkey_offer *o)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "INSERT OR IGNORE INTO key_offers (channel_id, order_ref, offer, custody, prefix, "
	       "item, out, size, chunk_size, chunks, deadline, state, stored_at) VALUES (?1, ?2, "
	       "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, o->channel_id, MP_ID_LEN) |
			wsql_bind_blob(st, 2, o->order_ref, MP_ID_LEN) |
			wsql_bind_stmt(st, 3, o->offer) |
			(o->custody ? wsql_bind_stmt(st, 4, o->custody)
				    : sqlite3_bind_null(st, 4)) |
			wsql_bind_blob(st, 5, o->prefix, MP_SEAL_PREFIX_LEN) |
			sqlite3_bind_text(st, 6, o->item, -1, SQLITE_TRANSIENT) |
			sqlite3_bind_text(st, 7, o->out, -1, SQLITE_TRANSIENT) |
			sqlite3_bind_int64(st, 8, (sqlite3_int64)o->size) |
			sqlite3_bind_int64(st, 9, o->chunk_size) |
			sqlite3_bind_int64(st, 10, o->chunks) |
			sqlite3_bind_int64(st, 11, (sqlite3_int64)o->deadline) |
			sqlite3_bind_int64(st, 12, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding a key offer");
	return wsql_run(s, st, "storing a key offer");
}

bool wstore_key_offer_set(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			  const uint8_t order_ref[MP_ID_LEN], enum wkey_offer_state state,
			  const uint8_t *key, uint64_t refunded)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE key_offers SET state = ?3, key = coalesce(?4, key), "
			 "refunded = ?5 WHERE channel_id = ?1 AND order_ref = ?2");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
				    wsql_bind_blob(st, 2, order_ref, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 3, state) |
				    (key ? wsql_bind_blob(st, 4, key, MP_SEAL_KEY_LEN)
					 : sqlite3_bind_null(st, 4)) |
				    sqlite3_bind_int64(st, 5, (sqlite3_int64)refunded),
				"binding a key offer's state");
	return wsql_run(s, st, "updating a key offer");
}

#define COLUMNS                                                                                    \
	"channel_id, order_ref, offer, custody, prefix, item, out, size, chunk_size, chunks, "     \
	"deadline, state, key, refunded, bad_key_proof"

/* One row (COLUMNS) into *o; false if it does not decode. */
static bool row_read(sqlite3_stmt *st, struct wkey_offer *o)
{
	memset(o, 0, sizeof(*o));
	const char *item = (const char *)sqlite3_column_text(st, 5);
	const char *out = (const char *)sqlite3_column_text(st, 6);
	o->offer = wsql_column_stmt(st, 2);
	if (sqlite3_column_type(st, 3) != SQLITE_NULL && !(o->custody = wsql_column_stmt(st, 3)))
		return false;
	if (!o->offer || !item || !out || !wsql_column_bytes(st, 0, o->channel_id, MP_ID_LEN) ||
	    !wsql_column_bytes(st, 1, o->order_ref, MP_ID_LEN) ||
	    !wsql_column_bytes(st, 4, o->prefix, MP_SEAL_PREFIX_LEN))
		return false;
	snprintf(o->item, sizeof(o->item), "%s", item);
	snprintf(o->out, sizeof(o->out), "%s", out);
	o->size = (uint64_t)sqlite3_column_int64(st, 7);
	o->chunk_size = (uint32_t)sqlite3_column_int64(st, 8);
	o->chunks = (uint32_t)sqlite3_column_int64(st, 9);
	o->deadline = (uint64_t)sqlite3_column_int64(st, 10);
	o->state = (enum wkey_offer_state)sqlite3_column_int64(st, 11);
	o->has_key = wsql_column_bytes(st, 12, o->key, MP_SEAL_KEY_LEN);
	o->refunded = (uint64_t)sqlite3_column_int64(st, 13);
	if (sqlite3_column_type(st, 14) != SQLITE_NULL) {
		int len = sqlite3_column_bytes(st, 14);
		const void *proof = sqlite3_column_blob(st, 14);
		if (len <= 0 || !proof || !(o->proof = malloc((size_t)len)))
			return false;
		memcpy(o->proof, proof, (size_t)len);
		o->proof_len = (size_t)len;
	}
	return true;
}

void wkey_offer_clear(struct wkey_offer *o)
{
	mp_stmt_free(o->offer);
	mp_stmt_free(o->custody);
	free(o->proof);
	o->offer = o->custody = NULL;
	o->proof = NULL;
	o->proof_len = 0;
}

bool wstore_key_offer_bad_key(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			      const uint8_t order_ref[MP_ID_LEN], const uint8_t *proof,
			      size_t proof_len)
{
	sqlite3_stmt *st = wsql_prep(s, "UPDATE key_offers SET state = 7, bad_key_proof = ?3 "
					"WHERE channel_id = ?1 AND order_ref = ?2");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
				    wsql_bind_blob(st, 2, order_ref, MP_ID_LEN) |
				    wsql_bind_blob(st, 3, proof, proof_len),
				"binding a key offer's proof");
	return wsql_run(s, st, "storing a key offer's proof");
}

/* sql prepared with ?1 = channel_id and ?2 = order_ref bound; NULL (logged) on a failure. */
static sqlite3_stmt *prep_by_id(struct wstore *s, const char *sql,
				const uint8_t channel_id[MP_ID_LEN],
				const uint8_t order_ref[MP_ID_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, sql);
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
				    wsql_bind_blob(st, 2, order_ref, MP_ID_LEN),
				"binding a key offer's id");
	return st;
}

bool wstore_key_offer_get(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			  const uint8_t order_ref[MP_ID_LEN], struct wkey_offer *o)
{
	sqlite3_stmt *st = prep_by_id(s,
				      "SELECT " COLUMNS " FROM key_offers WHERE channel_id = ?1 "
				      "AND order_ref = ?2",
				      channel_id, order_ref);
	if (!st)
		return false;
	int rc = sqlite3_step(st);
	bool ok = rc == SQLITE_ROW && row_read(st, o);
	if (rc == SQLITE_ROW && !ok)
		wsql_log_error(s, "reading a key offer");
	if (!ok)
		wkey_offer_clear(o);
	sqlite3_finalize(st);
	return ok;
}

bool wstore_key_offer_paying(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			     const uint8_t order_ref[MP_ID_LEN])
{
	sqlite3_stmt *st = prep_by_id(s,
				      "UPDATE key_offers SET state = 5 WHERE channel_id = ?1 AND "
				      "order_ref = ?2 AND state = 0",
				      channel_id, order_ref);
	return wsql_run(s, st, "marking a key offer PAYING") && sqlite3_changes(s->db) == 1;
}

int wstore_key_offer_state(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			   const uint8_t order_ref[MP_ID_LEN], enum wkey_offer_state *state)
{
	sqlite3_stmt *st =
	    prep_by_id(s, "SELECT state FROM key_offers WHERE channel_id = ?1 AND order_ref = ?2",
		       channel_id, order_ref);
	if (!st)
		return -1;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*state = (enum wkey_offer_state)sqlite3_column_int(st, 0);
	else if (rc != SQLITE_DONE)
		wsql_log_error(s, "reading a key offer's state");
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

bool wstore_key_offer_each(struct wstore *s, bool all, enum wkey_offer_state state,
			   wkey_offer_fn fn, void *arg)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT " COLUMNS " FROM key_offers WHERE ?1 OR state = ?2 "
					"ORDER BY stored_at, channel_id, order_ref");
	if (st)
		st =
		    wsql_bound(s, st, sqlite3_bind_int(st, 1, all) | sqlite3_bind_int(st, 2, state),
			       "binding a key offer state");
	if (!st)
		return false;
	int rc;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wkey_offer o;
		ok = row_read(st, &o);
		if (ok)
			fn(arg, &o);
		wkey_offer_clear(&o);
	}
	if (!ok || rc != SQLITE_DONE) {
		wsql_log_error(s, "reading key offers");
		ok = false;
	}
	sqlite3_finalize(st);
	return ok;
}
