/* Two brokerd processes over one PostgreSQL (`mpnet broker DIR b2`: the same key, certificate
 * and database, its own port and admin socket), behind the same clients (docs/operations.md
 * "Several brokerd processes"):
 * two_brokers_issue_redeem_and_sweep, in three steps:
 * - a wallet issues channels at either broker, each IssueRequest
 *   sent again to the other broker is DUPLICATE_OK with the same ChannelCert; a merchant sends
 *   the same Redeem to both at once: both answer the same results and the money is credited
 *   once;
 * - after the channels' deadline both brokers run a sweep at the same time;
 *   every channel is finalised exactly once (the two sweeps' counts add up to the channels,
 *   one refund transfer each) and the customer gets each refund once.
 * After the redeems and after the sweeps the audit is clean, asked of each broker. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_settle.h"
#include "../check_run.h"

#define CHANNELS 40
#define UNITS	 20
#define REDEEMED 7

static struct net net;
static struct tmerchant m1;
static char ca[700], ep_a[128], ep_b[128];
static struct twallet tw;
static char tw_hex[MP_HEX_ID_LEN + 1];
static struct tchannel ch[CHANNELS];

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1);
	setenv("MP_SWEEP_BATCH", "5", 1); /* many short batches: the two sweeps interleave */
	net_up(&net);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_SWEEP_BATCH");
	ck_assert_int_eq(net_cmd(&net, "broker", "b2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", ep_a, sizeof(ep_a));
	net_read(&net, "b2", "endpoint", ep_b, sizeof(ep_b));
	ck_assert_str_ne(ep_a, ep_b);
	tmerchant_load(&m1, &net, "m1");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	net_down(&net);
}

/* The audit of each broker is clean. */
static void audits_clean(void)
{
	net_audit_clean(&net);
	json_t *a = admin_ok(&net, "b2", "audit", NULL);
	ck_assert(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
}

static bool same_stmt(const MpSigned *x, const MpSigned *y)
{
	size_t lx, ly;
	uint8_t *bx = mp_stmt_encode(x, &lx), *by = mp_stmt_encode(y, &ly);
	bool same = bx && by && lx == ly && memcmp(bx, by, lx) == 0;
	free(bx);
	free(by);
	return same;
}

/* Send env on both connections, then read both answers (caller frees them). */
static void call_both(struct wire *a, struct wire *b, MpEnvelope *env, MpEnvelope **ra,
		      MpEnvelope **rb)
{
	ck_assert(wire_send(a, env));
	ck_assert(wire_send(b, env));
	*ra = wire_recv(a);
	*rb = wire_recv(b);
	ck_assert(*ra && *rb);
}

/* Issue every channel at one broker, then the same IssueRequest at the other. */
static void issue_at_both(void)
{
	struct wire wa, wb;
	ck_assert(wire_connect(&wa, ep_a, ca, NULL, NULL));
	ck_assert(wire_connect(&wb, ep_b, ca, NULL, NULL));
	twallet_register(&tw, &wb);
	mp_hex_encode(tw.account_id, MP_ID_LEN, tw_hex);
	net_fund(&net, tw_hex, (uint64_t)CHANNELS * UNITS);
	for (size_t i = 0; i < CHANNELS; i++) {
		struct wire *first = i % 2 ? &wb : &wa, *other = i % 2 ? &wa : &wb;
		tchannel_make(&ch[i], &tw, UNITS, 1, m1.mid);
		ck_assert_int_eq(tchannel_issue(&ch[i], first), MP_ST(OK));
		MpSigned *cert = mp_stmt_copy(ch[i].cert);
		ck_assert_int_eq(tchannel_issue(&ch[i], other), MP_ST(DUPLICATE_OK));
		ck_assert_msg(same_stmt(cert, ch[i].cert), "channel %zu: another cert", i);
		mp_stmt_free(cert);
	}
	ck_assert_int_eq(net_balance(&net, tw_hex), 0);
	wire_close(&wa);
	wire_close(&wb);
}

/* The same Redeem of index REDEEMED of every channel to both brokers at once. */
static void redeem_at_both(void)
{
	struct tclaim claims[CHANNELS];
	for (size_t i = 0; i < CHANNELS; i++) {
		tchannel_id(&ch[i], claims[i].channel_id);
		claims[i].index = REDEEMED;
		tchannel_word(&ch[i], REDEEMED, claims[i].w);
	}
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	MpSigned *stmt = tmerchant_redeem(&m1, redeem_id, claims, CHANNELS);
	struct wire ma, mb;
	tmerchant_connect(&m1, &ma, ep_a, ca);
	tmerchant_connect(&m1, &mb, ep_b, ca);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	MpEnvelope *ra, *rb;
	call_both(&ma, &mb, &env, &ra, &rb);
	ck_assert(ra->body_case == MP_BODY(REDEEM_RESP) && rb->body_case == MP_BODY(REDEEM_RESP));
	ck_assert_uint_eq(ra->redeem_resp->n_results, CHANNELS);
	ck_assert_uint_eq(rb->redeem_resp->n_results, CHANNELS);
	for (size_t i = 0; i < CHANNELS; i++) {
		MpCode a = ra->redeem_resp->results[i]->status,
		       b = rb->redeem_resp->results[i]->status;
		ck_assert_msg((a == MP_ST(OK) || a == MP_ST(DUPLICATE_OK)) &&
				  (b == MP_ST(OK) || b == MP_ST(DUPLICATE_OK)),
			      "claim %zu: %s and %s", i, mp_code_name(a), mp_code_name(b));
	}
	micropay__v1__envelope__free_unpacked(ra, NULL);
	micropay__v1__envelope__free_unpacked(rb, NULL);
	wire_close(&ma);
	wire_close(&mb);
	mp_stmt_free(stmt);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), (int64_t)CHANNELS * REDEEMED);
	char *n = sql_value(&net, "SELECT count(*) FROM transfers WHERE kind = 'redeem'");
	ck_assert_int_eq(atoi(n), CHANNELS);
	free(n);
	audits_clean();
}

static void *sweep_b2(void *arg)
{
	return admin_ok(&net, "b2", "sweep.run", NULL);
}

/* Past the channels' deadline, a sweep on both brokers at the same time. */
static void sweep_at_both(void)
{
	char hex[MP_HEX_ID_LEN + 1];
	uint8_t id[MP_ID_LEN];
	tchannel_id(&ch[0], id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *s = settle_channel(&net, hex);
	settle_advance_to(&net, (uint64_t)json_int(s, "finalize_at") + 1);
	json_t *c = admin_ok(&net, "b2", "clock.show", NULL);
	ck_assert_int_ge(json_int(c, "now"), json_int(s, "finalize_at") + 1);
	json_decref(c);
	json_decref(s);

	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, sweep_b2, NULL), 0);
	json_t *sa = settle_sweep(&net);
	json_t *sb = NULL;
	ck_assert_int_eq(pthread_join(t, (void **)&sb), 0);
	ck_assert(sb != NULL);
	int64_t fa = json_int(sa, "finalized"), fb = json_int(sb, "finalized");
	fprintf(stderr, "sweeps at once: broker finalised %lld, b2 %lld\n", (long long)fa,
		(long long)fb);
	ck_assert_int_eq(fa + fb, CHANNELS);
	ck_assert_int_eq(json_int(sa, "failures") + json_int(sb, "failures"), 0);
	json_decref(sa);
	json_decref(sb);
	for (size_t i = 0; i < CHANNELS; i++) {
		tchannel_id(&ch[i], id);
		mp_hex_encode(id, MP_ID_LEN, hex);
		settle_expect_finalized(&net, hex, REDEEMED, UNITS - REDEEMED, 0, REDEEMED);
	}
	char *n = sql_value(&net, "SELECT count(*) FROM transfers WHERE kind = 'refund'");
	ck_assert_int_eq(atoi(n), CHANNELS);
	free(n);
	ck_assert_int_eq(net_balance(&net, tw_hex), (int64_t)CHANNELS * (UNITS - REDEEMED));
	audits_clean();
}

START_TEST(two_brokers_issue_redeem_and_sweep)
{
	issue_at_both();
	redeem_at_both();
	sweep_at_both();
	for (size_t i = 0; i < CHANNELS; i++)
		tchannel_free(&ch[i]);
}
END_TEST

static Suite *two_brokers_suite(void)
{
	Suite *s = suite_create("two_brokers");
	TCase *tc = tcase_create("two_brokers");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, two_brokers_issue_redeem_and_sweep);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(two_brokers_suite());
}
