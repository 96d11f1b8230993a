#include "harness_store.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

sqlite3 *store_lock_hold(const char *path)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) == SQLITE_OK,
		      "store %s: %s", path, msg ? msg : "?");
	return db;
}

void store_lock_release(sqlite3 *db)
{
	ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

uint8_t *store_row_blob(const char *path, const char *sql, const uint8_t *id, size_t id_len,
			int64_t k, int col, size_t *len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t *out = NULL;
	ck_assert_msg(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK,
		      "store %s: %s", path, sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "store %s: %s: %s",
		      path, sql, sqlite3_errmsg(db));
	sqlite3_bind_blob(st, 1, id, (int)id_len, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, k);
	int rc = sqlite3_step(st);
	ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "store %s: %s: %s", path, sql,
		      sqlite3_errmsg(db));
	if (rc == SQLITE_ROW && sqlite3_column_type(st, col) != SQLITE_NULL) {
		*len = (size_t)sqlite3_column_bytes(st, col);
		out = malloc(*len ? *len : 1);
		ck_assert_ptr_nonnull(out);
		memcpy(out, sqlite3_column_blob(st, col), *len);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}
