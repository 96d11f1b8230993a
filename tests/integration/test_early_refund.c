/* The early close refund end to end (protocol.md section 6 "Close", "Finalisation and refund";
 * docs/close.md, docs/settlement.md) through the real daemons with the test clock: brokerd,
 * merchants m1 and m2, walletd w1.
 * - pay at m1, hand off to m2, pay there, `close` at m2: walletd sends the RefundRequest with the
 *   Close and the custody chain on its own and the refund arrives at once with the exact amount;
 *   the broker's channel is CLOSED_EARLY; a late claim above final_index is refused
 *   (OUT_OF_RANGE, recorded as a conflict); m1's claim redeemed after the close is paid in full;
 *   the refund asked again is DUPLICATE_OK with the same amount; another valid Close of the
 *   channel gets CONFLICT carrying the stored Close; after finalisation every balance is exact
 *   (customer, m1, m2, unclaimed);
 * - forged or mismatched Closes and RefundRequests get their typed error and change nothing;
 * - the broker is down when the wallet closes: the wallet keeps its stored request and retries
 *   it with backoff until the broker answers.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "proto_limits.h"
#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_redeem.h"
#include "harness_settle.h"
#include "harness_store.h"
#include "../check_run.h"

static struct net net;
static struct tmerchant tm[3]; /* 1, 2 */
static char ep[3][128], account[64], ca[700], broker_ep[128];

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* sweeps when the test asks */
	setenv("MP_DEADLINE_CHECK", "3600", 1);
	setenv("MP_REFUND_CHECK", "0", 1); /* only the early refund asks on its own */
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_DEADLINE_CHECK");
	unsetenv("MP_REFUND_CHECK");
	for (int i = 1; i <= 2; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
	}
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
}

static void teardown_net(void)
{
	for (int i = 1; i <= 2; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

/* ---- the wallet and the merchants ---- */

static void issue(unsigned n, uint64_t unit, char *channel, size_t len)
{
	char params[300];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":%u,\"unit_value\":%llu,\"days\":1}", tm[1].mid_hex,
		 n, (unsigned long long)unit);
	json_t *r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, len, "%s", json_str(r, "channel_id"));
	json_decref(r);
}

/* w1 pays `units` at merchant m (a handoff if m is not the holder). */
static void pay_at(const char *channel, int m, unsigned units, uint64_t unit, int64_t expect_last)
{
	char params[500], order[64], name[8], err[512];
	snprintf(name, sizeof(name), "m%d", m);
	net_new_order(&net, name, units * unit, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, tm[m].mid_hex, ep[m], units, order);
	json_t *r = admin(&net, "w1", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay %u at m%d failed: %s", units, m, err);
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	json_decref(r);
}

static json_t *channel_call(const char *method, const char *channel)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	return admin_ok(&net, "w1", method, params);
}

static const char *w1_state(const char *channel, char *out, size_t len)
{
	json_t *r = admin_ok(&net, "w1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	out[0] = 0;
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), channel))
			snprintf(out, len, "%s", json_str(json_array_get(list, i), "state"));
	json_decref(r);
	return out;
}

static bool w1_refunded(void *arg)
{
	char state[32];
	return !strcmp(w1_state(arg, state, sizeof(state)), "REFUNDED");
}

static json_t *broker_channel(const char *channel)
{
	return settle_channel(&net, channel);
}

static void expect_broker_state(const char *channel, const char *state)
{
	json_t *s = broker_channel(channel);
	ck_assert_str_eq(json_str(s, "state"), state);
	json_decref(s);
}

/* One blob of a store (DIR/<rel>) selected by channel id (and an integer, if the query has a
 * second parameter); malloc'd, NULL if no row. */
static uint8_t *store_blob(const char *rel, const char *sql, const uint8_t id[MP_ID_LEN], int col,
			   size_t *len)
{
	char path[700];
	net_path(&net, rel, path, sizeof(path));
	return store_row_blob(path, sql, id, MP_ID_LEN, 0, col, len);
}

/* What the test needs of w1's secrets for a channel it issued (segment 0): its chain and its
 * owner key, read from w1's store (opened exclusively by walletd: w1 is stopped for it and
 * started again, which also reloads its channels from the store). */
struct secrets {
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN];
	uint32_t n;
	struct mp_key owner;
};

static void copy_column(const uint8_t id[MP_ID_LEN], const char *column, uint8_t *out, size_t want)
{
	char sql[200];
	size_t len = 0;
	snprintf(sql, sizeof(sql), "SELECT %s FROM channels WHERE channel_id = ?1", column);
	uint8_t *b = store_blob("w1/wallet.db", sql, id, 0, &len);
	ck_assert_msg(b && len == want, "w1's store has no %s", column);
	memcpy(out, b, want);
	free(b);
}

static void w1_secrets(const uint8_t id[MP_ID_LEN], uint32_t n, struct secrets *sc)
{
	uint8_t owner_seed[MP_SK_LEN];
	ck_assert_int_eq(net_cmd(&net, "kill", "w1"), 0);
	copy_column(id, "chain_seed", sc->seed, MP_SEED_LEN);
	copy_column(id, "nonce", sc->nonce, MP_NONCE_LEN);
	copy_column(id, "owner_seed", owner_seed, MP_SK_LEN);
	ck_assert_int_eq(net_cmd(&net, "start", "w1"), 0);
	ck_assert(mp_key_from_seed(&sc->owner, owner_seed));
	sc->n = n;
}

/* The word at index j of that chain. */
static void w1_word(const struct secrets *sc, uint32_t j, uint8_t out[MP_HASH_LEN])
{
	struct mp_hasher *h = mp_hasher_new();
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, sc->seed, sc->nonce, top);
	mp_chain_walk(h, sc->nonce, sc->n, top, j, out);
	mp_hasher_free(h);
}

/* Handoff 1 of a channel as m2 received it. */
static MpSigned *m2_handoff1(const uint8_t id[MP_ID_LEN])
{
	size_t len = 0;
	uint8_t *b =
	    store_blob("m2/merchant.db",
		       "SELECT stmt FROM custody WHERE channel_id = ?1 AND hseq = 1", id, 0, &len);
	ck_assert_msg(b != NULL, "m2 has no Handoff 1");
	MpSigned *s = mp_stmt_decode(b, len);
	free(b);
	ck_assert(s != NULL);
	return s;
}

/* ---- statements built by the test ---- */

static MpSigned *sign_close(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t hseq,
			    uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)w};
	Micropay__V1__Close cl = MICROPAY__V1__CLOSE__INIT;
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	cl.hseq = hseq;
	cl.point = &pt;
	MpSigned *s = mp_stmt_sign(key, MP_STMT_CLOSE, &cl.base);
	ck_assert(s != NULL);
	return s;
}

/* A RefundRequest of w1's account carrying close (taken: freed here) and custody. */
static MpSigned *sign_refund(const struct mp_key *key, const uint8_t id[MP_ID_LEN], MpSigned *close,
			     MpSigned **custody, size_t n_custody)
{
	uint8_t refund_id[MP_ID_LEN], payout[MP_ID_LEN];
	ck_assert(mp_random_bytes(refund_id, MP_ID_LEN));
	hex_to_bytes(account, payout, MP_ID_LEN);
	Micropay__V1__RefundRequest rq = MICROPAY__V1__REFUND_REQUEST__INIT;
	rq.refund_id = (ProtobufCBinaryData){MP_ID_LEN, refund_id};
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	rq.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, payout};
	rq.close = close;
	rq.custody = custody;
	rq.n_custody = n_custody;
	MpSigned *s = mp_stmt_sign(key, MP_STMT_REFUND_REQUEST, &rq.base);
	ck_assert(s != NULL);
	mp_stmt_free(close); /* taken */
	return s;
}

/* Send a RefundReq as a wallet does; the answer's status (detail and evidence copied). */
static MpCode refund_call(MpSigned *stmt, char *detail, size_t len, MpSigned **evidence)
{
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	Micropay__V1__RefundReq req = MICROPAY__V1__REFUND_REQ__INIT;
	req.stmt = stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REFUND_REQ);
	env.refund_req = &req;
	ck_assert(wire_send(&w, &env)); /* whatever its size */
	MpEnvelope *e = wire_recv(&w);
	wire_close(&w);
	ck_assert(e && e->body_case == MP_BODY(REFUND_RESP) && e->refund_resp->status);
	MpCode code = e->refund_resp->status->code;
	snprintf(detail, len, "%s", e->refund_resp->status->detail);
	if (evidence)
		*evidence = e->refund_resp->status->evidence
				? mp_stmt_copy(e->refund_resp->status->evidence)
				: NULL;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* A Redeem by merchant m of one claim on epoch hseq_in at index j (the word of w1's chain), its
 * custody the given statements; the claim's status. */
static MpCode claim_at(int m, const uint8_t id[MP_ID_LEN], const struct secrets *sc,
		       uint32_t hseq_in, uint32_t j, MpSigned **custody, size_t n_custody)
{
	uint8_t word[MP_HASH_LEN], redeem_id[MP_ID_LEN];
	w1_word(sc, j, word);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = j;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Claim claim = MICROPAY__V1__CLAIM__INIT;
	claim.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	claim.hseq_in = hseq_in;
	claim.point = &pt;
	claim.custody = custody;
	claim.n_custody = n_custody;
	Micropay__V1__Claim *claims[1] = {&claim};
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, tm[m].mid};
	rd.claims = claims;
	rd.n_claims = 1;
	MpSigned *stmt = mp_stmt_sign(&tm[m].key, MP_STMT_REDEEM, &rd.base);
	ck_assert(stmt != NULL);
	struct wire w;
	tmerchant_connect(&tm[m], &w, broker_ep, ca);
	MpEnvelope *e = redeem_call(&w, stmt);
	wire_close(&w);
	ck_assert_int_eq(e->redeem_resp->n_results, 1);
	MpCode code = e->redeem_resp->results[0]->status;
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(stmt);
	return code;
}

/* The number of conflicts of a kind recorded for a channel against liable (NULL: anyone)
 * (admin conflicts). */
static int conflicts_against(const char *channel, const char *kind, const char *liable)
{
	json_t *r = admin_ok(&net, "broker", "conflicts", NULL);
	json_t *list = json_object_get(r, "conflicts");
	int count = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *c = json_array_get(list, i);
		count += !strcmp(json_str(c, "channel"), channel) &&
			 !strcmp(json_str(c, "kind"), kind) &&
			 (!liable || !strcmp(json_str(c, "liable"), liable));
	}
	json_decref(r);
	return count;
}

static int conflicts_of(const char *channel, const char *kind)
{
	return conflicts_against(channel, kind, NULL);
}

static void expect_refused(MpSigned *stmt, MpCode want, const char *what)
{
	char detail[300];
	MpCode got = refund_call(stmt, detail, sizeof(detail), NULL);
	ck_assert_msg(got == want, "%s: %s (%s), expected %s", what, mp_code_name(got), detail,
		      mp_code_name(want));
	mp_stmt_free(stmt);
}

/* ---- the tests ---- */

/* n = 100, unit_value = 3: 10 units at m1, a handoff to m2 at 10, 5 units there, close at m2 at
 * 15: the early refund is 85 * 3 = 255 at once; m1 (10 units) and m2 (5) are paid in full;
 * nothing is left for finalisation. Forgeries before the close change nothing. */
START_TEST(early_close_end_to_end)
{
	char channel[64], detail[300];
	uint8_t id[MP_ID_LEN], word[MP_HASH_LEN];
	net_fund(&net, account, 1000);
	issue(100, 3, channel, sizeof(channel));
	hex_to_bytes(channel, id, MP_ID_LEN);
	pay_at(channel, 1, 10, 3, 10);
	pay_at(channel, 2, 5, 3, 15); /* handoff to m2 at 10 */
	ck_assert_int_eq(net_balance(&net, account), 700);
	int64_t unclaimed0 = settle_unclaimed(&net);

	/* Forged and mismatched early refunds: typed errors, nothing changes. */
	struct secrets sc;
	struct mp_key stranger;
	uint8_t seed[MP_SK_LEN];
	w1_secrets(id, 100, &sc);
	const struct mp_key *owner = &sc.owner;
	ck_assert(mp_key_generate(&stranger, seed));
	MpSigned *h1 = m2_handoff1(id);
	MpSigned *custody[1] = {h1};
	w1_word(&sc, 15, word);
	expect_refused(sign_refund(owner, id, sign_close(&tm[1].key, id, 1, 15, word), custody, 1),
		       MP_ST(BAD_SIG), "a Close of epoch 1 signed by m1");
	expect_refused(
	    sign_refund(&stranger, id, sign_close(&tm[2].key, id, 1, 15, word), custody, 1),
	    MP_ST(BAD_SIG), "a RefundRequest signed by a stranger");
	expect_refused(sign_refund(owner, id, sign_close(&tm[2].key, id, 0, 15, word), custody, 1),
		       MP_ST(MALFORMED), "a Close naming another epoch");
	expect_refused(sign_refund(owner, id, sign_close(&tm[2].key, id, 1, 15, word), NULL, 0),
		       MP_ST(BAD_SIG), "a Close of m2 without the Handoff that made it holder");
	uint8_t wrong[MP_HASH_LEN];
	w1_word(&sc, 14, wrong);
	expect_refused(sign_refund(owner, id, sign_close(&tm[2].key, id, 1, 15, wrong), custody, 1),
		       MP_ST(BAD_CHAIN), "a Close whose w_final does not verify");
	expect_refused(sign_refund(owner, id, sign_close(&tm[2].key, id, 1, 5, word), custody, 1),
		       MP_ST(OUT_OF_RANGE), "a Close below the start of its epoch");
	MpSigned *not_close = sign_close(&tm[2].key, id, 1, 15, word);
	not_close->type = MP_STMT_HANDOFF;
	expect_refused(sign_refund(owner, id, not_close, custody, 1), MP_ST(MALFORMED),
		       "a close field that is not a Close");
	/* The size bound: MAX_HANDOFFS Handoffs fit (refused here by the chain's checks, not for
	 * its size); a body above 1 KiB + 257 * 512 bytes is refused before anything else. */
	MpSigned *many[MP_MAX_HANDOFFS];
	for (size_t i = 0; i < MP_MAX_HANDOFFS; i++)
		many[i] = h1;
	MpSigned *big =
	    sign_refund(owner, id, sign_close(&tm[2].key, id, MP_MAX_HANDOFFS, 15, word), many,
			MP_MAX_HANDOFFS);
	ck_assert_int_gt(big->body.len, 64 * 1024);
	MpCode code = refund_call(big, detail, sizeof(detail), NULL);
	ck_assert_msg(code != MP_ST(OK) && !strstr(detail, "too large"), "%s: %s",
		      mp_code_name(code), detail);
	uint8_t filler[1000] = {0};
	MpSigned fake = MICROPAY__V1__SIGNED__INIT;
	fake.type = MP_STMT_HANDOFF;
	fake.body = (ProtobufCBinaryData){sizeof(filler), filler};
	MpSigned *fakes[200];
	for (size_t i = 0; i < 200; i++)
		fakes[i] = &fake;
	MpSigned *huge =
	    sign_refund(owner, id, sign_close(&tm[2].key, id, 1, 15, word), fakes, 200);
	code = refund_call(huge, detail, sizeof(detail), NULL);
	ck_assert_msg(code == MP_ST(MALFORMED) && strstr(detail, "too large"), "%s: %s",
		      mp_code_name(code), detail);
	mp_stmt_free(big);
	mp_stmt_free(huge);
	expect_broker_state(channel, "OPEN");
	ck_assert_int_eq(net_balance(&net, account), 700);

	/* The close at m2: the wallet asks for the refund on its own, paid at once. */
	json_t *r = channel_call("close", channel);
	ck_assert_int_eq(json_int(r, "final_index"), 15);
	ck_assert_int_eq(json_int(r, "epoch"), 1);
	json_decref(r);
	ck_assert_msg(wait_for(w1_refunded, channel, 10000), "w1 got no early refund");
	ck_assert_int_eq(net_balance(&net, account), 700 + 255);
	json_t *s = broker_channel(channel);
	ck_assert_str_eq(json_str(s, "state"), "CLOSED_EARLY");
	ck_assert_int_eq(json_int(s, "close_index"), 15);
	ck_assert_int_eq(json_int(s, "early_refund"), 255);
	json_decref(s);
	json_t *bal = admin_ok(&net, "w1", "balance", NULL);
	ck_assert_int_eq(json_int(bal, "refunded"), 255);
	ck_assert_int_eq(json_int(bal, "pending_refunds"), 0);
	ck_assert_int_eq(json_int(bal, "spendable"), 0);
	json_decref(bal);

	/* m2 redeems its epoch; a late claim above final_index is refused and recorded. */
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 15);
	ck_assert_int_eq(claim_at(2, id, &sc, 1, 16, custody, 1), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(conflicts_of(channel, "claim_above_handoff"), 1);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 15);
	ck_assert_int_eq(claim_at(2, id, &sc, 1, 15, custody, 1), MP_ST(DUPLICATE_OK));

	/* m1 redeems after the close: its epoch (0, 10] is paid in full. */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 30);

	/* The refund asked again: DUPLICATE_OK, the same amount, nothing paid twice. */
	r = channel_call("refund", channel);
	ck_assert_str_eq(json_str(r, "broker_status"), "DUPLICATE_OK");
	ck_assert_int_eq(json_int(r, "refund"), 255);
	ck_assert_str_eq(json_str(r, "payout_account"), account);
	ck_assert_str_eq(json_str(r, "state"), "REFUNDED");
	json_decref(r);
	ck_assert_int_eq(net_balance(&net, account), 700 + 255);

	/* Another valid Close of the channel (m2 at 14): CONFLICT with the stored Close. */
	MpSigned *evidence = NULL;
	w1_word(&sc, 14, word);
	MpSigned *other =
	    sign_refund(owner, id, sign_close(&tm[2].key, id, 1, 14, word), custody, 1);
	ck_assert_int_eq(refund_call(other, detail, sizeof(detail), &evidence), MP_ST(CONFLICT));
	ck_assert_msg(evidence && evidence->type == MP_STMT_CLOSE, "no stored Close: %s", detail);
	mp_stmt_free(evidence);
	mp_stmt_free(other);
	ck_assert_int_eq(net_balance(&net, account), 700 + 255);
	s = broker_channel(channel);
	ck_assert_int_eq(json_int(s, "close_index"), 15);
	ck_assert_int_eq(json_int(s, "early_refund"), 255);
	json_decref(s);
	net_audit_clean(&net);

	/* Finalisation pays only what is left: nothing; the merchants' credit becomes available. */
	s = broker_channel(channel);
	settle_advance_to(&net, (uint64_t)json_int(s, "finalize_at"));
	json_decref(s);
	json_decref(settle_sweep(&net));
	settle_expect_finalized(&net, channel, 15, 0, 0, 45);
	ck_assert_int_eq(net_balance(&net, account), 1000 - 300 + 255);
	ck_assert_int_eq(net_balance(&net, tm[1].mid_hex), 30);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 0);
	ck_assert_int_eq(net_balance(&net, tm[2].mid_hex), 15);
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 0);
	ck_assert_int_eq(settle_unclaimed(&net) - unclaimed0, 0);
	r = channel_call("refund", channel); /* still the stored result */
	ck_assert_str_eq(json_str(r, "broker_status"), "DUPLICATE_OK");
	ck_assert_int_eq(json_int(r, "refund"), 255);
	json_decref(r);
	ck_assert_int_eq(net_balance(&net, account), 1000 - 300 + 255);

	mp_stmt_free(h1);
	mp_key_free(&sc.owner);
	mp_key_free(&stranger);
	net_audit_clean(&net);
}
END_TEST

/* The broker is down when the wallet closes at m1: the RefundRequest (replacing the one without
 * a Close that got TOO_EARLY before) stays stored and is retried with backoff; once brokerd is
 * back the refund is paid, once. */
START_TEST(wallet_retries_the_early_refund_until_answered)
{
	char channel[64], state[32];
	net_fund(&net, account, 40);
	issue(20, 2, channel, sizeof(channel));
	pay_at(channel, 1, 6, 2, 6);
	/* a refund asked before the close: TOO_EARLY, its request (without a Close) stored */
	json_t *early = channel_call("refund", channel);
	ck_assert_str_eq(json_str(early, "broker_status"), "TOO_EARLY");
	json_decref(early);
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	json_t *r = channel_call("close", channel);
	ck_assert_int_eq(json_int(r, "final_index"), 6);
	json_decref(r);
	usleep(2500 * 1000); /* a few tries */
	ck_assert_str_eq(w1_state(channel, state, sizeof(state)), "REFUND_PENDING");
	ck_assert(log_contains(&net, "w1", "refund request not answered"));
	json_t *bal = admin_ok(&net, "w1", "balance", NULL);
	ck_assert_int_eq(json_int(bal, "pending_refunds"), 28);
	ck_assert_int_eq(json_int(bal, "refunded"), 0);
	json_decref(bal);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	ck_assert_msg(wait_for(w1_refunded, channel, 70000), "w1 did not retry its refund");
	ck_assert_int_eq(net_balance(&net, account), 28);
	bal = admin_ok(&net, "w1", "balance", NULL);
	ck_assert_int_eq(json_int(bal, "pending_refunds"), 0);
	ck_assert_int_eq(json_int(bal, "refunded"), 28);
	json_decref(bal);
	expect_broker_state(channel, "CLOSED_EARLY");
	net_audit_clean(&net);
}
END_TEST

/* A Close by a merchant that had already handed the channel on is void (protocol.md section 7:
 * a Close of epoch h and its signer's Handoff h+1 are never consistent), whichever of the two
 * the broker learns first; the conflict names the signer; honest holders are paid in full and
 * the refund is never reduced (docs/close.md "A Close after a Handoff"). Three channels of
 * n = 100, unit_value 3, each paid 10 units at m1, then 5 at m2 after a handoff at 10:
 * - C: the wallet closes at m2 before anyone redeemed: its RefundRequest's Handoff 1 is stored
 *   as custody (epoch 1 of m2 from 10), so m1's claim at 12 that leaves it out is refused
 *   (OUT_OF_RANGE, omitted_custody against m1) instead of credited below the Close at 15;
 * - B: the customer and m1 forge m1's Close of epoch 0 at 10 while the broker knows no
 *   Handoff: the refund 90 * 3 = 270 is paid. m1's Redeem then brings Handoff 1: the Close is
 *   void (close_after_handoff against m1, close_index gone); m2's 5 units are credited, 15
 *   taken from m1's pending credit; finalisation pays nothing more (refund 0, unclaimed 0);
 * - A: the same forged Close after the broker stored Handoff 1: HANDED_OFF, the conflict
 *   against m1, nothing paid; the wallet's own close at m2 then gets 85 * 3 = 255.
 * At the end customer 255 + 270 + 255 back, m1 30 + 30 + 30 - 15, m2 3 * 15: nothing made or
 * lost. */
START_TEST(close_after_handoff_is_void)
{
	char ch[3][64], detail[300];
	uint8_t id[3][MP_ID_LEN], word[MP_HASH_LEN];
	struct secrets sc[3];
	enum { A, B, C };
	net_fund(&net, account, 900);
	for (int k = A; k <= C; k++) {
		issue(100, 3, ch[k], sizeof(ch[k]));
		hex_to_bytes(ch[k], id[k], MP_ID_LEN);
		pay_at(ch[k], 1, 10, 3, 10);
		pay_at(ch[k], 2, 5, 3, 15); /* handoff to m2 at 10 */
		w1_secrets(id[k], 100, &sc[k]);
	}

	/* C: the honest close; the broker stores the Handoff its RefundRequest carries. */
	json_decref(channel_call("close", ch[C]));
	ck_assert_msg(wait_for(w1_refunded, ch[C], 10000), "w1 got no early refund");
	ck_assert_int_eq(net_balance(&net, account), 255);
	char *stored = sql_value(&net,
				 "SELECT count(*) || ' ' || min(e.start_index) FROM handoffs h"
				 " JOIN epochs e ON e.channel_id = h.channel_id AND e.hseq = 1"
				 " WHERE h.channel_id = '\\x%s' AND h.hseq = 1",
				 ch[C]);
	ck_assert_str_eq(stored, "1 10");
	free(stored);
	ck_assert_int_eq(claim_at(1, id[C], &sc[C], 0, 12, NULL, 0), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(conflicts_against(ch[C], "omitted_custody", tm[1].mid_hex), 1);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 0);

	/* B: m1's Close of epoch 0 at 10, the Handoff unknown to the broker: paid. */
	w1_word(&sc[B], 10, word);
	MpSigned *forged =
	    sign_refund(&sc[B].owner, id[B], sign_close(&tm[1].key, id[B], 0, 10, word), NULL, 0);
	ck_assert_int_eq(refund_call(forged, detail, sizeof(detail), NULL), MP_ST(OK));
	mp_stmt_free(forged);
	ck_assert_int_eq(net_balance(&net, account), 255 + 270);
	json_t *s = broker_channel(ch[B]);
	ck_assert_str_eq(json_str(s, "state"), "CLOSED_EARLY");
	ck_assert_int_eq(json_int(s, "close_index"), 10);
	json_decref(s);
	net_audit_clean(&net);
	/* m1 redeems (its custody carries Handoff 1 of each channel): B's Close is void. */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 90);
	ck_assert_int_eq(conflicts_against(ch[B], "close_after_handoff", tm[1].mid_hex), 1);
	ck_assert_int_eq(conflicts_of(ch[B], "close_after_handoff"), 1);
	s = broker_channel(ch[B]);
	ck_assert_str_eq(json_str(s, "state"), "CLOSED_EARLY");
	ck_assert(json_is_null(json_object_get(s, "close_index")));
	ck_assert_int_eq(json_int(s, "early_refund"), 270);
	json_decref(s);
	/* m2, the honest successor, is paid its 5 units of every channel; B's from m1. */
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, tm[2].mid_hex), 45);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex), 90 - 15);
	net_audit_clean(&net);

	/* A: the same forgery once the broker stored Handoff 1: void at once, nothing paid. */
	w1_word(&sc[A], 10, word);
	forged =
	    sign_refund(&sc[A].owner, id[A], sign_close(&tm[1].key, id[A], 0, 10, word), NULL, 0);
	ck_assert_int_eq(refund_call(forged, detail, sizeof(detail), NULL), MP_ST(HANDED_OFF));
	mp_stmt_free(forged);
	ck_assert_int_eq(conflicts_against(ch[A], "close_after_handoff", tm[1].mid_hex), 1);
	expect_broker_state(ch[A], "OPEN");
	ck_assert_int_eq(net_balance(&net, account), 255 + 270);
	json_decref(channel_call("close", ch[A]));
	ck_assert_msg(wait_for(w1_refunded, ch[A], 10000), "w1 got no early refund");
	ck_assert_int_eq(net_balance(&net, account), 255 + 270 + 255);
	net_audit_clean(&net);

	/* Finalisation pays nothing more; everyone's share is exact. */
	uint64_t last = 0;
	for (int k = A; k <= C; k++) {
		s = broker_channel(ch[k]);
		if ((uint64_t)json_int(s, "finalize_at") > last)
			last = (uint64_t)json_int(s, "finalize_at");
		json_decref(s);
	}
	settle_advance_to(&net, last);
	json_decref(settle_sweep(&net));
	for (int k = A; k <= C; k++) {
		settle_expect_finalized(&net, ch[k], 15, 0, 0, 45);
		mp_key_free(&sc[k].owner);
	}
	ck_assert_int_eq(net_balance(&net, account), 255 + 270 + 255);
	ck_assert_int_eq(net_balance(&net, tm[1].mid_hex), 90 - 15);
	ck_assert_int_eq(net_balance(&net, tm[2].mid_hex), 45);
	ck_assert_int_eq(net_pending(&net, tm[1].mid_hex) + net_pending(&net, tm[2].mid_hex), 0);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("early_refund");
	TCase *tc = tcase_create("early_refund");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, early_close_end_to_end);
	tcase_add_test(tc, wallet_retries_the_early_refund_until_answered);
	tcase_add_test(tc, close_after_handoff_is_void);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
