#include "purchase_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

bool purchase_store_migrate(struct store *s)
{
	return store_exec(
	    s, "CREATE TABLE IF NOT EXISTS purchases ("
	       " purchase_id BLOB PRIMARY KEY CHECK (length(purchase_id) = 16),"
	       " channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
	       " seg_seq INTEGER NOT NULL, item TEXT NOT NULL, path TEXT NOT NULL, size INTEGER "
	       "NOT NULL,"
	       " chunk_size INTEGER NOT NULL, chunks INTEGER NOT NULL, price INTEGER NOT NULL,"
	       " metered INTEGER NOT NULL, total INTEGER NOT NULL, paid INTEGER NOT NULL,"
	       " created_at INTEGER NOT NULL);"
	       "CREATE INDEX IF NOT EXISTS purchases_channel ON purchases (channel_id);");
}

static bool fail(struct store *s, const char *what, sqlite3_stmt *st)
{
	log_err("store %s: %s: %s", store_path(s), what, sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return false;
}

bool purchase_store_put(struct store *s, const struct purchase *p, int64_t now)
{
	const char *sql = "INSERT INTO purchases (purchase_id, channel_id, item, path, size, "
			  "chunk_size, chunks, price, metered, total, paid, created_at, seg_seq) "
			  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	const struct catalogue_item *it = &p->item;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_blob(st, 1, p->id, PURCHASE_ID_LEN, SQLITE_STATIC) |
	     sqlite3_bind_blob(st, 2, p->channel_id, MP_ID_LEN, SQLITE_STATIC) |
	     sqlite3_bind_text(st, 3, it->id, -1, SQLITE_STATIC) |
	     sqlite3_bind_text(st, 4, it->path, -1, SQLITE_STATIC) |
	     sqlite3_bind_int64(st, 5, (sqlite3_int64)it->size) |
	     sqlite3_bind_int64(st, 6, it->chunk_size) |
	     sqlite3_bind_int64(st, 7, (sqlite3_int64)it->chunks) |
	     sqlite3_bind_int64(st, 8, (sqlite3_int64)it->price) |
	     sqlite3_bind_int(st, 9, it->metered) |
	     sqlite3_bind_int64(st, 10, (sqlite3_int64)it->total) |
	     sqlite3_bind_int64(st, 11, p->paid) | sqlite3_bind_int64(st, 12, now) |
	     sqlite3_bind_int64(st, 13, p->seg_seq)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		return fail(s, "recording a purchase", st);
	sqlite3_finalize(st);
	return true;
}

bool purchase_store_paid(struct store *s, const uint8_t id[PURCHASE_ID_LEN], uint32_t paid)
{
	const char *sql = "UPDATE purchases SET paid = ? WHERE purchase_id = ?";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(st, 1, paid) |
	     sqlite3_bind_blob(st, 2, id, PURCHASE_ID_LEN, SQLITE_STATIC)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(store_db(s)) != 1)
		return fail(s, "recording the chunks a Pay paid for a purchase", st);
	sqlite3_finalize(st);
	return true;
}

static struct purchase *from_row(sqlite3_stmt *st)
{
	const unsigned char *item = sqlite3_column_text(st, 2), *path = sqlite3_column_text(st, 3);
	if (sqlite3_column_bytes(st, 0) != PURCHASE_ID_LEN ||
	    sqlite3_column_bytes(st, 1) != MP_ID_LEN || !item || !path ||
	    strlen((const char *)item) > CATALOGUE_ID_MAX)
		return NULL;
	struct purchase *p = calloc(1, sizeof(*p));
	if (!p || !(p->item.path = strdup((const char *)path))) {
		free(p);
		return NULL;
	}
	memcpy(p->id, sqlite3_column_blob(st, 0), PURCHASE_ID_LEN);
	memcpy(p->channel_id, sqlite3_column_blob(st, 1), MP_ID_LEN);
	snprintf(p->item.id, sizeof(p->item.id), "%s", (const char *)item);
	p->item.size = (uint64_t)sqlite3_column_int64(st, 4);
	p->item.chunk_size = (uint32_t)sqlite3_column_int64(st, 5);
	p->item.chunks = (uint64_t)sqlite3_column_int64(st, 6);
	p->item.price = (uint64_t)sqlite3_column_int64(st, 7);
	p->item.metered = sqlite3_column_int(st, 8) != 0;
	p->item.total = (uint64_t)sqlite3_column_int64(st, 9);
	p->paid = p->paid_durable = p->delivered = (uint32_t)sqlite3_column_int64(st, 10);
	p->seg_seq = (uint32_t)sqlite3_column_int64(st, 11);
	p->recorded = true;
	if (!p->item.chunks || p->item.chunks > UINT32_MAX || !p->item.price ||
	    p->paid > p->item.chunks) {
		purchase_free(p);
		return NULL;
	}
	return p;
}

bool purchase_store_load(struct store *s, purchase_each_fn each, void *arg)
{
	const char *sql =
	    "SELECT purchase_id, channel_id, item, path, size, chunk_size, chunks, "
	    "price, metered, total, paid, seg_seq FROM purchases p WHERE rowid = (SELECT "
	    "max(rowid) FROM purchases q WHERE q.channel_id = p.channel_id) "
	    "ORDER BY rowid";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return fail(s, "loading purchases", st);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct purchase *p = from_row(st);
		if (!p) {
			log_err("store %s: an unreadable purchase row; refusing to start",
				store_path(s));
			sqlite3_finalize(st);
			return false;
		}
		each(arg, p);
	}
	if (rc != SQLITE_DONE)
		return fail(s, "loading purchases", st);
	sqlite3_finalize(st);
	return true;
}

bool purchase_store_list(struct store *s, int64_t before, unsigned limit, purchase_list_fn each,
			 void *arg)
{
	const char *sql = "SELECT purchase_id, channel_id, item, path, size, chunk_size, chunks, "
			  "price, metered, total, paid, seg_seq, rowid, created_at FROM purchases "
			  "WHERE rowid < ? ORDER BY rowid DESC LIMIT ?";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX) |
	     sqlite3_bind_int64(st, 2, limit)) != SQLITE_OK)
		return fail(s, "listing purchases", st);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct purchase *p = from_row(st);
		if (!p)
			continue; /* unreadable: the start refuses such a store */
		struct purchase_listed row = {.seq = sqlite3_column_int64(st, 12),
					      .p = *p,
					      .created_at = sqlite3_column_int64(st, 13)};
		each(arg, &row);
		purchase_free(p);
	}
	if (rc != SQLITE_DONE)
		return fail(s, "listing purchases", st);
	sqlite3_finalize(st);
	return true;
}
