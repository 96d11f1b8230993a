#include "custody_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "bind_store.h"
#include "journal_chain.h"
#include "log.h"
#include "segment_store.h"
#include "stmt.h"
#include "store.h"

static sqlite3_stmt *prep(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return NULL;
	}
	return st;
}

/* rcs is the OR of a statement's sqlite3_bind_* results: a failed bind would leave its
 * parameter NULL, storing or matching nothing without an error; the statement is finalised
 * (logged) and NULL returned instead. */
static sqlite3_stmt *bound(struct store *s, sqlite3_stmt *st, int rcs)
{
	if (!st || rcs == SQLITE_OK)
		return st;
	log_err("store %s: binding the parameters of %s: %s", store_path(s), sqlite3_sql(st),
		sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return NULL;
}

static bool run(struct store *s, sqlite3_stmt *st)
{
	if (!st)
		return false;
	bool ok = sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: %s: %s", store_path(s), sqlite3_sql(st),
			sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

/* Idempotent: a statement already recorded under (channel, hseq) is kept as it is. */
static bool put_custody(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			const struct custody_blob *b)
{
	sqlite3_stmt *st = prep(s, "INSERT OR IGNORE INTO custody (channel_id, hseq, from_mid, "
				   "stmt) VALUES (?, ?, ?, ?)");
	if (st)
		st = bound(s, st,
			   sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
			       sqlite3_bind_int64(st, 2, b->hseq) |
			       sqlite3_bind_blob(st, 3, b->mid, MP_ID_LEN, SQLITE_STATIC) |
			       sqlite3_bind_blob(st, 4, b->data, (int)b->len, SQLITE_STATIC));
	return run(s, st);
}

static bool set_state(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		      enum channel_state state)
{
	sqlite3_stmt *st = prep(s, "UPDATE channels SET state = ? WHERE channel_id = ?");
	if (st)
		st = bound(s, st,
			   sqlite3_bind_int(st, 1, state) |
			       sqlite3_bind_blob(st, 2, channel_id, MP_ID_LEN, SQLITE_STATIC));
	return run(s, st);
}

static bool put_peer_cert(struct store *s, const struct custody_blob *b)
{
	sqlite3_stmt *st =
	    prep(s, "INSERT OR REPLACE INTO peer_certs (merchant_id, cert) VALUES (?, ?)");
	if (st)
		st = bound(s, st,
			   sqlite3_bind_blob(st, 1, b->mid, MP_ID_LEN, SQLITE_STATIC) |
			       sqlite3_bind_blob(st, 2, b->data, (int)b->len, SQLITE_STATIC));
	return run(s, st);
}

bool custody_store_handoff(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			   const struct custody_write *cw)
{
	sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO epochs (channel_id, hseq, end_index, "
				   "w_end, redeemed_end, seg_seq) VALUES (?, ?, ?, ?, ?, ?)");
	if (st)
		st = bound(s, st,
			   sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
			       sqlite3_bind_int64(st, 2, cw->closed_hseq) |
			       sqlite3_bind_int64(st, 3, cw->end_index) |
			       sqlite3_bind_blob(st, 4, cw->w_end, MP_HASH_LEN, SQLITE_STATIC) |
			       sqlite3_bind_int64(st, 5, cw->redeemed_end) |
			       sqlite3_bind_int64(st, 6, cw->end_seg));
	bool ok = run(s, st) && put_custody(s, channel_id, &cw->handoff) &&
		  set_state(s, channel_id, CHANNEL_HANDED_OFF);
	for (size_t i = 0; ok && i < cw->n_certs; i++) /* the requester's MerchantCert */
		ok = put_peer_cert(s, &cw->certs[i]);
	return ok;
}

/* The channel row of the new epoch: at the Handoff's point, no credit, nothing to redeem below
 * at_index. */
static bool put_channel(struct store *s, const struct custody_write *cw,
			const struct channel_row *r)
{
	if (!cw->insert && !journal_heads_fold(s, r->id)) /* its last Pay first (journal_chain.h) */
		return false;
	sqlite3_stmt *st =
	    cw->insert
		? prep(s,
		       "INSERT INTO channels (channel_id, cert, state, hseq, seg_seq, seg_start, "
		       "last, w_last, credit, last_order_ref, redeem_until, redeemed_end) "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, x'', ?9, ?7)")
		: prep(s,
		       "UPDATE channels SET state = ?3, hseq = ?4, seg_seq = ?5, seg_start = ?6, "
		       "last = ?7, w_last = ?8, credit = 0, last_order_ref = x'', last_code = 0, "
		       "last_price = 0, redeemed_end = ?7 WHERE channel_id = ?1");
	if (!st)
		return false;
	int rcs = sqlite3_bind_blob(st, 1, r->id, MP_ID_LEN, SQLITE_STATIC);
	if (cw->insert)
		rcs |= sqlite3_bind_blob(st, 2, r->cert, (int)r->cert_len, SQLITE_STATIC) |
		       sqlite3_bind_int64(st, 9, (sqlite3_int64)r->redeem_until);
	rcs |= sqlite3_bind_int(st, 3, CHANNEL_HELD) | sqlite3_bind_int64(st, 4, cw->hseq) |
	       sqlite3_bind_int64(st, 5, r->seg_seq) | sqlite3_bind_int64(st, 6, r->seg_start) |
	       sqlite3_bind_int64(st, 7, cw->at_index) |
	       sqlite3_bind_blob(st, 8, cw->w_at, MP_HASH_LEN, SQLITE_STATIC);
	return run(s, bound(s, st, rcs));
}

bool custody_store_takeover(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			    const struct custody_write *cw, const struct channel_row *row)
{
	bool ok = true;
	for (size_t i = 0; ok && i < cw->n_chain; i++)
		ok = put_custody(s, channel_id, &cw->chain[i]);
	for (size_t i = 0; ok && i < cw->n_certs; i++)
		ok = put_peer_cert(s, &cw->certs[i]);
	for (size_t i = 0; ok && i < cw->n_segs; i++)
		ok = segment_store_put(s, channel_id, &cw->segs[i]);
	return ok && put_channel(s, cw, row) &&
	       (!row->bind || bind_store_put(s, channel_id, row->bind, row->bind_len));
}

static bool blob_from(sqlite3_stmt *st, int col, struct custody_blob *b)
{
	b->len = (size_t)sqlite3_column_bytes(st, col);
	b->data = malloc(b->len ? b->len : 1);
	if (!b->data)
		return false;
	if (b->len)
		memcpy(b->data, sqlite3_column_blob(st, col), b->len);
	return true;
}

bool custody_store_chain(struct store *s, const uint8_t channel_id[MP_ID_LEN],
			 struct custody_blob **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = prep(s, "SELECT hseq, from_mid, stmt FROM custody WHERE channel_id = ? "
				   "ORDER BY hseq");
	st = bound(s, st, st ? sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) : 0);
	if (!st)
		return false;
	bool ok = true;
	int rc;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct custody_blob *grown = realloc(*out, (*n + 1) * sizeof(**out));
		ok = grown != NULL;
		if (!ok)
			break;
		*out = grown;
		struct custody_blob *b = &grown[*n];
		memset(b, 0, sizeof(*b));
		b->hseq = (uint32_t)sqlite3_column_int64(st, 0);
		ok = sqlite3_column_bytes(st, 1) == MP_ID_LEN && blob_from(st, 2, b);
		if (ok)
			memcpy(b->mid, sqlite3_column_blob(st, 1), MP_ID_LEN);
		(*n)++;
	}
	sqlite3_finalize(st);
	if (!ok) {
		log_err("store %s: cannot read a custody chain", store_path(s));
		custody_blobs_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return ok;
}

bool custody_store_get(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq,
		       struct custody_blob *out)
{
	sqlite3_stmt *st =
	    prep(s, "SELECT from_mid, stmt FROM custody WHERE channel_id = ? AND hseq = ?");
	st = bound(s, st,
		   st ? sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
			    sqlite3_bind_int64(st, 2, hseq)
		      : 0);
	if (!st)
		return false;
	memset(out, 0, sizeof(*out));
	bool found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == MP_ID_LEN &&
		     blob_from(st, 1, out);
	if (found) {
		out->hseq = hseq;
		memcpy(out->mid, sqlite3_column_blob(st, 0), MP_ID_LEN);
	}
	sqlite3_finalize(st);
	return found;
}

Micropay__V1__Handoff *
custody_store_handoff_body(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq)
{
	struct custody_blob b;
	if (!custody_store_get(s, channel_id, hseq, &b))
		return NULL;
	MpSigned *st = mp_stmt_decode(b.data, b.len);
	Micropay__V1__Handoff *h =
	    st ? (Micropay__V1__Handoff *)mp_strict_unpack(&micropay__v1__handoff__descriptor,
							   st->body.data, st->body.len)
	       : NULL;
	mp_stmt_free(st);
	free(b.data);
	return h;
}

uint32_t custody_store_max_hseq(struct store *s, const uint8_t channel_id[MP_ID_LEN])
{
	sqlite3_stmt *st =
	    prep(s, "SELECT coalesce(max(hseq), 0) FROM custody WHERE channel_id = ?");
	uint32_t h = 0;
	st = bound(s, st, st ? sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) : 0);
	if (!st)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		h = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return h;
}

bool custody_store_peer_cert(struct store *s, const uint8_t mid[MP_ID_LEN], uint8_t **cert,
			     size_t *len)
{
	sqlite3_stmt *st = prep(s, "SELECT cert FROM peer_certs WHERE merchant_id = ?");
	st = bound(s, st, st ? sqlite3_bind_blob(st, 1, mid, MP_ID_LEN, SQLITE_STATIC) : 0);
	if (!st)
		return false;
	struct custody_blob b = {0};
	bool found = sqlite3_step(st) == SQLITE_ROW && blob_from(st, 0, &b);
	sqlite3_finalize(st);
	*cert = b.data;
	*len = b.len;
	return found;
}

int custody_store_unredeemed_epochs(struct store *s, size_t max, struct held_epoch **out)
{
	*out = NULL;
	sqlite3_stmt *st = prep(s, "SELECT channel_id, hseq, end_index, w_end, seg_seq FROM epochs "
				   "WHERE end_index > redeemed_end AND NOT EXISTS (SELECT 1 FROM "
				   "too_late_epochs t WHERE t.channel_id = epochs.channel_id AND "
				   "t.hseq = epochs.hseq) LIMIT ?");
	st = bound(s, st, st ? sqlite3_bind_int64(st, 1, (sqlite3_int64)max) : 0);
	if (!st)
		return -1;
	int n = 0;
	bool ok = true;
	while (ok && sqlite3_step(st) == SQLITE_ROW) {
		struct held_epoch *grown = realloc(*out, (size_t)(n + 1) * sizeof(**out));
		ok = grown && sqlite3_column_bytes(st, 0) == MP_ID_LEN &&
		     sqlite3_column_bytes(st, 3) == MP_HASH_LEN;
		if (grown)
			*out = grown;
		if (!ok)
			break;
		struct held_epoch *e = &grown[n++];
		memcpy(e->channel_id, sqlite3_column_blob(st, 0), MP_ID_LEN);
		e->hseq = (uint32_t)sqlite3_column_int64(st, 1);
		e->end_index = (uint32_t)sqlite3_column_int64(st, 2);
		memcpy(e->w_end, sqlite3_column_blob(st, 3), MP_HASH_LEN);
		e->seg_seq = (uint32_t)sqlite3_column_int64(st, 4);
	}
	sqlite3_finalize(st);
	if (!ok) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return n;
}

void custody_blobs_free(struct custody_blob *b, size_t n)
{
	for (size_t i = 0; b && i < n; i++)
		free(b[i].data);
	free(b);
}

void custody_write_free(struct custody_write *cw)
{
	if (!cw)
		return;
	free(cw->handoff.data);
	segment_rows_free(cw->segs, cw->n_segs);
	custody_blobs_free(cw->chain, cw->n_chain);
	custody_blobs_free(cw->certs, cw->n_certs);
	free(cw);
}
