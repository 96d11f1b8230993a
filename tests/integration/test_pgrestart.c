/* brokerd when PostgreSQL goes away (issue 5): the pool reconnects on its own, every request
 * is answered (a result, or INTERNAL with a detail; never silence), a verbatim retry of a
 * request answered INTERNAL is safe, queued requests have a deadline and the queue a bound,
 * every session has a statement_timeout, and the money adds up. The tests act as wallets and as
 * merchant m1 over the wire and stop/start the network's cluster with pg_ctl. */
#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_pg.h"
#include "pg_proxy.h"
#include "wire_answer.h"
#include "../check_run.h"

#define QUEUE_TIMEOUT_MS     1500
#define STATEMENT_TIMEOUT_MS 3000
#define POOL_SIZE	     2 /* deploy/mpnet's [db] pool */

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant m1; /* the network's merchant: the tests redeem as m1 */

static void setup_net(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	tmerchant_load(&m1, &net, "m1");
	char lines[128];
	snprintf(lines, sizeof(lines), "queue_timeout_ms = %d\nstatement_timeout_ms = %d",
		 QUEUE_TIMEOUT_MS, STATEMENT_TIMEOUT_MS);
	broker_reconfigure_db(&net, lines);
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	net_down(&net);
}

/* ---- admin helpers ---- */

/* One figure of brokerd's metrics; the test fails if brokerd does not print it. */
static uint64_t broker_metric(const char *name)
{
	int64_t v = metric(&net, "broker", name);
	ck_assert_msg(v >= 0, "brokerd prints no metric %s", name);
	return (uint64_t)v;
}

static void fund(const uint8_t account[MP_ID_LEN], uint64_t amount)
{
	char hex[MP_HEX_ID_LEN + 1], fund_hex[MP_HEX_ID_LEN + 1], params[256];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(account, MP_ID_LEN, hex);
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 hex, (unsigned long long)amount, fund_hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
}

static int64_t balance_of(const uint8_t account[MP_ID_LEN])
{
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(account, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", hex);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	int64_t b = json_int(acc, "balance");
	json_decref(acc);
	return b;
}

/* m1's pending balance: the related account of kind merchant_pending. */
static int64_t m1_pending(void)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", m1.mid_hex);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	json_t *rel = json_array_get(json_object_get(acc, "related"), 0);
	ck_assert_str_eq(json_str(rel, "kind"), "merchant_pending");
	int64_t b = json_int(rel, "balance");
	json_decref(acc);
	return b;
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* The pool has all its connections again, within `ms`. */
static void wait_pool_up(uint64_t ms)
{
	uint64_t until = now_ms() + ms;
	while (broker_metric("micropay_broker_db_connections_up") < POOL_SIZE) {
		ck_assert_msg(now_ms() < until, "the pool did not reconnect within %llu ms",
			      (unsigned long long)ms);
		usleep(50000);
	}
}

static void connect_broker(struct wire *w)
{
	ck_assert_msg(wire_connect(w, broker_ep, ca, NULL, NULL), "cannot reach brokerd");
}

/* ---- test material ---- */

/* A registered wallet funded with `amount`. */
static void funded_wallet(struct twallet *tw, uint64_t amount)
{
	struct wire b;
	connect_broker(&b);
	twallet_register(tw, &b);
	wire_close(&b);
	fund(tw->account_id, amount);
}

/* A fresh signed IssueRequest of tw for a channel held by m1 (n units of 1). */
static MpSigned *issue_request(const struct twallet *tw, uint32_t n)
{
	struct tchannel ch;
	tchannel_make(&ch, tw, n, 1, m1.mid);
	MpSigned *request = mp_stmt_copy(ch.request);
	tchannel_free(&ch);
	ck_assert(request != NULL);
	return request;
}

/* A Redeem by m1 of one claim: point `index` of ch. */
static MpSigned *m1_redeem(const struct tchannel *ch, uint32_t index)
{
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	struct tclaim claim = {.index = index};
	tchannel_id(ch, claim.channel_id);
	tchannel_word(ch, index, claim.w);
	return tmerchant_redeem(&m1, redeem_id, &claim, 1);
}

/* A session of the test that holds the row `column = id` of `table` locked (FOR UPDATE) until
 * row_unlock: brokerd's statements that lock it wait meanwhile. */
static PGconn *row_lock(const char *table, const char *column, const uint8_t id[MP_ID_LEN])
{
	PGconn *pg = pg_connect(&net);
	ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "%s", PQerrorMessage(pg));
	char hex[MP_HEX_ID_LEN + 1], sql[200];
	mp_hex_encode(id, MP_ID_LEN, hex);
	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE %s = '\\x%s' FOR UPDATE", table, column,
		 hex);
	PQclear(pg_exec_ok(pg, "BEGIN"));
	PGresult *r = pg_exec_ok(pg, sql);
	ck_assert_int_eq(PQntuples(r), 1);
	PQclear(r);
	return pg;
}

static void row_unlock(PGconn *pg)
{
	PQclear(pg_exec_ok(pg, "ROLLBACK"));
	PQfinish(pg);
}

/* Run `sql` on brokerd's sessions that wait for a lock, once there is one (at most 2 s), and
 * return the first column of its row. */
static long on_blocked_brokerd_session(const char *what)
{
	char sql[300];
	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM pg_stat_activity WHERE application_name = 'brokerd' AND "
		 "wait_event_type = 'Lock'",
		 what);
	PGconn *pg = pg_connect(&net);
	int found = 0;
	long value = 0;
	for (int i = 0; i < 200 && !found; i++) {
		PGresult *r = pg_exec_ok(pg, sql);
		found = PQntuples(r);
		if (found == 1)
			value = strtol(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		if (!found)
			usleep(10000);
	}
	PQfinish(pg);
	ck_assert_msg(found == 1, "%d brokerd sessions wait for the lock", found);
	return value;
}

static int64_t count_rows(const char *sql)
{
	char *v = sql_value(&net, "%s", sql);
	int64_t n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

static void assert_outcome_unknown(const struct answer *a)
{
	ck_assert_msg(a->got, "no answer after the connection was lost");
	ck_assert_int_eq(a->code, MP_ST(INTERNAL));
	ck_assert_msg(strstr(a->detail, "outcome unknown") && strstr(a->detail, "retry verbatim"),
		      "detail: %s", a->detail);
}

/* ---- tests ---- */

/* Each session has statement_timeout: a statement blocked on a row lock is cancelled and the
 * client answered INTERNAL with the reason, instead of waiting for ever. */
START_TEST(statement_timeout_cancels_a_blocked_statement)
{
	struct twallet tw;
	funded_wallet(&tw, 100);
	MpSigned *request = issue_request(&tw, 10);
	PGconn *lock = row_lock("accounts", "id", tw.account_id);
	struct wire b;
	connect_broker(&b);
	struct answer a = issue_once(&b, request);
	ck_assert_msg(a.got, "no answer while the account row was locked");
	ck_assert_int_eq(a.code, MP_ST(INTERNAL));
	ck_assert_msg(strstr(a.detail, "statement timeout"), "detail: %s", a.detail);
	ck_assert_msg(a.ms >= STATEMENT_TIMEOUT_MS - 100 && a.ms < STATEMENT_TIMEOUT_MS + 2000,
		      "answered after %llu ms", (unsigned long long)a.ms);

	row_unlock(lock);
	a = issue_once(&b, request); /* nothing was stored: the verbatim retry issues */
	ck_assert_int_eq(a.code, MP_ST(OK));
	ck_assert_int_eq(balance_of(tw.account_id), 90);
	wire_close(&b);
	mp_stmt_free(request);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

/* IssueRequests go to the database in batches (brokerd/issue_batch.c): a batch that runs past
 * the statement timeout stores nothing, and its requests are sent again in halves, so the
 * requests of an account whose row is locked are answered INTERNAL (statement timeout) while
 * the others, batched with them, are issued. Each on a connection of its own, sent at once. */
START_TEST(batch_past_the_timeout_is_split)
{
	char lines[64];
	snprintf(lines, sizeof(lines), "queue_timeout_ms = %d", 10 * STATEMENT_TIMEOUT_MS);
	broker_reconfigure_db(&net, lines); /* the halves wait behind the blocked batches */
	uint64_t splits0 = broker_metric("micropay_broker_issue_batch_splits_total");
	struct twallet locked, open;
	funded_wallet(&locked, 100);
	funded_wallet(&open, 100);
	enum { N = 5, LOCKED = 3 }; /* requests 0..2 of `locked`, 3..4 of `open` */
	MpSigned *req[N];
	struct wire w[N];
	for (int i = 0; i < N; i++) {
		req[i] = issue_request(i < LOCKED ? &locked : &open, 10);
		connect_broker(&w[i]);
	}
	PGconn *lock = row_lock("accounts", "id", locked.account_id);
	uint64_t t0 = now_ms();
	for (int i = 0; i < N; i++)
		ck_assert(send_issue(&w[i], req[i]));
	struct answer a[N];
	bool answered[N] = {false};
	for (int left = N; left > 0;) {
		struct pollfd p[N];
		for (int i = 0; i < N; i++)
			p[i] = (struct pollfd){answered[i] ? -1 : w[i].fd, POLLIN, 0};
		ck_assert_msg(poll(p, N, 60000) > 0, "%d requests got no answer", left);
		for (int i = 0; i < N; i++)
			if (p[i].revents & POLLIN) {
				receive_answer(&w[i], &a[i], t0);
				ck_assert_msg(a[i].got, "request %d got no answer", i);
				answered[i] = true;
				left--;
			}
	}
	row_unlock(lock);
	for (int i = 0; i < N; i++) {
		if (i < LOCKED) {
			ck_assert_int_eq(a[i].code, MP_ST(INTERNAL));
			ck_assert_msg(strstr(a[i].detail, "statement timeout"), "detail: %s",
				      a[i].detail);
		} else {
			ck_assert_msg(a[i].code == MP_ST(OK), "request %d: %s %s", i,
				      mp_code_name(a[i].code), a[i].detail);
		}
	}
	ck_assert_uint_ge(broker_metric("micropay_broker_issue_batch_splits_total"), splits0 + 1);
	ck_assert_int_eq(balance_of(open.account_id), 100 - 2 * 10);
	ck_assert_int_eq(balance_of(locked.account_id), 100); /* nothing stored */
	for (int i = 0; i < LOCKED; i++)		      /* the verbatim retry issues */
		ck_assert_int_eq(retry_verbatim(&w[i], req[i], false, 30000).code, MP_ST(OK));
	ck_assert_int_eq(balance_of(locked.account_id), 100 - LOCKED * 10);
	for (int i = 0; i < N; i++) {
		wire_close(&w[i]);
		mp_stmt_free(req[i]);
	}
	mp_key_free(&locked.account);
	mp_key_free(&open.account);
	snprintf(lines, sizeof(lines), "queue_timeout_ms = %d", QUEUE_TIMEOUT_MS);
	broker_reconfigure_db(&net, lines);
	audit_clean();
}
END_TEST

/* The connection of a request in flight is killed: the outcome is unknown, and said so; the
 * verbatim retry then issues once. The pool reconnects. */
START_TEST(connection_lost_in_flight_is_outcome_unknown)
{
	uint64_t unknown_before = broker_metric("micropay_broker_db_outcome_unknown_total");
	struct twallet tw;
	funded_wallet(&tw, 100);
	MpSigned *request = issue_request(&tw, 10);
	PGconn *lock = row_lock("accounts", "id", tw.account_id);
	struct wire b;
	connect_broker(&b);
	uint64_t t0 = now_ms();
	ck_assert(send_issue(&b, request));
	on_blocked_brokerd_session("pg_terminate_backend(pid)");
	struct answer a;
	receive_answer(&b, &a, t0);
	assert_outcome_unknown(&a);
	ck_assert_uint_eq(broker_metric("micropay_broker_db_outcome_unknown_total"),
			  unknown_before + 1);

	row_unlock(lock);
	a = retry_verbatim(&b, request, false, 10000); /* it had not committed: issued now */
	ck_assert_int_eq(a.code, MP_ST(OK));
	a = issue_once(&b, request);
	ck_assert_int_eq(a.code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(balance_of(tw.account_id), 90); /* debited once */
	wait_pool_up(10000);
	wire_close(&b);
	mp_stmt_free(request);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

/* Send s, let brokerd's statement commit while its answer is lost on the way back (the proxy
 * cuts the link as the server answers), and return what the client got. */
static struct answer lose_answer_after_commit(struct pg_proxy *proxy, PGconn *lock, struct wire *w,
					      const MpSigned *s, bool redeem)
{
	uint64_t t0 = now_ms();
	ck_assert(redeem ? send_redeem(w, s) : send_issue(w, s));
	long pid = on_blocked_brokerd_session("pid");
	/* Only this session's answer: a merchant's registration or redeem round on the other
	 * connection of the pool must not take the loss. */
	pg_proxy_lose_next_answer(proxy, (int)pid, true);
	row_unlock(lock); /* the statement goes on, commits, and its answer is dropped */
	struct answer a;
	receive_answer(w, &a, t0);
	ck_assert(pg_proxy_answer_lost(proxy));
	return a;
}

/* brokerd's connection breaks, or falls silent, after its statement committed (the answer is
 * lost between PostgreSQL and brokerd): the client is answered INTERNAL "outcome unknown", and
 * its verbatim retry gets the stored answer, DUPLICATE_OK, for Issue and for Redeem; nothing is
 * counted twice. */
START_TEST(answer_lost_after_commit_is_replayed_on_retry)
{
	struct pg_proxy *proxy = pg_proxy_start(&net);
	char conninfo[700], line[800];
	pg_proxy_conninfo(&net, conninfo, sizeof(conninfo));
	snprintf(line, sizeof(line), "conninfo = %s", conninfo);
	broker_reconfigure_db(&net, line);
	wait_pool_up(10000);

	struct twallet tw;
	funded_wallet(&tw, 100);
	MpSigned *request = issue_request(&tw, 10);
	struct wire b;
	connect_broker(&b);
	PGconn *lock = row_lock("accounts", "id", tw.account_id);
	struct answer a = lose_answer_after_commit(proxy, lock, &b, request, false);
	assert_outcome_unknown(&a);
	char hex[MP_HEX_ID_LEN + 1], sql[200];
	mp_hex_encode(tw.account_id, MP_ID_LEN, hex);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM channels WHERE account_id = '\\x%s'", hex);
	ck_assert_int_eq(count_rows(sql), 1); /* it did commit */
	a = retry_verbatim(&b, request, false, 10000);
	ck_assert_int_eq(a.code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(balance_of(tw.account_id), 90);

	struct twallet payer;
	funded_wallet(&payer, 100);
	struct tchannel ch;
	tchannel_make(&ch, &payer, 100, 1, m1.mid);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(OK));
	MpSigned *redeem = m1_redeem(&ch, 7);
	int64_t pending_before = m1_pending();
	struct wire m;
	tmerchant_connect(&m1, &m, broker_ep, ca);
	uint8_t cid[MP_ID_LEN];
	tchannel_id(&ch, cid);
	lock = row_lock("channels", "channel_id", cid);
	a = lose_answer_after_commit(proxy, lock, &m, redeem, true);
	assert_outcome_unknown(&a);
	ck_assert_int_eq(m1_pending() - pending_before, 7); /* it did commit */
	a = retry_verbatim(&m, redeem, true, 10000);
	ck_assert_int_eq(a.code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(a.claim, MP_ST(OK)); /* the stored result, replayed */
	ck_assert_int_eq(m1_pending() - pending_before, 7);

	/* The link falls silent after COMMIT: brokerd gives up on it after statement_timeout and
	 * its grace, and answers the same way. */
	MpSigned *silenced = issue_request(&tw, 10);
	lock = row_lock("accounts", "id", tw.account_id);
	uint64_t t0 = now_ms();
	ck_assert(send_issue(&b, silenced));
	pg_proxy_lose_next_answer(proxy, (int)on_blocked_brokerd_session("pid"), false);
	row_unlock(lock);
	receive_answer(&b, &a, t0);
	ck_assert(pg_proxy_answer_lost(proxy));
	assert_outcome_unknown(&a);
	ck_assert_msg(a.ms >= STATEMENT_TIMEOUT_MS + 5000 - 100 &&
			  a.ms < STATEMENT_TIMEOUT_MS + 7000,
		      "answered after %llu ms", (unsigned long long)a.ms);
	a = retry_verbatim(&b, silenced, false, 10000);
	ck_assert_int_eq(a.code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(balance_of(tw.account_id), 80);
	mp_stmt_free(silenced);

	char direct[700];
	snprintf(direct, sizeof(direct), "conninfo = host=%s/pg user=micropay dbname=postgres",
		 net.dir);
	broker_reconfigure_db(&net, direct);
	pg_proxy_stop(proxy);
	wire_close(&m);
	wire_close(&b);
	mp_stmt_free(request);
	mp_stmt_free(redeem);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	mp_key_free(&payer.account);
	audit_clean();
}
END_TEST

/* PostgreSQL down: a request waits at most queue_timeout_ms and is answered INTERNAL with the
 * reason; after PostgreSQL is back, its verbatim retry issues. */
START_TEST(queue_deadline_answers_internal_while_db_down)
{
	uint64_t expired_before = broker_metric("micropay_broker_db_requests_expired_total");
	struct twallet tw;
	funded_wallet(&tw, 100);
	MpSigned *first = issue_request(&tw, 10), *request = issue_request(&tw, 10);
	struct wire b;
	connect_broker(&b);
	ck_assert_int_eq(issue_once(&b, first).code, MP_ST(OK));

	pg_stop(&net);
	struct answer a = issue_once(&b, request);
	ck_assert_msg(a.got, "no answer while PostgreSQL is down");
	ck_assert_int_eq(a.code, MP_ST(INTERNAL));
	ck_assert_msg(strstr(a.detail, "timed out waiting for a connection"), "detail: %s",
		      a.detail);
	ck_assert_msg(a.ms >= QUEUE_TIMEOUT_MS - 100 && a.ms < QUEUE_TIMEOUT_MS + 1500,
		      "answered after %llu ms", (unsigned long long)a.ms);
	ck_assert_uint_eq(broker_metric("micropay_broker_db_requests_expired_total"),
			  expired_before + 1);
	pg_start(&net);

	a = retry_verbatim(&b, request, false, 30000);
	ck_assert_int_eq(a.code, MP_ST(OK));
	ck_assert_int_eq(balance_of(tw.account_id), 80);
	wait_pool_up(10000);
	wire_close(&b);
	mp_stmt_free(first);
	mp_stmt_free(request);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

/* One client of the restart test: sends its requests one after the other until told to stop,
 * keeping every answer. No check assertions here (not the test's thread). */
struct client {
	pthread_t thread;
	bool redeem; /* acts as m1 */
	MpSigned **requests;
	size_t n_requests;
	size_t sent; /* requests[0 .. sent) were sent; answers[i] is what requests[i] got */
	struct answer *answers;
	bool connected;
	atomic_bool *stop;
};

static void *client_run(void *arg)
{
	struct client *cl = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the test's thread */
	struct wire w;
	cl->connected = wire_connect(&w, broker_ep, ca, cl->redeem ? m1.cert : NULL,
				     cl->redeem ? m1.tls_key : NULL);
	while (cl->connected && !atomic_load(cl->stop) && cl->sent < cl->n_requests) {
		const MpSigned *s = cl->requests[cl->sent];
		struct answer *a = &cl->answers[cl->sent++];
		*a = cl->redeem ? redeem_once(&w, s) : issue_once(&w, s);
		if (!a->got)
			break;
		usleep(20000);
	}
	if (cl->connected)
		wire_close(&w);
	return NULL;
}

#define ISSUE_CLIENTS	    3
#define REQUESTS_PER_CLIENT 300
#define ISSUE_N		    4	 /* units per issued channel, of value 1 */
#define REDEEM_N	    1000 /* units of each redeemed channel */

struct tally {
	unsigned ok, internal, timed_out, outcome_unknown, db_error, queue_full;
	uint64_t max_ms;
};

/* Every answer is OK or INTERNAL with a detail, within a bound; counts the kinds. */
static void check_answers(const struct client *cl, struct tally *t)
{
	ck_assert_msg(cl->connected, "a client could not connect");
	for (size_t i = 0; i < cl->sent; i++) {
		const struct answer *a = &cl->answers[i];
		ck_assert_msg(a->got, "request %zu of a %s client got no answer", i,
			      cl->redeem ? "redeem" : "issue");
		ck_assert_msg(a->ms < QUEUE_TIMEOUT_MS + STATEMENT_TIMEOUT_MS + 2000,
			      "request %zu answered after %llu ms", i, (unsigned long long)a->ms);
		if (a->ms > t->max_ms)
			t->max_ms = a->ms;
		if (a->code == MP_ST(OK)) {
			ck_assert_msg(!cl->redeem || a->claim == MP_ST(OK), "claim status %d",
				      a->claim);
			t->ok++;
			continue;
		}
		ck_assert_msg(a->code == MP_ST(INTERNAL), "request %zu answered %d (%s)", i,
			      a->code, a->detail);
		ck_assert_msg(a->detail[0], "INTERNAL without a detail");
		t->internal++;
		t->timed_out += strstr(a->detail, "timed out waiting") != NULL;
		t->outcome_unknown += strstr(a->detail, "outcome unknown") != NULL;
		t->db_error += strstr(a->detail, "database error") != NULL;
		t->queue_full += strstr(a->detail, "queue full") != NULL;
	}
}

/* Every request answered INTERNAL, retried verbatim now, is settled: OK or DUPLICATE_OK. */
static void retry_internals(const struct client *cl)
{
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, cl->redeem ? m1.cert : NULL,
			       cl->redeem ? m1.tls_key : NULL));
	for (size_t i = 0; i < cl->sent; i++) {
		if (cl->answers[i].code != MP_ST(INTERNAL))
			continue;
		struct answer a = retry_verbatim(&w, cl->requests[i], cl->redeem, 10000);
		ck_assert_msg(a.code == MP_ST(OK) || a.code == MP_ST(DUPLICATE_OK),
			      "verbatim retry answered %d (%s)", a.code, a.detail);
		if (cl->redeem)
			ck_assert_msg(a.claim == MP_ST(OK) || a.claim == MP_ST(DUPLICATE_OK),
				      "retried claim answered %d", a.claim);
	}
	wire_close(&w);
}

static void client_free(struct client *cl)
{
	for (size_t i = 0; i < cl->n_requests; i++)
		mp_stmt_free(cl->requests[i]);
	free(cl->requests);
	free(cl->answers);
}

static void client_init(struct client *cl, bool redeem, atomic_bool *stop)
{
	*cl = (struct client){.redeem = redeem, .n_requests = REQUESTS_PER_CLIENT, .stop = stop};
	cl->requests = calloc(cl->n_requests, sizeof(*cl->requests));
	cl->answers = calloc(cl->n_requests, sizeof(*cl->answers));
	ck_assert(cl->requests && cl->answers);
}

/* The point each Redeem of the redeem client claims: channels alternate, indices climb. */
static uint32_t redeem_index(size_t i)
{
	return (uint32_t)(i / 2 + 1);
}

/* Clients issue and m1 redeems while the cluster is stopped and started: brokerd serves again
 * without a restart, every request got an answer, INTERNAL answers retried verbatim settle,
 * balances are exact, reconnects are counted, and the audit is clean. */
START_TEST(pg_restart_under_load)
{
	uint64_t reconnects_before = broker_metric("micropay_broker_db_reconnects_total");
	long pid = broker_pid(&net);
	atomic_bool stop = false;
	struct twallet wallets[ISSUE_CLIENTS], probe, payer;
	struct client clients[ISSUE_CLIENTS + 1];
	for (int c = 0; c < ISSUE_CLIENTS; c++) {
		funded_wallet(&wallets[c], (uint64_t)REQUESTS_PER_CLIENT * ISSUE_N);
		client_init(&clients[c], false, &stop);
		for (size_t i = 0; i < REQUESTS_PER_CLIENT; i++)
			clients[c].requests[i] = issue_request(&wallets[c], ISSUE_N);
	}
	/* m1 redeems two channels of the payer, one point further each time. */
	funded_wallet(&payer, 2 * REDEEM_N);
	struct tchannel paid[2];
	struct wire b;
	connect_broker(&b);
	for (int k = 0; k < 2; k++) {
		tchannel_make(&paid[k], &payer, REDEEM_N, 1, m1.mid);
		ck_assert_int_eq(tchannel_issue(&paid[k], &b), MP_ST(OK));
	}
	struct client *redeemer = &clients[ISSUE_CLIENTS];
	client_init(redeemer, true, &stop);
	for (size_t i = 0; i < REQUESTS_PER_CLIENT; i++)
		redeemer->requests[i] = m1_redeem(&paid[i % 2], redeem_index(i));
	funded_wallet(&probe, 1000);
	int64_t pending_before = m1_pending();

	for (int c = 0; c <= ISSUE_CLIENTS; c++)
		ck_assert_int_eq(pthread_create(&clients[c].thread, NULL, client_run, &clients[c]),
				 0);
	usleep(1500000);
	pg_stop(&net);
	uint64_t down_at = now_ms();
	usleep(3000000);
	pg_start(&net);
	uint64_t up_at = now_ms();
	/* brokerd serves again without being restarted: a new Issue succeeds. */
	MpSigned *probe_request = issue_request(&probe, 10);
	struct answer a = retry_verbatim(&b, probe_request, false, 30000);
	ck_assert_int_eq(a.code, MP_ST(OK));
	uint64_t served_at = now_ms();
	usleep(1000000);
	atomic_store(&stop, true);
	for (int c = 0; c <= ISSUE_CLIENTS; c++)
		pthread_join(clients[c].thread, NULL);
	ck_assert_int_eq(broker_pid(&net), pid);
	ck_assert_int_eq(kill((pid_t)pid, 0), 0);

	struct tally t = {0};
	for (int c = 0; c <= ISSUE_CLIENTS; c++)
		check_answers(&clients[c], &t);
	printf("pgrestart: down %.1f s; first Issue served %.1f s after the restart; %u OK, %u "
	       "INTERNAL (%u timed out, %u outcome unknown, %u database error, %u queue full); "
	       "slowest answer %llu ms\n",
	       (double)(up_at - down_at) / 1000, (double)(served_at - up_at) / 1000, t.ok,
	       t.internal, t.timed_out, t.outcome_unknown, t.db_error, t.queue_full,
	       (unsigned long long)t.max_ms);
	ck_assert_msg(t.internal > 0, "the outage was not felt: no INTERNAL answer");
	ck_assert_msg(t.ok > 0, "nothing succeeded");
	for (int c = 0; c <= ISSUE_CLIENTS; c++)
		retry_internals(&clients[c]);

	/* Money: every request sent is settled exactly once. */
	for (int c = 0; c < ISSUE_CLIENTS; c++)
		ck_assert_int_eq(balance_of(wallets[c].account_id),
				 (int64_t)(REQUESTS_PER_CLIENT - clients[c].sent) * ISSUE_N);
	uint32_t top[2] = {0, 0};
	for (size_t i = 0; i < redeemer->sent; i++)
		top[i % 2] = redeem_index(i);
	ck_assert_int_eq(m1_pending() - pending_before, (int64_t)top[0] + top[1]);
	ck_assert_uint_ge(broker_metric("micropay_broker_db_reconnects_total"),
			  reconnects_before + POOL_SIZE);
	wait_pool_up(10000);
	audit_clean();

	wire_close(&b);
	mp_stmt_free(probe_request);
	for (int c = 0; c <= ISSUE_CLIENTS; c++)
		client_free(&clients[c]);
	for (int c = 0; c < ISSUE_CLIENTS; c++)
		mp_key_free(&wallets[c].account);
	tchannel_free(&paid[0]);
	tchannel_free(&paid[1]);
	mp_key_free(&probe.account);
	mp_key_free(&payer.account);
}
END_TEST

/* With PostgreSQL down and max_queue = 2, of six concurrent requests two wait for their
 * deadline and four are refused at once; all are answered INTERNAL with the reason. */
START_TEST(full_queue_refuses_at_once)
{
	broker_reconfigure_db(&net, "max_queue = 2");
	struct twallet tw;
	funded_wallet(&tw, 100);
	enum { CONCURRENT = 6 };
	MpSigned *requests[CONCURRENT];
	struct wire w[CONCURRENT];
	for (int i = 0; i < CONCURRENT; i++) {
		requests[i] = issue_request(&tw, 10);
		connect_broker(&w[i]);
	}
	pg_stop(&net);
	uint64_t t0 = now_ms();
	for (int i = 0; i < CONCURRENT; i++)
		ck_assert(send_issue(&w[i], requests[i]));
	int full = 0, timed_out = 0;
	bool answered[CONCURRENT] = {false};
	for (int left = CONCURRENT; left > 0;) {
		struct pollfd p[CONCURRENT];
		for (int i = 0; i < CONCURRENT; i++)
			p[i] = (struct pollfd){answered[i] ? -1 : w[i].fd, POLLIN, 0};
		ck_assert_msg(poll(p, CONCURRENT, 10000) > 0, "%d requests got no answer", left);
		for (int i = 0; i < CONCURRENT; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			struct answer a;
			receive_answer(&w[i], &a, t0);
			ck_assert_msg(a.got, "request %d got no answer", i);
			ck_assert_int_eq(a.code, MP_ST(INTERNAL));
			answered[i] = true;
			left--;
			if (strstr(a.detail, "queue full")) {
				ck_assert_msg(a.ms < 1000, "queue full answered after %llu ms",
					      (unsigned long long)a.ms);
				full++;
			} else {
				ck_assert_msg(strstr(a.detail, "timed out waiting"), "detail: %s",
					      a.detail);
				ck_assert_msg(a.ms >= QUEUE_TIMEOUT_MS - 100,
					      "timed out after %llu ms", (unsigned long long)a.ms);
				timed_out++;
			}
		}
	}
	ck_assert_int_eq(full, CONCURRENT - 2);
	ck_assert_int_eq(timed_out, 2);
	/* IssueRequests wait in brokerd's batch queue (brokerd/issue_batch.c), bounded by the
	 * same max_queue, rather than in the pool's own queue. */
	ck_assert_uint_eq(broker_metric("micropay_broker_db_requests_refused_total") +
			      broker_metric("micropay_broker_issue_queue_refusals_total"),
			  CONCURRENT - 2);
	ck_assert_uint_eq(broker_metric("micropay_broker_db_queue_max"), 2);
	pg_start(&net);
	for (int i = 0; i < CONCURRENT; i++) {
		ck_assert_int_eq(retry_verbatim(&w[i], requests[i], false, 30000).code, MP_ST(OK));
		wire_close(&w[i]);
		mp_stmt_free(requests[i]);
	}
	ck_assert_int_eq(balance_of(tw.account_id), 100 - CONCURRENT * 10);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

/* Out-of-range [db] figures are refused at start, naming the key and its range. */
START_TEST(db_config_out_of_range_is_refused)
{
	static const char *const bad[][2] = {
	    {"pool = 65", "[db] pool = 65 is out of range: expected 1 .. 64"},
	    {"max_queue = 0", "[db] max_queue = 0 is out of range: expected 1 .. 1000000"},
	    {"queue_timeout_ms = 0",
	     "[db] queue_timeout_ms = 0 is out of range: expected 10 .. 600000"},
	    {"statement_timeout_ms = 50",
	     "[db] statement_timeout_ms = 50 is out of range: expected 100 .. 3600000"},
	    {"idle_in_transaction_session_timeout_ms = 3600001",
	     "[db] idle_in_transaction_session_timeout_ms = 3600001 is out of range: expected 100 "
	     ".. "
	     "3600000"},
	};

	const char *build = getenv("MP_BUILD") ? getenv("MP_BUILD") : "build";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[4800], out[700];
		snprintf(out, sizeof(out), "%s/bad-config.out", net.dir);
		snprintf(line, sizeof(line),
			 "cp '%s/broker/config.ini' '%s/bad.ini' && printf '[db]\\n%s\\n' "
			 ">>'%s/bad.ini' "
			 "&& '%s/brokerd/brokerd' -c '%s/bad.ini' >'%s' 2>&1",
			 net.dir, net.dir, bad[i][0], net.dir, build, net.dir, out);
		int rc = system(line);
		ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "brokerd accepted '%s'",
			      bad[i][0]);
		char text[2048] = "";
		FILE *f = fopen(out, "r");
		ck_assert(f != NULL);
		size_t got = fread(text, 1, sizeof(text) - 1, f);
		text[got] = '\0';
		fclose(f);
		ck_assert_msg(strstr(text, bad[i][1]), "for '%s' brokerd said: %s", bad[i][0],
			      text);
	}
}
END_TEST

Suite *pgrestart_suite(void);
Suite *pgrestart_suite(void)
{
	Suite *s = suite_create("pgrestart");
	TCase *tc = tcase_create("database pool");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, db_config_out_of_range_is_refused);
	tcase_add_test(tc, statement_timeout_cancels_a_blocked_statement);
	tcase_add_test(tc, batch_past_the_timeout_is_split);
	tcase_add_test(tc, connection_lost_in_flight_is_outcome_unknown);
	tcase_add_test(tc, answer_lost_after_commit_is_replayed_on_retry);
	tcase_add_test(tc, queue_deadline_answers_internal_while_db_down);
	tcase_add_test(tc, pg_restart_under_load);
	tcase_add_test(tc, full_queue_refuses_at_once); /* last: it changes the queue bound */
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(pgrestart_suite());
}
