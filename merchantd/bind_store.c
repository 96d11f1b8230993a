#include "bind_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"

bool bind_store_migrate(struct store *s)
{
	char *err = NULL;
	if (sqlite3_exec(store_db(s),
			 "CREATE TABLE IF NOT EXISTS binds ("
			 " channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
			 " stmt BLOB NOT NULL);",
			 NULL, NULL, &err) == SQLITE_OK)
		return true;
	log_err("store %s: creating the binds table: %s", store_path(s), err ? err : "?");
	sqlite3_free(err);
	return false;
}

bool bind_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN], const uint8_t *bind,
		    size_t len)
{
	sqlite3_stmt *st = NULL;
	const char *sql = "INSERT OR IGNORE INTO binds (channel_id, stmt) VALUES (?, ?)";
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return false;
	}
	int rcs = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_blob(st, 2, bind, (int)len, SQLITE_STATIC);
	bool ok = rcs == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: storing a Bind: %s", store_path(s), sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

/* Our own stored bytes (verified before they were stored): the merchant it names. */
static bool bind_merchant(const uint8_t *bytes, size_t len, uint8_t mid[MP_ID_LEN])
{
	MpSigned *s = mp_stmt_decode(bytes, len);
	Micropay__V1__Bind *b = s ? (Micropay__V1__Bind *)mp_strict_unpack(
					&micropay__v1__bind__descriptor, s->body.data, s->body.len)
				  : NULL;
	bool ok = b && mp_bytes_len_is(b->merchant_id, MP_ID_LEN);
	if (ok)
		memcpy(mid, b->merchant_id.data, MP_ID_LEN);
	if (b)
		micropay__v1__bind__free_unpacked(b, NULL);
	mp_stmt_free(s);
	return ok;
}

bool bind_store_load(struct store *s, struct channel *ch)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), "SELECT stmt FROM binds WHERE channel_id = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return false;
	bool ok = sqlite3_bind_blob(st, 1, ch->id, MP_ID_LEN, SQLITE_STATIC) == SQLITE_OK &&
		  sqlite3_step(st) == SQLITE_ROW;
	size_t len = ok ? (size_t)sqlite3_column_bytes(st, 0) : 0;
	ok = ok && len > 0 && (ch->bind = malloc(len)) != NULL;
	if (ok) {
		memcpy(ch->bind, sqlite3_column_blob(st, 0), len);
		ch->bind_len = len;
		ok = bind_merchant(ch->bind, len, ch->holder0);
	}
	sqlite3_finalize(st);
	return ok;
}
