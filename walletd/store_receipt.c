#include "store_receipt.h"

#include "clock.h"
#include "stmt.h"
#include "store_internal.h"

bool wstore_receipt_migrate(struct wstore *s)
{
	return wsql_exec(s, "CREATE TABLE IF NOT EXISTS receipts ("
			    "  channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
			    "  seg_seq INTEGER NOT NULL, idx INTEGER NOT NULL,"
			    "  merchant_id BLOB NOT NULL CHECK (length(merchant_id) = 16),"
			    "  receipt BLOB NOT NULL, merchant_cert BLOB NOT NULL,"
			    "  stored_at INTEGER NOT NULL,"
			    "  PRIMARY KEY (channel_id, seg_seq, idx, merchant_id));");
}

bool wstore_receipt_put(struct wstore *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			uint32_t index, const uint8_t merchant_id[MP_ID_LEN],
			const MpSigned *receipt, const MpSigned *merchant_cert)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "INSERT OR REPLACE INTO receipts (channel_id, seg_seq, idx, merchant_id, receipt, "
	       "merchant_cert, stored_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, channel_id, MP_ID_LEN) |
			sqlite3_bind_int64(st, 2, seg_seq) | sqlite3_bind_int64(st, 3, index) |
			wsql_bind_blob(st, 4, merchant_id, MP_ID_LEN) |
			wsql_bind_stmt(st, 5, receipt) | wsql_bind_stmt(st, 6, merchant_cert) |
			sqlite3_bind_int64(st, 7, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding a receipt");
	return wsql_run(s, st, "storing a receipt");
}

bool wstore_receipt_each(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			 wstore_receipt_fn fn, void *arg)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT receipt, merchant_cert FROM receipts WHERE "
					"channel_id = ?1 ORDER BY seg_seq, idx, merchant_id");
	if (st)
		st = wsql_bound(s, st, wsql_bind_blob(st, 1, channel_id, MP_ID_LEN),
				"binding a channel id");
	if (!st)
		return false;
	int rc;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		MpSigned *receipt = wsql_column_stmt(st, 0), *cert = wsql_column_stmt(st, 1);
		ok = receipt && cert;
		if (ok)
			fn(arg, receipt, cert);
		mp_stmt_free(receipt);
		mp_stmt_free(cert);
	}
	if (!ok || rc != SQLITE_DONE) {
		wsql_log_error(s, "reading receipts");
		ok = false;
	}
	sqlite3_finalize(st);
	return ok;
}
