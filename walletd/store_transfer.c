/* The store's part for customer-to-customer transfers (docs/transfer.md): the channel's current
 * segment (columns of channels), its Transfer/Cap pairs (segments), B's offers with their chain
 * secrets (offers; the chain's checkpoints are stored under the offer's chain_key), A's transfers
 * out (transfers_out: the offer, the exact signed Transfer, then the bundle) and B's segment
 * claims (segment_claims: the exact signed SegmentClaim and the broker's answer: waiting,
 * acknowledged, or refused for good).
 * Every write is durable when the call returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"
#include "store_internal.h"
#include "wallet.h"

/* Version 3. The channels table is rebuilt (SQLite cannot relax NOT NULL or a CHECK in place):
 * a channel received by transfer has no IssueRequest, and the states of a transfer out are
 * new. seg_len NULL and chain_key NULL mean segment 0: len n, chain stored under channel_id. */
static const char migrate_v3[] =
    "CREATE TABLE channels_v3 ("
    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
    "  issue_req_id BLOB UNIQUE CHECK (issue_req_id IS NULL OR length(issue_req_id) = 16),"
    "  chain_seed BLOB NOT NULL CHECK (length(chain_seed) = 32),"
    "  nonce BLOB NOT NULL CHECK (length(nonce) = 16),"
    "  owner_seed BLOB NOT NULL CHECK (length(owner_seed) = 32),"
    "  request BLOB,"
    "  cert BLOB,"
    "  holder0 BLOB NOT NULL CHECK (length(holder0) = 16),"
    "  n INTEGER NOT NULL CHECK (n >= 1),"
    "  unit_value INTEGER NOT NULL CHECK (unit_value >= 1),"
    "  currency TEXT NOT NULL,"
    "  days INTEGER NOT NULL,"
    "  checkpoint_interval INTEGER NOT NULL CHECK (checkpoint_interval >= 1),"
    "  state TEXT NOT NULL CHECK (state IN ('ISSUING', 'ACTIVE', 'FAILED', 'TRANSFERRING',"
    "    'TRANSFERRED_OUT')),"
    "  last INTEGER NOT NULL DEFAULT 0 CHECK (last >= 0 AND last <= n),"
    "  sent INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0 AND sent <= n),"
    "  credit INTEGER NOT NULL DEFAULT 0 CHECK (credit >= 0),"
    "  issued_at INTEGER NOT NULL DEFAULT 0,"
    "  pay_until INTEGER NOT NULL DEFAULT 0,"
    "  redeem_until INTEGER NOT NULL DEFAULT 0,"
    "  detail TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  holder BLOB CHECK (holder IS NULL OR length(holder) = 16),"
    "  epoch INTEGER NOT NULL DEFAULT 0,"
    "  holder_cert BLOB,"
    "  seg_seq INTEGER NOT NULL DEFAULT 0 CHECK (seg_seq >= 0 AND seg_seq < 16),"
    "  seg_start INTEGER NOT NULL DEFAULT 0 CHECK (seg_start >= 0 AND seg_start < n),"
    "  seg_len INTEGER CHECK (seg_len IS NULL OR seg_len >= 1),"
    "  chain_key BLOB CHECK (chain_key IS NULL OR length(chain_key) = 16),"
    "  CHECK (request IS NOT NULL OR (seg_seq > 0 AND cert IS NOT NULL))"
    ");"
    "INSERT INTO channels_v3 (channel_id, issue_req_id, chain_seed, nonce, owner_seed, request,"
    "  cert, holder0, n, unit_value, currency, days, checkpoint_interval, state, last, sent,"
    "  credit, issued_at, pay_until, redeem_until, detail, created_at, holder, epoch,"
    "  holder_cert)"
    "  SELECT channel_id, issue_req_id, chain_seed, nonce, owner_seed, request, cert, holder0,"
    "  n, unit_value, currency, days, checkpoint_interval, state, last, sent, credit,"
    "  issued_at, pay_until, redeem_until, detail, created_at, holder, epoch, holder_cert"
    "  FROM channels;"
    "DROP TABLE channels;"
    "ALTER TABLE channels_v3 RENAME TO channels;"
    "CREATE TABLE segments ("
    "  channel_id BLOB NOT NULL,"
    "  seg_seq INTEGER NOT NULL CHECK (seg_seq >= 1 AND seg_seq < 16),"
    "  transfer BLOB NOT NULL,"
    "  cap BLOB NOT NULL,"
    "  PRIMARY KEY (channel_id, seg_seq)"
    ") WITHOUT ROWID;"
    "CREATE TABLE offers ("
    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
    "  chain_key BLOB NOT NULL UNIQUE CHECK (length(chain_key) = 16),"
    "  chain_seed BLOB NOT NULL CHECK (length(chain_seed) = 32),"
    "  nonce BLOB NOT NULL CHECK (length(nonce) = 16),"
    "  owner_seed BLOB NOT NULL CHECK (length(owner_seed) = 32),"
    "  len INTEGER NOT NULL CHECK (len >= 1),"
    "  checkpoint_interval INTEGER NOT NULL CHECK (checkpoint_interval >= 1),"
    "  offer BLOB NOT NULL,"
    "  bundle BLOB,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE transfers_out ("
    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
    "  offer BLOB NOT NULL,"
    "  transfer BLOB NOT NULL,"
    "  bundle BLOB,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE segment_claims ("
    "  channel_id BLOB NOT NULL,"
    "  seg_seq INTEGER NOT NULL,"
    "  request BLOB NOT NULL,"		  /* the exact SegmentClaimReq, resent verbatim */
    "  acked INTEGER NOT NULL DEFAULT 0," /* enum wclaim_answer: 0 waiting, 1 acked, 2 refused */
    "  status TEXT,"
    "  PRIMARY KEY (channel_id, seg_seq)"
    ") WITHOUT ROWID;";

bool wstore_migrate_transfer(struct wstore *s, int version)
{
	if (version >= 3)
		return true;
	if (version > 0)
		log_info("store %s: adding segments, offers and transfers (schema 3)", s->path);
	return wsql_exec(s, migrate_v3);
}

static sqlite3_stmt *by_channel(struct wstore *s, const char *sql, const uint8_t id[MP_ID_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, sql);
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	return st;
}

/* ---- segments ---- */

bool wstore_segments_load(struct wstore *s, const uint8_t id[MP_ID_LEN], MpSigned ***out,
			  size_t *count)
{
	*out = NULL;
	*count = 0;
	sqlite3_stmt *st = by_channel(
	    s, "SELECT seg_seq, transfer, cap FROM segments WHERE channel_id = ?1 ORDER BY seg_seq",
	    id);
	if (!st)
		return false;
	bool ok = true;
	int rc;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		MpSigned **grown = realloc(*out, (*count + 2) * sizeof(**out));
		ok = grown != NULL;
		if (!ok)
			break;
		*out = grown;
		grown[*count] = wsql_column_stmt(st, 1);
		grown[*count + 1] = wsql_column_stmt(st, 2);
		ok = grown[*count] && grown[*count + 1] &&
		     sqlite3_column_int64(st, 0) == (sqlite3_int64)(*count / 2 + 1);
		*count += 2;
	}
	if (ok && rc != SQLITE_DONE)
		ok = false;
	if (!ok) {
		wsql_log_error(s, "loading a channel's segments");
		wstore_stmts_free(*out, *count);
		*out = NULL;
		*count = 0;
	}
	sqlite3_finalize(st);
	return ok;
}

void wstore_stmts_free(MpSigned **stmts, size_t count)
{
	for (size_t i = 0; i < count; i++)
		mp_stmt_free(stmts[i]);
	free(stmts);
}

/* A pair stored already (a channel that comes back: its earlier segments) is kept. */
static bool segment_put(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
			const MpSigned *transfer, const MpSigned *cap)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT OR IGNORE INTO segments (channel_id, seg_seq, "
					"transfer, cap) VALUES (?1, ?2, ?3, ?4)");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, seg_seq) |
				    wsql_bind_stmt(st, 3, transfer) | wsql_bind_stmt(st, 4, cap),
				"binding a segment");
	return wsql_run(s, st, "storing a segment");
}

/* ---- offers (B) ---- */

bool wstore_offer_insert(struct wstore *s, const struct wstore_offer *o,
			 const uint8_t chain_seed[MP_SEED_LEN], const uint8_t owner_seed[MP_SK_LEN])
{
	struct wvault_ad chain_ad, owner_ad;
	wvault_ad_make(&chain_ad, WVAULT_CHAIN_SEED, o->channel_id, o->chain_key, 0);
	wvault_ad_make(&owner_ad, WVAULT_OWNER_SEED, o->channel_id, o->chain_key, 0);
	sqlite3_stmt *st = wsql_prep(
	    s,
	    "INSERT INTO offers (channel_id, chain_key, chain_seed, nonce, owner_seed, len, "
	    "checkpoint_interval, offer, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, o->channel_id, MP_ID_LEN) |
			wsql_bind_blob(st, 2, o->chain_key, MP_ID_LEN) |
			wsql_bind_secret(s, st, 3, chain_seed, MP_SEED_LEN, &chain_ad) |
			wsql_bind_blob(st, 4, o->nonce, MP_NONCE_LEN) |
			wsql_bind_secret(s, st, 5, owner_seed, MP_SK_LEN, &owner_ad) |
			sqlite3_bind_int64(st, 6, o->len) | sqlite3_bind_int64(st, 7, o->interval) |
			wsql_bind_blob(st, 8, o->offer, o->offer_len) |
			sqlite3_bind_int64(st, 9, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding an offer");
	return wsql_run(s, st, "storing an offer");
}

bool wstore_offer_drop_accepted(struct wstore *s, const uint8_t id[MP_ID_LEN])
{
	sqlite3_stmt *st =
	    by_channel(s, "DELETE FROM offers WHERE channel_id = ?1 AND bundle IS NOT NULL", id);
	return wsql_run(s, st, "dropping an accepted offer");
}

static bool column_copy(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return true;
	int n = sqlite3_column_bytes(st, col);
	if (n <= 0 || !(*out = malloc((size_t)n)))
		return false;
	memcpy(*out, sqlite3_column_blob(st, col), (size_t)n);
	*len = (size_t)n;
	return true;
}

static bool offer_from_row(sqlite3_stmt *st, struct wstore_offer *o)
{
	memset(o, 0, sizeof(*o));
	bool ok = wsql_column_bytes(st, 0, o->channel_id, MP_ID_LEN) &&
		  wsql_column_bytes(st, 1, o->chain_key, MP_ID_LEN) &&
		  wsql_column_bytes(st, 2, o->nonce, MP_NONCE_LEN) &&
		  column_copy(st, 5, &o->offer, &o->offer_len) && o->offer &&
		  column_copy(st, 6, &o->bundle, &o->bundle_len);
	o->len = (uint32_t)sqlite3_column_int64(st, 3);
	o->interval = (uint32_t)sqlite3_column_int64(st, 4);
	o->created_at = (uint64_t)sqlite3_column_int64(st, 7);
	if (!ok)
		wstore_offer_clear(o);
	return ok;
}

#define OFFER_COLUMNS                                                                              \
	"SELECT channel_id, chain_key, nonce, len, checkpoint_interval, offer, bundle, "           \
	"created_at "                                                                              \
	"FROM offers"

int wstore_offer_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_offer *o)
{
	sqlite3_stmt *st = by_channel(s, OFFER_COLUMNS " WHERE channel_id = ?1", id);
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE)
		found = 0;
	else if (rc == SQLITE_ROW && offer_from_row(st, o))
		found = 1;
	else
		wsql_log_error(s, "reading an offer");
	sqlite3_finalize(st);
	return found;
}

bool wstore_offers_each(struct wstore *s, void (*fn)(void *arg, const struct wstore_offer *o),
			void *arg)
{
	sqlite3_stmt *st = wsql_prep(s, OFFER_COLUMNS " ORDER BY created_at, rowid");
	if (!st)
		return false;
	int rc;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wstore_offer o;
		ok = offer_from_row(st, &o);
		if (ok)
			fn(arg, &o);
		wstore_offer_clear(&o);
	}
	if (ok && rc != SQLITE_DONE)
		ok = false;
	if (!ok)
		wsql_log_error(s, "listing offers");
	sqlite3_finalize(st);
	return ok;
}

void wstore_offer_clear(struct wstore_offer *o)
{
	free(o->offer);
	free(o->bundle);
	o->offer = o->bundle = NULL;
	o->offer_len = o->bundle_len = 0;
}

int wstore_offer_seed(struct wstore *s, const uint8_t id[MP_ID_LEN], uint8_t seed[MP_SK_LEN])
{
	sqlite3_stmt *st =
	    by_channel(s, "SELECT owner_seed, chain_key FROM offers WHERE channel_id = ?1", id);
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE)
		found = 0;
	else if (rc == SQLITE_ROW)
		found = wsql_column_owner_seed(s, st, id, seed) ? 1 : -1;
	sqlite3_finalize(st);
	return found;
}

/* ---- accepting a bundle (B) ---- */

/* The channel row of a received channel: its chain secrets come from the offer row. */
static bool received_insert(struct wstore *s, const struct wchannel *ch)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "INSERT INTO channels (channel_id, chain_seed, nonce, owner_seed, cert, holder0, n, "
	       "unit_value, currency, days, checkpoint_interval, state, last, sent, issued_at, "
	       "pay_until, redeem_until, created_at, holder, epoch, holder_cert, seg_seq, "
	       "seg_start, seg_len, chain_key) "
	       "SELECT channel_id, chain_seed, nonce, owner_seed, ?2, ?3, ?4, ?5, ?6, ?7, "
	       "checkpoint_interval, 'ACTIVE', ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?8, "
	       "len, chain_key FROM offers WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, ch->channel_id, MP_ID_LEN) |
			wsql_bind_stmt(st, 2, ch->cert) |
			wsql_bind_blob(st, 3, ch->holder0, MP_ID_LEN) |
			sqlite3_bind_int64(st, 4, ch->n) |
			sqlite3_bind_int64(st, 5, (sqlite3_int64)ch->unit_value) |
			sqlite3_bind_text(st, 6, ch->currency, -1, SQLITE_TRANSIENT) |
			sqlite3_bind_int64(st, 7, ch->days) |
			sqlite3_bind_int64(st, 8, ch->seg_start) |
			sqlite3_bind_int64(st, 9, (sqlite3_int64)ch->issued_at) |
			sqlite3_bind_int64(st, 10, (sqlite3_int64)ch->pay_until) |
			sqlite3_bind_int64(st, 11, (sqlite3_int64)ch->redeem_until) |
			sqlite3_bind_int64(st, 12, (sqlite3_int64)mp_clock_now(s->clock)) |
			wsql_bind_blob(st, 13, ch->holder, MP_ID_LEN) |
			sqlite3_bind_int64(st, 14, ch->epoch) |
			(ch->holder_cert ? wsql_bind_stmt(st, 15, ch->holder_cert)
					 : sqlite3_bind_null(st, 15)) |
			sqlite3_bind_int64(st, 16, ch->seg_seq),
		    "binding a received channel");
	if (!wsql_run(s, st, "storing a received channel"))
		return false;
	return sqlite3_changes(s->db) == 1;
}

/* A channel this wallet transferred out comes back (docs/transfer.md "Receiving a channel
 * back"): its row takes the new segment's chain secrets from the offer row and the new
 * segment's place; the finished transfer out is dropped (the channel came back through it, and a
 * later transfer out records its own). */
static bool returned_update(struct wstore *s, const struct wchannel *ch)
{
	sqlite3_stmt *st = wsql_prep(
	    s, "UPDATE channels SET (chain_seed, nonce, owner_seed, checkpoint_interval, seg_len, "
	       "chain_key) = (SELECT chain_seed, nonce, owner_seed, checkpoint_interval, len, "
	       "chain_key FROM offers WHERE channel_id = ?1), state = 'ACTIVE', last = ?2, "
	       "sent = ?2, credit = 0, detail = NULL, holder = ?3, epoch = ?4, holder_cert = ?5, "
	       "seg_seq = ?6, seg_start = ?2 WHERE channel_id = ?1 AND state = 'TRANSFERRED_OUT'");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, ch->channel_id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, ch->seg_start) |
				    wsql_bind_blob(st, 3, ch->holder, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 4, ch->epoch) |
				    (ch->holder_cert ? wsql_bind_stmt(st, 5, ch->holder_cert)
						     : sqlite3_bind_null(st, 5)) |
				    sqlite3_bind_int64(st, 6, ch->seg_seq),
				"binding a channel that comes back");
	if (!wsql_run(s, st, "storing a channel that comes back") || sqlite3_changes(s->db) != 1)
		return false;
	st = by_channel(s, "DELETE FROM transfers_out WHERE channel_id = ?1", ch->channel_id);
	return wsql_run(s, st, "dropping the finished transfer out");
}

static bool claim_insert(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
			 const uint8_t *request, size_t request_len)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT INTO segment_claims (channel_id, seg_seq, request) "
					"VALUES (?1, ?2, ?3)");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, seg_seq) |
				    wsql_bind_blob(st, 3, request, request_len),
				"binding a segment claim");
	return wsql_run(s, st, "storing a segment claim");
}

bool wstore_accept(struct wstore *s, const struct wchannel *ch, const struct wstore_accept *a)
{
	if (!wstore_begin(s))
		return false;
	bool ok = a->returning ? returned_update(s, ch) : received_insert(s, ch);
	for (size_t i = 0; ok && i + 1 < a->n_segments; i += 2)
		ok = segment_put(s, ch->channel_id, (uint32_t)(i / 2 + 1), a->segments[i],
				 a->segments[i + 1]);
	ok = ok && claim_insert(s, ch->channel_id, ch->seg_seq, a->claim_req, a->claim_req_len);
	if (ok) {
		sqlite3_stmt *st = by_channel(
		    s, "UPDATE offers SET bundle = ?2 WHERE channel_id = ?1", ch->channel_id);
		if (st)
			st = wsql_bound(s, st, wsql_bind_blob(st, 2, a->bundle, a->bundle_len),
					"binding an accepted bundle");
		ok = wsql_run(s, st, "recording the accepted bundle");
	}
	if (!ok) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

/* ---- segment claims (B) ---- */

int wstore_claim_get(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
		     struct wstore_claim *c)
{
	memset(c, 0, sizeof(*c));
	sqlite3_stmt *st = by_channel(s,
				      "SELECT request, acked, status FROM segment_claims "
				      "WHERE channel_id = ?1 AND seg_seq = ?2",
				      id);
	if (st)
		st = wsql_bound(s, st, sqlite3_bind_int64(st, 2, seg_seq), "binding a seg_seq");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE) {
		found = 0;
	} else if (rc == SQLITE_ROW) {
		const char *status = (const char *)sqlite3_column_text(st, 2);
		int answer = sqlite3_column_int(st, 1);
		c->answer = answer == WCLAIM_ACKED     ? WCLAIM_ACKED
			    : answer == WCLAIM_REFUSED ? WCLAIM_REFUSED
						       : WCLAIM_WAITING;
		snprintf(c->status, sizeof(c->status), "%s", status ? status : "");
		found = column_copy(st, 0, &c->request, &c->request_len) && c->request ? 1 : -1;
	}
	if (found < 0)
		wsql_log_error(s, "reading a segment claim");
	sqlite3_finalize(st);
	return found;
}

void wstore_claim_clear(struct wstore_claim *c)
{
	free(c->request);
	c->request = NULL;
	c->request_len = 0;
}

/* An acknowledged claim stays acknowledged, and a refusal for good is not undone by a later
 * answer that leaves it waiting (a later answer only updates its status text). */
bool wstore_claim_answer(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
			 enum wclaim_answer answer, const char *status)
{
	sqlite3_stmt *st =
	    by_channel(s,
		       "UPDATE segment_claims SET acked = CASE WHEN acked = 1 THEN 1 "
		       "WHEN acked = 2 AND ?3 = 0 THEN 2 ELSE ?3 END, status = ?4 "
		       "WHERE channel_id = ?1 AND seg_seq = ?2",
		       id);
	if (st)
		st = wsql_bound(s, st,
				sqlite3_bind_int64(st, 2, seg_seq) |
				    sqlite3_bind_int(st, 3, (int)answer) |
				    sqlite3_bind_text(st, 4, status, -1, SQLITE_TRANSIENT),
				"binding a claim's answer");
	return wsql_run(s, st, "storing a claim's answer");
}

/* ---- transfers out (A) ---- */

bool wstore_xfer_begin(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *offer,
		       size_t offer_len, const MpSigned *transfer)
{
	if (!wstore_begin(s))
		return false;
	sqlite3_stmt *st = wsql_prep(s, "INSERT INTO transfers_out (channel_id, offer, transfer, "
					"created_at) VALUES (?1, ?2, ?3, ?4)");
	if (st)
		st = wsql_bound(
		    s, st,
		    wsql_bind_blob(st, 1, id, MP_ID_LEN) | wsql_bind_blob(st, 2, offer, offer_len) |
			wsql_bind_stmt(st, 3, transfer) |
			sqlite3_bind_int64(st, 4, (sqlite3_int64)mp_clock_now(s->clock)),
		    "binding a transfer");
	bool ok = wsql_run(s, st, "storing a transfer") &&
		  wstore_channel_set_state(s, id, "TRANSFERRING", NULL);
	if (!ok) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

bool wstore_xfer_done(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *bundle,
		      size_t bundle_len)
{
	if (!wstore_begin(s))
		return false;
	sqlite3_stmt *st =
	    by_channel(s, "UPDATE transfers_out SET bundle = ?2 WHERE channel_id = ?1", id);
	if (st)
		st = wsql_bound(s, st, wsql_bind_blob(st, 2, bundle, bundle_len),
				"binding a bundle");
	bool ok = wsql_run(s, st, "storing a bundle") &&
		  wstore_channel_set_state(s, id, "TRANSFERRED_OUT", NULL);
	if (!ok) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

int wstore_xfer_resign(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *dead,
		       const MpSigned *transfer)
{
	sqlite3_stmt *st =
	    by_channel(s,
		       "UPDATE transfers_out SET transfer = ?3 WHERE channel_id = ?1 "
		       "AND transfer = ?2 AND bundle IS NULL",
		       id);
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_stmt(st, 2, dead) | wsql_bind_stmt(st, 3, transfer),
			       "binding a re-signed transfer");
	if (!wsql_run(s, st, "storing a re-signed transfer"))
		return -1;
	return sqlite3_changes(s->db) == 1 ? 1 : 0;
}

int wstore_xfer_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_xfer *x)
{
	memset(x, 0, sizeof(*x));
	sqlite3_stmt *st = by_channel(
	    s, "SELECT offer, transfer, bundle FROM transfers_out WHERE channel_id = ?1", id);
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE) {
		found = 0;
	} else if (rc == SQLITE_ROW) {
		x->transfer = wsql_column_stmt(st, 1);
		found = x->transfer && column_copy(st, 0, &x->offer, &x->offer_len) && x->offer &&
				column_copy(st, 2, &x->bundle, &x->bundle_len)
			    ? 1
			    : -1;
	}
	if (found < 0) {
		wsql_log_error(s, "reading a transfer");
		wstore_xfer_clear(x);
	}
	sqlite3_finalize(st);
	return found;
}

void wstore_xfer_clear(struct wstore_xfer *x)
{
	free(x->offer);
	free(x->bundle);
	mp_stmt_free(x->transfer);
	memset(x, 0, sizeof(*x));
}
