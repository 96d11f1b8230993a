/* Buying goods chunk by chunk (docs/goods.md "Buying (the wallet)") against the real daemons
 * (deploy/mpnet: brokerd, merchant m1 restarted with a catalogue, walletd w1):
 * - honest buys: an item priced whole (5 chunks of 1 KiB, a price that 5 does not divide) on a
 *   channel of unit_value 2 and a metered item on the channel picked by merchant_id: the file
 *   equals the source byte for byte and the channel's spent units times unit_value minus its
 *   credit is the item's total;
 * - a customer that stops paying (a raw client): m1 gives chunk 0 away, refuses chunk 1 without
 *   data (UNDERPAID) and refuses another item on the channel naming the first purchase; once
 *   chunk 0 is paid (a Pay whose order_ref is the purchase id) chunk 1 is served;
 * - a merchant that stops delivering (SIGSTOP in the middle of a buy): the buy fails within
 *   the wallet's deadline having paid for no chunk it did not receive; after SIGCONT a new buy
 *   resumes the same purchase and completes, the item paid exactly once;
 * - the merchant's record: m1 lists the purchase with its paid and sent chunks; after SIGKILL
 *   and a restart it serves the paid chunks again and no others; a changed file is refused
 *   CONFLICT, never served;
 * - bad parameters (relative out, existing out, no channel, unknown item, max_price) are
 *   refused with the reason and pay nothing.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "harness_goods.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "../check_run.h"

static struct net net;
static char goods[700], cat_path[760], m1_hex[64], m1_ep[128];

#define SONG_SIZE   (5 * 1024 - 100) /* 5 chunks of 1 KiB, the last shorter */
#define SONG_PRICE  13		     /* whole: shares 2, 3, 2, 3, 3 */
#define METER_SIZE  3000	     /* 3 chunks of 1 KiB */
#define METER_PRICE 3		     /* per chunk: 9 in all */
#define BIG_CHUNKS  2000	     /* metered, 1 per chunk of 1 KiB */

static void setup_net(void)
{
	setenv("MP_WALLET_IDLE_TIMEOUT", "10", 1); /* the buy's answer deadline */
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	snprintf(goods, sizeof(goods), "%s/goods", net.dir);
	snprintf(cat_path, sizeof(cat_path), "%s/catalogue.ini", net.dir);
	ck_assert_int_eq(mkdir(goods, 0700), 0);
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	goods_write(goods, "meter.bin", METER_SIZE, 2);
	goods_write(goods, "big.bin", BIG_CHUNKS * 1024, 3);
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[song]\nfile = %s/song.ogg\nprice = %d\nchunk_size = 1024\n"
		"[meter]\nfile = %s/meter.bin\nprice = %d\nmetered = true\nchunk_size = 1024\n"
		"[big]\nfile = %s/big.bin\nprice = 1\nmetered = true\nchunk_size = 1024\n",
		goods, SONG_PRICE, goods, METER_PRICE, goods);
	fclose(f);
	char setting[800];
	snprintf(setting, sizeof(setting), "catalogue = %s", cat_path);
	net_restart_with(&net, "m1", "merchant", setting);
	json_t *w = admin_ok(&net, "w1", "register", NULL);
	net_fund(&net, json_str(w, "account_id"), 100000);
	json_decref(w);
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- helpers ---- */

static json_t *buy(const char *params, char *err, size_t errlen)
{
	return admin(&net, "w1", "buy", params, err, errlen);
}

static json_t *buy_ok(const char *params)
{
	char err[2048];
	json_t *r = buy(params, err, sizeof(err));
	ck_assert_msg(r != NULL, "buy %s: %s", params, err);
	return r;
}

static void buy_refused(const char *params, const char *want)
{
	char err[2048];
	json_t *r = buy(params, err, sizeof(err));
	ck_assert_msg(r == NULL, "buy %s was answered", params);
	ck_assert_msg(strstr(err, want), "buy %s: expected '%s' in: %s", params, want, err);
}

static void out_path(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", net.dir, name);
}

/* ---- honest buys ---- */

START_TEST(honest_buys)
{
	char song_ch[80], meter_ch[80], out[800], src[800], params[2000];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, song_ch, sizeof(song_ch));
	/* An item priced whole, unit_value 2: chunk shares 2, 3, 2, 3, 3 paid one by one. */
	out_path("song.out", out, sizeof(out));
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"%s\",\"channel_id\":\"%s\",\"endpoint\":\"%s\"}",
		 out, song_ch, m1_ep);
	json_t *r = buy_ok(params);
	ck_assert_str_eq(json_str(r, "item"), "song");
	ck_assert_str_eq(json_str(r, "channel_id"), song_ch);
	ck_assert_str_eq(json_str(r, "out"), out);
	ck_assert_uint_eq(strlen(json_str(r, "purchase_id")), 32);
	ck_assert_int_eq(json_int(r, "bytes"), SONG_SIZE);
	ck_assert_int_eq(json_int(r, "chunks"), 5);
	ck_assert_int_eq(json_int(r, "paid_chunks"), 5);
	ck_assert_int_eq(json_int(r, "total"), SONG_PRICE);
	json_t *ch = goods_wallet_channel(&net, "w1", song_ch);
	ck_assert_int_eq(json_int(r, "units_paid"), json_int(ch, "last"));
	ck_assert_int_eq(json_int(r, "credit"), json_int(ch, "credit"));
	json_decref(ch);
	json_decref(r);
	snprintf(src, sizeof(src), "%s/song.ogg", goods);
	goods_same_file(out, src);
	ck_assert(!goods_exists(strcat(strcpy(params, out), ".part")));
	ck_assert_int_eq(goods_spent_value(&net, "w1", song_ch), SONG_PRICE);
	/* A metered item by merchant_id: the channel with the most units left (not song_ch). */
	net_wallet_issue(&net, "w1", m1_hex, 200, 1, meter_ch, sizeof(meter_ch));
	out_path("meter.out", out, sizeof(out));
	snprintf(params, sizeof(params),
		 "{\"item\":\"meter\",\"out\":\"%s\",\"merchant_id\":\"%s\"}", out, m1_hex);
	r = buy_ok(params);
	ck_assert_str_eq(json_str(r, "channel_id"), meter_ch);
	ck_assert_int_eq(json_int(r, "chunks"), 3);
	ck_assert_int_eq(json_int(r, "total"), 3 * METER_PRICE);
	ck_assert_int_eq(json_int(r, "units_paid"), 3 * METER_PRICE);
	json_decref(r);
	snprintf(src, sizeof(src), "%s/meter.bin", goods);
	goods_same_file(out, src);
	ck_assert_int_eq(goods_spent_value(&net, "w1", meter_ch), 3 * METER_PRICE);
	ck_assert_int_eq(goods_spent_value(&net, "w1", song_ch), SONG_PRICE);
	/* The same item again on the song channel: a new purchase, paid again in full. */
	out_path("song2.out", out, sizeof(out));
	snprintf(params, sizeof(params), "{\"item\":\"song\",\"out\":\"%s\",\"channel_id\":\"%s\"}",
		 out, song_ch);
	json_decref(buy_ok(params));
	snprintf(src, sizeof(src), "%s/song.ogg", goods);
	goods_same_file(out, src);
	ck_assert_int_eq(goods_spent_value(&net, "w1", song_ch), 2 * SONG_PRICE);
	/* mpctl as documented, by merchant_id: the channel with the most units left (meter_ch). */
	char cmd[3000], res[800];
	out_path("song3.out", out, sizeof(out));
	out_path("song3.res", res, sizeof(res));
	snprintf(cmd, sizeof(cmd),
		 "'%s/tools/mpctl' -s '%s/w1/admin.sock' buy item=song out='%s' merchant_id=%s "
		 ">'%s' 2>&1",
		 net_build_root(), net.dir, out, m1_hex, res);
	ck_assert_int_eq(run_without_our_fds(cmd), 0);
	size_t len;
	char *text = goods_slurp(res, &len);
	ck_assert_msg(strstr(text, meter_ch) && strstr(text, "paid_chunks"), "mpctl buy: %s", text);
	free(text);
	goods_same_file(out, src);
	ck_assert_int_eq(goods_spent_value(&net, "w1", meter_ch), 3 * METER_PRICE + SONG_PRICE);
	net_audit_clean(&net);
}
END_TEST

/* ---- a customer that stops paying (raw client) ---- */

START_TEST(customer_stops_paying)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], pid[16];
	tchannel_opened(&net, "m1", &tw, &ch, 50, &w);
	tchannel_id(&ch, id);
	/* Chunk 0 is given unpaid. */
	MpEnvelope *e = chunk_req_call(&w, id, "song", NULL, 0);
	const Micropay__V1__ChunkResp *r = e->chunk_resp;
	ck_assert_int_eq(r->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->purchase_id.len, 16);
	memcpy(pid, r->purchase_id.data, 16);
	ck_assert_uint_eq(r->chunk, 0);
	ck_assert_uint_eq(r->chunks, 5);
	ck_assert_uint_eq(r->data.len, 1024);
	ck_assert_uint_eq(r->paid, 0);
	ck_assert_uint_eq(r->price, 2);
	ck_assert_uint_eq(r->total, SONG_PRICE);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Chunk 1 without paying: UNDERPAID, no data. */
	e = chunk_req_call(&w, id, NULL, pid, 1);
	r = e->chunk_resp;
	ck_assert_int_eq(r->status->code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(r->data.len, 0);
	ck_assert_uint_eq(r->purchase_id.len, 16);
	ck_assert(!memcmp(r->purchase_id.data, pid, 16));
	ck_assert_uint_eq(r->paid, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Another item on this channel: UNDERPAID naming the purchase to pay first. */
	e = chunk_req_call(&w, id, "meter", NULL, 0);
	r = e->chunk_resp;
	ck_assert_int_eq(r->status->code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(r->data.len, 0);
	ck_assert_uint_eq(r->purchase_id.len, 16);
	ck_assert(!memcmp(r->purchase_id.data, pid, 16));
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Paying chunk 0 (2 units of 1 with the purchase id as order_ref) unlocks chunk 1. */
	e = tchannel_pay(&ch, &w, 2, pid, 16);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = chunk_req_call(&w, id, NULL, pid, 1);
	r = e->chunk_resp;
	ck_assert_int_eq(r->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->chunk, 1);
	ck_assert_uint_eq(r->data.len, 1024);
	ck_assert_uint_eq(r->paid, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Chunk 2 is again refused until chunk 1 is paid. */
	e = chunk_req_call(&w, id, NULL, pid, 2);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(e->chunk_resp->data.len, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- the merchant's record: listing, a restart, a changed file ---- */

/* m1's purchases listing: the one row for pid (json, to free). */
static json_t *listed(const uint8_t pid[16])
{
	return listed_row(&net, "purchases", "purchase_id", pid);
}

static void expect_listed(const uint8_t pid[16], int64_t paid, int64_t sent, const char *state)
{
	json_t *row = listed(pid);
	ck_assert_str_eq(json_str(row, "item"), "song");
	ck_assert_int_eq(json_int(row, "chunks"), 5);
	ck_assert_int_eq(json_int(row, "total"), SONG_PRICE);
	ck_assert_int_eq(json_int(row, "paid"), paid);
	ck_assert_int_eq(json_int(row, "sent"), sent);
	ck_assert_str_eq(json_str(row, "state"), state);
	json_decref(row);
}

static MpCode chunk_code(struct wire *w, const uint8_t id[MP_ID_LEN], const uint8_t pid[16],
			 uint32_t k, size_t *data_len)
{
	MpEnvelope *e = chunk_req_call(w, id, NULL, pid, k);
	MpCode code = e->chunk_resp->status->code;
	*data_len = e->chunk_resp->data.len;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* A purchase is in m1's store: listed with its paid and sent chunks; after SIGKILL and a
 * restart its paid chunks are served again (and no others); once the item's file changed, a
 * chunk is refused CONFLICT rather than served from the changed file. */
START_TEST(purchases_outlive_a_restart)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], pid[16];
	size_t len;
	tchannel_opened(&net, "m1", &tw, &ch, 50, &w);
	tchannel_id(&ch, id);
	MpEnvelope *e = chunk_req_call(&w, id, "song", NULL, 0);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(OK));
	memcpy(pid, e->chunk_resp->purchase_id.data, 16);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = tchannel_pay(&ch, &w, 2, pid, 16); /* chunk 0's share: 2 */
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(chunk_code(&w, id, pid, 1, &len), MP_ST(OK));
	ck_assert_uint_eq(len, 1024);
	expect_listed(pid, 1, 2, "OPEN");
	wire_close(&w);

	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	expect_listed(pid, 1, 1, "OPEN"); /* sent: only the paid chunk is known after a restart */
	char ca[800];
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	ck_assert_int_eq(chunk_code(&w, id, pid, 1, &len), MP_ST(OK)); /* the goods again */
	ck_assert_uint_eq(len, 1024);
	ck_assert_int_eq(chunk_code(&w, id, pid, 2, &len), MP_ST(UNDERPAID));
	ck_assert_uint_eq(len, 0);

	char path[800];
	snprintf(path, sizeof(path), "%s/song.ogg", goods);
	ck_assert_int_eq(truncate(path, SONG_SIZE - 1), 0);
	ck_assert_int_eq(chunk_code(&w, id, pid, 1, &len), MP_ST(CONFLICT));
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(truncate(path, 0), 0); /* put it back as it was */
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	ck_assert_int_eq(chunk_code(&w, id, pid, 1, &len), MP_ST(OK));
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- a merchant that stops delivering ---- */

static pid_t m1_pid(void)
{
	char pid[32];
	net_read(&net, "m1", "pid", pid, sizeof(pid));
	return (pid_t)atol(pid);
}

/* The first number after `key` in text, -1 if none. */
static long number_before(const char *text, const char *key)
{
	const char *at = strstr(text, key);
	if (!at)
		return -1;
	while (at > text && at[-1] == ' ')
		at--;
	while (at > text && at[-1] >= '0' && at[-1] <= '9')
		at--;
	return atol(at);
}

START_TEST(merchant_stops_delivering)
{
	char channel[80], out[800], src[800], res[800], cmd[4000], params[2000];
	net_wallet_issue(&net, "w1", m1_hex, 3 * BIG_CHUNKS, 1, channel, sizeof(channel));
	out_path("big.out", out, sizeof(out));
	out_path("big.res", res, sizeof(res));
	/* The buy runs in the background (mpctl); m1 stops once 10% of it arrived. */
	snprintf(cmd, sizeof(cmd),
		 "('%s/tools/mpctl' --timeout 600 -s '%s/w1/admin.sock' buy item=big out='%s' "
		 "channel_id=%s endpoint=%s >'%s' 2>&1; echo \"exit $?\" >>'%s') &",
		 net_build_root(), net.dir, out, channel, m1_ep, res, res);
	ck_assert_int_eq(run_without_our_fds(cmd), 0);
	char progress[80];
	snprintf(progress, sizeof(progress), "buy big: chunk %d/%d", BIG_CHUNKS / 10, BIG_CHUNKS);
	ck_assert_msg(log_has(&net, "w1", progress, 300000), "no '%s' in w1's log", progress);
	ck_assert_int_eq(kill(m1_pid(), SIGSTOP), 0);
	/* The buy fails within its deadline (idle_timeout 10 s), saying how far it got. */
	size_t len = 0;
	char *text = NULL;
	for (int i = 0; i < 1200; i++) {
		free(text);
		text = goods_exists(res) ? goods_slurp(res, &len) : NULL;
		if (text && strstr(text, "exit "))
			break;
		usleep(50000);
	}
	ck_assert_int_eq(kill(m1_pid(), SIGCONT), 0);
	ck_assert_msg(text && strstr(text, "exit ") && !strstr(text, "exit 0"), "buy: %s",
		      text ? text : "(no answer)");
	long received = number_before(text, " of 2000 chunks received");
	ck_assert_msg(received >= BIG_CHUNKS / 10 && received < BIG_CHUNKS, "buy: %s", text);
	ck_assert_msg(strstr(text, "buy: big: chunk 200/2000, "), "no progress line: %s", text);
	const char *at = strstr(text, "(purchase ");
	ck_assert_msg(at && strlen(at) > 42 && at[42] == ':', "buy: %s", text);
	char purchase[33];
	snprintf(purchase, sizeof(purchase), "%.32s", at + 10);
	free(text);
	ck_assert(!goods_exists(out));
	strcat(strcpy(src, out), ".part");
	ck_assert(!goods_exists(src));
	/* Paid for no chunk it did not receive: every unit sent (accepted or in flight) bought a
	 * received chunk (price 1, unit_value 1), and at most the last one is unpaid. */
	json_t *ch = goods_wallet_channel(&net, "w1", channel);
	ck_assert_int_le(json_int(ch, "sent"), received);
	ck_assert_int_le(json_int(ch, "last"), received);
	ck_assert_int_ge(json_int(ch, "last"), received - 1);
	int64_t sent = json_int(ch, "sent");
	json_decref(ch);
	/* m1 is back: a new buy resumes the purchase (in-flight Pays resent first) and completes,
	 * every chunk paid exactly once. */
	snprintf(params, sizeof(params), "{\"item\":\"big\",\"out\":\"%s\",\"channel_id\":\"%s\"}",
		 out, channel);
	json_t *r = buy_ok(params);
	ck_assert_int_eq(json_int(r, "chunks"), BIG_CHUNKS);
	ck_assert_int_eq(json_int(r, "paid_chunks"), BIG_CHUNKS);
	ck_assert_str_eq(json_str(r, "purchase_id"), purchase);
	ck_assert_int_eq(json_int(r, "units_paid"), BIG_CHUNKS - sent);
	json_decref(r);
	snprintf(src, sizeof(src), "%s/big.bin", goods);
	goods_same_file(out, src);
	ck_assert_int_eq(goods_spent_value(&net, "w1", channel), BIG_CHUNKS);
	net_audit_clean(&net);
}
END_TEST

/* ---- buying at another merchant: the channel handed off ---- */

/* A channel used at m1 buys at m2 (merchant_id and endpoint of m2): walletd hands it off in the
 * session's Open (a Move, the Handoff checked) and buys there; the channel's holder is then m2,
 * and the item equals its source. */
START_TEST(buy_through_a_handoff)
{
	char channel[80], out[800], src[800], params[2000], m2_hex[64], m2_ep[128];
	net_wallet_issue(&net, "w1", m1_hex, 200, 1, channel, sizeof(channel));
	out_path("song.out", out, sizeof(out));
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"%s\",\"channel_id\":\"%s\",\"endpoint\":\"%s\"}",
		 out, channel, m1_ep);
	json_decref(buy_ok(params));
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	char setting[800];
	snprintf(setting, sizeof(setting), "catalogue = %s", cat_path);
	net_restart_with(&net, "m2", "merchant", setting);
	out_path("meter.out", out, sizeof(out));
	snprintf(params, sizeof(params),
		 "{\"item\":\"meter\",\"out\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\"}",
		 out, m2_hex, m2_ep);
	json_t *r = buy_ok(params); /* m1's channel, the only one: handed off to m2 */
	ck_assert_str_eq(json_str(r, "channel_id"), channel);
	ck_assert_int_eq(json_int(r, "units_paid"), 3 * METER_PRICE);
	json_decref(r);
	snprintf(src, sizeof(src), "%s/meter.bin", goods);
	goods_same_file(out, src);
	json_t *ch = goods_wallet_channel(&net, "w1", channel);
	ck_assert_str_eq(json_str(ch, "holder"), m2_hex);
	ck_assert_int_eq(json_int(ch, "epoch"), 1);
	ck_assert_int_eq(json_int(ch, "last"), SONG_PRICE + 3 * METER_PRICE);
	json_decref(ch);
	net_audit_clean(&net);
}
END_TEST

/* ---- bad parameters ---- */

START_TEST(bad_params)
{
	char channel[80], out[800], params[2000];
	net_wallet_issue(&net, "w1", m1_hex, 100, 1, channel, sizeof(channel));
	out_path("bad.out", out, sizeof(out));
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"rel/x\",\"channel_id\":\"%s\"}", channel);
	buy_refused(params, "out must be an absolute path");
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"%s/catalogue.ini\","
		 "\"channel_id\":\"%s\"}",
		 net.dir, channel);
	buy_refused(params, "out exists");
	snprintf(params, sizeof(params), "{\"item\":\"song\",\"out\":\"%s\"}", out);
	buy_refused(params, "give channel_id or merchant_id");
	/* A merchant no channel is held by: m1's channel would be handed off to it, whose
	 * endpoint the wallet does not know. */
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"%s\",\"merchant_id\":\"%032d\"}", out, 7);
	buy_refused(params, "endpoint is not known yet");
	snprintf(params, sizeof(params),
		 "{\"item\":\"nosuch\",\"out\":\"%s\",\"channel_id\":\"%s\",\"endpoint\":\"%s\"}",
		 out, channel, m1_ep);
	buy_refused(params, "UNKNOWN_ITEM");
	ck_assert(!goods_exists(out));
	/* max_price below the total: stopped after chunk 0, nothing paid. */
	snprintf(params, sizeof(params),
		 "{\"item\":\"song\",\"out\":\"%s\",\"channel_id\":\"%s\",\"max_price\":12}", out,
		 channel);
	buy_refused(params, "above max_price 12");
	ck_assert(!goods_exists(out));
	ck_assert_int_eq(goods_spent_value(&net, "w1", channel), 0);
	/* The channel now owes song's chunk 0: another item is refused, naming that purchase. */
	snprintf(params, sizeof(params),
		 "{\"item\":\"meter\",\"out\":\"%s\",\"channel_id\":\"%s\"}", out, channel);
	buy_refused(params, "has a delivered chunk not paid yet");
	ck_assert_int_eq(goods_spent_value(&net, "w1", channel), 0);
	/* song itself resumes and completes. */
	snprintf(params, sizeof(params), "{\"item\":\"song\",\"out\":\"%s\",\"channel_id\":\"%s\"}",
		 out, channel);
	json_decref(buy_ok(params));
	ck_assert_int_eq(goods_spent_value(&net, "w1", channel), SONG_PRICE);
	/* The song paid, another item is sold on the channel; overwrite=true replaces out. */
	buy_refused(params, "out exists");
	snprintf(params, sizeof(params),
		 "{\"item\":\"meter\",\"out\":\"%s\",\"channel_id\":\"%s\",\"overwrite\":true}",
		 out, channel);
	json_decref(buy_ok(params));
	char src[800];
	snprintf(src, sizeof(src), "%s/meter.bin", goods);
	goods_same_file(out, src);
	ck_assert_int_eq(goods_spent_value(&net, "w1", channel), SONG_PRICE + 3 * METER_PRICE);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("buy");
	TCase *tc = tcase_create("buy");
	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, honest_buys);
	tcase_add_test(tc, customer_stops_paying);
	tcase_add_test(tc, purchases_outlive_a_restart);
	tcase_add_test(tc, merchant_stops_delivering);
	tcase_add_test(tc, buy_through_a_handoff);
	tcase_add_test(tc, bad_params);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
