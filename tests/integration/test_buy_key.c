/* Buying by key release (docs/goods.md "Key release") with walletd against the real daemons
 * (deploy/mpnet: brokerd, merchant m1 restarted with a catalogue, walletd w1):
 * - an honest purchase: a chunk item first (the channel then has paid units, which an Offer
 *   needs), then a key item: the Offer checked, the ciphertext fetched and checked, exactly
 *   ceil(price / unit_value) units paid in one Pay at pay_index, the key checked, the file equal
 *   to the source byte for byte, the offer KEYED in key_offers and no .sealed file left;
 *   an Offer on a channel without a paid unit is refused and nothing is paid;
 * - a merchant whose ciphertext does not match its Offer (MP_FAULT=offer_tamper_chunk,
 *   merchantd/fault.h): the wallet finds out before paying; nothing is paid; the unpaid Offer
 *   holds the channel at m1 until w1's next Open, where w1 cancels it (CANCELLED) and pays on;
 * - a merchant that withholds the key (MP_FAULT=key_withhold): the wallet has paid and says
 *   so; `dispute` before the deadline is refused by the broker (TOO_EARLY); after it the dispute
 *   is OPEN; with the merchant down past the broker's answer time the price is refunded to
 *   the wallet's account exactly once (REFUNDED, asked again: the same);
 * - a merchant that answers the dispute late but in time: restarted without the fault, its
 *   poller hands the key to the broker, and the wallet's next `dispute` gets the key through
 *   the broker and writes the file;
 * - a buyer who lets T_dispute pass: the broker refuses TOO_LATE, the offer is kept TOO_LATE
 *   and the wallet refuses to dispute it again; nothing is refunded;
 * - a merchant whose key matches key_hash but does not open its goods
 *   (MP_FAULT=offer_wrong_key): the wallet stores a proof (KEY_BAD), disputes with it after the
 *   deadline, and the sweep refunds the price exactly once.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "harness_goods.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "harness_peer.h"
#include "harness_settle.h"
#include "../check_run.h"

static struct net net;
static char goods[700], cat_path[760], m1_hex[64], m1_ep[128], account[64];

#define SONG_SIZE  (3 * 1024 - 10) /* 3 chunks of 1 KiB, the last shorter */
#define SONG_PRICE 3
#define BOOK_SIZE  (7 * 1024 + 5) /* 8 sealed chunks of 1 KiB, the last 5 bytes */
#define BOOK_PRICE 25		  /* unit_value 2: 13 units */
#define BOOK_UNITS 13

/* m1 (re)started with the catalogue, MP_FAULT=fault when fault is not NULL. */
static void restart_m1(const char *fault)
{
	char setting[800];
	snprintf(setting, sizeof(setting), "catalogue = %s\ndispute_poll = 1", cat_path);
	if (fault)
		ck_assert_int_eq(setenv("MP_FAULT", fault, 1), 0);
	net_restart_with(&net, "m1", "merchant", setting);
	unsetenv("MP_FAULT");
}

static void setup_net(void)
{
	setenv("MP_WALLET_IDLE_TIMEOUT", "10", 1);
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* the broker sweeps when the test asks */
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	snprintf(goods, sizeof(goods), "%s/goods", net.dir);
	snprintf(cat_path, sizeof(cat_path), "%s/catalogue.ini", net.dir);
	ck_assert_int_eq(mkdir(goods, 0700), 0);
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	goods_write(goods, "book.pdf", BOOK_SIZE, 2);
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[song]\nfile = %s/song.ogg\nprice = %d\nchunk_size = 1024\n"
		"[book]\nfile = %s/book.pdf\nprice = %d\nchunk_size = 1024\ndelivery = key\n",
		goods, SONG_PRICE, goods, BOOK_PRICE);
	fclose(f);
	restart_m1(NULL);
	json_t *w = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(w, "account_id"));
	net_fund(&net, account, 100000);
	json_decref(w);
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- helpers ---- */

/* The wallet's `last` of a channel. */
static int64_t w1_last(const char *channel)
{
	json_t *all = admin_ok(&net, "w1", "channels", NULL);
	size_t i;
	json_t *ch;
	int64_t last = -1;
	json_array_foreach(json_object_get(all, "channels"), i, ch)
	{
		if (!strcmp(json_str(ch, "channel_id"), channel))
			last = json_int(ch, "last");
	}
	json_decref(all);
	ck_assert_msg(last >= 0, "no channel %s in w1", channel);
	return last;
}

static void out_path(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", net.dir, name);
}

static json_t *buy(const char *item, const char *channel, const char *out, bool by_key, char *err,
		   size_t errlen)
{
	char params[2000];
	snprintf(params, sizeof(params),
		 "{\"item\":\"%s\",\"out\":\"%s\",\"channel_id\":\"%s\",\"endpoint\":\"%s\"%s}",
		 item, out, channel, m1_ep, by_key ? ",\"delivery\":\"key\"" : "");
	return admin(&net, "w1", "buy", params, err, errlen);
}

static void buy_song(const char *channel)
{
	char out[800], err[2048];
	out_path("song.out", out, sizeof(out));
	unlink(out);
	json_t *r = buy("song", channel, out, false, err, sizeof(err));
	ck_assert_msg(r != NULL, "buy song: %s", err);
	json_decref(r);
}

/* The wallet's stored key offer of order_ref (json, to free). */
static json_t *key_offer(const char *order_ref)
{
	json_t *all = admin_ok(&net, "w1", "key_offers", NULL);
	size_t i;
	json_t *o, *found = NULL;
	json_array_foreach(json_object_get(all, "offers"), i, o)
	{
		if (!strcmp(json_str(o, "order_ref"), order_ref))
			found = json_incref(o);
	}
	json_decref(all);
	ck_assert_msg(found != NULL, "no key offer %s in w1", order_ref);
	return found;
}

/* The order_ref of w1's only key offer on channel. */
static void only_offer(const char *channel, char *out, size_t len)
{
	json_t *all = admin_ok(&net, "w1", "key_offers", NULL);
	size_t i, n = 0;
	json_t *o;
	json_array_foreach(json_object_get(all, "offers"), i, o)
	{
		if (!strcmp(json_str(o, "channel_id"), channel)) {
			snprintf(out, len, "%s", json_str(o, "order_ref"));
			n++;
		}
	}
	json_decref(all);
	ck_assert_int_eq(n, 1);
}

/* ---- honest ---- */

START_TEST(honest_key_purchase)
{
	char ch[80], bare[80], out[800], src[800], err[2048];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, ch, sizeof(ch));
	out_path("book.out", out, sizeof(out));
	/* A channel with no paid unit: the holder makes no Offer; nothing paid. */
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, bare, sizeof(bare));
	ck_assert(buy("book", bare, out, true, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "nothing paid") && strstr(err, "UNDERPAID"), "%s", err);
	ck_assert_int_eq(w1_last(bare), 0);
	ck_assert(!goods_exists(out));

	buy_song(ch);
	int64_t before = w1_last(ch);
	json_t *r = buy("book", ch, out, true, err, sizeof(err));
	ck_assert_msg(r != NULL, "buy book: %s", err);
	ck_assert_str_eq(json_str(r, "delivery"), "key");
	ck_assert_int_eq(json_int(r, "bytes"), BOOK_SIZE);
	ck_assert_int_eq(json_int(r, "chunks"), 8);
	ck_assert_int_eq(json_int(r, "price"), BOOK_PRICE);
	ck_assert_int_eq(json_int(r, "after_index"), before);
	ck_assert_int_eq(json_int(r, "pay_index"), before + BOOK_UNITS);
	ck_assert_int_eq(json_int(r, "units_paid"), BOOK_UNITS);
	ck_assert_int_eq(w1_last(ch), before + BOOK_UNITS);
	snprintf(src, sizeof(src), "%s/book.pdf", goods);
	goods_same_file(out, src);
	json_t *o = key_offer(json_str(r, "order_ref"));
	ck_assert_str_eq(json_str(o, "state"), "KEYED");
	json_decref(o);
	json_decref(r);
	char side[900];
	snprintf(side, sizeof(side), "%s.sealed", out);
	ck_assert(!goods_exists(side));
	snprintf(side, sizeof(side), "%s.part", out);
	ck_assert(!goods_exists(side));
	net_audit_clean(&net);
}
END_TEST

/* ---- a merchant whose ciphertext is not its Offer's ---- */

START_TEST(tampered_ciphertext_not_paid)
{
	char ch[80], out[800], err[2048];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, ch, sizeof(ch));
	buy_song(ch);
	int64_t before = w1_last(ch);
	restart_m1("offer_tamper_chunk");
	out_path("book.out", out, sizeof(out));
	ck_assert(buy("book", ch, out, true, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "nothing paid") && strstr(err, "ciphertext_hash"), "%s", err);
	ck_assert_int_eq(w1_last(ch), before);
	ck_assert(!goods_exists(out));
	char side[900];
	snprintf(side, sizeof(side), "%s.sealed", out);
	ck_assert(!goods_exists(side));
	/* The unpaid Offer holds the channel at m1 (also after a restart); the next buy's Open
	 * names it, and w1, which never paid it, cancels it before paying anything else. */
	char ref[80];
	only_offer(ch, ref, sizeof(ref));
	restart_m1(NULL);
	buy_song(ch);
	ck_assert_int_gt(w1_last(ch), before); /* paid on past the cancelled offer */
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "CANCELLED");
	json_decref(o);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_offers_cancelled_total"), 1);
	net_audit_clean(&net);
}
END_TEST

/* ---- an abandoned offer and a Move ---- */

/* w1 pays an order of units at m2 (id mid, endpoint ep), the channel moved there if m1 holds
 * it. */
static json_t *pay_at(const char *channel, const char *mid, const char *ep, int units, char *err,
		      size_t errlen)
{
	char params[700], order[64];
	net_new_order(&net, "m2", units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%d,\"merchant_id\":\"%s\","
		 "\"order_ref\":\"%s\"}",
		 channel, ep, units, mid, order);
	return admin(&net, "w1", "pay", params, err, errlen);
}

/* A fresh channel with one song bought, then a book whose ciphertext m1 tampers with: the
 * unpaid Offer, OFFERED in w1's store (its order_ref into ref), holds the channel at m1. */
static void abandoned_offer(char *ch, size_t chlen, char *ref, size_t reflen)
{
	char out[800], err[2048];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, ch, chlen);
	buy_song(ch);
	restart_m1("offer_tamper_chunk");
	out_path("book.out", out, sizeof(out));
	ck_assert(buy("book", ch, out, true, err, sizeof(err)) == NULL);
	only_offer(ch, ref, reflen);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "OFFERED");
	json_decref(o);
	restart_m1(NULL);
}

/* The wallet's store loses its record of the channel's offers (as if walletd had died between
 * the OfferResp and storing it). */
static void delete_offers(sqlite3 *db, void *arg)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "DELETE FROM key_offers WHERE channel_id = ?1", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_blob(st, 1, arg, MP_ID_LEN, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_eq(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
}

static void forget_offers(const char *channel)
{
	uint8_t id[MP_ID_LEN];
	hex_to_bytes(channel, id, MP_ID_LEN);
	twallet_store_edit(&net, "w1", delete_offers, id);
}

/* An unpaid offer holds its channel at m1 against a Handoff too (merchantd/offer.h
 * offer_blocks): otherwise the buyer could move the channel at after_index, pay the offer's
 * indices at m2, and dispute m1's offer before the broker learns of the move. w1, which knows
 * its abandoned offer, cancels it at m1 before the Move; a wallet that lost its record gets
 * m1's CONFLICT through m2 with the reason, nothing moved or paid, and a session at m1 (which
 * cancels the offer its Open names) lets the Move through. */
START_TEST(abandoned_offer_cancelled_before_a_move)
{
	char ch[80], ref[80], err[2048], m2_hex[64], m2_ep[128];
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	abandoned_offer(ch, sizeof(ch), ref, sizeof(ref));
	int64_t before = w1_last(ch);
	json_t *r = pay_at(ch, m2_hex, m2_ep, 2, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay at m2: %s", err);
	json_decref(r);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "CANCELLED");
	json_decref(o);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_offers_cancelled_total"), 1);
	json_t *c = goods_wallet_channel(&net, "w1", ch);
	ck_assert_str_eq(json_str(c, "holder"), m2_hex);
	ck_assert_int_eq(json_int(c, "last"), before + 2);
	json_decref(c);

	char ch2[80], ref2[80];
	abandoned_offer(ch2, sizeof(ch2), ref2, sizeof(ref2));
	forget_offers(ch2);
	before = w1_last(ch2);
	ck_assert(pay_at(ch2, m2_hex, m2_ep, 2, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "CONFLICT") && strstr(err, "holds this channel") &&
			  strstr(err, "no handoff"),
		      "%s", err);
	c = goods_wallet_channel(&net, "w1", ch2);
	ck_assert_str_eq(json_str(c, "holder"), m1_hex);
	json_decref(c);
	ck_assert_int_eq(w1_last(ch2), before);
	buy_song(ch2); /* the Open names the offer; w1, with no record of paying it, cancels it */
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_offers_cancelled_total"),
			 1); /* counted since m1's restart in abandoned_offer */
	r = pay_at(ch2, m2_hex, m2_ep, 2, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay at m2 after the cancel: %s", err);
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

/* w1's store gets an in-flight Pay of ch at j naming order_ref ref (hex), as a `pay` given the
 * offer's order_ref by hand leaves it when the connection drops before the answer. */
struct inflight_edit {
	uint8_t id[MP_ID_LEN], w[MP_HASH_LEN], ref[MP_ID_LEN];
	uint32_t j;
};

static void add_inflight(sqlite3 *db, void *arg)
{
	const struct inflight_edit *x = arg;
	twallet_db_put_inflight(db, x->id, x->j, x->w, x->ref, MP_ID_LEN);
}

static void put_inflight(const char *channel, uint32_t j, const char *ref)
{
	struct tchannel tc;
	struct inflight_edit x = {.j = j};
	twallet_channel_load(&net, "w1", channel, &tc);
	tchannel_id(&tc, x.id);
	tchannel_word(&tc, j, x.w);
	tchannel_free(&tc);
	hex_to_bytes(ref, x.ref, MP_ID_LEN);
	twallet_store_edit(&net, "w1", add_inflight, &x);
}

/* An in-flight Pay naming the held offer (a hand-typed `pay` with its order_ref, interrupted)
 * is resent at the next Open and pays the offer; the wallet then signs no OfferCancel for it
 * (an honest holder would refuse it CONFLICT, a dishonest one could keep it to answer a
 * dispute) and marks it PAYING (its word left), and the session goes on. Here the next
 * exchange is a Move to m2: with the offer still possibly holding the channel at m1 (the
 * holder acknowledged nothing past its after_index), walletd first opens a session at m1
 * (which resends the Pay), then moves the channel. */
START_TEST(resent_pay_of_a_held_offer_not_cancelled)
{
	char ch[80], ref[80], err[2048], m2_hex[64], m2_ep[128];
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	abandoned_offer(ch, sizeof(ch), ref, sizeof(ref));
	uint32_t pay_index = (uint32_t)w1_last(ch) + BOOK_UNITS;
	put_inflight(ch, pay_index, ref);
	json_t *r = pay_at(ch, m2_hex, m2_ep, 2, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay at m2: %s", err);
	json_decref(r);
	json_t *c = goods_wallet_channel(&net, "w1", ch);
	ck_assert_str_eq(json_str(c, "holder"), m2_hex);
	ck_assert_int_eq(json_int(c, "last"), pay_index + 2);
	json_decref(c);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "PAYING"); /* never cancelled */
	json_decref(o);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_offers_cancelled_total"), 0);
	net_audit_clean(&net);
}
END_TEST

/* ---- a merchant that withholds the key ---- */

static json_t *dispute(const char *channel, const char *order_ref, char *err, size_t errlen)
{
	char params[300];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"order_ref\":\"%s\"}", channel,
		 order_ref);
	return admin(&net, "w1", "dispute", params, err, errlen);
}

/* w1 buys the book on a fresh channel at m1 running MP_FAULT=key_withhold: paid, no key. */
static void paid_without_key(char *ch, size_t chlen, char *ref, size_t reflen, char *out,
			     size_t outlen, int64_t *paid_to)
{
	char err[2048];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, ch, chlen);
	buy_song(ch);
	restart_m1("key_withhold");
	out_path("book.out", out, outlen);
	ck_assert(buy("book", ch, out, true, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "paid up to") && strstr(err, "KeyReq refused"), "%s", err);
	only_offer(ch, ref, reflen);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "PAID");
	json_decref(o);
	*paid_to = w1_last(ch);
	/* Before the deadline the broker refuses: the merchant still has time. */
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "TOO_EARLY"), "%s", err);
}

/* w1's account balance at the broker. */
static int64_t balance(void)
{
	return net_balance(&net, account);
}

START_TEST(withheld_key_refunded)
{
	char ch[80], ref[80], out[800], err[2048];
	int64_t paid_to;
	paid_without_key(ch, sizeof(ch), ref, sizeof(ref), out, sizeof(out), &paid_to);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0); /* and it never answers the broker */
	net_clock_advance(&net, 601);			  /* past the Offer's deadline */
	json_t *r = dispute(ch, ref, err, sizeof(err));
	ck_assert_msg(r != NULL, "dispute: %s", err);
	ck_assert_str_eq(json_str(r, "state"), "DISPUTED");
	ck_assert(json_int(r, "answer_by") > 0);
	json_decref(r);
	int64_t bal = balance();
	net_clock_advance(&net, 3601);	 /* past the broker's answer time */
	json_decref(settle_sweep(&net)); /* the sweep refunds the unanswered dispute */
	r = dispute(ch, ref, err, sizeof(err));
	ck_assert_msg(r != NULL, "dispute: %s", err);
	ck_assert_str_eq(json_str(r, "state"), "REFUNDED");
	ck_assert_int_eq(json_int(r, "refunded"), BOOK_UNITS * 2);
	json_decref(r);
	json_decref(settle_sweep(&net)); /* exactly once */
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "REFUNDED");
	json_decref(o);
	ck_assert_int_eq(balance(), bal + BOOK_UNITS * 2);
	/* Asked again: the same answer, nothing paid twice. */
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL); /* REFUNDED offers are final */
	ck_assert_int_eq(balance(), bal + BOOK_UNITS * 2);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	net_audit_clean(&net);
}
END_TEST

START_TEST(late_key_through_the_broker)
{
	char ch[80], ref[80], out[800], src[800], err[2048];
	int64_t paid_to;
	paid_without_key(ch, sizeof(ch), ref, sizeof(ref), out, sizeof(out), &paid_to);
	net_clock_advance(&net, 601);
	json_t *r = dispute(ch, ref, err, sizeof(err));
	ck_assert_msg(r != NULL, "dispute: %s", err);
	json_decref(r);
	int64_t bal = balance();
	restart_m1(NULL); /* its poller finds the open dispute and sends the key */
	bool keyed = false;
	for (int i = 0; i < 300 && !keyed; i++) {
		r = dispute(ch, ref, err, sizeof(err));
		ck_assert_msg(r != NULL, "dispute: %s", err);
		keyed = !strcmp(json_str(r, "state"), "KEY_RELEASED");
		json_decref(r);
		if (!keyed)
			usleep(100 * 1000);
	}
	ck_assert_msg(keyed, "the key never came through the broker");
	snprintf(src, sizeof(src), "%s/book.pdf", goods);
	goods_same_file(out, src);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "KEYED");
	json_decref(o);
	ck_assert_int_eq(balance(), bal); /* the merchant keeps its payment */
	net_audit_clean(&net);
}
END_TEST

/* A buyer who never disputes within T_dispute: the broker refuses TOO_LATE, and the wallet
 * keeps the offer TOO_LATE (final) instead of asking again every round. */
START_TEST(dispute_too_late_is_final)
{
	char ch[80], ref[80], out[800], err[2048];
	int64_t paid_to;
	paid_without_key(ch, sizeof(ch), ref, sizeof(ref), out, sizeof(out), &paid_to);
	int64_t bal = balance();
	net_clock_advance(&net, 601 + 86400 + 1); /* past the deadline and T_dispute */
	/* The wallet's own check may have asked first; either way the answer names TOO_LATE. */
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "TOO_LATE"), "%s", err);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "TOO_LATE");
	json_decref(o);
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL); /* final: refused by the wallet */
	ck_assert_msg(strstr(err, "the offer is TOO_LATE"), "%s", err);
	ck_assert_int_eq(balance(), bal); /* nothing refunded */
	net_audit_clean(&net);
}
END_TEST

/* w1's channel ch (100 units of 2) at m1, the song bought on it, then the book bought from m1
 * restarted with MP_FAULT=offer_wrong_key: paid, its key does not open (KEY_BAD, nothing
 * written); ref the offer's order_ref. */
static void key_bad_purchase(char ch[80], char ref[80])
{
	char out[800], err[2048];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, ch, 80);
	buy_song(ch);
	restart_m1("offer_wrong_key");
	out_path("book.out", out, sizeof(out));
	ck_assert(buy("book", ch, out, true, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "does not open") && strstr(err, "KEY_BAD"), "%s", err);
	ck_assert(!goods_exists(out));
	only_offer(ch, ref, 80);
}

/* A merchant whose key does not open its goods (MP_FAULT=offer_wrong_key: sealed under another
 * key than key_hash names): the wallet pays, gets a key that matches key_hash, finds chunk 0
 * does not open, stores the proof (KEY_BAD) and, after the deadline, disputes with it; the
 * broker checks the proof, the sweep refunds the price once, and the merchant cannot answer
 * it with the same key. */
START_TEST(key_that_does_not_open_is_refunded)
{
	char ch[80], ref[80], err[2048];
	key_bad_purchase(ch, ref);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "KEY_BAD");
	json_decref(o);
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL); /* before the deadline */
	ck_assert_msg(strstr(err, "TOO_EARLY"), "%s", err);
	int64_t bal = balance();
	net_clock_advance(&net, 601);
	json_t *r = dispute(ch, ref, err, sizeof(err));
	ck_assert_msg(r != NULL, "dispute: %s", err);
	ck_assert_str_eq(json_str(r, "state"), "DISPUTED"); /* proven: due at the next sweep */
	json_decref(r);
	json_decref(settle_sweep(&net));
	r = dispute(ch, ref, err, sizeof(err));
	ck_assert_msg(r != NULL, "dispute: %s", err);
	ck_assert_str_eq(json_str(r, "state"), "REFUNDED");
	ck_assert_int_eq(json_int(r, "refunded"), BOOK_UNITS * 2);
	json_decref(r);
	json_decref(settle_sweep(&net)); /* exactly once */
	ck_assert_int_eq(balance(), bal + BOOK_UNITS * 2);
	restart_m1(NULL);
	net_audit_clean(&net);
}
END_TEST

/* In a walletd store: the last byte of every stored BadKeyProof flipped (a byte of its sealed
 * chunk or of its Merkle path), as a local copy damaged after it was checked. */
static void damage_proofs(sqlite3 *db, void *arg)
{
	(void)arg;
	sqlite3_stmt *rd, *wr;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT rowid, bad_key_proof FROM key_offers WHERE "
					    "bad_key_proof IS NOT NULL",
					    -1, &rd, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "UPDATE key_offers SET bad_key_proof = ?2 WHERE "
					    "rowid = ?1",
					    -1, &wr, NULL),
			 SQLITE_OK);
	int damaged = 0;
	while (sqlite3_step(rd) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(rd, 1);
		uint8_t *proof = malloc((size_t)len);
		ck_assert(proof && len > 0);
		memcpy(proof, sqlite3_column_blob(rd, 1), (size_t)len);
		proof[len - 1] ^= 0x01;
		sqlite3_bind_int64(wr, 1, sqlite3_column_int64(rd, 0));
		sqlite3_bind_blob(wr, 2, proof, len, SQLITE_TRANSIENT);
		ck_assert_int_eq(sqlite3_step(wr), SQLITE_DONE);
		sqlite3_reset(wr);
		free(proof);
		damaged++;
	}
	ck_assert_int_eq(damaged, 1);
	sqlite3_finalize(rd);
	sqlite3_finalize(wr);
}

/* A BadKeyProof the broker refuses (the wallet's copy of the goods damaged after its check:
 * the chunk is no longer the Offer's) ends the wallet's disputes of that offer: PROOF_REFUSED,
 * final: `dispute` refuses it (and the wallet's check lists only PAYING, PAID, DISPUTED and
 * KEY_BAD offers); nothing refunded. */
START_TEST(refused_proof_ends_the_disputes)
{
	char ch[80], ref[80], err[2048];
	key_bad_purchase(ch, ref);
	twallet_store_edit(&net, "w1", damage_proofs, NULL);
	int64_t bal = balance();
	net_clock_advance(&net, 601);
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "MALFORMED") && strstr(err, "PROOF_REFUSED"), "%s", err);
	json_t *o = key_offer(ref);
	ck_assert_str_eq(json_str(o, "state"), "PROOF_REFUSED");
	json_decref(o);
	ck_assert(dispute(ch, ref, err, sizeof(err)) == NULL); /* final: refused by the wallet */
	ck_assert_msg(strstr(err, "the offer is PROOF_REFUSED"), "%s", err);
	json_decref(settle_sweep(&net));
	ck_assert_int_eq(balance(), bal); /* nothing refunded */
	restart_m1(NULL);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("buy_key");
	TCase *tc = tcase_create("buy_key");
	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, honest_key_purchase);
	tcase_add_test(tc, tampered_ciphertext_not_paid);
	tcase_add_test(tc, abandoned_offer_cancelled_before_a_move);
	tcase_add_test(tc, resent_pay_of_a_held_offer_not_cancelled);
	tcase_add_test(tc, withheld_key_refunded);
	tcase_add_test(tc, late_key_through_the_broker);
	tcase_add_test(tc, dispute_too_late_is_final);
	tcase_add_test(tc, key_that_does_not_open_is_refunded);
	tcase_add_test(tc, refused_proof_ends_the_disputes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
