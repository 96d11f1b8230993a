/* brokerd under redemption load, with the real daemons (deploy/mpnet): junk Redeems are
 * hashed off the event loop and charged to the sending merchant's bad-chain budget, a Redeem
 * CONFLICT carries the stored Redeem, and an IssueRequest's signature is verified before its
 * body is parsed. The test acts as merchants with their keys and TLS certificates. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "harness_net.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

/* The broker of this suite: a merchant may waste 2^24 hashes at once, then 2^16 per second. */
#define BURST	  (1u << 24)
#define JUNK_COST (1u << 23) /* hashes of one repeated junk Redeem: two fit in the burst */

static struct net net;
static char ca[700], broker_ep[128], m1_hex[64];
static uint8_t m1[MP_ID_LEN];

static void setup_net(void)
{
	setenv("MP_BAD_CHAIN_BURST", "16777216", 1);
	setenv("MP_BAD_CHAIN_RATE", "65536", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	/* Merchants the test impersonates to send junk (each its own budget). */
	ck_assert_int_eq(net_cmd(&net, "merchant", "mj1"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "mj2"), 0);
}

static void teardown_net(void)
{
	net_down(&net);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void audit_clean(void)
{
	net_audit_clean(&net);
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

/* A value of the broker's Prometheus metrics. */
/* The broker's value of a metric without labels (harness_net.c reads the sample line, not the
 * HELP line that names it too). */
static uint64_t metric_of_broker(const char *name)
{
	int64_t v = metric(&net, "broker", name);
	ck_assert_msg(v >= 0, "no metric %s", name);
	return (uint64_t)v;
}

static bool broker_log_mentions(const char *a, const char *b)
{
	char path[700], line[2048];
	snprintf(path, sizeof(path), "%s/broker/log", net.dir);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, a) && (!b || strstr(line, b));
	if (f)
		fclose(f);
	return found;
}

/* A registered, funded wallet with an issued channel of n units of 1 held by holder0. */
static void issued_channel(struct twallet *tw, struct tchannel *ch, uint32_t n,
			   const uint8_t holder0[MP_ID_LEN])
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	net_fund_id(&net, tw->account_id, n);
	tchannel_make(ch, tw, n, 1, holder0);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
}

static void assert_all_bad_chain(const MpEnvelope *resp, size_t count)
{
	ck_assert(resp && resp->body_case == MP_BODY(REDEEM_RESP));
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(resp->redeem_resp->n_results, count);
	for (size_t i = 0; i < count; i++)
		ck_assert_int_eq(resp->redeem_resp->results[i]->status, MP_ST(BAD_CHAIN));
}

struct later_answer {
	struct wire *w;
	MpEnvelope *env;
	double at;
};

static void *read_answer(void *arg)
{
	struct later_answer *a = arg;
	a->env = wire_recv(a->w);
	a->at = now_s();
	return NULL;
}

START_TEST(issue_is_answered_while_a_junk_redeem_is_hashed)
{
	struct tmerchant mj;
	tmerchant_load(&mj, &net, "mj1");
	struct twallet tw, tw2;
	struct tchannel ch, ch2;
	issued_channel(&tw, &ch, 1u << 20, mj.mid);
	/* 16 claims of 2^20 hashes each: seconds of hashing, just within every budget. */
	MpSigned *junk = junk_redeem(&mj, &ch, 1u << 20, 16);
	/* Another client, ready to issue. */
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw2, &b);
	net_fund_id(&net, tw2.account_id, 10);
	tchannel_make(&ch2, &tw2, 10, 1, m1);
	uint64_t wasted_before = metric_of_broker("micropay_broker_bad_chain_hashes_total");

	struct wire m;
	tmerchant_connect(&mj, &m, broker_ep, ca);
	wire_set_timeout(&m, 300);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = junk;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	double t0 = now_s();
	ck_assert(wire_send(&m, &env));
	struct later_answer redeem = {.w = &m};
	pthread_t reader;
	ck_assert_int_eq(pthread_create(&reader, NULL, read_answer, &redeem), 0);
	struct timespec pause = {0, 300 * 1000 * 1000};
	nanosleep(&pause, NULL); /* the broker has the Redeem and is hashing it */
	double t1 = now_s();
	ck_assert_int_eq(tchannel_issue(&ch2, &b), MP_ST(OK));
	double t2 = now_s();
	pthread_join(reader, NULL);
	printf("junk Redeem of %u hashes answered after %.2f s; IssueRequest sent %.2f s after "
	       "it, answered in %.3f s\n",
	       16u << 20, redeem.at - t0, t1 - t0, t2 - t1);
	assert_all_bad_chain(redeem.env, 16);
	ck_assert_msg(t2 < redeem.at, "the IssueRequest was answered after the junk Redeem");
	ck_assert_msg(redeem.at - t0 > 3 * (t2 - t0),
		      "junk Redeem (%.2f s) not clearly longer than the Issue (%.2f s)",
		      redeem.at - t0, t2 - t0);
	ck_assert_uint_eq(
	    metric_of_broker("micropay_broker_bad_chain_hashes_total") - wasted_before, 16u << 20);
	micropay__v1__envelope__free_unpacked(redeem.env, NULL);
	wire_close(&m);
	wire_close(&b);
	mp_stmt_free(junk);
	tchannel_free(&ch);
	tchannel_free(&ch2);
	mp_key_free(&tw.account);
	mp_key_free(&tw2.account);
	tmerchant_free(&mj);
	audit_clean();
}
END_TEST

/* m1 (the real merchantd) is paid up to `units` of a fresh channel and redeems it. */
static void honest_m1_redeems(uint32_t units)
{
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 10000, m1);
	char m1_ep[128];
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	struct wire m;
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert(ack && ack->open_ack->status->code == MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	json_t *o = admin_ok(&net, "m1", "order.create", "{\"price\":1000000}");
	uint8_t order[MP_ID_LEN];
	hex_to_bytes(json_str(o, "order_ref"), order, MP_ID_LEN);
	json_decref(o);
	for (uint32_t j = 4096; j <= units; j += 4096) { /* MAX_JUMP at a time */
		MpEnvelope *e = tchannel_pay(&ch, &m, j, order, MP_ID_LEN);
		ck_assert(e && e->pay_ack->status->code == MP_ST(UNDERPAID));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	wire_close(&m);
	int64_t before = net_pending(&net, m1_hex);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	ck_assert_int_eq(net_pending(&net, m1_hex) - before, units);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
}

START_TEST(repeated_junk_gets_limit_and_honest_merchant_is_credited)
{
	struct tmerchant mj;
	tmerchant_load(&mj, &net, "mj2");
	struct twallet tw;
	struct tchannel ch;
	issued_channel(&tw, &ch, 1u << 20, mj.mid);
	uint64_t refusals_before =
	    metric_of_broker("micropay_broker_bad_chain_budget_refusals_total");
	uint64_t wasted_before = metric_of_broker("micropay_broker_bad_chain_hashes_total");
	struct wire m;
	tmerchant_connect(&mj, &m, broker_ep, ca);
	wire_set_timeout(&m, 300);
	/* 512 claims of 2^14 hashes (a statement above 16 KiB: its signature is checked on the
	 * worker pool too). The burst holds two of them. */
	int accepted = 0;
	MpEnvelope *resp = NULL;
	for (int k = 0; k < 6; k++) {
		MpSigned *junk = junk_redeem(&mj, &ch, JUNK_COST / 512, 512);
		ck_assert_uint_gt(junk->body.len, 16 * 1024);
		resp = redeem_call(&m, junk);
		mp_stmt_free(junk);
		if (resp->redeem_resp->status->code == MP_ST(LIMIT))
			break;
		assert_all_bad_chain(resp, 512);
		accepted++;
		micropay__v1__envelope__free_unpacked(resp, NULL);
		resp = NULL;
	}
	ck_assert_int_eq(accepted, BURST / JUNK_COST);
	ck_assert_msg(resp != NULL, "junk never refused");
	ck_assert_str_eq(resp->redeem_resp->status->detail,
			 "bad-chain hashing budget exhausted, retry later");
	ck_assert_uint_eq(resp->redeem_resp->n_results, 0);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&m);
	ck_assert_uint_eq(metric_of_broker("micropay_broker_bad_chain_budget_refusals_total"),
			  refusals_before + 1);
	ck_assert_uint_eq(metric_of_broker("micropay_broker_bad_chain_hashes_total") -
			      wasted_before,
			  (uint64_t)accepted * JUNK_COST);
	ck_assert_msg(broker_log_mentions("bad-chain hashing budget exhausted", mj.mid_hex),
		      "refusal not logged with the merchant id");
	/* Another merchant is unaffected: 8192 units, hashed from the root on the pool. */
	honest_m1_redeems(8192);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	tmerchant_free(&mj);
	audit_clean();
}
END_TEST

START_TEST(redeem_conflict_carries_the_stored_redeem)
{
	struct tmerchant tm;
	tmerchant_load(&tm, &net, "m1");
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	/* 300 claims on unknown channels: stored, nothing credited, a large statement. */
	enum { N = 300 };
	struct tclaim claims[N];
	for (int i = 0; i < N; i++) {
		ck_assert(mp_random_bytes(claims[i].channel_id, MP_ID_LEN));
		claims[i].index = 5;
		ck_assert(mp_random_bytes(claims[i].w, MP_HASH_LEN));
	}
	MpSigned *first = tmerchant_redeem(&tm, redeem_id, claims, N);
	ck_assert_uint_gt(first->body.len, 16 * 1024);
	ck_assert(mp_random_bytes(claims[0].channel_id, MP_ID_LEN));
	MpSigned *other = tmerchant_redeem(&tm, redeem_id, claims, 1);
	int64_t pending = net_pending(&net, tm.mid_hex);
	struct wire m;
	tmerchant_connect(&tm, &m, broker_ep, ca);
	MpEnvelope *r = redeem_call(&m, first);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(r->redeem_resp->n_results, N);
	ck_assert_int_eq(r->redeem_resp->results[N - 1]->status, MP_ST(UNKNOWN_CHANNEL));
	micropay__v1__envelope__free_unpacked(r, NULL);
	/* Same redeem_id, another Redeem: CONFLICT with the stored statement, byte for byte. */
	r = redeem_call(&m, other);
	const MpStatus *st = r->redeem_resp->status;
	ck_assert_int_eq(st->code, MP_ST(CONFLICT));
	ck_assert_msg(st->evidence != NULL, "CONFLICT without the stored Redeem");
	size_t want_len, got_len;
	uint8_t *want = mp_stmt_encode(first, &want_len);
	uint8_t *got = mp_stmt_encode(st->evidence, &got_len);
	ck_assert_uint_eq(got_len, want_len);
	ck_assert_mem_eq(got, want, want_len);
	ck_assert_uint_eq(st->evidence->type, MP_STMT_REDEEM);
	free(want);
	free(got);
	micropay__v1__envelope__free_unpacked(r, NULL);
	/* The first Redeem again: its stored answer. */
	r = redeem_call(&m, first);
	ck_assert_int_eq(r->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(r->redeem_resp->n_results, N);
	micropay__v1__envelope__free_unpacked(r, NULL);
	wire_close(&m);
	ck_assert_int_eq(net_pending(&net, tm.mid_hex), pending);
	mp_stmt_free(first);
	mp_stmt_free(other);
	tmerchant_free(&tm);
	audit_clean();
}
END_TEST

static MpCode send_issue(struct wire *b, MpSigned *s)
{
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	MpEnvelope *resp = wire_call(b, &env);
	ck_assert(resp && resp->body_case == MP_BODY(ISSUE_RESP));
	MpCode code = resp->issue_resp->status->code;
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

static MpCode send_register_account(struct wire *b, MpSigned *s)
{
	Micropay__V1__RegisterAccountReq req = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &req;
	MpEnvelope *resp = wire_call(b, &env);
	ck_assert(resp && resp->body_case == MP_BODY(REGISTER_ACCOUNT_RESP));
	MpCode code = resp->register_account_resp->status->code;
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

/* "MPAY1" || u8(type) || body signed by key (a valid signature over an arbitrary body). */
static MpSigned *sign_raw(const struct mp_key *key, uint32_t type, const uint8_t *body, size_t len)
{
	uint8_t msg[256];
	ck_assert_uint_le(len + 6, sizeof(msg));
	memcpy(msg, "MPAY1", 5);
	msg[5] = (uint8_t)type;
	memcpy(msg + 6, body, len);
	uint8_t sig[MP_SIG_LEN];
	ck_assert(mp_sign(key, msg, len + 6, sig));
	return mp_stmt_from_parts(type, body, len, key->pk, sig);
}

static const uint8_t unparsable[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0xff, 0xff, 0x07};

/* RegisterAccount is checked against the key in its own body: that key is read from the
 * framing, the signature checked, and only then the body parsed. */
static void register_account_verified_before_parsed(struct wire *b)
{
	struct mp_key key;
	uint8_t seed[MP_SK_LEN], body[64], bad_sig[MP_SIG_LEN];
	ck_assert(mp_key_generate(&key, seed));
	size_t len = 0;
	body[len++] = 0x0a, body[len++] = MP_PK_LEN; /* account_pk */
	memcpy(body + len, key.pk, MP_PK_LEN);
	len += MP_PK_LEN;
	memcpy(body + len, unparsable, sizeof(unparsable));
	len += sizeof(unparsable);
	ck_assert(micropay__v1__register_account__unpack(NULL, len, body) == NULL);
	ck_assert(mp_random_bytes(bad_sig, MP_SIG_LEN));
	MpSigned *s = mp_stmt_from_parts(MP_STMT_REGISTER_ACCOUNT, body, len, key.pk, bad_sig);
	ck_assert_int_eq(send_register_account(b, s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	s = sign_raw(&key, MP_STMT_REGISTER_ACCOUNT, body, len);
	ck_assert_int_eq(send_register_account(b, s), MP_ST(MALFORMED));
	mp_stmt_free(s);
	mp_key_free(&key);
}

START_TEST(signatures_are_verified_before_bodies_are_parsed)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	struct twallet tw;
	twallet_register(&tw, &b);
	net_fund_id(&net, tw.account_id, 100);
	/* issue_req_id and account_id, then bytes no protobuf parser accepts. */
	uint8_t body[64];
	size_t len = 0;
	body[len++] = 0x0a, body[len++] = MP_ID_LEN;
	ck_assert(mp_random_bytes(body + len, MP_ID_LEN));
	len += MP_ID_LEN;
	body[len++] = 0x12, body[len++] = MP_ID_LEN;
	memcpy(body + len, tw.account_id, MP_ID_LEN);
	len += MP_ID_LEN;
	memcpy(body + len, unparsable, sizeof(unparsable));
	len += sizeof(unparsable);
	ck_assert(micropay__v1__issue_request__unpack(NULL, len, body) == NULL);
	/* The account's key as signer, a signature that is not its own: BAD_SIG, not
	 * MALFORMED, because nothing is parsed before the signature verifies. */
	uint8_t bad_sig[MP_SIG_LEN];
	ck_assert(mp_random_bytes(bad_sig, MP_SIG_LEN));
	MpSigned *s = mp_stmt_from_parts(MP_STMT_ISSUE_REQUEST, body, len, tw.account.pk, bad_sig);
	ck_assert_int_eq(send_issue(&b, s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	/* A body that is junk from its first byte: no account to verify against, BAD_SIG. */
	s = mp_stmt_from_parts(MP_STMT_ISSUE_REQUEST, body + 36, 12, tw.account.pk, bad_sig);
	ck_assert_int_eq(send_issue(&b, s), MP_ST(BAD_SIG));
	mp_stmt_free(s);
	/* The same unparsable body, really signed by the account: now parsed, MALFORMED. */
	s = sign_raw(&tw.account, MP_STMT_ISSUE_REQUEST, body, len);
	ck_assert_int_eq(send_issue(&b, s), MP_ST(MALFORMED));
	mp_stmt_free(s);
	ck_assert_int_eq(balance_of(tw.account_id), 100);
	register_account_verified_before_parsed(&b);
	wire_close(&b);
	mp_key_free(&tw.account);
	audit_clean();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("redeem_load");
	TCase *tc = tcase_create("broker");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, issue_is_answered_while_a_junk_redeem_is_hashed);
	tcase_add_test(tc, repeated_junk_gets_limit_and_honest_merchant_is_credited);
	tcase_add_test(tc, redeem_conflict_carries_the_stored_redeem);
	tcase_add_test(tc, signatures_are_verified_before_bodies_are_parsed);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
