/* Disputes at brokerd (protocol.md section 6 "Fair exchange", statement 16; docs/disputes.md)
 * through the real daemons with the test clock: brokerd, merchants m1 and m2. The test acts as
 * the wallet (raw channels paid at m1, Disputes signed with the channel's owner key) and as
 * m1 (Offers signed with m1's key, DisputeKeyReq over m1's mutual TLS).
 * - refusals change nothing: before the Offer's deadline (TOO_EARLY), a wrong w_pay_index
 *   (BAD_CHAIN; the third on one connection closes it), signed by a key that does not own
 *   the segment (BAD_SIG), an Offer by m2, which did not hold the epoch (NOT_HOLDER), a
 *   payout that is no customer account (UNKNOWN_ACCOUNT), past the deadline + T_dispute
 *   (TOO_LATE);
 * - an accepted dispute credits m1 up to pay_index; the same statement again DUPLICATE_OK,
 *   another for the same order_ref CONFLICT with the stored one; it is listed to m1;
 * - m1 sends the key of a second dispute: a wrong key CONFLICT, the right one KEY_RELEASED,
 *   again DUPLICATE_OK; the wallet's retry gets the key; another merchant's certificate BAD_SIG;
 * - epochs above 0 (Handoffs m1 -> m2 -> m1 signed here): m2's Offer disputed with Handoff 1,
 *   m1's in epoch 2 with Handoff 2 only (the broker adds the Handoff 1 it stored), m1's Offer in
 *   m2's epoch NOT_HOLDER;
 * - no key for the first: after answer_by the sweep refunds (pay_index - after_index) *
 *   unit_value from m1's pending credit of that channel to the payout account (none from its
 *   bond or the loss reserve), exactly once over two sweeps;
 * - two overlapping Offers of m1 disputed on one channel: the second refund is short of the
 *   channel's credit and stays OPEN (nothing moves) until the loss reserve is funded, then is
 *   paid from the credit's rest and the reserve;
 *   the key after that TOO_LATE; the wallet's retry REFUNDED with the amount;
 * - merchantd's poller: a real key-release sale at m1 whose key the wallet never asks for is
 *   disputed, and m1 answers it with the key from its store within its poll;
 * - both channels finalise: the refund does not pay the disputed units twice, m1 keeps the
 *   released dispute's payment;
 * - a key that does not open (BadKeyProof): a proof of a chunk the key opens CONFLICT, a
 *   tampered path MALFORMED, the proof of a chunk it does not open makes a KEY_RELEASED dispute
 *   OPEN and due at once (m1's key then refused, the dispute not listed to m1), a first request
 *   with the proof opens and proves in one; the sweep refunds both exactly once;
 * - an unpaid Offer disputed and refunded while m1 was down: back up, m1 asks the dispute's
 *   state, takes its word as the offer's payment (no key ever given), and the channel pays on;
 * - an unpaid Offer nobody disputes: it holds its channel while a Dispute may come, and lapses
 *   once the broker's dispute window has closed;
 * - the buyer's OfferCancel (docs/disputes.md "Cancelling an offer"): shown by m1, it ends an
 *   OPEN dispute CANCELLED with nothing refunded (cancels by another key, of another
 *   statement, or with a key too refused; past answer_by TOO_LATE); end to end, a lapsed
 *   Offer's indices paid for other orders after the cancel, then disputed: m1's poller answers
 *   with the stored cancel; an unpaid Offer disputed with the word at pay_index: m1's poller
 *   takes that word as the offer's payment before it releases the key (the channel at
 *   pay_index, a cancel CONFLICT, the next Pay after pay_index);
 * the audit is clean after each step. */
#include <check.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_goods.h"
#include "harness_db.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_redeem.h"
#include "harness_settle.h"
#include "offer.h"
#include "offer_cancel.h"
#include "sealed.h"
#include "sealed_tree.h"
#include "../check_run.h"

#define UNITS 100
#define UNIT  2

static struct net net;
static struct tmerchant m1, m2;
static char ca[700], broker_ep[128];

/* m1 sells "song" (3,000 bytes, price 13) with delivery = key; restarted before any clock
 * moves (a restarted daemon's test clock starts at the real time). */
static void key_catalogue(void)
{
	char goods[700], setting[900];
	snprintf(goods, sizeof(goods), "%s/song.bin", net.dir);
	FILE *f = fopen(goods, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 3000; i++)
		fputc(i * 7 % 256, f);
	fclose(f);
	snprintf(setting, sizeof(setting), "%s/catalogue.ini", net.dir);
	f = fopen(setting, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[song]\nfile = %s\nprice = 13\nchunk_size = 1024\ndelivery = key\n", goods);
	fclose(f);
	char conf[1000];
	snprintf(conf, sizeof(conf), "catalogue = %s\nkey_deadline = 60", setting);
	net_restart_with(&net, "m1", "merchant", conf);
}

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* sweeps when the test asks */
	setenv("MP_DEADLINE_CHECK", "3600", 1);
	setenv("MP_REDEEM_INTERVAL", "3600", 1); /* m1 redeems nothing on its own */
	setenv("MP_REFUND_CHECK", "0", 1);
	setenv("MP_DISPUTE_POLL", "1", 1); /* merchantd asks the broker every second */
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_DEADLINE_CHECK");
	unsetenv("MP_REDEEM_INTERVAL");
	unsetenv("MP_REFUND_CHECK");
	unsetenv("MP_DISPUTE_POLL");
	key_catalogue();
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	net_down(&net);
}

/* ---- statements ---- */

struct sale {
	struct twallet tw;
	struct tchannel ch;
	uint8_t cid[MP_ID_LEN];
	char cid_hex[MP_HEX_ID_LEN + 1], acct_hex[MP_HEX_ID_LEN + 1];
	struct mp_offer o;
	uint8_t key[32];
};

/* A channel paid at m1 up to index 2, and m1's Offer after it: price 7 at unit 2 = 4 units,
 * pay_index 6, deadline 100 s from the broker's now. */
static void sale_make(struct sale *s)
{
	static const uint32_t pays[] = {1, 2};
	memset(s, 0, sizeof(*s));
	paid_channel(&net, "m1", &s->tw, &s->ch, UNITS, UNIT, pays, 2);
	tchannel_id(&s->ch, s->cid);
	mp_hex_encode(s->cid, MP_ID_LEN, s->cid_hex);
	mp_hex_encode(s->tw.account_id, MP_ID_LEN, s->acct_hex);
	ck_assert(mp_random_bytes(s->key, sizeof(s->key)));
	memcpy(s->o.merchant_id, m1.mid, MP_ID_LEN);
	memcpy(s->o.channel_id, s->cid, MP_ID_LEN);
	s->o.seg_seq = 0;
	s->o.after_index = 2;
	s->o.pay_index = 6;
	ck_assert(mp_random_bytes(s->o.order_ref, MP_ID_LEN));
	s->o.price = 7;
	SHA256(s->key, sizeof(s->key), s->o.key_hash);
	ck_assert(mp_random_bytes(s->o.ciphertext_hash, MP_HASH_LEN));
	s->o.deadline = settle_broker_now(&net) + 100;
}

static MpSigned *offer_signed(const struct mp_offer *o, const struct tmerchant *by)
{
	Micropay__V1__Offer body;
	mp_offer_body(o, &body);
	MpSigned *s = mp_stmt_sign(&by->key, MP_STMT_OFFER, &body.base);
	ck_assert(s);
	return s;
}

/* The Dispute of s's Offer (signed by `by`), w_pay_index the word at `word`, signed by key. */
static MpSigned *dispute_signed(const struct sale *s, const struct tmerchant *by, uint32_t word,
				const struct mp_key *key)
{
	uint8_t w[MP_HASH_LEN];
	tchannel_word(&s->ch, word, w);
	Micropay__V1__Dispute d = MICROPAY__V1__DISPUTE__INIT;
	d.offer = offer_signed(&s->o, by);
	d.w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, w};
	d.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->tw.account_id};
	MpSigned *out = mp_stmt_sign(key, MP_STMT_DISPUTE, &d.base);
	mp_stmt_free(d.offer);
	ck_assert(out);
	return out;
}

/* ---- calls ---- */

static MpEnvelope *dispute_call_custody(const MpSigned *stmt, MpSigned **custody, size_t n)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	Micropay__V1__DisputeReq req = MICROPAY__V1__DISPUTE_REQ__INIT;
	req.stmt = (MpSigned *)stmt;
	req.custody = custody;
	req.n_custody = n;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_REQ);
	env.dispute_req = &req;
	MpEnvelope *r = wire_call(&b, &env);
	wire_close(&b);
	ck_assert(r && r->body_case == MP_BODY(DISPUTE_RESP) && r->dispute_resp->status);
	return r;
}

static MpEnvelope *dispute_call(const MpSigned *stmt)
{
	return dispute_call_custody(stmt, NULL, 0);
}

static MpCode dispute_code(MpSigned *stmt)
{
	MpEnvelope *r = dispute_call(stmt);
	MpCode code = r->dispute_resp->status->code;
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	return code;
}

static MpEnvelope *key_call(const struct tmerchant *cert, const struct tmerchant *as,
			    const struct sale *s, const uint8_t key[32])
{
	struct wire b;
	tmerchant_connect(cert, &b, broker_ep, ca);
	Micropay__V1__DisputeKeyReq req = MICROPAY__V1__DISPUTE_KEY_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)as->mid};
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->cid};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->o.order_ref};
	req.key = (ProtobufCBinaryData){32, (uint8_t *)key};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_KEY_REQ);
	env.dispute_key_req = &req;
	MpEnvelope *r = wire_call(&b, &env);
	wire_close(&b);
	ck_assert(r && r->body_case == MP_BODY(DISPUTE_KEY_RESP) && r->dispute_key_resp->status);
	return r;
}

static void expect_key(const struct tmerchant *cert, const struct sale *s, const uint8_t key[32],
		       MpCode code, Micropay__V1__DisputeState state)
{
	MpEnvelope *r = key_call(cert, cert, s, key);
	ck_assert_int_eq(r->dispute_key_resp->status->code, code);
	ck_assert_int_eq(r->dispute_key_resp->state, state);
	micropay__v1__envelope__free_unpacked(r, NULL);
}

/* m1's open disputes: how many, and whether s's is among them. */
static size_t open_disputes(const struct tmerchant *cert, const uint8_t *mid, const struct sale *s,
			    bool *listed, MpCode *code)
{
	struct wire b;
	tmerchant_connect(cert, &b, broker_ep, ca);
	Micropay__V1__OpenDisputesReq req = MICROPAY__V1__OPEN_DISPUTES_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)mid};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_DISPUTES_REQ);
	env.open_disputes_req = &req;
	MpEnvelope *r = wire_call(&b, &env);
	wire_close(&b);
	ck_assert(r && r->body_case == MP_BODY(OPEN_DISPUTES_RESP));
	const Micropay__V1__OpenDisputesResp *o = r->open_disputes_resp;
	*code = o->status->code;
	*listed = false;
	for (size_t i = 0; i < o->n_disputes; i++)
		*listed =
		    *listed || (!memcmp(o->disputes[i]->channel_id.data, s->cid, MP_ID_LEN) &&
				!memcmp(o->disputes[i]->order_ref.data, s->o.order_ref, MP_ID_LEN));
	size_t n = o->n_disputes;
	micropay__v1__envelope__free_unpacked(r, NULL);
	return n;
}

static char *dispute_state(const struct sale *s)
{
	char ref[MP_HEX_ID_LEN + 1];
	mp_hex_encode(s->o.order_ref, MP_ID_LEN, ref);
	return sql_value(&net,
			 "SELECT coalesce((SELECT state FROM disputes WHERE channel_id = '\\x%s' "
			 "AND order_ref = '\\x%s'), 'none')",
			 s->cid_hex, ref);
}

static void expect_state(const struct sale *s, const char *state)
{
	char *v = dispute_state(s);
	ck_assert_str_eq(v, state);
	free(v);
}

/* Disputes with a wrong word on one connection (dispute_budget.c): each answered BAD_CHAIN,
 * and after the third the broker closes the connection, so a fourth gets no answer; a new
 * connection is answered again (BAD_CHAIN: the budget is the connection's). */
static void bad_chain_closes(const struct sale *s)
{
	MpSigned *stmt = dispute_signed(s, &m1, 5, &s->ch.owner);
	Micropay__V1__DisputeReq req = MICROPAY__V1__DISPUTE_REQ__INIT;
	req.stmt = stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_REQ);
	env.dispute_req = &req;
	struct wire w;
	ck_assert(wire_connect(&w, broker_ep, ca, NULL, NULL));
	for (int i = 0; i < 3; i++) {
		MpEnvelope *r = wire_call(&w, &env);
		ck_assert(r && r->body_case == MP_BODY(DISPUTE_RESP) && r->dispute_resp->status);
		ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(BAD_CHAIN));
		micropay__v1__envelope__free_unpacked(r, NULL);
	}
	MpEnvelope *after = wire_call(&w, &env);
	ck_assert_ptr_null(after);
	wire_close(&w);
	ck_assert_int_eq(dispute_code(stmt), MP_ST(BAD_CHAIN));
}

/* ---- the test ---- */

static struct sale a, b; /* a: never answered (refunded); b: answered with the key */
static struct sale c;	 /* handed m1 -> m2 -> m1: disputes in epochs 1 and 2 */
static struct sale dd;	 /* two overlapping Offers of m1 disputed: refunds beyond the credit */

static void refusals(void)
{
	int64_t pending = broker_pending(&net, m1.mid_hex);
	ck_assert_int_eq(dispute_code(dispute_signed(&a, &m1, 6, &a.ch.owner)), MP_ST(TOO_EARLY));
	net_clock_advance(&net, 200);
	ck_assert_int_eq(dispute_code(dispute_signed(&a, &m1, 5, &a.ch.owner)), MP_ST(BAD_CHAIN));
	bad_chain_closes(&a);
	ck_assert_int_eq(dispute_code(dispute_signed(&a, &m1, 6, &a.tw.account)), MP_ST(BAD_SIG));
	struct sale by_m2 = a;
	memcpy(by_m2.o.merchant_id, m2.mid, MP_ID_LEN);
	ck_assert_int_eq(dispute_code(dispute_signed(&by_m2, &m2, 6, &a.ch.owner)),
			 MP_ST(NOT_HOLDER));
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending);
	expect_state(&a, "none");
	broker_audit_clean(&net);
}

static void accepted(void)
{
	int64_t pending = broker_pending(&net, m1.mid_hex);
	MpSigned *stmt = dispute_signed(&a, &m1, 6, &a.ch.owner);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(OK));
	ck_assert_int_eq(r->dispute_resp->state, MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	ck_assert_uint_gt(r->dispute_resp->answer_by, settle_broker_now(&net));
	micropay__v1__envelope__free_unpacked(r, NULL);
	/* the word at 6 is m1's redemption evidence: credited 1..6 (nothing was before) */
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 6 * UNIT);
	r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(r->dispute_resp->state, MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	/* another Dispute (another Offer) for the same order_ref */
	struct sale other = a;
	other.o.price = 8;
	r = dispute_call(stmt = dispute_signed(&other, &m1, 6, &a.ch.owner));
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(CONFLICT));
	ck_assert(r->dispute_resp->status->evidence);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 6 * UNIT);
	expect_state(&a, "OPEN");
	broker_audit_clean(&net);
}

static void key_released(void)
{
	int64_t pending = broker_pending(&net, m1.mid_hex);
	MpSigned *stmt = dispute_signed(&b, &m1, 6, &b.ch.owner);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(r, NULL);
	bool listed_a = false, listed_b = false;
	MpCode code;
	ck_assert_uint_eq(open_disputes(&m1, m1.mid, &a, &listed_a, &code), 2);
	open_disputes(&m1, m1.mid, &b, &listed_b, &code);
	ck_assert(listed_a && listed_b);
	ck_assert_int_eq(code, MP_ST(OK));
	open_disputes(&m2, m1.mid, &a, &listed_a, &code);
	ck_assert_int_eq(code, MP_ST(BAD_SIG));

	uint8_t wrong[32];
	memcpy(wrong, b.key, 32);
	wrong[0] ^= 1;
	expect_key(&m1, &b, wrong, MP_ST(CONFLICT), MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	expect_state(&b, "OPEN");
	MpEnvelope *k = key_call(&m2, &m1, &b, b.key); /* m2's certificate, m1's id */
	ck_assert_int_eq(k->dispute_key_resp->status->code, MP_ST(BAD_SIG));
	micropay__v1__envelope__free_unpacked(k, NULL);
	expect_key(&m1, &b, b.key, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	expect_key(&m1, &b, b.key, MP_ST(DUPLICATE_OK),
		   MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(r->dispute_resp->state, MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	ck_assert_uint_eq(r->dispute_resp->key.len, 32);
	ck_assert(!memcmp(r->dispute_resp->key.data, b.key, 32));
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	ck_assert_uint_eq(open_disputes(&m1, m1.mid, &b, &listed_b, &code), 1);
	ck_assert(!listed_b);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 6 * UNIT);
	broker_audit_clean(&net);
}

/* Handoff hseq of s's channel from `from` to `to` at index at, linked to prev. */
static MpSigned *handoff(const struct sale *s, const struct tmerchant *from,
			 const struct tmerchant *to, uint32_t hseq, uint32_t at,
			 const uint8_t prev[MP_HASH_LEN])
{
	uint8_t w[MP_HASH_LEN], head[MP_HASH_LEN], move_hash[MP_HASH_LEN];
	tchannel_word(&s->ch, at, w);
	mp_stmt_hash(s->ch.cert, head);
	MpSigned *move = sign_move(&s->ch.owner, s->cid, hseq - 1, to->mid);
	mp_stmt_hash(move, move_hash);
	mp_stmt_free(move);
	return handoff_forge(&from->key, s->cid, hseq, from->mid, to->mid, at, w, head,
			     prev ? prev : head, move_hash);
}

/* An Offer of s by `by` after `after` (4 units), a fresh order_ref; the dispute's answer. */
static MpCode epoch_dispute(struct sale *s, const struct tmerchant *by, uint32_t after,
			    MpSigned **custody, size_t n)
{
	memcpy(s->o.merchant_id, by->mid, MP_ID_LEN);
	s->o.after_index = after;
	s->o.pay_index = after + 4;
	ck_assert(mp_random_bytes(s->o.order_ref, MP_ID_LEN));
	MpSigned *stmt = dispute_signed(s, by, after + 4, &s->ch.owner);
	MpEnvelope *r = dispute_call_custody(stmt, custody, n);
	MpCode code = r->dispute_resp->status->code;
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	return code;
}

/* Epochs above 0: m1 hands c to m2 at 2 (Handoff 1), m2 back to m1 at 8 (Handoff 2). A
 * dispute of m2's Offer in epoch 1 carries Handoff 1; of m1's in epoch 2 only Handoff 2 (as
 * walletd sends it), which the broker completes with the Handoff 1 it stored. An Offer by m1
 * in epoch 1 is NOT_HOLDER. Both keys released, so the credit stays. */
static void later_epochs(void)
{
	int64_t p1 = broker_pending(&net, m1.mid_hex), p2 = broker_pending(&net, m2.mid_hex);
	MpSigned *h1 = handoff(&c, &m1, &m2, 1, 2, NULL);
	uint8_t h1_hash[MP_HASH_LEN];
	mp_stmt_hash(h1, h1_hash);
	MpSigned *h2 = handoff(&c, &m2, &m1, 2, 8, h1_hash);
	ck_assert_int_eq(epoch_dispute(&c, &m1, 2, &h1, 1), MP_ST(NOT_HOLDER));
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), p1);
	ck_assert_int_eq(epoch_dispute(&c, &m2, 2, &h1, 1), MP_ST(OK));
	ck_assert_int_eq(broker_pending(&net, m2.mid_hex), p2 + 4 * UNIT);
	expect_key(&m2, &c, c.key, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	ck_assert_int_eq(epoch_dispute(&c, &m1, 8, &h2, 1), MP_ST(OK));
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), p1 + 4 * UNIT);
	expect_key(&m1, &c, c.key, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	mp_stmt_free(h1);
	mp_stmt_free(h2);
	broker_audit_clean(&net);
}

static void refunded(void)
{
	int64_t pending = broker_pending(&net, m1.mid_hex);
	int64_t paid = net_balance(&net, a.acct_hex);
	json_decref(settle_sweep(&net)); /* not yet past answer_by: nothing */
	expect_state(&a, "OPEN");
	net_clock_advance(&net, 3700);
	json_decref(settle_sweep(&net));
	expect_state(&a, "REFUNDED");
	json_decref(settle_sweep(&net)); /* exactly once */
	ck_assert_int_eq(net_balance(&net, a.acct_hex), paid + 4 * UNIT);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending - 4 * UNIT);
	char ref[MP_HEX_ID_LEN + 1], want[64];
	mp_hex_encode(a.o.order_ref, MP_ID_LEN, ref);
	char *parts =
	    sql_value(&net,
		      "SELECT from_pending || '/' || from_bond || '/' || from_reserve || '/' "
		      "|| coalesce(refund_detail, 'none') FROM disputes WHERE channel_id = "
		      "'\\x%s' AND order_ref = '\\x%s'",
		      a.cid_hex, ref);
	snprintf(want, sizeof(want), "%d/0/0/none", 4 * UNIT);
	ck_assert_str_eq(parts, want);
	free(parts);
	expect_key(&m1, &a, a.key, MP_ST(TOO_LATE), MICROPAY__V1__DISPUTE_STATE__DISPUTE_REFUNDED);
	MpSigned *stmt = dispute_signed(&a, &m1, 6, &a.ch.owner);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(r->dispute_resp->state, MICROPAY__V1__DISPUTE_STATE__DISPUTE_REFUNDED);
	ck_assert_uint_eq(r->dispute_resp->refunded, 4 * UNIT);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	broker_audit_clean(&net);
}

static int64_t loss_reserve_balance(void)
{
	char *v = sql_value(&net, "SELECT coalesce(sum(balance), 0) FROM accounts "
				  "WHERE kind = 'loss_reserve'");
	int64_t out = strtoll(v, NULL, 10);
	free(v);
	return out;
}

/* "OPEN/REFUNDED count,from_pending,from_bond,from_reserve,short details" of dd's channel. */
static char *d_refunds(void)
{
	return sql_value(&net,
			 "SELECT count(*) FILTER (WHERE state = 'OPEN') || '/' || count(*) FILTER "
			 "(WHERE state = 'REFUNDED') || ',' || sum(from_pending) || ',' || "
			 "sum(from_bond) || ',' || sum(from_reserve) || ',' || count(*) FILTER "
			 "(WHERE refund_detail LIKE 'not covered: short %d of %%') FROM disputes "
			 "WHERE channel_id = '\\x%s'",
			 2 * UNIT, dd.cid_hex);
}

/* m1 signed two Offers after index 2 on channel dd (4 units and 5 units): both disputed, the
 * channel credits m1 7 units, the refunds owe 9. The sweep refunds the first one listed (the
 * two are due at the same time: either) from m1's pending credit of dd; what is left of it
 * (3 or 2 units) does not cover the other, m1 has no bond and the loss reserve is empty, so
 * that one stays OPEN with nothing moved ("not covered: short 2 units"), the audit clean. A
 * second sweep changes nothing. Once
 * loss_reserve.fund puts 2 units in the reserve, the next sweep refunds it: 7 units in all from
 * m1's pending credit of dd, 2 from the reserve, m1's pending back where it was. */
static void short_refund(void)
{
	struct sale d2 = dd;
	ck_assert(mp_random_bytes(d2.o.order_ref, MP_ID_LEN));
	d2.o.price = 10; /* pay_index 7 */
	d2.o.pay_index = 7;
	int64_t pending = broker_pending(&net, m1.mid_hex), paid = net_balance(&net, dd.acct_hex);
	ck_assert_int_eq(dispute_code(dispute_signed(&dd, &m1, 6, &dd.ch.owner)), MP_ST(OK));
	ck_assert_int_eq(dispute_code(dispute_signed(&d2, &m1, 7, &dd.ch.owner)), MP_ST(OK));
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 7 * UNIT);
	ck_assert_int_eq(loss_reserve_balance(), 0);
	net_clock_advance(&net, 3700);
	json_decref(settle_sweep(&net));
	char *v = d_refunds();
	char want[64];
	snprintf(want, sizeof(want), "1/1,%lld,0,0,1",
		 (long long)(net_balance(&net, dd.acct_hex) - paid));
	ck_assert_str_eq(v, want);
	free(v);
	int64_t part = net_balance(&net, dd.acct_hex) - paid;
	ck_assert(part == 4 * UNIT || part == 5 * UNIT);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 7 * UNIT - part);
	broker_audit_clean(&net);
	json_decref(settle_sweep(&net)); /* still short: nothing moves */
	ck_assert_int_eq(net_balance(&net, dd.acct_hex), paid + part);
	uint8_t id[MP_ID_LEN];
	char params[128], id_hex[MP_HEX_ID_LEN + 1];
	ck_assert(mp_random_bytes(id, MP_ID_LEN));
	mp_hex_encode(id, MP_ID_LEN, id_hex);
	snprintf(params, sizeof(params), "{\"amount\":%d,\"fund_id\":\"%s\"}", 2 * UNIT, id_hex);
	json_decref(admin_ok(&net, "broker", "loss_reserve.fund", params));
	json_decref(settle_sweep(&net));
	v = d_refunds();
	snprintf(want, sizeof(want), "0/2,%d,0,%d,0", 7 * UNIT, 2 * UNIT);
	ck_assert_str_eq(v, want);
	free(v);
	ck_assert_int_eq(net_balance(&net, dd.acct_hex), paid + 9 * UNIT);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending);
	ck_assert_int_eq(loss_reserve_balance(), 0);
	broker_audit_clean(&net);
}

/* A payout that is not a customer account: UNKNOWN_ACCOUNT; past deadline + T_dispute (24 h,
 * still before redeem_until): TOO_LATE. Each a fresh order_ref of b; nothing changes. */
static void late_or_unknown(void)
{
	int64_t pending = broker_pending(&net, m1.mid_hex);
	struct sale x = b;
	ck_assert(mp_random_bytes(x.o.order_ref, MP_ID_LEN));
	ck_assert(mp_random_bytes(x.tw.account_id, MP_ID_LEN));
	ck_assert_int_eq(dispute_code(dispute_signed(&x, &m1, 6, &b.ch.owner)),
			 MP_ST(UNKNOWN_ACCOUNT));
	memcpy(x.tw.account_id, b.tw.account_id, MP_ID_LEN);
	net_clock_advance(&net, 86400);
	ck_assert_int_eq(dispute_code(dispute_signed(&x, &m1, 6, &b.ch.owner)), MP_ST(TOO_LATE));
	expect_state(&x, "none");
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending);
	broker_audit_clean(&net);
}

static void finalised(void)
{
	int64_t paid_a = net_balance(&net, a.acct_hex), paid_b = net_balance(&net, b.acct_hex);
	settle_advance_to(&net, settle_broker_now(&net) + 5 * 86400);
	json_decref(settle_sweep(&net));
	/* spent 6 in both: refund (100 - 6) * 2; credited 6 units; nothing unclaimed */
	settle_expect_finalized(&net, a.cid_hex, 6, (UNITS - 6) * UNIT, 0, 6 * UNIT);
	settle_expect_finalized(&net, b.cid_hex, 6, (UNITS - 6) * UNIT, 0, 6 * UNIT);
	/* c: credited (2, 6] to m2 and (8, 12] to m1; (0, 2] (m1 never redeemed it) and (6, 8]
	 * spent and unclaimed */
	settle_expect_finalized(&net, c.cid_hex, 12, (UNITS - 12) * UNIT, 4 * UNIT, 8 * UNIT);
	/* d: credited 7 units, all refunded to the wallet (with 2 from the reserve) */
	settle_expect_finalized(&net, dd.cid_hex, 7, (UNITS - 7) * UNIT, 0, 7 * UNIT);
	/* a's wallet: the dispute's 4 units and the rest, never the 4 units twice */
	ck_assert_int_eq(net_balance(&net, a.acct_hex), paid_a + (UNITS - 6) * UNIT);
	ck_assert_int_eq(net_balance(&net, b.acct_hex), paid_b + (UNITS - 6) * UNIT);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), 0);
	ck_assert_int_eq(broker_pending(&net, m2.mid_hex), 0);
	broker_audit_clean(&net);
}

START_TEST(dispute_flow)
{
	sale_make(&a);
	sale_make(&b);
	sale_make(&c);
	sale_make(&dd);
	refusals();
	accepted();
	key_released();
	later_epochs();
	refunded();
	short_refund();
	late_or_unknown();
	finalised();
	struct sale *all[] = {&a, &b, &c, &dd};
	for (size_t i = 0; i < 4; i++) {
		tchannel_free(&all[i]->ch);
		mp_key_free(&all[i]->tw.account);
	}
}
END_TEST

/* ---- merchantd's poller (merchantd/dispute_answer.c) ---- */

struct poll_wait {
	const MpSigned *stmt;
	uint8_t key[32];
	bool keyed;
};

static bool key_relayed(void *arg)
{
	struct poll_wait *pw = arg;
	MpEnvelope *r = dispute_call(pw->stmt);
	const Micropay__V1__DisputeResp *d = r->dispute_resp;
	pw->keyed = d->status->code == MP_ST(DUPLICATE_OK) &&
		    d->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED &&
		    d->key.len == 32;
	if (pw->keyed)
		memcpy(pw->key, d->key.data, 32);
	micropay__v1__envelope__free_unpacked(r, NULL);
	return pw->keyed;
}

/* A real key-release sale at m1 (catalogue item delivery = key): one unit paid, m1's Offer,
 * pay_index paid naming it, the key never asked. After the deadline the Dispute is OPEN; m1's
 * poller (every second) finds it, answers with the key from its store, and the wallet's retry
 * gets that key, which hashes to the Offer's key_hash. */
START_TEST(merchant_poller)
{
	struct sale s = {0};
	struct wire w;
	tchannel_opened(&net, "m1", &s.tw, &s.ch, 50, &w);
	tchannel_id(&s.ch, s.cid);
	static const uint8_t plain = 1;
	MpEnvelope *e = tchannel_pay(&s.ch, &w, 1, &plain, 1);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	Micropay__V1__OfferReq oreq = MICROPAY__V1__OFFER_REQ__INIT;
	oreq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, s.cid};
	oreq.item = "song";
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_REQ);
	env.offer_req = &oreq;
	MpEnvelope *oe = wire_call(&w, &env);
	ck_assert(oe && oe->body_case == MP_BODY(OFFER_RESP));
	ck_assert_int_eq(oe->offer_resp->status->code, MP_ST(OK));
	struct mp_offer o;
	ck_assert_ptr_null(mp_offer_open(oe->offer_resp->offer, m1.key.pk, &o));
	e = tchannel_pay(&s.ch, &w, o.pay_index, o.order_ref, MP_ID_LEN);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);

	net_clock_advance(&net, 120); /* past the Offer's deadline, no key asked */
	uint8_t wd[MP_HASH_LEN];
	tchannel_word(&s.ch, o.pay_index, wd);
	Micropay__V1__Dispute d = MICROPAY__V1__DISPUTE__INIT;
	d.offer = oe->offer_resp->offer;
	d.w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, wd};
	d.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, s.tw.account_id};
	MpSigned *stmt = mp_stmt_sign(&s.ch.owner, MP_STMT_DISPUTE, &d.base);
	micropay__v1__envelope__free_unpacked(oe, NULL);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(r, NULL);

	struct poll_wait pw = {.stmt = stmt};
	ck_assert_msg(wait_for(key_relayed, &pw, 60000), "merchantd's poller sent no key");
	uint8_t h[MP_HASH_LEN];
	SHA256(pw.key, 32, h);
	ck_assert(!memcmp(h, o.key_hash, MP_HASH_LEN));
	mp_stmt_free(stmt);
	tchannel_free(&s.ch);
	mp_key_free(&s.tw.account);
	broker_audit_clean(&net);
}
END_TEST

/* ---- a key that does not open (docs/disputes.md "A key that does not open") ---- */

/* s's goods: chunk 0 sealed under s->key, chunk 1 under another key (both with s->key's
 * prefix); the Offer's ciphertext_hash is their Merkle tree. */
struct sealed_goods {
	uint8_t chunk[2][40 + MP_SEAL_TAG_LEN];
	uint8_t leaves[2][MP_SEALED_HASH_LEN];
};

static void goods_seal(struct sale *s, struct sealed_goods *g)
{
	uint8_t prefix[MP_SEAL_PREFIX_LEN], wrong[MP_SEAL_KEY_LEN], plain[40];
	mp_sealed_prefix(s->key, prefix);
	SHA256(s->key, sizeof(s->key), wrong);
	memset(plain, 'x', sizeof(plain));
	ck_assert(mp_seal_chunk(s->key, prefix, 0, plain, sizeof(plain), g->chunk[0]));
	ck_assert(mp_seal_chunk(wrong, prefix, 1, plain, sizeof(plain), g->chunk[1]));
	struct mp_sealed_hash *h = mp_sealed_hash_new();
	for (uint32_t k = 0; k < 2; k++) {
		ck_assert(mp_sealed_hash_add(h, g->chunk[k], sizeof(g->chunk[k])));
		ck_assert(mp_sealed_leaf(k, g->chunk[k], sizeof(g->chunk[k]), g->leaves[k]));
	}
	ck_assert(mp_sealed_hash_final(h, s->o.ciphertext_hash));
	mp_sealed_hash_free(h);
}

/* The DisputeReq of s with the proof of chunk k (its path's first byte flipped if tamper). */
static MpEnvelope *proof_call(struct sale *s, struct sealed_goods *g, uint32_t k, bool tamper)
{
	uint8_t path[MP_SEALED_PATH_MAX][MP_SEALED_HASH_LEN];
	ProtobufCBinaryData ph[MP_SEALED_PATH_MAX];
	Micropay__V1__BadKeyProof p = MICROPAY__V1__BAD_KEY_PROOF__INIT;
	p.key = (ProtobufCBinaryData){sizeof(s->key), s->key};
	p.chunk_index = k;
	p.chunk_count = 2;
	p.sealed_chunk = (ProtobufCBinaryData){sizeof(g->chunk[k]), g->chunk[k]};
	p.n_path = mp_sealed_path((const uint8_t(*)[MP_SEALED_HASH_LEN])g->leaves, 2, k, path);
	for (size_t i = 0; i < p.n_path; i++)
		ph[i] = (ProtobufCBinaryData){MP_SEALED_HASH_LEN, path[i]};
	p.path = ph;
	path[0][0] ^= tamper;
	MpSigned *stmt = dispute_signed(s, &m1, 6, &s->ch.owner);
	struct wire conn;
	ck_assert(wire_connect(&conn, broker_ep, ca, NULL, NULL));
	Micropay__V1__DisputeReq req = MICROPAY__V1__DISPUTE_REQ__INIT;
	req.stmt = stmt;
	req.bad_key = &p;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_REQ);
	env.dispute_req = &req;
	MpEnvelope *r = wire_call(&conn, &env);
	wire_close(&conn);
	mp_stmt_free(stmt);
	ck_assert(r && r->body_case == MP_BODY(DISPUTE_RESP) && r->dispute_resp->status);
	return r;
}

static void expect_proof(struct sale *s, struct sealed_goods *g, uint32_t k, bool tamper,
			 MpCode code, Micropay__V1__DisputeState state)
{
	MpEnvelope *r = proof_call(s, g, k, tamper);
	ck_assert_msg(r->dispute_resp->status->code == code, "%s", r->dispute_resp->status->detail);
	ck_assert_int_eq(r->dispute_resp->state, state);
	if (code == MP_ST(OK))
		ck_assert_uint_le(r->dispute_resp->answer_by, settle_broker_now(&net));
	micropay__v1__envelope__free_unpacked(r, NULL);
}

/* e: disputed, m1 releases its key, which does not open chunk 1. f: the first request carries
 * the proof (opened and proven in one). Then, past e's deadline + T_dispute but within
 * T_dispute of m1's answer: a proof of chunk 0 (which opens) CONFLICT, a tampered path
 * MALFORMED, the proof of chunk 1 OPEN (due now); m1 can no longer answer it nor sees it
 * listed. The sweep refunds both exactly once. */
START_TEST(bad_key_proof)
{
	struct sale e, f;
	struct sealed_goods ge, gf;
	sale_make(&e);
	sale_make(&f);
	goods_seal(&e, &ge);
	goods_seal(&f, &gf);
	net_clock_advance(&net, 200); /* past the Offers' deadlines */
	MpSigned *stmt = dispute_signed(&e, &m1, 6, &e.ch.owner);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	expect_key(&m1, &e, e.key, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED);
	int64_t pending = broker_pending(&net, m1.mid_hex);
	expect_proof(&f, &gf, 1, false, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending + 6 * UNIT); /* credited */
	/* Past the Offer's deadline + T_dispute, within T_dispute of m1's answer: still taken. */
	net_clock_advance(&net, 86350);
	expect_proof(&e, &ge, 0, false, MP_ST(CONFLICT), MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
	expect_proof(&e, &ge, 1, true, MP_ST(MALFORMED), MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
	expect_state(&e, "KEY_RELEASED");
	expect_proof(&e, &ge, 1, false, MP_ST(OK), MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	expect_state(&e, "OPEN");
	expect_key(&m1, &e, e.key, MP_ST(CONFLICT), MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	bool listed;
	MpCode code;
	open_disputes(&m1, m1.mid, &e, &listed, &code);
	ck_assert(!listed);
	expect_proof(&e, &ge, 1, false, MP_ST(DUPLICATE_OK),
		     MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	broker_audit_clean(&net);
	int64_t paid_e = net_balance(&net, e.acct_hex), paid_f = net_balance(&net, f.acct_hex);
	json_decref(settle_sweep(&net));
	expect_state(&e, "REFUNDED");
	expect_state(&f, "REFUNDED");
	json_decref(settle_sweep(&net)); /* exactly once */
	ck_assert_int_eq(net_balance(&net, e.acct_hex), paid_e + 4 * UNIT);
	ck_assert_int_eq(net_balance(&net, f.acct_hex), paid_f + 4 * UNIT);
	expect_proof(&e, &ge, 1, false, MP_ST(DUPLICATE_OK),
		     MICROPAY__V1__DISPUTE_STATE__DISPUTE_REFUNDED);
	tchannel_free(&e.ch);
	tchannel_free(&f.ch);
	mp_key_free(&e.tw.account);
	mp_key_free(&f.tw.account);
	broker_audit_clean(&net);
}
END_TEST

/* ---- a dispute ended by the buyer's OfferCancel (docs/disputes.md "Cancelling an offer") ---- */

/* The cancel of s's Offer (as m1 signed it) by key; the Offer's body spoiled first if
 * other_offer (another statement: another stmt_hash). */
static MpSigned *cancel_signed(const struct sale *s, const struct mp_key *key, bool other_offer)
{
	MpSigned *offer = offer_signed(&s->o, &m1);
	if (other_offer)
		offer->body.data[offer->body.len - 1] ^= 1;
	MpSigned *cancel = mp_offer_cancel_sign(key, offer, &s->o);
	mp_stmt_free(offer);
	ck_assert_ptr_nonnull(cancel);
	return cancel;
}

/* DisputeKeyReq from m1 for s with the cancel (and the key too if with_key); the answer. */
static void expect_cancel(const struct sale *s, MpSigned *cancel, bool with_key, MpCode code,
			  Micropay__V1__DisputeState state)
{
	struct wire conn;
	tmerchant_connect(&m1, &conn, broker_ep, ca);
	Micropay__V1__DisputeKeyReq req = MICROPAY__V1__DISPUTE_KEY_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m1.mid};
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->cid};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->o.order_ref};
	req.cancel = cancel;
	if (with_key)
		req.key = (ProtobufCBinaryData){32, (uint8_t *)s->key};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_KEY_REQ);
	env.dispute_key_req = &req;
	MpEnvelope *r = wire_call(&conn, &env);
	wire_close(&conn);
	ck_assert(r && r->body_case == MP_BODY(DISPUTE_KEY_RESP) && r->dispute_key_resp->status);
	ck_assert_msg(r->dispute_key_resp->status->code == code, "%s: %s",
		      mp_code_name(r->dispute_key_resp->status->code),
		      r->dispute_key_resp->status->detail);
	ck_assert_int_eq(r->dispute_key_resp->state, state);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(cancel);
}

/* Two of m1's Offers disputed after their deadline. e: m1 shows a cancel by another key
 * (BAD_SIG), one naming another statement (MALFORMED), a cancel and a key together
 * (MALFORMED), then the owner's cancel: CANCELLED, again DUPLICATE_OK; the key afterwards
 * CONFLICT; not listed to m1; the wallet's retry CANCELLED with nothing refunded, and no sweep
 * refunds it. f: a cancel past answer_by is TOO_LATE and the sweep refunds f. */
START_TEST(cancel_ends_a_dispute)
{
	struct sale e, f;
	sale_make(&e);
	sale_make(&f);
	uint8_t seed[MP_SK_LEN];
	struct mp_key other;
	ck_assert(mp_key_generate(&other, seed));
	net_clock_advance(&net, 101); /* past both deadlines */
	ck_assert_int_eq(dispute_code(dispute_signed(&e, &m1, 6, &e.ch.owner)), MP_ST(OK));
	ck_assert_int_eq(dispute_code(dispute_signed(&f, &m1, 6, &f.ch.owner)), MP_ST(OK));
	const Micropay__V1__DisputeState none = MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE,
					 cancelled = MICROPAY__V1__DISPUTE_STATE__DISPUTE_CANCELLED;
	expect_cancel(&e, cancel_signed(&e, &other, false), false, MP_ST(BAD_SIG), none);
	expect_cancel(&e, cancel_signed(&e, &e.ch.owner, true), false, MP_ST(MALFORMED), none);
	expect_cancel(&e, cancel_signed(&e, &e.ch.owner, false), true, MP_ST(MALFORMED), none);
	expect_state(&e, "OPEN");
	expect_cancel(&e, cancel_signed(&e, &e.ch.owner, false), false, MP_ST(OK), cancelled);
	expect_cancel(&e, cancel_signed(&e, &e.ch.owner, false), false, MP_ST(DUPLICATE_OK),
		      cancelled);
	expect_key(&m1, &e, e.key, MP_ST(CONFLICT), cancelled);
	bool listed = true;
	MpCode code;
	open_disputes(&m1, m1.mid, &e, &listed, &code);
	ck_assert(!listed);
	broker_audit_clean(&net);

	int64_t paid_e = net_balance(&net, e.acct_hex), paid_f = net_balance(&net, f.acct_hex);
	net_clock_advance(&net, 3700); /* past answer_by */
	expect_cancel(&f, cancel_signed(&f, &f.ch.owner, false), false, MP_ST(TOO_LATE),
		      MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN);
	json_decref(settle_sweep(&net));
	expect_state(&e, "CANCELLED");
	expect_state(&f, "REFUNDED");
	ck_assert_int_eq(net_balance(&net, e.acct_hex), paid_e);
	ck_assert_int_eq(net_balance(&net, f.acct_hex), paid_f + 4 * UNIT);
	MpSigned *again = dispute_signed(&e, &m1, 6, &e.ch.owner);
	MpEnvelope *r = dispute_call(again);
	mp_stmt_free(again);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(r->dispute_resp->state, cancelled);
	ck_assert_uint_eq(r->dispute_resp->refunded, 0);
	ck_assert_uint_eq(r->dispute_resp->key.len, 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	struct sale *all[] = {&e, &f};
	for (size_t i = 0; i < 2; i++) {
		tchannel_free(&all[i]->ch);
		mp_key_free(&all[i]->tw.account);
	}
	mp_key_free(&other);
	broker_audit_clean(&net);
}
END_TEST

/* A raw channel at m1 (50 units, unit 1 paid) and m1's real Offer of "song" after it (its
 * fields in s->o); the Offer (to mp_stmt_free), *w connected to m1. */
static MpSigned *real_offer(struct sale *s, struct wire *w)
{
	static const uint8_t plain = 1;
	tchannel_opened(&net, "m1", &s->tw, &s->ch, 50, w);
	tchannel_id(&s->ch, s->cid);
	mp_hex_encode(s->cid, MP_ID_LEN, s->cid_hex);
	MpEnvelope *e = tchannel_pay(&s->ch, w, 1, &plain, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	Micropay__V1__OfferReq oreq = MICROPAY__V1__OFFER_REQ__INIT;
	oreq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, s->cid};
	oreq.item = "song";
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_REQ);
	env.offer_req = &oreq;
	MpEnvelope *oe = wire_call(w, &env);
	ck_assert(oe && oe->body_case == MP_BODY(OFFER_RESP));
	ck_assert_int_eq(oe->offer_resp->status->code, MP_ST(OK));
	ck_assert_ptr_null(mp_offer_open(oe->offer_resp->offer, m1.key.pk, &s->o));
	MpSigned *offer = mp_stmt_copy(oe->offer_resp->offer);
	micropay__v1__envelope__free_unpacked(oe, NULL);
	return offer;
}

/* The Dispute of offer with the word at its pay_index, signed by s's owner key (to
 * mp_stmt_free). */
static MpSigned *dispute_of_offer(const struct sale *s, const MpSigned *offer)
{
	uint8_t wd[MP_HASH_LEN];
	tchannel_word(&s->ch, s->o.pay_index, wd);
	Micropay__V1__Dispute d = MICROPAY__V1__DISPUTE__INIT;
	d.offer = (MpSigned *)offer;
	d.w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, wd};
	d.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->tw.account_id};
	MpSigned *stmt = mp_stmt_sign(&s->ch.owner, MP_STMT_DISPUTE, &d.base);
	ck_assert_ptr_nonnull(stmt);
	return stmt;
}

/* The same, taken by the broker (OK). */
static MpSigned *dispute_of(const struct sale *s, const MpSigned *offer)
{
	MpSigned *stmt = dispute_of_offer(s, offer);
	MpEnvelope *r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(r, NULL);
	return stmt;
}

/* The attack the cancel closes, end to end at m1: an Offer of m1 lapses unpaid; the buyer's
 * next Pays are refused until it cancels the Offer; it then pays the Offer's indices for other
 * orders and disputes the Offer with the word at pay_index. m1's poller answers the dispute
 * with the stored cancel: CANCELLED, nothing refunded, and the buyer gets no key. */
START_TEST(lapsed_offer_dispute_cancelled_by_m1)
{
	struct sale s = {0};
	struct wire w;
	static const uint8_t plain = 1;
	MpSigned *offer = real_offer(&s, &w);
	MpEnvelope *e;
	net_clock_advance(&net, 120); /* lapsed unpaid */
	e = tchannel_pay(&s.ch, &w, 2, &plain, 1);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(CONFLICT));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(goods_offer_cancel(&w, &s.ch.owner, offer, &s.o), MP_ST(OK));
	for (uint32_t j = 2; j <= s.o.pay_index + 1; j++) { /* other orders */
		e = tchannel_pay(&s.ch, &w, j, &plain, 1);
		ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	wire_close(&w);
	MpSigned *stmt = dispute_of(&s, offer);
	mp_stmt_free(offer);
	MpEnvelope *r;
	mp_hex_encode(s.cid, MP_ID_LEN, s.cid_hex);
	uint64_t t0 = now_ms();
	char *state = NULL;
	while ((state = dispute_state(&s)) && strcmp(state, "CANCELLED") && now_ms() - t0 < 60000) {
		free(state);
		usleep(200 * 1000);
	}
	ck_assert_msg(state && !strcmp(state, "CANCELLED"), "m1 did not show the cancel");
	free(state);
	r = dispute_call(stmt);
	ck_assert_int_eq(r->dispute_resp->state, MICROPAY__V1__DISPUTE_STATE__DISPUTE_CANCELLED);
	ck_assert_uint_eq(r->dispute_resp->key.len, 0);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_stmt_free(stmt);
	tchannel_free(&s.ch);
	mp_key_free(&s.tw.account);
	broker_audit_clean(&net);
}
END_TEST

/* The other half: an Offer of m1 left unpaid (the buyer's Pay never came) and disputed with
 * the word at pay_index. m1's poller takes the Dispute's word as the offer's payment (the
 * broker credited m1 up to pay_index) before it releases the key: the channel's point moves to
 * pay_index, the offer no longer holds it, a cancel of it is CONFLICT, its key is not given in
 * a KeyResp (only through the broker, which either releases it or refunds the buyer), and the
 * channel pays on after pay_index, so those indices are never paid twice. */
START_TEST(unpaid_offer_paid_by_its_dispute)
{
	struct sale s = {0};
	struct wire w;
	static const uint8_t plain = 1;
	MpSigned *offer = real_offer(&s, &w);
	MpEnvelope *e;
	net_clock_advance(&net, 120); /* lapsed, never paid at m1 */
	MpSigned *stmt = dispute_of(&s, offer);
	struct poll_wait pw = {.stmt = stmt};
	ck_assert_msg(wait_for(key_relayed, &pw, 60000), "merchantd's poller sent no key");
	uint8_t h[MP_HASH_LEN];
	SHA256(pw.key, 32, h);
	ck_assert(!memcmp(h, s.o.key_hash, MP_HASH_LEN));
	/* m1's channel is at pay_index, the offer paid: nothing holds it, no cancel taken. */
	e = tchannel_open(&s.ch, &w);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->open_ack->point->index, s.o.pay_index);
	ck_assert_ptr_null(e->open_ack->held_by_offer);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(goods_offer_cancel(&w, &s.ch.owner, offer, &s.o), MP_ST(CONFLICT));
	/* Paid by its Dispute: the key goes only through the broker (released there, above). */
	ck_assert_int_eq(goods_key_code(&w, s.cid, s.o.order_ref), MP_ST(CONFLICT));
	mp_stmt_free(offer);
	e = tchannel_pay(&s.ch, &w, s.o.pay_index + 1, &plain, 1);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(e->pay_ack->last, s.o.pay_index + 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	mp_stmt_free(stmt);
	tchannel_free(&s.ch);
	mp_key_free(&s.tw.account);
	broker_audit_clean(&net);
}
END_TEST

static bool m1_freed_the_offer(void *arg)
{
	(void)arg;
	return log_contains(&net, "m1", "was refunded to the buyer while we were away");
}

/* An unpaid Offer of m1 disputed while m1 is down, and refunded by the broker's sweep after
 * answer_by: no longer OPEN, it is never listed to m1 again. Back up, m1 asks the broker the
 * state of the dispute of its offer that still holds the channel past its deadline
 * (merchantd/dispute_ended.c): REFUNDED with the Dispute's word, which pays the offer (its key
 * goes only through the broker, which refunded the buyer instead: KeyReq CONFLICT), so the
 * channel pays on after pay_index instead of being held for good; a cancel of the offer is
 * CONFLICT. The refund moved once. */
START_TEST(refunded_while_away_frees_the_channel)
{
	struct sale s = {0};
	struct wire w;
	static const uint8_t plain = 1;
	MpSigned *offer = real_offer(&s, &w);
	wire_close(&w);
	mp_hex_encode(s.tw.account_id, MP_ID_LEN, s.acct_hex);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1"), 0);
	net_clock_advance(&net, 120); /* lapsed, never paid at m1 */
	MpSigned *stmt = dispute_of(&s, offer);
	int64_t pending = broker_pending(&net, m1.mid_hex), paid = net_balance(&net, s.acct_hex);
	net_clock_advance(&net, 3700); /* past answer_by: m1 never answered */
	json_decref(settle_sweep(&net));
	expect_state(&s, "REFUNDED");
	int64_t refund = (int64_t)(s.o.pay_index - s.o.after_index) * 1; /* unit 1 */
	ck_assert_int_eq(net_balance(&net, s.acct_hex), paid + refund);
	ck_assert_int_eq(broker_pending(&net, m1.mid_hex), pending - refund);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	net_clock_catch_up(&net, "m1");
	ck_assert_msg(wait_for(m1_freed_the_offer, NULL, 30000), "m1 did not free the offer");
	MpEnvelope *e;
	char ep[128];
	net_read(&net, "m1", "endpoint", ep, sizeof(ep));
	for (int tries = 0;; tries++) { /* the word's Pay is durable with its batch */
		ck_assert(wire_connect(&w, ep, ca, NULL, NULL));
		e = tchannel_open(&s.ch, &w);
		ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
		if (e->open_ack->point->index == s.o.pay_index || tries > 50)
			break;
		micropay__v1__envelope__free_unpacked(e, NULL);
		wire_close(&w);
		usleep(100000);
	}
	ck_assert_uint_eq(e->open_ack->point->index, s.o.pay_index);
	ck_assert_ptr_null(e->open_ack->held_by_offer);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(goods_key_code(&w, s.cid, s.o.order_ref), MP_ST(CONFLICT));
	ck_assert_int_eq(goods_offer_cancel(&w, &s.ch.owner, offer, &s.o), MP_ST(CONFLICT));
	e = tchannel_pay(&s.ch, &w, s.o.pay_index + 1, &plain, 1);
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(UNDERPAID));
	ck_assert_uint_eq(e->pay_ack->last, s.o.pay_index + 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	json_decref(settle_sweep(&net)); /* the refund moved once */
	ck_assert_int_eq(net_balance(&net, s.acct_hex), paid + refund);
	json_t *m = admin_ok(&net, "m1", "metrics", NULL);
	ck_assert_ptr_nonnull(
	    strstr(json_str(m, "prometheus"),
		   "micropay_merchant_dispute_ended_offers_total{end=\"refunded\"} 1"));
	json_decref(m);
	mp_stmt_free(offer);
	mp_stmt_free(stmt);
	tchannel_free(&s.ch);
	mp_key_free(&s.tw.account);
	broker_audit_clean(&net);
}
END_TEST

struct asks {
	int64_t before;
};

static bool m1_asked(void *arg)
{
	struct asks *seen = arg;
	return metric(&net, "m1", "micropay_merchant_dispute_state_asks_total") > seen->before;
}

/* Whether m1's `channels` listing shows channel cid held by an offer. */
static bool m1_lists_held(const char *cid_hex)
{
	json_t *r = admin_ok(&net, "m1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	int held = -1;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *row = json_array_get(list, i);
		if (!strcmp(json_str(row, "channel_id"), cid_hex))
			held = !json_is_null(json_object_get(row, "held_by_offer"));
	}
	json_decref(r);
	ck_assert_msg(held >= 0, "m1 does not list channel %s", cid_hex);
	return held;
}

static bool m1_lapsed_the_offer(void *arg)
{
	(void)arg;
	return log_contains(&net, "m1", "was never disputed and can no longer be");
}

/* An unpaid Offer nobody disputes or cancels: past its deadline m1 asks the broker, which has
 * no dispute of it, and the offer keeps holding the channel while a Dispute may still come;
 * once the broker's now is past deadline + T_dispute and a margin of 600 s (window_closed:
 * a Dispute checked just before the window closed may still be committing) the offer lapses and
 * holds the channel no longer (m1's `channels` shows no held_by_offer), and a Dispute of it is
 * TOO_LATE.
 * Last: it moves the clocks a day. */
START_TEST(undisputed_offer_lapses_after_the_window)
{
	struct sale s = {0};
	struct wire w;
	MpSigned *offer = real_offer(&s, &w);
	wire_close(&w);
	struct asks asked = {metric(&net, "m1", "micropay_merchant_dispute_state_asks_total")};
	net_clock_advance(&net, 120); /* past the deadline: a Dispute may come */
	ck_assert_msg(wait_for(m1_asked, &asked, 30000), "m1 asked nothing");
	char ep[128];
	net_read(&net, "m1", "endpoint", ep, sizeof(ep));
	ck_assert(wire_connect(&w, ep, ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(&s.ch, &w);
	ck_assert_ptr_nonnull(e->open_ack->held_by_offer); /* still held */
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&w);
	ck_assert(m1_lists_held(s.cid_hex));
	net_clock_advance(&net, 86400 + 700); /* past deadline + T_dispute (a day) + 600 s */
	ck_assert_msg(wait_for(m1_lapsed_the_offer, NULL, 30000), "the offer did not lapse");
	ck_assert(!m1_lists_held(s.cid_hex)); /* (the channel is past pay_until: no Open) */
	ck_assert_int_eq(dispute_code(dispute_of_offer(&s, offer)), MP_ST(TOO_LATE));
	json_t *m = admin_ok(&net, "m1", "metrics", NULL);
	ck_assert_ptr_nonnull(strstr(json_str(m, "prometheus"),
				     "micropay_merchant_dispute_ended_offers_total{end=\"window_"
				     "closed\"} 1"));
	json_decref(m);
	mp_stmt_free(offer);
	tchannel_free(&s.ch);
	mp_key_free(&s.tw.account);
	broker_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dispute");
	TCase *tc = tcase_create("dispute");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, dispute_flow);
	tcase_add_test(tc, merchant_poller);
	tcase_add_test(tc, bad_key_proof);
	tcase_add_test(tc, cancel_ends_a_dispute);
	tcase_add_test(tc, lapsed_offer_dispute_cancelled_by_m1);
	tcase_add_test(tc, unpaid_offer_paid_by_its_dispute);
	tcase_add_test(tc, refunded_while_away_frees_the_channel);
	tcase_add_test(tc, undisputed_offer_lapses_after_the_window);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
