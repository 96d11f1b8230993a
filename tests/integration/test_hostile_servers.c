/* Hostile servers against a daemon acting as a client (docs/adversarial.md, "Hostile
 * servers"). First walletd pays at a server that presents m1's own certificate (a merchant gone
 * bad: the wallet cannot tell it from m1) or m2's. The server answers the Open honestly (a point of
 * the wallet's own chain: the root, from the ChannelCert it was sent) and then the Pay with
 * silence, a trickled frame, replays of its earlier answer, an answer of the wrong type,
 * garbage, an oversized frame or half a frame. Each time walletd fails the pay with a clear
 * error (the Pay stays in flight), keeps serving (a payment at the real m1 on another channel
 * goes through while the hostile one is stuck), and the next pay at the real m1 resends the
 * in-flight Pay and is acknowledged. walletd's memory stays bounded.
 * Then merchantd as a successor: m2 is stopped and a hostile server with m2's certificate takes
 * its port; a wallet moving a channel from m2 to m1 makes m1 ask it for a Handoff, answered by
 * silence, a trickle, the wrong type, garbage, an oversized frame or a close. m1 answers the
 * Open with a clear refusal (nothing stored, no payword sent), serves other wallets meanwhile,
 * and takes the channel over once the real m2 is back.
 * Then the broker's port: a server with the broker's certificate trickles its answer to
 * walletd's IssueReq (the call ends at its deadline, the channel stays ISSUING, issue.retry
 * issues it later), and answers merchantd's BindReq with forged Binds (m1 refuses each and holds
 * nothing; the real broker binds the channel to m1 later). Last a hostile holder with m2's
 * certificate answers m1's HandoffReqs OK with a forged Handoff (the wrong key, another channel,
 * another merchant) or a genuine one replayed (another channel's; the channel's own older one):
 * m1 refuses each Open, stores nothing, no payword leaves; with the real m2 back the moves
 * succeed and the credit is exact. The audit is clean. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "harness_forged_handoff.h"
#include "harness_handoff.h"
#include "harness_hostile.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_peer.h"
#include "../check_run.h"

#define WALLET_IDLE_S 6 /* walletd's idle_timeout here: the deadline of each Pay's answer */
#define HANDOFF_S     2 /* merchantd's handoff_timeout here, well below WALLET_IDLE_S */

static struct net net;
static struct tmerchant m1, m2;
static char m1_ep[128], account[64];
static char other_ch[64]; /* at m1: paid honestly while a hostile server holds another */

static void setup_net(void)
{
	char idle[16];
	snprintf(idle, sizeof(idle), "%d", WALLET_IDLE_S);
	setenv("MP_WALLET_IDLE_TIMEOUT", idle, 1);
	snprintf(idle, sizeof(idle), "%d", HANDOFF_S);
	setenv("MP_HANDOFF_TIMEOUT", idle, 1);
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
	ack.last = req->body_case == MP_BODY(PAY_REQ) ? req->pay_req->j : 0;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_ACK);
	env.pay_ack = &ack;
	return env_frame(&env, req->request_id, frame, cap);
}

static size_t answer(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg)
{
	if (req->body_case == MP_BODY(OPEN_REQ))
		return open_ack(req, arg, frame, cap);
	if (req->body_case == MP_BODY(PAY_REQ) || req->body_case == MP_BODY(HANDOFF_REQ))
		return pay_ack(req, frame, cap); /* to a HandoffReq: the wrong type */
	return 0;
}

/* ---- paying ---- */

struct pay_call {
	const char *channel, *endpoint, *merchant;
	char order[64]; /* a new order of one unit at the merchant */
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
		 pc->channel, pc->endpoint, pc->merchant, pc->order);
	pc->result = admin(&net, "w1", "pay", params, pc->err, sizeof(pc->err));
	atomic_store(&pc->done, true);
	return NULL;
}

/* Pay one unit of channel at endpoint to merchant (daemon "m1" or "m2", m1 when NULL). */
static void pay_start_to(struct pay_call *pc, const char *channel, const char *endpoint,
			 const struct tmerchant *merchant)
{
	merchant = merchant ? merchant : &m1;
	*pc = (struct pay_call){
	    .channel = channel, .endpoint = endpoint, .merchant = merchant->mid_hex};
	net_new_order(&net, merchant->name, 1, pc->order, sizeof(pc->order));
	atomic_init(&pc->done, false);
	ck_assert_int_eq(pthread_create(&pc->thread, NULL, pay_main, pc), 0);
}

static void pay_start(struct pay_call *pc, const char *channel, const char *endpoint)
{
	pay_start_to(pc, channel, endpoint, NULL);
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
	hostile_start(&h, 0, cert, key, mode, honest, answer, sc);
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
}
END_TEST

/* A broker gone bad (its certificate, its port) that trickles its answer: every byte resets
 * walletd's idle timeout, so only the call's own deadline ([wallet] idle_timeout, from the
 * connect) ends it. The issue stays ISSUING with the reason, its stored request is resent by
 * issue.retry once the real broker is back, and the channel is issued once. */
START_TEST(walletd_broker_calls_end_at_their_deadline)
{
	char broker_ep[128], cert[700], key[700], params[300], err[600];
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_path(&net, "tls/broker.crt", cert, sizeof(cert));
	net_path(&net, "tls/broker.key", key, sizeof(key));
	uint16_t port = (uint16_t)atoi(strrchr(broker_ep, ':') + 1);
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	struct hostile h;
	hostile_start(&h, port, cert, key, HOSTILE_TRICKLE, 0, answer, &(struct script){0});
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":20,\"unit_value\":1,\"days\":1}", m1.mid_hex);
	json_t *r = admin(&net, "w1", "issue", params, err, sizeof(err));
	unsigned asked = atomic_load(&h.requests);
	hostile_stop(&h);
	ck_assert_msg(r != NULL, "issue: %s", err);
	printf("broker trickling: issue %s: %s\n", json_str(r, "status"), json_str(r, "detail"));
	ck_assert_uint_ge(asked, 1);
	ck_assert_str_eq(json_str(r, "status"), "ISSUING");
	ck_assert_ptr_nonnull(strstr(json_str(r, "detail"), "no answer from the broker within"));
	char channel[64];
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	pay_honestly(other_ch, NULL); /* walletd serves meanwhile */

	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	r = admin_ok(&net, "w1", "issue.retry", params);
	ck_assert_str_eq(json_str(r, "status"), "ACTIVE");
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

/* ---- a broker that forges Binds ---- */

/* The hostile broker's answer to a BindReq: OK with the Bind of arg (other requests get none). */
static size_t forged_bind(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg)
{
	if (req->body_case != MP_BODY(BIND_REQ))
		return 0;
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(OK);
	Micropay__V1__BindResp resp = MICROPAY__V1__BIND_RESP__INIT;
	resp.status = &st;
	resp.bind = arg;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(BIND_RESP);
	env.bind_resp = &resp;
	return env_frame(&env, req->request_id, frame, cap);
}

static MpSigned *bind_signed(const struct mp_key *key, const char *channel_hex,
			     const uint8_t mid[MP_ID_LEN])
{
	uint8_t id[MP_ID_LEN];
	hex_to_bytes(channel_hex, id, MP_ID_LEN);
	Micropay__V1__Bind b = MICROPAY__V1__BIND__INIT;
	b.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	b.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)mid};
	MpSigned *s = mp_stmt_sign(key, MP_STMT_BIND, &b.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* w1 pays an unbound channel at m1 while the broker's port is held by a server with the
 * broker's certificate answering m1's BindReq with bind: m1 must not take the channel. */
static void forged_bind_case(const char *name, const char *channel, MpSigned *bind)
{
	char broker_ep[128], cert[700], key[700], err[600], params[600], order[64];
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_path(&net, "tls/broker.crt", cert, sizeof(cert));
	net_path(&net, "tls/broker.key", key, sizeof(key));
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	struct hostile h;
	hostile_start(&h, (uint16_t)atoi(strrchr(broker_ep, ':') + 1), cert, key, HOSTILE_SILENT,
		      1000, forged_bind, bind);
	net_new_order(&net, "m1", 2, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\","
		 "\"units\":2,\"order_ref\":\"%s\"}",
		 channel, m1.mid_hex, m1_ep, order);
	json_t *r = admin(&net, "w1", "pay", params, err, sizeof(err));
	unsigned asked = atomic_load(&h.requests);
	hostile_stop(&h);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	printf("forged Bind (%s): pay failed: %s\n", name, r ? "(it did not)" : err);
	ck_assert_msg(r == NULL, "forged Bind (%s): m1 took the channel", name);
	ck_assert_uint_ge(asked, 1);
	ck_assert_msg(strstr(err, "the broker's Bind does not verify"),
		      "forged Bind (%s): error '%s'", name, err);
}

START_TEST(merchantd_refuses_forged_binds)
{
	json_t *r = admin_ok(&net, "w1", "issue", "{\"n\":40,\"unit_value\":1,\"days\":1}");
	char channel[64], other[64], path[700], kerr[200];
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	struct mp_key broker_key;
	net_path(&net, "broker/broker.key", path, sizeof(path));
	ck_assert_msg(mp_key_load(&broker_key, path, kerr, sizeof(kerr)), "%s", kerr);
	/* Named m1 and this channel, but signed by m2's key. */
	MpSigned *by_m2 = bind_signed(&m2.key, channel, m1.mid);
	forged_bind_case("signed by m2", channel, by_m2);
	/* Signed by the broker's key and naming m1, but for another channel. */
	memcpy(other, channel, sizeof(other));
	other[0] = other[0] == '0' ? '1' : '0';
	MpSigned *elsewhere = bind_signed(&broker_key, other, m1.mid);
	forged_bind_case("another channel's", channel, elsewhere);
	/* Signed by the broker's key for this channel, naming m2, answered OK. */
	MpSigned *for_m2 = bind_signed(&broker_key, channel, m2.mid);
	forged_bind_case("naming m2, answered OK", channel, for_m2);
	mp_stmt_free(by_m2);
	mp_stmt_free(elsewhere);
	mp_stmt_free(for_m2);
	mp_key_free(&broker_key);

	/* The real broker binds the channel to m1: paid once, credited exactly (what m1 holds
	 * from the earlier cases is redeemed first). */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	int64_t before = net_pending(&net, m1.mid_hex);
	char order[64], params[600], err[600];
	net_new_order(&net, "m1", 2, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\","
		 "\"units\":2,\"order_ref\":\"%s\"}",
		 channel, m1.mid_hex, m1_ep, order);
	r = admin(&net, "w1", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay after the broker came back: %s", err);
	ck_assert_int_eq(json_int(r, "last"), 2);
	json_decref(r);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before, 2);
	net_audit_clean(&net);
}
END_TEST

/* A pay of channel at m1 that moves it from m2 (a Move): m1 asks m2's endpoint for a Handoff.
 * NULL and the error in err when refused. */
static json_t *move_to_m1(const char *channel, char *err, size_t errlen)
{
	struct pay_call pc;
	pay_start(&pc, channel, m1_ep);
	pay_join(&pc, 90);
	snprintf(err, errlen, "%s", pc.err);
	return pc.result;
}

/* m1 asks a hostile "m2" (its certificate, its port) for a Handoff of channel, answered by fn
 * (arg): the Open is refused with a clear error and no payword leaves; m1 serves another wallet
 * meanwhile. */
static void hostile_holder_run(const char *name, const char *channel, uint16_t port,
			       enum hostile_mode mode, unsigned honest, hostile_answer_fn fn,
			       void *arg, const char *expect)
{
	struct hostile h;
	hostile_start(&h, port, m2.cert, m2.tls_key, mode, honest, fn, arg);
	struct pay_call pc;
	pay_start(&pc, channel, m1_ep);
	pay_honestly(other_ch, NULL);
	pay_join(&pc, 90);
	unsigned asked = atomic_load(&h.requests);
	hostile_stop(&h);
	printf("holder %s: pay failed: %s\n", name, pc.result ? "(it did not)" : pc.err);
	ck_assert_msg(!pc.result, "holder %s: the move succeeded", name);
	ck_assert_uint_ge(asked, 1); /* m1 did ask the hostile holder */
	ck_assert_msg(strstr(pc.err, expect) && strstr(pc.err, "no payword sent"),
		      "holder %s: error '%s' does not say '%s' and 'no payword sent'", name, pc.err,
		      expect);
}

static void hostile_holder_case(const char *name, const char *channel, uint16_t port,
				enum hostile_mode mode, unsigned honest, const char *expect)
{
	struct script sc = {0};
	hostile_holder_run(name, channel, port, mode, honest, answer, &sc, expect);
}

/* The hostile holder answers every HandoffReq with fn (arg). */
static void hostile_holder_answering(const char *name, const char *channel, uint16_t port,
				     hostile_answer_fn fn, void *arg, const char *expect)
{
	hostile_holder_run(name, channel, port, HOSTILE_SILENT, 1000, fn, arg, expect);
}

START_TEST(merchantd_survives_a_hostile_holder)
{
	char channel[64], m2_ep[128], err[512];
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	const char *colon = strrchr(m2_ep, ':');
	uint16_t port = (uint16_t)atoi(colon + 1);
	net_wallet_issue(&net, "w1", m2.mid_hex, 10, 1, channel, sizeof(channel));
	struct pay_call pc; /* once at m2: the wallet learns its MerchantCert */
	pay_start_to(&pc, channel, m2_ep, &m2);
	pay_join(&pc, 60);
	ck_assert_msg(pc.result, "pay at m2: %s", pc.err);
	json_decref(pc.result);
	int64_t before = daemon_mem_kb(&net, "m1", "VmRSS");
	daemon_peak_reset(&net, "m1");
	ck_assert_int_eq(net_cmd(&net, "kill", "m2"), 0);
	hostile_holder_case("silent", channel, port, HOSTILE_SILENT, 0, "did not hand the channel");
	hostile_holder_case("trickling", channel, port, HOSTILE_TRICKLE, 0,
			    "did not hand the channel");
	hostile_holder_case("answering a PayAck", channel, port, HOSTILE_SILENT, 1,
			    "not a HandoffResp");
	hostile_holder_case("garbage", channel, port, HOSTILE_GARBAGE, 0, "unparsable");
	hostile_holder_case("oversized", channel, port, HOSTILE_OVERSIZED, 0, "frame length");
	hostile_holder_case("closing", channel, port, HOSTILE_CLOSE_MID_FRAME, 0, "reached");
	int64_t peak = daemon_mem_kb(&net, "m1", "VmHWM");
	printf("m1: RSS before %lld kB, peak %lld kB\n", (long long)before, (long long)peak);
	ck_assert_int_lt(peak - before, 32 * 1024);
	ck_assert_int_eq(net_cmd(&net, "start", "m2"), 0);
	json_t *r = NULL;
	for (int i = 0; i < 20 && !(r = move_to_m1(channel, err, sizeof(err))); i++)
		sleep(1); /* m2 starting */
	ck_assert_msg(r, "the move to m1 with the real m2 back: %s", err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

/* ---- a holder that forges or replays HandoffResps ---- */

/* A pay of channel at (endpoint, merchant) that must be acknowledged. */
static void pay_ok_at(const char *channel, const char *endpoint, const struct tmerchant *merchant)
{
	struct pay_call pc;
	pay_start_to(&pc, channel, endpoint, merchant);
	pay_join(&pc, 90);
	ck_assert_msg(pc.result, "pay of %s at %s: %s", channel, merchant->name, pc.err);
	json_decref(pc.result);
}

/* m1's view of channel (state, epoch, last) is still `was` (or it still does not list it). */
static void m1_unchanged(const char *name, const char *channel, const char *was, int64_t epoch,
			 int64_t last)
{
	char state[32] = "";
	int64_t e = -1, l = -1;
	bool listed = merchant_channel_state(&net, "m1", channel, state, sizeof(state), &e, &l);
	if (!was) {
		ck_assert_msg(!listed, "forged Handoff (%s): m1 lists the channel %s", name, state);
		return;
	}
	ck_assert_msg(listed && !strcmp(state, was) && e == epoch && l == last,
		      "forged Handoff (%s): m1 has the channel %s epoch %lld last %lld", name,
		      state, (long long)e, (long long)l);
}

static void forged_case(const char *name, const char *channel, uint16_t port,
			struct forged_holder *f, const char *expect)
{
	char was[32] = "";
	int64_t epoch = -1, last = -1;
	bool listed = merchant_channel_state(&net, "m1", channel, was, sizeof(was), &epoch, &last);
	hostile_holder_answering(name, channel, port, forged_handoff_answer, f, expect);
	m1_unchanged(name, channel, listed ? was : NULL, epoch, last);
}

/* A second channel ("old") moved for real m2 -> m1 -> m2 gives m1 genuine Handoffs 1 and 2 to
 * replay. Then m2 is stopped and a hostile "m2" answers m1's HandoffReqs for a channel issued at
 * m2 (paid once there) with OK and a Handoff signed by the wrong key, for another channel,
 * naming another merchant, or old's genuine Handoff 1 replayed (for this channel, and for old
 * itself, at an hseq below what m1 holds). Each Open is refused, m1 stores nothing, no payword
 * leaves; with the real m2 back both moves succeed and the credit is exact. */
START_TEST(merchantd_refuses_forged_handoffs)
{
	char m2_ep[128], ch[64], old[64];
	net_read(&net, "m2", "endpoint", m2_ep, sizeof(m2_ep));
	uint16_t port = (uint16_t)atoi(strrchr(m2_ep, ':') + 1);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	int64_t p1 = net_pending(&net, m1.mid_hex), p2 = net_pending(&net, m2.mid_hex);
	net_wallet_issue(&net, "w1", m2.mid_hex, 10, 1, old, sizeof(old));
	pay_ok_at(old, m2_ep, &m2);
	pay_ok_at(old, m1_ep, &m1);
	pay_ok_at(old, m2_ep, &m2);
	net_wallet_issue(&net, "w1", m2.mid_hex, 10, 1, ch, sizeof(ch));
	pay_ok_at(ch, m2_ep, &m2);
	struct tchannel tch;
	twallet_channel_load(&net, "w1", ch, &tch);
	MpSigned *m2_cert = tmerchant_stored_cert(&net, "m2");
	MpSigned *genuine = merchant_stored_handoff(&net, "m1", old, 1);
	ck_assert_int_eq(net_cmd(&net, "kill", "m2"), 0);

	struct forged_holder f = {.key = &m2.key, .ch = &tch, .at = 1, .holder_cert = m2_cert};
	tchannel_id(&tch, f.channel_id);
	memcpy(f.from, m2.mid, MP_ID_LEN);
	memcpy(f.to, m1.mid, MP_ID_LEN);
	struct forged_holder c = f;
	c.key = &m1.key;
	forged_case("signed by m1's key", ch, port, &c, "signer_pk is not the key of merchant");
	struct mp_key fresh;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&fresh, seed));
	c.key = &fresh;
	forged_case("signed by a fresh key", ch, port, &c, "signer_pk is not the key of merchant");
	c = f;
	c.channel_id[0] ^= 1;
	forged_case("for another channel", ch, port, &c, "names another channel");
	c = f;
	memset(c.to, 0x33, MP_ID_LEN);
	forged_case("naming another merchant", ch, port, &c, "does not name this merchant");
	c = f;
	c.replay = genuine;
	forged_case("another channel's genuine Handoff replayed", ch, port, &c,
		    "names another channel");
	forged_case("its own genuine Handoff 1 replayed", old, port, &c, "does not carry our Move");

	ck_assert_int_eq(net_cmd(&net, "start", "m2"), 0);
	char err[512];
	json_t *r = NULL;
	for (int i = 0; i < 20 && !(r = move_to_m1(ch, err, sizeof(err))); i++)
		sleep(1); /* m2 starting */
	ck_assert_msg(r, "the move to m1 with the real m2 back: %s", err);
	json_decref(r);
	pay_ok_at(old, m1_ep, &m1);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	/* m1: old's j=2 and j=4, ch's j=2, and other_ch once per case (6); m2: old's j=1 and j=3,
	 * ch's j=1. */
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - p1, 3 + 6);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - p2, 3);
	mp_key_free(&fresh);
	mp_stmt_free(genuine);
	mp_stmt_free(m2_cert);
	tchannel_free(&tch);
	net_audit_clean(&net);
}
END_TEST

/* ---- a hostile holder on the transfer path ---- */

/* w1's transfer.send of channel to w2's offer at a server with m1's certificate that answers
 * the Open honestly and the TransferReq by mode: it must end with an error naming expect. */
static void transfer_refused(const char *name, const char *channel, const char *offer,
			     enum hostile_mode mode, const char *expect)
{
	struct hostile h;
	hostile_start(&h, 0, m1.cert, m1.tls_key, mode, 1, answer, &(struct script){0});
	char *params = malloc(strlen(offer) + 400), err[600];
	sprintf(params, "{\"channel_id\":\"%s\",\"offer\":\"%s\",\"endpoint\":\"%s\"}", channel,
		offer, h.endpoint);
	json_t *r = admin(&net, "w1", "transfer.send", params, err, sizeof(err));
	unsigned asked = atomic_load(&h.requests);
	hostile_stop(&h);
	free(params);
	printf("transfer to a %s holder: %s\n", name, r ? "(it succeeded)" : err);
	ck_assert_msg(r == NULL, "transfer to a %s holder succeeded", name);
	ck_assert_uint_ge(asked, 2); /* the Open and the TransferReq */
	ck_assert_msg(strstr(err, expect), "transfer to a %s holder: '%s' does not say '%s'", name,
		      err, expect);
}

/* Each hostile holder ends transfer.send with a clear error, at the latest at the
 * TransferReq's own deadline (a trickled or replayed answer held it for ever before); the
 * channel stays TRANSFERRING, and transfer.send at the real m1 then completes the same
 * transfer (the stored Transfer), w2 accepts it and the broker acknowledges the claim. */
START_TEST(walletd_transfer_to_a_hostile_holder)
{
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	json_decref(admin_ok(&net, "w2", "register", NULL));
	enum hostile_mode modes[] = {HOSTILE_SILENT, HOSTILE_TRICKLE, HOSTILE_REPLAY,
				     HOSTILE_WRONG_TYPE, HOSTILE_GARBAGE};
	const char *names[] = {"silent", "trickling", "replaying", "wrong-type", "garbage"};
	const char *expect[] = {"TransferReq", "no answer to TransferReq",
				"no answer to TransferReq", "unexpected answer to TransferReq",
				"unparsable"};
	for (size_t i = 0; i < 5; i++) {
		char ch[64], params[200];
		net_wallet_issue(&net, "w1", m1.mid_hex, 10, 1, ch, sizeof(ch));
		snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", ch);
		json_t *r = admin_ok(&net, "w2", "transfer.offer", params);
		char *offer = strdup(json_str(r, "offer"));
		json_decref(r);
		transfer_refused(names[i], ch, offer, modes[i], expect[i]);
		pay_honestly(other_ch, NULL); /* w1 serves meanwhile */

		char *send = malloc(strlen(offer) + 200);
		sprintf(send, "{\"channel_id\":\"%s\",\"offer\":\"%s\",\"endpoint\":\"%s\"}", ch,
			offer, m1_ep);
		r = admin_ok(&net, "w1", "transfer.send", send);
		char *accept = malloc(strlen(json_str(r, "bundle")) + 64);
		sprintf(accept, "{\"bundle\":\"%s\"}", json_str(r, "bundle"));
		json_decref(r);
		r = admin_ok(&net, "w2", "transfer.accept", accept);
		ck_assert_msg(json_is_true(json_object_get(r, "broker_ack")), "%s: broker: %s",
			      names[i], json_str(r, "broker_status"));
		ck_assert_int_eq(json_int(r, "spendable"), 10);
		json_decref(r);
		free(accept);
		free(send);
		free(offer);
	}
	net_audit_clean(&net);
}
END_TEST

/* w1's close of a fresh channel at a server with m1's certificate that answers the Open
 * honestly and then trickles or replays: the CloseReq's own deadline ends it ("still CLOSING");
 * close at the real m1 then sends the stored CloseRequest and gets the Close at index 0. */
START_TEST(walletd_close_at_a_hostile_holder)
{
	enum hostile_mode modes[] = {HOSTILE_TRICKLE, HOSTILE_REPLAY};
	const char *names[] = {"trickling", "replaying"};
	for (size_t i = 0; i < 2; i++) {
		char ch[64], params[400], err[600];
		net_wallet_issue(&net, "w1", m1.mid_hex, 10, 1, ch, sizeof(ch));
		struct hostile h;
		hostile_start(&h, 0, m1.cert, m1.tls_key, modes[i], 1, answer, &(struct script){0});
		snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"endpoint\":\"%s\"}", ch,
			 h.endpoint);
		json_t *r = admin(&net, "w1", "close", params, err, sizeof(err));
		unsigned asked = atomic_load(&h.requests);
		hostile_stop(&h);
		printf("close at a %s holder: %s\n", names[i], r ? "(it succeeded)" : err);
		ck_assert_msg(r == NULL, "close at a %s holder succeeded", names[i]);
		ck_assert_uint_ge(asked, 2); /* the Open and the CloseReq */
		ck_assert_msg(strstr(err, "no answer to CloseReq (still CLOSING; retry)"),
			      "close at a %s holder: %s", names[i], err);
		snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"endpoint\":\"%s\"}", ch,
			 m1_ep);
		r = admin_ok(&net, "w1", "close", params);
		ck_assert_str_eq(json_str(r, "state"), "CLOSED");
		ck_assert_int_eq(json_int(r, "final_index"), 0);
		json_decref(r);
	}
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
	tcase_add_test(tc, merchantd_survives_a_hostile_holder);
	tcase_add_test(tc, walletd_broker_calls_end_at_their_deadline);
	tcase_add_test(tc, merchantd_refuses_forged_binds);
	tcase_add_test(tc, merchantd_refuses_forged_handoffs);
	tcase_add_test(tc, walletd_transfer_to_a_hostile_holder);
	tcase_add_test(tc, walletd_close_at_a_hostile_holder);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
