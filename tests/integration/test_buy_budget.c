/* Buying with a budget (docs/goods.md "Buying with a budget") against the real daemons
 * (deploy/mpnet: brokerd, merchant m1 restarted with a catalogue, walletd w1 restarted with
 * [wallet] auto_issue_budget):
 * - without a budget (the default) a buy with no channel is refused as before, nothing issued;
 * - with one, a buy with no channel issues exactly one channel at m1 (sized by the rule),
 *   buys byte for byte on it and says so in its progress line; a second buy reuses it; a buy
 *   whose channel would go over the budget (or the call's `budget`) is refused, nothing issued
 *   and nothing paid; the committed sum is the same after a restart (SIGKILL) of the wallet;
 * - a buy whose issue is cut (brokerd down) leaves one ISSUING channel, counted once: the
 *   next buy resumes that issue instead of issuing another, and a wallet killed with its
 *   issue cut finishes it at start; a buy while an earlier buy's issue is on its way (brokerd
 *   stopped) is refused, nothing issued;
 * - by key release: a buy with no channel issues one and pays its opening unit before the
 *   Offer, the file byte for byte.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "harness_goods.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "../check_run.h"

static struct net net;
static char goods[700], m1_hex[64], m1_ep[128], account[64];

#define SONG_SIZE   (5 * 1024 - 100) /* 5 chunks of 1 KiB */
#define SONG_PRICE  13		     /* whole */
#define METER_SIZE  3000	     /* 3 chunks of 1 KiB */
#define METER_PRICE 3		     /* per chunk: 9 in all */
#define NOVEL_SIZE  4000	     /* 4 chunks of 1 KiB, by key release */
#define NOVEL_PRICE 25
#define FUNDS	    100000

static void setup_net(void)
{
	setenv("MP_WALLET_IDLE_TIMEOUT", "10", 1);
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	char cat_path[760];
	snprintf(goods, sizeof(goods), "%s/goods", net.dir);
	snprintf(cat_path, sizeof(cat_path), "%s/catalogue.ini", net.dir);
	ck_assert_int_eq(mkdir(goods, 0700), 0);
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	goods_write(goods, "meter.bin", METER_SIZE, 2);
	goods_write(goods, "novel.txt", NOVEL_SIZE, 3);
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[song]\nfile = %s/song.ogg\nprice = %d\nchunk_size = 1024\n"
		"[meter]\nfile = %s/meter.bin\nprice = %d\nmetered = true\nchunk_size = 1024\n"
		"[novel]\nfile = %s/novel.txt\nprice = %d\nchunk_size = 1024\ndelivery = key\n",
		goods, SONG_PRICE, goods, METER_PRICE, goods, NOVEL_PRICE);
	fclose(f);
	char setting[800];
	snprintf(setting, sizeof(setting), "catalogue = %s", cat_path);
	net_restart_with(&net, "m1", "merchant", setting);
	json_t *w = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(w, "account_id"));
	net_fund(&net, account, FUNDS);
	json_decref(w);
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- helpers ---- */

static size_t channel_count(void)
{
	json_t *all = admin_ok(&net, "w1", "channels", NULL);
	size_t n = json_array_size(json_object_get(all, "channels"));
	json_decref(all);
	return n;
}

/* The wallet's `budget`: committed and left, and the count of its channels. */
static void budget_is(int64_t cap, int64_t committed, size_t channels)
{
	json_t *b = admin_ok(&net, "w1", "budget", NULL);
	ck_assert_int_eq(json_int(b, "budget"), cap);
	ck_assert_int_eq(json_int(b, "committed"), committed);
	ck_assert_int_eq(json_int(b, "left"), cap - committed);
	ck_assert_uint_eq(json_array_size(json_object_get(b, "channels")), channels);
	json_decref(b);
}

/* buy ITEM into DIR/OUT at m1 by merchant_id, with extra JSON members; NULL and err if refused. */
static json_t *buy_at_m1(const char *item, const char *out, const char *extra, char *err,
			 size_t errlen)
{
	char params[2000];
	snprintf(params, sizeof(params),
		 "{\"item\":\"%s\",\"out\":\"%s/%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\"%s}",
		 item, net.dir, out, m1_hex, m1_ep, extra);
	return admin(&net, "w1", "buy", params, err, errlen);
}

static json_t *buy_ok(const char *item, const char *out, const char *extra)
{
	char err[2048];
	json_t *r = buy_at_m1(item, out, extra, err, sizeof(err));
	ck_assert_msg(r != NULL, "buy %s: %s", item, err);
	return r;
}

static void buy_refused(const char *item, const char *out, const char *extra, const char *want)
{
	char err[2048], path[800];
	json_t *r = buy_at_m1(item, out, extra, err, sizeof(err));
	ck_assert_msg(r == NULL, "buy %s %s was answered", item, extra);
	ck_assert_msg(strstr(err, want), "buy %s %s: expected '%s' in: %s", item, extra, want, err);
	snprintf(path, sizeof(path), "%s/%s", net.dir, out);
	ck_assert(!goods_exists(path));
}

static void same_as_source(const char *out, const char *source)
{
	char a[800], b[800];
	snprintf(a, sizeof(a), "%s/%s", net.dir, out);
	snprintf(b, sizeof(b), "%s/%s", goods, source);
	goods_same_file(a, b);
}

/* Wait (at most 60 s) until every channel `budget` lists is ACTIVE. */
static void wait_all_active(void)
{
	for (int tries = 0;; tries++) {
		json_t *b = admin_ok(&net, "w1", "budget", NULL);
		size_t i, active = 0;
		json_t *row, *rows = json_object_get(b, "channels");
		json_array_foreach(rows, i, row)
		{
			active += !strcmp(json_str(row, "state"), "ACTIVE");
		}
		bool done = active == json_array_size(rows);
		json_decref(b);
		if (done)
			return;
		ck_assert_msg(tries < 600, "the auto-issued channels did not become ACTIVE");
		usleep(100000);
	}
}

/* ---- the budget ---- */

START_TEST(buy_within_a_budget)
{
	/* No budget (the default): today's refusal, nothing issued. */
	buy_refused("song", "song0.out", ",\"max_price\":13", "no ACTIVE channel of this wallet");
	ck_assert_uint_eq(channel_count(), 0);
	net_restart_with(&net, "w1", "wallet", "auto_issue_budget = 50\nauto_issue_channel = 30");
	budget_is(50, 0, 0);
	/* Refusals before anything is issued: no max_price, the call's budget too small or above
	 * the configured one. */
	buy_refused("song", "song1.out", "", "give max_price");
	buy_refused("song", "song1.out", ",\"max_price\":13,\"budget\":20", "over budget");
	buy_refused("song", "song1.out", ",\"max_price\":13,\"budget\":51",
		    "above [wallet] auto_issue_budget 50");
	ck_assert_uint_eq(channel_count(), 0);
	budget_is(50, 0, 0);
	ck_assert_int_eq(net_balance(&net, account), FUNDS);
	/* The first buy issues one channel of 30 (the least channel; the song needs 14) and buys
	 * on it; mpctl prints the progress line that says so. */
	char cmd[3000], res[800];
	snprintf(res, sizeof(res), "%s/song1.res", net.dir);
	snprintf(cmd, sizeof(cmd),
		 "'%s/tools/mpctl' -s '%s/w1/admin.sock' buy item=song out='%s/song1.out' "
		 "merchant_id=%s endpoint=%s max_price=13 >'%s' 2>&1",
		 net_build_root(), net.dir, net.dir, m1_hex, m1_ep, res);
	ck_assert_int_eq(run_without_our_fds(cmd), 0);
	size_t len;
	char *text = goods_slurp(res, &len);
	ck_assert_msg(strstr(text, "no channel fits; issuing channel") &&
			  strstr(text, "n 30 x unit_value 1 = 30 escrowed") &&
			  strstr(text, "\"issued\": true"),
		      "mpctl buy: %s", text);
	free(text);
	same_as_source("song1.out", "song.ogg");
	ck_assert_uint_eq(channel_count(), 1);
	json_t *b = admin_ok(&net, "w1", "budget", NULL);
	char ch[64];
	json_t *row = json_array_get(json_object_get(b, "channels"), 0);
	snprintf(ch, sizeof(ch), "%s", json_str(row, "channel_id"));
	ck_assert_str_eq(json_str(row, "merchant_id"), m1_hex);
	ck_assert_str_eq(json_str(row, "item"), "song");
	ck_assert_str_eq(json_str(row, "state"), "ACTIVE");
	ck_assert_int_eq(json_int(row, "escrow"), 30);
	json_decref(b);
	budget_is(50, 30, 1);
	ck_assert_int_eq(goods_spent_value(&net, "w1", ch), SONG_PRICE);
	ck_assert_int_eq(net_balance(&net, account), FUNDS - 30);
	/* A second buy fits the channel's rest (17): reused, nothing issued. */
	json_t *r = buy_ok("meter", "meter.out", ",\"max_price\":9");
	ck_assert_str_eq(json_str(r, "channel_id"), ch);
	ck_assert(json_is_false(json_object_get(r, "issued")));
	json_decref(r);
	same_as_source("meter.out", "meter.bin");
	ck_assert_int_eq(goods_spent_value(&net, "w1", ch), SONG_PRICE + 3 * METER_PRICE);
	budget_is(50, 30, 1);
	/* The rest (8) does not pay the song again, and another channel of 30 is over what is
	 * left (20): refused, nothing issued, nothing paid. */
	buy_refused("song", "song2.out", ",\"max_price\":13", "over budget");
	ck_assert_uint_eq(channel_count(), 1);
	ck_assert_int_eq(goods_spent_value(&net, "w1", ch), SONG_PRICE + 3 * METER_PRICE);
	/* A restart (SIGKILL) keeps what is committed. */
	ck_assert_int_eq(net_cmd(&net, "kill", "w1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	budget_is(50, 30, 1);
	buy_refused("song", "song2.out", ",\"max_price\":13", "20 this buy may commit");
	ck_assert_uint_eq(channel_count(), 1);
	ck_assert_int_eq(net_balance(&net, account), FUNDS - 30);
	net_audit_clean(&net);
}
END_TEST

/* ---- an issue cut on its way ---- */

/* With w1's two channels spent: a buy whose issue is on its way (brokerd stopped, the buy run
 * by a child) makes a second buy, of a caller that gave up waiting, refused: nothing issued.
 * Once brokerd goes on, the first buy ends on its channel, and the refused buy, asked again,
 * issues one of its own (each channel here is sized for one song). */
static void buy_while_issuing(void)
{
	net_signal(&net, "broker", SIGSTOP);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		char err[2048];
		json_t *r = buy_at_m1("song", "song3.out", ",\"max_price\":13", err, sizeof(err));
		_exit(r ? 0 : 1);
	}
	for (int tries = 0; channel_count() < 3; tries++) {
		ck_assert_msg(tries < 100, "the first buy issued no channel");
		usleep(100000);
	}
	buy_refused("song", "song4.out", ",\"max_price\":13", "being issued now");
	ck_assert_uint_eq(channel_count(), 3);
	budget_is(100, 42, 3);
	net_signal(&net, "broker", SIGCONT);
	int status = -1;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the first buy failed");
	same_as_source("song3.out", "song.ogg");
	json_t *r = buy_ok("song", "song4.out", ",\"max_price\":13"); /* a channel of its own */
	ck_assert(json_is_true(json_object_get(r, "issued")));
	json_decref(r);
	same_as_source("song4.out", "song.ogg");
	ck_assert_uint_eq(channel_count(), 4);
	budget_is(100, 56, 4);
	ck_assert_int_eq(net_balance(&net, account), FUNDS - 56);
}

START_TEST(issue_cut_is_resumed_not_repeated)
{
	net_restart_with(&net, "w1", "wallet", "auto_issue_budget = 100");
	/* brokerd down: the issue cannot finish; the channel stays ISSUING, counted once. */
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	buy_refused("song", "song1.out", ",\"max_price\":13", "is still ISSUING");
	ck_assert_uint_eq(channel_count(), 1);
	budget_is(100, 14, 1);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	/* The next buy resends that channel's request rather than issue another. */
	json_t *r = buy_ok("song", "song1.out", ",\"max_price\":13");
	ck_assert(json_is_true(json_object_get(r, "issued")));
	char ch[64];
	snprintf(ch, sizeof(ch), "%s", json_str(r, "channel_id"));
	json_decref(r);
	same_as_source("song1.out", "song.ogg");
	ck_assert_uint_eq(channel_count(), 1);
	budget_is(100, 14, 1);
	ck_assert_int_eq(goods_spent_value(&net, "w1", ch), SONG_PRICE);
	/* Cut again, then the wallet killed: at start it finishes the issue itself, and the buy
	 * after it uses that channel. */
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	buy_refused("song", "song2.out", ",\"max_price\":13", "is still ISSUING");
	ck_assert_int_eq(net_cmd(&net, "kill", "w1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	budget_is(100, 28, 2);
	wait_all_active(); /* walletd's own resend at start */
	r = buy_ok("song", "song2.out", ",\"max_price\":13");
	ck_assert_str_ne(json_str(r, "channel_id"), ch);
	ck_assert(json_is_false(json_object_get(r, "issued")));
	json_decref(r);
	same_as_source("song2.out", "song.ogg");
	ck_assert_uint_eq(channel_count(), 2);
	budget_is(100, 28, 2);
	ck_assert_int_eq(net_balance(&net, account), FUNDS - 28);
	buy_while_issuing();
	net_audit_clean(&net);
}
END_TEST

/* ---- by key release ---- */

START_TEST(buy_by_key_within_a_budget)
{
	net_restart_with(&net, "w1", "wallet", "auto_issue_budget = 100");
	/* A channel of 26: the opening unit, then the Offer's 25 units in one Pay. */
	json_t *r = buy_ok("novel", "novel.out", ",\"max_price\":25,\"delivery\":\"key\"");
	ck_assert(json_is_true(json_object_get(r, "issued")));
	ck_assert_int_eq(json_int(r, "after_index"), 1);
	ck_assert_int_eq(json_int(r, "pay_index"), 26);
	ck_assert_int_eq(json_int(r, "units_paid"), 26);
	char ch[64];
	snprintf(ch, sizeof(ch), "%s", json_str(r, "channel_id"));
	json_decref(r);
	same_as_source("novel.out", "novel.txt");
	json_t *c = goods_wallet_channel(&net, "w1", ch);
	ck_assert_int_eq(json_int(c, "n"), 26);
	ck_assert_int_eq(json_int(c, "last"), 26);
	json_decref(c);
	budget_is(100, 26, 1);
	ck_assert_int_eq(net_balance(&net, account), FUNDS - 26);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("buy_budget");
	TCase *tc = tcase_create("buy_budget");
	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, buy_within_a_budget);
	tcase_add_test(tc, issue_cut_is_resumed_not_repeated);
	tcase_add_test(tc, buy_by_key_within_a_budget);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
