#include "receipt_store.h"

#include <sqlite3.h>
#include <string.h>

#include "journal_chain.h"
#include "log.h"

static bool take_row(sqlite3_stmt *st, struct journalled_pay *out)
{
	int w_len = sqlite3_column_bytes(st, 0);
	int ref_len = sqlite3_column_bytes(st, 1);
	if (w_len != MP_HASH_LEN || ref_len < 1 || ref_len > (int)sizeof(out->order_ref))
		return false;
	memcpy(out->w, sqlite3_column_blob(st, 0), MP_HASH_LEN);
	memcpy(out->order_ref, sqlite3_column_blob(st, 1), (size_t)ref_len);
	out->order_ref_len = (uint8_t)ref_len;
	out->at = (uint64_t)sqlite3_column_int64(st, 2);
	return true;
}

bool receipt_store_find(struct store *s, const uint8_t channel_id[MP_ID_LEN], int64_t head,
			uint32_t seg_seq, uint32_t j, struct journalled_pay *out)
{
	/* The first row: a Pay is journalled once (a retry is answered, never journalled). */
	const char *sql = JOURNAL_WALK "SELECT p.w, p.order_ref, p.at FROM walk JOIN pay_journal p "
				       "ON p.seq = walk.seq WHERE p.j = ?2 AND p.seg_seq = ?3 "
				       "ORDER BY p.seq LIMIT 1";
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		     sqlite3_bind_int64(st, 2, j) | sqlite3_bind_int64(st, 3, seg_seq) |
		     journal_bind_head(st, head);
	int step = rc == SQLITE_OK ? sqlite3_step(st) : rc;
	bool found = step == SQLITE_ROW && take_row(st, out);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(channel_id, MP_ID_LEN, hex);
		log_err("store %s: looking up the payment of channel %s at %u for a receipt: %s",
			store_path(s), hex, j, sqlite3_errmsg(store_db(s)));
	}
	sqlite3_finalize(st);
	return found;
}
