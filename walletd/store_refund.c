/* The store's part for refunds (docs/settlement.md "The wallet"): per channel the exact signed
 * RefundRequest, resent verbatim until the broker answers it with the result, and that result.
 * The table is created if absent (it only adds to earlier schemas). Every write is durable when
 * the call returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"
#include "store_internal.h"

static const char refunds_table[] = "CREATE TABLE IF NOT EXISTS refunds ("
				    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
				    "  request BLOB NOT NULL," /* the exact signed RefundRequest */
				    "  refunded INTEGER NOT NULL DEFAULT 0,"
				    "  amount INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),"
				    "  payout BLOB CHECK (payout IS NULL OR length(payout) = 16),"
				    "  refunded_at INTEGER NOT NULL DEFAULT 0,"
				    "  not_before INTEGER NOT NULL DEFAULT 0,"
				    "  status TEXT"
				    ") WITHOUT ROWID;";

bool wstore_migrate_refund(struct wstore *s)
{
	return wsql_exec(s, refunds_table);
}

bool wstore_refund_insert(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "INSERT INTO refunds (channel_id, request) VALUES (?1, ?2)");
	if (st)
		st = wsql_bound(
		    s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN) | wsql_bind_stmt(st, 2, request),
		    "binding a refund request");
	return wsql_run(s, st, "storing a refund request");
}

bool wstore_refund_replace(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request)
{
	sqlite3_stmt *st = wsql_prep(s, "UPDATE refunds SET request = ?2, status = NULL, "
					"not_before = 0 WHERE channel_id = ?1 AND refunded = 0");
	if (st)
		st = wsql_bound(
		    s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN) | wsql_bind_stmt(st, 2, request),
		    "binding a refund request");
	return wsql_run(s, st, "replacing a refund request");
}

int wstore_refund_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_refund *r)
{
	memset(r, 0, sizeof(*r));
	sqlite3_stmt *st = wsql_prep(s, "SELECT request, refunded, amount, payout, refunded_at, "
					"not_before, status FROM refunds WHERE channel_id = ?1");
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE) {
		found = 0;
	} else if (rc == SQLITE_ROW) {
		r->request = wsql_column_stmt(st, 0);
		r->refunded = sqlite3_column_int(st, 1) != 0;
		r->amount = (uint64_t)sqlite3_column_int64(st, 2);
		r->has_payout = wsql_column_bytes(st, 3, r->payout, MP_ID_LEN);
		r->refunded_at = (uint64_t)sqlite3_column_int64(st, 4);
		r->not_before = (uint64_t)sqlite3_column_int64(st, 5);
		const char *status = (const char *)sqlite3_column_text(st, 6);
		snprintf(r->status, sizeof(r->status), "%s", status ? status : "");
		found = r->request ? 1 : -1;
	}
	if (found < 0)
		wsql_log_error(s, "reading a refund");
	sqlite3_finalize(st);
	return found;
}

void wstore_refund_clear(struct wstore_refund *r)
{
	mp_stmt_free(r->request);
	r->request = NULL;
}

bool wstore_refund_answer(struct wstore *s, const uint8_t id[MP_ID_LEN],
			  const struct wstore_refund *r)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE refunds SET refunded = max(refunded, ?2), amount = ?3, "
			 "payout = ?4, refunded_at = ?5, not_before = ?6, status = ?7 "
			 "WHERE channel_id = ?1 AND refunded = 0");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int(st, 2, r->refunded) |
				    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->amount) |
				    (r->has_payout ? wsql_bind_blob(st, 4, r->payout, MP_ID_LEN)
						   : sqlite3_bind_null(st, 4)) |
				    sqlite3_bind_int64(st, 5, (sqlite3_int64)r->refunded_at) |
				    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->not_before) |
				    sqlite3_bind_text(st, 7, r->status, -1, SQLITE_TRANSIENT),
				"binding a refund's answer");
	return wsql_run(s, st, "storing a refund's answer");
}
