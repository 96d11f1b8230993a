/* The broker's side of settlement byte by byte (docs/settlement.md), with the test clock: a
 * test wallet and a test merchant (m1's own key and certificate) speak the wire protocol.
 * - refund_request_checks: RefundReq under a stranger's key (BAD_SIG), for a segment that is
 *   not the last (STALE_SEGMENT), with a Close (MALFORMED), for an unknown channel, TOO_EARLY
 *   under the owner key and the issuing account key; after finalisation the result, the same
 *   request again DUPLICATE_OK, its refund_id with other bytes CONFLICT with the stored one.
 * - redeem_races_finalisation: a Redeem sent while the sweep finalises the same channels;
 *   each claim is either credited before the refund was computed or TOO_LATE after it, never
 *   both, and the money matches that order exactly.
 * - sigkill_during_sweep: brokerd killed with SIGKILL in the middle of a sweep of hundreds of
 *   channels, restarted: the sweep completes, nothing is finalised or paid twice.
 * Every test ends with the broker's audit. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_merchant.h"
#include "harness_redeem.h"
#include "harness_ledger.h"
#include "harness_settle.h"
#include "../check_run.h"

static struct net net;
static struct tmerchant m1;
static char ca[700], broker_ep[128];
static struct wire wb; /* the test wallet's connection to the broker */
static struct twallet tw;
static char tw_hex[MP_HEX_ID_LEN + 1];

static void setup_with(const char *sweep_interval)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", sweep_interval, 1);
	setenv("MP_SWEEP_BATCH", "10", 1);
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_SWEEP_BATCH");
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	tmerchant_load(&m1, &net, "m1");
	ck_assert(wire_connect(&wb, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &wb);
	mp_hex_encode(tw.account_id, MP_ID_LEN, tw_hex);
}

static void setup_net(void)
{
	setup_with("3600");
}

static void setup_net_timer(void)
{
	setup_with("1");
}

static void teardown_net(void)
{
	wire_close(&wb);
	tmerchant_free(&m1);
	net_down(&net);
}

static void issue_channels(struct tchannel *chs, size_t k, uint32_t n)
{
	net_fund(&net, tw_hex, (uint64_t)k * n);
	for (size_t i = 0; i < k; i++) {
		tchannel_make(&chs[i], &tw, n, 1, m1.mid);
		ck_assert_int_eq(tchannel_issue(&chs[i], &wb), MP_ST(OK));
	}
}

static void channel_hex(const struct tchannel *ch, char out[MP_HEX_ID_LEN + 1])
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(ch, id);
	mp_hex_encode(id, MP_ID_LEN, out);
}

static uint64_t finalize_at(const struct tchannel *ch)
{
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(ch, hex);
	json_t *s = settle_channel(&net, hex);
	uint64_t t = (uint64_t)json_int(s, "finalize_at");
	json_decref(s);
	return t;
}

/* A Redeem by m1 of index j of each channel (epoch 0, segment 0). */
static MpSigned *redeem_of(const struct tchannel *chs, size_t k, uint32_t j)
{
	struct tclaim *claims = calloc(k, sizeof(*claims));
	ck_assert(claims != NULL);
	for (size_t i = 0; i < k; i++) {
		tchannel_id(&chs[i], claims[i].channel_id);
		claims[i].index = j;
		tchannel_word(&chs[i], j, claims[i].w);
	}
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpSigned *s = tmerchant_redeem(&m1, redeem_id, claims, k);
	free(claims);
	return s;
}

/* ---- RefundReq at the wire ---- */

/* A RefundRequest for channel id (16 bytes) signed with key. */
static MpSigned *refund_stmt(const struct mp_key *key, const uint8_t *id,
			     const uint8_t refund_id[MP_ID_LEN], uint32_t seg_seq,
			     const uint8_t *payout, bool with_close)
{
	Micropay__V1__RefundRequest rq = MICROPAY__V1__REFUND_REQUEST__INIT;
	rq.refund_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)refund_id};
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	rq.seg_seq = seg_seq;
	if (payout)
		rq.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)payout};
	MpSigned *close = NULL;
	if (with_close) {
		Micropay__V1__Close c = MICROPAY__V1__CLOSE__INIT;
		c.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
		close = mp_stmt_sign(key, MP_STMT_CLOSE, &c.base);
		rq.close = close;
	}
	MpSigned *s = mp_stmt_sign(key, MP_STMT_REFUND_REQUEST, &rq.base);
	mp_stmt_free(close);
	ck_assert(s != NULL);
	return s;
}

/* Send the RefundReq; the answer (caller frees). */
static MpEnvelope *refund_call(const MpSigned *stmt)
{
	Micropay__V1__RefundReq req = MICROPAY__V1__REFUND_REQ__INIT;
	req.stmt = (MpSigned *)stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REFUND_REQ);
	env.refund_req = &req;
	MpEnvelope *resp = wire_call(&wb, &env);
	ck_assert_msg(resp && resp->body_case == MP_BODY(REFUND_RESP), "no RefundResp");
	return resp;
}

static MpCode refund_code(const MpSigned *stmt)
{
	MpEnvelope *r = refund_call(stmt);
	MpCode code = r->refund_resp->status->code;
	micropay__v1__envelope__free_unpacked(r, NULL);
	return code;
}

START_TEST(refund_request_checks)
{
	struct tchannel ch[2];
	issue_channels(ch, 2, 10);
	uint8_t id0[MP_ID_LEN], unknown_id[MP_ID_LEN];
	tchannel_id(&ch[0], id0);
	ck_assert(mp_random_bytes(unknown_id, MP_ID_LEN));
	uint8_t rid[MP_ID_LEN], rid2[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN) && mp_random_bytes(rid2, MP_ID_LEN));
	struct mp_key stranger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&stranger, seed));

	MpSigned *s = refund_stmt(&stranger, id0, rid, 0, NULL, false);
	ck_assert_int_eq(refund_code(s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	s = refund_stmt(&ch[0].owner, id0, rid, 1, NULL, false);
	ck_assert_int_eq(refund_code(s), MP_ST(STALE_SEGMENT));
	mp_stmt_free(s);
	s = refund_stmt(&ch[0].owner, id0, rid, 0, NULL, true); /* a Close not by the holder */
	ck_assert_int_eq(refund_code(s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	s = refund_stmt(&ch[1].owner, id0, rid, 0, NULL, false); /* another channel's owner */
	ck_assert_int_eq(refund_code(s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	s = refund_stmt(&ch[0].owner, unknown_id, rid, 0, NULL, false); /* never issued */
	ck_assert_int_eq(refund_code(s), MP_ST(UNKNOWN_CHANNEL));
	mp_stmt_free(s);

	/* Before finalisation: TOO_EARLY under the owner key and under the account key. */
	uint64_t fin = finalize_at(&ch[0]);
	s = refund_stmt(&tw.account, id0, rid, 0, NULL, false);
	MpEnvelope *r = refund_call(s);
	ck_assert_int_eq(r->refund_resp->status->code, MP_ST(TOO_EARLY));
	ck_assert_uint_eq(r->refund_resp->not_before, fin);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(s);
	MpSigned *owner_req = refund_stmt(&ch[0].owner, id0, rid, 0, NULL, false);
	ck_assert_int_eq(refund_code(owner_req), MP_ST(TOO_EARLY));

	int64_t before = net_balance(&net, tw_hex);
	settle_advance_to(&net, fin);
	json_decref(settle_sweep(&net));
	ck_assert_int_eq(net_balance(&net, tw_hex) - before, 20); /* both refunded */

	/* The same request now: the result; again: DUPLICATE_OK; refund_id reused: CONFLICT. */
	r = refund_call(owner_req);
	ck_assert_int_eq(r->refund_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->refund_resp->refund, 10);
	ck_assert_uint_eq(r->refund_resp->spent, 0);
	ck_assert_uint_eq(r->refund_resp->payout_account_id.len, MP_ID_LEN);
	ck_assert(memcmp(r->refund_resp->payout_account_id.data, tw.account_id, MP_ID_LEN) == 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	ck_assert_int_eq(refund_code(owner_req), MP_ST(DUPLICATE_OK));
	s = refund_stmt(&ch[0].owner, id0, rid, 0, tw.account_id, false);
	r = refund_call(s);
	ck_assert_int_eq(r->refund_resp->status->code, MP_ST(CONFLICT));
	ck_assert(r->refund_resp->status->evidence != NULL);
	ck_assert(r->refund_resp->status->evidence->body.len == owner_req->body.len &&
		  memcmp(r->refund_resp->status->evidence->body.data, owner_req->body.data,
			 owner_req->body.len) == 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(s);
	s = refund_stmt(&tw.account, id0, rid2, 0, NULL, false); /* a second request */
	ck_assert_int_eq(refund_code(s), MP_ST(DUPLICATE_OK));
	mp_stmt_free(s);
	mp_stmt_free(owner_req);
	ck_assert_int_eq(net_balance(&net, tw_hex) - before, 20); /* nothing paid again */
	mp_key_free(&stranger);
	for (int i = 0; i < 2; i++)
		tchannel_free(&ch[i]);
	net_audit_clean(&net);
}
END_TEST

/* ---- a Redeem racing the sweep ---- */

#define RACE_CHANNELS 40
#define RACE_INDEX    4
#define RACE_ROUNDS   6

/* One round: returns the number of claims credited before finalisation (the rest TOO_LATE),
 * after checking each channel's finalisation and the money against that order. */
static unsigned race_round(void)
{
	struct tchannel ch[RACE_CHANNELS];
	issue_channels(ch, RACE_CHANNELS, 10);
	settle_advance_to(&net, finalize_at(&ch[0]));
	MpSigned *rd = redeem_of(ch, RACE_CHANNELS, RACE_INDEX);
	int64_t cust0 = net_balance(&net, tw_hex);
	int64_t avail0 = net_balance(&net, m1.mid_hex);

	struct wire wm;
	tmerchant_connect(&m1, &wm, broker_ep, ca);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = rd;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	ck_assert(wire_send(&wm, &env));
	json_t *sw = settle_sweep(&net); /* finalises the due channels while the Redeem runs */
	MpEnvelope *resp = wire_recv(&wm);
	ck_assert(resp && resp->body_case == MP_BODY(REDEEM_RESP));
	ck_assert_uint_eq(resp->redeem_resp->n_results, RACE_CHANNELS);
	json_decref(sw);
	json_decref(settle_sweep(&net)); /* whatever the first pass had not reached yet */

	unsigned credited = 0;
	for (size_t i = 0; i < RACE_CHANNELS; i++) {
		MpCode code = resp->redeem_resp->results[i]->status;
		ck_assert_msg(code == MP_ST(OK) || code == MP_ST(TOO_LATE), "claim %zu: %s", i,
			      mp_code_name(code));
		char hex[MP_HEX_ID_LEN + 1];
		channel_hex(&ch[i], hex);
		json_t *s = settle_channel(&net, hex);
		ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
		json_t *f = json_object_get(s, "finalization");
		bool ok = code == MP_ST(OK);
		credited += ok;
		ck_assert_int_eq(json_int(f, "spent"), ok ? RACE_INDEX : 0);
		ck_assert_int_eq(json_int(f, "credited"), ok ? RACE_INDEX : 0);
		ck_assert_int_eq(json_int(f, "refund"), ok ? 10 - RACE_INDEX : 10);
		json_decref(s);
	}
	ck_assert_int_eq(net_balance(&net, m1.mid_hex) - avail0, (int64_t)credited * RACE_INDEX);
	ck_assert_int_eq(net_balance(&net, tw_hex) - cust0,
			 (int64_t)credited * (10 - RACE_INDEX) +
			     (int64_t)(RACE_CHANNELS - credited) * 10);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&wm);
	mp_stmt_free(rd);
	for (size_t i = 0; i < RACE_CHANNELS; i++)
		tchannel_free(&ch[i]);
	return credited;
}

START_TEST(redeem_races_finalisation)
{
	bool saw_credit = false, saw_late = false;
	for (int round = 0; round < RACE_ROUNDS && !(saw_credit && saw_late); round++) {
		unsigned credited = race_round();
		fprintf(stderr, "race round %d: %u of %d claims credited before finalisation\n",
			round, credited, RACE_CHANNELS);
		saw_credit = saw_credit || credited > 0;
		saw_late = saw_late || credited < RACE_CHANNELS;
		net_audit_clean(&net);
	}
	if (!(saw_credit && saw_late))
		fprintf(stderr, "race: only one order was seen (credited first: %d)\n", saw_credit);
	net_audit_clean(&net);
}
END_TEST

/* ---- SIGKILL in the middle of a sweep ---- */

#define KILL_CHANNELS 500
#define KILL_REDEEMED 100
#define KILL_INDEX    3

static int64_t finalized_count(void)
{
	char *v = sql_value(&net, "SELECT count(*) FROM channels WHERE state = 'FINALIZED'");
	int64_t c = atoll(v);
	free(v);
	return c;
}

static bool all_finalized(void *arg)
{
	return finalized_count() == KILL_CHANNELS;
}

START_TEST(sigkill_during_sweep)
{
	static struct tchannel ch[KILL_CHANNELS];
	int64_t cust0 = net_balance(&net, tw_hex);
	issue_channels(ch, KILL_CHANNELS, 10);
	struct wire wm;
	tmerchant_connect(&m1, &wm, broker_ep, ca);
	MpSigned *rd = redeem_of(ch, KILL_REDEEMED, KILL_INDEX);
	micropay__v1__envelope__free_unpacked(redeem_call(&wm, rd), NULL);
	mp_stmt_free(rd);
	wire_close(&wm);
	uint64_t fin = finalize_at(&ch[0]);
	for (size_t i = 1; i < KILL_CHANNELS; i++)
		ck_assert_uint_le(finalize_at(&ch[i]), fin + 3600);

	/* The sweep timer (every second) starts a pass; kill brokerd as soon as it has begun. */
	settle_advance_to(&net, fin + 3600);
	uint64_t t0 = now_ms();
	while (finalized_count() == 0 && now_ms() - t0 < 20000)
		usleep(5000);
	ck_assert_int_eq(net_cmd(&net, "kill", "broker KILL"), 0);
	int64_t at_kill = finalized_count();
	fprintf(stderr, "sigkill: %lld of %d channels finalised when brokerd was killed\n",
		(long long)at_kill, KILL_CHANNELS);
	ck_assert_int_gt(at_kill, 0);
	ck_assert_int_lt(at_kill, KILL_CHANNELS);
	char *half = sql_value(&net, "SELECT count(*) FROM finalizations");
	ck_assert_int_eq(atoll(half), at_kill); /* each step all or nothing */
	free(half);

	/* Restarted (its clock offset starts at 0 again): the sweep completes the rest. */
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	wire_close(&wb);
	ck_assert(wire_connect(&wb, broker_ep, ca, NULL, NULL));
	settle_advance_to(&net, fin + 3600);
	ck_assert_msg(wait_for(all_finalized, NULL, 60000), "the sweep did not complete");
	ck_assert_int_eq(metric(&net, "broker", "micropay_broker_sweep_channels_finalized_total"),
			 KILL_CHANNELS - at_kill);
	char *refunds = sql_value(&net, "SELECT count(*) FROM transfers WHERE kind = 'refund'");
	ck_assert_int_eq(atoll(refunds), KILL_CHANNELS);
	free(refunds);
	/* Every unit not credited came back once: of what was funded for the escrows, the
	 * customer lost exactly what m1 earned. */
	ck_assert_int_eq(net_balance(&net, tw_hex) - cust0,
			 (int64_t)KILL_CHANNELS * 10 - (int64_t)KILL_REDEEMED * KILL_INDEX);
	ck_assert_int_eq(net_balance(&net, m1.mid_hex), KILL_REDEEMED * KILL_INDEX);
	json_decref(settle_sweep(&net));
	ck_assert_int_eq(finalized_count(), KILL_CHANNELS);
	for (size_t i = 0; i < KILL_CHANNELS; i++)
		tchannel_free(&ch[i]);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("settlement_sweep");
	TCase *tc = tcase_create("on demand");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, refund_request_checks);
	tcase_add_test(tc, redeem_races_finalisation);
	suite_add_tcase(s, tc);
	TCase *tk = tcase_create("timer");
	tcase_set_timeout(tk, 300);
	tcase_add_checked_fixture(tk, setup_net_timer, teardown_net);
	tcase_add_test(tk, sigkill_during_sweep);
	suite_add_tcase(s, tk);
	return mp_check_run(s);
}
