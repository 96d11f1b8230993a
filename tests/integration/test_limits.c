/* What one peer can make brokerd and merchantd hold is bounded. Each limit is reached by a test
 * client: the excess is refused (or the peer held back) with a logged reason and a metric, the
 * daemon's memory stays bounded (its peak RSS, VmHWM, barely moves), and an honest client is
 * served right after. Also: the k-th BAD_CHAIN answer arrives before the close, and an
 * unsupported version is answered before the close. Limits are short here (deploy/mpnet env). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "harness_net.h"
#include "proto_limits.h"
#include "../check_run.h"

#define IDLE_S	    3
#define HANDSHAKE_S 2
#define MAX_CONNS   8
#define IN_FLIGHT   4

/* Peak memory a refused attack may add. ASan's redzones, shadow and quarantine triple it. */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_SLACK_KB (96 * 1024)
#else
#define MEM_SLACK_KB (32 * 1024)
#endif

static struct net net;
static char ca[700], broker_ep[128], m1_ep[128], m1_crt[700], m1_key[700];
static struct twallet tw;
static struct tchannel ch;
static uint32_t paid; /* the channel's last paid index */

static void fund(const uint8_t account[MP_ID_LEN], uint64_t amount)
{
	char hex[MP_HEX_ID_LEN + 1], params[200];
	mp_hex_encode(account, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 hex, (unsigned long long)amount, hex); /* one funding per account here */
	json_decref(admin_ok(&net, "broker", "account.fund", params));
}

static void setup_net(void)
{
	static char n[16];
	setenv("MP_NO_WALLET", "1", 1);
	snprintf(n, sizeof(n), "%d", IDLE_S);
	setenv("MP_IDLE_TIMEOUT", n, 1);
	setenv("MP_HANDSHAKE_TIMEOUT", "2", 1);
	setenv("MP_MAX_CONNECTIONS", "8", 1);
	setenv("MP_MAX_IN_FLIGHT", "4", 1);
	setenv("MP_OUTPUT_HIGH_WATER", "65536", 1);
	setenv("MP_OUTPUT_LOW_WATER", "16384", 1);
	setenv("MP_REGISTER_RATE", "60", 1);
	setenv("MP_REGISTER_BURST", "3", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	char mid[64], rel[128];
	net_read(&net, "m1", "merchant_id", mid, sizeof(mid));
	snprintf(rel, sizeof(rel), "tls/m-%s.crt", mid);
	net_path(&net, rel, m1_crt, sizeof(m1_crt));
	snprintf(rel, sizeof(rel), "tls/m-%s.key", mid);
	net_path(&net, rel, m1_key, sizeof(m1_key));
	/* One funded wallet with a channel opened at m1 (one RegisterAccount token). */
	uint8_t holder[MP_ID_LEN];
	hex_to_bytes(mid, holder, MP_ID_LEN);
	struct wire b, m;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	fund(tw.account_id, 100000);
	tchannel_make(&ch, &tw, 1000, 1, holder);
	ck_assert_int_eq(tchannel_issue(&ch, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(&ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	wire_close(&m);
}

static void teardown_net(void)
{
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_down(&net);
}

static const char *metric_name(const char *daemon, const char *what, const char *reason, char *out,
			       size_t len)
{
	bool broker = strcmp(daemon, "broker") == 0;
	snprintf(out, len, "micropay_%s_%s{listener=\"%s\",reason=\"%s\"}",
		 broker ? "broker" : "merchant", what, broker ? "broker" : "wallet", reason);
	return out;
}

static int64_t closed_count(const char *daemon, const char *reason)
{
	char name[200];
	return metric(&net, daemon,
		      metric_name(daemon, "connections_closed_total", reason, name, sizeof(name)));
}

/* The closed-connection counter for reason passes `before` (within a few seconds). */
static void counted(const char *daemon, const char *what, const char *reason, int64_t before)
{
	char name[200];
	metric_name(daemon, what, reason, name, sizeof(name));
	int64_t now = metric_wait(&net, daemon, name, before + 1, 6000);
	ck_assert_msg(now > before, "%s: %s did not count (%lld)", daemon, name, (long long)now);
}

/* Memory: the daemon's peak RSS is not above its RSS before the attack plus the slack. */
static void memory_bounded(const char *daemon, int64_t rss_before_kb)
{
	int64_t hwm = daemon_mem_kb(&net, daemon, "VmHWM");
	printf("%s: RSS before %lld kB, peak after %lld kB\n", daemon, (long long)rss_before_kb,
	       (long long)hwm);
	ck_assert_msg(hwm - rss_before_kb < MEM_SLACK_KB,
		      "%s: peak RSS %lld kB, %lld kB above the RSS before the attack", daemon,
		      (long long)hwm, (long long)(hwm - rss_before_kb));
}

static void served(const char *endpoint)
{
	ck_assert_msg(honest_request_answered(endpoint, ca), "honest client not served at %s",
		      endpoint);
}

static const char *endpoint_of(const char *daemon)
{
	return strcmp(daemon, "broker") == 0 ? broker_ep : m1_ep;
}

/* The answer is error{MALFORMED} with detail containing `detail`, then the close. */
static void refused_then_closed(struct wire *w, const char *detail, uint64_t request_id)
{
	MpEnvelope *e = wire_recv_within(w, 5000);
	ck_assert_msg(e != NULL, "no answer before the close (expected '%s')", detail);
	ck_assert_int_eq(e->body_case, MP_BODY(ERROR));
	ck_assert_int_eq(e->error->code, MP_ST(MALFORMED));
	ck_assert_msg(strstr(e->error->detail, detail), "detail '%s', expected '%s'",
		      e->error->detail, detail);
	ck_assert_uint_eq(e->request_id, request_id);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_msg(wire_closed_within(w, 3000), "connection still open after the refusal");
}

/* ---- decoded size and item counts: first, while the daemons' peak memory is low ---- */

static uint8_t *segment_bomb(size_t n, size_t *len)
{
	uint8_t *b = malloc(2 * n + 16);
	size_t k = 0, inner = 2 * n;
	b[k++] = 0x08; /* version 1 */
	b[k++] = 0x01;
	b[k++] = 0xA2; /* open_req (field 20), length-delimited */
	b[k++] = 0x01;
	for (size_t v = inner;; v >>= 7) {
		b[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	for (size_t i = 0; i < n; i++) {
		b[k++] = 0x12; /* segments (field 2), empty */
		b[k++] = 0x00;
	}
	*len = k;
	return b;
}

static void decode_bomb(const char *daemon)
{
	int64_t before = closed_count(daemon, "decode_budget");
	int64_t rss = daemon_mem_kb(&net, daemon, "VmRSS");
	size_t len;
	uint8_t *bomb = segment_bomb((MP_FRAME_MAX_WALLET - 16) / 2, &len); /* just below 1 MiB */
	struct wire w;
	ck_assert(wire_connect(&w, endpoint_of(daemon), ca, NULL, NULL));
	ck_assert(wire_send_frame(&w, bomb, len));
	free(bomb);
	refused_then_closed(&w, "decoded size above the budget", 0);
	wire_close(&w);
	ck_assert(log_has(&net, daemon, "envelope refused: decoded size above the budget", 3000));
	counted(daemon, "connections_closed_total", "decode_budget", before);
	memory_bounded(daemon, rss);
	served(endpoint_of(daemon));
}

START_TEST(decoded_size_bomb_is_refused)
{
	decode_bomb("broker");
	decode_bomb("m1");
}
END_TEST

START_TEST(too_many_items_are_refused)
{
	const char *daemons[] = {"broker", "m1"};
	for (int i = 0; i < 2; i++) {
		size_t len;
		uint8_t *msg = segment_bomb(MP_MAX_SEGMENT_STMTS + 1, &len);
		struct wire w;
		ck_assert(wire_connect(&w, endpoint_of(daemons[i]), ca, NULL, NULL));
		ck_assert(wire_send_frame(&w, msg, len));
		free(msg);
		refused_then_closed(&w, "31 items in OpenReq.segments, at most 30", 0);
		wire_close(&w);
		ck_assert(log_has(&net, daemons[i], "31 items in OpenReq.segments", 3000));
		served(endpoint_of(daemons[i]));
	}
}
END_TEST

/* ---- frame maximum per role ---- */

static void announce(struct wire *w, uint32_t len)
{
	uint8_t hdr[4];
	mp_put_be32(hdr, len);
	ck_assert(wire_write(w, hdr, 4));
}

START_TEST(frame_maximum_depends_on_the_peer)
{
	int64_t rss = daemon_mem_kb(&net, "broker", "VmRSS");
	int64_t before = closed_count("broker", "frame_too_big");
	struct wire w;
	/* A wallet (no certificate) at the broker: 1 MiB. */
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	announce(&w, MP_FRAME_MAX_WALLET + 1);
	refused_then_closed(&w, "frame above the maximum of 1048576 bytes", 0);
	wire_close(&w);
	counted("broker", "connections_closed_total", "frame_too_big", before);
	/* A merchant (its certificate) at the broker: a 3 MiB frame is read and answered... */
	ck_assert(wire_connect(&w, broker_ep, ca, m1_crt, m1_key));
	uint8_t *big = big_envelope_frame(3u << 20);
	ck_assert(wire_write_all(&w, big, 4 + mp_get_be32(big)));
	free(big);
	MpEnvelope *e = wire_recv_within(&w, 10000);
	ck_assert_msg(e != NULL, "a merchant's 3 MiB frame was not answered");
	ck_assert_int_eq(e->body_case, MP_BODY(ERROR));
	ck_assert_str_eq(e->error->detail, "not a broker request");
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* ... and 16 MiB + 1 is refused. */
	announce(&w, MP_FRAME_MAX_MERCHANT + 1);
	refused_then_closed(&w, "frame above the maximum of 16777216 bytes", 0);
	wire_close(&w);
	/* merchantd's listener faces wallets only: 1 MiB, whatever the client presents. */
	ck_assert(wire_connect(&w, m1_ep, ca, m1_crt, m1_key));
	announce(&w, MP_FRAME_MAX_WALLET + 1);
	refused_then_closed(&w, "frame above the maximum of 1048576 bytes", 0);
	wire_close(&w);
	ck_assert(log_has(&net, "broker", "frame length above the maximum (1048576 bytes)", 3000));
	ck_assert(log_has(&net, "broker", "frame length above the maximum (16777216 bytes)", 3000));
	ck_assert(log_has(&net, "m1", "frame length above the maximum (1048576 bytes)", 3000));
	memory_bounded("broker", rss);
	served(broker_ep);
	served(m1_ep);
}
END_TEST

/* ---- timeouts ---- */

static void handshake_timeout(const char *daemon)
{
	int64_t before = closed_count(daemon, "handshake_timeout");
	int64_t rss = daemon_mem_kb(&net, daemon, "VmRSS");
	/* Silent: connect and send nothing. */
	time_t t0 = time(NULL);
	int fd = tcp_open(endpoint_of(daemon));
	ck_assert_msg(tcp_closed_within(fd, (HANDSHAKE_S + 2) * 1000), "%s kept a silent client",
		      daemon);
	ck_assert_int_ge(time(NULL) - t0, HANDSHAKE_S - 1);
	close(fd);
	/* Slow: a TLS record header announcing a 512-byte handshake message, then a byte every
	 * 300 ms: never idle for long, never done in time. */
	fd = tcp_open(endpoint_of(daemon));
	ck_assert_int_eq(write(fd, "\x16\x03\x01\x02\x00", 5), 5);
	bool closed = false;
	for (int i = 0; i < 10 * (HANDSHAKE_S + 2) && !closed; i++) {
		if (write(fd, "\x01", 1) != 1) {
			closed = true;
			break;
		}
		closed = tcp_closed_within(fd, 300);
	}
	ck_assert_msg(closed, "%s kept a client trickling its handshake", daemon);
	close(fd);
	ck_assert(log_has(&net, daemon, "TLS handshake timed out", 3000));
	counted(daemon, "connections_closed_total", "handshake_timeout", before + 1);
	memory_bounded(daemon, rss);
	served(endpoint_of(daemon));
}

START_TEST(handshake_timeout_closes_raw_connections)
{
	handshake_timeout("broker");
	handshake_timeout("m1");
}
END_TEST

START_TEST(idle_timeout_closes_silent_tls_clients)
{
	const char *daemons[] = {"broker", "m1"};
	for (int i = 0; i < 2; i++) {
		int64_t before = closed_count(daemons[i], "idle_timeout");
		int64_t rss = daemon_mem_kb(&net, daemons[i], "VmRSS");
		struct wire w;
		ck_assert(wire_connect(&w, endpoint_of(daemons[i]), ca, NULL, NULL));
		time_t t0 = time(NULL);
		ck_assert_msg(wire_closed_within(&w, (IDLE_S + 2) * 1000), "%s kept an idle client",
			      daemons[i]);
		ck_assert_int_ge(time(NULL) - t0, IDLE_S - 1);
		wire_close(&w);
		ck_assert(log_has(&net, daemons[i], "closing connection: idle timeout", 3000));
		counted(daemons[i], "connections_closed_total", "idle_timeout", before);
		memory_bounded(daemons[i], rss);
		served(endpoint_of(daemons[i]));
	}
}
END_TEST

/* ---- connections per listener ---- */

static void too_many_connections(const char *daemon)
{
	char name[200];
	snprintf(
	    name, sizeof(name),
	    "micropay_%s_connections_refused_total{listener=\"%s\",reason=\"max_connections\"}",
	    strcmp(daemon, "broker") == 0 ? "broker" : "merchant",
	    strcmp(daemon, "broker") == 0 ? "broker" : "wallet");
	int64_t before = metric(&net, daemon, name);
	int64_t rss = daemon_mem_kb(&net, daemon, "VmRSS");
	struct wire w[MAX_CONNS + 1];
	int opened = 0;
	bool refused = false;
	while (opened <= MAX_CONNS && !refused) {
		refused = !wire_connect(&w[opened], endpoint_of(daemon), ca, NULL, NULL);
		opened += !refused;
	}
	ck_assert_msg(refused, "%s accepted %d TLS connections", daemon, opened);
	ck_assert_int_ge(opened, 1);
	ck_assert(log_has(&net, daemon, "refusing connection from 127.0.0.1", 3000));
	ck_assert_int_gt(metric(&net, daemon, name), before);
	/* The connections held are all served. */
	for (int i = 0; i < opened; i++) {
		Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
		MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
		env.body_case = MP_BODY(PAY_REQ);
		env.pay_req = &pay;
		MpEnvelope *r = wire_call(&w[i], &env);
		ck_assert_msg(r != NULL, "held connection %d not served", i);
		micropay__v1__envelope__free_unpacked(r, NULL);
		wire_close(&w[i]);
	}
	memory_bounded(daemon, rss);
	/* Once they are gone a new client is served again. */
	bool ok = false;
	for (int i = 0; i < 30 && !ok; i++) {
		ok = honest_request_answered(endpoint_of(daemon), ca);
		if (!ok)
			usleep(100000);
	}
	ck_assert_msg(ok, "%s does not serve again after the connections closed", daemon);
}

START_TEST(connections_above_the_maximum_are_refused)
{
	too_many_connections("broker");
	too_many_connections("m1");
}
END_TEST

/* ---- requests in flight ---- */

static MpEnvelope *pay_env(uint32_t j, Micropay__V1__PayReq *req, uint8_t *w, uint8_t *id)
{
	static const uint8_t ref[] = "no-such-order";
	tchannel_word(&ch, j, w);
	tchannel_id(&ch, id);
	micropay__v1__pay_req__init(req);
	req->channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	req->j = j;
	req->w_j = (ProtobufCBinaryData){MP_HASH_LEN, w};
	req->order_ref = (ProtobufCBinaryData){sizeof(ref) - 1, (uint8_t *)ref};
	MpEnvelope *env = calloc(1, sizeof(*env));
	micropay__v1__envelope__init(env);
	env->body_case = MP_BODY(PAY_REQ);
	env->pay_req = req;
	return env;
}

START_TEST(requests_above_max_in_flight_wait)
{
	enum { N = 3 * IN_FLIGHT };
	const char *paused =
	    "micropay_merchant_reads_paused_total{listener=\"wallet\",reason=\"max_in_flight\"}";
	int64_t before = metric(&net, "m1", paused);
	int64_t rss = daemon_mem_kb(&net, "m1", "VmRSS");
	Micropay__V1__PayReq reqs[N];
	uint8_t words[N][MP_HASH_LEN], ids[N][MP_ID_LEN];
	MpEnvelope *envs[N];
	for (int i = 0; i < N; i++)
		envs[i] = pay_env(paid + 1 + (uint32_t)i, &reqs[i], words[i], ids[i]);
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	ck_assert(wire_send_pipelined(&w, envs, N, 100));
	/* Every Pay is answered, in order: the ones above the limit waited, none was lost. */
	for (int i = 0; i < N; i++) {
		MpEnvelope *a = wire_recv_within(&w, 5000);
		ck_assert_msg(a != NULL, "Pay %d not answered", i);
		ck_assert_int_eq(a->body_case, MP_BODY(PAY_ACK));
		ck_assert_uint_eq(a->request_id, 100 + (uint64_t)i);
		ck_assert_int_eq(a->pay_ack->status->code, MP_ST(UNDERPAID));
		ck_assert_uint_eq(a->pay_ack->last, paid + 1 + (uint32_t)i);
		micropay__v1__envelope__free_unpacked(a, NULL);
		free(envs[i]);
	}
	paid += N;
	wire_close(&w);
	ck_assert_int_gt(metric(&net, "m1", paused), before);
	ck_assert(log_has(&net, "m1", "requests in flight (max_in_flight", 3000));
	memory_bounded("m1", rss);
	served(m1_ep);
}
END_TEST

/* ---- a peer that never reads its answers ---- */

START_TEST(peer_not_reading_its_answers_is_held_back_then_closed)
{
	const char *paused =
	    "micropay_broker_reads_paused_total{listener=\"broker\",reason=\"output_high_water\"}";
	int64_t before = metric(&net, "broker", paused);
	int64_t closed_before = closed_count("broker", "write_timeout");
	int64_t rss = daemon_mem_kb(&net, "broker", "VmRSS");
	struct wire w;
	ck_assert(wire_open(&w, broker_ep, ca, NULL, NULL, 4096));
	/* Each request is answered with an error of about 30 bytes the client never reads. */
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = 1;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	uint8_t frame[64];
	size_t len = micropay__v1__envelope__get_packed_size(&env);
	mp_put_be32(frame, (uint32_t)len);
	micropay__v1__envelope__pack(&env, frame + 4);
	size_t sent = wire_flood(&w, frame, 4 + len, 1000);
	ck_assert_uint_gt(sent, 0);
	ck_assert_int_gt(metric_wait(&net, "broker", paused, before + 1, 3000), before);
	ck_assert(log_has(&net, "broker", "bytes of answers unread (output_high_water", 3000));
	memory_bounded("broker", rss);
	/* Others are served meanwhile. */
	served(broker_ep);
	/* The write timeout ends it. */
	counted("broker", "connections_closed_total", "write_timeout", closed_before);
	ck_assert(log_has(&net, "broker", "peer does not read its answers", 3000));
	wire_close(&w);
	served(broker_ep);
	printf("flood: %zu bytes of requests written before the broker stopped reading\n", sent);
}
END_TEST

/* ---- k BAD_CHAIN answers, then the close ---- */

static MpEnvelope *junk_pay(Micropay__V1__PayReq *req, uint8_t *w, uint8_t *id)
{
	MpEnvelope *env = pay_env(ch.n, req, w, id);
	memset(w, 0x5a, MP_HASH_LEN); /* not the word at index n */
	return env;
}

START_TEST(three_junk_pays_get_three_answers)
{
	/* One at a time. */
	struct wire w;
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	for (int i = 0; i < 3; i++) {
		Micropay__V1__PayReq req;
		uint8_t word[MP_HASH_LEN], id[MP_ID_LEN];
		MpEnvelope *env = junk_pay(&req, word, id);
		MpEnvelope *a = wire_call(&w, env);
		ck_assert_msg(a != NULL, "junk Pay %d got no answer", i + 1);
		ck_assert_int_eq(a->body_case, MP_BODY(PAY_ACK));
		ck_assert_int_eq(a->pay_ack->status->code, MP_ST(BAD_CHAIN));
		micropay__v1__envelope__free_unpacked(a, NULL);
		free(env);
	}
	ck_assert_msg(wire_closed_within(&w, 3000), "still open after 3 BAD_CHAIN answers");
	wire_close(&w);
	/* Pipelined, four at once: three answers, then the close (the fourth is not served). */
	ck_assert(wire_connect(&w, m1_ep, ca, NULL, NULL));
	Micropay__V1__PayReq reqs[4];
	uint8_t words[4][MP_HASH_LEN], ids[4][MP_ID_LEN];
	MpEnvelope *envs[4];
	for (int i = 0; i < 4; i++)
		envs[i] = junk_pay(&reqs[i], words[i], ids[i]);
	ck_assert(wire_send_pipelined(&w, envs, 4, 1));
	for (int i = 0; i < 3; i++) {
		MpEnvelope *a = wire_recv_within(&w, 5000);
		ck_assert_msg(a != NULL, "pipelined junk Pay %d got no answer", i + 1);
		ck_assert_uint_eq(a->request_id, (uint64_t)i + 1);
		ck_assert_int_eq(a->pay_ack->status->code, MP_ST(BAD_CHAIN));
		micropay__v1__envelope__free_unpacked(a, NULL);
	}
	ck_assert_msg(wire_closed_within(&w, 3000), "still open after 3 pipelined BAD_CHAIN");
	for (int i = 0; i < 4; i++)
		free(envs[i]);
	wire_close(&w);
	ck_assert(log_has(&net, "m1", "closing once the answers are sent", 3000));
	ck_assert(log_has(&net, "m1", "3 BAD_CHAIN answers", 3000));
	served(m1_ep);
}
END_TEST

START_TEST(unsupported_version_is_answered_then_closed)
{
	const char *daemons[] = {"broker", "m1"};
	for (int i = 0; i < 2; i++) {
		int64_t before = closed_count(daemons[i], "bad_version");
		struct wire w;
		ck_assert(wire_connect(&w, endpoint_of(daemons[i]), ca, NULL, NULL));
		Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
		MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
		env.version = 2;
		env.request_id = 77;
		env.body_case = MP_BODY(PAY_REQ);
		env.pay_req = &pay;
		ck_assert(wire_send_env(&w, &env));
		refused_then_closed(&w, "unsupported version", 77);
		wire_close(&w);
		ck_assert(log_has(&net, daemons[i], "protocol version 2, expected 1", 3000));
		counted(daemons[i], "connections_closed_total", "bad_version", before);
		served(endpoint_of(daemons[i]));
	}
}
END_TEST

/* ---- RegisterAccount per address ---- */

START_TEST(register_account_flood_is_limited)
{
	const char *refused = "micropay_broker_register_refused_total{reason=\"register_rate\"}";
	int64_t before = metric(&net, "broker", refused);
	int64_t rss = daemon_mem_kb(&net, "broker", "VmRSS");
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	int ok = 0, limited = 0;
	char detail[256] = "";
	for (int i = 0; i < 10; i++) {
		MpCode code = register_fresh_account(&b, detail, sizeof(detail));
		ck_assert_msg(code == MP_ST(OK) || code == MP_ST(LIMIT), "got %s",
			      mp_code_name(code));
		if (code == MP_ST(LIMIT)) {
			limited++;
			ck_assert_str_eq(detail, "RegisterAccount rate per address: at most 60 per "
						 "minute, bursts of 3");
		} else {
			ck_assert_int_eq(limited, 0); /* no token came back within the flood */
			ok++;
		}
	}
	ck_assert_int_le(ok, 3);
	ck_assert_int_ge(limited, 7);
	ck_assert(log_has(&net, "broker", "RegisterAccount refused: LIMIT", 3000));
	ck_assert_int_ge(metric(&net, "broker", refused), before + limited);
	memory_bounded("broker", rss);
	/* Other requests from the same address are served at once... */
	struct tchannel other;
	uint8_t holder[MP_ID_LEN];
	memcpy(holder, ch.holder0, MP_ID_LEN);
	tchannel_make(&other, &tw, 10, 1, holder);
	ck_assert_int_eq(tchannel_issue(&other, &b), MP_ST(OK));
	tchannel_free(&other);
	/* ... and a registration again once a token has come back (one a second). */
	sleep(2);
	ck_assert_int_eq(register_fresh_account(&b, detail, sizeof(detail)), MP_ST(OK));
	wire_close(&b);
}
END_TEST

/* Each daemon refuses a limit out of its range, naming the file, the key and the range. */
static void config_refused(const char *daemon, const char *sed, const char *expect)
{
	char cfg[700], bad[700], cmd[2400], out[2048] = "";
	snprintf(cfg, sizeof(cfg), "%s/%s/config.ini", net.dir, daemon);
	snprintf(bad, sizeof(bad), "%s/%s/bad.ini", net.dir, daemon);
	snprintf(cmd, sizeof(cmd), "sed -e '%s' '%s' > '%s'", sed, cfg, bad);
	ck_assert_int_eq(system(cmd), 0);
	const char *binary = strcmp(daemon, "broker") == 0 ? "brokerd" : "merchantd";
	snprintf(cmd, sizeof(cmd), "timeout 10 '%s/%s/%s' -c '%s' 2>&1", getenv("MP_BUILD"), binary,
		 binary, bad);
	FILE *p = popen(cmd, "r");
	ck_assert(p != NULL);
	size_t got = fread(out, 1, sizeof(out) - 1, p);
	out[got] = '\0';
	int rc = pclose(p);
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "%s accepted %s", binary, sed);
	/* "file:line: ..." for a value out of its declared range, "file: ..." for a relation */
	ck_assert_msg(strstr(out, bad) != NULL && strstr(out, expect) != NULL, "got: %s", out);
}

START_TEST(limits_out_of_range_are_refused)
{
	config_refused("broker", "s/^max_in_flight = .*/max_in_flight = 0/",
		       "[limits] max_in_flight = 0 is out of range: expected 1 .. 65536");
	config_refused("broker", "s/^register_rate = .*/register_rate = 0/",
		       "[limits] register_rate = 0 is out of range: expected 1 .. 1000000");
	config_refused("broker", "s/^idle_timeout = .*/idle_timeout = 0/",
		       "[broker] idle_timeout = 0 is out of range: expected 1 .. 86400");
	config_refused("m1", "s/^output_low_water = .*/output_low_water = 65536/",
		       "[limits] output_low_water (65536) must be below output_high_water (65536)");
	config_refused("m1", "s/^handshake_timeout = .*/handshake_timeout = 7200/",
		       "[limits] handshake_timeout = 7200 is out of range: expected 1 .. 3600");
	config_refused("broker", "s/^frame_timeout = .*/frame_timeout = 0/",
		       "[limits] frame_timeout = 0 is out of range: expected 1 .. 3600");
}
END_TEST

START_TEST(audit_is_clean)
{
	json_t *a = admin_ok(&net, "broker", "audit", NULL);
	char *text = json_dumps(a, JSON_COMPACT);
	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "audit not clean: %s", text);
	free(text);
	json_decref(a);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("limits");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, decoded_size_bomb_is_refused);
	tcase_add_test(tc, too_many_items_are_refused);
	tcase_add_test(tc, frame_maximum_depends_on_the_peer);
	tcase_add_test(tc, handshake_timeout_closes_raw_connections);
	tcase_add_test(tc, idle_timeout_closes_silent_tls_clients);
	tcase_add_test(tc, connections_above_the_maximum_are_refused);
	tcase_add_test(tc, requests_above_max_in_flight_wait);
	tcase_add_test(tc, peer_not_reading_its_answers_is_held_back_then_closed);
	tcase_add_test(tc, three_junk_pays_get_three_answers);
	tcase_add_test(tc, unsupported_version_is_answered_then_closed);
	tcase_add_test(tc, register_account_flood_is_limited);
	tcase_add_test(tc, limits_out_of_range_are_refused);
	tcase_add_test(tc, audit_is_clean);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
