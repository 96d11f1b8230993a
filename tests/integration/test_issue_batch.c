/* IssueRequests stored in batches (brokerd/issue_batch.c, migration 0036):
 *  - one mp_issue_batch call decides each request as mp_issue alone would, in order: two
 *    plain requests, the same request again (DUPLICATE_OK), another request under a used
 *    issue_req_id (CONFLICT), an owner key already used by an issued channel and a nonce named
 *    twice in the batch (the second refused as reused), a request refused in bounds, an account
 *    whose balance covers one of its two requests (the second INSUFFICIENT_FUNDS), an
 *    unregistered holder0, an unbound channel, an unknown account; then a batch of plain
 *    requests only, stored together. Balances, ledger entries and epochs are exactly those of
 *    the requests issued, and the audit is clean;
 *  - through brokerd: bursts of IssueRequests pipelined on several connections by three
 *    accounts, each of one account's requests sent twice on two connections, one account
 *    funded for half of its requests, and a request whose currency is not even UTF-8 (refused
 *    MALFORMED, the others of its batch unharmed), are batched (the mean batch holds more than one
 *    request, from the metrics); each request is issued once (its twin DUPLICATE_OK with the
 *    same cert, byte for byte), the underfunded account gets exactly as many as it can pay,
 *    the balances are exact and the audit is clean. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "ids.h"
#include "../check_run.h"

#define UNITS 10

static struct net net;
static char ca[700], broker_ep[128];
static uint8_t m1[MP_ID_LEN];

static void setup_net(void)
{
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	char m1_hex[64];
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
}

static void teardown_net(void)
{
	net_down(&net);
}

static void funded_wallet(struct twallet *tw, uint64_t amount)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	wire_close(&b);
	net_fund_id(&net, tw->account_id, amount);
}

static int64_t balance(const struct twallet *tw)
{
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw->account_id, MP_ID_LEN, acct);
	return net_balance(&net, acct);
}

/* The statuses ("ord:status ...") of one mp_issue_batch call over the rows of `values`:
 * (ord, account, issue_req_id tag, request tag, bounds, owner key tag, nonce tag, n, holder0),
 * each key, id and hash derived from its tag; the channel id as brokerd derives it. */
static char *batch_call(const char *values)
{
	return sql_value(
	    &net,
	    "WITH v(o, acc, rid_tag, req, bst, opk, nonce_tag, n, h0) AS (VALUES %s), "
	    "r AS (SELECT v.*, substring(sha256(convert_to(rid_tag, 'UTF8')) FROM 1 FOR 16) AS "
	    "rid, "
	    "convert_to(req, 'UTF8') AS reqb, extract(epoch FROM now())::bigint AS t FROM v), "
	    "a AS (SELECT array_agg(acc ORDER BY o) acc, array_agg(rid ORDER BY o) rid, "
	    "array_agg(sha256(reqb) ORDER BY o) rh, array_agg(reqb ORDER BY o) rq, "
	    "array_agg(bst ORDER BY o) bst, "
	    "array_agg(CASE WHEN bst = 0 THEN '' ELSE 'n out of bounds' END ORDER BY o) bd, "
	    "array_agg(substring(sha256(convert_to('MPAY1-CID', 'UTF8') || acc || rid) "
	    "FROM 1 FOR 16) ORDER BY o) ch, "
	    "array_agg(substring(sha256(reqb || '\\x65'::bytea) FROM 1 FOR 16) ORDER BY o) es, "
	    "array_agg(coalesce(opk, sha256(reqb || '\\x6f'::bytea)) ORDER BY o) opk, "
	    "array_agg(substring(sha256(convert_to(nonce_tag, 'UTF8')) FROM 1 FOR 16) ORDER BY o) "
	    "nonce, array_agg(sha256(reqb || '\\x72'::bytea) ORDER BY o) root, "
	    "array_agg(n ORDER BY o) n, array_agg(1::bigint ORDER BY o) uv, "
	    "array_agg('EUR'::text ORDER BY o) cur, array_agg(h0 ORDER BY o) h0, "
	    "array_agg(t ORDER BY o) ia, array_agg(t + 86400 ORDER BY o) pu, "
	    "array_agg(t + 3 * 86400 ORDER BY o) ru, array_agg(reqb ORDER BY o) cert, "
	    "min(t) t FROM r) "
	    "SELECT string_agg(b.ord || ':' || b.status, ' ' ORDER BY b.ord) FROM a, "
	    "mp_issue_batch(a.acc, a.rid, a.rh, a.rq, a.bst, a.bd, a.ch, a.es, a.opk, a.nonce, "
	    "a.root, a.n, a.uv, a.cur, a.h0, a.ia, a.pu, a.ru, 86400, a.t, 30, a.cert) b",
	    values);
}

static int64_t count_of(const char *fmt, const char *acct_hex)
{
	char *v = sql_value(&net, fmt, acct_hex);
	int64_t n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

START_TEST(batch_decides_each_request_as_alone)
{
	struct twallet a, b;
	funded_wallet(&a, 1000);
	funded_wallet(&b, 15);
	/* An issued channel whose owner key a request below uses again. */
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	struct tchannel used;
	tchannel_make(&used, &a, UNITS, 1, m1);
	ck_assert_int_eq(tchannel_issue(&used, &w), MP_ST(OK));
	wire_close(&w);
	int64_t a_before = balance(&a);

	char A[64], B[64], M[64], X[64], U[64], used_pk[96];
	uint8_t unknown[MP_ID_LEN] = {0xee}, stranger[MP_ID_LEN] = {0x5a};
	sql_bytea(a.account_id, MP_ID_LEN, A, sizeof(A));
	sql_bytea(b.account_id, MP_ID_LEN, B, sizeof(B));
	sql_bytea(m1, MP_ID_LEN, M, sizeof(M));
	sql_bytea(stranger, MP_ID_LEN, X, sizeof(X));
	sql_bytea(unknown, MP_ID_LEN, U, sizeof(U));
	sql_bytea(used.owner.pk, MP_PK_LEN, used_pk, sizeof(used_pk));
	char values[4096];
	/* An owner key NULL here is derived from the request (a fresh key per request). */
	snprintf(values, sizeof(values),
		 "(1, %s, 'r1', 'a1', 0, NULL::bytea, 'n1', 10, %s),"
		 "(2, %s, 'r2', 'a2', 0, NULL, 'n2', 10, %s),"
		 "(3, %s, 'r1', 'a1', 0, NULL, 'n1', 10, %s),"
		 "(4, %s, 'r2', 'a2-other', 0, NULL, 'n4', 10, %s),"
		 "(5, %s, 'r5', 'a5', 0, %s, 'n5', 10, %s),"
		 "(6, %s, 'r6', 'a6', 0, NULL, 'n6', 10, %s),"
		 "(7, %s, 'r7', 'a7', 0, NULL, 'n6', 10, %s),"
		 "(8, %s, 'r8', 'a8', 2, NULL, 'n8', 0, %s),"
		 "(9, %s, 'r9', 'b9', 0, NULL, 'n9', 10, %s),"
		 "(10, %s, 'r10', 'b10', 0, NULL, 'n10', 10, %s),"
		 "(11, %s, 'r11', 'a11', 0, NULL, 'n11', 10, %s),"
		 "(12, %s, 'r12', 'a12', 0, NULL, 'n12', 10, ''::bytea),"
		 "(13, %s, 'r13', 'u13', 0, NULL, 'n13', 10, %s),"
		 "(14, %s, 'r14', 'a14', 0, NULL, 'n14', 10, %s)",
		 A, M, A, M, A, M, A, M, A, used_pk, M, A, M, A, M, A, M, B, M, B, M, A, X, A, U, M,
		 A, M);
	char *got = batch_call(values);
	ck_assert_str_eq(got, "1:0 2:0 3:1 4:16 5:2 6:0 7:2 8:2 9:0 10:14 11:2 12:0 13:18 14:0");
	free(got);
	/* Issued: 1, 2, 6, 12, 14 of a (10 each), 9 of b. */
	ck_assert_int_eq(balance(&a), a_before - 5 * UNITS);
	ck_assert_int_eq(balance(&b), 15 - UNITS);
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(a.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(count_of("SELECT count(*) FROM channels WHERE account_id = '\\x%s'", acct),
			 6);
	ck_assert_int_eq(count_of("SELECT count(*) FROM channels c JOIN epochs e USING "
				  "(channel_id) WHERE c.account_id = '\\x%s'",
				  acct),
			 5); /* the unbound channel has no epoch 0 yet */
	ck_assert_int_eq(
	    count_of("SELECT count(*) FROM ledger l JOIN channels c ON "
		     "c.escrow_account = l.credit_account WHERE c.account_id = '\\x%s'",
		     acct),
	    6);

	/* Only plain requests: stored together. */
	snprintf(values, sizeof(values),
		 "(1, %s, 'p1', 'pa1', 0, NULL::bytea, 'pn1', 10, %s),"
		 "(2, %s, 'p2', 'pb2', 0, NULL, 'pn2', 5, %s),"
		 "(3, %s, 'p3', 'pa3', 0, NULL, 'pn3', 10, ''::bytea)",
		 A, M, B, M, A);
	got = batch_call(values);
	ck_assert_str_eq(got, "1:0 2:0 3:0");
	free(got);
	ck_assert_int_eq(balance(&a), a_before - 7 * UNITS);
	ck_assert_int_eq(balance(&b), 0);
	tchannel_free(&used);
	mp_key_free(&a.account);
	mp_key_free(&b.account);
	net_audit_clean(&net);
}
END_TEST

#define CONNS	 4
#define PER_ACCT 12 /* 48 requests in all: within the worker queue (64) */

/* One connection's burst: the requests of chs[0..n) in one write, request ids 1.. */
static void send_burst(struct wire *w, struct tchannel **chs, size_t n)
{
	MpEnvelope *envs[3 * PER_ACCT];
	Micropay__V1__IssueReq reqs[3 * PER_ACCT];
	for (size_t i = 0; i < n; i++)
		envs[i] = issue_envelope(chs[i], &reqs[i]);
	ck_assert(wire_send_pipelined(w, envs, n, 1));
	for (size_t i = 0; i < n; i++)
		free(envs[i]);
}

/* ch's request with another currency, signed again by tw (bytes that need not be UTF-8). */
static void with_currency(struct tchannel *ch, const struct twallet *tw, const char *currency)
{
	Micropay__V1__IssueRequest *r = (Micropay__V1__IssueRequest *)mp_strict_unpack(
	    &micropay__v1__issue_request__descriptor, ch->request->body.data,
	    ch->request->body.len);
	ck_assert_ptr_nonnull(r);
	char *own = r->currency;
	r->currency = (char *)currency;
	mp_stmt_free(ch->request);
	ch->request = mp_stmt_sign(&tw->account, MP_STMT_ISSUE_REQUEST, &r->base);
	ck_assert_ptr_nonnull(ch->request);
	r->currency = own;
	micropay__v1__issue_request__free_unpacked(r, NULL);
}

START_TEST(pipelined_issues_are_batched_once_each)
{
	/* a: each request twice; b: plain; c: funded for half of its requests. */
	struct twallet a, b, c;
	funded_wallet(&a, 100000);
	funded_wallet(&b, 100000);
	funded_wallet(&c, PER_ACCT / 2 * UNITS);
	static struct tchannel ca_[PER_ACCT], cb[PER_ACCT], cc[PER_ACCT];
	for (int i = 0; i < PER_ACCT; i++) {
		tchannel_make(&ca_[i], &a, UNITS, 1, m1);
		tchannel_make(&cb[i], &b, UNITS, 1, m1);
		if (i == 0) /* refused in bounds; its bytes must not fail the batch it joins */
			with_currency(&cb[i], &b, "\xff\xfe\x80");
		tchannel_make(&cc[i], &c, UNITS, 1, i % 2 ? NULL : m1);
	}
	/* Connection k gets a's requests twice over (k and k+1), b's and c's once. */
	static struct tchannel *plan[CONNS][3 * PER_ACCT];
	size_t count[CONNS] = {0};
	for (int i = 0; i < PER_ACCT; i++) {
		int k = i % CONNS;
		plan[k][count[k]++] = &ca_[i];
		plan[(k + 1) % CONNS][count[(k + 1) % CONNS]++] = &ca_[i];
		plan[(k + 2) % CONNS][count[(k + 2) % CONNS]++] = &cb[i];
		plan[(k + 3) % CONNS][count[(k + 3) % CONNS]++] = &cc[i];
	}
	int64_t batches0 = metric(&net, "broker", "micropay_broker_issue_batches_total");
	int64_t batched0 = metric(&net, "broker", "micropay_broker_issue_batched_total");
	struct wire w[CONNS];
	for (int k = 0; k < CONNS; k++)
		ck_assert(wire_connect(&w[k], broker_ep, ca, NULL, NULL));
	for (int k = 0; k < CONNS; k++)
		send_burst(&w[k], plan[k], count[k]);

	/* Every answer, kept per channel: a's two answers, one OK and one DUPLICATE_OK. */
	static MpSigned *cert_of[3 * PER_ACCT][2];
	static int codes[3 * PER_ACCT][2], answers[3 * PER_ACCT];
	for (int k = 0; k < CONNS; k++)
		for (size_t got = 0; got < count[k]; got++) {
			MpEnvelope *e = wire_recv_within(&w[k], 120000);
			ck_assert_msg(e && e->body_case == MP_BODY(ISSUE_RESP), "answer missing");
			ck_assert(e->request_id >= 1 && e->request_id <= count[k]);
			struct tchannel *ch = plan[k][e->request_id - 1];
			int idx = ch >= ca_ && ch < ca_ + PER_ACCT ? (int)(ch - ca_)
				  : ch >= cb && ch < cb + PER_ACCT ? PER_ACCT + (int)(ch - cb)
								   : 2 * PER_ACCT + (int)(ch - cc);
			int nth = answers[idx]++;
			ck_assert_int_lt(nth, 2);
			Micropay__V1__IssueResp *r = e->issue_resp;
			codes[idx][nth] = (int)r->status->code;
			cert_of[idx][nth] = r->channel_cert ? mp_stmt_copy(r->channel_cert) : NULL;
			micropay__v1__envelope__free_unpacked(e, NULL);
		}
	int c_ok = 0;
	for (int i = 0; i < 3 * PER_ACCT; i++) {
		if (i < PER_ACCT) {
			ck_assert_int_eq(answers[i], 2);
			ck_assert_msg(
			    (codes[i][0] == MP_ST(OK) && codes[i][1] == MP_ST(DUPLICATE_OK)) ||
				(codes[i][1] == MP_ST(OK) && codes[i][0] == MP_ST(DUPLICATE_OK)),
			    "a's request %d: %s and %s", i, mp_code_name(codes[i][0]),
			    mp_code_name(codes[i][1]));
			ck_assert(stmt_same_bytes(cert_of[i][0], cert_of[i][1]));
		} else if (i < 2 * PER_ACCT) {
			ck_assert_int_eq(answers[i], 1);
			ck_assert_msg(codes[i][0] == (i == PER_ACCT ? MP_ST(MALFORMED) : MP_ST(OK)),
				      "b's request %d: %s", i - PER_ACCT,
				      mp_code_name(codes[i][0]));
		} else {
			ck_assert_int_eq(answers[i], 1);
			ck_assert_msg(
			    codes[i][0] == MP_ST(OK) || codes[i][0] == MP_ST(INSUFFICIENT_FUNDS),
			    "c's request %d: %s", i - 2 * PER_ACCT, mp_code_name(codes[i][0]));
			c_ok += codes[i][0] == MP_ST(OK);
		}
		for (int j = 0; j < answers[i]; j++)
			mp_stmt_free(cert_of[i][j]);
	}
	ck_assert_int_eq(c_ok, PER_ACCT / 2);
	ck_assert_int_eq(balance(&a), 100000 - PER_ACCT * UNITS);
	ck_assert_int_eq(balance(&b), 100000 - (PER_ACCT - 1) * UNITS);
	ck_assert_int_eq(balance(&c), 0);
	int64_t batches = metric(&net, "broker", "micropay_broker_issue_batches_total") - batches0;
	int64_t batched = metric(&net, "broker", "micropay_broker_issue_batched_total") - batched0;
	ck_assert_int_eq(batched, 4 * PER_ACCT);
	ck_assert_msg(batches < batched, "%lld requests in %lld batches: none batched",
		      (long long)batched, (long long)batches);
	printf("issue batches: %lld requests in %lld batches\n", (long long)batched,
	       (long long)batches);
	for (int k = 0; k < CONNS; k++)
		wire_close(&w[k]);
	for (int i = 0; i < PER_ACCT; i++) {
		tchannel_free(&ca_[i]);
		tchannel_free(&cb[i]);
		tchannel_free(&cc[i]);
	}
	mp_key_free(&a.account);
	mp_key_free(&b.account);
	mp_key_free(&c.account);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("issue_batch");
	TCase *tc = tcase_create("issue_batch");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, batch_decides_each_request_as_alone);
	tcase_add_test(tc, pipelined_issues_are_batched_once_each);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
