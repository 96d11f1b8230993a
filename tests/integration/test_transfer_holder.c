/* Customer-to-customer transfer, holder side, against the real daemons (deploy/mpnet, two
 * merchants): a test wallet speaking the wire protocol byte by byte plays customer A (the
 * channel's owner) and customer B (the new segment's owner, with its own chain). The holder m1
 * answers a TransferReq with a Cap (checked field by field and under m1's key), returns the
 * same bytes on a retry, refuses another Transfer for the capped segment with the stored pair,
 * refuses A's paywords (STALE_SEGMENT carrying the Cap) and accepts B's (relative indexing,
 * MAX_JUMP), refuses bad Transfers with the documented status and changes nothing, keeps the
 * segment over a restart, enforces MAX_SEGMENTS, and hands the channel to m2 on a Move signed
 * by B, after which m2 refuses A's paywords too. m1's Cap outbox delivers the Cap to the broker
 * (or keeps a CONFLICT for the operator), and redemption credits each merchant its range across
 * the segments, in steps too. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "../check_run.h"

#define MAX_JUMP 4096 /* merchantd's default */

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant tm[3]; /* 1, 2 */
static char ep[3][128];

static void setup_net(void)
{
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	for (int i = 1; i <= 2; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&tm[i], &net, name);
		net_read(&net, name, "endpoint", ep[i], sizeof(ep[i]));
	}
}

static void teardown_net(void)
{
	for (int i = 1; i <= 2; i++)
		tmerchant_free(&tm[i]);
	net_down(&net);
}

static void fund_hex(const char *account_hex, uint64_t amount)
{
	char params[200], fund[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 account_hex, (unsigned long long)amount, fund);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
}

/* ---- customers ---- */

/* A segment's owner: its key and chain (B's offer). start is the Cap's index once known. */
struct towner {
	struct mp_key key;
	uint8_t seed[MP_SEED_LEN], nonce[MP_NONCE_LEN], root[MP_HASH_LEN];
	uint32_t len, start;
};

static void towner_make(struct towner *o, uint32_t len)
{
	uint8_t sk[MP_SK_LEN];
	ck_assert(mp_key_generate(&o->key, sk));
	ck_assert(mp_random_bytes(o->seed, sizeof(o->seed)));
	ck_assert(mp_random_bytes(o->nonce, sizeof(o->nonce)));
	o->len = len;
	o->start = 0;
	struct mp_hasher *h = mp_hasher_new();
	ck_assert_int_eq(mp_chain_generate(h, o->seed, o->nonce, len, 0, NULL, NULL, o->root), 0);
	mp_hasher_free(h);
}

/* The word paying absolute index j of the owner's segment: u_{j - start}. */
static void towner_word(const struct towner *o, uint32_t j, uint8_t out[MP_HASH_LEN])
{
	struct mp_hasher *h = mp_hasher_new();
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, o->seed, o->nonce, top);
	mp_chain_walk(h, o->nonce, o->len, top, j - o->start, out);
	mp_hasher_free(h);
}

struct setup {
	struct twallet tw;
	struct tchannel ch; /* A's segment 0 */
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	uint8_t cert_hash[MP_HASH_LEN];
	MpSigned *holder_cert;
	uint64_t pay_until;
};

static void make_channel(struct setup *s, uint32_t n)
{
	struct wire broker;
	ck_assert(wire_connect(&broker, broker_ep, ca, NULL, NULL));
	twallet_register(&s->tw, &broker);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(s->tw.account_id, MP_ID_LEN, hex);
	fund_hex(hex, n);
	tchannel_make(&s->ch, &s->tw, n, 1, tm[1].mid);
	ck_assert_int_eq(tchannel_issue(&s->ch, &broker), MP_ST(OK));
	wire_close(&broker);
	tchannel_id(&s->ch, s->id);
	mp_hex_encode(s->id, MP_ID_LEN, s->hex);
	mp_stmt_hash(s->ch.cert, s->cert_hash);
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, s->ch.cert->body.data, s->ch.cert->body.len);
	ck_assert(cc != NULL);
	s->pay_until = cc->pay_until;
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
}

static void free_setup(struct setup *s)
{
	mp_stmt_free(s->holder_cert);
	tchannel_free(&s->ch);
	mp_key_free(&s->tw.account);
}

/* Open at merchant m; with a Move (and m1 as the holder hint) and the pairs when given. */
static MpEnvelope *open_at(struct setup *s, struct wire *w, int m, const MpSigned *move,
			   MpSigned **segments, size_t n_segments)
{
	ck_assert(wire_connect(w, ep[m], ca, NULL, NULL));
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = s->ch.cert;
	req.segments = segments;
	req.n_segments = n_segments;
	if (move) {
		req.move = (MpSigned *)move;
		req.holder_hint = (ProtobufCBinaryData){MP_ID_LEN, tm[1].mid};
		req.holder_cert = s->holder_cert;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(OPEN_ACK), "no OpenAck from m%d", m);
	if (m == 1 && e->open_ack->status->code == MP_ST(OK) && !s->holder_cert)
		s->holder_cert = mp_stmt_copy(e->open_ack->holder_cert);
	return e;
}

static void open_ok(struct setup *s, struct wire *w, int m)
{
	MpEnvelope *e = open_at(s, w, m, NULL, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
}

static MpEnvelope *pay_word(struct setup *s, struct wire *w, uint32_t seg, uint32_t j,
			    const uint8_t word[MP_HASH_LEN])
{
	static const uint8_t ref[4] = {7, 7, 7, 7};
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, s->id};
	req.seg_seq = seg;
	req.j = j;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)word};
	req.order_ref = (ProtobufCBinaryData){sizeof(ref), (uint8_t *)ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck for j=%u", j);
	return e;
}

static MpCode code_of(MpEnvelope *e)
{
	MpCode c = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return c;
}

/* A's Pay of index j in segment 0. */
static MpCode pay_a(struct setup *s, struct wire *w, uint32_t j)
{
	uint8_t word[MP_HASH_LEN];
	tchannel_word(&s->ch, j, word);
	return code_of(pay_word(s, w, 0, j, word));
}

/* The owner o's Pay of index j in segment seg. */
static MpCode pay_o(struct setup *s, struct wire *w, const struct towner *o, uint32_t seg,
		    uint32_t j)
{
	uint8_t word[MP_HASH_LEN];
	towner_word(o, j, word);
	return code_of(pay_word(s, w, seg, j, word));
}

static bool accepted(MpCode c)
{
	return c == MP_ST(OK) || c == MP_ST(UNDERPAID);
}

struct xfer {
	uint32_t seg, epoch, declared_last, len;
	const uint8_t *prev_hash;
	uint64_t valid_until;
};

static MpSigned *sign_transfer(const struct setup *s, const struct mp_key *signer,
			       const struct towner *to, const struct xfer *x)
{
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->id};
	t.new_seg_seq = x->seg;
	t.holder_epoch = x->epoch;
	t.declared_last = x->declared_last;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)to->key.pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, (uint8_t *)to->nonce};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)to->root};
	t.new_len = x->len;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)x->prev_hash};
	t.valid_until = x->valid_until ? x->valid_until : s->pay_until - 3600;
	MpSigned *st = mp_stmt_sign(signer, MP_STMT_TRANSFER, &t.base);
	ck_assert(st != NULL);
	return st;
}

static MpEnvelope *transfer_call(struct wire *w, const MpSigned *transfer)
{
	Micropay__V1__TransferReq req = MICROPAY__V1__TRANSFER_REQ__INIT;
	req.transfer = (MpSigned *)transfer;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(TRANSFER_RESP), "no TransferResp");
	return e;
}

static MpCode transfer_code(struct wire *w, const MpSigned *transfer, const char *what)
{
	MpEnvelope *e = transfer_call(w, transfer);
	MpCode c = e->transfer_resp->status->code;
	fprintf(stderr, "transfer (%s): %s %s\n", what, mp_code_name(c),
		e->transfer_resp->status->detail);
	ck_assert_msg(e->transfer_resp->cap == NULL, "a Cap with a refusal (%s)", what);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return c;
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	size_t la, lb;
	uint8_t *x = a ? mp_stmt_encode(a, &la) : NULL, *y = b ? mp_stmt_encode(b, &lb) : NULL;
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

/* The Cap verifies under m1's key and says what it must. */
static void check_cap(const struct setup *s, const MpSigned *cap, const MpSigned *transfer,
		      uint32_t seg, uint32_t hseq, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(
	    mp_stmt_open(cap, MP_STMT_CAP, tm[1].key.pk, &micropay__v1__cap__descriptor, &body),
	    MP_ST(OK));
	Micropay__V1__Cap *c = (Micropay__V1__Cap *)body;
	uint8_t th[MP_HASH_LEN];
	mp_stmt_hash(transfer, th);
	ck_assert(mp_bytes_len_is(c->channel_id, MP_ID_LEN) &&
		  !memcmp(c->channel_id.data, s->id, MP_ID_LEN));
	ck_assert_int_eq(c->new_seg_seq, seg);
	ck_assert(mp_bytes_len_is(c->transfer_hash, MP_HASH_LEN) &&
		  !memcmp(c->transfer_hash.data, th, MP_HASH_LEN));
	ck_assert_int_eq(c->hseq, hseq);
	ck_assert(c->point != NULL);
	ck_assert_int_eq(c->point->seg_seq, seg - 1);
	ck_assert_int_eq(c->point->index, index);
	ck_assert(mp_bytes_len_is(c->point->w, MP_HASH_LEN) &&
		  !memcmp(c->point->w.data, w, MP_HASH_LEN));
	protobuf_c_message_free_unpacked(body, NULL);
}

/* m1's view of the channel (admin `channels`). */
static void expect_segment(int m, const struct setup *s, int64_t segment, int64_t seg_start,
			   int64_t last)
{
	char name[8];
	snprintf(name, sizeof(name), "m%d", m);
	json_t *r = admin_ok(&net, name, "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	bool found = false;
	for (size_t i = 0; i < json_array_size(list) && !found; i++) {
		json_t *c = json_array_get(list, i);
		if (strcmp(json_str(c, "channel_id"), s->hex) != 0)
			continue;
		found = true;
		ck_assert_msg(json_int(c, "segment") == segment &&
				  json_int(c, "seg_start") == seg_start &&
				  json_int(c, "last") == last,
			      "m%d: segment %lld from %lld last %lld, expected %lld %lld %lld", m,
			      (long long)json_int(c, "segment"),
			      (long long)json_int(c, "seg_start"), (long long)json_int(c, "last"),
			      (long long)segment, (long long)seg_start, (long long)last);
	}
	ck_assert_msg(found, "m%d does not list the channel", m);
	json_decref(r);
}

static int64_t cap_outbox_pending(int m)
{
	char name[8];
	snprintf(name, sizeof(name), "m%d", m);
	json_t *r = admin_ok(&net, name, "status", NULL);
	int64_t v = json_int(json_object_get(r, "cap_outbox"), "pending");
	json_decref(r);
	return v;
}

/* The Cap outbox of m1 has settled its rows: each notice was recorded by the broker (none
 * pending) or answered with a refusal and kept (a broker that does not serve CapNotice yet).
 * Returns the rows pending. */
static int64_t cap_outbox_settled(void)
{
	const char *recorded = "micropay_merchant_cap_notices_total{result=\"recorded\"}";
	const char *refused = "micropay_merchant_cap_notices_total{result=\"refused\"}";
	int64_t pending = -1;
	for (int i = 0; i < 100; i++) {
		pending = cap_outbox_pending(1);
		if ((pending == 0 && metric(&net, "m1", recorded) >= 1) ||
		    (pending > 0 && metric(&net, "m1", refused) >= 1))
			return pending;
		usleep(100000);
	}
	ck_abort_msg("m1's Cap outbox sent nothing (pending %lld)", (long long)pending);
	return -1;
}

/* A STALE_SEGMENT answer to a Pay carries the Cap that ended the payer's segment. */
static void expect_stale(MpEnvelope *e, const MpSigned *cap)
{
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(STALE_SEGMENT));
	ck_assert_msg(same_stmt(e->pay_ack->status->evidence, cap),
		      "STALE_SEGMENT without the Cap as evidence");
	micropay__v1__envelope__free_unpacked(e, NULL);
}

static int64_t pending_of(const char *mid_hex);

/* ---- the tests ---- */

/* Bad Transfers: each refused with its documented status, nothing changes (A still pays). */
static void refuse_bad_transfers(struct setup *s, struct wire *w, const struct towner *b)
{
	struct xfer good = {
	    .seg = 1, .epoch = 0, .declared_last = 5, .len = 10000 - 5, .prev_hash = s->cert_hash};
	uint8_t wrong_hash[MP_HASH_LEN];
	memset(wrong_hash, 0x5a, sizeof(wrong_hash));
	struct {
		const char *what;
		const struct mp_key *signer;
		struct xfer x;
		MpCode expect;
	} cases[] = {
	    {"signed by B, not the owner", &b->key, good, MP_ST(BAD_SIG)},
	    {"wrong epoch", &s->ch.owner, good, MP_ST(NOT_HOLDER)},
	    {"wrong prev_seg_hash", &s->ch.owner, good, MP_ST(MALFORMED)},
	    {"new_seg_seq 2", &s->ch.owner, good, MP_ST(MALFORMED)},
	    {"declared_last below last", &s->ch.owner, good, MP_ST(STALE_INDEX)},
	    {"new_len too short", &s->ch.owner, good, MP_ST(OUT_OF_RANGE)},
	    {"valid_until passed", &s->ch.owner, good, MP_ST(EXPIRED)},
	};
	cases[1].x.epoch = 1;
	cases[2].x.prev_hash = wrong_hash;
	cases[3].x.seg = 2;
	cases[4].x.declared_last = 4;
	cases[5].x.len = 10000 - 5 - 1;
	cases[6].x.valid_until = (uint64_t)time(NULL) - 1;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		MpSigned *t = sign_transfer(s, cases[i].signer, b, &cases[i].x);
		ck_assert_int_eq(transfer_code(w, t, cases[i].what), cases[i].expect);
		mp_stmt_free(t);
	}
	expect_segment(1, s, 0, 0, 5);
	ck_assert(accepted(pay_a(s, w, 6))); /* nothing changed: A still pays in segment 0 */
}

START_TEST(transfer_at_the_holder)
{
	struct setup s = {0};
	make_channel(&s, 10000);
	struct wire w;
	open_ok(&s, &w, 1);
	for (uint32_t j = 1; j <= 5; j++)
		ck_assert(accepted(pay_a(&s, &w, j)));
	struct towner b, c;
	towner_make(&b, 10000 - 6);
	towner_make(&c, 10000 - 6);
	refuse_bad_transfers(&s, &w, &b);

	/* The Transfer: the Cap ends segment 0 at A's last index, 6. */
	struct xfer x = {
	    .seg = 1, .epoch = 0, .declared_last = 6, .len = b.len, .prev_hash = s.cert_hash};
	MpSigned *t1 = sign_transfer(&s, &s.ch.owner, &b, &x);
	MpEnvelope *e = transfer_call(&w, t1);
	ck_assert_msg(e->transfer_resp->status->code == MP_ST(OK), "transfer: %s %s",
		      mp_code_name(e->transfer_resp->status->code),
		      e->transfer_resp->status->detail);
	uint8_t w6[MP_HASH_LEN];
	tchannel_word(&s.ch, 6, w6);
	check_cap(&s, e->transfer_resp->cap, t1, 1, 0, 6, w6);
	ck_assert(same_stmt(e->transfer_resp->transfer, t1));
	ck_assert_int_eq(e->transfer_resp->n_custody, 0);
	ck_assert_int_eq(e->transfer_resp->n_segments, 0);
	ck_assert(same_stmt(e->transfer_resp->merchant_certs[0], s.holder_cert));
	MpSigned *cap1 = mp_stmt_copy(e->transfer_resp->cap);
	micropay__v1__envelope__free_unpacked(e, NULL);
	b.start = 6;

	/* A retry: the same bytes, never re-signed. */
	e = transfer_call(&w, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Another Transfer for segment 1 (to C): CONFLICT carrying the stored pair. */
	MpSigned *t1c = sign_transfer(&s, &s.ch.owner, &c, &x);
	e = transfer_call(&w, t1c);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(CONFLICT));
	ck_assert(same_stmt(e->transfer_resp->transfer, t1));
	ck_assert(same_stmt(e->transfer_resp->cap, cap1));
	ck_assert(same_stmt(e->transfer_resp->status->evidence, cap1));
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* A's paywords are refused with the Cap; an unknown segment too. */
	uint8_t w7[MP_HASH_LEN];
	tchannel_word(&s.ch, 7, w7);
	expect_stale(pay_word(&s, &w, 0, 7, w7), cap1);
	ck_assert_int_eq(pay_o(&s, &w, &b, 2, 7), MP_ST(STALE_SEGMENT));
	expect_segment(1, &s, 1, 6, 6);

	/* B pays with its own chain, indices absolute, relative to the cap; MAX_JUMP applies. */
	ck_assert_int_eq(code_of(pay_word(&s, &w, 1, 7, w7)), MP_ST(BAD_CHAIN)); /* A's word */
	ck_assert(accepted(pay_o(&s, &w, &b, 1, 7)));
	ck_assert_int_eq(pay_o(&s, &w, &b, 1, 7 + MAX_JUMP + 1), MP_ST(OUT_OF_RANGE));
	ck_assert(accepted(pay_o(&s, &w, &b, 1, 7 + MAX_JUMP)));
	expect_segment(1, &s, 1, 6, 7 + MAX_JUMP);
	/* The Cap's notice went to the broker at once after the commit. */
	int64_t pending = cap_outbox_settled();
	fprintf(stderr, "cap outbox pending at m1: %lld\n", (long long)pending);
	ck_assert_int_eq(pending, 0); /* brokerd records CapNotices */
	/* A Transfer by A for segment 2 (not the current owner any more): BAD_SIG. */
	uint8_t th1[MP_HASH_LEN];
	mp_stmt_hash(t1, th1);
	struct xfer x2 = {
	    .seg = 2, .epoch = 0, .declared_last = 7 + MAX_JUMP, .len = c.len, .prev_hash = th1};
	MpSigned *t2a = sign_transfer(&s, &s.ch.owner, &c, &x2);
	ck_assert_int_eq(transfer_code(&w, t2a, "segment 2 signed by A"), MP_ST(BAD_SIG));
	wire_close(&w);

	/* A restart keeps the segment, the pair and the answers. */
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	e = open_at(&s, &w, 1, NULL, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_int_eq(e->open_ack->point->seg_seq, 1);
	ck_assert_int_eq(e->open_ack->point->index, 7 + MAX_JUMP);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = transfer_call(&w, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->transfer_resp->cap, cap1));
	micropay__v1__envelope__free_unpacked(e, NULL);
	uint8_t w8[MP_HASH_LEN];
	tchannel_word(&s.ch, 8 + MAX_JUMP, w8);
	expect_stale(pay_word(&s, &w, 0, 8 + MAX_JUMP, w8), cap1);
	ck_assert(accepted(pay_o(&s, &w, &b, 1, 8 + MAX_JUMP)));
	expect_segment(1, &s, 1, 6, 8 + MAX_JUMP);
	wire_close(&w);

	/* The outbox survived the restart: a row still pending is sent again. */
	ck_assert_int_eq(cap_outbox_pending(1), pending);
	if (pending > 0)
		ck_assert_int_eq(cap_outbox_settled(), pending);

	mp_stmt_free(t1);
	mp_stmt_free(t1c);
	mp_stmt_free(t2a);
	mp_stmt_free(cap1);
	mp_key_free(&b.key);
	mp_key_free(&c.key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

/* Transfers 1..15 pass; the 16th segment would exceed MAX_SEGMENTS: LIMIT, nothing changes. */
START_TEST(max_segments_enforced)
{
	struct setup s = {0};
	make_channel(&s, 100);
	struct wire w;
	open_ok(&s, &w, 1);
	struct towner owners[17];
	const struct mp_key *signer = &s.ch.owner;
	uint8_t head[MP_HASH_LEN];
	memcpy(head, s.cert_hash, MP_HASH_LEN);
	uint32_t last = 0;
	for (uint32_t seg = 1; seg <= 16; seg++) {
		towner_make(&owners[seg], 100 - last);
		struct xfer x = {.seg = seg,
				 .epoch = 0,
				 .declared_last = last,
				 .len = owners[seg].len,
				 .prev_hash = head};
		MpSigned *t = sign_transfer(&s, signer, &owners[seg], &x);
		MpEnvelope *e = transfer_call(&w, t);
		MpCode code = e->transfer_resp->status->code;
		micropay__v1__envelope__free_unpacked(e, NULL);
		if (seg == 16) {
			ck_assert_msg(code == MP_ST(LIMIT), "transfer 16: %s", mp_code_name(code));
			mp_stmt_free(t);
			break;
		}
		ck_assert_msg(code == MP_ST(OK), "transfer %u: %s", seg, mp_code_name(code));
		mp_stmt_hash(t, head);
		mp_stmt_free(t);
		owners[seg].start = last;
		signer = &owners[seg].key;
		ck_assert(accepted(pay_o(&s, &w, &owners[seg], seg, ++last)));
	}
	expect_segment(1, &s, 15, 14, 15);
	ck_assert(accepted(pay_o(&s, &w, &owners[15], 15, 16)));
	wire_close(&w);
	for (uint32_t seg = 1; seg <= 16; seg++)
		mp_key_free(&owners[seg].key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

static MpSigned *sign_move(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t seg,
			   uint32_t from_epoch, const uint8_t to[MP_ID_LEN])
{
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	mv.seg_seq = seg;
	mv.from_epoch = from_epoch;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to};
	MpSigned *s = mp_stmt_sign(key, MP_STMT_MOVE, &mv.base);
	ck_assert(s != NULL);
	return s;
}

/* A HandoffReq to m1 from m2 (mutual TLS) carrying move. */
static MpEnvelope *handoff_req(const MpSigned *move)
{
	struct wire w;
	ck_assert(wire_connect(&w, ep[1], ca, tm[2].cert, tm[2].tls_key));
	Micropay__V1__HandoffReq req = MICROPAY__V1__HANDOFF_REQ__INIT;
	req.move = (MpSigned *)move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &req;
	MpEnvelope *e = wire_call(&w, &env);
	wire_close(&w);
	ck_assert_msg(e && e->body_case == MP_BODY(HANDOFF_RESP), "no HandoffResp from m1");
	return e;
}

/* After the transfer, a Move by A is stale everywhere; a Move by B hands the channel to m2,
 * which refuses A's paywords with the Cap and takes B's after the Handoff's index. */
START_TEST(handoff_after_transfer)
{
	struct setup s = {0};
	make_channel(&s, 200);
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* earlier tests' units first */
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	int64_t before1 = pending_of(tm[1].mid_hex), before2 = pending_of(tm[2].mid_hex);
	struct wire w1, w2;
	open_ok(&s, &w1, 1);
	for (uint32_t j = 1; j <= 3; j++)
		ck_assert(accepted(pay_a(&s, &w1, j)));
	struct towner b;
	towner_make(&b, 200 - 3);
	struct xfer x = {
	    .seg = 1, .epoch = 0, .declared_last = 3, .len = b.len, .prev_hash = s.cert_hash};
	MpSigned *t1 = sign_transfer(&s, &s.ch.owner, &b, &x);
	MpEnvelope *e = transfer_call(&w1, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(OK));
	MpSigned *pair[2] = {mp_stmt_copy(t1), mp_stmt_copy(e->transfer_resp->cap)};
	micropay__v1__envelope__free_unpacked(e, NULL);
	b.start = 3;
	ck_assert(accepted(pay_o(&s, &w1, &b, 1, 4)));
	ck_assert(accepted(pay_o(&s, &w1, &b, 1, 5)));

	/* A's Move (segment 0): STALE_SEGMENT with the Cap, at the holder and through m2. */
	MpSigned *move_a = sign_move(&s.ch.owner, s.id, 0, 0, tm[2].mid);
	e = handoff_req(move_a);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(STALE_SEGMENT));
	ck_assert(same_stmt(e->handoff_resp->status->evidence, pair[1]));
	ck_assert(e->handoff_resp->handoff == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = open_at(&s, &w2, 2, move_a, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(STALE_SEGMENT));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w2);
	expect_segment(1, &s, 1, 3, 5);

	/* B's Move: m2 gets Handoff 1 at (1, 5) with the pair, verifies it all and holds. */
	MpSigned *move_b = sign_move(&b.key, s.id, 1, 0, tm[2].mid);
	e = open_at(&s, &w2, 2, move_b, pair, 2);
	ck_assert_msg(e->open_ack->status->code == MP_ST(OK), "open at m2: %s %s",
		      mp_code_name(e->open_ack->status->code), e->open_ack->status->detail);
	ck_assert_int_eq(e->open_ack->hseq, 1);
	ck_assert_int_eq(e->open_ack->point->seg_seq, 1);
	ck_assert_int_eq(e->open_ack->point->index, 5);
	Micropay__V1__Handoff *h = (Micropay__V1__Handoff *)mp_strict_unpack(
	    &micropay__v1__handoff__descriptor, e->open_ack->custody_event->body.data,
	    e->open_ack->custody_event->body.len);
	uint8_t th1[MP_HASH_LEN];
	mp_stmt_hash(t1, th1);
	ck_assert(h && mp_bytes_len_is(h->segments_head, MP_HASH_LEN) &&
		  !memcmp(h->segments_head.data, th1, MP_HASH_LEN));
	micropay__v1__handoff__free_unpacked(h, NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_segment(2, &s, 1, 3, 5);

	/* The successor refuses A's paywords with the Cap and takes B's; m1 is handed off. */
	uint8_t w6[MP_HASH_LEN];
	tchannel_word(&s.ch, 6, w6);
	expect_stale(pay_word(&s, &w2, 0, 6, w6), pair[1]);
	ck_assert(accepted(pay_o(&s, &w2, &b, 1, 6)));
	ck_assert_int_eq(pay_o(&s, &w1, &b, 1, 7), MP_ST(HANDED_OFF));
	ck_assert(accepted(pay_o(&s, &w2, &b, 1, 7)));
	expect_segment(2, &s, 1, 3, 7);
	wire_close(&w1);
	wire_close(&w2);

	/* m2 restarted keeps the segment it took over. */
	ck_assert_int_eq(net_cmd(&net, "kill", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m2"), 0);
	ck_assert(wire_connect(&w2, ep[2], ca, NULL, NULL));
	expect_stale(pay_word(&s, &w2, 0, 8, w6), pair[1]);
	ck_assert(accepted(pay_o(&s, &w2, &b, 1, 8)));
	wire_close(&w2);

	/* Each merchant is credited its range: m1 (0, 5] across the transfer, m2 (5, 8]. */
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	json_decref(admin_ok(&net, "m2", "redeem", NULL));
	int64_t got1 = pending_of(tm[1].mid_hex) - before1;
	int64_t got2 = pending_of(tm[2].mid_hex) - before2;
	fprintf(stderr, "handoff after transfer: credited m1 %lld, m2 %lld of 8 paid\n",
		(long long)got1, (long long)got2);
	ck_assert_int_eq(got1, 5);
	ck_assert_int_eq(got2, 3);

	mp_stmt_free(t1);
	mp_stmt_free(pair[0]);
	mp_stmt_free(pair[1]);
	mp_stmt_free(move_a);
	mp_stmt_free(move_b);
	mp_key_free(&b.key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

static int64_t pending_of(const char *mid_hex)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", mid_hex);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	int64_t b = json_int(json_array_get(json_object_get(acc, "related"), 0), "balance");
	json_decref(acc);
	return b;
}

/* The broker's record of segment seg of the channel (admin channel.segments): its start and
 * whether a CapNotice recorded it. */
static bool broker_segment(const struct setup *s, int64_t seg, int64_t *start, bool *noticed)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", s->hex);
	json_t *r = admin_ok(&net, "broker", "channel.segments", params);
	json_t *list = json_object_get(r, "segments");
	bool found = false;
	for (size_t i = 0; i < json_array_size(list) && !found; i++) {
		json_t *g = json_array_get(list, i);
		if (json_int(g, "seg_seq") != seg)
			continue;
		found = true;
		*start = json_int(g, "start");
		*noticed = !json_is_null(json_object_get(g, "noticed"));
	}
	json_decref(r);
	return found;
}

/* The holder's outbox delivers the Cap to the broker (nothing to redeem yet), and a redemption
 * afterwards credits the holder for both segments: A's units up to the cap and B's after it. */
START_TEST(cap_notice_reaches_the_broker_and_both_segments_are_credited)
{
	struct setup s = {0};
	make_channel(&s, 50);
	int64_t before = pending_of(tm[1].mid_hex);
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* earlier tests' units first */
	before = pending_of(tm[1].mid_hex);
	struct wire w;
	open_ok(&s, &w, 1);
	for (uint32_t j = 1; j <= 4; j++)
		ck_assert(accepted(pay_a(&s, &w, j)));
	struct towner b;
	towner_make(&b, 50 - 4);
	struct xfer x = {
	    .seg = 1, .epoch = 0, .declared_last = 4, .len = b.len, .prev_hash = s.cert_hash};
	MpSigned *t1 = sign_transfer(&s, &s.ch.owner, &b, &x);
	MpEnvelope *e = transfer_call(&w, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	b.start = 4;

	int64_t start = -1;
	bool noticed = false;
	for (int i = 0; i < 100 && !noticed; i++) {
		if (!broker_segment(&s, 1, &start, &noticed) || !noticed)
			usleep(100000);
	}
	ck_assert_msg(noticed, "the broker never recorded the Cap from m1's outbox");
	ck_assert_int_eq(start, 4);
	ck_assert_int_eq(metric_wait(&net, "m1",
				     "micropay_merchant_cap_notices_total{result=\"recorded\"}", 1,
				     5000) >= 1,
			 1);

	for (uint32_t j = 5; j <= 9; j++)
		ck_assert(accepted(pay_o(&s, &w, &b, 1, j)));
	wire_close(&w);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	int64_t got = pending_of(tm[1].mid_hex) - before;
	fprintf(stderr, "redeemed across the transfer: %lld of 9 units\n", (long long)got);
	ck_assert_int_eq(got, 9);
	mp_stmt_free(t1);
	mp_key_free(&b.key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

/* Append settings to m1's [merchant] section and restart it (same store, same port). */
static void restart_m1(const char *settings)
{
	net_restart_with(&net, "m1", "merchant", settings);
}

/* A range above m1's hash budget is redeemed in steps; across the transfer each step's point
 * lies in the segment that holds it (A's chain up to the cap, B's after it). */
START_TEST(redemption_in_steps_across_the_transfer)
{
	json_decref(admin_ok(&net, "m1", "redeem", NULL)); /* earlier tests' units first */
	restart_m1("[redeem]\nhash_budget = 3");
	struct setup s = {0};
	make_channel(&s, 30);
	int64_t before = pending_of(tm[1].mid_hex);
	struct wire w;
	open_ok(&s, &w, 1);
	for (uint32_t j = 1; j <= 4; j++)
		ck_assert(accepted(pay_a(&s, &w, j)));
	struct towner b;
	towner_make(&b, 30 - 4);
	struct xfer x = {
	    .seg = 1, .epoch = 0, .declared_last = 4, .len = b.len, .prev_hash = s.cert_hash};
	MpSigned *t1 = sign_transfer(&s, &s.ch.owner, &b, &x);
	MpEnvelope *e = transfer_call(&w, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	b.start = 4;
	for (uint32_t j = 5; j <= 11; j++)
		ck_assert(accepted(pay_o(&s, &w, &b, 1, j)));
	wire_close(&w);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	int64_t got = pending_of(tm[1].mid_hex) - before;
	fprintf(stderr, "redeemed in steps across the transfer: %lld of 11 units\n",
		(long long)got);
	ck_assert_int_eq(got, 11);
	ck_assert(log_has(&net, "m1", "claiming 3 of (0, 11]", 1000));
	ck_assert(log_has(&net, "m1", "claiming 6 of (3, 11]", 1000));
	restart_m1("[redeem]\nhash_budget = 268435456");
	mp_stmt_free(t1);
	mp_key_free(&b.key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

/* A Cap for segment 1 signed with m1's key (the test acts as a misbehaving m1). */
static MpSigned *sign_cap_as_m1(const struct setup *s, const MpSigned *transfer, uint32_t index,
				const uint8_t w[MP_HASH_LEN])
{
	uint8_t th[MP_HASH_LEN];
	mp_stmt_hash(transfer, th);
	Micropay__V1__Cap cap = MICROPAY__V1__CAP__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	cap.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->id};
	cap.new_seg_seq = 1;
	cap.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, th};
	cap.hseq = 0;
	pt.seg_seq = 0;
	pt.index = index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)w};
	cap.point = &pt;
	MpSigned *c = mp_stmt_sign(&tm[1].key, MP_STMT_CAP, &cap.base);
	ck_assert(c != NULL);
	return c;
}

/* The broker already holds another pair for the segment (a second Cap signed with m1's key,
 * sent first): m1's notice gets CONFLICT, which its outbox keeps for the operator (logged as an
 * error, counted, not retried); the transfer itself stands at m1. */
START_TEST(cap_notice_conflict_is_kept_for_the_operator)
{
	struct setup s = {0};
	make_channel(&s, 40);
	struct wire w, bw;
	open_ok(&s, &w, 1);
	for (uint32_t j = 1; j <= 3; j++)
		ck_assert(accepted(pay_a(&s, &w, j)));
	struct towner b, c;
	towner_make(&b, 40 - 3);
	towner_make(&c, 40 - 3);
	struct xfer x = {
	    .seg = 1, .epoch = 0, .declared_last = 3, .len = b.len, .prev_hash = s.cert_hash};
	MpSigned *tb = sign_transfer(&s, &s.ch.owner, &b, &x);
	MpSigned *tc = sign_transfer(&s, &s.ch.owner, &c, &x);
	uint8_t w3[MP_HASH_LEN];
	tchannel_word(&s.ch, 3, w3);
	MpSigned *cap_c = sign_cap_as_m1(&s, tc, 3, w3);

	/* The other pair reaches the broker first. */
	tmerchant_connect(&tm[1], &bw, broker_ep, ca);
	Micropay__V1__CapNoticeReq req = MICROPAY__V1__CAP_NOTICE_REQ__INIT;
	req.transfer = tc;
	req.cap = cap_c;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CAP_NOTICE_REQ);
	env.cap_notice_req = &req;
	MpEnvelope *e = wire_call(&bw, &env);
	ck_assert(e && e->body_case == MP_BODY(CAP_NOTICE_RESP));
	ck_assert_int_eq(e->cap_notice_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&bw);

	int64_t conflicts_before = -1;
	json_t *st = admin_ok(&net, "m1", "status", NULL);
	conflicts_before = json_int(json_object_get(st, "cap_outbox"), "conflicts");
	json_decref(st);
	e = transfer_call(&w, tb);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	b.start = 3;
	int64_t conflicts = conflicts_before;
	for (int i = 0; i < 100 && conflicts == conflicts_before; i++) {
		usleep(100000);
		st = admin_ok(&net, "m1", "status", NULL);
		conflicts = json_int(json_object_get(st, "cap_outbox"), "conflicts");
		json_decref(st);
	}
	ck_assert_int_eq(conflicts, conflicts_before + 1);
	ck_assert_int_eq(cap_outbox_pending(1), 0);
	ck_assert(log_has(&net, "m1", "the broker holds another Cap for this segment", 1000));
	ck_assert(accepted(pay_o(&s, &w, &b, 1, 4)));
	wire_close(&w);
	mp_stmt_free(tb);
	mp_stmt_free(tc);
	mp_stmt_free(cap_c);
	mp_key_free(&b.key);
	mp_key_free(&c.key);
	free_setup(&s);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("transfer_holder");
	TCase *tc = tcase_create("transfer_holder");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, transfer_at_the_holder);
	tcase_add_test(tc, max_segments_enforced);
	tcase_add_test(tc, handoff_after_transfer);
	tcase_add_test(tc, cap_notice_reaches_the_broker_and_both_segments_are_credited);
	tcase_add_test(tc, redemption_in_steps_across_the_transfer);
	tcase_add_test(tc, cap_notice_conflict_is_kept_for_the_operator);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
