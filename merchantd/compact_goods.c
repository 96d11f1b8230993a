/* Deleting old offers and finished purchases (compact_goods.h). */
#include "compact_goods.h"

#include <stdio.h>

static const char *const deletes[] = {
    "DELETE FROM offers WHERE rowid IN (SELECT rowid FROM offers WHERE deadline < ?1 "
    "LIMIT ?2)",
    "DELETE FROM purchases WHERE rowid IN (SELECT rowid FROM purchases WHERE paid >= chunks "
    "AND created_at < ?1 LIMIT ?2)",
};

/* One DELETE; the number of rows it took, or -1 with err. */
static int delete_some(sqlite3 *db, const char *sql, int64_t cutoff, int limit, char *err,
		       size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    (sqlite3_bind_int64(st, 1, cutoff) | sqlite3_bind_int(st, 2, limit)) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		n = sqlite3_changes(db);
	else
		snprintf(err, errlen, "goods delete: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return n;
}

bool compact_goods_step(sqlite3 *db, int64_t cutoff, int limit, uint64_t *deleted, bool *more,
			char *err, size_t errlen)
{
	*more = false;
	for (size_t i = 0; i < sizeof(deletes) / sizeof(deletes[0]); i++) {
		int n = delete_some(db, deletes[i], cutoff, limit, err, errlen);
		if (n < 0)
			return false;
		*deleted += (uint64_t)n;
		*more = *more || n == limit;
	}
	return true;
}
