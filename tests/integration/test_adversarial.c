/* Hostile peers against the real brokerd and merchantd (and the admin sockets of all three
 * daemons), one attack per test (docs/adversarial.md). Each attack gets a typed error or a
 * logged, counted drop, and the test asserts which; the attacked daemon's peak RSS stays within
 * a bound above its RSS before the attack (harness_attack.h); an honest customer pays at m1
 * and asks the broker throughout each attack and must be served (harness_honest.h). The suite
 * ends with every acknowledged payment redeemed exactly and a clean broker audit.
 * Limits are short here: 16 connections per listener, 2 s handshake and frame deadlines, a
 * read budget of 4 MiB. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "harness_attack.h"
#include "harness_certs.h"
#include "harness_custody.h"
#include "harness_flood.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_peer.h"
#include "harness_uid.h"
#include "../check_run.h"

#define HANDSHAKE_S 2
#define FRAME_S	    2
#define MAX_CONNS   16
#define HONEST_N    20000 /* units of the honest customer's channel */
#define OTHER_N	    100	  /* units of the channel the attacks use at m1 */
#define READ_BUDGET (4u << 20)

static struct net net;
static char ca[700], broker_ep[128], m1_ep[128];
static struct tmerchant m1, m2;
static struct twallet tw;
static struct tchannel honest_ch, other_ch; /* both held by m1 */
static struct honest honest;

static void issue_at_m1(struct tchannel *ch, uint32_t n)
{
	struct wire b, m;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	tchannel_make(ch, &tw, n, 1, m1.mid);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	wire_close(&m);
}

static void setup_net(void)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan keeps freed memory in a quarantine (256 MiB by default) that a million small
	 * requests fill: a small one makes the daemons' peak RSS measure them, not ASan. */
	static char asan[512];
	const char *given = getenv("ASAN_OPTIONS");
	snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=16", given ? given : "",
		 given && *given ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
#endif
	setenv("MP_IDLE_TIMEOUT", "5", 1);
	setenv("MP_HANDSHAKE_TIMEOUT", "2", 1);
	setenv("MP_FRAME_TIMEOUT", "2", 1);
	setenv("MP_MAX_CONNECTIONS", "16", 1);
	char budget[32];
	snprintf(budget, sizeof(budget), "%u", READ_BUDGET);
	setenv("MP_READ_BUDGET", budget, 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	wire_close(&b);
	net_fund_id(&net, tw.account_id, HONEST_N + OTHER_N);
	issue_at_m1(&honest_ch, HONEST_N);
	issue_at_m1(&other_ch, OTHER_N);
	honest_init(&honest, &net, "m1", &honest_ch);
}

static void teardown_net(void)
{
	honest_close(&honest);
	tchannel_free(&honest_ch);
	tchannel_free(&other_ch);
	mp_key_free(&tw.account);
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	net_down(&net);
}

static const char *endpoint_of(const char *daemon)
{
	return strcmp(daemon, "broker") == 0 ? broker_ep : m1_ep;
}

static int64_t closed_count(const char *daemon, const char *reason)
{
	char name[200];
	bool broker = strcmp(daemon, "broker") == 0;
	snprintf(name, sizeof(name),
		 "micropay_%s_connections_closed_total{listener=\"%s\",reason=\"%s\"}",
		 broker ? "broker" : "merchant", broker ? "broker" : "wallet", reason);
	return metric(&net, daemon, name);
}

/* The status of any answer (every response's field 1 is its Status; error is one). */
static MpCode answer_status(const MpEnvelope *e, const char **detail)
{
	*detail = "";
	if (!e)
		return MP_ST(INTERNAL);
	if (e->body_case == MP_BODY(ERROR)) {
		*detail = e->error->detail;
		return e->error->code;
	}
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
	    &micropay__v1__envelope__descriptor, (unsigned)e->body_case);
	ck_assert(f && f->type == PROTOBUF_C_TYPE_MESSAGE);
	const ProtobufCMessage *body = *(ProtobufCMessage *const *)((const char *)e + f->offset);
	const ProtobufCFieldDescriptor *sf =
	    protobuf_c_message_descriptor_get_field_by_name(body->descriptor, "status");
	ck_assert_msg(sf != NULL, "answer %s has no status", f->name);
	const MpStatus *st = *(MpStatus *const *)((const char *)body + sf->offset);
	ck_assert(st != NULL);
	*detail = st->detail;
	return st->code;
}

/* Send env on a fresh connection (client certificate cert/key, or none) and expect the answer's
 * status `code` with a detail containing `detail_part` (NULL: any). */
static void expect_answer(const char *endpoint, const char *cert, const char *key, MpEnvelope *env,
			  MpCode code, const char *detail_part, const char *what)
{
	struct wire w;
	ck_assert_msg(wire_connect(&w, endpoint, ca, cert, key), "%s: cannot connect", what);
	MpEnvelope *a = wire_call(&w, env);
	const char *detail;
	MpCode got = answer_status(a, &detail);
	ck_assert_msg(a != NULL, "%s: no answer", what);
	ck_assert_msg(got == code, "%s: %s (%s), expected %s", what, mp_code_name(got), detail,
		      mp_code_name(code));
	ck_assert_msg(!detail_part || strstr(detail, detail_part), "%s: detail '%s', expected '%s'",
		      what, detail, detail_part);
	printf("%s: %s \"%s\"\n", what, mp_code_name(got), detail);
	micropay__v1__envelope__free_unpacked(a, NULL);
	wire_close(&w);
}

/* ---- slowloris ---- */

struct trickler {
	bool tls, closed;
	int fd;
	struct wire w;
};

/* Four raw connections trickling a TLS ClientHello, four TLS connections trickling one frame:
 * a byte each every 300 ms; each is closed at its deadline, counted and logged. */
static void slowloris(const char *daemon)
{
	enum { RAW = 4, TLS = 4 };
	struct attack a;
	attack_begin(&a, &net, daemon, "slowloris", &honest);
	int64_t hs_before = closed_count(daemon, "handshake_timeout");
	int64_t fr_before = closed_count(daemon, "frame_timeout");
	struct trickler t[RAW + TLS];
	for (int i = 0; i < RAW + TLS; i++) {
		t[i] = (struct trickler){.tls = i >= RAW, .fd = -1};
		if (t[i].tls) {
			ck_assert(wire_connect(&t[i].w, endpoint_of(daemon), ca, NULL, NULL));
			uint8_t hdr[4];
			mp_put_be32(hdr, 200); /* a frame of 200 bytes announced */
			ck_assert(wire_write(&t[i].w, hdr, 4));
		} else {
			t[i].fd = tcp_open(endpoint_of(daemon));
			ck_assert_int_eq(write(t[i].fd, "\x16\x03\x01\x02\x00", 5), 5);
		}
	}
	time_t t0 = time(NULL);
	int open = RAW + TLS;
	for (int tick = 0; tick < 40 && open > 0; tick++) {
		for (int i = 0; i < RAW + TLS; i++) {
			if (t[i].closed)
				continue;
			bool gone =
			    t[i].tls
				? !wire_write(&t[i].w, "\x01", 1) || wire_closed_within(&t[i].w, 0)
				: write(t[i].fd, "\x01", 1) != 1 || tcp_closed_within(t[i].fd, 1);
			if (gone) {
				t[i].closed = true;
				open--;
			}
		}
		usleep(300000);
	}
	long took = (long)(time(NULL) - t0);
	ck_assert_msg(open == 0, "%s: %d trickling connections still open after %ld s", daemon,
		      open, took);
	ck_assert_int_ge(took, FRAME_S - 1);
	for (int i = 0; i < RAW + TLS; i++) {
		if (t[i].tls)
			wire_close(&t[i].w);
		else
			close(t[i].fd);
	}
	ck_assert(log_has(&net, daemon, "TLS handshake timed out", 3000));
	ck_assert(log_has(&net, daemon, "frame not whole 2s after its first byte", 3000));
	ck_assert_int_ge(closed_count(daemon, "handshake_timeout"), hs_before + RAW);
	ck_assert_int_ge(closed_count(daemon, "frame_timeout"), fr_before + TLS);
	attack_end(&a);
}

START_TEST(slowloris_trickled_bytes_are_cut_at_their_deadline)
{
	slowloris("broker");
	slowloris("m1");
}
END_TEST

/* ---- connection flood ---- */

static void connection_flood(const char *daemon)
{
	enum { EXTRA_RAW = 64 };
	struct attack a;
	attack_begin(&a, &net, daemon, "connection flood", &honest);
	char name[200];
	bool broker = strcmp(daemon, "broker") == 0;
	snprintf(
	    name, sizeof(name),
	    "micropay_%s_connections_refused_total{listener=\"%s\",reason=\"max_connections\"}",
	    broker ? "broker" : "merchant", broker ? "broker" : "wallet");
	int64_t before = metric(&net, daemon, name);
	struct wire w[MAX_CONNS + 1];
	int opened = 0;
	bool refused = false;
	while (opened <= MAX_CONNS && !refused) {
		refused = !wire_connect(&w[opened], endpoint_of(daemon), ca, NULL, NULL);
		opened += !refused;
	}
	ck_assert_msg(refused, "%s accepted %d TLS connections", daemon, opened);
	/* Then raw connections beyond the limit: each closed at accept. */
	int raw_closed = 0;
	for (int i = 0; i < EXTRA_RAW; i++) {
		int fd = tcp_open(endpoint_of(daemon));
		raw_closed += tcp_closed_within(fd, 2000);
		close(fd);
	}
	ck_assert_int_eq(raw_closed, EXTRA_RAW);
	/* The honest customer, connected before, is served while the flood holds every slot. */
	ck_assert_msg(honest_wait(&honest, 5, 5000), "%s: honest customer not served", daemon);
	ck_assert(log_has(&net, daemon, "refusing connection from 127.0.0.1", 3000));
	ck_assert_int_ge(metric(&net, daemon, name), before + 1 + EXTRA_RAW);
	printf("%s: %d TLS connections held, %d refused at accept\n", daemon, opened,
	       1 + EXTRA_RAW);
	for (int i = 0; i < opened; i++)
		wire_close(&w[i]);
	attack_end(&a);
}

START_TEST(connection_flood_beyond_the_limit_is_refused_at_accept)
{
	connection_flood("broker");
	connection_flood("m1");
}
END_TEST

/* ---- many tiny frames ---- */

static uint64_t tiny_frame_count(void)
{
	const char *v = getenv("MP_ADV_FRAMES");
	return v ? strtoull(v, NULL, 10) : 1000000;
}

/* Each frame an empty PayReq (10 bytes with its length): the broker answers "not a broker
 * request", merchantd a PayAck MALFORMED; all answered, none logged one by one. */
static void tiny_frames(const char *daemon)
{
	uint64_t count = tiny_frame_count();
	struct attack a;
	attack_begin(&a, &net, daemon, "tiny frames", &honest);
	int log_before = log_lines_with(&net, daemon, "");
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	uint8_t frame[32];
	size_t framed = env_frame(&env, 7, frame, sizeof(frame));
	ck_assert_uint_gt(framed, 0);
	size_t len = framed - 4;
	struct wire w;
	ck_assert(wire_connect(&w, endpoint_of(daemon), ca, NULL, NULL));
	struct flood_result r;
	flood_frames(&w, frame, 4 + len, count, 5000, &r);
	wire_close(&w);
	printf("%s: %llu frames of %zu bytes sent, %llu answered (%llu identical) in %.1f s: "
	       "%.0f frames/s\n",
	       daemon, (unsigned long long)r.sent, 4 + len, (unsigned long long)r.answers,
	       (unsigned long long)r.same, r.seconds, (double)r.answers / r.seconds);
	ck_assert_uint_eq(r.answers, count);
	ck_assert_uint_eq(r.same, count);
	ck_assert(r.first != NULL);
	ck_assert_uint_eq(r.first->request_id, 7);
	const char *detail;
	MpCode code = answer_status(r.first, &detail);
	ck_assert_int_eq(code, MP_ST(MALFORMED));
	if (strcmp(daemon, "broker") == 0)
		ck_assert_str_eq(detail, "not a broker request");
	else
		ck_assert_str_eq(detail, "field lengths");
	micropay__v1__envelope__free_unpacked(r.first, NULL);
	int logged = log_lines_with(&net, daemon, "") - log_before;
	printf("%s: %d log lines during the flood\n", daemon, logged);
	ck_assert_int_lt(logged, 200); /* counted, not logged one by one */
	attack_end(&a);
}

START_TEST(many_tiny_frames_are_each_answered)
{
	tiny_frames("broker");
	tiny_frames("m1");
}
END_TEST

/* ---- frames at the maximum and one byte over ---- */

/* A frame of exactly max bytes is read and answered (a typed error: its content is junk), and
 * the connection still serves; max + 1 is refused MALFORMED, then the connection closes. */
static void frame_at_max(const char *daemon, const char *cert, const char *key, size_t max)
{
	struct wire w;
	ck_assert(wire_connect(&w, endpoint_of(daemon), ca, cert, key));
	uint8_t *big = big_envelope_frame(max);
	ck_assert_uint_eq(mp_get_be32(big), max);
	ck_assert(wire_write_all(&w, big, 4 + max));
	free(big);
	MpEnvelope *e = wire_recv_within(&w, 20000);
	const char *detail;
	MpCode code = answer_status(e, &detail);
	ck_assert_msg(e != NULL, "%s: a frame of exactly %zu bytes was not answered", daemon, max);
	printf("%s: frame of %zu bytes: %s \"%s\"\n", daemon, max, mp_code_name(code), detail);
	ck_assert_int_eq(code, MP_ST(MALFORMED));
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* still served on the same connection */
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	e = wire_call(&w, &env);
	ck_assert_msg(e != NULL, "%s: connection not served after a maximal frame", daemon);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* one byte over */
	uint8_t hdr[4];
	mp_put_be32(hdr, (uint32_t)max + 1);
	ck_assert(wire_write(&w, hdr, 4));
	e = wire_recv_within(&w, 5000);
	ck_assert_msg(e && e->body_case == MP_BODY(ERROR), "%s: max + 1 not refused", daemon);
	ck_assert_int_eq(e->error->code, MP_ST(MALFORMED));
	char expect[96];
	snprintf(expect, sizeof(expect), "frame above the maximum of %zu bytes", max);
	ck_assert_str_eq(e->error->detail, expect);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(wire_closed_within(&w, 3000));
	wire_close(&w);
}

START_TEST(frames_at_the_maximum_are_served_and_one_byte_over_refused)
{
	struct attack a;
	attack_begin(&a, &net, "m1", "maximal frames", &honest);
	frame_at_max("m1", NULL, NULL, MP_FRAME_MAX_WALLET);
	attack_end(&a);
	attack_begin(&a, &net, "broker", "maximal frames", &honest);
	int64_t before = closed_count("broker", "frame_too_big");
	frame_at_max("broker", NULL, NULL, MP_FRAME_MAX_WALLET);
	ck_assert_int_gt(closed_count("broker", "frame_too_big"), before);
	attack_end(&a);
	/* A merchant's 16 MiB at the broker: the frame and its decoded copy are held while it is
	 * answered, so the bound is the slack plus three times the frame. */
	attack_begin(&a, &net, "broker", "maximal merchant frames", &honest);
	frame_at_max("broker", m1.cert, m1.tls_key, MP_FRAME_MAX_MERCHANT);
	a.slack_kb += 3 * (MP_FRAME_MAX_MERCHANT / 1024);
	attack_end(&a);
}
END_TEST

/* ---- the read budget: many peers each holding most of a maximal frame ---- */

/* micropay_<broker|merchant>_<what>{listener="<broker|wallet>"<labels>} of daemon */
static int64_t listener_metric(const char *daemon, const char *what, const char *labels)
{
	char name[256];
	bool broker = strcmp(daemon, "broker") == 0;
	snprintf(name, sizeof(name), "micropay_%s_%s{listener=\"%s\"%s}",
		 broker ? "broker" : "merchant", what, broker ? "broker" : "wallet", labels);
	return metric(&net, daemon, name);
}

static int64_t budget_waits(const char *daemon)
{
	return listener_metric(daemon, "reads_paused_total", ",reason=\"read_budget\"");
}

static int64_t budget_reserved(const char *daemon)
{
	return listener_metric(daemon, "read_budget_reserved_bytes", "");
}

/* PEERS connections each send all but the last byte of a maximal frame. At most
 * READ_BUDGET / max frames are read past 64 KiB at once (the rest wait, counted); each is
 * closed at its frame deadline; the daemon's peak stays under the budget plus 64 KiB per
 * connection (and slack), where the peers' frames together are three times the budget; the
 * honest customer pays throughout; a whole maximal frame is served afterwards (every
 * reservation released). */
static void partial_frames_within_budget(const char *daemon)
{
	enum { PEERS = 12 };
	struct attack a;
	attack_begin(&a, &net, daemon, "partial maximal frames", &honest);
	int64_t waits_before = budget_waits(daemon);
	int64_t timeouts_before = closed_count(daemon, "frame_timeout");
	ck_assert_int_ge(waits_before, 0);
	size_t len = 4 + MP_FRAME_MAX_WALLET - 1;
	uint8_t *big = big_envelope_frame(MP_FRAME_MAX_WALLET);
	struct wire w[PEERS];
	for (int i = 0; i < PEERS; i++)
		ck_assert(wire_connect(&w[i], endpoint_of(daemon), ca, NULL, NULL));
	size_t took[PEERS];
	flood_fill(w, PEERS, big, len, 1000 * FRAME_S / 2, took);
	free(big);
	int64_t waits = budget_waits(daemon) - waits_before;
	int64_t reserved = budget_reserved(daemon);
	printf("%s: %d peers sending %zu bytes each: %lld waited for the read budget, %lld bytes "
	       "reserved\n",
	       daemon, PEERS, len, (long long)waits, (long long)reserved);
	ck_assert_int_ge(waits, PEERS - READ_BUDGET / MP_FRAME_MAX_WALLET);
	ck_assert_int_le(reserved, READ_BUDGET);
	for (int i = 0; i < PEERS; i++) {
		ck_assert_msg(wire_closed_within(&w[i], 5000 * FRAME_S),
			      "%s: peer %d holding %zu bytes of a frame not closed", daemon, i,
			      took[i]);
		wire_close(&w[i]);
	}
	ck_assert_int_ge(closed_count(daemon, "frame_timeout"), timeouts_before + PEERS);
	ck_assert(log_has(&net, daemon, "waits for the read budget", 3000));
	ck_assert_int_eq(budget_reserved(daemon), 0);
	/* The bound: the budget and 64 KiB per connection, with room for TLS and buffers. */
	a.slack_kb =
	    (READ_BUDGET / 1024 + PEERS * 128 + 4096) * (ATTACK_MEM_SLACK_KB / (32 * 1024));
	attack_end(&a);
	frame_at_max(daemon, NULL, NULL, MP_FRAME_MAX_WALLET);
}

START_TEST(partial_frames_of_many_peers_stay_within_the_read_budget)
{
	partial_frames_within_budget("broker");
	partial_frames_within_budget("m1");
}
END_TEST

/* ---- forged signatures ---- */

/* A copy of s with one bit of its signature flipped. */
static MpSigned *forged(const MpSigned *s)
{
	MpSigned *f = mp_stmt_copy(s);
	ck_assert(f && f->signature.len == MP_SIG_LEN);
	f->signature.data[MP_SIG_LEN - 1] ^= 0x01;
	return f;
}

static void other_id(uint8_t id[MP_ID_LEN])
{
	tchannel_id(&other_ch, id);
}

static void forged_at_broker(void)
{
	/* IssueRequest (3) */
	struct tchannel fresh;
	tchannel_make(&fresh, &tw, 10, 1, m1.mid);
	Micropay__V1__IssueReq ir = MICROPAY__V1__ISSUE_REQ__INIT;
	ir.stmt = forged(fresh.request);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &ir;
	expect_answer(broker_ep, NULL, NULL, &env, MP_ST(BAD_SIG), NULL, "forged IssueRequest");
	mp_stmt_free(ir.stmt);
	tchannel_free(&fresh);
	/* RegisterAccount (19) */
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, key.pk};
	MpSigned *s = mp_stmt_sign(&key, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	Micropay__V1__RegisterAccountReq rr = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	rr.stmt = forged(s);
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &rr;
	expect_answer(broker_ep, NULL, NULL, &env, MP_ST(BAD_SIG), NULL, "forged RegisterAccount");
	mp_stmt_free(rr.stmt);
	mp_stmt_free(s);
	mp_key_free(&key);
	/* Redeem (13) by m1 over its own certificate */
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	struct tclaim claim;
	other_id(claim.channel_id);
	claim.index = 1;
	tchannel_word(&other_ch, 1, claim.w);
	s = tmerchant_redeem(&m1, rid, &claim, 1);
	Micropay__V1__RedeemReq rd = MICROPAY__V1__REDEEM_REQ__INIT;
	rd.stmt = forged(s);
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &rd;
	expect_answer(broker_ep, m1.cert, m1.tls_key, &env, MP_ST(BAD_SIG), NULL, "forged Redeem");
	mp_stmt_free(rd.stmt);
	mp_stmt_free(s);
}

static void forged_at_merchant(void)
{
	uint8_t id[MP_ID_LEN];
	other_id(id);
	/* ChannelCert (1) in an Open */
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	open.cert = forged(other_ch.cert);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &open;
	expect_answer(m1_ep, NULL, NULL, &env, MP_ST(BAD_SIG), NULL, "forged ChannelCert");
	mp_stmt_free(open.cert);
	/* CloseRequest (9): a genuine one would close the channel */
	Micropay__V1__CloseRequest cr = MICROPAY__V1__CLOSE_REQUEST__INIT;
	cr.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	MpSigned *s = mp_stmt_sign(&other_ch.owner, MP_STMT_CLOSE_REQUEST, &cr.base);
	Micropay__V1__CloseReq close = MICROPAY__V1__CLOSE_REQ__INIT;
	close.request = forged(s);
	env.body_case = MP_BODY(CLOSE_REQ);
	env.close_req = &close;
	expect_answer(m1_ep, NULL, NULL, &env, MP_ST(BAD_SIG), NULL, "forged CloseRequest");
	mp_stmt_free(close.request);
	mp_stmt_free(s);
	/* Move (5) in m2's HandoffReq: a genuine one would hand the channel to m2 */
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, m2.mid};
	s = mp_stmt_sign(&other_ch.owner, MP_STMT_MOVE, &mv.base);
	Micropay__V1__HandoffReq hr = MICROPAY__V1__HANDOFF_REQ__INIT;
	hr.move = forged(s);
	hr.requester_cert = tmerchant_stored_cert(&net, "m2");
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &hr;
	expect_answer(m1_ep, m2.cert, m2.tls_key, &env, MP_ST(BAD_SIG), NULL, "forged Move");
	mp_stmt_free(hr.move);
	/* MerchantCert (2): the genuine Move with m2's MerchantCert forged */
	hr.move = s;
	MpSigned *cert = hr.requester_cert;
	hr.requester_cert = forged(cert);
	expect_answer(m1_ep, m2.cert, m2.tls_key, &env, MP_ST(MALFORMED),
		      "requester_cert is not the broker's MerchantCert of the requester",
		      "forged MerchantCert");
	mp_stmt_free(hr.requester_cert);
	mp_stmt_free(cert);
	mp_stmt_free(s);
	/* Transfer (7) to a new owner, forged: a genuine one would cap the channel */
	struct tseg seg;
	tseg_make(&seg, 10);
	uint8_t cert_hash[MP_HASH_LEN];
	mp_stmt_hash(other_ch.cert, cert_hash);
	s = transfer_sign(id, 1, 0, 0, &seg, &other_ch.owner, cert_hash);
	Micropay__V1__TransferReq tr = MICROPAY__V1__TRANSFER_REQ__INIT;
	tr.transfer = forged(s);
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &tr;
	expect_answer(m1_ep, NULL, NULL, &env, MP_ST(BAD_SIG), NULL, "forged Transfer");
	mp_stmt_free(tr.transfer);
	mp_stmt_free(s);
	mp_key_free(&seg.owner);
}

START_TEST(forged_signatures_are_bad_sig_and_change_nothing)
{
	struct attack a;
	attack_begin(&a, &net, "broker", "forged signatures", &honest);
	forged_at_broker();
	attack_end(&a);
	attack_begin(&a, &net, "m1", "forged signatures", &honest);
	forged_at_merchant();
	attack_end(&a);
	/* The channel the forgeries named is still held by m1 and payable there. */
	struct wire m;
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	char order[64];
	uint8_t ref[MP_ID_LEN];
	net_new_order(&net, "m1", 1, order, sizeof(order));
	hex_to_bytes(order, ref, MP_ID_LEN);
	MpEnvelope *e = tchannel_pay(&other_ch, &m, 1, ref, MP_ID_LEN);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Its replay, 500 times pipelined: DUPLICATE_OK each time, nothing paid twice. */
	uint8_t w[MP_HASH_LEN], id[MP_ID_LEN];
	tchannel_word(&other_ch, 1, w);
	other_id(id);
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	pay.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	pay.j = 1;
	pay.w_j = (ProtobufCBinaryData){MP_HASH_LEN, w};
	pay.order_ref = (ProtobufCBinaryData){MP_ID_LEN, ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	uint8_t frame[256];
	size_t framed = env_frame(&env, 9, frame, sizeof(frame));
	ck_assert_uint_gt(framed, 0);
	size_t len = framed - 4;
	struct attack r;
	attack_begin(&r, &net, "m1", "replayed Pay", &honest);
	struct flood_result fr;
	flood_frames(&m, frame, 4 + len, 500, 5000, &fr);
	ck_assert_uint_eq(fr.answers, 500);
	ck_assert_uint_eq(fr.same, 500);
	ck_assert(fr.first && fr.first->body_case == MP_BODY(PAY_ACK));
	printf("replayed Pay: %s, last %u\n", mp_code_name(fr.first->pay_ack->status->code),
	       fr.first->pay_ack->last);
	ck_assert_int_eq(fr.first->pay_ack->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_uint_eq(fr.first->pay_ack->last, 1);
	micropay__v1__envelope__free_unpacked(fr.first, NULL);
	attack_end(&r);
	wire_close(&m);
}
END_TEST

/* ---- forged custody statements ---- */

static MpSigned *close_sign(const struct tchan *c, const struct tmerchant *by, uint32_t index)
{
	uint8_t w[MP_HASH_LEN];
	tchannel_word(&c->ch, index, w);
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w};
	Micropay__V1__Close cl = MICROPAY__V1__CLOSE__INIT;
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	cl.point = &pt;
	return mp_stmt_sign(&by->key, MP_STMT_CLOSE, &cl.base);
}

/* A RefundRequest of c's owner carrying close (or none), its signature forged if asked. */
static void refund_expect(const struct tchan *c, const MpSigned *close, bool forge, MpCode code,
			  const char *what)
{
	uint8_t refund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(refund_id, MP_ID_LEN));
	Micropay__V1__RefundRequest rq = MICROPAY__V1__REFUND_REQUEST__INIT;
	rq.refund_id = (ProtobufCBinaryData){MP_ID_LEN, refund_id};
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	rq.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->tw.account_id};
	rq.close = (MpSigned *)close;
	MpSigned *s = mp_stmt_sign(&c->ch.owner, MP_STMT_REFUND_REQUEST, &rq.base);
	Micropay__V1__RefundReq req = MICROPAY__V1__REFUND_REQ__INIT;
	req.stmt = forge ? forged(s) : s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REFUND_REQ);
	env.refund_req = &req;
	expect_answer(broker_ep, NULL, NULL, &env, code, NULL, what);
	if (forge)
		mp_stmt_free(req.stmt);
	mp_stmt_free(s);
}

START_TEST(forged_custody_statements_are_bad_sig_and_change_nothing)
{
	struct attack a;
	attack_begin(&a, &net, "broker", "forged custody statements", &honest);
	struct tchan c; /* 20 units held by m1, never opened: only the broker sees these */
	tchan_issue(&net, &c, 20, &m1);
	int64_t m1_pending = net_pending(&net, m1.mid_hex);
	int64_t m2_pending = net_pending(&net, m2.mid_hex);
	/* Handoff (6) in m2's claim: m1 -> m2 at 5, forged; m2 claims 8. */
	MpSigned *h1 = tchan_handoff(&c, 1, &m1, &m2, 5, NULL, NULL);
	MpSigned *custody[1] = {forged(h1)};
	struct cclaim claim = {&c, 1, 8, custody, 1};
	MpSigned *redeem = cclaim_redeem(&m2, &claim, 1);
	MpEnvelope *e = redeem_as(&net, &m2, redeem);
	printf("Redeem with a forged Handoff: %s, claim %s\n",
	       mp_code_name(e->redeem_resp->status->code),
	       mp_code_name(e->redeem_resp->results[0]->status));
	expect_claim_result(e, 0, MP_ST(BAD_SIG), 0, NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(redeem);
	/* Transfer (7) and Cap (8) in m1's CapNotice, each forged in turn. */
	struct tseg seg;
	tseg_make(&seg, 10);
	MpSigned *t = tchan_transfer(&c, 1, 0, 10, &seg, &c.ch.owner, NULL);
	uint8_t w10[MP_HASH_LEN];
	tchannel_word(&c.ch, 10, w10);
	MpSigned *cp = tchan_cap(&c, t, 1, 0, 10, w10, &m1);
	MpSigned *ft = forged(t), *fcp = forged(cp);
	MpCode code = cap_notice(&net, &m1, ft, cp, NULL, 0, NULL);
	printf("CapNotice with a forged Transfer: %s\n", mp_code_name(code));
	ck_assert_int_eq(code, MP_ST(BAD_SIG));
	code = cap_notice(&net, &m1, t, fcp, NULL, 0, NULL);
	printf("CapNotice with a forged Cap: %s\n", mp_code_name(code));
	ck_assert_int_eq(code, MP_ST(BAD_SIG));
	/* SegmentClaim (11) of the new owner, forged (the Transfer and Cap genuine). */
	uint8_t payout[MP_ID_LEN];
	memcpy(payout, c.tw.account_id, MP_ID_LEN);
	MpSigned *sc = segment_claim_sign(c.id, 1, t, cp, payout, &seg.owner);
	MpSigned *fsc = forged(sc);
	char detail[200];
	code = segment_claim_send(&net, fsc, NULL, 0, NULL, detail, sizeof(detail));
	printf("forged SegmentClaim: %s \"%s\"\n", mp_code_name(code), detail);
	ck_assert_int_eq(code, MP_ST(BAD_SIG));
	/* RefundRequest (12) forged; a genuine one carrying a forged Close (10) of m1. */
	refund_expect(&c, NULL, true, MP_ST(BAD_SIG), "forged RefundRequest");
	MpSigned *cl = close_sign(&c, &m1, 4), *fcl = forged(cl);
	refund_expect(&c, fcl, false, MP_ST(BAD_SIG), "RefundRequest with a forged Close");
	/* RegisterMerchant (20) of m1 over its own certificate, forged. */
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	char m1_public_ep[128];
	net_read(&net, "m1", "endpoint", m1_public_ep, sizeof(m1_public_ep));
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, m1.key.pk};
	rm.endpoint = m1_public_ep;
	MpSigned *reg = mp_stmt_sign(&m1.key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	Micropay__V1__RegisterMerchantReq rr = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	rr.stmt = forged(reg);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &rr;
	expect_answer(broker_ep, m1.cert, m1.tls_key, &env, MP_ST(BAD_SIG), NULL,
		      "forged RegisterMerchant");
	mp_stmt_free(rr.stmt);
	/* Nothing moved, nothing recorded. */
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), m1_pending);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex), m2_pending);
	json_t *segs = channel_segments(&net, c.id);
	ck_assert_uint_eq(json_array_size(segs), 1); /* segment 0 only */
	json_decref(segs);
	json_t *conflicts = channel_conflicts(&net, c.id);
	ck_assert_uint_eq(json_array_size(conflicts), 0);
	json_decref(conflicts);
	MpSigned *all[] = {h1, custody[0], t, cp, ft, fcp, sc, fsc, cl, fcl, reg};
	stmts_free(all, sizeof(all) / sizeof(all[0]));
	mp_key_free(&seg.owner);
	tchan_release(&c);
	attack_end(&a);
}
END_TEST

/* ---- replays at the broker ---- */

START_TEST(replayed_broker_requests_get_the_stored_answer)
{
	struct attack a;
	attack_begin(&a, &net, "broker", "replayed requests", &honest);
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	/* IssueRequest: DUPLICATE_OK with the same certificate, nothing debited again. */
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(tchannel_issue(&other_ch, &b), MP_ST(DUPLICATE_OK));
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 0);
	/* RegisterAccount: the same account id. */
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, tw.account.pk};
	MpSigned *s = mp_stmt_sign(&tw.account, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	Micropay__V1__RegisterAccountReq rr = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	rr.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &rr;
	MpEnvelope *e = wire_call(&b, &env);
	ck_assert(e && e->body_case == MP_BODY(REGISTER_ACCOUNT_RESP));
	MpCode code = e->register_account_resp->status->code;
	ck_assert_msg(code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK), "%s", mp_code_name(code));
	ck_assert_mem_eq(e->register_account_resp->account_id.data, tw.account_id, MP_ID_LEN);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(s);
	wire_close(&b);
	/* Redeem: the same results, DUPLICATE_OK, credited once. */
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	struct tclaim claim;
	other_id(claim.channel_id);
	claim.index = 1;
	tchannel_word(&other_ch, 1, claim.w);
	s = tmerchant_redeem(&m1, rid, &claim, 1);
	struct wire mw;
	tmerchant_connect(&m1, &mw, broker_ep, ca);
	e = redeem_call(&mw, s);
	MpCode first = e->redeem_resp->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	int64_t pending = net_pending(&net, m1.mid_hex);
	for (int i = 0; i < 20; i++) {
		e = redeem_call(&mw, s);
		ck_assert_int_eq(e->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	printf("Redeem: %s, then DUPLICATE_OK x20\n", mp_code_name(first));
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), pending);
	wire_close(&mw);
	mp_stmt_free(s);
	attack_end(&a);
}
END_TEST

/* ---- paywords for unknown channels, indices beyond n ---- */

static MpEnvelope *pay_call(const uint8_t id[MP_ID_LEN], uint32_t j, uint8_t w[MP_HASH_LEN])
{
	static uint8_t ref[] = "x";
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	pay.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	pay.j = j;
	pay.w_j = (ProtobufCBinaryData){MP_HASH_LEN, w};
	pay.order_ref = (ProtobufCBinaryData){1, ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	struct wire m;
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *e = wire_call(&m, &env);
	wire_close(&m);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	return e;
}

static void expect_pay(const uint8_t id[MP_ID_LEN], uint32_t j, MpCode code, const char *detail)
{
	uint8_t w[MP_HASH_LEN];
	memset(w, 0x42, sizeof(w));
	MpEnvelope *e = pay_call(id, j, w);
	ck_assert_msg(e->pay_ack->status->code == code, "Pay %u: %s (%s)", j,
		      mp_code_name(e->pay_ack->status->code), e->pay_ack->status->detail);
	ck_assert_str_eq(e->pay_ack->status->detail, detail);
	micropay__v1__envelope__free_unpacked(e, NULL);
}

START_TEST(unknown_channels_and_indices_beyond_n_are_refused)
{
	struct attack a;
	attack_begin(&a, &net, "m1", "unknown channels and indices", &honest);
	uint8_t unknown[MP_ID_LEN], id[MP_ID_LEN];
	other_id(id);
	for (int i = 0; i < 200; i++) {
		ck_assert(mp_random_bytes(unknown, MP_ID_LEN));
		expect_pay(unknown, 1, MP_ST(UNKNOWN_CHANNEL), "unknown channel: Open it first");
	}
	expect_pay(id, OTHER_N + 1, MP_ST(OUT_OF_RANGE), "index beyond n");
	expect_pay(id, UINT32_MAX, MP_ST(OUT_OF_RANGE), "index beyond n");
	attack_end(&a);
	attack_begin(&a, &net, "broker", "unknown channels and indices", &honest);
	struct tclaim claims[3];
	ck_assert(mp_random_bytes(claims[0].channel_id, MP_ID_LEN));
	claims[0].index = 1;
	memset(claims[0].w, 0x42, MP_HASH_LEN);
	memcpy(claims[1].channel_id, id, MP_ID_LEN);
	claims[1].index = OTHER_N + 1;
	memset(claims[1].w, 0x42, MP_HASH_LEN);
	memcpy(claims[2].channel_id, id, MP_ID_LEN);
	claims[2].index = UINT32_MAX;
	memset(claims[2].w, 0x42, MP_HASH_LEN);
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	int64_t pending = net_pending(&net, m1.mid_hex);
	MpSigned *s = tmerchant_redeem(&m1, rid, claims, 3);
	struct wire mw;
	tmerchant_connect(&m1, &mw, broker_ep, ca);
	MpEnvelope *e = redeem_call(&mw, s);
	ck_assert_uint_eq(e->redeem_resp->n_results, 3);
	const MpCode expect[3] = {MP_ST(UNKNOWN_CHANNEL), MP_ST(OUT_OF_RANGE), MP_ST(OUT_OF_RANGE)};
	for (int i = 0; i < 3; i++) {
		printf("claim %d: %s\n", i, mp_code_name(e->redeem_resp->results[i]->status));
		ck_assert_int_eq(e->redeem_resp->results[i]->status, expect[i]);
		ck_assert_uint_eq(e->redeem_resp->results[i]->credited_amount, 0);
	}
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&mw);
	mp_stmt_free(s);
	ck_assert_int_eq(net_pending(&net, m1.mid_hex), pending);
	attack_end(&a);
}
END_TEST

/* ---- certificates ---- */

/* The daemon at endpoint refuses the TLS client cert/key: the handshake fails, or (TLS 1.3:
 * the client finishes first) the first request is never answered. */
static bool tls_refused(const char *endpoint, const char *cert, const char *key)
{
	struct wire w;
	if (!wire_connect(&w, endpoint, ca, cert, key))
		return true;
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	MpEnvelope *e = wire_call(&w, &env);
	wire_close(&w);
	if (e)
		micropay__v1__envelope__free_unpacked(e, NULL);
	return e == NULL;
}

START_TEST(bad_client_certificates_are_refused_in_the_handshake)
{
	char dir[700], crt[760], key[760], ca_crt[760], ca_key[760], other_crt[760], other_key[760];
	snprintf(dir, sizeof(dir), "%s/adv-certs", net.dir);
	ck_assert(mkdir(dir, 0700) == 0 || access(dir, F_OK) == 0);
	net_path(&net, "tls/ca.key", ca_key, sizeof(ca_key));
	snprintf(ca_crt, sizeof(ca_crt), "%s", ca);
	snprintf(other_crt, sizeof(other_crt), "%s/other-ca.crt", dir);
	snprintf(other_key, sizeof(other_key), "%s/other-ca.key", dir);
	ck_assert(cert_mint_ca("another CA", other_crt, other_key));
	char cn[40];
	snprintf(cn, sizeof(cn), "m-%s", m1.mid_hex);
	struct {
		const char *name, *ca_crt, *ca_key;
		long from, to;
	} bad[] = {
	    {"expired", ca_crt, ca_key, -2 * 86400L, -86400L},
	    {"not yet valid", ca_crt, ca_key, 86400L, 2 * 86400L},
	    {"from another CA", other_crt, other_key, -3600L, 86400L},
	};
	const char *daemons[] = {"broker", "m1"};
	for (int d = 0; d < 2; d++) {
		struct attack a;
		attack_begin(&a, &net, daemons[d], "bad client certificates", &honest);
		int64_t before = closed_count(daemons[d], "tls_error");
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			snprintf(crt, sizeof(crt), "%s/%zu.crt", dir, i);
			snprintf(key, sizeof(key), "%s/%zu.key", dir, i);
			ck_assert(cert_mint(bad[i].ca_crt, bad[i].ca_key, cn, bad[i].from,
					    bad[i].to, crt, key));
			ck_assert_msg(tls_refused(endpoint_of(daemons[d]), crt, key),
				      "%s accepted a client certificate %s", daemons[d],
				      bad[i].name);
		}
		ck_assert_int_ge(metric_wait(&net, daemons[d],
					     strcmp(daemons[d], "broker") == 0
						 ? "micropay_broker_connections_closed_total{"
						   "listener=\"broker\",reason=\"tls_error\"}"
						 : "micropay_merchant_connections_closed_total{"
						   "listener=\"wallet\",reason=\"tls_error\"}",
					     before + 3, 5000),
				 before + 3);
		ck_assert(log_has(&net, daemons[d], "certificate has expired", 3000));
		ck_assert(log_has(&net, daemons[d], "certificate is not yet valid", 3000));
		ck_assert(
		    log_has(&net, daemons[d], "unable to get local issuer certificate", 3000));
		attack_end(&a);
	}
}
END_TEST

/* ---- the wrong party ---- */

START_TEST(wallets_and_merchants_cannot_act_as_another_merchant)
{
	struct attack a;
	attack_begin(&a, &net, "broker", "impersonation", &honest);
	uint8_t rid[MP_ID_LEN];
	ck_assert(mp_random_bytes(rid, MP_ID_LEN));
	struct tclaim claim;
	other_id(claim.channel_id);
	claim.index = 1;
	tchannel_word(&other_ch, 1, claim.w);
	MpSigned *s = tmerchant_redeem(&m1, rid, &claim, 1); /* m1's genuine Redeem */
	Micropay__V1__RedeemReq rd = MICROPAY__V1__REDEEM_REQ__INIT;
	rd.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &rd;
	/* A wallet (no certificate) presenting m1's Redeem. */
	expect_answer(broker_ep, NULL, NULL, &env, MP_ST(BAD_SIG),
		      "Redeem needs a merchant client certificate", "wallet sends m1's Redeem");
	/* A wallet with a certificate of the CA that names no merchant. */
	char crt[760], key[760], ca_key[760];
	net_path(&net, "tls/ca.key", ca_key, sizeof(ca_key));
	snprintf(crt, sizeof(crt), "%s/wallet-client.crt", net.dir);
	snprintf(key, sizeof(key), "%s/wallet-client.key", net.dir);
	ck_assert(cert_mint(ca, ca_key, "w-attacker", -60, 86400, crt, key));
	expect_answer(broker_ep, crt, key, &env, MP_ST(BAD_SIG),
		      "Redeem needs a merchant client certificate",
		      "wallet certificate sends m1's Redeem");
	/* m2 over its own certificate presenting m1's Redeem. */
	expect_answer(broker_ep, m2.cert, m2.tls_key, &env, MP_ST(BAD_SIG), NULL,
		      "m2 sends m1's Redeem");
	mp_stmt_free(s);
	/* m2 registering as m1. */
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, m2.key.pk};
	rm.endpoint = m1_ep;
	s = mp_stmt_sign(&m2.key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	Micropay__V1__RegisterMerchantReq rr = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	rr.stmt = s;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &rr;
	expect_answer(broker_ep, m2.cert, m2.tls_key, &env, MP_ST(BAD_SIG),
		      "the peer certificate does not name this merchant", "m2 registers as m1");
	mp_stmt_free(s);
	attack_end(&a);
	/* At m1: a wallet asking for a handoff (merchants only, over mutual TLS). */
	attack_begin(&a, &net, "m1", "impersonation", &honest);
	uint8_t id[MP_ID_LEN];
	other_id(id);
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, m2.mid};
	s = mp_stmt_sign(&other_ch.owner, MP_STMT_MOVE, &mv.base);
	Micropay__V1__HandoffReq hr = MICROPAY__V1__HANDOFF_REQ__INIT;
	hr.move = s;
	hr.requester_cert = tmerchant_stored_cert(&net, "m2");
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &hr;
	expect_answer(m1_ep, NULL, NULL, &env, MP_ST(MALFORMED),
		      "a HandoffReq needs mutual TLS with a merchant certificate",
		      "wallet asks for m2's handoff");
	expect_answer(m1_ep, crt, key, &env, MP_ST(MALFORMED),
		      "a HandoffReq needs mutual TLS with a merchant certificate",
		      "wallet certificate asks for m2's handoff");
	mp_stmt_free(hr.requester_cert);
	mp_stmt_free(s);
	attack_end(&a);
}
END_TEST

/* ---- admin sockets from another uid ---- */

START_TEST(admin_sockets_refuse_another_uid)
{
	if (geteuid() != 0) {
		fprintf(stderr, "admin sockets from another uid need root (to become nobody): "
				"skipped\n");
		return;
	}
	ck_assert(chmod(net.dir, 0711) == 0);
	const char *daemons[] = {"broker", "m1", "w1"};
	for (int i = 0; i < 3; i++) {
		struct attack a;
		attack_begin(&a, &net, daemons[i], "admin from another uid", &honest);
		char dir[700], sock[720];
		snprintf(dir, sizeof(dir), "%s/%s", net.dir, daemons[i]);
		snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
		int before = log_lines_with(&net, daemons[i], "admin: refusing peer pid");
		/* Past the file system (directory and socket opened to all): the peer's
		 * credentials decide. */
		struct stat st;
		ck_assert(stat(sock, &st) == 0);
		ck_assert(chmod(dir, 0711) == 0 && chmod(sock, 0666) == 0);
		for (int k = 0; k < 20; k++)
			ck_assert_msg(!admin_status_as(sock, UID_NOBODY, UID_NOBODY, NULL, 0),
				      "%s answered uid nobody", daemons[i]);
		ck_assert(chmod(sock, st.st_mode & 0777) == 0 && chmod(dir, 0700) == 0);
		ck_assert_int_ge(log_lines_with(&net, daemons[i], "admin: refusing peer pid"),
				 before + 20);
		attack_end(&a);
	}
	ck_assert(chmod(net.dir, 0700) == 0);
}
END_TEST

/* ---- the end: exact balances, clean audit ---- */

static int64_t m1_channel_last(const struct tchannel *ch)
{
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *r = admin_ok(&net, "m1", "channels", NULL), *c;
	size_t i;
	int64_t last = -1;
	json_array_foreach(json_object_get(r, "channels"), i, c)
	{
		if (strcmp(json_str(c, "channel_id"), hex) == 0)
			last = json_int(c, "last");
	}
	json_decref(r);
	ck_assert(last >= 0);
	return last;
}

START_TEST(every_acknowledged_payment_is_credited_once_and_the_audit_is_clean)
{
	int64_t paid = m1_channel_last(&honest_ch) + m1_channel_last(&other_ch);
	printf("honest payments acknowledged over the whole suite: %lld units\n", (long long)paid);
	ck_assert_int_gt(paid, 10);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	int64_t pending = net_pending(&net, m1.mid_hex);
	for (int i = 0; i < 100 && pending != paid; i++) {
		usleep(100000);
		json_decref(admin_ok(&net, "m1", "redeem", NULL));
		pending = net_pending(&net, m1.mid_hex);
	}
	ck_assert_int_eq(pending, paid);
	char acct[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tw.account_id, MP_ID_LEN, acct);
	ck_assert_int_eq(net_balance(&net, acct), 0);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex), 0);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	Suite *s = suite_create("adversarial");
	TCase *tc = tcase_create("adversarial");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, slowloris_trickled_bytes_are_cut_at_their_deadline);
	tcase_add_test(tc, connection_flood_beyond_the_limit_is_refused_at_accept);
	tcase_add_test(tc, many_tiny_frames_are_each_answered);
	tcase_add_test(tc, frames_at_the_maximum_are_served_and_one_byte_over_refused);
	tcase_add_test(tc, partial_frames_of_many_peers_stay_within_the_read_budget);
	tcase_add_test(tc, forged_signatures_are_bad_sig_and_change_nothing);
	tcase_add_test(tc, forged_custody_statements_are_bad_sig_and_change_nothing);
	tcase_add_test(tc, replayed_broker_requests_get_the_stored_answer);
	tcase_add_test(tc, unknown_channels_and_indices_beyond_n_are_refused);
	tcase_add_test(tc, bad_client_certificates_are_refused_in_the_handshake);
	tcase_add_test(tc, wallets_and_merchants_cannot_act_as_another_merchant);
	tcase_add_test(tc, admin_sockets_refuse_another_uid);
	tcase_add_test(tc, every_acknowledged_payment_is_credited_once_and_the_audit_is_clean);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
