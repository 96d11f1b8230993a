/* The store's encryption (docs/wallet-store.md; the primitives are vault.c): the vault record
 * in meta, the secret columns sealed and opened, the one-transaction encryption of a plain
 * store, and the data key re-wrapped under a new passphrase.
 *
 * The secret columns: meta 'account_seed'; channels.chain_seed, channels.owner_seed;
 * offers.chain_seed, offers.owner_seed; checkpoints.word (any stored chain word lets its holder
 * compute every word below it, so they are as good as the chain seed for paying). Everything
 * else in the store is public or already sent (signed statements, in-flight Pays).
 *
 * Start-up (wstore_unlock):
 *
 *   record?  passphrase?  ->  result
 *   yes      yes              derive (scrypt, record's salt and cost), unwrap: SEALED, or
 *                             refused "wrong passphrase" (the wrapped key's tag fails)
 *   yes      no               refused: "the store is encrypted; set [wallet] passphrase_file"
 *   no       yes              ENCRYPT: new data key, wrapped; every secret sealed; one
 *                             transaction (a crash leaves the plain store as it was)
 *   no       no               PLAIN (as before this feature) */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_internal.h"
#include "vault.h"

#define SECRET_LEN 32 /* every secret the store keeps: seeds and chain words */

/* Schema 4: the secret columns' CHECKs accept the sealed length too. SQLite cannot change a
 * CHECK in place; its documented way for a change that leaves the stored format as it is
 * (sqlite.org/lang_altertable.html, "otherwise" procedure) edits the table's SQL text in
 * sqlite_schema and bumps schema_version, inside the caller's transaction. */
static const char relax_checks[] =
    "UPDATE sqlite_master SET sql = replace(replace(replace(sql,"
    "  'length(chain_seed) = 32', 'length(chain_seed) IN (32, 60)'),"
    "  'length(owner_seed) = 32', 'length(owner_seed) IN (32, 60)'),"
    "  'length(word) = 32', 'length(word) IN (32, 60)')"
    " WHERE type = 'table' AND name IN ('channels', 'offers', 'checkpoints')";

static int schema_version(struct wstore *s)
{
	sqlite3_stmt *st = wsql_prep(s, "PRAGMA schema_version");
	int v = -1;
	if (st && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

bool wstore_migrate_vault(struct wstore *s, int version)
{
	if (version >= 4)
		return true;
	int schema = schema_version(s);
	char bump[64];
	snprintf(bump, sizeof(bump), "PRAGMA schema_version = %d", schema + 1);
	bool ok = schema >= 0 && wsql_exec(s, "PRAGMA writable_schema = ON") &&
		  wsql_exec(s, relax_checks) && wsql_exec(s, bump);
	wsql_exec(s, "PRAGMA writable_schema = OFF");
	return ok;
}

/* ---- sealed columns ---- */

int wsql_bind_secret(struct wstore *s, sqlite3_stmt *st, int i, const uint8_t *secret, size_t len,
		     const struct wvault_ad *ad)
{
	if (!s->sealed)
		return wsql_bind_blob(st, i, secret, len);
	uint8_t sealed[WVAULT_SEALED_LEN(SECRET_LEN)];
	if (len != SECRET_LEN || !wvault_seal(s->data_key, ad, secret, len, sealed)) {
		log_err("store %s: cannot seal a secret", s->path);
		return SQLITE_ERROR;
	}
	return wsql_bind_blob(st, i, sealed, sizeof(sealed));
}

bool wsql_column_secret(struct wstore *s, sqlite3_stmt *st, int col, uint8_t *out, size_t len,
			const struct wvault_ad *ad)
{
	if (!s->sealed)
		return wsql_column_bytes(st, col, out, len);
	bool ok = len == SECRET_LEN && sqlite3_column_type(st, col) == SQLITE_BLOB &&
		  sqlite3_column_bytes(st, col) == WVAULT_SEALED_LEN(SECRET_LEN) &&
		  wvault_open(s->data_key, ad, sqlite3_column_blob(st, col),
			      WVAULT_SEALED_LEN(SECRET_LEN), out);
	if (!ok)
		log_err("store %s: a sealed secret does not open (altered, or moved from another "
			"row)",
			s->path);
	return ok;
}

/* ---- encrypting a plain store ---- */

/* SQL function mp_seal(kind, channel_id, chain_key, idx, plain): the value sealed under the
 * data key, for the one-statement-per-table encryption below. */
static void sql_seal(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct wstore *s = sqlite3_user_data(ctx);
	const uint8_t *channel_id = sqlite3_value_blob(argv[1]);
	const uint8_t *chain_key = sqlite3_value_blob(argv[2]);
	const uint8_t *plain = sqlite3_value_blob(argv[4]);
	if ((channel_id && sqlite3_value_bytes(argv[1]) != 16) ||
	    (chain_key && sqlite3_value_bytes(argv[2]) != 16) || !plain ||
	    sqlite3_value_bytes(argv[4]) != SECRET_LEN) {
		sqlite3_result_error(ctx, "mp_seal: a secret of the wrong shape", -1);
		return;
	}
	struct wvault_ad ad;
	wvault_ad_make(&ad, (enum wvault_kind)sqlite3_value_int(argv[0]), channel_id, chain_key,
		       (uint32_t)sqlite3_value_int64(argv[3]));
	uint8_t sealed[WVAULT_SEALED_LEN(SECRET_LEN)];
	if (!wvault_seal(s->data_key, &ad, plain, SECRET_LEN, sealed)) {
		sqlite3_result_error(ctx, "mp_seal: sealing failed", -1);
		return;
	}
	sqlite3_result_blob(ctx, sealed, sizeof(sealed), SQLITE_TRANSIENT);
}

static const char seal_all[] =
    "UPDATE meta SET value = mp_seal(1, NULL, NULL, 0, value) WHERE key = 'account_seed';"
    "UPDATE channels SET chain_seed = mp_seal(2, channel_id, coalesce(chain_key, channel_id), 0,"
    "  chain_seed), owner_seed = mp_seal(3, channel_id, coalesce(chain_key, channel_id), 0,"
    "  owner_seed);"
    "UPDATE offers SET chain_seed = mp_seal(2, channel_id, chain_key, 0, chain_seed),"
    "  owner_seed = mp_seal(3, channel_id, chain_key, 0, owner_seed);"
    "UPDATE checkpoints SET word = mp_seal(4, NULL, channel_id, idx, word);";

static bool vault_put(struct wstore *s, const uint8_t record[WVAULT_RECORD_LEN])
{
	sqlite3_stmt *st =
	    wsql_prep(s, "INSERT OR REPLACE INTO meta (key, value) VALUES ('vault', ?1)");
	if (st)
		st = wsql_bound(s, st, wsql_bind_blob(st, 1, record, WVAULT_RECORD_LEN),
				"binding the vault record");
	return wsql_run(s, st, "storing the vault record");
}

/* Every secret sealed under dk and the record stored, in one transaction. */
static bool encrypt_store(struct wstore *s, const uint8_t dk[WVAULT_KEY_LEN],
			  const uint8_t record[WVAULT_RECORD_LEN])
{
	memcpy(s->data_key, dk, WVAULT_KEY_LEN);
	if (sqlite3_create_function_v2(s->db, "mp_seal", 5, SQLITE_UTF8, s, sql_seal, NULL, NULL,
				       NULL) != SQLITE_OK) {
		wsql_log_error(s, "registering mp_seal");
		return false;
	}
	bool ok = wstore_begin(s);
	ok = ok && vault_put(s, record) && wsql_exec(s, seal_all);
	ok = ok && wstore_commit(s);
	if (!ok)
		wstore_rollback(s);
	/* The plain pages are in the main file until a checkpoint copies the sealed ones over
	 * them (secure_delete zeroes what they leave free); the WAL, which held them before, is
	 * truncated to nothing. */
	if (ok && !wsql_exec(s, "PRAGMA wal_checkpoint(TRUNCATE)"))
		log_warn("store %s: encrypted, but the plain pages stay in the file until the next "
			 "checkpoint",
			 s->path);
	sqlite3_create_function_v2(s->db, "mp_seal", 5, SQLITE_UTF8, s, NULL, NULL, NULL, NULL);
	s->sealed = ok;
	if (!ok)
		OPENSSL_cleanse(s->data_key, WVAULT_KEY_LEN);
	return ok;
}

/* ---- start-up ---- */

int wstore_vault_record(struct wstore *s, uint8_t *record)
{
	sqlite3_stmt *st = wsql_prep(s, "SELECT value FROM meta WHERE key = 'vault'");
	if (!st)
		return -1;
	int rc = sqlite3_step(st), found = -1;
	if (rc == SQLITE_DONE)
		found = 0;
	else if (rc == SQLITE_ROW && wsql_column_bytes(st, 0, record, WVAULT_RECORD_LEN))
		found = 1;
	else
		log_err("store %s: the vault record is unreadable", s->path);
	sqlite3_finalize(st);
	return found;
}

static bool unlock_sealed(struct wstore *s, const uint8_t record[WVAULT_RECORD_LEN],
			  const char *pass, size_t len, char *err, size_t errlen)
{
	struct wvault_kdf kdf;
	if (!wvault_record_kdf(record, WVAULT_RECORD_LEN, &kdf)) {
		snprintf(err, errlen, "%s: the store's vault record is of an unknown version",
			 s->path);
		return false;
	}
	uint8_t kek[WVAULT_KEY_LEN];
	char why[200];
	bool ok = wvault_derive(&kdf, pass, len, kek, why, sizeof(why));
	if (!ok)
		snprintf(err, errlen, "%s: %s", s->path, why);
	else if (!(ok = wvault_unwrap(record, kek, s->data_key)))
		snprintf(err, errlen,
			 "%s: wrong passphrase ([wallet] passphrase_file does not open the "
			 "store's data key)",
			 s->path);
	OPENSSL_cleanse(kek, sizeof(kek));
	s->sealed = ok;
	return ok;
}

static bool encrypt_plain(struct wstore *s, const char *pass, size_t len, uint8_t log2_n, char *err,
			  size_t errlen)
{
	struct wvault_kdf kdf;
	uint8_t kek[WVAULT_KEY_LEN], dk[WVAULT_KEY_LEN], record[WVAULT_RECORD_LEN];
	char why[200] = "the random generator failed";
	bool ok = wvault_kdf_new(&kdf, log2_n) && mp_random_bytes(dk, sizeof(dk)) &&
		  wvault_derive(&kdf, pass, len, kek, why, sizeof(why)) &&
		  wvault_wrap(&kdf, kek, dk, record);
	if (!ok)
		snprintf(err, errlen, "%s: cannot make a data key: %s", s->path, why);
	else if (!(ok = encrypt_store(s, dk, record)))
		snprintf(err, errlen, "%s: cannot encrypt the store: %s", s->path,
			 sqlite3_errmsg(s->db));
	else
		log_info("store %s: encrypted under [wallet] passphrase_file (scrypt N = 2^%u, "
			 "r = %u, p = %u)",
			 s->path, kdf.log2_n, kdf.r, kdf.p);
	OPENSSL_cleanse(kek, sizeof(kek));
	OPENSSL_cleanse(dk, sizeof(dk));
	return ok;
}

bool wstore_unlock(struct wstore *s, const char *pass, size_t len, uint8_t log2_n, char *err,
		   size_t errlen)
{
	uint8_t record[WVAULT_RECORD_LEN];
	int found = wstore_vault_record(s, record);
	if (found < 0) {
		snprintf(err, errlen, "%s: cannot read the vault record", s->path);
		return false;
	}
	if (found == 1 && !pass) {
		snprintf(err, errlen,
			 "%s: the store is encrypted; set [wallet] passphrase_file to the file "
			 "holding its passphrase",
			 s->path);
		return false;
	}
	if (found == 1)
		return unlock_sealed(s, record, pass, len, err, errlen);
	if (pass)
		return encrypt_plain(s, pass, len, log2_n, err, errlen);
	return true;
}

bool wstore_is_sealed(const struct wstore *s)
{
	return s->sealed;
}

bool wstore_rewrap(struct wstore *s, const struct wvault_kdf *kdf, const uint8_t *kek)
{
	uint8_t record[WVAULT_RECORD_LEN];
	if (!s->sealed || !wvault_wrap(kdf, kek, s->data_key, record))
		return false;
	return vault_put(s, record);
}
