/* The successor following a HANDED_OFF redirect, against the real daemons (deploy/mpnet: three
 * merchants, walletd w1), docs/custody.md "Following a redirect":
 * - two merchants ask the holder m1 for the same channel at once: walletd pays at m2 (its Move
 *   from epoch 0) while a second device of the same customer (the test, with the owner key and
 *   chain read from w1's store) opens at m3 with its own Move from epoch 0. m1 signs exactly one
 *   Handoff 1; the loser's Open is answered HANDED_OFF with the winner's Handoff as evidence,
 *   the loser signs a Move from epoch 1 and ends up holder through Handoff 2 from the winner.
 *   Rounds repeat until walletd was the loser at least once (its redirect followed through the
 *   real m2 and w1); payments at both merchants are accepted in order, the redemption credits
 *   each merchant exactly its range and the audit is clean;
 * - a holder answering HANDED_OFF with evidence that does not verify (wrong signer, a w_at not
 *   of the chain, more than MAX_HANDOFFS Handoffs, no MerchantCert of the new holder) gets the
 *   wallet's pay refused with a clear error, and nothing changes at the successor or the
 *   wallet. */
#include <check.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_peer.h"
#include "proto_limits.h"
#include "../check_run.h"

static struct handoff_net hn;
static char account[64];

static void setup_net(void)
{
	handoff_net_up(&hn);
	handoff_wallet_register(&hn, account, sizeof(account));
	net_fund(&hn.net, account, 5000);
}

static void teardown_net(void)
{
	handoff_net_down(&hn);
}

static void expect_wallet_holder(const char *channel, int m, int64_t epoch)
{
	char holder[64];
	int64_t e;
	wallet_channel_holder(&hn.net, "w1", channel, holder, sizeof(holder), &e);
	ck_assert_msg(strcmp(holder, hn.tm[m].mid_hex) == 0 && e == epoch,
		      "w1 records holder %s epoch %lld, expected m%d epoch %lld", holder,
		      (long long)e, m, (long long)epoch);
}

/* walletd pays units at merchant m (a Move when m is not the holder) in a thread. */
struct bg_pay {
	const char *channel;
	int m;
	unsigned units;
	char order[64];
	json_t *result;
	char err[600];
	pthread_t thread;
};

static void *bg_pay_run(void *arg)
{
	struct bg_pay *b = arg;
	char params[500];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 b->channel, hn.tm[b->m].mid_hex, hn.ep[b->m], b->units, b->order);
	b->result = admin(&hn.net, "w1", "pay", params, b->err, sizeof(b->err));
	return NULL;
}

static void bg_pay_start(struct bg_pay *b, const char *channel, int m, unsigned units)
{
	memset(b, 0, sizeof(*b));
	b->channel = channel;
	b->m = m;
	b->units = units;
	net_new_order(&hn.net, hn.tm[m].name, units, b->order, sizeof(b->order));
	ck_assert_int_eq(pthread_create(&b->thread, NULL, bg_pay_run, b), 0);
}

/* A channel of w1 with holder0 m1 on which w1 paid 3 units at m1. */
static void wallet_channel(char channel[MP_HEX_ID_LEN + 1])
{
	char params[400], order[64], err[512];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":100,\"unit_value\":1,\"days\":1}",
		 hn.tm[1].mid_hex);
	json_t *r = admin_ok(&hn.net, "w1", "issue", params);
	snprintf(channel, MP_HEX_ID_LEN + 1, "%s", json_str(r, "channel_id"));
	json_decref(r);
	net_new_order(&hn.net, hn.tm[1].name, 3, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":3,\"order_ref\":\"%s\"}",
		 channel, hn.ep[1], order);
	r = admin(&hn.net, "w1", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay at m1: %s", err);
	ck_assert_int_eq(json_int(r, "last"), 3);
	json_decref(r);
}

/* m1's MerchantCert from an Open at m1, the holder. */
static MpSigned *m1_cert_of(const struct tchannel *ch)
{
	struct wire w;
	ck_assert(wire_connect(&w, hn.ep[1], hn.ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(ch, &w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	MpSigned *cert = mp_stmt_copy(e->open_ack->holder_cert);
	ck_assert(cert != NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	return cert;
}

/* Handoffs with this hseq of the channel in merchant m's store. */
static int custody_rows(int m, const uint8_t id[MP_ID_LEN], uint32_t hseq)
{
	char rel[64], path[700];
	snprintf(rel, sizeof(rel), "m%d/merchant.db", m);
	net_path(&hn.net, rel, path, sizeof(path));
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT count(*) FROM custody WHERE channel_id = ? "
					    "AND hseq = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, hseq);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static Micropay__V1__Handoff *handoff_body(const MpSigned *h)
{
	ck_assert(h != NULL);
	Micropay__V1__Handoff *b = (Micropay__V1__Handoff *)mp_strict_unpack(
	    &micropay__v1__handoff__descriptor, h->body.data, h->body.len);
	ck_assert(b && b->point && mp_bytes_len_is(b->to_mid, MP_ID_LEN));
	return b;
}

/* The MerchantCert of merchant m among certs (NULL if absent). */
static const MpSigned *cert_of(MpSigned *const *certs, size_t n, int m)
{
	for (size_t i = 0; i < n; i++) {
		Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)mp_strict_unpack(
		    &micropay__v1__merchant_cert__descriptor, certs[i]->body.data,
		    certs[i]->body.len);
		bool is = mc && mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
			  !memcmp(mc->merchant_id.data, hn.tm[m].mid, MP_ID_LEN);
		if (mc)
			micropay__v1__merchant_cert__free_unpacked(mc, NULL);
		if (is)
			return certs[i];
	}
	return NULL;
}

/* m3 (opened by the second device) won the race: walletd's Open at m2 was redirected to m3;
 * the test pays at m3 meanwhile. Adds the expected credits. */
static void m3_won(const char *channel, const struct tchannel *tch, struct wire *w3,
		   const Micropay__V1__OpenAck *ack, struct bg_pay *bg, int64_t expect[4])
{
	ck_assert_int_eq(ack->hseq, 1);
	ck_assert_int_eq(ack->point->index, 3);
	uint32_t last_ok = 3;
	bool refused = false;
	for (uint32_t j = 4; j <= 9; j++) {
		MpCode c = pay_status(tch, w3, j);
		/* LIMIT changes nothing and asks for a retry: the Handoff to m2 being signed, or
		 * the group commit full on a loaded machine */
		for (int tries = 0; c == MP_ST(LIMIT) && tries < 100; tries++) {
			usleep(20 * 1000);
			c = pay_status(tch, w3, j);
		}
		if (pay_accepted(c)) {
			ck_assert_msg(!refused, "m3 accepted j=%u after refusing an earlier one",
				      j);
			last_ok = j;
		} else {
			ck_assert_int_eq(c, MP_ST(HANDED_OFF));
			refused = true;
		}
	}
	ck_assert_int_eq(pthread_join(bg->thread, NULL), 0);
	ck_assert_msg(bg->result != NULL, "walletd's pay at m2 (the loser) failed: %s", bg->err);
	ck_assert_str_eq(json_str(bg->result, "status"), "OK");
	ck_assert_int_eq(json_int(bg->result, "paid_units"), 2);
	int64_t last = json_int(bg->result, "last");
	json_decref(bg->result);
	/* Handoff 2 from m3 at its last accepted Pay; m2 took it from there. */
	expect_merchant_channel(&hn.net, hn.tm[3].name, channel, "HANDED_OFF", 1, last_ok);
	expect_merchant_channel(&hn.net, hn.tm[2].name, channel, "HELD", 2, last_ok + 2);
	ck_assert_int_eq(last, last_ok + 2);
	expect_wallet_holder(channel, 2, 2);
	fprintf(stderr, "race: m3 won, m3 paid up to %u, walletd redirected and paid at m2\n",
		last_ok);
	expect[1] += 3;
	expect[3] += last_ok - 3;
	expect[2] += 2;
}

/* walletd's m2 won: the second device's Open at m3 is answered HANDED_OFF with Handoff 1 naming
 * m2 and m2's MerchantCert; it follows the redirect (Move from epoch 1, hint m2) on the same
 * connection once walletd's pay is done. */
static void m2_won(const char *channel, const struct tchannel *tch, struct wire *w3,
		   const Micropay__V1__OpenAck *ack, struct bg_pay *bg, int64_t expect[4])
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(tch, id);
	ck_assert_msg(ack->status->code == MP_ST(HANDED_OFF), "m3: %s %s",
		      mp_code_name(ack->status->code), ack->status->detail);
	ck_assert(ack->redirect != NULL && ack->status->evidence != NULL);
	Micropay__V1__Handoff *h = handoff_body(ack->redirect->handoff);
	ck_assert_int_eq(h->hseq, 1);
	ck_assert(!memcmp(h->to_mid.data, hn.tm[2].mid, MP_ID_LEN));
	micropay__v1__handoff__free_unpacked(h, NULL);
	const MpSigned *m2_cert =
	    cert_of(ack->redirect->merchant_certs, ack->redirect->n_merchant_certs, 2);
	ck_assert_msg(m2_cert != NULL, "the redirect carries no MerchantCert of m2");
	ck_assert_int_eq(pthread_join(bg->thread, NULL), 0);
	ck_assert_msg(bg->result != NULL, "walletd's pay at m2 (the winner) failed: %s", bg->err);
	ck_assert_int_eq(json_int(bg->result, "last"), 5);
	json_decref(bg->result);
	MpSigned *move = sign_move(&tch->owner, id, 1, hn.tm[3].mid);
	handoff_open_send(w3, tch, move, hn.tm[2].mid, m2_cert);
	mp_stmt_free(move);
	MpEnvelope *e = handoff_open_ack(w3);
	ck_assert_msg(e->open_ack->status->code == MP_ST(OK), "m3 after the redirect: %s %s",
		      mp_code_name(e->open_ack->status->code), e->open_ack->status->detail);
	ck_assert_int_eq(e->open_ack->hseq, 2);
	ck_assert_int_eq(e->open_ack->point->index, 5);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(pay_accepted(pay_status(tch, w3, 6)));
	ck_assert(pay_accepted(pay_status(tch, w3, 7)));
	expect_merchant_channel(&hn.net, hn.tm[2].name, channel, "HANDED_OFF", 1, 5);
	expect_merchant_channel(&hn.net, hn.tm[3].name, channel, "HELD", 2, 7);
	fprintf(stderr, "race: walletd's m2 won; the second device followed the redirect to m3\n");
	expect[1] += 3;
	expect[2] += 2;
	expect[3] += 2;
}

/* One race on a fresh channel, the device's Open at m3 sent gap_ms after walletd's pay started;
 * true if walletd was the loser. */
static bool race_round(int64_t expect[4], unsigned gap_ms)
{
	char channel[MP_HEX_ID_LEN + 1];
	wallet_channel(channel);
	struct tchannel tch;
	twallet_channel_load(&hn.net, "w1", channel, &tch);
	uint8_t id[MP_ID_LEN];
	tchannel_id(&tch, id);
	MpSigned *m1_cert = m1_cert_of(&tch);
	MpSigned *move3 = sign_move(&tch.owner, id, 0, hn.tm[3].mid);
	struct wire w3;
	ck_assert(wire_connect(&w3, hn.ep[3], hn.ca, NULL, NULL));
	struct bg_pay bg;
	/* at once: walletd's pay at m2 and the second device's Open at m3, both from epoch 0
	 * (walletd's path to m1 is longer: admin call, TLS to m2, m2's TLS to m1) */
	bg_pay_start(&bg, channel, 2, 2);
	usleep(gap_ms * 1000);
	handoff_open_send(&w3, &tch, move3, hn.tm[1].mid, m1_cert);
	MpEnvelope *e = handoff_open_ack(&w3);
	bool walletd_lost = e->open_ack->status->code == MP_ST(OK);
	if (walletd_lost)
		m3_won(channel, &tch, &w3, e->open_ack, &bg, expect);
	else
		m2_won(channel, &tch, &w3, e->open_ack, &bg, expect);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* exactly one Handoff 1, signed by m1, and nothing else from m1 */
	ck_assert_int_eq(custody_rows(1, id, 1), 1);
	ck_assert_int_eq(custody_rows(1, id, 2), 0);
	expect_merchant_channel(&hn.net, hn.tm[1].name, channel, "HANDED_OFF", 0, 3);
	wire_close(&w3);
	mp_stmt_free(move3);
	mp_stmt_free(m1_cert);
	tchannel_free(&tch);
	return walletd_lost;
}

START_TEST(two_merchants_ask_at_once_the_loser_follows_the_redirect)
{
	int64_t before[4], expect[4] = {0};
	for (int i = 1; i <= 3; i++)
		before[i] = net_pending(&hn.net, hn.tm[i].mid_hex);
	/* Rounds until each side lost at least once. walletd's path to m1 is longer, so the
	 * device's Open waits gap_ms: longer after walletd lost, shorter after it won. */
	int rounds = 0, lost[2] = {0, 0}; /* [1]: walletd lost */
	unsigned gap_ms = 0;
	while ((!lost[0] || !lost[1]) && rounds < 16) {
		bool walletd_lost = race_round(expect, gap_ms);
		lost[walletd_lost]++;
		rounds++;
		if (walletd_lost)
			gap_ms += gap_ms < 400 ? 20 : 0;
		else
			gap_ms -= gap_ms >= 10 ? 10 : gap_ms;
	}
	fprintf(stderr, "%d rounds: walletd lost %d, the second device lost %d\n", rounds, lost[1],
		lost[0]);
	ck_assert_msg(lost[1] > 0, "walletd never lost the race in %d rounds", rounds);
	ck_assert_msg(lost[0] > 0, "the second device never lost the race in %d rounds", rounds);
	json_t *st = admin_ok(&hn.net, "m2", "status", NULL);
	ck_assert_int_ge(json_int(json_object_get(st, "counters"), "handoff_redirects"), 1);
	json_decref(st);
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_decref(admin_ok(&hn.net, name, "redeem", NULL));
	}
	for (int i = 1; i <= 3; i++) {
		int64_t got = net_pending(&hn.net, hn.tm[i].mid_hex) - before[i];
		fprintf(stderr, "after %d rounds: m%d credited %lld, its ranges sum to %lld\n",
			rounds, i, (long long)got, (long long)expect[i]);
		ck_assert_int_eq(got, expect[i]);
	}
	net_audit_clean(&hn.net);
}
END_TEST

/* ---- a holder whose HANDED_OFF evidence does not verify (a test server at m1's endpoint) ---- */

enum bad_evidence { WRONG_SIGNER, BAD_W_AT, TOO_MANY, NO_NEW_HOLDER_CERT, N_BAD };

/* Handoffs 1..n of the channel alternating m1 -> m3 -> m1 ..., all at index 3 (the wallet paid 3
 * at m1) with the word of the wallet's chain unless bad_w, each signed by its from merchant
 * unless wrong_signer (then by m3); move_hash of move (zero without one). malloc'd array. */
static MpSigned **make_chain(const struct tchannel *tch, size_t n, bool wrong_signer, bool bad_w,
			     const MpSigned *move)
{
	uint8_t id[MP_ID_LEN], head[MP_HASH_LEN], prev[MP_HASH_LEN], mh[MP_HASH_LEN] = {0},
								     w3[MP_HASH_LEN];
	tchannel_id(tch, id);
	mp_stmt_hash(tch->cert, head);
	memcpy(prev, head, MP_HASH_LEN);
	if (move)
		mp_stmt_hash(move, mh);
	tchannel_word(tch, 3, w3);
	if (bad_w)
		w3[0] ^= 1;
	MpSigned **chain = calloc(n, sizeof(*chain));
	ck_assert(chain != NULL);
	for (size_t k = 0; k < n; k++) {
		int from = k % 2 ? 3 : 1, to = k % 2 ? 1 : 3;
		const struct mp_key *key = wrong_signer ? &hn.tm[3].key : &hn.tm[from].key;
		chain[k] = handoff_forge(key, id, (uint32_t)k + 1, hn.tm[from].mid, hn.tm[to].mid,
					 3, w3, head, prev, mh);
		mp_stmt_hash(chain[k], prev);
	}
	return chain;
}

static void free_chain(MpSigned **chain, size_t n)
{
	for (size_t k = 0; k < n; k++)
		mp_stmt_free(chain[k]);
	free(chain);
}

/* The custody chain a misbehaving m1 answers with; *n Handoffs (malloc'd array). */
static MpSigned **bad_chain(enum bad_evidence kind, const struct tchannel *tch,
			    const MpSigned *move, size_t *n)
{
	*n = kind == TOO_MANY ? MP_MAX_HANDOFFS + 1 : 1;
	return make_chain(tch, *n, kind == WRONG_SIGNER, kind == BAD_W_AT, move);
}

/* Serve one HandoffReq from m2 as a misbehaving m1: HANDED_OFF with evidence of `kind`. */
static void serve_bad(struct tserver *srv, enum bad_evidence kind, const struct tchannel *tch,
		      MpSigned *m1_cert)
{
	struct wire c;
	ck_assert_msg(tserver_accept(srv, &c, 15000), "m2 did not connect to m1's endpoint");
	MpEnvelope *req = wire_recv(&c);
	ck_assert(req && req->body_case == MP_BODY(HANDOFF_REQ) && req->handoff_req->move);
	ck_assert_msg(req->handoff_req->requester_cert &&
			  cert_of(&req->handoff_req->requester_cert, 1, 2) != NULL,
		      "the HandoffReq does not carry m2's MerchantCert");
	if (kind == WRONG_SIGNER) { /* busy first: m2 asks again on the same connection */
		Micropay__V1__HandoffResp busy = MICROPAY__V1__HANDOFF_RESP__INIT;
		MpStatus bst = MICROPAY__V1__STATUS__INIT;
		bst.code = MP_ST(LIMIT);
		bst.detail = "a Handoff of this channel is being committed; retry";
		busy.status = &bst;
		MpEnvelope benv = MICROPAY__V1__ENVELOPE__INIT;
		benv.version = MP_PROTOCOL_VERSION;
		benv.request_id = req->request_id;
		benv.body_case = MP_BODY(HANDOFF_RESP);
		benv.handoff_resp = &busy;
		ck_assert(wire_send_env(&c, &benv));
		micropay__v1__envelope__free_unpacked(req, NULL);
		req = wire_recv(&c);
		ck_assert_msg(req && req->body_case == MP_BODY(HANDOFF_REQ),
			      "m2 did not ask again after LIMIT");
	}
	size_t n = 0;
	MpSigned **chain = bad_chain(kind, tch, req->handoff_req->move, &n);
	Micropay__V1__HandoffResp resp = MICROPAY__V1__HANDOFF_RESP__INIT;
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(HANDED_OFF);
	st.detail = "handed off";
	st.evidence = chain[n - 1];
	resp.status = &st;
	resp.handoff = chain[n - 1];
	resp.custody = chain;
	resp.n_custody = n;
	resp.merchant_certs = &m1_cert; /* never m3's: for NO_NEW_HOLDER_CERT that is the fault */
	resp.n_merchant_certs = 1;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = req->request_id;
	env.body_case = MP_BODY(HANDOFF_RESP);
	env.handoff_resp = &resp;
	ck_assert(wire_send_env(&c, &env));
	free_chain(chain, n);
	micropay__v1__envelope__free_unpacked(req, NULL);
	wire_closed_within(&c, 15000); /* m2 closes once it has judged the answer */
	wire_close(&c);
}

START_TEST(evidence_that_does_not_verify_changes_nothing)
{
	static const char *const expected[N_BAD] = {
	    [WRONG_SIGNER] = "signer",
	    [BAD_W_AT] = "w_at",
	    [TOO_MANY] = "too_many",
	    [NO_NEW_HOLDER_CERT] = "cannot be reached",
	};
	char channel[MP_HEX_ID_LEN + 1];
	wallet_channel(channel);
	struct tchannel tch;
	twallet_channel_load(&hn.net, "w1", channel, &tch);
	uint8_t id[MP_ID_LEN];
	tchannel_id(&tch, id);
	MpSigned *m1_cert = m1_cert_of(&tch);
	json_t *st = admin_ok(&hn.net, "m2", "status", NULL);
	int64_t taken = json_int(json_object_get(st, "counters"), "handoffs_taken");
	json_decref(st);
	ck_assert_int_eq(net_cmd(&hn.net, "kill", "m1"), 0);
	struct tserver srv;
	ck_assert(tserver_listen(&srv, hn.ep[1], hn.tm[1].cert, hn.tm[1].tls_key, hn.ca));
	for (int kind = 0; kind < N_BAD; kind++) {
		struct bg_pay bg;
		bg_pay_start(&bg, channel, 2, 2);
		serve_bad(&srv, (enum bad_evidence)kind, &tch, m1_cert);
		ck_assert_int_eq(pthread_join(bg.thread, NULL), 0);
		ck_assert_msg(bg.result == NULL, "kind %d: walletd's pay succeeded", kind);
		fprintf(stderr, "bad evidence %d: %s\n", kind, bg.err);
		ck_assert_msg(strstr(bg.err, "HANDED_OFF") && strstr(bg.err, expected[kind]),
			      "kind %d: unclear error: %s", kind, bg.err);
		ck_assert_msg(strstr(bg.err, "no payword sent"), "kind %d: %s", kind, bg.err);
		/* nothing changed: m2 holds nothing and stored nothing; w1 keeps m1 in epoch 0 */
		char state[32];
		int64_t e, l;
		ck_assert(!merchant_channel_state(&hn.net, hn.tm[2].name, channel, state,
						  sizeof(state), &e, &l) ||
			  strcmp(state, "HELD") != 0);
		for (uint32_t h = 1; h <= MP_MAX_HANDOFFS + 1; h += MP_MAX_HANDOFFS)
			ck_assert_int_eq(custody_rows(2, id, h), 0);
		expect_wallet_holder(channel, 1, 0);
	}
	tserver_close(&srv);
	st = admin_ok(&hn.net, "m2", "status", NULL);
	ck_assert_int_eq(json_int(json_object_get(st, "counters"), "handoffs_taken"), taken);
	json_decref(st);
	/* The real m1 back: the same wallet moves the channel to m2 from where it was. */
	ck_assert_int_eq(net_cmd(&hn.net, "start", "m1"), 0);
	struct bg_pay bg;
	bg_pay_start(&bg, channel, 2, 2);
	ck_assert_int_eq(pthread_join(bg.thread, NULL), 0);
	ck_assert_msg(bg.result != NULL, "pay at m2 with the real m1 back: %s", bg.err);
	ck_assert_int_eq(json_int(bg.result, "last"), 5);
	json_decref(bg.result);
	expect_wallet_holder(channel, 2, 1);
	expect_merchant_channel(&hn.net, hn.tm[2].name, channel, "HELD", 1, 5);
	mp_stmt_free(m1_cert);
	tchannel_free(&tch);
	net_audit_clean(&hn.net);
}
END_TEST

/* ---- a successor whose redirect the wallet must not follow (a test server as m2) ---- */

enum bad_redirect { NOT_OUR_WORD, NOT_THE_HOLDERS_KEY, NO_CERT_OF_NEW_HOLDER, ENDLESS, N_REDIRECT };

/* Answer every Open on c as a misbehaving m2 until the wallet closes: HANDED_OFF with a redirect
 * carrying chain and certs. Each Move must be from the epoch the wallet reached (one per
 * redirect followed). Returns the number of Opens. */
static int serve_redirects(struct wire *c, MpSigned **chain, size_t n_chain, MpSigned **certs,
			   size_t n_certs)
{
	int opens = 0;
	MpEnvelope *req;
	while ((req = wire_recv(c)) != NULL) {
		ck_assert(req->body_case == MP_BODY(OPEN_REQ) && req->open_req->move);
		const MpSigned *m = req->open_req->move;
		Micropay__V1__Move *mv = (Micropay__V1__Move *)mp_strict_unpack(
		    &micropay__v1__move__descriptor, m->body.data, m->body.len);
		ck_assert(mv != NULL);
		ck_assert_int_eq(mv->from_epoch, opens);
		micropay__v1__move__free_unpacked(mv, NULL);
		size_t last = (size_t)opens < n_chain ? (size_t)opens : n_chain - 1;
		Micropay__V1__HandoffResp redirect = MICROPAY__V1__HANDOFF_RESP__INIT;
		redirect.handoff = chain[last];
		redirect.custody = chain;
		redirect.n_custody = n_chain;
		redirect.merchant_certs = certs;
		redirect.n_merchant_certs = n_certs;
		Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
		MpStatus st = MICROPAY__V1__STATUS__INIT;
		st.code = MP_ST(HANDED_OFF);
		st.detail = "handed off";
		st.evidence = chain[last];
		ack.status = &st;
		ack.redirect = &redirect;
		MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
		env.version = MP_PROTOCOL_VERSION;
		env.request_id = req->request_id;
		env.body_case = MP_BODY(OPEN_ACK);
		env.open_ack = &ack;
		micropay__v1__envelope__free_unpacked(req, NULL);
		if (!wire_send_env(c, &env))
			break;
		opens++;
	}
	return opens;
}

/* walletd pays at a server presenting m2's certificate, which answers with forged redirects:
 * the wallet refuses each with a clear error (and keeps its holder) or, for an endless chain of
 * redirects that each verify, stops after MAX_HANDOFFS. */
START_TEST(wallet_follows_only_redirects_it_can_verify)
{
	static const char *const expected[N_REDIRECT] = {
	    [NOT_OUR_WORD] = "not a word of our chain",
	    [NOT_THE_HOLDERS_KEY] = "not a Handoff signed by the holder we know",
	    [NO_CERT_OF_NEW_HOLDER] = "no MerchantCert of the new holder",
	    [ENDLESS] = "more than 256 redirects",
	};
	char channel[MP_HEX_ID_LEN + 1], fake_ep[128];
	wallet_channel(channel);
	struct tchannel tch;
	twallet_channel_load(&hn.net, "w1", channel, &tch);
	MpSigned *certs[2] = {tmerchant_stored_cert(&hn.net, "m1"),
			      tmerchant_stored_cert(&hn.net, "m3")};
	struct tserver srv;
	ck_assert(tserver_listen(&srv, "127.0.0.1:0", hn.tm[2].cert, hn.tm[2].tls_key, hn.ca));
	tserver_endpoint(&srv, fake_ep, sizeof(fake_ep));
	snprintf(hn.ep[0], sizeof(hn.ep[0]), "%s", fake_ep); /* "merchant 0": m2's id at the fake */
	memcpy(hn.tm[0].mid, hn.tm[2].mid, MP_ID_LEN);
	snprintf(hn.tm[0].mid_hex, sizeof(hn.tm[0].mid_hex), "%s", hn.tm[2].mid_hex);
	for (int kind = 0; kind < N_REDIRECT; kind++) {
		size_t n = kind == ENDLESS ? MP_MAX_HANDOFFS + 1 : 1;
		MpSigned **chain =
		    make_chain(&tch, n, kind == NOT_THE_HOLDERS_KEY, kind == NOT_OUR_WORD, NULL);
		struct bg_pay bg;
		memset(&bg, 0, sizeof(bg));
		bg.channel = channel;
		bg.m = 0;
		bg.units = 2;
		snprintf(bg.order, sizeof(bg.order), "0102");
		ck_assert_int_eq(pthread_create(&bg.thread, NULL, bg_pay_run, &bg), 0);
		struct wire c;
		ck_assert_msg(tserver_accept(&srv, &c, 15000), "walletd did not connect");
		int opens =
		    serve_redirects(&c, chain, n, certs, kind == NO_CERT_OF_NEW_HOLDER ? 1 : 2);
		wire_close(&c);
		ck_assert_int_eq(pthread_join(bg.thread, NULL), 0);
		ck_assert_msg(bg.result == NULL, "kind %d: walletd's pay succeeded", kind);
		fprintf(stderr, "forged redirect %d (%d Opens): %s\n", kind, opens, bg.err);
		ck_assert_msg(strstr(bg.err, expected[kind]) && strstr(bg.err, "no payword sent"),
			      "kind %d: unclear error: %s", kind, bg.err);
		if (kind == ENDLESS) {
			/* every step verified under the previous holder's key: followed, then the
			 * limit; the epoch reached is MAX_HANDOFFS (Handoff 256 names m1) */
			ck_assert_int_eq(opens, MP_MAX_HANDOFFS + 1);
			expect_wallet_holder(channel, 1, MP_MAX_HANDOFFS);
		} else {
			ck_assert_int_eq(opens, 1);
			expect_wallet_holder(channel, 1, 0);
		}
		free_chain(chain, n);
	}
	/* the wallet kept its place: nothing was paid anywhere past index 3 */
	json_t *r = admin_ok(&hn.net, "w1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), channel))
			ck_assert_int_eq(json_int(json_array_get(list, i), "last"), 3);
	json_decref(r);
	expect_merchant_channel(&hn.net, hn.tm[1].name, channel, "HELD", 0, 3);
	tserver_close(&srv);
	mp_stmt_free(certs[0]);
	mp_stmt_free(certs[1]);
	tchannel_free(&tch);
	net_audit_clean(&hn.net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("handoff_redirect");
	TCase *tc = tcase_create("handoff_redirect");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, two_merchants_ask_at_once_the_loser_follows_the_redirect);
	tcase_add_test(tc, evidence_that_does_not_verify_changes_nothing);
	tcase_add_test(tc, wallet_follows_only_redirects_it_can_verify);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
