#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "stmt.h"
#include "store_budget.h"
#include "store_http.h"
#include "store_close.h"
#include "store_key_offer.h"
#include "store_receipt.h"
#include "store_release.h"
#include "util.h"
#include "wallet.h"

#define SCHEMA_VERSION 4

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS channels ("
    "  channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
    "  issue_req_id BLOB NOT NULL UNIQUE CHECK (length(issue_req_id) = 16),"
    "  chain_seed BLOB NOT NULL CHECK (length(chain_seed) = 32),"
    "  nonce BLOB NOT NULL CHECK (length(nonce) = 16),"
    "  owner_seed BLOB NOT NULL CHECK (length(owner_seed) = 32),"
    "  request BLOB NOT NULL,"
    "  cert BLOB,"
    "  holder0 BLOB NOT NULL CHECK (length(holder0) = 16),"
    "  n INTEGER NOT NULL CHECK (n >= 1),"
    "  unit_value INTEGER NOT NULL CHECK (unit_value >= 1),"
    "  currency TEXT NOT NULL,"
    "  days INTEGER NOT NULL,"
    "  checkpoint_interval INTEGER NOT NULL CHECK (checkpoint_interval >= 1),"
    "  state TEXT NOT NULL CHECK (state IN ('ISSUING', 'ACTIVE', 'FAILED')),"
    "  last INTEGER NOT NULL DEFAULT 0 CHECK (last >= 0 AND last <= n),"
    "  sent INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0 AND sent <= n),"
    "  credit INTEGER NOT NULL DEFAULT 0 CHECK (credit >= 0),"
    "  issued_at INTEGER NOT NULL DEFAULT 0,"
    "  pay_until INTEGER NOT NULL DEFAULT 0,"
    "  redeem_until INTEGER NOT NULL DEFAULT 0,"
    "  detail TEXT,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    "  channel_id BLOB NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  word BLOB NOT NULL CHECK (length(word) = 32),"
    "  PRIMARY KEY (channel_id, idx)"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS inflight ("
    "  channel_id BLOB NOT NULL,"
    "  j INTEGER NOT NULL,"
    "  w BLOB NOT NULL CHECK (length(w) = 32),"
    "  order_ref BLOB NOT NULL CHECK (length(order_ref) BETWEEN 1 AND 32),"
    "  PRIMARY KEY (channel_id, j)"
    ") WITHOUT ROWID;";

void wsql_log_error(struct wstore *s, const char *what)
{
	log_err("store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

sqlite3_stmt *wsql_prep(struct wstore *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		wsql_log_error(s, sql);
		return NULL;
	}
	return st;
}

/* Step a write statement to completion and finalise it. */
bool wsql_run(struct wstore *s, sqlite3_stmt *st, const char *what)
{
	if (!st)
		return false;
	int rc = sqlite3_step(st);
	bool ok = rc == SQLITE_DONE;
	if (!ok)
		wsql_log_error(s, what);
	sqlite3_finalize(st);
	return ok;
}

bool wsql_exec(struct wstore *s, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_err("store %s: %s: %s", s->path, sql, msg ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		return false;
	}
	return true;
}

int wsql_bind_blob(sqlite3_stmt *st, int i, const void *data, size_t len)
{
	return sqlite3_bind_blob(st, i, data, (int)len, SQLITE_TRANSIENT);
}

/* rcs is the OR of a statement's sqlite3_bind_* results: SQLITE_OK (0) only if every one
 * succeeded. A failed bind leaves its parameter NULL, which would store or match nothing
 * without an error: the statement is finalised (logged) and NULL returned instead. */
sqlite3_stmt *wsql_bound(struct wstore *s, sqlite3_stmt *st, int rcs, const char *what)
{
	if (rcs == SQLITE_OK)
		return st;
	wsql_log_error(s, what);
	sqlite3_finalize(st);
	return NULL;
}

bool wsql_column_bytes(sqlite3_stmt *st, int col, uint8_t *out, size_t len)
{
	if (sqlite3_column_type(st, col) != SQLITE_BLOB ||
	    (size_t)sqlite3_column_bytes(st, col) != len)
		return false;
	memcpy(out, sqlite3_column_blob(st, col), len);
	return true;
}

bool wstore_begin(struct wstore *s)
{
	return wsql_exec(s, "BEGIN IMMEDIATE");
}

bool wstore_commit(struct wstore *s)
{
	if (wsql_exec(s, "COMMIT"))
		return true;
	wstore_rollback(s);
	return false;
}

void wstore_rollback(struct wstore *s)
{
	if (!sqlite3_get_autocommit(s->db))
		wsql_exec(s, "ROLLBACK");
}

/* Create the file with mode 0600 (SQLite gives its -wal and -shm files the same mode); refuse
 * a store that others may read (it holds the seeds), as key files are refused. */
static bool create_private(const char *path, char *err, size_t errlen)
{
	if (!mp_store_is_private(path, err, errlen))
		return false;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open the wallet store: %s", path,
			 strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

/* Version 2 (issue 6): the channel's current holder (NULL: holder0), custody epoch and the
 * holder's MerchantCert, which the wallet passes to the next merchant as its holder hint. */
static bool migrate_holder(struct wstore *s, int version)
{
	if (version >= 2)
		return true;
	if (version > 0)
		log_info("store %s: adding each channel's holder, epoch and holder cert", s->path);
	return wsql_exec(s, "ALTER TABLE channels ADD COLUMN holder BLOB CHECK (holder IS NULL OR "
			    "length(holder) = 16);"
			    "ALTER TABLE channels ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;"
			    "ALTER TABLE channels ADD COLUMN holder_cert BLOB;");
}

static int user_version(struct wstore *s)
{
	sqlite3_stmt *st = wsql_prep(s, "PRAGMA user_version");
	int v = -1;
	if (st && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

static bool wal_mode(struct wstore *s)
{
	sqlite3_stmt *st = wsql_prep(s, "PRAGMA journal_mode=WAL");
	bool ok = st && sqlite3_step(st) == SQLITE_ROW &&
		  strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	return ok;
}

static bool set_up(struct wstore *s, char *err, size_t errlen)
{
	if (!wsql_exec(s, "PRAGMA locking_mode=EXCLUSIVE") || !wal_mode(s) ||
	    !wsql_exec(s, "PRAGMA synchronous=FULL") || !wsql_exec(s, "PRAGMA secure_delete=ON")) {
		bool busy = sqlite3_errcode(s->db) == SQLITE_BUSY;
		snprintf(err, errlen, "%s: cannot set up the wallet store: %s%s", s->path,
			 sqlite3_errmsg(s->db), busy ? " (is another walletd using it?)" : "");
		return false;
	}
	/* The first write takes the exclusive lock and keeps it while we run. */
	if (!wstore_begin(s)) {
		snprintf(err, errlen,
			 "%s: cannot lock the wallet store (is another walletd using it?): %s",
			 s->path, sqlite3_errmsg(s->db));
		return false;
	}
	int version = user_version(s);
	if (version > SCHEMA_VERSION || version < 0) {
		wstore_rollback(s);
		snprintf(err, errlen, "%s: store schema version %d, this walletd knows %d", s->path,
			 version, SCHEMA_VERSION);
		return false;
	}
	char bump[64];
	snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (!wsql_exec(s, schema) || !migrate_holder(s, version) ||
	    !wstore_migrate_transfer(s, version) || !wstore_close_migrate(s) ||
	    !wstore_receipt_migrate(s) || !wstore_key_offer_migrate(s) ||
	    !wstore_release_migrate(s) || !wstore_migrate_refund(s) || !wstore_budget_migrate(s) ||
	    !wstore_http_migrate(s) || !wstore_migrate_vault(s, version) || !wsql_exec(s, bump) ||
	    !wstore_commit(s)) {
		wstore_rollback(s);
		snprintf(err, errlen, "%s: cannot create the store schema: %s", s->path,
			 sqlite3_errmsg(s->db));
		return false;
	}
	s->checkpoint_get =
	    wsql_prep(s, "SELECT word FROM checkpoints WHERE channel_id = ?1 AND idx = ?2");
	if (!s->checkpoint_get) {
		snprintf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
		return false;
	}
	return true;
}

struct wstore *wstore_open(const char *path, const struct mp_clock *clock, char *err, size_t errlen)
{
	if (!create_private(path, err, errlen))
		return NULL;
	struct wstore *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	s->clock = clock;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open the wallet store: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		wstore_close(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 0);
	if (!set_up(s, err, errlen)) {
		wstore_close(s);
		return NULL;
	}
	return s;
}

void wstore_close(struct wstore *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->checkpoint_get);
	sqlite3_close(s->db);
	OPENSSL_cleanse(s->data_key, sizeof(s->data_key));
	free(s->path);
	free(s);
}

/* ---- account ---- */

/* ad: the value is a secret (sealed in an encrypted store); NULL: a public value. */
static int meta_get(struct wstore *s, const char *key, uint8_t *out, size_t len,
		    const struct wvault_ad *ad)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT value FROM meta WHERE key = ?1");
	if (st)
		st = wsql_bound(s, st, sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC),
				"binding a key");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE)
		found = 0;
	else if (rc == SQLITE_ROW && (ad ? wsql_column_secret(s, st, 0, out, len, ad)
					 : wsql_column_bytes(st, 0, out, len)))
		found = 1;
	else if (rc == SQLITE_ROW)
		log_err("store %s: meta '%s' is unreadable", s->path, key);
	else
		wsql_log_error(s, "reading meta");
	sqlite3_finalize(st);
	return found;
}

static bool meta_put(struct wstore *s, const char *key, const uint8_t *data, size_t len,
		     const struct wvault_ad *ad)
{
	sqlite3_stmt *st = wsql_prep(s, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)");
	if (st)
		st = wsql_bound(s, st,
				sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) |
				    (ad ? wsql_bind_secret(s, st, 2, data, len, ad)
					: wsql_bind_blob(st, 2, data, len)),
				key);
	return wsql_run(s, st, key);
}

int wstore_account_seed(struct wstore *s, uint8_t seed[MP_SK_LEN])
{
	struct wvault_ad ad;
	wvault_ad_make(&ad, WVAULT_ACCOUNT_SEED, NULL, NULL, 0);
	return meta_get(s, "account_seed", seed, MP_SK_LEN, &ad);
}

bool wstore_set_account_seed(struct wstore *s, const uint8_t seed[MP_SK_LEN])
{
	struct wvault_ad ad;
	wvault_ad_make(&ad, WVAULT_ACCOUNT_SEED, NULL, NULL, 0);
	return meta_put(s, "account_seed", seed, MP_SK_LEN, &ad);
}

int wstore_account_pk(struct wstore *s, uint8_t pk[MP_PK_LEN])
{
	return meta_get(s, "account_pk", pk, MP_PK_LEN, NULL);
}

bool wstore_set_account_pk(struct wstore *s, const uint8_t pk[MP_PK_LEN])
{
	return meta_put(s, "account_pk", pk, MP_PK_LEN, NULL);
}

int wstore_account_id(struct wstore *s, uint8_t id[MP_ID_LEN])
{
	return meta_get(s, "account_id", id, MP_ID_LEN, NULL);
}

bool wstore_set_account_id(struct wstore *s, const uint8_t id[MP_ID_LEN])
{
	return meta_put(s, "account_id", id, MP_ID_LEN, NULL);
}

/* ---- channels ---- */

bool wstore_channel_insert(struct wstore *s, const struct wchannel *ch,
			   const uint8_t chain_seed[MP_SEED_LEN],
			   const uint8_t owner_seed[MP_SK_LEN])
{
	size_t req_len;
	uint8_t *req = mp_stmt_encode(ch->request, &req_len);
	if (!req)
		return false;
	sqlite3_stmt *st = wsql_prep(
	    s, "INSERT INTO channels (channel_id, issue_req_id, chain_seed, nonce, owner_seed, "
	       "request, holder0, n, unit_value, currency, days, checkpoint_interval, state, "
	       "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
	struct wvault_ad chain_ad, owner_ad; /* segment 0: the chain's key is the channel id */
	wvault_ad_make(&chain_ad, WVAULT_CHAIN_SEED, ch->channel_id, ch->channel_id, 0);
	wvault_ad_make(&owner_ad, WVAULT_OWNER_SEED, ch->channel_id, ch->channel_id, 0);
	if (st) {
		int rcs = wsql_bind_blob(st, 1, ch->channel_id, MP_ID_LEN) |
			  wsql_bind_blob(st, 2, ch->issue_req_id, MP_ID_LEN) |
			  wsql_bind_secret(s, st, 3, chain_seed, MP_SEED_LEN, &chain_ad) |
			  wsql_bind_blob(st, 4, ch->nonce, MP_NONCE_LEN) |
			  wsql_bind_secret(s, st, 5, owner_seed, MP_SK_LEN, &owner_ad) |
			  wsql_bind_blob(st, 6, req, req_len) |
			  wsql_bind_blob(st, 7, ch->holder0, MP_ID_LEN) |
			  sqlite3_bind_int64(st, 8, ch->n) |
			  sqlite3_bind_int64(st, 9, (sqlite3_int64)ch->unit_value) |
			  sqlite3_bind_text(st, 10, ch->currency, -1, SQLITE_TRANSIENT) |
			  sqlite3_bind_int64(st, 11, ch->days) |
			  sqlite3_bind_int64(st, 12, ch->interval) |
			  sqlite3_bind_text(st, 13, wch_state_name(ch->state), -1, SQLITE_STATIC) |
			  sqlite3_bind_int64(st, 14, (sqlite3_int64)mp_clock_now(s->clock));
		st = wsql_bound(s, st, rcs, "binding a channel");
	}
	free(req);
	return wsql_run(s, st, "inserting a channel");
}

bool wstore_channel_activate(struct wstore *s, const struct wchannel *ch)
{
	size_t cert_len;
	uint8_t *cert = mp_stmt_encode(ch->cert, &cert_len);
	if (!cert)
		return false;
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE channels SET state = 'ACTIVE', cert = ?2, issued_at = ?3, "
			 "pay_until = ?4, redeem_until = ?5, detail = NULL "
			 "WHERE channel_id = ?1");
	if (st) {
		int rcs = wsql_bind_blob(st, 1, ch->channel_id, MP_ID_LEN) |
			  wsql_bind_blob(st, 2, cert, cert_len) |
			  sqlite3_bind_int64(st, 3, (sqlite3_int64)ch->issued_at) |
			  sqlite3_bind_int64(st, 4, (sqlite3_int64)ch->pay_until) |
			  sqlite3_bind_int64(st, 5, (sqlite3_int64)ch->redeem_until);
		st = wsql_bound(s, st, rcs, "binding a channel's cert");
	}
	free(cert);
	return wsql_run(s, st, "activating a channel");
}

bool wstore_channel_set_state(struct wstore *s, const uint8_t id[MP_ID_LEN], const char *state,
			      const char *detail)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE channels SET state = ?2, detail = ?3 WHERE channel_id = ?1");
	if (st) {
		int rcs = wsql_bind_blob(st, 1, id, MP_ID_LEN) |
			  sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC) |
			  (detail ? sqlite3_bind_text(st, 3, detail, -1, SQLITE_TRANSIENT)
				  : sqlite3_bind_null(st, 3));
		st = wsql_bound(s, st, rcs, "binding a channel's state");
	}
	return wsql_run(s, st, "updating a channel's state");
}

static sqlite3_stmt *progress_stmt(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t last,
				   uint64_t credit)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE channels SET last = ?2, credit = ?3 WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, last) |
				    sqlite3_bind_int64(st, 3, (sqlite3_int64)credit),
				"binding a channel's progress");
	return st;
}

bool wstore_channel_progress(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t last,
			     uint64_t credit)
{
	return wsql_run(s, progress_stmt(s, id, last, credit), "storing a channel's progress");
}

bool wstore_channel_holder(struct wstore *s, const struct wchannel *ch)
{
	size_t len = 0;
	uint8_t *cert = ch->holder_cert ? mp_stmt_encode(ch->holder_cert, &len) : NULL;
	if (ch->holder_cert && !cert)
		return false;
	sqlite3_stmt *st =
	    wsql_prep(s, "UPDATE channels SET holder = ?2, epoch = ?3, holder_cert = ?4 "
			 "WHERE channel_id = ?1");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, ch->channel_id, MP_ID_LEN) |
				    wsql_bind_blob(st, 2, ch->holder, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 3, ch->epoch) |
				    (cert ? wsql_bind_blob(st, 4, cert, len) : SQLITE_OK),
				"binding a channel's holder");
	free(cert);
	return wsql_run(s, st, "storing a channel's holder");
}

int wstore_owner_seed(struct wstore *s, const uint8_t id[MP_ID_LEN], uint8_t seed[MP_SK_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT owner_seed, coalesce(chain_key, channel_id) "
					"FROM channels WHERE channel_id = ?1");
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
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

bool wsql_column_owner_seed(struct wstore *s, sqlite3_stmt *st, const uint8_t id[MP_ID_LEN],
			    uint8_t seed[MP_SK_LEN])
{
	struct wvault_ad ad;
	if (sqlite3_column_type(st, 1) != SQLITE_BLOB || sqlite3_column_bytes(st, 1) != MP_ID_LEN)
		return false;
	wvault_ad_make(&ad, WVAULT_OWNER_SEED, id, sqlite3_column_blob(st, 1), 0);
	return wsql_column_secret(s, st, 0, seed, MP_SK_LEN, &ad);
}

int wsql_bind_stmt(sqlite3_stmt *st, int i, const MpSigned *stmt)
{
	size_t len;
	uint8_t *bytes = mp_stmt_encode(stmt, &len);
	if (!bytes)
		return SQLITE_NOMEM;
	int rc = sqlite3_bind_blob(st, i, bytes, (int)len, free);
	return rc;
}

MpSigned *wsql_column_stmt(sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) != SQLITE_BLOB)
		return NULL;
	return mp_stmt_decode(sqlite3_column_blob(st, col), (size_t)sqlite3_column_bytes(st, col));
}

static int inflight_count(struct wstore *s, const uint8_t id[MP_ID_LEN])
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT count(*) FROM inflight WHERE channel_id = ?1");
	int n = -1;
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	if (st) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
	}
	sqlite3_finalize(st);
	return n;
}

/* One row into a heap channel; NULL (logged) if the row is damaged. */
static struct wchannel *channel_from_row(struct wstore *s, sqlite3_stmt *st)
{
	struct wchannel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	const char *state = (const char *)sqlite3_column_text(st, 11);
	const char *currency = (const char *)sqlite3_column_text(st, 7);
	const char *detail = (const char *)sqlite3_column_text(st, 18);
	bool ok = wsql_column_bytes(st, 0, ch->channel_id, MP_ID_LEN) &&
		  (sqlite3_column_type(st, 1) == SQLITE_NULL || /* received: no IssueRequest */
		   wsql_column_bytes(st, 1, ch->issue_req_id, MP_ID_LEN)) &&
		  wsql_column_bytes(st, 2, ch->nonce, MP_NONCE_LEN) &&
		  wsql_column_bytes(st, 3, ch->holder0, MP_ID_LEN) && state &&
		  wch_state_parse(state, &ch->state) && currency && strlen(currency) == 3;
	if (ok) {
		ch->n = (uint32_t)sqlite3_column_int64(st, 4);
		ch->unit_value = (uint64_t)sqlite3_column_int64(st, 5);
		ch->days = (uint32_t)sqlite3_column_int64(st, 6);
		memcpy(ch->currency, currency, 4);
		ch->interval = (uint32_t)sqlite3_column_int64(st, 8);
		ch->request = wsql_column_stmt(st, 9);
		ch->cert = wsql_column_stmt(st, 10);
		ch->last = (uint32_t)sqlite3_column_int64(st, 12);
		ch->sent = (uint32_t)sqlite3_column_int64(st, 13);
		ch->credit = (uint64_t)sqlite3_column_int64(st, 14);
		ch->issued_at = (uint64_t)sqlite3_column_int64(st, 15);
		ch->pay_until = (uint64_t)sqlite3_column_int64(st, 16);
		ch->redeem_until = (uint64_t)sqlite3_column_int64(st, 17);
		ch->detail = detail ? strdup(detail) : NULL;
		if (!wsql_column_bytes(st, 19, ch->holder, MP_ID_LEN))
			memcpy(ch->holder, ch->holder0, MP_ID_LEN);
		ch->epoch = (uint32_t)sqlite3_column_int64(st, 20);
		ch->holder_cert = wsql_column_stmt(st, 21);
		ch->seg_seq = (uint32_t)sqlite3_column_int64(st, 22);
		ch->seg_start = (uint32_t)sqlite3_column_int64(st, 23);
		ch->seg_len = sqlite3_column_type(st, 24) == SQLITE_NULL
				  ? ch->n
				  : (uint32_t)sqlite3_column_int64(st, 24);
		if (!wsql_column_bytes(st, 25, ch->chain_key, MP_ID_LEN))
			memcpy(ch->chain_key, ch->channel_id, MP_ID_LEN);
		int inflight = inflight_count(s, ch->channel_id);
		ch->inflight = inflight > 0 ? (unsigned)inflight : 0;
		ok = (ch->request || ch->seg_seq > 0) &&
		     (ch->state == WCH_ISSUING || ch->state == WCH_FAILED || ch->cert) &&
		     inflight >= 0 && ch->seg_len >= 1;
	}
	if (!ok) {
		log_err("store %s: a channel row is damaged; stopping", s->path);
		wallet_channel_free(ch);
		return NULL;
	}
	wchain_init(&ch->chain, ch->nonce, ch->seg_len, ch->interval);
	return ch;
}

bool wstore_channels_load(struct wstore *s, void (*fn)(void *arg, struct wchannel *ch), void *arg)
{
	sqlite3_stmt *st =
	    wsql_prep(s, "SELECT channel_id, issue_req_id, nonce, holder0, n, unit_value, "
			 "days, currency, checkpoint_interval, request, cert, state, last, "
			 "sent, credit, issued_at, pay_until, redeem_until, detail, holder, epoch, "
			 "holder_cert, seg_seq, seg_start, seg_len, chain_key FROM channels "
			 "ORDER BY created_at, rowid");
	if (!st)
		return false;
	int rc = SQLITE_DONE;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wchannel *ch = channel_from_row(s, st);
		if (ch)
			fn(arg, ch);
		ok = ch != NULL;
	}
	if (ok && rc != SQLITE_DONE) {
		wsql_log_error(s, "loading channels");
		ok = false;
	}
	sqlite3_finalize(st);
	return ok;
}

/* ---- checkpoints ---- */

bool wstore_checkpoint_put(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t index,
			   const uint8_t w[MP_HASH_LEN])
{
	struct wvault_ad ad;
	wvault_ad_make(&ad, WVAULT_CHECKPOINT, NULL, id, index);
	sqlite3_stmt *st =
	    wsql_prep(s, "INSERT INTO checkpoints (channel_id, idx, word) VALUES (?1, ?2, ?3)");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, index) |
				    wsql_bind_secret(s, st, 3, w, MP_HASH_LEN, &ad),
				"binding a checkpoint");
	return wsql_run(s, st, "storing a checkpoint");
}

bool wstore_checkpoint_get(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t index,
			   uint8_t w[MP_HASH_LEN])
{
	sqlite3_stmt *st = s->checkpoint_get;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if ((wsql_bind_blob(st, 1, id, MP_ID_LEN) | sqlite3_bind_int64(st, 2, index)) !=
	    SQLITE_OK) {
		wsql_log_error(s, "binding a checkpoint's key");
		return false;
	}
	struct wvault_ad ad;
	wvault_ad_make(&ad, WVAULT_CHECKPOINT, NULL, id, index);
	int rc = sqlite3_step(st);
	bool ok = rc == SQLITE_ROW && wsql_column_secret(s, st, 0, w, MP_HASH_LEN, &ad);
	if (!ok && rc == SQLITE_ROW)
		log_err("store %s: checkpoint %u is unreadable", s->path, index);
	else if (rc == SQLITE_DONE)
		log_err("store %s: checkpoint %u is missing", s->path, index);
	else if (!ok)
		wsql_log_error(s, "reading a checkpoint");
	sqlite3_reset(st);
	return ok;
}

/* ---- in-flight Pays ---- */

bool wstore_inflight_add(struct wstore *s, const uint8_t id[MP_ID_LEN],
			 const struct wstore_pay *pay)
{
	if (!wstore_begin(s))
		return false;
	sqlite3_stmt *st = wsql_prep(s, "INSERT INTO inflight (channel_id, j, w, order_ref) "
					"VALUES (?1, ?2, ?3, ?4)");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) |
				    sqlite3_bind_int64(st, 2, pay->j) |
				    wsql_bind_blob(st, 3, pay->w, MP_HASH_LEN) |
				    wsql_bind_blob(st, 4, pay->order_ref, pay->order_ref_len),
				"binding an in-flight Pay");
	bool ok = wsql_run(s, st, "recording an in-flight Pay");
	if (ok) {
		st = wsql_prep(s, "UPDATE channels SET sent = max(sent, ?2) WHERE channel_id = ?1");
		if (st)
			st = wsql_bound(s, st,
					wsql_bind_blob(st, 1, id, MP_ID_LEN) |
					    sqlite3_bind_int64(st, 2, pay->j),
					"binding the highest index sent");
		ok = wsql_run(s, st, "recording the highest index sent");
	}
	if (!ok) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

bool wstore_inflight_clear(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint32_t last,
			   uint64_t credit)
{
	sqlite3_stmt *st = wsql_prep(s, "DELETE FROM inflight WHERE channel_id = ?1 AND j = ?2");
	if (st)
		st = wsql_bound(s, st,
				wsql_bind_blob(st, 1, id, MP_ID_LEN) | sqlite3_bind_int64(st, 2, j),
				"binding an in-flight Pay's key");
	return wsql_run(s, st, "clearing an in-flight Pay") &&
	       wsql_run(s, progress_stmt(s, id, last, credit), "storing a channel's progress");
}

bool wstore_inflight_done(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint32_t last,
			  uint64_t credit)
{
	if (!wstore_begin(s))
		return false;
	if (!wstore_inflight_clear(s, id, j, last, credit)) {
		wstore_rollback(s);
		return false;
	}
	return wstore_commit(s);
}

int wstore_inflight_list(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_pay **out)
{
	*out = NULL;
	sqlite3_stmt *st =
	    wsql_prep(s, "SELECT j, w, order_ref FROM inflight WHERE channel_id = ?1 ORDER BY j");
	if (st)
		st =
		    wsql_bound(s, st, wsql_bind_blob(st, 1, id, MP_ID_LEN), "binding a channel id");
	if (!st)
		return -1;
	int count = 0, rc = SQLITE_DONE;
	bool ok = true;
	while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct wstore_pay *grown = realloc(*out, (size_t)(count + 1) * sizeof(**out));
		ok = grown != NULL;
		if (!ok)
			break;
		*out = grown;
		struct wstore_pay *p = &grown[count];
		p->j = (uint32_t)sqlite3_column_int64(st, 0);
		int ref_len = sqlite3_column_bytes(st, 2);
		ok = wsql_column_bytes(st, 1, p->w, MP_HASH_LEN) && ref_len >= 1 &&
		     ref_len <= (int)sizeof(p->order_ref) &&
		     wsql_column_bytes(st, 2, p->order_ref, (size_t)ref_len);
		p->order_ref_len = (size_t)ref_len;
		count++;
	}
	if (ok && rc != SQLITE_DONE)
		ok = false;
	if (!ok) {
		wsql_log_error(s, "listing in-flight Pays");
		free(*out);
		*out = NULL;
		count = -1;
	}
	sqlite3_finalize(st);
	return count;
}
