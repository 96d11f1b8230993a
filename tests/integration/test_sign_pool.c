/* Signatures off brokerd's event loop (docs/keys.md, "Threads and the token"), with the
 * broker's key in a PKCS#11 token (SoftHSM2, one session shared by the worker threads):
 *  - many IssueRequests pipelined on several connections at once are all issued; each
 *    ChannelCert verifies under the broker's key and names the channel asked for; every cert
 *    was signed on the worker pool (micropay_broker_signatures_total{where="worker"} moved by
 *    exactly the number issued); a request with no body sent meanwhile is answered MALFORMED;
 *    each request sent again is answered DUPLICATE_OK with the stored cert byte for byte;
 *  - with one worker and a queue of one job, a burst of IssueRequests is partly answered
 *    LIMIT busy: those left nothing behind (the balance moved by the issued escrow only, and
 *    each refused request sent again later is issued OK, not DUPLICATE_OK), and
 *    worker_queue_refusals counts them;
 *  - the signature checks moved off the loop (docs/keys.md, "Signature checks"), shown with
 *    unbound transfers, whose Transfer is verified and whose Cap is signed on the pool: many
 *    TransferReqs pipelined on several connections (a forged one among them) are each
 *    verified on a worker (micropay_broker_verifications_total{where="worker"} moved by exactly
 *    the number sent), the forged one refused BAD_SIG with nothing recorded, the others capped
 *    by the broker (each Cap verified), an empty Envelope answered meanwhile; each sent again
 *    gets DUPLICATE_OK and its Cap byte for byte; peers that hang up with their Transfers on
 *    the pool only lose the answers (sent again, each gets the broker's Cap);
 *  - with one worker and a queue of one, that worker held by a junk Redeem's hashing (about
 *    a second): an empty Envelope is answered meanwhile, a burst of TransferReqs and a burst of
 *    small Redeems (one claim each) are answered LIMIT busy at their verification but for the
 *    one job the queue holds: none of those left a row (each TransferReq sent again later is
 *    capped OK; each Redeem sent again is OK, not DUPLICATE_OK, and the stored ones are
 *    DUPLICATE_OK), and the verification counter moved by exactly the checks that ran. The
 *    audit is clean at the end of every test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "harness_merchant.h"
#include "harness_peer.h"
#include "harness_token.h"
#include "ids.h"
#include "../check_run.h"

#define CONNS		   4
#define PER_CONN	   16
#define BURST		   48
#define UNITS		   10
#define UNIT_VALUE	   1
#define SIGNED_BY_WORKER   "micropay_broker_signatures_total{where=\"worker\"}"
#define REFUSED_BUSY	   "micropay_broker_worker_queue_refusals_total"
#define VERIFIED_BY_WORKER "micropay_broker_verifications_total{where=\"worker\"}"
#define TRANSFERS	   32

static struct net net;
static char token_dir[64] = "/tmp/mpsignpool.XXXXXX";
static char ca[700], broker_ep[128];
static uint8_t broker_pk[MP_PK_LEN];
static uint8_t m1[MP_ID_LEN];

static void setup_net(void)
{
	token_suppress_leaks();
	token_make(token_dir);
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	char pk_hex[80], m1_hex[64];
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "broker", "broker_pk", pk_hex, sizeof(pk_hex));
	hex_to_bytes(pk_hex, broker_pk, MP_PK_LEN);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	char config[600];
	net_path(&net, "broker/config.ini", config, sizeof(config));
	ck_assert_msg(token_holds_key(config), "the broker's key is not in the token");
}

static void teardown_net(void)
{
	net_down(&net);
	token_remove(token_dir);
}

static void connect_broker(struct wire *w)
{
	ck_assert(wire_connect(w, broker_ep, ca, NULL, NULL));
}

/* The IssueRequests of chs[0..n) in one write, request ids first_id.. */
static void send_issues(struct wire *w, struct tchannel *chs, size_t n, uint64_t first_id)
{
	MpEnvelope **envs = calloc(n, sizeof(*envs));
	Micropay__V1__IssueReq *reqs = calloc(n, sizeof(*reqs));
	for (size_t i = 0; i < n; i++)
		envs[i] = issue_envelope(&chs[i], &reqs[i]);
	ck_assert(wire_send_pipelined(w, envs, n, first_id));
	for (size_t i = 0; i < n; i++)
		free(envs[i]);
	free(envs);
	free(reqs);
}

/* n answers of kind body (in any order) into resp[request_id - first_id]. */
static void read_answers_of(struct wire *w, MpEnvelope **resp, size_t n, uint64_t first_id,
			    Micropay__V1__Envelope__BodyCase body)
{
	for (size_t got = 0; got < n; got++) {
		MpEnvelope *e = wire_recv_within(w, 300000); /* behind a junk Redeem under ASan */
		ck_assert_msg(e != NULL, "answer %zu of %zu missing", got + 1, n);
		ck_assert(e->body_case == body);
		ck_assert(e->request_id >= first_id && e->request_id < first_id + n);
		ck_assert(resp[e->request_id - first_id] == NULL);
		resp[e->request_id - first_id] = e;
	}
}

static void read_answers(struct wire *w, MpEnvelope **resp, size_t n, uint64_t first_id)
{
	read_answers_of(w, resp, n, first_id, MP_BODY(ISSUE_RESP));
}

/* The cert verifies under the broker's key and names the channel ch asked for. */
static void check_cert(const struct tchannel *ch, const struct twallet *tw, const MpSigned *cert)
{
	ck_assert(cert != NULL);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(cert, MP_STMT_CHANNEL_CERT, broker_pk,
				      &micropay__v1__channel_cert__descriptor, &body),
			 MP_ST(OK));
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)body;
	uint8_t id[MP_ID_LEN];
	mp_channel_id(tw->account_id, ch->req_id, id);
	ck_assert(cc->channel_id.len == MP_ID_LEN && !memcmp(cc->channel_id.data, id, MP_ID_LEN));
	ck_assert(cc->root.len == MP_HASH_LEN && !memcmp(cc->root.data, ch->root, MP_HASH_LEN));
	ck_assert_int_eq(cc->n, UNITS);
	protobuf_c_message_free_unpacked(body, NULL);
}

/* A request with no body on its own connection: MALFORMED, "not a broker request". */
static void cheap_request_answered(void)
{
	struct wire w;
	connect_broker(&w);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	MpEnvelope *resp = wire_call(&w, &env);
	ck_assert_msg(resp != NULL, "no answer to an empty Envelope");
	ck_assert(resp->body_case == MP_BODY(ERROR));
	ck_assert_int_eq(resp->error->code, MP_ST(MALFORMED));
	micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&w);
}

static void new_funded_wallet(struct twallet *tw, uint64_t amount)
{
	struct wire b;
	connect_broker(&b);
	twallet_register(tw, &b);
	wire_close(&b);
	net_fund_id(&net, tw->account_id, amount);
}

START_TEST(concurrent_issues_signed_on_workers)
{
	struct twallet tw;
	new_funded_wallet(&tw, 1000000);
	struct wire warm;
	connect_broker(&warm);
	struct tchannel first;
	tchannel_make(&first, &tw, UNITS, UNIT_VALUE, m1);
	ck_assert_int_eq(tchannel_issue(&first, &warm), MP_ST(OK)); /* the account key cached */
	check_cert(&first, &tw, first.cert);
	wire_close(&warm);
	int64_t signed_before = metric(&net, "broker", SIGNED_BY_WORKER);
	ck_assert_int_ge(signed_before, 1);

	static struct tchannel chs[CONNS][PER_CONN];
	static MpEnvelope *resp[CONNS][PER_CONN];
	struct wire w[CONNS];
	for (int c = 0; c < CONNS; c++) {
		connect_broker(&w[c]);
		for (int i = 0; i < PER_CONN; i++)
			tchannel_make(&chs[c][i], &tw, UNITS, UNIT_VALUE, m1);
	}
	for (int c = 0; c < CONNS; c++)
		send_issues(&w[c], chs[c], PER_CONN, 1);
	cheap_request_answered();
	for (int c = 0; c < CONNS; c++)
		read_answers(&w[c], resp[c], PER_CONN, 1);
	for (int c = 0; c < CONNS; c++)
		for (int i = 0; i < PER_CONN; i++) {
			Micropay__V1__IssueResp *r = resp[c][i]->issue_resp;
			ck_assert_msg(r->status->code == MP_ST(OK), "issue %d/%d: %s %s", c, i,
				      mp_code_name(r->status->code), r->status->detail);
			check_cert(&chs[c][i], &tw, r->channel_cert);
		}
	ck_assert_int_eq(metric(&net, "broker", SIGNED_BY_WORKER),
			 signed_before + CONNS * PER_CONN);

	/* Sent again, on the same connections: the stored certs, byte for byte. */
	static MpEnvelope *again[CONNS][PER_CONN];
	for (int c = 0; c < CONNS; c++)
		send_issues(&w[c], chs[c], PER_CONN, 1000);
	for (int c = 0; c < CONNS; c++)
		read_answers(&w[c], again[c], PER_CONN, 1000);
	for (int c = 0; c < CONNS; c++) {
		for (int i = 0; i < PER_CONN; i++) {
			Micropay__V1__IssueResp *r = again[c][i]->issue_resp;
			ck_assert_int_eq(r->status->code, MP_ST(DUPLICATE_OK));
			ck_assert(
			    stmt_same_bytes(r->channel_cert, resp[c][i]->issue_resp->channel_cert));
			micropay__v1__envelope__free_unpacked(resp[c][i], NULL);
			micropay__v1__envelope__free_unpacked(again[c][i], NULL);
			tchannel_free(&chs[c][i]);
		}
		wire_close(&w[c]);
	}
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct),
			 1000000 - (int64_t)(CONNS * PER_CONN + 1) * UNITS * UNIT_VALUE);
	tchannel_free(&first);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

START_TEST(queue_full_answers_busy_and_stores_nothing)
{
	net_restart_with(&net, "broker", "broker", "workers = 1\nworker_queue = 1");
	struct twallet tw;
	new_funded_wallet(&tw, 100000);
	struct wire w;
	connect_broker(&w);
	struct tchannel first;
	tchannel_make(&first, &tw, UNITS, UNIT_VALUE, m1);
	ck_assert_int_eq(tchannel_issue(&first, &w), MP_ST(OK)); /* the account key cached */
	int64_t refused_before = metric(&net, "broker", REFUSED_BUSY);
	ck_assert_int_ge(refused_before, 0);

	static struct tchannel chs[BURST];
	static MpEnvelope *resp[BURST];
	for (int i = 0; i < BURST; i++)
		tchannel_make(&chs[i], &tw, UNITS, UNIT_VALUE, m1);
	send_issues(&w, chs, BURST, 1);
	read_answers(&w, resp, BURST, 1);
	int issued = 0, busy = 0;
	bool was_busy[BURST] = {false};
	for (int i = 0; i < BURST; i++) {
		MpStatus *st = resp[i]->issue_resp->status;
		if (st->code == MP_ST(OK)) {
			check_cert(&chs[i], &tw, resp[i]->issue_resp->channel_cert);
			issued++;
		} else {
			ck_assert_msg(st->code == MP_ST(LIMIT) && strstr(st->detail, "busy"),
				      "issue %d: %s %s", i, mp_code_name(st->code), st->detail);
			ck_assert(resp[i]->issue_resp->channel_cert == NULL);
			was_busy[i] = true;
			busy++;
		}
		micropay__v1__envelope__free_unpacked(resp[i], NULL);
	}
	printf("burst of %d IssueRequests, one worker, queue of one: %d issued, %d LIMIT busy\n",
	       BURST, issued, busy);
	ck_assert_msg(busy >= 1, "no LIMIT busy among %d pipelined IssueRequests", BURST);
	ck_assert_int_eq(metric(&net, "broker", REFUSED_BUSY), refused_before + busy);
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct),
			 100000 - (int64_t)(issued + 1) * UNITS * UNIT_VALUE);
	/* Nothing was stored for a refused request: sent again alone, it is issued afresh. */
	for (int i = 0; i < BURST; i++) {
		if (was_busy[i])
			ck_assert_int_eq(tchannel_issue(&chs[i], &w), MP_ST(OK));
		tchannel_free(&chs[i]);
	}
	ck_assert_int_eq(net_balance(&net, acct),
			 100000 - (int64_t)(BURST + 1) * UNITS * UNIT_VALUE);
	wire_close(&w);
	tchannel_free(&first);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- Transfers of unbound channels: the Transfer verified, the Cap signed, on the pool ---- */

struct unbound_xfer {
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	struct tseg to;
	MpSigned *transfer; /* segment 0's owner gives segment 1 to `to` */
};

/* n channels of tw without holder0, issued, each with its Transfer 1 signed (by forger's key
 * for the one at forged, if any: n means none). */
static void make_unbound_transfers(struct unbound_xfer *x, size_t n, struct twallet *tw,
				   size_t forged)
{
	struct wire w;
	connect_broker(&w);
	struct mp_key forger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&forger, seed));
	for (size_t i = 0; i < n; i++) {
		tchannel_make(&x[i].ch, tw, UNITS, UNIT_VALUE, NULL);
		ck_assert_int_eq(tchannel_issue(&x[i].ch, &w), MP_ST(OK));
		tchannel_id(&x[i].ch, x[i].id);
		uint8_t cert_hash[MP_HASH_LEN];
		mp_stmt_hash(x[i].ch.cert, cert_hash);
		tseg_make(&x[i].to, UNITS);
		x[i].transfer = transfer_sign(x[i].id, 1, 0, 0, &x[i].to,
					      i == forged ? &forger : &x[i].ch.owner, cert_hash);
	}
	mp_key_free(&forger);
	wire_close(&w);
}

static void free_unbound_transfers(struct unbound_xfer *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mp_stmt_free(x[i].transfer);
		mp_key_free(&x[i].to.owner);
		tchannel_free(&x[i].ch);
	}
}

/* The TransferReqs of x[0..n) in one write, request ids first_id.. */
static void send_transfers(struct wire *w, const struct unbound_xfer *x, size_t n,
			   uint64_t first_id)
{
	MpEnvelope *envs[BURST];
	Micropay__V1__TransferReq reqs[BURST];
	ck_assert_uint_le(n, BURST);
	MpEnvelope env[BURST];
	for (size_t i = 0; i < n; i++) {
		micropay__v1__envelope__init(&env[i]);
		micropay__v1__transfer_req__init(&reqs[i]);
		reqs[i].transfer = x[i].transfer;
		env[i].body_case = MP_BODY(TRANSFER_REQ);
		env[i].transfer_req = &reqs[i];
		envs[i] = &env[i];
	}
	ck_assert(wire_send_pipelined(w, envs, n, first_id));
}

/* Rows the broker recorded for the transfer of channel id (segment_transfers). */
static long recorded_transfers(const uint8_t id[MP_ID_LEN])
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(id, MP_ID_LEN, hex);
	char *v = sql_value(&net,
			    "SELECT count(*) FROM segment_transfers WHERE channel_id = "
			    "'\\x%s'::bytea",
			    hex);
	ck_assert(v != NULL);
	long count = strtol(v, NULL, 10);
	free(v);
	return count;
}

/* An answer OK with the broker's Cap of x's Transfer (and the Transfer itself). */
static void check_capped(const struct unbound_xfer *x, const Micropay__V1__TransferResp *r)
{
	ck_assert_msg(r->status->code == MP_ST(OK), "transfer: %s %s",
		      mp_code_name(r->status->code), r->status->detail);
	ck_assert(stmt_same_bytes(r->transfer, x->transfer));
	expect_broker_cap(r->cap, x->transfer, 1, x->ch.root, x->id, broker_pk);
	ck_assert_int_eq(recorded_transfers(x->id), 1);
}

START_TEST(pipelined_transfers_verified_on_workers)
{
	enum { PER = TRANSFERS / CONNS };
	struct twallet tw;
	new_funded_wallet(&tw, 100000);
	static struct unbound_xfer x[TRANSFERS];
	const size_t forged = 5;
	make_unbound_transfers(x, TRANSFERS, &tw, forged);
	int64_t verified_before = metric(&net, "broker", VERIFIED_BY_WORKER);
	int64_t signed_before = metric(&net, "broker", SIGNED_BY_WORKER);
	ck_assert_int_ge(verified_before, TRANSFERS); /* the IssueRequests, verified there too */

	static MpEnvelope *resp[CONNS][PER], *again[CONNS][PER];
	struct wire w[CONNS];
	for (int c = 0; c < CONNS; c++)
		connect_broker(&w[c]);
	for (int c = 0; c < CONNS; c++)
		send_transfers(&w[c], &x[c * PER], PER, 1);
	cheap_request_answered();
	for (int c = 0; c < CONNS; c++)
		read_answers_of(&w[c], resp[c], PER, 1, MP_BODY(TRANSFER_RESP));
	for (size_t i = 0; i < TRANSFERS; i++) {
		const Micropay__V1__TransferResp *r = resp[i / PER][i % PER]->transfer_resp;
		if (i != forged) {
			check_capped(&x[i], r);
			continue;
		}
		ck_assert_int_eq(r->status->code, MP_ST(BAD_SIG));
		ck_assert(r->cap == NULL);
		ck_assert_int_eq(recorded_transfers(x[i].id), 0);
	}
	ck_assert_int_eq(metric(&net, "broker", VERIFIED_BY_WORKER), verified_before + TRANSFERS);
	ck_assert_int_eq(metric(&net, "broker", SIGNED_BY_WORKER), signed_before + TRANSFERS - 1);

	/* Sent again: each verified again on a worker, the stored Cap byte for byte. */
	for (int c = 0; c < CONNS; c++)
		send_transfers(&w[c], &x[c * PER], PER, 1000);
	for (int c = 0; c < CONNS; c++)
		read_answers_of(&w[c], again[c], PER, 1000, MP_BODY(TRANSFER_RESP));
	for (size_t i = 0; i < TRANSFERS; i++) {
		const Micropay__V1__TransferResp *r = again[i / PER][i % PER]->transfer_resp;
		const Micropay__V1__TransferResp *first = resp[i / PER][i % PER]->transfer_resp;
		if (i == forged) {
			ck_assert_int_eq(r->status->code, MP_ST(BAD_SIG));
		} else {
			ck_assert_int_eq(r->status->code, MP_ST(DUPLICATE_OK));
			ck_assert(stmt_same_bytes(r->cap, first->cap));
			ck_assert(stmt_same_bytes(r->transfer, first->transfer));
		}
		ck_assert_int_eq(recorded_transfers(x[i].id), i == forged ? 0 : 1);
		micropay__v1__envelope__free_unpacked(resp[i / PER][i % PER], NULL);
		micropay__v1__envelope__free_unpacked(again[i / PER][i % PER], NULL);
	}
	ck_assert_int_eq(metric(&net, "broker", VERIFIED_BY_WORKER),
			 verified_before + 2 * TRANSFERS);
	for (int c = 0; c < CONNS; c++)
		wire_close(&w[c]);
	free_unbound_transfers(x, TRANSFERS);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* Peers that hang up while their Transfers are verified and capped on the pool: the broker
 * finishes each (it only loses the answers), keeps serving, and each Transfer sent again gets
 * the broker's Cap (OK when the first never got as far as recording, else DUPLICATE_OK). */
START_TEST(connection_gone_while_verifying)
{
	enum { GONE = 16 };
	struct twallet tw;
	new_funded_wallet(&tw, 100000);
	static struct unbound_xfer x[GONE];
	make_unbound_transfers(x, GONE, &tw, GONE);
	for (int round = 0; round < 4; round++) {
		struct wire w;
		connect_broker(&w);
		send_transfers(&w, &x[round * GONE / 4], GONE / 4, 1);
		wire_close(&w);
	}
	cheap_request_answered();
	for (int i = 0; i < GONE; i++) {
		MpEnvelope *e = twallet_transfer_call(broker_ep, ca, x[i].transfer);
		ck_assert(e != NULL && e->body_case == MP_BODY(TRANSFER_RESP));
		const Micropay__V1__TransferResp *r = e->transfer_resp;
		ck_assert_msg(
		    r->status->code == MP_ST(OK) || r->status->code == MP_ST(DUPLICATE_OK),
		    "transfer %d: %s %s", i, mp_code_name(r->status->code), r->status->detail);
		expect_broker_cap(r->cap, x[i].transfer, 1, x[i].ch.root, x[i].id, broker_pk);
		ck_assert_int_eq(recorded_transfers(x[i].id), 1);
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	free_unbound_transfers(x, GONE);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* Small Redeems (one claim each on an unknown channel: stored, nothing credited). */
#define REDEEMS 16

struct small_redeems {
	struct tmerchant tm;
	struct wire w;
	MpSigned *stmt[REDEEMS];
};

/* A merchant whose key is a file (the token's keys cannot sign a test's Redeems): m3, added
 * without the token. */
static void prepare_small_redeems(struct small_redeems *sr)
{
	const char *registered = "micropay_broker_merchants_registered_total";
	int64_t before = metric(&net, "broker", registered);
	unsetenv("MP_PKCS11_MODULE");
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	/* Its RegisterMerchant (verified on the pool too) done before the counts start. */
	ck_assert_int_eq(metric_wait(&net, "broker", registered, before + 1, 60000), before + 1);
	tmerchant_load(&sr->tm, &net, "m3");
	tmerchant_connect(&sr->tm, &sr->w, broker_ep, ca);
}

static void send_small_redeems(struct small_redeems *sr)
{
	MpEnvelope env[REDEEMS], *envs[REDEEMS];
	Micropay__V1__RedeemReq req[REDEEMS];
	for (int i = 0; i < REDEEMS; i++) {
		uint8_t redeem_id[MP_ID_LEN];
		struct tclaim claim = {.index = 3};
		ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
		ck_assert(mp_random_bytes(claim.channel_id, MP_ID_LEN));
		ck_assert(mp_random_bytes(claim.w, MP_HASH_LEN));
		sr->stmt[i] = tmerchant_redeem(&sr->tm, redeem_id, &claim, 1);
		micropay__v1__envelope__init(&env[i]);
		micropay__v1__redeem_req__init(&req[i]);
		req[i].stmt = sr->stmt[i];
		env[i].body_case = MP_BODY(REDEEM_REQ);
		env[i].redeem_req = &req[i];
		envs[i] = &env[i];
	}
	ck_assert(wire_send_pipelined(&sr->w, envs, REDEEMS, 1));
}

/* The answers: each OK (stored) or LIMIT busy (nothing stored: sent again it is OK, not
 * DUPLICATE_OK); the stored ones sent again are DUPLICATE_OK. Returns how many were busy. */
static int check_small_redeems(struct small_redeems *sr)
{
	static MpEnvelope *resp[REDEEMS];
	read_answers_of(&sr->w, resp, REDEEMS, 1, MP_BODY(REDEEM_RESP));
	int busy = 0;
	for (int i = 0; i < REDEEMS; i++) {
		const MpStatus *st = resp[i]->redeem_resp->status;
		bool refused = st->code == MP_ST(LIMIT);
		ck_assert_msg(st->code == MP_ST(OK) || (refused && strstr(st->detail, "busy")),
			      "redeem %d: %s %s", i, mp_code_name(st->code), st->detail);
		busy += refused;
		micropay__v1__envelope__free_unpacked(resp[i], NULL);
		MpEnvelope *again = redeem_call(&sr->w, sr->stmt[i]);
		ck_assert_int_eq(again->redeem_resp->status->code,
				 refused ? MP_ST(OK) : MP_ST(DUPLICATE_OK));
		ck_assert_uint_eq(again->redeem_resp->n_results, 1);
		ck_assert_int_eq(again->redeem_resp->results[0]->status, MP_ST(UNKNOWN_CHANNEL));
		micropay__v1__envelope__free_unpacked(again, NULL);
		mp_stmt_free(sr->stmt[i]);
	}
	wire_close(&sr->w);
	tmerchant_free(&sr->tm);
	return busy;
}

/* A junk Redeem of m3 whose claims cost 12 x 2^20 hashes (a few seconds here, plain or under
 * ASan, since chain links are hashed without an allocation each): sent on its own connection,
 * it holds the one worker until it is answered (all BAD_CHAIN), long enough for the bursts
 * below to arrive while it is held. */
#define JUNK_CLAIMS 12
#define JUNK_UNITS  (1u << 20)

static MpSigned *junk_of(struct small_redeems *sr, struct twallet *tw)
{
	struct tchannel ch;
	struct wire w;
	connect_broker(&w);
	tchannel_make(&ch, tw, JUNK_UNITS, 1, sr->tm.mid);
	ck_assert_int_eq(tchannel_issue(&ch, &w), MP_ST(OK));
	wire_close(&w);
	MpSigned *junk = junk_redeem(&sr->tm, &ch, JUNK_UNITS, JUNK_CLAIMS);
	tchannel_free(&ch);
	return junk;
}

static void hold_the_worker(struct small_redeems *sr, MpSigned *junk, struct wire *jw)
{
	tmerchant_connect(&sr->tm, jw, broker_ep, ca);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = junk;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	ck_assert(wire_send(jw, &env));
	ck_assert_int_ge(metric_wait(&net, "broker", "micropay_broker_worker_busy", 1, 30000), 1);
	usleep(100 * 1000); /* past its signature check and database steps: hashing */
	ck_assert_msg(metric(&net, "broker", "micropay_broker_worker_busy") >= 1,
		      "the junk Redeem is not being hashed");
}

static void junk_answered(struct wire *jw, MpSigned *junk)
{
	wire_set_timeout(jw, 300);
	MpEnvelope *e = wire_recv(jw);
	ck_assert(e != NULL && e->body_case == MP_BODY(REDEEM_RESP));
	ck_assert_int_eq(e->redeem_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->redeem_resp->n_results, JUNK_CLAIMS);
	for (size_t i = 0; i < JUNK_CLAIMS; i++)
		ck_assert_int_eq(e->redeem_resp->results[i]->status, MP_ST(BAD_CHAIN));
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = redeem_call(jw, junk); /* stored: its answer again, nothing hashed */
	ck_assert_int_eq(e->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(jw);
	mp_stmt_free(junk);
}

/* After queue_full_answers_busy_and_stores_nothing: one worker, a queue of one, that worker
 * held by a junk Redeem's hashing while TransferReqs and small Redeems arrive. */
START_TEST(queue_full_refuses_transfers_storing_nothing)
{
	struct twallet tw;
	new_funded_wallet(&tw, 100000 + JUNK_UNITS);
	static struct unbound_xfer x[BURST];
	make_unbound_transfers(x, BURST, &tw, BURST);
	struct small_redeems sr;
	prepare_small_redeems(&sr);
	MpSigned *junk = junk_of(&sr, &tw);
	struct wire w, jw;
	connect_broker(&w);
	int64_t refused_before = metric(&net, "broker", REFUSED_BUSY);
	int64_t verified_before = metric(&net, "broker", VERIFIED_BY_WORKER);
	hold_the_worker(&sr, junk, &jw);
	static MpEnvelope *resp[BURST];
	send_transfers(&w, x, BURST, 1);
	send_small_redeems(&sr);
	cheap_request_answered();
	read_answers_of(&w, resp, BURST, 1, MP_BODY(TRANSFER_RESP));
	int capped = 0, busy = 0, busy_verifying = 0;
	bool was_busy[BURST] = {false};
	for (int i = 0; i < BURST; i++) {
		const Micropay__V1__TransferResp *r = resp[i]->transfer_resp;
		if (r->status->code == MP_ST(OK)) {
			check_capped(&x[i], r);
			capped++;
		} else {
			ck_assert_msg(r->status->code == MP_ST(LIMIT) &&
					  strstr(r->status->detail, "busy"),
				      "transfer %d: %s %s", i, mp_code_name(r->status->code),
				      r->status->detail);
			ck_assert(r->cap == NULL);
			ck_assert_int_eq(recorded_transfers(x[i].id), 0);
			busy_verifying += strstr(r->status->detail, "verification") != NULL;
			was_busy[i] = true;
			busy++;
		}
		micropay__v1__envelope__free_unpacked(resp[i], NULL);
	}
	junk_answered(&jw, junk);
	int redeems_busy = check_small_redeems(&sr);
	printf("one worker held by a junk Redeem, queue of one: of %d TransferReqs %d capped, %d "
	       "LIMIT busy (%d at the verification); of %d small Redeems %d LIMIT busy\n",
	       BURST, capped, busy, busy_verifying, REDEEMS, redeems_busy);
	ck_assert_msg(busy_verifying >= BURST - 2,
		      "TransferReqs verified while the worker was held");
	ck_assert_msg(redeems_busy >= REDEEMS - 1,
		      "small Redeems verified while the worker was held");
	ck_assert_int_eq(metric(&net, "broker", REFUSED_BUSY),
			 refused_before + busy + redeems_busy);
	/* Every check that ran was on the worker: the junk Redeem's (twice: sent again), the
	 * TransferReqs and Redeems not refused at their verification, the Redeems sent again. */
	ck_assert_int_eq(metric(&net, "broker", VERIFIED_BY_WORKER),
			 verified_before + 2 + (BURST - busy_verifying) + 2 * REDEEMS -
			     redeems_busy);
	/* Nothing was stored for a refused request: sent again alone, it is capped afresh. */
	for (int i = 0; i < BURST; i++) {
		if (!was_busy[i])
			continue;
		MpEnvelope *e = twallet_transfer_call(broker_ep, ca, x[i].transfer);
		ck_assert(e != NULL && e->body_case == MP_BODY(TRANSFER_RESP));
		check_capped(&x[i], e->transfer_resp);
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	wire_close(&w);
	free_unbound_transfers(x, BURST);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	if (system("command -v softhsm2-util >/dev/null 2>&1") != 0) {
		printf("SKIP: softhsm2-util is not installed (deploy/install-deps installs it)\n");
		return 77;
	}
	Suite *s = suite_create("sign_pool");
	TCase *tc = tcase_create("token");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, concurrent_issues_signed_on_workers);
	tcase_add_test(tc, pipelined_transfers_verified_on_workers);
	tcase_add_test(tc, connection_gone_while_verifying);
	tcase_add_test(tc, queue_full_answers_busy_and_stores_nothing);
	tcase_add_test(tc, queue_full_refuses_transfers_storing_nothing);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
