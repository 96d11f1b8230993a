#include "store_release.h"

#include "clock.h"
#include "stmt.h"
#include "store_internal.h"

bool wstore_release_migrate(struct wstore *s)
{
	return wsql_exec(s, "CREATE TABLE IF NOT EXISTS forced_closes ("
			    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
			    "  forced_close BLOB NOT NULL, epoch INTEGER NOT NULL,"
			    "  final_index INTEGER NOT NULL, stored_at INTEGER NOT NULL);");
}

bool wstore_forced_close_put(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			     const MpSigned *forced_close, uint32_t epoch, uint32_t final_index)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT OR REPLACE INTO forced_closes (channel_id, "
					"forced_close, epoch, final_index, stored_at) "
					"VALUES (?1, ?2, ?3, ?4, ?5)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
			wsql_bind_stmt(st, 2, forced_close) | sqlite3_bind_int64(st, 3, epoch) |
			sqlite3_bind_int64(st, 4, final_index) |
			sqlite3_bind_int64(st, 5, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding a ForcedClose");
	return wsql_run(s, st, "storing a ForcedClose");
}

int wstore_forced_close_has(struct wstore *s, const uint8_t channel_id[MP_ID_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT 1 FROM forced_closes WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(s, st, wsql_bind_blob(st, 1, channel_id, MP_ID_LEN),
				"binding a channel id");
	if (!st)
		return -1;
	int rc = sqlite3_step(st);
	int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
	if (found < 0)
		wsql_log_error(s, "reading a ForcedClose");
	sqlite3_finalize(st);
	return found;
}
