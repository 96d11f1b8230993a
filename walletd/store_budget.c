#include "store_budget.h"

#include "clock.h"
#include "sig.h"
#include "store_internal.h"

bool wstore_budget_migrate(struct wstore *s)
{
	return wsql_exec(s, "CREATE TABLE IF NOT EXISTS auto_issues ("
			    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
			    "  merchant_id BLOB NOT NULL CHECK (length(merchant_id) = 16),"
			    "  amount INTEGER NOT NULL CHECK (amount >= 1),"
			    "  item TEXT NOT NULL,"
			    "  created_at INTEGER NOT NULL);");
}

bool wstore_budget_add(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
		       const uint8_t merchant_id[MP_ID_LEN], uint64_t amount, const char *item)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT INTO auto_issues (channel_id, merchant_id, amount, "
					"item, created_at) VALUES (?1, ?2, ?3, ?4, ?5)");
	if (st)
		st =
		    wsql_bound(s, st,
			       wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
				   wsql_bind_blob(st, 2, merchant_id, MP_ID_LEN) |
				   sqlite3_bind_int64(st, 3, (sqlite3_int64)amount) |
				   sqlite3_bind_text(st, 4, item, -1, SQLITE_TRANSIENT) |
				   sqlite3_bind_int64(st, 5, (sqlite3_int64)mp_clock_now(s->clock)),
			       "binding an auto-issued channel");
	return wsql_run(s, st, "storing an auto-issued channel");
}

bool wstore_budget_committed(struct wstore *s, uint64_t *committed)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "SELECT COALESCE(SUM(a.amount), 0) FROM auto_issues a LEFT JOIN channels c ON "
	       "c.channel_id = a.channel_id WHERE c.state IS NULL OR c.state <> 'FAILED'");
	bool ok = st && sqlite3_step(st) == SQLITE_ROW;
	if (ok)
		*committed = (uint64_t)sqlite3_column_int64(st, 0);
	else if (st)
		wsql_log_error(s, "summing the auto-issued channels");
	sqlite3_finalize(st);
	return ok;
}

int wstore_budget_has(struct wstore *s, const uint8_t channel_id[MP_ID_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT 1 FROM auto_issues WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(s, st, wsql_bind_blob(st, 1, channel_id, MP_ID_LEN),
				"binding a channel id");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
	if (found < 0)
		wsql_log_error(s, "reading auto_issues");
	sqlite3_finalize(st);
	return found;
}

bool wstore_budget_each(struct wstore *s, void (*fn)(void *arg, const struct wbudget_row *r),
			void *arg)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT a.channel_id, a.merchant_id, a.amount, a.item, "
					"a.created_at, c.state FROM auto_issues a LEFT JOIN "
					"channels c ON c.channel_id = a.channel_id ORDER BY "
					"a.created_at, a.rowid");
	if (!st)
		return false;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wbudget_row r = {
		    .amount = (uint64_t)sqlite3_column_int64(st, 2),
		    .item = (const char *)sqlite3_column_text(st, 3),
		    .created_at = (uint64_t)sqlite3_column_int64(st, 4),
		    .state = (const char *)sqlite3_column_text(st, 5),
		};
		if (!wsql_column_bytes(st, 0, r.channel_id, MP_ID_LEN) ||
		    !wsql_column_bytes(st, 1, r.merchant_id, MP_ID_LEN) || !r.item)
			continue;
		fn(arg, &r);
	}
	bool ok = rc == SQLITE_DONE;
	if (!ok)
		wsql_log_error(s, "listing auto_issues");
	sqlite3_finalize(st);
	return ok;
}
