/* The wallet store encrypted under a passphrase (docs/wallet-store.md) with the real daemons:
 * w1 pays from a plain store, is restarted with [wallet] passphrase_file (refused while the file
 * is readable by others) and its store is encrypted at the start: none of the seeds or chain words
 * read from the plain store are left in the store's file or its WAL, and the channel pays on.
 * w2 is encrypted too before it takes a channel w1 gives it (its offer's secrets sealed, copied
 * sealed to the received channel) and pays with it. w1's first channel is closed early and its
 * refund paid; w1 restarted with a wrong passphrase is refused and says so, with the right one it
 * pays on; passphrase.change re-wraps the data key under a new passphrase, which then opens it
 * and the old one does not. The audit stays clean. */
#include <check.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_redeem.h"
#include "../check_run.h"

static struct net net;
static char m1_hex[64], m1_ep[128], account_w1[64];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account_w1, sizeof(account_w1), "%s", json_str(r, "account_id"));
	json_decref(r);
	json_decref(admin_ok(&net, "w2", "register", NULL));
}

static void teardown_net(void)
{
	net_down(&net);
}

static void pay(const char *who, const char *channel, unsigned units)
{
	char params[400], order[64];
	net_new_order(&net, "m1", units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, m1_ep, units, order);
	json_decref(admin_ok(&net, who, "pay", params));
}

/* ---- the secrets of a plain store, and the files searched for them ---- */

#define MAX_SECRETS 64
static uint8_t secrets[MAX_SECRETS][32];
static size_t n_secrets;

static void collect(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW && n_secrets < MAX_SECRETS) {
		ck_assert_int_eq(sqlite3_column_bytes(st, 0), 32);
		memcpy(secrets[n_secrets++], sqlite3_column_blob(st, 0), 32);
	}
	sqlite3_finalize(st);
}

/* With `who` stopped: every secret its plain store holds. */
static void collect_plain_secrets(const char *who)
{
	char rel[64], db_path[700];
	snprintf(rel, sizeof(rel), "%s/wallet.db", who);
	net_path(&net, rel, db_path, sizeof(db_path));
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	size_t before = n_secrets;
	collect(db, "SELECT value FROM meta WHERE key = 'account_seed'");
	collect(db, "SELECT chain_seed FROM channels UNION ALL SELECT owner_seed FROM channels");
	/* The word at 0 is the chain's root: public, in the signed IssueRequest. */
	collect(db, "SELECT word FROM checkpoints WHERE idx > 0");
	sqlite3_close(db);
	ck_assert_uint_ge(n_secrets - before, 4); /* account, chain, owner, a checkpoint or more */
}

/* How many of the collected secrets `who`'s store file and WAL hold (read while it runs). */
static size_t secrets_in_store(const char *who)
{
	static const char *const suffixes[] = {"", "-wal"};
	size_t found = 0;
	for (size_t f = 0; f < 2; f++) {
		char rel[64], p[700];
		snprintf(rel, sizeof(rel), "%s/wallet.db%s", who, suffixes[f]);
		net_path(&net, rel, p, sizeof(p));
		FILE *file = fopen(p, "rb");
		if (!file)
			continue;
		static uint8_t buf[8 << 20];
		size_t n = fread(buf, 1, sizeof(buf), file);
		fclose(file);
		for (size_t i = 0; i < n_secrets; i++)
			found += memmem(buf, n, secrets[i], 32) != NULL;
	}
	return found;
}

/* ---- the passphrase ---- */

static void write_passphrase(const char *who, const char *text, mode_t mode)
{
	char rel[64], p[700];
	snprintf(rel, sizeof(rel), "%s/passphrase", who);
	net_path(&net, rel, p, sizeof(p));
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* Stop `who`, point [wallet] passphrase_file at its passphrase file, start it: the exit status
 * of the start (0: it serves). */
static int restart_with_passphrase(const char *who)
{
	char rel[64], p[700], cfg[700];
	snprintf(rel, sizeof(rel), "%s/passphrase", who);
	net_path(&net, rel, p, sizeof(p));
	snprintf(rel, sizeof(rel), "%s/config.ini", who);
	net_path(&net, rel, cfg, sizeof(cfg));
	ck_assert_int_eq(net_cmd(&net, "kill", who), 0);
	FILE *f = fopen(cfg, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[wallet]\npassphrase_file = %s\n", p);
	fclose(f);
	return net_cmd(&net, "start", who);
}

static int restart(const char *who)
{
	ck_assert_int_eq(net_cmd(&net, "kill", who), 0);
	return net_cmd(&net, "start", who);
}

static bool w1_refunded(void *arg)
{
	json_t *r = admin_ok(&net, "w1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	bool done = false;
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), arg))
			done = !strcmp(json_str(json_array_get(list, i), "state"), "REFUNDED");
	json_decref(r);
	return done;
}

/* B offers, w1 sends the rest of channel, B accepts. */
static void transfer(const char *channel)
{
	char params[8192];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"len\":60}", channel);
	json_t *r = admin_ok(&net, "w2", "transfer.offer", params);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 json_str(r, "offer"));
	json_decref(r);
	r = admin_ok(&net, "w1", "transfer.send", params);
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", json_str(r, "bundle"));
	json_decref(r);
	r = admin_ok(&net, "w2", "transfer.accept", params);
	ck_assert_str_eq(json_str(r, "channel_id"), channel);
	ck_assert_int_eq(json_int(r, "seg_seq"), 1);
	json_decref(r);
}

START_TEST(encrypted_wallet_pays_transfers_and_refunds)
{
	char a[64], b[64], c[64];
	net_fund(&net, account_w1, 1000);
	net_wallet_issue(&net, "w1", m1_hex, 40, 1, a, sizeof(a));
	pay("w1", a, 2);

	/* w1's plain store holds its secrets; a passphrase file others may read is refused. */
	ck_assert_int_eq(net_cmd(&net, "kill", "w1"), 0);
	collect_plain_secrets("w1");
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	ck_assert_uint_eq(secrets_in_store("w1"), n_secrets); /* the search sees them */
	write_passphrase("w1", "w1's long passphrase\n", 0644);
	ck_assert_int_ne(restart_with_passphrase("w1"), 0);
	ck_assert(log_contains(&net, "w1", "lets other users read"));

	/* Private: the store is encrypted at the start; no secret left in its files. */
	write_passphrase("w1", "w1's long passphrase\n", 0600);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	ck_assert(log_contains(&net, "w1", "encrypted under [wallet] passphrase_file"));
	ck_assert_uint_eq(secrets_in_store("w1"), 0);
	pay("w1", a, 3); /* the migrated channel pays on */

	/* w2 encrypted before it takes a channel: its offer's secrets are sealed. */
	write_passphrase("w2", "w2 passphrase, another one", 0600);
	ck_assert_int_eq(restart_with_passphrase("w2"), 0);
	net_wallet_issue(&net, "w1", m1_hex, 60, 1, b, sizeof(b));
	pay("w1", b, 4);
	transfer(b);
	pay("w2", b, 5); /* segment 1, with the sealed secrets copied from the offer */
	ck_assert_int_eq(restart("w2"), 0);
	pay("w2", b, 1);

	/* A's early close at its holder: the refund is paid. */
	net_wallet_issue(&net, "w1", m1_hex, 20, 1, c, sizeof(c));
	pay("w1", c, 1);
	char params[200];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", a);
	json_decref(admin_ok(&net, "w1", "close", params));
	ck_assert_msg(wait_for(w1_refunded, a, 15000), "w1 got no early refund");

	/* A wrong passphrase is refused at the start, naming the cause; the right one pays on. */
	write_passphrase("w1", "w1's long passphrasE\n", 0600);
	ck_assert_int_ne(restart("w1"), 0);
	ck_assert(log_contains(&net, "w1", "wrong passphrase"));
	write_passphrase("w1", "w1's long passphrase\n", 0600);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	pay("w1", c, 2);
	ck_assert_uint_eq(secrets_in_store("w1"), 0);

	/* A new passphrase: the data key re-wrapped (on a worker) under the file's new content;
	 * the old one no longer opens the store, the new one does. A plain wallet has none. */
	write_passphrase("w1", "w1's new passphrase", 0600);
	json_t *r = admin_ok(&net, "w1", "passphrase.change", NULL);
	ck_assert(json_is_true(json_object_get(r, "rewrapped")));
	ck_assert_int_eq(json_int(r, "log2_n"), 17); /* docs/wallet-store.md: N = 2^17 */
	json_decref(r);
	ck_assert_int_eq(restart("w1"), 0);
	pay("w1", c, 1);
	write_passphrase("w1", "w1's long passphrase\n", 0600);
	ck_assert_int_ne(restart("w1"), 0);
	write_passphrase("w1", "w1's new passphrase", 0600);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	char err[512];
	ck_assert_int_eq(net_cmd(&net, "wallet", "w3"), 0);
	ck_assert_ptr_null(admin(&net, "w3", "passphrase.change", NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "the store is not encrypted"), "%s", err);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wallet_vault");
	TCase *tc = tcase_create("wallet_vault");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, encrypted_wallet_pays_transfers_and_refunds);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
