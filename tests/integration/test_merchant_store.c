/* merchantd's store under the real daemons (deploy/mpnet): the test acts as a wallet on the
 * wire and reaches into the merchant's SQLite file only to hold its write lock, the way another
 * process or a slow disk would stall a commit.
 *  - what is reported outside the pay path (OpenAck, order.show, channels) is durable only,
 *    and the loop keeps serving while a commit waits on the store's lock, or while a
 *    redemption round would have to wait on it;
 *  - with one batch committing and the next one full, Pays are refused, not queued;
 *  - a commit that fails stops the daemon, and nothing of it was acknowledged;
 *  - kill -9 during a stream of pipelined Pays loses no acknowledged Pay;
 *  - compaction folds old redeemed journal rows and answered Redeems away and shrinks the
 *    file, while retries of recent Pays (and of each channel's last Pay) still get
 *    DUPLICATE_OK. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_db.h"
#include "harness_store.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], m1_ep[128], m1_hex[64], m1_db[700];
static uint8_t m1[MP_ID_LEN];

static void restart_m1(const char *settings)
{
	net_restart_with(&net, "m1", "merchant", settings);
}

static void setup_net(void)
{
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_path(&net, "m1/merchant.db", m1_db, sizeof(m1_db));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	/* Seconds instead of an hour, so compaction can be tested; only on demand. */
	restart_m1("t_dedupe = 2\noutbox_retention = 1\ncompact_interval = 0");
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- broker side ---- */

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* A registered, funded test wallet with a channel of n units of 1 held by m1. */
static void issued_channel(struct twallet *tw, struct tchannel *ch, uint32_t n)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	char hex[MP_HEX_ID_LEN + 1], params[160];
	mp_hex_encode(tw->account_id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%u,\"fund_id\":\"%s\"}",
		 hex, n, hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
	tchannel_make(ch, tw, n, 1, m1);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
}

/* ---- merchant side ---- */

static void new_order(uint64_t price, uint8_t ref[MP_ID_LEN])
{
	char params[64];
	snprintf(params, sizeof(params), "{\"price\":%llu}", (unsigned long long)price);
	json_t *o = admin_ok(&net, "m1", "order.create", params);
	hex_to_bytes(json_str(o, "order_ref"), ref, MP_ID_LEN);
	json_decref(o);
}

static bool order_paid(const uint8_t ref[MP_ID_LEN])
{
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(ref, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"order_ref\":\"%s\"}", hex);
	json_t *o = admin_ok(&net, "m1", "order.show", params);
	bool paid = json_is_true(json_object_get(o, "paid"));
	json_decref(o);
	return paid;
}

/* m1's `channels` entry of this channel: last and credit. */
static void channel_shown(const struct tchannel *ch, int64_t *last, int64_t *credit)
{
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *all = admin_ok(&net, "m1", "channels", NULL);
	json_t *list = json_object_get(all, "channels"), *entry = NULL;
	size_t i;
	json_t *it;
	json_array_foreach(list, i, it) if (!strcmp(json_str(it, "channel_id"), hex)) entry = it;
	ck_assert_msg(entry != NULL, "channel %s not listed", hex);
	*last = json_int(entry, "last");
	*credit = json_int(entry, "credit");
	json_decref(all);
}

static void redeem_now(void)
{
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
}

/* ---- a pipelining wallet: requests sent without waiting, answers read by request id ---- */

struct words {
	uint8_t (*w)[MP_HASH_LEN];
	uint32_t n;
};

static int keep_word(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct words *ws = arg;
	memcpy(ws->w[index], w, MP_HASH_LEN);
	return 0;
}

static void chain_words(const struct tchannel *ch, struct words *ws)
{
	ws->n = ch->n;
	ws->w = calloc(ch->n + 1, MP_HASH_LEN);
	ck_assert_ptr_nonnull(ws->w);
	struct mp_hasher *h = mp_hasher_new();
	uint8_t root[MP_HASH_LEN];
	ck_assert_int_eq(mp_chain_generate(h, ch->seed, ch->nonce, ch->n, 1, keep_word, ws, root),
			 0);
	ck_assert_mem_eq(root, ch->root, MP_HASH_LEN);
	mp_hasher_free(h);
}

static uint64_t send_env(struct wire *w, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = ++w->next_id;
	size_t len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *buf = malloc(len + 4);
	mp_put_be32(buf, (uint32_t)len);
	micropay__v1__envelope__pack(env, buf + 4);
	ck_assert(wire_write(w, buf, len + 4));
	free(buf);
	return env->request_id;
}

/* The next answer on w; NULL on EOF or after 10 s (wire_connect's receive timeout). */
static MpEnvelope *recv_env(struct wire *w)
{
	uint8_t hdr[4];
	if (!wire_read_exact(w, hdr, 4))
		return NULL;
	uint32_t n = mp_get_be32(hdr);
	uint8_t *body = malloc(n ? n : 1);
	MpEnvelope *out =
	    wire_read_exact(w, body, n) ? micropay__v1__envelope__unpack(NULL, n, body) : NULL;
	free(body);
	return out;
}

/* True if no answer has arrived on w yet (looked at without waiting). */
static bool nothing_arrived(struct wire *w)
{
	int flags = fcntl(w->fd, F_GETFL);
	fcntl(w->fd, F_SETFL, flags | O_NONBLOCK);
	uint8_t byte;
	int n = SSL_peek(w->ssl, &byte, 1);
	fcntl(w->fd, F_SETFL, flags);
	return n <= 0 && SSL_get_error(w->ssl, n) == SSL_ERROR_WANT_READ;
}

static uint64_t send_pay(struct wire *w, const struct tchannel *ch, const struct words *ws,
			 uint32_t j, const uint8_t ref[MP_ID_LEN])
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(ch, id);
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	req.j = j;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, ws->w[j]};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	return send_env(w, &env);
}

static uint64_t send_open(struct wire *w, const struct tchannel *ch)
{
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = ch->cert;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	return send_env(w, &env);
}

/* Pay j and wait for its answer: the PayAck (freed by the caller). */
static MpEnvelope *pay(struct wire *w, const struct tchannel *ch, const struct words *ws,
		       uint32_t j, const uint8_t ref[MP_ID_LEN])
{
	uint64_t id = send_pay(w, ch, ws, j, ref);
	MpEnvelope *e = recv_env(w);
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK) && e->request_id == id,
		      "no PayAck for j=%u", j);
	return e;
}

static MpCode pay_code(struct wire *w, const struct tchannel *ch, const struct words *ws,
		       uint32_t j, const uint8_t ref[MP_ID_LEN])
{
	MpEnvelope *e = pay(w, ch, ws, j, ref);
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* Open on w; the OpenAck's point index and credit. */
static void open_point(struct wire *w, const struct tchannel *ch, uint32_t *last, uint64_t *credit)
{
	MpEnvelope *ack = tchannel_open(ch, w);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	*last = ack->open_ack->point->index;
	*credit = ack->open_ack->credit;
	micropay__v1__envelope__free_unpacked(ack, NULL);
}

/* Pay j on a fresh connection (Open first). */
static MpCode pay_code_new_conn(const struct tchannel *ch, const struct words *ws, uint32_t j,
				const uint8_t ref[MP_ID_LEN])
{
	struct wire w;
	uint32_t last;
	uint64_t credit;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	open_point(&w, ch, &last, &credit);
	MpEnvelope *e = pay(&w, ch, ws, j, ref);
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	return code;
}

#define PIPELINE 16 /* Pays in flight per connection */

/* Pays from..to, one unit each, PIPELINE at a time; each answered `want`. */
static void pay_range(struct wire *w, const struct tchannel *ch, const struct words *ws,
		      uint32_t from, uint32_t to, const uint8_t ref[MP_ID_LEN], MpCode want)
{
	for (uint32_t j = from; j <= to; j += PIPELINE) {
		uint32_t last = j + PIPELINE - 1 < to ? j + PIPELINE - 1 : to;
		for (uint32_t k = j; k <= last; k++)
			send_pay(w, ch, ws, k, ref);
		for (uint32_t k = j; k <= last; k++) {
			MpEnvelope *e = recv_env(w);
			ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck");
			ck_assert_msg(e->pay_ack->status->code == want, "Pay answered %s (%s)",
				      mp_code_name(e->pay_ack->status->code),
				      e->pay_ack->status->detail);
			micropay__v1__envelope__free_unpacked(e, NULL);
		}
	}
}

/* ---- the store's write lock, held from outside ---- */

static sqlite3 *hold_store_lock(void)
{
	return store_lock_hold(m1_db);
}

static void free_words(struct words *ws)
{
	free(ws->w);
}

/* While a batch waits on the store's lock: its Pay is not in the OpenAck, order.show or
 * channels; the loop answers Opens and admin calls; a reconnecting wallet's verbatim retry is
 * answered DUPLICATE_OK once the batch commits. Afterwards everything shows the Pay. */
START_TEST(pending_pay_is_reported_only_once_durable)
{
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	issued_channel(&tw, &ch, 100);
	chain_words(&ch, &ws);
	struct wire a, b;
	ck_assert(wire_connect(&a, m1_ep, ca, NULL, NULL));
	uint32_t last;
	uint64_t credit;
	open_point(&a, &ch, &last, &credit);
	uint8_t order[MP_ID_LEN];
	new_order(3, order);
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 1, order), MP_ST(UNDERPAID)); /* credit 1 */

	sqlite3 *lock = hold_store_lock();
	uint64_t pay_id = send_pay(&a, &ch, &ws, 3, order); /* credit 3: pays the order */
	uint64_t open_id = send_open(&a, &ch);
	/* Same connection, so the Pay was processed first; its batch is waiting on the lock. */
	MpEnvelope *e = recv_env(&a);
	ck_assert_msg(e != NULL, "no answer while the commit waits: the loop is blocked");
	ck_assert_uint_eq(e->request_id, open_id);
	ck_assert_int_eq(e->body_case, MP_BODY(OPEN_ACK));
	ck_assert_uint_eq(e->open_ack->point->index, 1);
	ck_assert_mem_eq(e->open_ack->point->w.data, ws.w[1], MP_HASH_LEN);
	ck_assert_uint_eq(e->open_ack->credit, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(!order_paid(order));
	int64_t shown_last, shown_credit;
	channel_shown(&ch, &shown_last, &shown_credit);
	ck_assert_int_eq(shown_last, 1);
	ck_assert_int_eq(shown_credit, 1);
	/* The wallet reconnects: the OpenAck shows the durable last, below the pending Pay,
	 * which it then resends verbatim. */
	ck_assert(wire_connect(&b, m1_ep, ca, NULL, NULL));
	open_point(&b, &ch, &last, &credit);
	ck_assert_uint_eq(last, 1);
	ck_assert_uint_eq(credit, 1);
	uint64_t retry_id = send_pay(&b, &ch, &ws, 3, order);
	usleep(200 * 1000);
	ck_assert_msg(nothing_arrived(&a) && nothing_arrived(&b),
		      "a Pay was answered before its batch committed");
	store_lock_release(lock);

	e = recv_env(&a);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK) && e->request_id == pay_id);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->pay_ack->last, 3);
	ck_assert_uint_eq(e->pay_ack->credit, 0);
	ck_assert_uint_eq(e->pay_ack->order_price, 3);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = recv_env(&b);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK) && e->request_id == retry_id);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(e->pay_ack->order_price, 3);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(order_paid(order));
	channel_shown(&ch, &shown_last, &shown_credit);
	ck_assert_int_eq(shown_last, 3);
	ck_assert_int_eq(shown_credit, 0);
	open_point(&a, &ch, &last, &credit);
	ck_assert_uint_eq(last, 3);
	ck_assert_uint_eq(credit, 0);
	wire_close(&a);
	wire_close(&b);
	int64_t before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 3);
	audit_clean();
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

static int64_t elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* A redemption round writes its Redeem to the outbox on the store thread. While the store's
 * write lock is held from outside (3 s), that write waits and the round with it, and nothing is
 * sent; the loop meanwhile answers status, Opens of known channels and retried Pays on other
 * connections promptly, and a fresh Pay queues behind the write. Once the lock is free the round
 * goes on and everything is credited. */
START_TEST(redeem_does_not_stall_the_loop_on_the_store_lock)
{
	struct twallet tw[2];
	struct tchannel ch[2];
	struct words ws[2];
	struct wire w[2];
	uint32_t last;
	uint64_t credit;
	uint8_t order[MP_ID_LEN];
	new_order(1000, order);
	for (int c = 0; c < 2; c++) {
		issued_channel(&tw[c], &ch[c], 20);
		chain_words(&ch[c], &ws[c]);
		ck_assert(wire_connect(&w[c], m1_ep, ca, NULL, NULL));
		open_point(&w[c], &ch[c], &last, &credit);
	}
	ck_assert_int_eq(pay_code(&w[0], &ch[0], &ws[0], 3, order), MP_ST(UNDERPAID));
	ck_assert_int_eq(pay_code(&w[1], &ch[1], &ws[1], 1, order), MP_ST(UNDERPAID));
	int64_t before = net_pending(&net, m1_hex);

	sqlite3 *lock = hold_store_lock();
	pid_t redeemer = fork(); /* the admin call waits for the round: from a child */
	ck_assert_int_ge(redeemer, 0);
	if (redeemer == 0) {
		char err[256];
		json_t *r = admin(&net, "m1", "redeem", NULL, err, sizeof(err));
		if (!r)
			fprintf(stderr, "redeem: %s\n", err);
		_exit(r ? 0 : 1);
	}
	usleep(300 * 1000); /* the round's Redeem waits on its outbox write */
	uint64_t fresh_id = send_pay(&w[1], &ch[1], &ws[1], 2, order); /* queued behind it */
	int64_t worst = 0;
	struct timespec t0, start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (elapsed_ms(&start) < 3000) { /* within the store thread's 5 s lock wait */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		json_decref(admin_ok(&net, "m1", "status", NULL));
		struct wire b;
		ck_assert(wire_connect(&b, m1_ep, ca, NULL, NULL));
		open_point(&b, &ch[0], &last, &credit); /* a known channel: from memory */
		ck_assert_uint_eq(last, 3);
		ck_assert_int_eq(pay_code(&b, &ch[0], &ws[0], 3, order), MP_ST(DUPLICATE_OK));
		wire_close(&b);
		int64_t ms = elapsed_ms(&t0);
		worst = ms > worst ? ms : worst;
		usleep(100 * 1000);
	}
	fprintf(stderr, "outbox write on the lock: slowest status + Open + retried Pay: %lld ms\n",
		(long long)worst);
	ck_assert_msg(worst < 1000, "the loop waited on the store's lock: %lld ms",
		      (long long)worst);
	/* Durable before sent: nothing reached the broker, the fresh Pay is not answered. */
	ck_assert_int_eq(net_pending(&net, m1_hex), before);
	ck_assert(nothing_arrived(&w[1]));
	int st;
	ck_assert_int_eq(waitpid(redeemer, &st, WNOHANG), 0); /* the round waits, not failed */
	store_lock_release(lock);

	MpEnvelope *e = recv_env(&w[1]);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK) && e->request_id == fresh_id);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(waitpid(redeemer, &st, 0), redeemer);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "the round waiting on the lock failed");
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 3 + 2);
	audit_clean();
	for (int c = 0; c < 2; c++) {
		wire_close(&w[c]);
		free_words(&ws[c]);
		tchannel_free(&ch[c]);
		mp_key_free(&tw[c].account);
	}
}
END_TEST

/* The point m1's channel row of ch holds (the stored row, read as another process would). */
static int64_t stored_row_last(const struct tchannel *ch)
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(ch, id);
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open_v2(m1_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "SELECT last FROM channels WHERE channel_id = ?", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	int64_t last = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return last;
}

/* A channel row follows the journal lazily (merchantd/journal_chain.h): once Pays stop, m1
 * brings it up to date by itself within about two seconds (journal_sync.c), not only at the
 * next batch or restart. Waited for up to 20 s (a deadline, not a timing assertion). */
START_TEST(channel_row_folded_when_pays_stop)
{
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	struct wire w;
	uint8_t order[MP_ID_LEN];
	new_order(1000000, order);
	issued_channel(&tw, &ch, 40);
	chain_words(&ch, &ws);
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	uint32_t last;
	uint64_t credit;
	open_point(&w, &ch, &last, &credit);
	for (uint32_t j = last + 1; j <= last + 5; j++) {
		ck_assert_int_eq(pay_code(&w, &ch, &ws, j, order), MP_ST(UNDERPAID));
		usleep(1200 * 1000 * (j == last + 3)); /* a pause inside a fold's interval */
	}
	int64_t row_last = stored_row_last(&ch);
	for (int i = 0; i < 200 && row_last != last + 5; i++) {
		usleep(100 * 1000);
		row_last = stored_row_last(&ch);
	}
	ck_assert_int_eq(row_last, last + 5);
	wire_close(&w);
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

/* The unanswered Redeems in m1's outbox: how many, and the oldest one's id and bytes. */
static int outbox_unanswered(uint8_t id[MP_ID_LEN], uint8_t **stmt, size_t *len)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open(m1_db, &db), SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db,
			       "SELECT redeem_id, stmt, (SELECT count(*) FROM "
			       "redeem_outbox WHERE answered_at IS NULL) FROM "
			       "redeem_outbox WHERE answered_at IS NULL ORDER BY rowid",
			       -1, &st, NULL),
	    SQLITE_OK);
	int n = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		ck_assert_int_eq(sqlite3_column_bytes(st, 0), MP_ID_LEN);
		memcpy(id, sqlite3_column_blob(st, 0), MP_ID_LEN);
		*len = (size_t)sqlite3_column_bytes(st, 1);
		*stmt = malloc(*len);
		memcpy(*stmt, sqlite3_column_blob(st, 1), *len);
		n = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* A Redeem stored in the outbox but not sent (the broker went away while its write waited on
 * the disk), then merchantd killed -9: after the restart the same bytes are sent (the broker
 * records that redeem_id with that statement's hash) and credited once. */
START_TEST(a_stored_redeem_is_sent_verbatim_after_a_crash)
{
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	issued_channel(&tw, &ch, 20);
	chain_words(&ch, &ws);
	struct wire a;
	ck_assert(wire_connect(&a, m1_ep, ca, NULL, NULL));
	uint32_t last;
	uint64_t credit;
	open_point(&a, &ch, &last, &credit);
	uint8_t order[MP_ID_LEN], id[MP_ID_LEN];
	new_order(1000, order);
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 4, order), MP_ST(UNDERPAID));
	wire_close(&a);
	redeem_now(); /* the link is up and nothing older is unanswered */
	int64_t before = net_pending(&net, m1_hex);
	ck_assert_int_eq(pay_code_new_conn(&ch, &ws, 6, order), MP_ST(UNDERPAID));

	sqlite3 *lock = hold_store_lock();
	pid_t redeemer = fork();
	ck_assert_int_ge(redeemer, 0);
	if (redeemer == 0) {
		char err[256];
		json_t *r = admin(&net, "m1", "redeem", NULL, err, sizeof(err));
		_exit(r ? 0 : 1);
	}
	usleep(500 * 1000); /* built and signed; its outbox write waits on the lock */
	ck_assert_int_eq(net_cmd(&net, "kill", "broker KILL"), 0);
	store_lock_release(lock);
	int st;
	ck_assert_int_eq(waitpid(redeemer, &st, 0), redeemer);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "redeemed with the broker down");
	uint8_t *stmt = NULL;
	size_t len = 0;
	ck_assert_int_eq(outbox_unanswered(id, &stmt, &len), 1);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	char idb[64], idlit[64];
	sql_bytea(id, MP_ID_LEN, idb, sizeof(idb));
	snprintf(idlit, sizeof(idlit), "%s", idb);
	char *count = sql_value(&net, "SELECT count(*) FROM redeems WHERE redeem_id = %s", idlit);
	ck_assert_str_eq(count, "0"); /* never sent */
	free(count);

	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 2); /* 4 -> 6, once */
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 2);
	MpSigned *s = mp_stmt_decode(stmt, len);
	ck_assert_ptr_nonnull(s);
	uint8_t hash[MP_HASH_LEN];
	char want[2 * MP_HASH_LEN + 1];
	mp_stmt_hash(s, hash);
	mp_hex_encode(hash, MP_HASH_LEN, want);
	mp_stmt_free(s);
	char *got = sql_value(&net,
			      "SELECT encode(stmt_hash, 'hex') FROM redeems WHERE redeem_id "
			      "= %s",
			      idlit);
	ck_assert_str_eq(got, want); /* the stored bytes, not a rebuilt Redeem */
	free(got);
	ck_assert_int_eq(outbox_unanswered(id, &stmt, &len), 0);
	free(stmt);
	audit_clean();
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

/* m1's value of a metric (name ends with a space): read from its sample line, which starts a
 * line; the HELP line names it too. */
static int64_t metric_of_m1(const char *name)
{
	json_t *r = admin_ok(&net, "m1", "metrics", NULL);
	const char *text = json_str(r, "prometheus");
	const char *at = strstr(text, name);
	while (at && at != text && at[-1] != '\n')
		at = strstr(at + 1, name);
	ck_assert_msg(at != NULL, "no metric %s", name);
	int64_t v = strtoll(at + strlen(name), NULL, 10);
	json_decref(r);
	return v;
}

/* One batch committing (held on the lock) and the next one full at commit_max: further Pays
 * are refused LIMIT at once, not queued; the queued ones are answered after the commit, and
 * the refused ones are accepted when resent. */
START_TEST(full_pipeline_refuses_instead_of_queueing)
{
	restart_m1("commit_max = 4");
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	issued_channel(&tw, &ch, 50);
	chain_words(&ch, &ws);
	struct wire a;
	ck_assert(wire_connect(&a, m1_ep, ca, NULL, NULL));
	uint32_t last;
	uint64_t credit;
	open_point(&a, &ch, &last, &credit);
	uint8_t order[MP_ID_LEN];
	new_order(1000, order);
	int64_t busy_before = metric_of_m1("micropay_merchant_store_busy_total ");

	sqlite3 *lock = hold_store_lock();
	uint64_t id[8];
	id[1] = send_pay(&a, &ch, &ws, 1, order);
	usleep(300 * 1000); /* its batch is submitted (at once: the store is idle) and waits */
	for (uint32_t j = 2; j <= 7; j++)
		id[j] = send_pay(&a, &ch, &ws, j, order);
	for (uint32_t j = 6; j <= 7; j++) { /* answered at once: 2..5 filled the next batch */
		MpEnvelope *e = recv_env(&a);
		ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck for j=%u", j);
		ck_assert_uint_eq(e->request_id, id[j]);
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(LIMIT));
		ck_assert_uint_eq(e->pay_ack->last, 0); /* the durable point */
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	ck_assert_int_eq(metric_of_m1("micropay_merchant_store_busy_total ") - busy_before, 2);
	store_lock_release(lock);
	for (uint32_t j = 1; j <= 5; j++) {
		MpEnvelope *e = recv_env(&a);
		ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
		ck_assert_uint_eq(e->request_id, id[j]);
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 6, order), MP_ST(UNDERPAID));
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 7, order), MP_ST(UNDERPAID));
	wire_close(&a);
	restart_m1("commit_max = 256");
	int64_t before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 7);
	audit_clean();
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

static bool log_has(const char *daemon, const char *text)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "grep -q -F '%s' '%s/%s/log'", text, net.dir, daemon);
	return system(cmd) == 0;
}

static bool m1_running(void)
{
	char pid[32];
	net_read(&net, "m1", "pid", pid, sizeof(pid));
	return pid_running((pid_t)atoi(pid));
}

/* A batch that cannot commit (the lock held past the busy timeout) stops merchantd with a
 * log line, before its Pay is answered; after a restart the Pay is simply accepted. */
START_TEST(failed_commit_stops_the_daemon)
{
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	issued_channel(&tw, &ch, 50);
	chain_words(&ch, &ws);
	struct wire a;
	ck_assert(wire_connect(&a, m1_ep, ca, NULL, NULL));
	uint32_t last;
	uint64_t credit;
	open_point(&a, &ch, &last, &credit);
	uint8_t order[MP_ID_LEN];
	new_order(1000, order);
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 2, order), MP_ST(UNDERPAID));

	sqlite3 *lock = hold_store_lock();
	send_pay(&a, &ch, &ws, 5, order);
	MpEnvelope *e = recv_env(&a); /* the busy timeout is 5 s, our receive timeout 10 s */
	ck_assert_msg(e == NULL, "answered although the batch could not commit");
	store_lock_release(lock);
	wire_close(&a);
	for (int i = 0; i < 50 && m1_running(); i++)
		usleep(100 * 1000);
	ck_assert_msg(!m1_running(), "merchantd still runs after a failed commit");
	ck_assert(log_has("m1", "did not commit: stopping so that nothing unjournalled"));

	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	ck_assert(wire_connect(&a, m1_ep, ca, NULL, NULL));
	open_point(&a, &ch, &last, &credit);
	ck_assert_uint_eq(last, 2);
	ck_assert_uint_eq(credit, 2);
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 5, order), MP_ST(UNDERPAID)); /* fresh */
	ck_assert_int_eq(pay_code(&a, &ch, &ws, 5, order), MP_ST(DUPLICATE_OK));
	wire_close(&a);
	int64_t before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 5);
	audit_clean();
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

/* Redemption in steps when the journal lacks the words (a store of an older merchantd, or rows
 * lost): each step's word is walked down from the channel's last word, a walk longer than
 * max_jump on a worker thread instead of the loop. The channel ends fully credited. */
START_TEST(long_step_walks_run_on_a_worker)
{
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	issued_channel(&tw, &ch, 3100);
	chain_words(&ch, &ws);
	uint8_t order[MP_ID_LEN], id[MP_ID_LEN];
	new_order(1000000, order);
	for (uint32_t j = 1000; j <= 3000; j += 1000)
		ck_assert_int_eq(pay_code_new_conn(&ch, &ws, j, order), MP_ST(UNDERPAID));
	restart_m1("max_jump = 16\n[redeem]\nhash_budget = 1000");
	tchannel_id(&ch, id);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(m1_db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st;
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "DELETE FROM pay_journal WHERE channel_id = ?", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_eq(sqlite3_changes(db), 3);
	sqlite3_finalize(st);
	sqlite3_close(db);

	int64_t before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, 3000);
	ck_assert(log_has("m1", "2000 hashes down to 1000 on a worker thread"));
	ck_assert(log_has("m1", "1000 hashes down to 2000 on a worker thread"));
	restart_m1("max_jump = 4096\n[redeem]\nhash_budget = 268435456");
	audit_clean();
	free_words(&ws);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}
END_TEST

#define STREAM_CHANNELS 3
#define STREAM_N	20000 /* channel length: more than the stream reaches before the kill */

/* Send a Pay without failing the test if the merchant is gone. */
static bool try_send_pay(struct wire *w, const struct tchannel *ch, const struct words *ws,
			 uint32_t j, const uint8_t ref[MP_ID_LEN])
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(ch, id);
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	req.j = j;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, ws->w[j]};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = ++w->next_id;
	size_t len = micropay__v1__envelope__get_packed_size(&env);
	uint8_t *buf = malloc(len + 4);
	mp_put_be32(buf, (uint32_t)len);
	micropay__v1__envelope__pack(&env, buf + 4);
	bool ok = wire_write(w, buf, len + 4);
	free(buf);
	return ok;
}

struct stream {
	struct twallet tw;
	struct tchannel ch;
	struct words ws;
	struct wire w;
	bool *acked;   /* [j]: answered before the kill */
	uint32_t sent; /* Pays 1..sent were sent (the wallet's in-flight ones included) */
	bool alive;
};

/* One round on one channel: PIPELINE Pays sent, then their answers read (until EOF). */
static void stream_round(struct stream *st, const uint8_t order[MP_ID_LEN])
{
	uint64_t first_id = st->w.next_id + 1;
	uint32_t base = st->sent, k;
	for (k = 1; k <= PIPELINE && st->alive; k++) {
		st->alive = try_send_pay(&st->w, &st->ch, &st->ws, base + k, order);
		if (st->alive)
			st->sent = base + k;
	}
	for (uint32_t n = base; n < st->sent; n++) {
		MpEnvelope *e = recv_env(&st->w);
		if (!e) {
			st->alive = false;
			return;
		}
		ck_assert_int_eq(e->body_case, MP_BODY(PAY_ACK));
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
		uint32_t j = base + (uint32_t)(e->request_id - first_id) + 1;
		ck_assert_uint_eq(e->pay_ack->last, j);
		st->acked[j] = true;
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
}

/* Pipelined Pays on three channels while another process kills merchantd with SIGKILL.
 * Every Pay answered before the kill is there after the restart, and the wallet's verbatim
 * resend of everything it sent is accepted exactly once. */
START_TEST(sigkill_during_a_pay_stream_loses_no_acknowledged_pay)
{
	struct stream st[STREAM_CHANNELS];
	uint8_t order[MP_ID_LEN];
	new_order(1000000, order); /* never covered: every Pay is UNDERPAID */
	for (int c = 0; c < STREAM_CHANNELS; c++) {
		st[c] = (struct stream){.alive = true};
		issued_channel(&st[c].tw, &st[c].ch, STREAM_N);
		chain_words(&st[c].ch, &st[c].ws);
		st[c].acked = calloc(STREAM_N + 1, sizeof(bool));
		ck_assert(wire_connect(&st[c].w, m1_ep, ca, NULL, NULL));
		uint32_t last;
		uint64_t credit;
		open_point(&st[c].w, &st[c].ch, &last, &credit);
	}
	int64_t pending_before = net_pending(&net, m1_hex);
	signal(SIGPIPE, SIG_IGN);
	pid_t killer = fork();
	ck_assert_int_ge(killer, 0);
	if (killer == 0) {
		usleep(300 * 1000);
		_exit(net_cmd(&net, "kill", "m1 KILL"));
	}
	bool any_alive = true;
	while (any_alive) {
		any_alive = false;
		for (int c = 0; c < STREAM_CHANNELS; c++) {
			if (st[c].alive && st[c].sent + PIPELINE < STREAM_N)
				stream_round(&st[c], order);
			any_alive |= st[c].alive && st[c].sent + PIPELINE < STREAM_N;
		}
	}
	int status;
	ck_assert_int_eq(waitpid(killer, &status, 0), killer);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	unsigned sent = 0, unanswered = 0, durable_unanswered = 0;
	for (int c = 0; c < STREAM_CHANNELS; c++) {
		ck_assert_msg(st[c].sent + PIPELINE < STREAM_N, "the stream ended before the kill");
		wire_close(&st[c].w);
		ck_assert(wire_connect(&st[c].w, m1_ep, ca, NULL, NULL));
		uint32_t last;
		uint64_t credit;
		open_point(&st[c].w, &st[c].ch, &last, &credit);
		ck_assert_uint_eq(credit, last); /* one unit of 1 per Pay, order never paid */
		ck_assert_uint_le(last, st[c].sent);
		for (uint32_t j = 1; j <= st[c].sent; j++) {
			MpCode code = pay_code(&st[c].w, &st[c].ch, &st[c].ws, j, order);
			if (st[c].acked[j] || j <= last)
				ck_assert_msg(code == MP_ST(DUPLICATE_OK),
					      "channel %d: Pay %u (acked %d, last %u) got %s", c, j,
					      st[c].acked[j], last, mp_code_name(code));
			else
				ck_assert_int_eq(code, MP_ST(UNDERPAID));
			unanswered += !st[c].acked[j];
			durable_unanswered += !st[c].acked[j] && j <= last;
		}
		open_point(&st[c].w, &st[c].ch, &last, &credit);
		ck_assert_uint_eq(last, st[c].sent);
		sent += st[c].sent;
		wire_close(&st[c].w);
	}
	fprintf(stderr,
		"sigkill stream: %u Pays sent, %u unanswered at the kill (%u of those durable)\n",
		sent, unanswered, durable_unanswered);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - pending_before, sent);
	audit_clean();
	for (int c = 0; c < STREAM_CHANNELS; c++) {
		free(st[c].acked);
		free_words(&st[c].ws);
		tchannel_free(&st[c].ch);
		mp_key_free(&st[c].tw.account);
	}
}
END_TEST

static int64_t file_size(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return (int64_t)st.st_size;
}

static json_t *compact(void)
{
	json_t *r = admin_ok(&net, "m1", "store.compact", NULL);
	char *text = json_dumps(r, JSON_COMPACT);
	fprintf(stderr, "store.compact: %s\n", text);
	free(text);
	return r;
}

#define COMPACT_PAYS 2000

/* Two channels of 2000 Pays, redeemed; more than T_dedupe later a compaction folds their
 * journal rows and the answered Redeem away: the file shrinks, recent Pays and the last Pay
 * of each channel still get DUPLICATE_OK (also after a kill -9), and paying goes on. */
START_TEST(compaction_folds_old_payments_and_shrinks_the_store)
{
	struct twallet tw[2];
	struct tchannel ch[2];
	struct words ws[2];
	struct wire w[2];
	uint8_t order[MP_ID_LEN];
	new_order(1000000, order);
	for (int c = 0; c < 2; c++) {
		issued_channel(&tw[c], &ch[c], COMPACT_PAYS + 100);
		chain_words(&ch[c], &ws[c]);
		ck_assert(wire_connect(&w[c], m1_ep, ca, NULL, NULL));
		uint32_t last;
		uint64_t credit;
		open_point(&w[c], &ch[c], &last, &credit);
		pay_range(&w[c], &ch[c], &ws[c], 1, COMPACT_PAYS, order, MP_ST(UNDERPAID));
	}
	/* Nothing is redeemed yet: this run only checkpoints, so the file holds every row. */
	json_t *r = compact();
	json_decref(r);
	int64_t size_full = file_size(m1_db);
	int64_t pending_before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - pending_before, 2 * COMPACT_PAYS);
	/* Recent Pays on channel 0, not redeemed. */
	pay_range(&w[0], &ch[0], &ws[0], COMPACT_PAYS + 1, COMPACT_PAYS + 10, order,
		  MP_ST(UNDERPAID));
	sleep(3); /* past T_dedupe (2 s) and the outbox retention (1 s) */
	pay_range(&w[0], &ch[0], &ws[0], COMPACT_PAYS + 11, COMPACT_PAYS + 20, order,
		  MP_ST(UNDERPAID));

	r = compact();
	ck_assert_int_ge(json_int(r, "journal_rows"), 2 * COMPACT_PAYS);
	ck_assert_int_ge(json_int(r, "outbox_rows"), 1);
	ck_assert_int_gt(json_int(r, "pages_freed"), 0);
	ck_assert_int_lt(json_int(r, "pages_after"), json_int(r, "pages_before"));
	ck_assert(json_is_true(json_object_get(r, "checkpointed")));
	ck_assert_int_eq(json_int(r, "wal_bytes_after"), 0);
	json_decref(r);
	int64_t size_compacted = file_size(m1_db);
	fprintf(stderr, "store file: %lld bytes with %d Pays, %lld after compaction\n",
		(long long)size_full, 2 * COMPACT_PAYS, (long long)size_compacted);
	ck_assert_int_lt(size_compacted, size_full / 2);

	for (int round = 0; round < 2; round++) {
		/* Recent (kept in the journal): DUPLICATE_OK with the stored answer. */
		MpEnvelope *e = pay(&w[0], &ch[0], &ws[0], COMPACT_PAYS + 5, order);
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(DUPLICATE_OK));
		ck_assert_str_eq(e->pay_ack->status->detail, "UNDERPAID");
		ck_assert_uint_eq(e->pay_ack->credit, COMPACT_PAYS + 5);
		micropay__v1__envelope__free_unpacked(e, NULL);
		ck_assert_int_eq(pay_code(&w[0], &ch[0], &ws[0], COMPACT_PAYS + 20, order),
				 MP_ST(DUPLICATE_OK));
		/* Channel 1's last Pay: its journal row is folded, the channel row answers. */
		e = pay(&w[1], &ch[1], &ws[1], COMPACT_PAYS, order);
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(DUPLICATE_OK));
		ck_assert_str_eq(e->pay_ack->status->detail, "UNDERPAID");
		ck_assert_uint_eq(e->pay_ack->credit, COMPACT_PAYS);
		micropay__v1__envelope__free_unpacked(e, NULL);
		/* Older than T_dedupe and folded: no longer remembered (protocol.md section 6). */
		ck_assert_int_eq(pay_code(&w[1], &ch[1], &ws[1], COMPACT_PAYS - 1, order),
				 MP_ST(STALE_INDEX));
		if (round == 1)
			break;
		/* Again from what a restart reads back. */
		ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
		ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
		for (int c = 0; c < 2; c++) {
			wire_close(&w[c]);
			ck_assert(wire_connect(&w[c], m1_ep, ca, NULL, NULL));
			uint32_t last;
			uint64_t credit;
			open_point(&w[c], &ch[c], &last, &credit);
			ck_assert_uint_eq(last, c == 0 ? COMPACT_PAYS + 20 : COMPACT_PAYS);
		}
	}
	ck_assert_int_eq(pay_code(&w[0], &ch[0], &ws[0], COMPACT_PAYS + 21, order),
			 MP_ST(UNDERPAID));
	ck_assert_int_eq(pay_code(&w[1], &ch[1], &ws[1], COMPACT_PAYS + 1, order),
			 MP_ST(UNDERPAID));
	pending_before = net_pending(&net, m1_hex);
	redeem_now();
	ck_assert_int_eq(net_pending(&net, m1_hex) - pending_before, 21 + 1);
	audit_clean();
	for (int c = 0; c < 2; c++) {
		wire_close(&w[c]);
		free_words(&ws[c]);
		tchannel_free(&ch[c]);
		mp_key_free(&tw[c].account);
	}
}
END_TEST

/* With compact_interval set, compaction runs on its own. */
START_TEST(compaction_runs_periodically)
{
	restart_m1("compact_interval = 1");
	for (int i = 0; i < 50 && metric_of_m1("micropay_merchant_compactions_total ") < 2; i++)
		usleep(100 * 1000);
	ck_assert_int_ge(metric_of_m1("micropay_merchant_compactions_total "), 2);
	ck_assert(log_has("m1", "store compaction:"));
}
END_TEST

static Suite *merchant_store_suite(void)
{
	Suite *s = suite_create("merchant store");
	TCase *tc = tcase_create("store");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, pending_pay_is_reported_only_once_durable);
	tcase_add_test(tc, redeem_does_not_stall_the_loop_on_the_store_lock);
	tcase_add_test(tc, a_stored_redeem_is_sent_verbatim_after_a_crash);
	tcase_add_test(tc, long_step_walks_run_on_a_worker);
	tcase_add_test(tc, full_pipeline_refuses_instead_of_queueing);
	tcase_add_test(tc, failed_commit_stops_the_daemon);
	tcase_add_test(tc, sigkill_during_a_pay_stream_loses_no_acknowledged_pay);
	tcase_add_test(tc, compaction_folds_old_payments_and_shrinks_the_store);
	tcase_add_test(tc, compaction_runs_periodically);
	tcase_add_test(tc, channel_row_folded_when_pays_stop);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(merchant_store_suite());
}
