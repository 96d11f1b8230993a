/* Per-host spending at HTTP 402 gateways (store_http.h). */
#include "store_http.h"

#include "clock.h"
#include "sig.h"
#include "util.h"
#include "store.h"
#include "store_internal.h"

bool wstore_http_migrate(struct wstore *s)
{
	return wsql_exec(s, "CREATE TABLE IF NOT EXISTS http_spend ("
			    "  host TEXT PRIMARY KEY,"
			    "  spent INTEGER NOT NULL CHECK (spent >= 0),"
			    "  requests INTEGER NOT NULL CHECK (requests >= 0),"
			    "  last_at INTEGER NOT NULL);");
}

bool wstore_http_add(struct wstore *s, const char *host, uint64_t price)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "INSERT INTO http_spend (host, spent, requests, last_at) VALUES (?1, ?2, 1, ?3) "
	       "ON CONFLICT (host) DO UPDATE SET spent = spent + excluded.spent, "
	       "requests = requests + 1, last_at = excluded.last_at");
	if (st)
		st =
		    wsql_bound(s, st,
			       sqlite3_bind_text(st, 1, host, -1, SQLITE_TRANSIENT) |
				   sqlite3_bind_int64(st, 2, (sqlite3_int64)price) |
				   sqlite3_bind_int64(st, 3, (sqlite3_int64)mp_clock_now(s->clock)),
			       "binding an HTTP payment");
	return wsql_run(s, st, "storing an HTTP payment's price");
}

bool wstore_http_charged(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint64_t credit,
			 const char *host, uint64_t price)
{
	if (!wstore_begin(s))
		return false;
	if (!wstore_inflight_clear(s, id, j, j, credit) || !wstore_http_add(s, host, price)) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

bool wstore_http_spent(struct wstore *s, const char *host, uint64_t *spent)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT spent FROM http_spend WHERE host = ?1");
	if (st)
		st = wsql_bound(s, st, sqlite3_bind_text(st, 1, host, -1, SQLITE_TRANSIENT),
				"binding a host");
	if (!st)
		return false;
	int rc = sqlite3_step(st);
	*spent = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		wsql_log_error(s, "reading http_spend");
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool wstore_http_each(struct wstore *s, void (*fn)(void *arg, const struct whttp_row *r), void *arg)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "SELECT host, spent, requests, last_at FROM http_spend ORDER BY spent DESC, host");
	if (!st)
		return false;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct whttp_row r = {
		    (const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
		    (uint64_t)sqlite3_column_int64(st, 2), (uint64_t)sqlite3_column_int64(st, 3)};
		fn(arg, &r);
	}
	if (rc != SQLITE_DONE)
		wsql_log_error(s, "reading http_spend");
	sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}
