#include "store_close.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "stmt.h"
#include "store_internal.h"

bool wstore_close_migrate(struct wstore *s)
{
	return wsql_exec(s, "CREATE TABLE IF NOT EXISTS closes ("
			    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
			    "  request BLOB NOT NULL,"
			    "  resp BLOB,"
			    "  created_at INTEGER NOT NULL);");
}

bool wstore_close_begin(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT INTO closes (channel_id, request, created_at) "
					"VALUES (?1, ?2, ?3)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, id, MP_ID_LEN) | wsql_bind_stmt(st, 2, request) |
			sqlite3_bind_int64(st, 3, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding a CloseRequest");
	return wsql_run(s, st, "storing a CloseRequest");
}

bool wstore_close_done(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *resp,
		       size_t resp_len)
{
	sqlite3_stmt *st = wsql_prep(s, "UPDATE closes SET resp = ?2 WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    wsql_bind_blob(st, 2, resp, resp_len),
				"binding a Close");
	return wsql_run(s, st, "storing a Close");
}

bool wstore_close_abandon(struct wstore *s, const uint8_t id[MP_ID_LEN])
{
	sqlite3_stmt *st =
	    wsql_prep(s, "DELETE FROM closes WHERE channel_id = ?1 AND resp IS NULL");
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	return wsql_run(s, st, "forgetting a refused CloseRequest");
}

static bool column_copy(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return true;
	*len = (size_t)sqlite3_column_bytes(st, col);
	if (!(*out = malloc(*len ? *len : 1)))
		return false;
	if (*len)
		memcpy(*out, sqlite3_column_blob(st, col), *len);
	return true;
}

int wstore_close_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_close *c)
{
	memset(c, 0, sizeof(*c));
	sqlite3_stmt *st = wsql_prep(s, "SELECT request, resp FROM closes WHERE channel_id = ?1");
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE) {
		found = 0;
	} else if (rc == SQLITE_ROW) {
		c->request = wsql_column_stmt(st, 0);
		found = c->request && column_copy(st, 1, &c->resp, &c->resp_len) ? 1 : -1;
	}
	if (found < 0) {
		wsql_log_error(s, "reading a close");
		wstore_close_clear(c);
	}
	sqlite3_finalize(st);
	return found;
}

void wstore_close_clear(struct wstore_close *c)
{
	mp_stmt_free(c->request);
	free(c->resp);
	memset(c, 0, sizeof(*c));
}
