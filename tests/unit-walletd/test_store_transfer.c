/* walletd's store for transfers (walletd/store_transfer.c): a schema 2 store (before transfers)
 * is migrated with its channel intact in segment 0; a transfer out is TRANSFERRING with its exact
 * Transfer bytes, then TRANSFERRED_OUT with its bundle, across reopening; an offer, its
 * acceptance (channel row in segment s from the offer's secrets, pairs, claim) and the claim's
 * answer come back after reopening. A key_offers table from before state TOO_LATE is widened
 * at open with its rows intact. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stmt.h"
#include "store_key_offer.h"
#include "store.h"
#include "wallet.h"
#include "../check_run.h"
#include "clock.h"

/* The stores stamp rows with protocol time: a clock at offset 0. */
static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-wxfer-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];
static struct wchannel *loaded[4];
static size_t n_loaded;

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/w.db", dir);
	n_loaded = 0;
}

static void teardown(void)
{
	char p[sizeof(path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
	for (size_t i = 0; i < n_loaded; i++)
		wallet_channel_free(loaded[i]);
	n_loaded = 0;
}

static void keep(void *arg, struct wchannel *ch)
{
	ck_assert_uint_lt(n_loaded, 4);
	loaded[n_loaded++] = ch;
}

static struct wstore *reopen(struct wstore *s)
{
	if (s)
		wstore_close(s);
	for (size_t i = 0; i < n_loaded; i++)
		wallet_channel_free(loaded[i]);
	n_loaded = 0;
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(wstore_channels_load(s, keep, NULL));
	return s;
}

static MpSigned *stmt(uint32_t type, uint8_t fill)
{
	uint8_t body[40], pk[MP_PK_LEN], sig[MP_SIG_LEN];
	memset(body, fill, sizeof(body));
	memset(pk, fill + 1, sizeof(pk));
	memset(sig, fill + 2, sizeof(sig));
	MpSigned *s = mp_stmt_from_parts(type, body, sizeof(body), pk, sig);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void sql(const char *text)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", text, msg ? msg : "");
	sqlite3_close(db);
	ck_assert_int_eq(chmod(path, 0600), 0); /* sqlite3_open created it under the umask */
}

/* The schema of version 2, as walletd wrote it before transfers. */
static const char schema_v2[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE channels (channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
    " issue_req_id BLOB NOT NULL UNIQUE CHECK (length(issue_req_id) = 16),"
    " chain_seed BLOB NOT NULL CHECK (length(chain_seed) = 32),"
    " nonce BLOB NOT NULL CHECK (length(nonce) = 16),"
    " owner_seed BLOB NOT NULL CHECK (length(owner_seed) = 32), request BLOB NOT NULL,"
    " cert BLOB, holder0 BLOB NOT NULL CHECK (length(holder0) = 16),"
    " n INTEGER NOT NULL CHECK (n >= 1), unit_value INTEGER NOT NULL CHECK (unit_value >= 1),"
    " currency TEXT NOT NULL, days INTEGER NOT NULL,"
    " checkpoint_interval INTEGER NOT NULL CHECK (checkpoint_interval >= 1),"
    " state TEXT NOT NULL CHECK (state IN ('ISSUING', 'ACTIVE', 'FAILED')),"
    " last INTEGER NOT NULL DEFAULT 0 CHECK (last >= 0 AND last <= n),"
    " sent INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0 AND sent <= n),"
    " credit INTEGER NOT NULL DEFAULT 0 CHECK (credit >= 0),"
    " issued_at INTEGER NOT NULL DEFAULT 0, pay_until INTEGER NOT NULL DEFAULT 0,"
    " redeem_until INTEGER NOT NULL DEFAULT 0, detail TEXT, created_at INTEGER NOT NULL,"
    " holder BLOB CHECK (holder IS NULL OR length(holder) = 16),"
    " epoch INTEGER NOT NULL DEFAULT 0, holder_cert BLOB);"
    "CREATE TABLE checkpoints (channel_id BLOB NOT NULL, idx INTEGER NOT NULL,"
    " word BLOB NOT NULL CHECK (length(word) = 32), PRIMARY KEY (channel_id, idx))"
    " WITHOUT ROWID;"
    "CREATE TABLE inflight (channel_id BLOB NOT NULL, j INTEGER NOT NULL,"
    " w BLOB NOT NULL CHECK (length(w) = 32),"
    " order_ref BLOB NOT NULL CHECK (length(order_ref) BETWEEN 1 AND 32),"
    " PRIMARY KEY (channel_id, j)) WITHOUT ROWID;"
    "PRAGMA user_version = 2;";

static void insert_v2_channel(const MpSigned *request, const MpSigned *cert)
{
	size_t req_len, cert_len;
	uint8_t *req = mp_stmt_encode(request, &req_len), *c = mp_stmt_encode(cert, &cert_len);
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(
		db,
		"INSERT INTO channels (channel_id, issue_req_id, chain_seed, nonce, "
		"owner_seed, request, cert, holder0, n, unit_value, currency, days, "
		"checkpoint_interval, state, last, sent, pay_until, created_at, epoch) "
		"VALUES (zeroblob(16), x'02020202020202020202020202020202', "
		"zeroblob(32), zeroblob(16), zeroblob(32), ?1, ?2, zeroblob(16), 100, "
		"1, 'EUR', 1, 256, 'ACTIVE', 4, 4, 99999999999, 1, 2)",
		-1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_blob(st, 1, req, (int)req_len, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 2, c, (int)cert_len, SQLITE_TRANSIENT);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(req);
	free(c);
}

START_TEST(v2_store_migrates_and_transfers_out)
{
	sql(schema_v2);
	MpSigned *request = stmt(3, 0x10), *cert = stmt(1, 0x20), *transfer = stmt(7, 0x30);
	insert_v2_channel(request, cert);
	struct wstore *s = reopen(NULL);
	ck_assert_uint_eq(n_loaded, 1);
	struct wchannel *ch = loaded[0];
	ck_assert_int_eq(ch->state, WCH_ACTIVE);
	ck_assert_uint_eq(ch->epoch, 2);
	ck_assert_uint_eq(ch->last, 4);
	ck_assert_uint_eq(ch->seg_seq, 0);
	ck_assert_uint_eq(ch->seg_start, 0);
	ck_assert_uint_eq(ch->seg_len, 100);
	ck_assert_mem_eq(ch->chain_key, ch->channel_id, MP_ID_LEN); /* segment 0's chain */
	uint8_t id[MP_ID_LEN];
	memcpy(id, ch->channel_id, MP_ID_LEN);

	uint8_t offer[5] = {1, 2, 3, 4, 5}, bundle[3] = {7, 8, 9};
	ck_assert(wstore_xfer_begin(s, id, offer, sizeof(offer), transfer));
	ck_assert(!wstore_xfer_begin(s, id, offer, sizeof(offer), transfer)); /* once */
	s = reopen(s);
	ck_assert_int_eq(loaded[0]->state, WCH_TRANSFERRING);
	struct wstore_xfer x;
	ck_assert_int_eq(wstore_xfer_get(s, id, &x), 1);
	ck_assert_uint_eq(x.offer_len, sizeof(offer));
	ck_assert_mem_eq(x.offer, offer, sizeof(offer));
	ck_assert_ptr_null(x.bundle);
	ck_assert_uint_eq(x.transfer->body.len, transfer->body.len);
	ck_assert_mem_eq(x.transfer->signature.data, transfer->signature.data, MP_SIG_LEN);
	wstore_xfer_clear(&x);
	ck_assert(wstore_xfer_done(s, id, bundle, sizeof(bundle)));
	s = reopen(s);
	ck_assert_int_eq(loaded[0]->state, WCH_TRANSFERRED_OUT);
	ck_assert_int_eq(wstore_xfer_get(s, id, &x), 1);
	ck_assert_uint_eq(x.bundle_len, sizeof(bundle));
	ck_assert_mem_eq(x.bundle, bundle, sizeof(bundle));
	wstore_xfer_clear(&x);
	wstore_close(s);
	mp_stmt_free(request);
	mp_stmt_free(cert);
	mp_stmt_free(transfer);
}
END_TEST

START_TEST(offer_accept_and_claim_survive_reopening)
{
	struct wstore *s = reopen(NULL);
	struct wstore_offer o = {.len = 50, .interval = 16};
	uint8_t chain_seed[MP_SEED_LEN] = {1}, owner_seed[MP_SK_LEN] = {2}, seed[MP_SK_LEN];
	uint8_t offer_bytes[4] = {9, 9, 9, 9};
	memset(o.channel_id, 0x61, MP_ID_LEN);
	memset(o.chain_key, 0x62, MP_ID_LEN);
	memset(o.nonce, 0x63, MP_NONCE_LEN);
	o.offer = offer_bytes;
	o.offer_len = sizeof(offer_bytes);
	ck_assert(wstore_offer_insert(s, &o, chain_seed, owner_seed));
	ck_assert(!wstore_offer_insert(s, &o, chain_seed, owner_seed)); /* one per channel */
	struct wstore_offer got;
	ck_assert_int_eq(wstore_offer_get(s, o.channel_id, &got), 1);
	ck_assert_uint_eq(got.len, 50);
	ck_assert_ptr_null(got.bundle);
	ck_assert_mem_eq(got.offer, offer_bytes, sizeof(offer_bytes));
	wstore_offer_clear(&got);
	ck_assert_int_eq(wstore_offer_seed(s, o.channel_id, seed), 1);
	ck_assert_mem_eq(seed, owner_seed, MP_SK_LEN);

	/* Accept: segment 2 from index 30 (pairs 1 and 2). */
	struct wchannel ch = {.n = 100,
			      .unit_value = 1,
			      .days = 1,
			      .seg_seq = 2,
			      .seg_start = 30,
			      .epoch = 1,
			      .pay_until = 1000};
	memcpy(ch.channel_id, o.channel_id, MP_ID_LEN);
	memcpy(ch.currency, "EUR", 4);
	memset(ch.holder, 0x64, MP_ID_LEN);
	ch.cert = stmt(1, 0x40);
	ch.holder_cert = stmt(2, 0x41);
	MpSigned *pairs[4] = {stmt(7, 0x50), stmt(8, 0x51), stmt(7, 0x52), stmt(8, 0x53)};
	uint8_t claim_req[6] = {1, 1, 2, 3, 5, 8}, bundle[2] = {4, 2};
	struct wstore_accept a = {pairs,	  4,	claim_req, sizeof(claim_req), bundle,
				  sizeof(bundle), false};
	ck_assert(wstore_accept(s, &ch, &a));
	ck_assert(!wstore_accept(s, &ch, &a)); /* once: nothing of the second attempt stays */
	s = reopen(s);
	ck_assert_uint_eq(n_loaded, 1);
	struct wchannel *r = loaded[0];
	ck_assert_int_eq(r->state, WCH_ACTIVE);
	ck_assert_uint_eq(r->seg_seq, 2);
	ck_assert_uint_eq(r->seg_start, 30);
	ck_assert_uint_eq(r->last, 30);
	ck_assert_uint_eq(r->seg_len, 50);
	ck_assert_uint_eq(r->interval, 16);
	ck_assert_mem_eq(r->chain_key, o.chain_key, MP_ID_LEN);
	ck_assert_mem_eq(r->nonce, o.nonce, MP_NONCE_LEN);
	ck_assert_ptr_null(r->request);
	ck_assert_int_eq(wstore_owner_seed(s, r->channel_id, seed), 1);
	ck_assert_mem_eq(seed, owner_seed, MP_SK_LEN); /* the segment's key, from the offer */
	MpSigned **segs;
	size_t n_segs;
	ck_assert(wstore_segments_load(s, r->channel_id, &segs, &n_segs));
	ck_assert_uint_eq(n_segs, 4);
	for (size_t i = 0; i < 4; i++)
		ck_assert_mem_eq(segs[i]->signature.data, pairs[i]->signature.data, MP_SIG_LEN);
	wstore_stmts_free(segs, n_segs);
	ck_assert_int_eq(wstore_offer_get(s, o.channel_id, &got), 1);
	ck_assert_uint_eq(got.bundle_len, sizeof(bundle));
	wstore_offer_clear(&got);

	struct wstore_claim c;
	ck_assert_int_eq(wstore_claim_get(s, r->channel_id, 2, &c), 1);
	ck_assert_int_eq(c.answer, WCLAIM_WAITING);
	ck_assert_mem_eq(c.request, claim_req, sizeof(claim_req));
	wstore_claim_clear(&c);
	ck_assert(wstore_claim_answer(s, r->channel_id, 2, WCLAIM_REFUSED, "CLOSED: closed early"));
	ck_assert(wstore_claim_answer(s, r->channel_id, 2, WCLAIM_WAITING, "CLOSED: closed early"));
	ck_assert_int_eq(wstore_claim_get(s, r->channel_id, 2, &c), 1); /* still refused */
	ck_assert_int_eq(c.answer, WCLAIM_REFUSED);
	ck_assert_str_eq(c.status, "CLOSED: closed early");
	wstore_claim_clear(&c);
	ck_assert(wstore_claim_answer(s, r->channel_id, 2, WCLAIM_ACKED, "OK"));
	ck_assert(wstore_claim_answer(s, r->channel_id, 2, WCLAIM_WAITING, "broker unreachable"));
	ck_assert(wstore_claim_answer(s, r->channel_id, 2, WCLAIM_REFUSED, "CONFLICT"));
	s = reopen(s);
	ck_assert_int_eq(wstore_claim_get(s, loaded[0]->channel_id, 2, &c), 1);
	ck_assert_int_eq(c.answer, WCLAIM_ACKED); /* an acknowledgement is never taken back */
	ck_assert_str_eq(c.status, "CONFLICT");
	wstore_claim_clear(&c);
	wstore_close(s);
	mp_stmt_free(ch.cert);
	mp_stmt_free(ch.holder_cert);
	for (size_t i = 0; i < 4; i++)
		mp_stmt_free(pairs[i]);
}
END_TEST

/* key_offers as walletd created it before states TOO_LATE and KEY_BAD (CHECK state BETWEEN 0
 * AND 5, no bad_key_proof). */
static const char key_offers_v1[] =
    "CREATE TABLE key_offers_v1 ("
    "  channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
    "  order_ref BLOB NOT NULL CHECK (length(order_ref) = 16),"
    "  offer BLOB NOT NULL, custody BLOB,"
    "  prefix BLOB NOT NULL CHECK (length(prefix) = 8),"
    "  item TEXT NOT NULL, out TEXT NOT NULL,"
    "  size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,"
    "  chunks INTEGER NOT NULL, deadline INTEGER NOT NULL,"
    "  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
    "  key BLOB CHECK (key IS NULL OR length(key) = 32),"
    "  refunded INTEGER NOT NULL DEFAULT 0,"
    "  stored_at INTEGER NOT NULL,"
    "  PRIMARY KEY (channel_id, order_ref));"
    "INSERT INTO key_offers_v1 SELECT channel_id, order_ref, offer, custody, prefix, item, out,"
    " size, chunk_size, chunks, deadline, state, key, refunded, stored_at FROM key_offers;"
    "DROP TABLE key_offers;"
    "ALTER TABLE key_offers_v1 RENAME TO key_offers;";

START_TEST(old_key_offers_widened_for_too_late)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct wkey_offer o = {.channel_id = {1},
			       .order_ref = {2},
			       .size = 10,
			       .chunk_size = 1024,
			       .chunks = 1,
			       .deadline = 99};
	o.offer = stmt(15, 0x60);
	snprintf(o.item, sizeof(o.item), "book");
	snprintf(o.out, sizeof(o.out), "/tmp/book.out");
	ck_assert(wstore_key_offer_put(s, &o));
	ck_assert(wstore_key_offer_set(s, o.channel_id, o.order_ref, WKO_PAID, NULL, 0));
	wstore_close(s);
	sql(key_offers_v1);			  /* back to the old table, the row in it */
	for (int round = 0; round < 2; round++) { /* widened once; the second open keeps it */
		s = wstore_open(path, &test_clock, err, sizeof(err));
		ck_assert_msg(s != NULL, "%s", err);
		struct wkey_offer got;
		ck_assert(wstore_key_offer_get(s, o.channel_id, o.order_ref, &got));
		ck_assert_int_eq(got.state, round ? WKO_TOO_LATE : WKO_PAID);
		ck_assert_str_eq(got.item, "book");
		ck_assert_uint_eq(got.deadline, 99);
		uint8_t want_hash[MP_HASH_LEN], got_hash[MP_HASH_LEN];
		mp_stmt_hash(o.offer, want_hash);
		mp_stmt_hash(got.offer, got_hash);
		ck_assert_mem_eq(got_hash, want_hash, MP_HASH_LEN);
		wkey_offer_clear(&got);
		ck_assert(
		    wstore_key_offer_set(s, o.channel_id, o.order_ref, WKO_TOO_LATE, NULL, 0));
		wstore_close(s);
	}
	mp_stmt_free(o.offer);
}
END_TEST

/* key_offers as walletd created it with a bad_key_proof column and CHECK state BETWEEN 0 AND
 * LAST: 7 before state CANCELLED, 8 before state PROOF_REFUSED. */
#define KEY_OFFERS_WITH_PROOF(NAME, LAST)                                                          \
	"CREATE TABLE " NAME " ("                                                                  \
	"  channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"                              \
	"  order_ref BLOB NOT NULL CHECK (length(order_ref) = 16),"                                \
	"  offer BLOB NOT NULL, custody BLOB,"                                                     \
	"  prefix BLOB NOT NULL CHECK (length(prefix) = 8),"                                       \
	"  item TEXT NOT NULL, out TEXT NOT NULL,"                                                 \
	"  size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,"                                    \
	"  chunks INTEGER NOT NULL, deadline INTEGER NOT NULL,"                                    \
	"  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND " LAST "),"                           \
	"  key BLOB CHECK (key IS NULL OR length(key) = 32),"                                      \
	"  refunded INTEGER NOT NULL DEFAULT 0,"                                                   \
	"  stored_at INTEGER NOT NULL,"                                                            \
	"  bad_key_proof BLOB CHECK (bad_key_proof IS NULL OR state IN (3, 4, 6, 7)),"             \
	"  PRIMARY KEY (channel_id, order_ref));"                                                  \
	"INSERT INTO " NAME " SELECT * FROM key_offers;"                                           \
	"DROP TABLE key_offers;"                                                                   \
	"ALTER TABLE " NAME " RENAME TO key_offers;"
static const char key_offers_v2[] = KEY_OFFERS_WITH_PROOF("key_offers_v2", "7");
static const char key_offers_v3[] = KEY_OFFERS_WITH_PROOF("key_offers_v3", "8");

/* A table of the second shape is widened for CANCELLED, keeping a stored BadKeyProof; a
 * CANCELLED offer never becomes PAYING, an OFFERED one does. */
START_TEST(old_key_offers_widened_for_cancelled)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct wkey_offer a = {.channel_id = {1}, .order_ref = {2}, .chunks = 1, .deadline = 99};
	struct wkey_offer b = a;
	b.order_ref[0] = 3;
	a.offer = b.offer = stmt(15, 0x61);
	a.size = b.size = 10;
	a.chunk_size = b.chunk_size = 1024;
	snprintf(a.item, sizeof(a.item), "book");
	snprintf(b.item, sizeof(b.item), "film");
	ck_assert(wstore_key_offer_put(s, &a) && wstore_key_offer_put(s, &b));
	const uint8_t proof[3] = {7, 8, 9};
	ck_assert(wstore_key_offer_bad_key(s, a.channel_id, a.order_ref, proof, sizeof(proof)));
	wstore_close(s);
	sql(key_offers_v2);
	for (int round = 0; round < 2; round++) { /* widened once; the second open keeps it */
		s = wstore_open(path, &test_clock, err, sizeof(err));
		ck_assert_msg(s != NULL, "%s", err);
		struct wkey_offer got;
		ck_assert(wstore_key_offer_get(s, a.channel_id, a.order_ref, &got));
		ck_assert_int_eq(got.state, WKO_KEY_BAD);
		ck_assert_uint_eq(got.proof_len, sizeof(proof));
		ck_assert_mem_eq(got.proof, proof, sizeof(proof));
		wkey_offer_clear(&got);
		ck_assert(wstore_key_offer_get(s, b.channel_id, b.order_ref, &got));
		ck_assert_int_eq(got.state, round ? WKO_CANCELLED : WKO_OFFERED);
		ck_assert_str_eq(got.item, "film");
		wkey_offer_clear(&got);
		ck_assert(
		    wstore_key_offer_set(s, b.channel_id, b.order_ref, WKO_CANCELLED, NULL, 0));
		/* A cancelled offer is never paid: PAYING only from OFFERED. */
		ck_assert(!wstore_key_offer_paying(s, b.channel_id, b.order_ref));
		enum wkey_offer_state st;
		ck_assert_int_eq(wstore_key_offer_state(s, b.channel_id, b.order_ref, &st), 1);
		ck_assert_int_eq(st, WKO_CANCELLED);
		wstore_close(s);
	}
	struct wkey_offer c = a;
	c.order_ref[0] = 4;
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	enum wkey_offer_state st;
	ck_assert_int_eq(wstore_key_offer_state(s, c.channel_id, c.order_ref, &st), 0);
	ck_assert(wstore_key_offer_put(s, &c));
	ck_assert(wstore_key_offer_paying(s, c.channel_id, c.order_ref));
	ck_assert_int_eq(wstore_key_offer_state(s, c.channel_id, c.order_ref, &st), 1);
	ck_assert_int_eq(st, WKO_PAYING);
	wstore_close(s);
	mp_stmt_free(a.offer);
}
END_TEST

/* A table of the third shape is widened for PROOF_REFUSED, keeping the stored BadKeyProof
 * (kept with that state too). */
START_TEST(old_key_offers_widened_for_proof_refused)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	struct wkey_offer a = {.channel_id = {1}, .order_ref = {2}, .chunks = 1, .deadline = 99};
	a.offer = stmt(15, 0x62);
	a.size = 10;
	a.chunk_size = 1024;
	snprintf(a.item, sizeof(a.item), "book");
	ck_assert(wstore_key_offer_put(s, &a));
	const uint8_t proof[3] = {7, 8, 9};
	ck_assert(wstore_key_offer_bad_key(s, a.channel_id, a.order_ref, proof, sizeof(proof)));
	wstore_close(s);
	sql(key_offers_v3);
	for (int round = 0; round < 2; round++) { /* widened once; the second open keeps it */
		s = wstore_open(path, &test_clock, err, sizeof(err));
		ck_assert_msg(s != NULL, "%s", err);
		struct wkey_offer got;
		ck_assert(wstore_key_offer_get(s, a.channel_id, a.order_ref, &got));
		ck_assert_int_eq(got.state, round ? WKO_PROOF_REFUSED : WKO_KEY_BAD);
		ck_assert_uint_eq(got.proof_len, sizeof(proof));
		ck_assert_mem_eq(got.proof, proof, sizeof(proof));
		wkey_offer_clear(&got);
		ck_assert(
		    wstore_key_offer_set(s, a.channel_id, a.order_ref, WKO_PROOF_REFUSED, NULL, 0));
		wstore_close(s);
	}
	ck_assert_str_eq(wkey_offer_state_name(WKO_PROOF_REFUSED), "PROOF_REFUSED");
	mp_stmt_free(a.offer);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("walletd_store_transfer");
	TCase *tc = tcase_create("store_transfer");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, v2_store_migrates_and_transfers_out);
	tcase_add_test(tc, offer_accept_and_claim_survive_reopening);
	tcase_add_test(tc, old_key_offers_widened_for_too_late);
	tcase_add_test(tc, old_key_offers_widened_for_cancelled);
	tcase_add_test(tc, old_key_offers_widened_for_proof_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
