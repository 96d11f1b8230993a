/* The offers table (offer_store.h). */
#include "offer_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "goods_read.h"
#include "log.h"

bool offer_store_migrate(struct store *s)
{
	if (!store_exec(
		s, "CREATE TABLE IF NOT EXISTS offers ("
		   " order_ref BLOB PRIMARY KEY CHECK (length(order_ref) = 16),"
		   " channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
		   " seg_seq INTEGER NOT NULL, item TEXT NOT NULL, path TEXT NOT NULL,"
		   " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, chunk_size INTEGER NOT NULL,"
		   " chunks INTEGER NOT NULL, key BLOB NOT NULL CHECK (length(key) = 32),"
		   " nonce_prefix BLOB NOT NULL CHECK (length(nonce_prefix) = 8),"
		   " after_index INTEGER NOT NULL, pay_index INTEGER NOT NULL,"
		   " price INTEGER NOT NULL, deadline INTEGER NOT NULL, offer BLOB NOT NULL,"
		   " paid INTEGER NOT NULL, created_at INTEGER NOT NULL);"
		   "CREATE INDEX IF NOT EXISTS offers_channel ON offers (channel_id);"))
		return false;
	if (!store_has_column(s, "SELECT cancel FROM offers LIMIT 0")) {
		log_info("store %s: adding the buyer's OfferCancel to offers", store_path(s));
		if (!store_exec(s, "ALTER TABLE offers ADD COLUMN cancel BLOB;"))
			return false;
	}
	if (store_has_column(s, "SELECT ident FROM offers LIMIT 0"))
		return true;
	log_info("store %s: adding the goods file's identity to offers (older offers keep "
		 "size and mtime only)",
		 store_path(s));
	return store_exec(s, "ALTER TABLE offers ADD COLUMN ident INTEGER;");
}

#define COLUMNS                                                                                    \
	"order_ref, channel_id, seg_seq, item, path, size, mtime_ns, chunk_size, chunks, key, "    \
	"nonce_prefix, after_index, pay_index, price, deadline, offer, paid, cancel, ident"

static bool fail(struct store *s, const char *what, sqlite3_stmt *st)
{
	log_err("store %s: %s: %s", store_path(s), what, sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return false;
}

bool offer_store_put(struct store *s, const struct offer *o, int64_t now)
{
	const char *sql = "INSERT INTO offers (" COLUMNS ", created_at) VALUES (?, ?, ?, ?, ?, ?, "
			  "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	const struct catalogue_item *it = &o->item;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_blob(st, 1, o->order_ref, OFFER_REF_LEN, SQLITE_STATIC) |
	     sqlite3_bind_blob(st, 2, o->channel_id, MP_ID_LEN, SQLITE_STATIC) |
	     sqlite3_bind_int64(st, 3, o->seg_seq) |
	     sqlite3_bind_text(st, 4, it->id, -1, SQLITE_STATIC) |
	     sqlite3_bind_text(st, 5, it->path, -1, SQLITE_STATIC) |
	     sqlite3_bind_int64(st, 6, (sqlite3_int64)it->size) |
	     sqlite3_bind_int64(st, 7, o->mtime_ns) | sqlite3_bind_int64(st, 8, it->chunk_size) |
	     sqlite3_bind_int64(st, 9, (sqlite3_int64)it->chunks) |
	     sqlite3_bind_blob(st, 10, o->key, MP_SEAL_KEY_LEN, SQLITE_STATIC) |
	     sqlite3_bind_blob(st, 11, o->prefix, MP_SEAL_PREFIX_LEN, SQLITE_STATIC) |
	     sqlite3_bind_int64(st, 12, o->after_index) | sqlite3_bind_int64(st, 13, o->pay_index) |
	     sqlite3_bind_int64(st, 14, (sqlite3_int64)o->price) |
	     sqlite3_bind_int64(st, 15, (sqlite3_int64)o->deadline) |
	     sqlite3_bind_blob(st, 16, o->signed_offer, (int)o->signed_len, SQLITE_STATIC) |
	     sqlite3_bind_int(st, 17, o->paid) |
	     sqlite3_bind_blob(st, 18, o->cancel, (int)o->cancel_len, SQLITE_STATIC) |
	     (o->ident == GOODS_ANY ? sqlite3_bind_null(st, 19)
				    : sqlite3_bind_int64(st, 19, o->ident)) |
	     sqlite3_bind_int64(st, 20, now)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		return fail(s, "recording an offer", st);
	sqlite3_finalize(st);
	return true;
}

bool offer_store_paid(struct store *s, const uint8_t ref[OFFER_REF_LEN], bool by_dispute)
{
	const char *sql = "UPDATE offers SET paid = ?2 WHERE order_ref = ?1";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_blob(st, 1, ref, OFFER_REF_LEN, SQLITE_STATIC) |
	     sqlite3_bind_int(st, 2, by_dispute ? 2 : 1)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(store_db(s)) != 1)
		return fail(s, "recording the Pay that paid an offer", st);
	sqlite3_finalize(st);
	return true;
}

bool offer_store_cancel(struct store *s, const uint8_t ref[OFFER_REF_LEN], const uint8_t *cancel,
			size_t len)
{
	const char *sql = "UPDATE offers SET cancel = ? WHERE order_ref = ? AND cancel IS NULL AND "
			  "paid = 0";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_blob(st, 1, cancel, (int)len, SQLITE_STATIC) |
	     sqlite3_bind_blob(st, 2, ref, OFFER_REF_LEN, SQLITE_STATIC)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		return fail(s, "recording an OfferCancel", st);
	sqlite3_finalize(st);
	return true;
}

/* The cancel column (17) into o; false when memory is short. */
static bool take_cancel(sqlite3_stmt *st, struct offer *o)
{
	int len = sqlite3_column_bytes(st, 17);
	if (len <= 0)
		return true;
	if (!(o->cancel = malloc((size_t)len)))
		return false;
	memcpy(o->cancel, sqlite3_column_blob(st, 17), (size_t)len);
	o->cancel_len = (size_t)len;
	o->cancel_durable = true;
	return true;
}

static bool blob_is(sqlite3_stmt *st, int col, void *out, int len)
{
	if (sqlite3_column_bytes(st, col) != len)
		return false;
	memcpy(out, sqlite3_column_blob(st, col), (size_t)len);
	return true;
}

static struct offer *from_row(sqlite3_stmt *st)
{
	const unsigned char *item = sqlite3_column_text(st, 3), *path = sqlite3_column_text(st, 4);
	int signed_len = sqlite3_column_bytes(st, 15);
	struct offer *o = calloc(1, sizeof(*o));
	if (!o || !item || !path || strlen((const char *)item) > CATALOGUE_ID_MAX ||
	    signed_len <= 0 || !(o->item.path = strdup((const char *)path)) ||
	    !(o->signed_offer = malloc((size_t)signed_len)) ||
	    !blob_is(st, 0, o->order_ref, OFFER_REF_LEN) ||
	    !blob_is(st, 1, o->channel_id, MP_ID_LEN) || !blob_is(st, 9, o->key, MP_SEAL_KEY_LEN) ||
	    !blob_is(st, 10, o->prefix, MP_SEAL_PREFIX_LEN) ||
	    !blob_is(st, 15, o->signed_offer, signed_len) || !take_cancel(st, o)) {
		offer_free(o);
		return NULL;
	}
	o->signed_len = (size_t)signed_len;
	snprintf(o->item.id, sizeof(o->item.id), "%s", (const char *)item);
	o->seg_seq = (uint32_t)sqlite3_column_int64(st, 2);
	o->item.size = (uint64_t)sqlite3_column_int64(st, 5);
	o->mtime_ns = sqlite3_column_int64(st, 6);
	o->ident =
	    sqlite3_column_type(st, 18) == SQLITE_NULL ? GOODS_ANY : sqlite3_column_int64(st, 18);
	o->item.chunk_size = (uint32_t)sqlite3_column_int64(st, 7);
	o->item.chunks = (uint64_t)sqlite3_column_int64(st, 8);
	o->after_index = (uint32_t)sqlite3_column_int64(st, 11);
	o->pay_index = (uint32_t)sqlite3_column_int64(st, 12);
	o->price = o->item.price = o->item.total = (uint64_t)sqlite3_column_int64(st, 13);
	o->deadline = (uint64_t)sqlite3_column_int64(st, 14);
	o->paid = o->paid_durable = sqlite3_column_int(st, 16) != 0;
	o->by_dispute = sqlite3_column_int(st, 16) == 2; /* offer_store_paid */
	o->item.key_release = o->recorded = true;
	if (!o->item.chunks || o->item.chunks > UINT32_MAX || !o->price ||
	    o->pay_index <= o->after_index) {
		offer_free(o);
		return NULL;
	}
	return o;
}

bool offer_store_load(struct store *s, offer_each_fn each, void *arg)
{
	const char *sql = "SELECT " COLUMNS " FROM offers p WHERE rowid = (SELECT max(rowid) FROM "
			  "offers q WHERE q.channel_id = p.channel_id) ORDER BY rowid";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return fail(s, "loading offers", st);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct offer *o = from_row(st);
		if (!o) {
			log_err("store %s: an unreadable offer row; refusing to start",
				store_path(s));
			sqlite3_finalize(st);
			return false;
		}
		each(arg, o);
	}
	if (rc != SQLITE_DONE)
		return fail(s, "loading offers", st);
	sqlite3_finalize(st);
	return true;
}

int offer_store_find(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		     const uint8_t ref[OFFER_REF_LEN], struct offer **out)
{
	const char *sql = "SELECT " COLUMNS " FROM offers WHERE order_ref = ? AND channel_id = ?";
	sqlite3_stmt *st = NULL;
	*out = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_blob(st, 1, ref, OFFER_REF_LEN, SQLITE_STATIC) |
	     sqlite3_bind_blob(st, 2, channel_id, MP_ID_LEN, SQLITE_STATIC)) != SQLITE_OK)
		return fail(s, "finding an offer", st), -1;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = from_row(st);
	else if (rc != SQLITE_DONE)
		return fail(s, "finding an offer", st), -1;
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW && !*out) {
		log_err("store %s: an unreadable offer row", store_path(s));
		return -1;
	}
	return rc == SQLITE_ROW ? 1 : 0;
}

bool offer_store_list(struct store *s, int64_t before, unsigned limit, offer_list_fn each,
		      void *arg)
{
	const char *sql = "SELECT " COLUMNS ", rowid, created_at FROM offers WHERE rowid < ? "
			  "ORDER BY rowid DESC LIMIT ?";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX) |
	     sqlite3_bind_int64(st, 2, limit)) != SQLITE_OK)
		return fail(s, "listing offers", st);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct offer *o = from_row(st);
		if (!o)
			continue; /* unreadable: the start refuses such a store */
		struct offer_listed row = {.seq = sqlite3_column_int64(st, 18),
					   .o = o,
					   .created_at = sqlite3_column_int64(st, 19)};
		each(arg, &row);
		offer_free(o);
	}
	if (rc != SQLITE_DONE)
		return fail(s, "listing offers", st);
	sqlite3_finalize(st);
	return true;
}
