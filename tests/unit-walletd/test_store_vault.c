/* The wallet store encrypted (walletd/store_vault.c): a new store sealed from the start; a plain
 * store encrypted in one transaction with every channel still spendable; refused without the
 * passphrase or with a wrong one; a sealed value moved to another row or a plain value put in
 * its place refused; the passphrase changed by re-wrapping the data key only; none of the
 * secrets' bytes in the store's files. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_run.h"
#include "clock.h"
#include "stmt.h"
#include "store.h"
#include "vault.h"
#include "wallet.h"

#define LOG2_N_TEST 10

static struct mp_clock test_clock;

#define DIR_TEMPLATE "/tmp/mp-test-wvault-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];

static const char pass[] = "a long wallet passphrase";

/* The secrets the tests store: every one of them must come back, and none be in the files. */
static uint8_t account_seed[32], chain_seed[2][32], owner_seed[2][32], words[2][3][32],
    offer_chain_seed[32], offer_owner_seed[32];
static uint8_t channel_id[2][16], offer_id[16], offer_key[16];
static const uint32_t word_index[3] = {0, 16, 40};

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/w.db", dir);
	ck_assert(mp_random_bytes(account_seed, 32) && mp_random_bytes(&chain_seed[0][0], 64) &&
		  mp_random_bytes(&owner_seed[0][0], 64) &&
		  mp_random_bytes(&words[0][0][0], sizeof(words)) &&
		  mp_random_bytes(offer_chain_seed, 32) && mp_random_bytes(offer_owner_seed, 32));
	memset(channel_id[0], 0xc0, 16);
	memset(channel_id[1], 0xc1, 16);
	memset(offer_id, 0xd0, 16);
	memset(offer_key, 0xd1, 16);
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
}

/* pass_or_null: the passphrase given at the start. NULL if refused (err says why). */
static struct wstore *open_with(const char *p)
{
	struct wstore *s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	if (wstore_unlock(s, p, p ? strlen(p) : 0, LOG2_N_TEST, err, sizeof(err)))
		return s;
	wstore_close(s);
	return NULL;
}

static struct wchannel *channel(int i, struct mp_key *account)
{
	struct wchannel *ch = calloc(1, sizeof(*ch));
	ck_assert_ptr_nonnull(ch);
	memcpy(ch->channel_id, channel_id[i], 16);
	memset(ch->issue_req_id, 0xe0 + i, 16);
	ch->n = 40;
	ch->days = 1;
	ch->interval = 16;
	ch->unit_value = 1;
	memcpy(ch->currency, "EUR", 4);
	ch->state = WCH_ISSUING;
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){MP_ID_LEN, ch->issue_req_id};
	ch->request = mp_stmt_sign(account, MP_STMT_ISSUE_REQUEST, &r.base);
	ck_assert_ptr_nonnull(ch->request);
	return ch;
}

/* The account seed, two channels with their checkpoints and an offer, stored. */
static void fill(struct wstore *s)
{
	struct mp_key account;
	uint8_t seed[32];
	ck_assert(mp_key_generate(&account, seed));
	ck_assert(wstore_set_account_seed(s, account_seed));
	for (int i = 0; i < 2; i++) {
		struct wchannel *ch = channel(i, &account);
		ck_assert(wstore_channel_insert(s, ch, chain_seed[i], owner_seed[i]));
		for (int k = 0; k < 3; k++)
			ck_assert(
			    wstore_checkpoint_put(s, channel_id[i], word_index[k], words[i][k]));
		wallet_channel_free(ch);
	}
	uint8_t offer_bytes[3] = {1, 2, 3};
	struct wstore_offer o = {.len = 20, .interval = 16, .offer = offer_bytes, .offer_len = 3};
	memcpy(o.channel_id, offer_id, 16);
	memcpy(o.chain_key, offer_key, 16);
	ck_assert(wstore_offer_insert(s, &o, offer_chain_seed, offer_owner_seed));
	ck_assert(wstore_checkpoint_put(s, offer_key, 20, words[0][2]));
	mp_key_free(&account);
}

/* Everything a payment needs comes back: the account seed, the owner seeds, every checkpoint. */
static void everything_comes_back(struct wstore *s)
{
	uint8_t got[32];
	ck_assert_int_eq(wstore_account_seed(s, got), 1);
	ck_assert_mem_eq(got, account_seed, 32);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(wstore_owner_seed(s, channel_id[i], got), 1);
		ck_assert_mem_eq(got, owner_seed[i], 32);
		for (int k = 0; k < 3; k++) {
			ck_assert(wstore_checkpoint_get(s, channel_id[i], word_index[k], got));
			ck_assert_mem_eq(got, words[i][k], 32);
		}
	}
	ck_assert_int_eq(wstore_offer_seed(s, offer_id, got), 1);
	ck_assert_mem_eq(got, offer_owner_seed, 32);
	ck_assert(wstore_checkpoint_get(s, offer_key, 20, got));
	ck_assert_mem_eq(got, words[0][2], 32);
}

/* How many of the secrets' byte strings the store's files hold. */
static int secrets_in_files(void)
{
	const uint8_t *secrets[] = {
	    account_seed,     chain_seed[0],	chain_seed[1], owner_seed[0], owner_seed[1],
	    offer_chain_seed, offer_owner_seed, words[0][0],   words[0][1],   words[0][2],
	    words[1][0],      words[1][1],	words[1][2]};
	static const char *const suffixes[] = {"", "-wal", "-journal"};
	int found = 0;
	for (size_t f = 0; f < 3; f++) {
		char p[sizeof(path) + 8];
		snprintf(p, sizeof(p), "%s%s", path, suffixes[f]);
		FILE *file = fopen(p, "rb");
		if (!file)
			continue;
		static uint8_t buf[1 << 20];
		size_t n = fread(buf, 1, sizeof(buf), file);
		fclose(file);
		for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
			found += memmem(buf, n, secrets[i], 32) != NULL;
	}
	return found;
}

static void sql(const char *text)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(db, text, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", text,
		      msg ? msg : "");
	sqlite3_close(db);
}

START_TEST(new_store_is_sealed_from_the_start)
{
	struct wstore *s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(wstore_is_sealed(s));
	fill(s);
	everything_comes_back(s);
	wstore_close(s);
	ck_assert_int_eq(secrets_in_files(), 0);
	s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	everything_comes_back(s);
	wstore_close(s);
}
END_TEST

START_TEST(refused_without_or_with_a_wrong_passphrase)
{
	struct wstore *s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	fill(s);
	wstore_close(s);
	ck_assert_ptr_null(open_with(NULL));
	ck_assert_msg(strstr(err, "the store is encrypted; set [wallet] passphrase_file"), "%s",
		      err);
	ck_assert_ptr_null(open_with("a long wallet passphrasE"));
	ck_assert_msg(strstr(err, "wrong passphrase"), "%s", err);
	s = open_with(pass); /* the refusals changed nothing */
	ck_assert_msg(s != NULL, "%s", err);
	everything_comes_back(s);
	wstore_close(s);
}
END_TEST

START_TEST(plain_store_migrates_and_stays_spendable)
{
	struct wstore *s = open_with(NULL);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(!wstore_is_sealed(s));
	fill(s);
	wstore_close(s);
	ck_assert_int_gt(secrets_in_files(), 0); /* the check below can see them */
	s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(wstore_is_sealed(s));
	ck_assert_int_eq(secrets_in_files(), 0); /* at once, not only after a clean stop */
	everything_comes_back(s);
	wstore_close(s);
	ck_assert_int_eq(secrets_in_files(), 0);
	s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	everything_comes_back(s);
	/* New secrets after the migration are sealed too. */
	uint8_t w[32];
	ck_assert(mp_random_bytes(w, sizeof(w)));
	ck_assert(wstore_checkpoint_put(s, channel_id[1], 32, w));
	wstore_close(s);
	ck_assert_ptr_null(open_with(NULL));
}
END_TEST

/* A plain store whose encryption fails half way (a damaged secret) is left as it was. */
START_TEST(failed_migration_leaves_the_plain_store)
{
	struct wstore *s = open_with(NULL);
	ck_assert_msg(s != NULL, "%s", err);
	fill(s);
	wstore_close(s);
	sql("INSERT INTO offers (channel_id, chain_key, chain_seed, nonce, owner_seed, len, "
	    "checkpoint_interval, offer, created_at) VALUES (zeroblob(16), randomblob(16), "
	    "randomblob(60), zeroblob(16), randomblob(32), 1, 1, x'00', 0)");
	ck_assert_ptr_null(open_with(pass));
	ck_assert_msg(strstr(err, "cannot encrypt the store"), "%s", err);
	s = open_with(NULL);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(!wstore_is_sealed(s));
	everything_comes_back(s);
	wstore_close(s);
}
END_TEST

START_TEST(sealed_value_moved_or_replaced_is_refused)
{
	struct wstore *s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	fill(s);
	wstore_close(s);
	/* Channel 1's owner seed replaced by channel 0's (a valid ciphertext, another row). */
	sql("UPDATE channels SET owner_seed = (SELECT owner_seed FROM channels WHERE channel_id = "
	    "x'c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0') WHERE channel_id = "
	    "x'c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1';"
	    "UPDATE checkpoints SET word = (SELECT word FROM checkpoints WHERE idx = 0 AND "
	    "channel_id = x'c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0') WHERE idx = 16 AND channel_id = "
	    "x'c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0';"
	    "UPDATE meta SET value = zeroblob(32) WHERE key = 'account_seed'");
	s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	uint8_t got[32];
	ck_assert_int_eq(wstore_owner_seed(s, channel_id[1], got), -1);
	ck_assert_int_eq(wstore_owner_seed(s, channel_id[0], got), 1);
	ck_assert(!wstore_checkpoint_get(s, channel_id[0], 16, got));
	ck_assert(wstore_checkpoint_get(s, channel_id[0], 0, got));
	ck_assert_int_eq(wstore_account_seed(s, got), -1); /* a plain value in a sealed store */
	wstore_close(s);
}
END_TEST

START_TEST(passphrase_changed_by_rewrapping)
{
	struct wstore *s = open_with(pass);
	ck_assert_msg(s != NULL, "%s", err);
	fill(s);
	struct wvault_kdf kdf;
	uint8_t kek[WVAULT_KEY_LEN];
	const char *fresh = "another passphrase altogether";
	ck_assert(wvault_kdf_new(&kdf, LOG2_N_TEST));
	ck_assert(wvault_derive(&kdf, fresh, strlen(fresh), kek, err, sizeof(err)));
	ck_assert(wstore_rewrap(s, &kdf, kek));
	wstore_close(s);
	ck_assert_ptr_null(open_with(pass));
	ck_assert_msg(strstr(err, "wrong passphrase"), "%s", err);
	s = open_with(fresh);
	ck_assert_msg(s != NULL, "%s", err);
	everything_comes_back(s);
	wstore_close(s);
	/* A plain store has no data key to re-wrap. */
	teardown();
	setup();
	s = open_with(NULL);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert(!wstore_rewrap(s, &kdf, kek));
	wstore_close(s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("walletd_store_vault");
	TCase *tc = tcase_create("store_vault");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, new_store_is_sealed_from_the_start);
	tcase_add_test(tc, refused_without_or_with_a_wrong_passphrase);
	tcase_add_test(tc, plain_store_migrates_and_stays_spendable);
	tcase_add_test(tc, failed_migration_leaves_the_plain_store);
	tcase_add_test(tc, sealed_value_moved_or_replaced_is_refused);
	tcase_add_test(tc, passphrase_changed_by_rewrapping);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
