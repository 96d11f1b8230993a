/* Forced release (protocol.md section 6 "Release", statements 17 and 18; docs/release.md)
 * through the real daemons with the test clock: brokerd, merchant m1, walletd w1.
 * - the holder m1 redeemed 4 units and was paid 3 more, then is down: bad ReleaseRequests are
 *   refused and change nothing (a stranger's key BAD_SIG, an epoch the broker does not know
 *   OUT_OF_RANGE); the wallet's `release close=true` is PENDING with release_at, again the
 *   same; a sweep before release_at changes nothing; after release_wait the sweep signs a
 *   ForcedClose at m1's highest redeemed index 4 and pays the early refund (100 - 4) units once
 *   (a second sweep pays nothing); the wallet's retry is FORCED with final_index 4 and stores
 *   the ForcedClose;
 * - m1 back (its poll slow): its Redeem of the unredeemed 5..7 is refused and recorded as a
 *   claim_above_forced_close conflict against m1, its pending credit unchanged; m1 back with
 *   a 1 s poll: it applies the ForcedClose and refuses the wallet's Pay and Close (CLOSED);
 * - a release whose holder answers in time (the wallet's close at m1 before release_at) ends
 *   DONE without a ForcedClose, also after release_at;
 * - a finalised channel's release is TOO_LATE.
 * The audit is clean after each step. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sqlite3.h>
#include <string.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_peer.h"
#include "harness_redeem.h"
#include "harness_settle.h"
#include "harness_store.h"
#include "../check_run.h"

#define UNIT 1

static struct net net;
static struct tmerchant m1;
static char ep1[128], account[64], ca[700], broker_ep[128];

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* sweeps when the test asks */
	setenv("MP_DEADLINE_CHECK", "3600", 1);
	setenv("MP_REFUND_CHECK", "0", 1);
	setenv("MP_RELEASE_POLL", "3600", 1); /* m1 learns of ForcedCloses when the test says */
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_DEADLINE_CHECK");
	unsetenv("MP_REFUND_CHECK");
	unsetenv("MP_RELEASE_POLL");
	tmerchant_load(&m1, &net, "m1");
	net_read(&net, "m1", "endpoint", ep1, sizeof(ep1));
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
	net_fund(&net, account, 1000);
}

static void setup_net_batch1(void)
{
	setenv("MP_SWEEP_BATCH", "1", 1);
	setup_net();
	unsetenv("MP_SWEEP_BATCH");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	net_down(&net);
}

/* ---- the wallet ---- */

static void issue(unsigned n, char *channel, size_t len)
{
	char params[300];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":%d,\"days\":1}", m1.mid_hex, n,
		 UNIT);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}

/* `wallet` pays `units` at m1; NULL on success, else the error (static). */
static const char *pay_as(const char *wallet, const char *channel, unsigned units,
			  int64_t expect_last)
{
	static char err[512];
	char params[500], order[64];
	net_new_order(&net, "m1", units * UNIT, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, m1.mid_hex, ep1, units, order);
	json_t *r = admin(&net, wallet, "pay", params, err, sizeof(err));
	if (!r)
		return err;
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	json_decref(r);
	return NULL;
}

static const char *pay(const char *channel, unsigned units, int64_t expect_last)
{
	return pay_as("w1", channel, units, expect_last);
}

/* w1's admin `method` on a channel it must refuse: the error contains each of want (NULL-ended). */
static void expect_refused(const char *method, const char *params, const char *want, ...)
{
	char err[512];
	json_t *r = admin(&net, "w1", method, params, err, sizeof(err));
	ck_assert_msg(!r, "%s %s accepted", method, params);
	va_list ap;
	va_start(ap, want);
	for (const char *w = want; w; w = va_arg(ap, const char *))
		ck_assert_msg(strstr(err, w), "%s: %s (wanted %s)", method, err, w);
	va_end(ap);
}

/* w2's offer to take a channel (caller frees). */
static char *w2_offer(const char *channel)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	json_t *r = admin_ok(&net, "w2", "transfer.offer", params);
	char *offer = strdup(json_str(r, "offer"));
	json_decref(r);
	return offer;
}

/* w1's transfer.send of channel to w2's offer through m1: the bundle (caller frees). */
static char *w1_gives_to_w2(const char *channel)
{
	char params[4096], *offer = w2_offer(channel);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	free(offer);
	json_t *r = admin_ok(&net, "w1", "transfer.send", params);
	char *bundle = strdup(json_str(r, "bundle"));
	json_decref(r);
	return bundle;
}

/* w2's transfer.accept of a bundle: its answer (caller frees). */
static json_t *w2_accepts(const char *bundle)
{
	char params[4096];
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", bundle);
	return admin_ok(&net, "w2", "transfer.accept", params);
}

/* The state `wallet` shows for channel is want. */
static void expect_shown(const char *wallet, const char *channel, const char *want)
{
	json_t *r = admin_ok(&net, wallet, "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	const char *state = NULL;
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), channel))
			state = json_str(json_array_get(list, i), "state");
	ck_assert_msg(state && !strcmp(state, want), "%s shows %s, not %s", wallet,
		      state ? state : "none", want);
	json_decref(r);
}

/* A channel w2 received whose SegmentClaim the broker refused CLOSED: shown CLAIM_REFUSED; pay
 * and close refused by w2 itself with the broker's reason; the same bundle again answers the
 * stored refusal (broker_ack false). */
static void expect_w2_claim_refused(const char *channel, const char *bundle)
{
	expect_shown("w2", channel, "CLAIM_REFUSED");
	const char *err = pay_as("w2", channel, 1, 3);
	ck_assert_msg(err && strstr(err, "SegmentClaim") && strstr(err, "ForcedClose"),
		      "w2's pay on a refused claim: %s", err ? err : "accepted");
	char params[4096], why[512];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	json_t *r = admin(&net, "w2", "close", params, why, sizeof(why));
	ck_assert_msg(!r && strstr(why, "SegmentClaim"), "w2's close of a refused claim: %s",
		      r ? "accepted" : why);
	r = w2_accepts(bundle);
	ck_assert(json_is_false(json_object_get(r, "broker_ack")));
	ck_assert_ptr_nonnull(strstr(json_str(r, "broker_status"), "ForcedClose"));
	json_decref(r);
}

/* In w2's store: every segment claim acknowledged, as a wallet that missed the refusal. */
static void claims_acked(sqlite3 *db, void *arg)
{
	(void)arg;
	ck_assert_int_eq(sqlite3_exec(db, "UPDATE segment_claims SET acked = 1", NULL, NULL, NULL),
			 SQLITE_OK);
}

/* A RELEASED channel of w1: shown RELEASED; pay, transfer.send and close refused by w1 itself. */
static void expect_w1_released(const char *channel)
{
	expect_shown("w1", channel, "RELEASED");
	char params[4096];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\","
		 "\"units\":1,\"order_ref\":\"0011\"}",
		 channel, m1.mid_hex, ep1);
	expect_refused("pay", params, "RELEASED", NULL);
	char *offer = w2_offer(channel);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"}", channel,
		 offer);
	free(offer);
	expect_refused("transfer.send", params, "RELEASED", NULL);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	expect_refused("close", params, "RELEASED", "ForcedClose", NULL);
}

/* A wallet's `release close=true`: its answer (caller frees). */
static json_t *release_as(const char *wallet, const char *channel)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"close\":true}", channel);
	return admin_ok(&net, wallet, "release", params);
}

static json_t *release(const char *channel)
{
	return release_as("w1", channel);
}

/* w2 up and registered: its account. */
static void w2_up(char *w2_account, size_t len)
{
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	json_t *r = admin_ok(&net, "w2", "register", NULL);
	snprintf(w2_account, len, "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void expect_release(const char *channel, const char *state, const char *status)
{
	json_t *r = release(channel);
	ck_assert_str_eq(json_str(r, "state"), state);
	ck_assert_msg(!strncmp(json_str(r, "status"), status, strlen(status)), "status %s",
		      json_str(r, "status"));
	json_decref(r);
}

/* A wallet's owner key of a channel, read from its store (`table`: channels for one it issued,
 * offers for one it offered to take); the wallet is stopped for it and started again. */
static void wallet_owner(const char *wallet, const char *table, const uint8_t id[MP_ID_LEN],
			 struct mp_key *owner)
{
	char path[700], rel[64], sql[128];
	size_t len = 0;
	snprintf(rel, sizeof(rel), "%s/wallet.db", wallet);
	snprintf(sql, sizeof(sql), "SELECT owner_seed FROM %s WHERE channel_id = ?1", table);
	net_path(&net, rel, path, sizeof(path));
	ck_assert_int_eq(net_cmd(&net, "kill", wallet), 0);
	uint8_t *seed = store_row_blob(path, sql, id, MP_ID_LEN, 0, 0, &len);
	ck_assert_int_eq(net_cmd(&net, "start", wallet), 0);
	ck_assert(seed && len == MP_SK_LEN);
	ck_assert(mp_key_from_seed(owner, seed));
	free(seed);
}

/* The final_index of the ForcedClose w1 stored for a channel (-1: none); w1 is stopped for it
 * and started again. */
static int64_t w1_forced_index(const uint8_t id[MP_ID_LEN])
{
	char path[700];
	size_t len = 0;
	net_path(&net, "w1/wallet.db", path, sizeof(path));
	ck_assert_int_eq(net_cmd(&net, "kill", "w1"), 0);
	uint8_t *fc = store_row_blob(path,
				     "SELECT forced_close FROM forced_closes WHERE "
				     "channel_id = ?1",
				     id, MP_ID_LEN, 0, 0, &len);
	int64_t index = -1;
	if (fc) {
		MpSigned *s = mp_stmt_decode(fc, len);
		Micropay__V1__ForcedClose *b =
		    s ? micropay__v1__forced_close__unpack(NULL, s->body.len, s->body.data) : NULL;
		if (b && b->point)
			index = b->point->index;
		if (b)
			micropay__v1__forced_close__free_unpacked(b, NULL);
		mp_stmt_free(s);
	}
	free(fc);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	return index;
}

/* A raw ReleaseReq {channel, seg_seq, epoch, to_mid m1 or close} signed by key: its status. */
static MpCode raw_release(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
			  uint32_t epoch, bool to_m1)
{
	Micropay__V1__ReleaseRequest rq = MICROPAY__V1__RELEASE_REQUEST__INIT;
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	rq.seg_seq = seg_seq;
	rq.epoch = epoch;
	if (to_m1)
		rq.to_mid = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	else
		rq.close = true;
	MpSigned *stmt = mp_stmt_sign(key, MP_STMT_RELEASE_REQUEST, &rq.base);
	ck_assert(stmt);
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	Micropay__V1__ReleaseReq req = MICROPAY__V1__RELEASE_REQ__INIT;
	req.stmt = stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RELEASE_REQ);
	env.release_req = &req;
	ck_assert(wire_send(&w, &env));
	MpEnvelope *e = wire_recv(&w);
	wire_close(&w);
	mp_stmt_free(stmt);
	ck_assert(e && e->body_case == MP_BODY(RELEASE_RESP) && e->release_resp->status);
	MpCode code = e->release_resp->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* ---- the broker ---- */

static void expect_broker_channel(const char *channel, const char *state, int64_t close_index,
				  int64_t early_refund)
{
	json_t *s = settle_channel(&net, channel);
	ck_assert_str_eq(json_str(s, "state"), state);
	if (close_index >= 0)
		ck_assert_int_eq(json_int(s, "close_index"), close_index);
	ck_assert_int_eq(json_int(s, "early_refund"), early_refund);
	json_decref(s);
}

static int conflicts_with(const char *channel, const char *kind, const char *liable,
			  const char *detail_has)
{
	json_t *r = admin_ok(&net, "broker", "conflicts", NULL);
	json_t *list = json_object_get(r, "conflicts");
	int count = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *c = json_array_get(list, i);
		count += !strcmp(json_str(c, "channel"), channel) &&
			 !strcmp(json_str(c, "kind"), kind) &&
			 !strcmp(json_str(c, "liable"), liable) &&
			 strstr(json_str(c, "detail"), detail_has);
	}
	json_decref(r);
	return count;
}

static int conflicts_of(const char *channel, const char *kind, const char *liable)
{
	return conflicts_with(channel, kind, liable, "");
}

static bool closed_early(void *arg)
{
	json_t *s = settle_channel(&net, arg);
	bool closed = !strcmp(json_str(s, "state"), "CLOSED_EARLY");
	json_decref(s);
	return closed;
}

static bool m1_applied(void *arg)
{
	(void)arg;
	return log_contains(&net, "m1", "ForcedClose of epoch 0 at index 4 applied");
}

static bool m1_applied_sold(void *arg)
{
	(void)arg;
	return log_contains(&net, "m1", "ForcedClose of epoch 0 at index 0 applied");
}

/* m1's paged ForcedClosesReq {after, limit} over mutual TLS: how many listed (their channels'
 * hex in `seen`, appended), the next cursor and whether the page was full. */
static size_t forced_page(uint64_t after, uint32_t limit, uint64_t *next, bool *more, char *seen,
			  size_t seen_len)
{
	struct wire w;
	tmerchant_connect(&m1, &w, broker_ep, ca);
	Micropay__V1__ForcedClosesReq req = MICROPAY__V1__FORCED_CLOSES_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	req.paged = true;
	req.after = after;
	req.limit = limit;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(FORCED_CLOSES_REQ);
	env.forced_closes_req = &req;
	ck_assert(wire_send(&w, &env));
	MpEnvelope *e = wire_recv(&w);
	wire_close(&w);
	ck_assert(e && e->body_case == MP_BODY(FORCED_CLOSES_RESP) &&
		  e->forced_closes_resp->status);
	const Micropay__V1__ForcedClosesResp *r = e->forced_closes_resp;
	ck_assert_int_eq(r->status->code, MP_ST(OK));
	for (size_t i = 0; i < r->n_forced_closes; i++) {
		Micropay__V1__ForcedClose *fc = micropay__v1__forced_close__unpack(
		    NULL, r->forced_closes[i]->body.len, r->forced_closes[i]->body.data);
		ck_assert(fc && fc->channel_id.len == MP_ID_LEN);
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(fc->channel_id.data, MP_ID_LEN, hex);
		strncat(seen, hex, seen_len - strlen(seen) - 1);
		strncat(seen, " ", seen_len - strlen(seen) - 1);
		micropay__v1__forced_close__free_unpacked(fc, NULL);
	}
	*next = r->next_after;
	*more = r->more;
	size_t n = r->n_forced_closes;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return n;
}

/* m1's two ForcedCloses (ch, sold) walked one per page: each once, then an empty last page. */
static void expect_two_pages(const char *ch, const char *sold)
{
	char seen[200] = "";
	uint64_t a = 0, b = 0, c = 0;
	bool more = false;
	ck_assert_int_eq(forced_page(0, 1, &a, &more, seen, sizeof(seen)), 1);
	ck_assert(more && a > 0);
	ck_assert_int_eq(forced_page(a, 1, &b, &more, seen, sizeof(seen)), 1);
	ck_assert(b > a);
	ck_assert_int_eq(forced_page(b, 1, &c, &more, seen, sizeof(seen)), 0);
	ck_assert(!more && c == b);
	ck_assert_msg(strstr(seen, ch) && strstr(seen, sold), "pages listed %s", seen);
	ck_assert_int_eq(forced_page(0, 0, &c, &more, seen, sizeof(seen)), 2); /* 0: the most */
	ck_assert(!more && c == b);
}

/* ---- the tests ---- */

/* n = 100 at unit 1: m1 redeems 4 of ch, is paid 3 more and 2 on `sold`, goes down; both
 * releases are forced (ch at 4, sold at 0). w1 stores ch's ForcedClose and refuses ch from then
 * on; sold, still ACTIVE in w1, is given to w2 through m1 (which has not polled yet): the
 * broker refuses w2's SegmentClaim CLOSED, stores no segment and records m1's Cap as
 * cap_after_forced_close; w2 shows the channel CLAIM_REFUSED and spends nothing on it. */
START_TEST(forced_release_with_the_holder_down)
{
	char ch[64], sold[64];
	uint8_t id[MP_ID_LEN];
	char w2_account[64];
	w2_up(w2_account, sizeof(w2_account));
	issue(100, ch, sizeof(ch));
	issue(100, sold, sizeof(sold));
	hex_to_bytes(ch, id, MP_ID_LEN);
	ck_assert_ptr_null(pay(ch, 4, 4));
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), 4);
	ck_assert_ptr_null(pay(ch, 3, 7));
	ck_assert_ptr_null(pay(sold, 2, 2));
	ck_assert_int_eq(net_balance(&net, account), 800);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0);

	/* Bad requests: refused, nothing stored (the wallet's next request is the first). */
	struct mp_key owner, stranger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&stranger, seed));
	wallet_owner("w1", "channels", id, &owner);
	ck_assert_int_eq(raw_release(&stranger, id, 0, 0, false), MP_ST(BAD_SIG));
	ck_assert_int_eq(raw_release(&owner, id, 0, 1, false), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(raw_release(&owner, id, 0, 0x80000000u, false), MP_ST(MALFORMED));
	ck_assert_int_eq(raw_release(&owner, id, 0x80000000u, 0, false), MP_ST(MALFORMED));
	expect_broker_channel(ch, "OPEN", -1, 0);
	net_audit_clean(&net);

	/* PENDING until release_at, the same statement again the same. */
	uint64_t now = settle_broker_now(&net);
	json_t *r = release(ch);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	uint64_t release_at = (uint64_t)json_int(r, "release_at");
	ck_assert_uint_ge(release_at, now + 7200);
	json_decref(r);
	expect_release(ch, "PENDING", "DUPLICATE_OK");
	ck_assert_int_eq(raw_release(&owner, id, 0, 0, true), MP_ST(CONFLICT));
	r = release(sold);
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	uint64_t sold_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);
	json_decref(settle_sweep(&net));
	expect_release(ch, "PENDING", "DUPLICATE_OK");
	expect_broker_channel(ch, "OPEN", -1, 0);

	/* After release_wait: the ForcedClose at m1's highest redeemed index, the refund once. */
	settle_advance_to(&net, release_at > sold_at ? release_at : sold_at);
	json_decref(settle_sweep(&net));
	r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "FORCED");
	json_t *fc = json_object_get(r, "forced_close");
	ck_assert_int_eq(json_int(fc, "epoch"), 0);
	ck_assert_int_eq(json_int(fc, "final_index"), 4);
	json_decref(r);
	expect_w1_released(ch); /* at once */
	ck_assert_int_eq(w1_forced_index(id), 4);
	expect_w1_released(ch); /* after w1's restart (w1_forced_index restarts it) */
	expect_broker_channel(ch, "CLOSED_EARLY", 4, 96);
	expect_broker_channel(sold, "CLOSED_EARLY", 0, 100);
	expect_two_pages(ch, sold);
	ck_assert_int_eq(net_balance(&net, account), 800 + 96 + 100);
	json_decref(settle_sweep(&net));
	ck_assert_int_eq(net_balance(&net, account), 800 + 96 + 100);
	net_audit_clean(&net);

	/* m1 back before it polls: its claim of 5..7 is refused and recorded against it. */
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	net_clock_catch_up(&net, "m1");
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), 4);
	ck_assert_int_eq(conflicts_of(ch, "claim_above_forced_close", m1.mid_hex), 1);
	net_audit_clean(&net);

	/* sold given to w2 through m1, which still holds it: the broker refuses w2's claim. */
	char *bundle = w1_gives_to_w2(sold);
	r = w2_accepts(bundle);
	ck_assert(json_is_false(json_object_get(r, "broker_ack")));
	const char *why = json_str(r, "broker_status");
	ck_assert_msg(strstr(why, "CLOSED") && strstr(why, "ForcedClose"), "w2's claim: %s", why);
	json_decref(r);
	ck_assert_int_eq(
	    conflicts_with(sold, "cap_after_forced_close", m1.mid_hex,
			   "first seen by the broker after its ForcedClose"),
	    1); /* a Cap carries no time: the record does not say it was signed after */
	/* w2 spends nothing on it, though m1 would still take it: before and after a restart. */
	expect_w2_claim_refused(sold, bundle);
	ck_assert_int_eq(net_cmd(&net, "kill", "w2"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "w2"), 0);
	expect_w2_claim_refused(sold, bundle);
	free(bundle);
	ck_assert_int_eq(conflicts_of(sold, "cap_after_forced_close", m1.mid_hex), 1);
	ck_assert_int_eq(net_balance(&net, w2_account), 0);
	json_t *sc = settle_channel(&net, sold);
	ck_assert_str_eq(json_str(sc, "state"), "CLOSED_EARLY");
	ck_assert(json_is_null(json_object_get(sc, "finalization")));
	json_decref(sc);
	ck_assert_int_eq(net_balance(&net, account), 800 + 96 + 100);
	net_audit_clean(&net);

	/* m1 polling every second: both ForcedCloses applied; a Pay on sold from a w2 that
	 * believes its claim acknowledged is refused by m1. */
	net_restart_with(&net, "m1", "merchant", "release_poll = 1");
	net_clock_catch_up(&net, "m1");
	ck_assert_msg(wait_for(m1_applied, NULL, 20000), "m1 did not apply the ForcedClose");
	ck_assert_msg(wait_for(m1_applied_sold, NULL, 20000), "m1 did not apply sold's");
	twallet_store_edit(&net, "w2", claims_acked, NULL); /* so that w2 asks m1 */
	const char *err = pay_as("w2", sold, 1, 3);
	ck_assert_msg(err && strstr(err, "CLOSED") && strstr(err, "ForcedClose") &&
			  !strstr(err, "SegmentClaim"),
		      "pay after the ForcedClose: %s", err ? err : "accepted");
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), 4);
	ck_assert_int_eq(net_balance(&net, account), 800 + 96 + 100);
	net_audit_clean(&net);
	mp_key_free(&owner);
	mp_key_free(&stranger);
}
END_TEST

/* The holder answers in time (the wallet's close at m1): DONE, no ForcedClose; a finalised
 * channel's release is TOO_LATE. */
START_TEST(release_answered_in_time_and_too_late)
{
	char ch[64], late[64];
	issue(100, ch, sizeof(ch));
	issue(100, late, sizeof(late));
	ck_assert_ptr_null(pay(ch, 2, 2));
	json_t *r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	uint64_t release_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);

	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", ch);
	r = admin_ok(&net, "w1", "close", params);
	ck_assert_int_eq(json_int(r, "final_index"), 2);
	json_decref(r);
	ck_assert_msg(wait_for(closed_early, ch, 10000), "w1's early refund did not come");
	expect_broker_channel(ch, "CLOSED_EARLY", 2, 98);
	expect_release(ch, "DONE", "DUPLICATE_OK");
	settle_advance_to(&net, release_at);
	json_decref(settle_sweep(&net));
	r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "DONE");
	ck_assert(json_is_null(json_object_get(r, "forced_close")));
	json_decref(r);
	expect_broker_channel(ch, "CLOSED_EARLY", 2, 98);
	ck_assert_int_eq(net_balance(&net, account), 800 + 98);
	net_audit_clean(&net);

	/* Finalised: TOO_LATE, nothing changes. */
	json_t *s = settle_channel(&net, late);
	settle_advance_to(&net, (uint64_t)json_int(s, "finalize_at"));
	json_decref(s);
	json_decref(settle_sweep(&net));
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"close\":true}", late);
	char err[512];
	r = admin(&net, "w1", "release", params, err, sizeof(err));
	ck_assert_msg(!r && strstr(err, "TOO_LATE"), "release of a finalised channel: %s", err);
	net_audit_clean(&net);
}
END_TEST

static void expect_release_as(const char *wallet, const char *channel, const char *state,
			      const char *status)
{
	json_t *r = release_as(wallet, channel);
	ck_assert_str_eq(json_str(r, "state"), state);
	ck_assert_msg(!strncmp(json_str(r, "status"), status, strlen(status)), "status %s",
		      json_str(r, "status"));
	json_decref(r);
}

/* w1 asks for a release, then gives the channel to w2 (SegmentClaim acknowledged): w1's
 * release is DONE and never forced (it would refund w2, who never asked); w2's own release of
 * the same channel and epoch is then accepted (a DONE release blocks no later one) and forced,
 * the rest refunded to w2 and the channel RELEASED in w2. */
START_TEST(release_after_a_change_of_owner)
{
	char ch[64], w2_account[64];
	w2_up(w2_account, sizeof(w2_account));
	issue(100, ch, sizeof(ch));
	ck_assert_ptr_null(pay(ch, 2, 2));
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	json_t *r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	uint64_t release_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);

	char *bundle = w1_gives_to_w2(ch);
	r = w2_accepts(bundle);
	free(bundle);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	expect_release(ch, "DONE", "DUPLICATE_OK");
	settle_advance_to(&net, release_at);
	json_decref(settle_sweep(&net));
	expect_release(ch, "DONE", "DUPLICATE_OK");
	expect_broker_channel(ch, "OPEN", -1, 0);
	ck_assert_int_eq(net_balance(&net, w2_account), 0);
	net_audit_clean(&net);

	/* w2's release of segment 1 in the same epoch: a new one, forced at m1's 2, paid to w2. */
	r = release_as("w2", ch);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	release_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);
	expect_release_as("w2", ch, "PENDING", "DUPLICATE_OK");
	expect_release(ch, "DONE", "DUPLICATE_OK");
	settle_advance_to(&net, release_at);
	json_decref(settle_sweep(&net));
	r = release_as("w2", ch);
	ck_assert_str_eq(json_str(r, "state"), "FORCED");
	ck_assert_int_eq(json_int(json_object_get(r, "forced_close"), "final_index"), 2);
	json_decref(r);
	expect_broker_channel(ch, "CLOSED_EARLY", 2, 98);
	ck_assert_int_eq(net_balance(&net, w2_account), 98);
	json_t *l = admin_ok(&net, "w2", "channels", NULL);
	json_t *list = json_object_get(l, "channels");
	ck_assert_int_eq(json_array_size(list), 1);
	ck_assert_str_eq(json_str(json_array_get(list, 0), "state"), "RELEASED");
	json_decref(l);
	net_audit_clean(&net);
}
END_TEST

/* m1 holds ch, paid 3 units it has not redeemed, polling every second: told of w1's PENDING
 * release, it redeems at once (nobody asks it to), so the ForcedClose is at its highest accepted
 * point 3, not at the epoch's start. */
static bool m1_credited_3(void *arg)
{
	(void)arg;
	return net_pending(&net, m1.mid_hex) == 3;
}

START_TEST(holder_told_of_a_pending_release)
{
	char ch[64];
	net_restart_with(&net, "m1", "merchant", "release_poll = 1");
	net_clock_catch_up(&net, "m1");
	issue(100, ch, sizeof(ch));
	ck_assert_ptr_null(pay(ch, 3, 3));
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), 0);
	json_t *r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "PENDING");
	uint64_t release_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);
	ck_assert_msg(wait_for(m1_credited_3, NULL, 20000), "m1 did not redeem when told");
	ck_assert(log_contains(&net, "m1", "PENDING release(s) naming us"));
	settle_advance_to(&net, release_at);
	json_decref(settle_sweep(&net));
	r = release(ch);
	ck_assert_str_eq(json_str(r, "state"), "FORCED");
	ck_assert_int_eq(json_int(json_object_get(r, "forced_close"), "final_index"), 3);
	json_decref(r);
	expect_broker_channel(ch, "CLOSED_EARLY", 3, 97);
	ck_assert_int_eq(net_balance(&net, account), 900 + 97);
	net_audit_clean(&net);
}
END_TEST

struct owner_release {
	const struct mp_key *key;
	const uint8_t *id;
	uint32_t seg_seq;
};

static bool release_recorded(void *arg)
{
	const struct owner_release *o = arg;
	MpCode code = raw_release(o->key, o->id, o->seg_seq, 0, false);
	return code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK);
}

/* Sweep batch 1. `stuck` was given to w2, whose claim the broker has not seen (m1's Cap notice
 * recorded segment 1, no payout account): w2's release of it is due first but cannot be paid;
 * the next pass forces the younger due release of `other` instead of trying `stuck` again; once
 * w2's claim names its account, `stuck` is forced too. */
START_TEST(stuck_release_goes_last)
{
	char stuck[64], other[64], w2_account[64];
	uint8_t id[MP_ID_LEN];
	w2_up(w2_account, sizeof(w2_account));
	issue(100, stuck, sizeof(stuck));
	issue(100, other, sizeof(other));
	hex_to_bytes(stuck, id, MP_ID_LEN);
	ck_assert_ptr_null(pay(stuck, 1, 1));
	ck_assert_ptr_null(pay(other, 1, 1));
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	char *bundle = w1_gives_to_w2(stuck);
	struct mp_key owner;
	wallet_owner("w2", "offers", id, &owner);
	struct owner_release o = {&owner, id, 1};
	ck_assert_msg(wait_for(release_recorded, &o, 20000), "w2's release of stuck refused");
	settle_advance_to(&net, settle_broker_now(&net) + 60); /* other's release is younger */
	json_t *r = release(other);
	uint64_t release_at = (uint64_t)json_int(r, "release_at");
	json_decref(r);

	settle_advance_to(&net, release_at);
	json_decref(settle_sweep(&net)); /* stuck: no payout account */
	expect_broker_channel(stuck, "OPEN", -1, 0);
	expect_broker_channel(other, "OPEN", -1, 0);
	json_decref(settle_sweep(&net)); /* other, not stuck again */
	expect_broker_channel(stuck, "OPEN", -1, 0);
	expect_broker_channel(other, "CLOSED_EARLY", 1, 99);
	ck_assert_int_eq(net_balance(&net, account), 800 + 99);
	net_audit_clean(&net);

	r = w2_accepts(bundle);
	free(bundle);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	json_decref(settle_sweep(&net));
	expect_broker_channel(stuck, "CLOSED_EARLY", 1, 99);
	ck_assert_int_eq(net_balance(&net, w2_account), 99);
	expect_release_as("w2", stuck, "FORCED", "DUPLICATE_OK");
	net_audit_clean(&net);
	mp_key_free(&owner);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("release");
	TCase *tc = tcase_create("release");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, forced_release_with_the_holder_down);
	tcase_add_test(tc, release_answered_in_time_and_too_late);
	tcase_add_test(tc, release_after_a_change_of_owner);
	tcase_add_test(tc, holder_told_of_a_pending_release);
	suite_add_tcase(s, tc);
	TCase *batch1 = tcase_create("release_batch1");
	tcase_set_timeout(batch1, 300);
	tcase_add_checked_fixture(batch1, setup_net_batch1, teardown_net);
	tcase_add_test(batch1, stuck_release_goes_last);
	suite_add_tcase(s, batch1);
	return mp_check_run(s);
}
