/* Hostile servers against a daemon acting as a client (docs/adversarial.md, "Hostile
 * servers"): walletd pays at a server that presents m1's own certificate (a merchant gone bad:
 * the wallet cannot tell it from m1) or m2's. The server answers the Open honestly (a point of
 * the wallet's own chain: the root, from the ChannelCert it was sent) and then the Pay with
 * silence, a trickled frame, replays of its earlier answer, an answer of the wrong type,
 * garbage, an oversized frame or half a frame. Each time walletd fails the pay with a clear
 * error (the Pay stays in flight), keeps serving (a payment at the real m1 on another channel
 * goes through while the hostile one is stuck), and the next pay at the real m1 resends the
 * in-flight Pay and is acknowledged. walletd's memory stays bounded; the audit is clean. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "harness_hostile.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "../check_run.h"

#define WALLET_IDLE_S 3 /* walletd's idle_timeout here: the deadline of each Pay's answer */

static struct net net;
static struct tmerchant m1, m2;
static char m1_ep[128], account[64];
static char other_ch[64]; /* at m1: paid honestly while a hostile server holds another */

static void setup_net(void)
{
	char idle[16];
	snprintf(idle, sizeof(idle), "%d", WALLET_IDLE_S);
	setenv("MP_WALLET_IDLE_TIMEOUT", idle, 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
	net_fund(&net, account, 1000);
	net_wallet_issue(&net, "w1", m1.mid_hex, 100, 1, other_ch, sizeof(other_ch));
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	net_down(&net);
}

/* ---- the hostile merchant's honest-looking answers ---- */

struct script {
	bool bad_point; /* the OpenAck's point is not on the wallet's chain */
};

static size_t open_ack(const MpEnvelope *req, const struct script *sc, uint8_t *frame, size_t cap)
{
	const MpSigned *cert = req->open_req->cert;
	Micropay__V1__ChannelCert *cc =
	    cert ? micropay__v1__channel_cert__unpack(NULL, cert->body.len, cert->body.data) : NULL;
	if (!cc || cc->root.len != MP_HASH_LEN)
		return 0;
	uint8_t root[MP_HASH_LEN];
	memcpy(root, cc->root.data, MP_HASH_LEN);
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
	root[0] ^= sc->bad_point;
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(OK);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, root};
	Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
	ack.status = &st;
	ack.point = &pt;
	ack.max_jump = 10;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_ACK);
	env.open_ack = &ack;
	return env_frame(&env, req->request_id, frame, cap);
}

static size_t pay_ack(const MpEnvelope *req, uint8_t *frame, size_t cap)
{
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(OK);
	Micropay__V1__PayAck ack = MICROPAY__V1__PAY_ACK__INIT;
	ack.status = &st;
	ack.last = req->pay_req->j;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_ACK);
	env.pay_ack = &ack;
	return env_frame(&env, req->request_id, frame, cap);
}

static size_t answer(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg)
{
	if (req->body_case == MP_BODY(OPEN_REQ))
		return open_ack(req, arg, frame, cap);
	if (req->body_case == MP_BODY(PAY_REQ))
		return pay_ack(req, frame, cap);
	return 0;
}

/* ---- paying ---- */

struct pay_call {
	const char *channel, *endpoint;
	char order[64]; /* a new order of one unit at m1 */
	pthread_t thread;
	json_t *result;
	char err[512];
	atomic_bool done;
};

static void *pay_main(void *arg)
{
	struct pay_call *pc = arg;
	char params[500];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":1,\"merchant_id\":\"%s\","
		 "\"order_ref\":\"%s\"}",
		 pc->channel, pc->endpoint, m1.mid_hex, pc->order);
	pc->result = admin(&net, "w1", "pay", params, pc->err, sizeof(pc->err));
	atomic_store(&pc->done, true);
	return NULL;
}

static void pay_start(struct pay_call *pc, const char *channel, const char *endpoint)
{
	*pc = (struct pay_call){.channel = channel, .endpoint = endpoint};
	net_new_order(&net, "m1", 1, pc->order, sizeof(pc->order));
	atomic_init(&pc->done, false);
	ck_assert_int_eq(pthread_create(&pc->thread, NULL, pay_main, pc), 0);
}

/* Wait for the pay (generously); fails the test if walletd never answers. */
static void pay_join(struct pay_call *pc, int seconds)
{
	for (int i = 0; i < seconds * 10 && !atomic_load(&pc->done); i++)
		usleep(100000);
	ck_assert_msg(atomic_load(&pc->done), "pay of %s at %s: walletd did not answer in %d s",
		      pc->channel, pc->endpoint, seconds);
	pthread_join(pc->thread, NULL);
}

/* A pay at the real m1 that must be acknowledged: the resent count into *resent. */
static void pay_honestly(const char *channel, int64_t *resent)
{
	struct pay_call pc;
	pay_start(&pc, channel, m1_ep);
	pay_join(&pc, 60);
	ck_assert_msg(pc.result, "pay of %s at m1 failed: %s", channel, pc.err);
	ck_assert_str_eq(json_str(pc.result, "status"), "OK");
	if (resent)
		*resent = json_int(pc.result, "resent");
	json_decref(pc.result);
}

/* Pay a new channel at a hostile server (cert, mode, honest answers first: its OpenAck names
 * the channel's root, which only a fresh channel accepts); the pay fails with expect in its
 * error while a pay of other_ch at m1 goes through; then the channel is paid at m1, resending
 * its in-flight Pay when one was sent. */
static void hostile_case(const char *name, const char *cert, const char *key,
			 enum hostile_mode mode, unsigned honest, struct script *sc,
			 const char *expect, bool pay_sent)
{
	char stuck_ch[64];
	net_wallet_issue(&net, "w1", m1.mid_hex, 10, 1, stuck_ch, sizeof(stuck_ch));
	struct hostile h;
	hostile_start(&h, cert, key, mode, honest, answer, sc);
	struct pay_call pc;
	pay_start(&pc, stuck_ch, h.endpoint);
	pay_honestly(other_ch, NULL);
	pay_join(&pc, 60);
	hostile_stop(&h);
	printf("%s: pay failed: %s\n", name, pc.result ? "(it did not)" : pc.err);
	ck_assert_msg(!pc.result, "%s: pay at the hostile server succeeded", name);
	ck_assert_msg(strstr(pc.err, expect), "%s: error '%s' does not say '%s'", name, pc.err,
		      expect);
	int64_t resent = -1;
	pay_honestly(stuck_ch, &resent);
	ck_assert_int_eq(resent, pay_sent ? 1 : 0);
}

START_TEST(walletd_survives_hostile_merchants)
{
	int64_t before = daemon_mem_kb(&net, "w1", "VmRSS");
	daemon_peak_reset(&net, "w1");
	struct script sc = {0};
	const char *c = m1.cert, *k = m1.tls_key;
	hostile_case("another merchant's certificate", m2.cert, m2.tls_key, HOSTILE_SILENT, 0, &sc,
		     "nothing sent", false);
	hostile_case("OpenAck off the chain", c, k, HOSTILE_SILENT, 1,
		     &(struct script){.bad_point = true}, "does not match our chain", false);
	hostile_case("Open garbage", c, k, HOSTILE_GARBAGE, 0, &sc, "unparsable", false);
	hostile_case("Pay silence", c, k, HOSTILE_SILENT, 1, &sc, "idle", true);
	hostile_case("Pay trickled", c, k, HOSTILE_TRICKLE, 1, &sc, "no answer to Pay", true);
	hostile_case("Pay answered by replays", c, k, HOSTILE_REPLAY, 1, &sc, "no answer to Pay",
		     true);
	ck_assert(log_has(&net, "w1", "answers no request of ours", 3000));
	hostile_case("Pay answered by an OpenAck", c, k, HOSTILE_WRONG_TYPE, 1, &sc,
		     "unexpected answer to Pay", true);
	hostile_case("Pay answered by garbage", c, k, HOSTILE_GARBAGE, 1, &sc, "unparsable", true);
	hostile_case("Pay answered by an oversized frame", c, k, HOSTILE_OVERSIZED, 1, &sc,
		     "frame length above the maximum", true);
	hostile_case("Pay answered by half a frame", c, k, HOSTILE_CLOSE_MID_FRAME, 1, &sc,
		     "closed", true);
	int64_t peak = daemon_mem_kb(&net, "w1", "VmHWM");
	printf("walletd: RSS before %lld kB, peak %lld kB\n", (long long)before, (long long)peak);
	ck_assert_int_lt(peak - before, 32 * 1024);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostile_servers");
	TCase *tc = tcase_create("walletd");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, walletd_survives_hostile_merchants);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
