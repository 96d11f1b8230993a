/* Merchant-to-merchant handoff against the real daemons (deploy/mpnet, three merchants): the
 * channel moves M1 -> M2 -> M3 -> M1 through walletd with payments at each step; and, with a
 * test wallet and test merchants speaking the wire protocol byte by byte, the holder's refusals:
 * HANDED_OFF for a Pay after the handoff, the stored bytes for a replayed HandoffReq (also after
 * a SIGKILL and restart), nothing for a forged Move, a wrong from_epoch, a request without a Move
 * or from a peer without a merchant certificate, and a Pay racing a HandoffReq. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_db.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "../check_run.h"

static struct handoff_net hn;
static char account[64];

static void setup_net(void)
{
	handoff_net_up(&hn);
	handoff_wallet_register(&hn, account, sizeof(account));
}

static void teardown_net(void)
{
	handoff_net_down(&hn);
}

static void audit_clean(void)
{
	net_audit_clean(&hn.net);
}

/* ---- through walletd ---- */

static json_t *wallet_pay(const char *channel, int m, unsigned units, const char *order, char *err,
			  size_t errlen)
{
	char params[500];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,"
		 "\"order_ref\":\"%s\"}",
		 channel, hn.tm[m].mid_hex, hn.ep[m], units, order);
	return admin(&hn.net, "w1", "pay", params, err, errlen);
}

static void pay_at(const char *channel, int m, unsigned units, int64_t expect_last)
{
	char order[64], err[512];
	net_new_order(&hn.net, hn.tm[m].name, units, order, sizeof(order));
	json_t *r = wallet_pay(channel, m, units, order, err, sizeof(err));
	ck_assert_msg(r != NULL, "pay %u at m%d failed: %s", units, m, err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), expect_last);
	ck_assert_int_eq(json_int(r, "paid_units"), units);
	json_decref(r);
}

START_TEST(chain_m1_m2_m3_m1_through_walletd)
{
	net_fund(&hn.net, account, 1000);
	char params[200], channel[64], holder[64];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":100,\"unit_value\":1,\"days\":1}",
		 hn.tm[1].mid_hex);
	json_t *r = admin_ok(&hn.net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	int64_t before[4];
	for (int i = 1; i <= 3; i++)
		before[i] = net_pending(&hn.net, hn.tm[i].mid_hex);

	pay_at(channel, 1, 3, 3);  /* epoch 0 at m1: (0, 3] */
	pay_at(channel, 2, 4, 7);  /* handoff 1 to m2 at 3: (3, 7] */
	pay_at(channel, 3, 5, 12); /* handoff 2 to m3 at 7: (7, 12] */
	pay_at(channel, 1, 6, 18); /* handoff 3 back to m1 at 12: (12, 18] */
	int64_t epoch;
	wallet_channel_holder(&hn.net, "w1", channel, holder, sizeof(holder), &epoch);
	ck_assert_str_eq(holder, hn.tm[1].mid_hex);
	ck_assert_int_eq(epoch, 3);
	/* The default merchant is now m1 again, in epoch 3. */
	char order[64], err[512], p2[600];
	net_new_order(&hn.net, "m1", 2, order, sizeof(order));
	snprintf(p2, sizeof(p2),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":2,\"order_ref\":\"%s\"}",
		 channel, hn.ep[1], order);
	r = admin(&hn.net, "w1", "pay", p2, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	ck_assert_int_eq(json_int(r, "last"), 20);
	json_decref(r);

	expect_merchant_channel(&hn.net, hn.tm[1].name, channel, "HELD", 3, 20);
	expect_merchant_channel(&hn.net, hn.tm[2].name, channel, "HANDED_OFF", 1, 7);
	expect_merchant_channel(&hn.net, hn.tm[3].name, channel, "HANDED_OFF", 2, 12);

	/* Redemption: every merchant sends a claim per epoch it held with its custody record, and
	 * the broker credits each exactly its ranges: m1 (0, 3] and (12, 20], m2 (3, 7], m3
	 * (7, 12]. */
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		json_decref(admin_ok(&hn.net, name, "redeem", NULL));
	}
	int64_t got1 = net_pending(&hn.net, hn.tm[1].mid_hex) - before[1];
	int64_t got2 = net_pending(&hn.net, hn.tm[2].mid_hex) - before[2];
	int64_t got3 = net_pending(&hn.net, hn.tm[3].mid_hex) - before[3];
	fprintf(stderr, "handoff chain: credited m1 %lld, m2 %lld, m3 %lld of 20 paid\n",
		(long long)got1, (long long)got2, (long long)got3);
	ck_assert_int_eq(got1, 3 + 8);
	ck_assert_int_eq(got2, 4);
	ck_assert_int_eq(got3, 5);
	audit_clean();
}
END_TEST

/* ---- byte by byte ---- */

struct setup {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	MpSigned *holder_cert[4]; /* from each merchant's OpenAck */
};

static void make_channel(struct setup *s, uint32_t n)
{
	handoff_channel(&hn, &s->tw, &s->ch, s->id, n);
}

static void free_setup(struct setup *s)
{
	for (int i = 0; i < 4; i++)
		mp_stmt_free(s->holder_cert[i]);
	tchannel_free(&s->ch);
	mp_key_free(&s->tw.account);
}

/* Open at merchant m (as the wallet), with a Move and the holder hint when move is set. */
static MpEnvelope *open_at(struct setup *s, struct wire *w, int m, const MpSigned *move, int holder)
{
	ck_assert(wire_connect(w, hn.ep[m], hn.ca, NULL, NULL));
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = s->ch.cert;
	if (move) {
		req.move = (MpSigned *)move;
		req.holder_hint = (ProtobufCBinaryData){MP_ID_LEN, hn.tm[holder].mid};
		req.holder_cert = s->holder_cert[holder];
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(OPEN_ACK), "no OpenAck from m%d", m);
	if (e->open_ack->status->code == MP_ST(OK)) {
		ck_assert(e->open_ack->holder_cert != NULL);
		mp_stmt_free(s->holder_cert[m]);
		s->holder_cert[m] = mp_stmt_copy(e->open_ack->holder_cert);
	}
	return e;
}

/* A HandoffReq to merchant `to` from merchant `as` (0: no client certificate). */
static MpEnvelope *handoff_req(int to, int as, const MpSigned *move)
{
	struct wire w;
	ck_assert(wire_connect(&w, hn.ep[to], hn.ca, as ? hn.tm[as].cert : NULL,
			       as ? hn.tm[as].tls_key : NULL));
	Micropay__V1__HandoffReq req = MICROPAY__V1__HANDOFF_REQ__INIT;
	req.move = (MpSigned *)move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &req;
	MpEnvelope *e = wire_call(&w, &env);
	wire_close(&w);
	ck_assert_msg(e && e->body_case == MP_BODY(HANDOFF_RESP), "no HandoffResp from m%d", to);
	return e;
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	size_t la, lb;
	uint8_t *x = mp_stmt_encode(a, &la), *y = mp_stmt_encode(b, &lb);
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static uint32_t handoff_at(const MpSigned *h)
{
	Micropay__V1__Handoff *b = (Micropay__V1__Handoff *)mp_strict_unpack(
	    &micropay__v1__handoff__descriptor, h->body.data, h->body.len);
	ck_assert(b && b->point);
	uint32_t at = b->point->index;
	micropay__v1__handoff__free_unpacked(b, NULL);
	return at;
}

static void channel_hex(const struct setup *s, char out[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(s->id, MP_ID_LEN, out);
}

/* The wallet opens at m1 and pays 1 and 2 there, then moves to m2 (a Move from epoch 0, into
 * *move): m2's OpenAck, status OK (the caller frees it). */
static MpEnvelope *pay_m1_then_move_to_m2(struct setup *s, struct wire *w1, struct wire *w2,
					  MpSigned **move)
{
	MpEnvelope *e = open_at(s, w1, 1, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(pay_accepted(pay_status(&s->ch, w1, 1)));
	ck_assert(pay_accepted(pay_status(&s->ch, w1, 2)));
	*move = sign_move(&s->ch.owner, s->id, 0, hn.tm[2].mid);
	e = open_at(s, w2, 2, *move, 1);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	return e;
}

START_TEST(holder_refusals_replay_and_forgeries)
{
	struct setup s = {0};
	make_channel(&s, 50);
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(&s, hex);
	struct wire w1, w2;
	/* Move to m2: m2 fetches Handoff 1 from m1 and proves holding with it. */
	MpSigned *move = NULL;
	MpEnvelope *e = pay_m1_then_move_to_m2(&s, &w1, &w2, &move);
	ck_assert_int_eq(e->open_ack->hseq, 1);
	ck_assert_int_eq(e->open_ack->point->index, 2);
	MpSigned *handoff1 = mp_stmt_copy(e->open_ack->custody_event);
	ck_assert(handoff1 != NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* The old holder refuses every later Pay; the new one takes them after at_index. */
	ck_assert_int_eq(pay_status(&s.ch, &w1, 3), MP_ST(HANDED_OFF));
	ck_assert(pay_accepted(pay_status(&s.ch, &w2, 3)));
	expect_merchant_channel(&hn.net, hn.tm[1].name, hex, "HANDED_OFF", 0, 2);

	/* A replayed HandoffReq from m2 gets the stored bytes. */
	e = handoff_req(1, 2, move);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->handoff_resp->handoff, handoff1));
	ck_assert_int_eq(e->handoff_resp->n_custody, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* m3 presenting the same (valid) Move learns only that m1 handed off, with Handoff 1. */
	e = handoff_req(1, 3, move);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(HANDED_OFF));
	ck_assert(same_stmt(e->handoff_resp->handoff, handoff1));
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* Forged Move (another key), wrong from_epoch, no Move, no merchant certificate: refused
	 * with nothing revealed, and m2 keeps holding. */
	struct mp_key forger;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&forger, seed));
	MpSigned *forged = sign_move(&forger, s.id, 1, hn.tm[3].mid);
	MpSigned *wrong_epoch = sign_move(&s.ch.owner, s.id, 0, hn.tm[3].mid);
	MpSigned *good = sign_move(&s.ch.owner, s.id, 1, hn.tm[3].mid);
	e = handoff_req(2, 3, forged);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(BAD_SIG));
	ck_assert(e->handoff_resp->handoff == NULL && e->handoff_resp->n_custody == 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = handoff_req(2, 3, wrong_epoch);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(NOT_HOLDER));
	ck_assert(e->handoff_resp->handoff == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = handoff_req(2, 3, NULL);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(MALFORMED));
	ck_assert(e->handoff_resp->handoff == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = handoff_req(2, 0, good);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(MALFORMED));
	ck_assert(e->handoff_resp->handoff == NULL && e->handoff_resp->n_custody == 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* A Move naming m3 presented by m1 (the peer is not to_mid). */
	e = handoff_req(2, 1, good);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(MALFORMED));
	ck_assert(e->handoff_resp->handoff == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	expect_merchant_channel(&hn.net, hn.tm[2].name, hex, "HELD", 1, 3);
	ck_assert(pay_accepted(pay_status(&s.ch, &w2, 4)));

	/* An Open at m3 with the forged Move is refused before anyone is asked. */
	struct wire w3;
	e = open_at(&s, &w3, 3, forged, 2);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(BAD_SIG));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w3);
	expect_merchant_channel(&hn.net, hn.tm[2].name, hex, "HELD", 1, 4);

	wire_close(&w1);
	wire_close(&w2);
	mp_key_free(&forger);
	mp_stmt_free(forged);
	mp_stmt_free(wrong_epoch);
	mp_stmt_free(good);
	mp_stmt_free(move);
	mp_stmt_free(handoff1);
	free_setup(&s);
	audit_clean();
}
END_TEST

/* A Pay and a HandoffReq sent together on two connections: the Pay is either accepted and at or
 * below at_index, or refused HANDED_OFF above it; never both lost nor both accepted. */
START_TEST(pay_racing_handoff_request)
{
	struct setup s = {0};
	make_channel(&s, 200);
	struct wire w1, mw;
	MpEnvelope *e = open_at(&s, &w1, 1, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	MpSigned *move = sign_move(&s.ch.owner, s.id, 0, hn.tm[2].mid);
	static const uint8_t ref[4] = {9, 9, 9, 9};
	uint32_t j = 0;
	for (int round = 0; round < 1; round++) {
		ck_assert(pay_accepted(pay_status(&s.ch, &w1, ++j)));
		ck_assert(wire_connect(&mw, hn.ep[1], hn.ca, hn.tm[2].cert, hn.tm[2].tls_key));
		/* The Pay first on its connection, the HandoffReq right after on the other. */
		uint8_t w[MP_HASH_LEN];
		tchannel_word(&s.ch, ++j, w);
		Micropay__V1__PayReq pr = MICROPAY__V1__PAY_REQ__INIT;
		pr.channel_id = (ProtobufCBinaryData){MP_ID_LEN, s.id};
		pr.j = j;
		pr.w_j = (ProtobufCBinaryData){MP_HASH_LEN, w};
		pr.order_ref = (ProtobufCBinaryData){sizeof(ref), (uint8_t *)ref};
		MpEnvelope pe = MICROPAY__V1__ENVELOPE__INIT;
		pe.body_case = MP_BODY(PAY_REQ);
		pe.pay_req = &pr;
		Micropay__V1__HandoffReq hr = MICROPAY__V1__HANDOFF_REQ__INIT;
		hr.move = move;
		MpEnvelope he = MICROPAY__V1__ENVELOPE__INIT;
		he.body_case = MP_BODY(HANDOFF_REQ);
		he.handoff_req = &hr;
		ck_assert(wire_send(&w1, &pe));
		ck_assert(wire_send(&mw, &he));
		MpEnvelope *pa = wire_recv(&w1), *ha = wire_recv(&mw);
		ck_assert(pa && pa->body_case == MP_BODY(PAY_ACK));
		ck_assert(ha && ha->body_case == MP_BODY(HANDOFF_RESP));
		ck_assert_int_eq(ha->handoff_resp->status->code, MP_ST(OK));
		uint32_t at = handoff_at(ha->handoff_resp->handoff);
		MpCode pc = pa->pay_ack->status->code;
		fprintf(stderr, "race: Pay j=%u %s, Handoff at %u\n", j, mp_code_name(pc), at);
		ck_assert_msg((pay_accepted(pc) && j <= at) || (pc == MP_ST(HANDED_OFF) && at < j),
			      "Pay j=%u answered %s with the Handoff at %u", j, mp_code_name(pc),
			      at);
		micropay__v1__envelope__free_unpacked(pa, NULL);
		micropay__v1__envelope__free_unpacked(ha, NULL);
		wire_close(&mw);
	}
	wire_close(&w1);
	mp_stmt_free(move);
	free_setup(&s);
	audit_clean();
}
END_TEST

/* The old holder is killed (SIGKILL) after it journalled a Handoff; after its restart the
 * requester's retry gets the same stored statement, and Pays are still refused HANDED_OFF. */
START_TEST(sigkill_after_handoff_keeps_the_stored_statement)
{
	struct setup s = {0};
	make_channel(&s, 50);
	struct wire w1;
	MpEnvelope *e = open_at(&s, &w1, 1, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(pay_accepted(pay_status(&s.ch, &w1, 5)));
	wire_close(&w1);
	MpSigned *move = sign_move(&s.ch.owner, s.id, 0, hn.tm[3].mid);
	e = handoff_req(1, 3, move);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(OK));
	MpSigned *first = mp_stmt_copy(e->handoff_resp->handoff);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(net_cmd(&hn.net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&hn.net, "start", "m1"), 0);
	e = handoff_req(1, 3, move);
	ck_assert_int_eq(e->handoff_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert(same_stmt(e->handoff_resp->handoff, first));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(wire_connect(&w1, hn.ep[1], hn.ca, NULL, NULL));
	ck_assert_int_eq(pay_status(&s.ch, &w1, 6), MP_ST(HANDED_OFF));
	wire_close(&w1);
	/* m3 never stored it (the test asked in its name): a wallet's Open there with the same
	 * Move now gets the stored Handoff through m3 and m3 holds from index 5. */
	struct wire w3;
	e = open_at(&s, &w3, 3, move, 1);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_int_eq(e->open_ack->hseq, 1);
	ck_assert_int_eq(e->open_ack->point->index, 5);
	ck_assert(same_stmt(e->open_ack->custody_event, first));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(pay_accepted(pay_status(&s.ch, &w3, 6)));
	wire_close(&w3);
	mp_stmt_free(first);
	mp_stmt_free(move);
	free_setup(&s);
	audit_clean();
}
END_TEST

/* The holder cannot be reached: the wallet's pay fails with an error naming it, and the wallet
 * keeps its place (holder, epoch, last); once the holder is back the move succeeds. */
START_TEST(unreachable_holder_is_a_clear_error)
{
	net_fund(&hn.net, account, 100);
	char params[200], channel[64], holder[64], order[64], err[512];
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":20,\"unit_value\":1,\"days\":1}", hn.tm[1].mid_hex);
	json_t *r = admin_ok(&hn.net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);
	pay_at(channel, 1, 1, 1);
	pay_at(channel, 2, 1, 2);
	ck_assert_int_eq(net_cmd(&hn.net, "kill", "m2"), 0);
	net_new_order(&hn.net, "m3", 1, order, sizeof(order));
	r = wallet_pay(channel, 3, 1, order, err, sizeof(err));
	ck_assert_msg(r == NULL, "paid at m3 while the holder m2 is down");
	ck_assert_msg(strstr(err, "could not be reached") && strstr(err, hn.tm[2].mid_hex),
		      "unclear error: %s", err);
	int64_t epoch;
	wallet_channel_holder(&hn.net, "w1", channel, holder, sizeof(holder), &epoch);
	ck_assert_str_eq(holder, hn.tm[2].mid_hex);
	ck_assert_int_eq(epoch, 1);
	ck_assert_int_eq(net_cmd(&hn.net, "start", "m2"), 0);
	pay_at(channel, 3, 1, 3);
	wallet_channel_holder(&hn.net, "w1", channel, holder, sizeof(holder), &epoch);
	ck_assert_str_eq(holder, hn.tm[3].mid_hex);
	ck_assert_int_eq(epoch, 2);
	audit_clean();
}
END_TEST

/* MAX_HANDOFFS (256) Handoffs of one channel, m2 and m3 in turn: the 256th is taken, the next
 * is refused LIMIT by the holder and nothing changes. */
START_TEST(max_handoffs_enforced)
{
	struct setup s = {0};
	make_channel(&s, 10);
	struct wire w;
	MpEnvelope *e = open_at(&s, &w, 1, NULL, 0);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert(pay_accepted(pay_status(&s.ch, &w, 1)));
	wire_close(&w);
	int holder = 1;
	for (uint32_t h = 0; h <= 256; h++) {
		int next = holder == 2 ? 3 : 2;
		MpSigned *move = sign_move(&s.ch.owner, s.id, h, hn.tm[next].mid);
		e = open_at(&s, &w, next, move, holder);
		MpCode code = e->open_ack->status->code;
		if (h < 256) {
			ck_assert_msg(code == MP_ST(OK), "handoff %u refused: %s %s", h + 1,
				      mp_code_name(code), e->open_ack->status->detail);
			ck_assert_int_eq(e->open_ack->hseq, h + 1);
			holder = next;
		} else {
			ck_assert_msg(code == MP_ST(LIMIT), "handoff 257: %s", mp_code_name(code));
		}
		micropay__v1__envelope__free_unpacked(e, NULL);
		wire_close(&w);
		mp_stmt_free(move);
	}
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(&s, hex);
	expect_merchant_channel(&hn.net, hn.tm[holder].name, hex, "HELD", 256, 1);
	ck_assert(wire_connect(&w, hn.ep[holder], hn.ca, NULL, NULL));
	ck_assert(pay_accepted(pay_status(&s.ch, &w, 2)));
	wire_close(&w);
	free_setup(&s);
	audit_clean();
}
END_TEST

static int64_t loss_reserve(void)
{
	char *v = sql_value(&hn.net, "SELECT balance FROM accounts WHERE kind = 'loss_reserve'");
	int64_t out = strtoll(v, NULL, 10);
	free(v);
	return out;
}

/* A claim of m2 that waits for the broker's funds. */
struct waiting_claim {
	struct setup s;
	MpSigned *fork, *move;
	uint32_t k;	/* m2's units, all an excess */
	int64_t before; /* m2's pending balance before */
};

/* merchantd m2 holds a channel through Handoff 1 from m1 and takes k payments. m1 (the test,
 * with its key) also signed a Handoff 1 to m3, and m3 (the test, at the wire level) is credited
 * first: its Handoff is the first branch. m2's claim is then on the second branch and all its
 * units are credited on m3's too: an excess that m1's pending credit, bond and the loss reserve
 * cannot cover, INSUFFICIENT_FUNDS, nothing moves (docs/custody.md "Forks"). */
static void claim_waits(struct waiting_claim *wc)
{
	/* What m1 and m2 earned in the earlier tests is credited first. */
	json_decref(admin_ok(&hn.net, "m1", "redeem", NULL));
	json_decref(admin_ok(&hn.net, "m2", "redeem", NULL));
	int64_t p1 = net_pending(&hn.net, hn.tm[1].mid_hex), reserve = loss_reserve();
	wc->before = net_pending(&hn.net, hn.tm[2].mid_hex);
	wc->k = (uint32_t)(p1 + reserve + 5);
	ck_assert_uint_le(wc->k, 150);
	make_channel(&wc->s, 200);
	struct wire w1, w2;
	micropay__v1__envelope__free_unpacked(pay_m1_then_move_to_m2(&wc->s, &w1, &w2, &wc->move),
					      NULL);
	for (uint32_t j = 3; j <= 2 + wc->k; j++)
		ck_assert(pay_accepted(pay_status(&wc->s.ch, &w2, j)));
	wire_close(&w1);
	wire_close(&w2);

	/* m1's second Handoff 1, to m3, at the same index; m3 is credited first. */
	struct tchan t = {.ch = wc->s.ch};
	memcpy(t.id, wc->s.id, MP_ID_LEN);
	mp_stmt_hash(wc->s.ch.cert, t.cert_hash);
	wc->fork = tchan_handoff(&t, 1, &hn.tm[1], &hn.tm[3], 2, NULL, NULL);
	struct cclaim c3[] = {{&t, 1, 2 + wc->k, &wc->fork, 1}};
	cclaim_redeem_expect(&hn.net, &hn.tm[3], c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){wc->k});

	/* m2 redeems: its claim waits for the broker's funds. */
	json_decref(admin_ok(&hn.net, "m2", "redeem", NULL));
	ck_assert_int_eq(net_pending(&hn.net, hn.tm[2].mid_hex), wc->before);
	ck_assert_int_eq(metric(&hn.net, "m2", "micropay_merchant_redeem_claims_waiting_funds"), 1);
	ck_assert(log_has(&hn.net, "m2", "waits for the broker's funds (INSUFFICIENT_FUNDS)", 0));
}

/* The operator funds the loss reserve; m2, which claims again on its own, is credited its k
 * units without another `redeem`, its claim no longer waits, and the audit is clean. */
static void claim_credited_once_funded(struct waiting_claim *wc)
{
	char params[128], id[MP_HEX_ID_LEN + 1];
	uint8_t fund[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund, MP_ID_LEN));
	mp_hex_encode(fund, MP_ID_LEN, id);
	snprintf(params, sizeof(params), "{\"amount\":%u,\"fund_id\":\"%s\"}", wc->k, id);
	json_decref(admin_ok(&hn.net, "broker", "loss_reserve.fund", params));
	int64_t got = 0;
	for (int i = 0; i < 120 && got != wc->k; i++) {
		usleep(500 * 1000);
		got = net_pending(&hn.net, hn.tm[2].mid_hex) - wc->before;
	}
	fprintf(stderr, "waiting claim: m2 credited %lld of %u after %lld retries\n",
		(long long)got, wc->k,
		(long long)metric(&hn.net, "m2", "micropay_merchant_redeem_waiting_retries_total"));
	ck_assert_int_eq(got, wc->k);
	ck_assert_int_eq(metric(&hn.net, "m2", "micropay_merchant_redeem_claims_waiting_funds"), 0);
	ck_assert(log_has(&hn.net, "m2", "no longer waits: OK", 0));
	mp_stmt_free(wc->fork);
	mp_stmt_free(wc->move);
	free_setup(&wc->s);
	audit_clean();
}

/* merchantd keeps the waiting claim and claims it again with backoff on its own (metrics,
 * log); once the operator funds the loss reserve, m2 is credited without another `redeem`. */
START_TEST(waiting_claim_claimed_again_until_credited)
{
	struct waiting_claim wc = {0};
	claim_waits(&wc);
	/* merchantd claims it again on its own; the reserve is funded meanwhile. */
	ck_assert_int_ge(
	    metric_wait(&hn.net, "m2", "micropay_merchant_redeem_waiting_retries_total", 1, 10000),
	    1);
	claim_credited_once_funded(&wc);
}
END_TEST

/* m2 is killed while its claim waits and started again: the claim is in its store, so the
 * restarted merchantd still counts it waiting and claims it again on its own (no `redeem`, no
 * redeem_interval in this net) until it is credited once the reserve is funded. */
START_TEST(waiting_claim_survives_a_restart)
{
	struct waiting_claim wc = {0};
	claim_waits(&wc);
	ck_assert_int_eq(net_cmd(&hn.net, "kill", "m2 KILL"), 0);
	ck_assert_int_eq(net_cmd(&hn.net, "start", "m2"), 0);
	ck_assert_int_eq(metric(&hn.net, "m2", "micropay_merchant_redeem_claims_waiting_funds"), 1);
	ck_assert(log_has(&hn.net, "m2", "waited for the broker's funds before the restart", 5000));
	ck_assert_int_ge(
	    metric_wait(&hn.net, "m2", "micropay_merchant_redeem_waiting_retries_total", 1, 10000),
	    1);
	ck_assert_int_eq(net_pending(&hn.net, hn.tm[2].mid_hex), wc.before);
	claim_credited_once_funded(&wc);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("handoff");
	TCase *tc = tcase_create("handoff");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, chain_m1_m2_m3_m1_through_walletd);
	tcase_add_test(tc, holder_refusals_replay_and_forgeries);
	tcase_add_test(tc, pay_racing_handoff_request);
	tcase_add_test(tc, sigkill_after_handoff_keeps_the_stored_statement);
	tcase_add_test(tc, unreachable_holder_is_a_clear_error);
	tcase_add_test(tc, max_handoffs_enforced);
	tcase_add_test(tc, waiting_claim_claimed_again_until_credited);
	tcase_add_test(tc, waiting_claim_survives_a_restart);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
