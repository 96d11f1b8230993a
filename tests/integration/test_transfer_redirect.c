/* A transfer stuck at a former holder (docs/transfer.md, "Bound while TRANSFERRING"), against
 * the real daemons (deploy/mpnet: merchants m1..m3, walletd w1 = customer A and w2 = B) and
 * PostgreSQL. w1 issues a channel without holder0; a second device of the same customer (the
 * test, with the owner key and chain read from w1's store) binds it at m1, pays 3 there, moves
 * it to m2 (Handoff 1 at index 3) and pays 4 there. w1 knows none of it: its transfer.send goes
 * to the broker, which names m1 (the Bind), and its stored Transfer names epoch 0.
 * - m1 answers a TransferReq HANDED_OFF with its Handoff as a redirect only for a Transfer the
 *   owner signed; w1 follows it to m2, re-signs the Transfer for epoch 1 with declared_last 7
 *   (everything else unchanged), m2 caps it at 7; w2 accepts and pays 5 at m2; A's paywords are
 *   refused at m2 and m1; m1 is credited 3, m2 4 + 5, the broker records B's account for the
 *   refund; the audit is clean.
 * - a server standing in for m1 answers with redirects that must not be followed (wrong signer,
 *   a word not of A's chain, a segments_head naming a capped segment, another channel, no
 *   MerchantCert of the old or the new holder): each transfer.send fails with the reason, and
 *   w1 keeps m1 in epoch 0, TRANSFERRING, with its stored Transfer byte for byte; with the real
 *   m1 back the transfer finishes at m2. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_db.h"
#include "harness_handoff.h"
#include "harness_ledger.h"
#include "harness_net.h"
#include "harness_peer.h"
#include "../check_run.h"

#define N 100

static struct handoff_net hn;
static char account[3][64];

static void setup_net(void)
{
	handoff_net_up(&hn);
	ck_assert_int_eq(net_cmd(&hn.net, "wallet", "w2"), 0);
	for (int w = 1; w <= 2; w++) {
		char name[8];
		snprintf(name, sizeof(name), "w%d", w);
		json_t *r = admin_ok(&hn.net, name, "register", NULL);
		snprintf(account[w], sizeof(account[w]), "%s", json_str(r, "account_id"));
		json_decref(r);
	}
	net_fund(&hn.net, account[1], 10 * N);
}

static void teardown_net(void)
{
	handoff_net_down(&hn);
}

/* w1's channel bound at m1, paid 3 there, moved to m2 and paid 4 there by the second device;
 * the channel's id (hex) and the device's view of it. */
static void moved_behind_w1(char channel[MP_HEX_ID_LEN + 1], struct tchannel *tch)
{
	json_t *r = admin_ok(&hn.net, "w1", "issue", "{\"n\":100,\"unit_value\":1,\"days\":1}");
	snprintf(channel, MP_HEX_ID_LEN + 1, "%s", json_str(r, "channel_id"));
	json_decref(r);
	twallet_channel_load(&hn.net, "w1", channel, tch);
	uint8_t id[MP_ID_LEN];
	tchannel_id(tch, id);
	struct wire w;
	ck_assert(wire_connect(&w, hn.ep[1], hn.ca, NULL, NULL));
	MpSigned *move = sign_move(&tch->owner, id, 0, hn.tm[1].mid);
	handoff_open_send(&w, tch, move, NULL, NULL);
	MpEnvelope *e = handoff_open_ack(&w);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	MpSigned *m1_cert = mp_stmt_copy(e->open_ack->holder_cert);
	ck_assert_ptr_nonnull(m1_cert);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(move);
	ck_assert(pay_accepted(pay_status(tch, &w, 3)));
	wire_close(&w);
	ck_assert(wire_connect(&w, hn.ep[2], hn.ca, NULL, NULL));
	move = sign_move(&tch->owner, id, 0, hn.tm[2].mid);
	handoff_open_send(&w, tch, move, hn.tm[1].mid, m1_cert);
	e = handoff_open_ack(&w);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->open_ack->hseq, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(move);
	mp_stmt_free(m1_cert);
	ck_assert(pay_accepted(pay_status(tch, &w, 7)));
	wire_close(&w);
	expect_merchant_channel(&hn.net, "m1", channel, "HANDED_OFF", 0, 3);
	expect_merchant_channel(&hn.net, "m2", channel, "HELD", 1, 7);
}

static char *w_call(const char *wallet, const char *method, const char *params, const char *field)
{
	json_t *r = admin_ok(&hn.net, wallet, method, params);
	char *out = strdup(json_str(r, field));
	json_decref(r);
	return out;
}

static char *w2_offer(const char *channel)
{
	char params[200];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	return w_call("w2", "transfer.offer", params, "offer");
}

static void send_params(char *out, size_t len, const char *channel, const char *offer,
			const char *endpoint)
{
	int n = snprintf(out, len, "{\"channel_id\":\"%s\",\"offer\":\"%s\"", channel, offer);
	if (endpoint)
		n += snprintf(out + n, len - (size_t)n, ",\"endpoint\":\"%s\"", endpoint);
	snprintf(out + n, len - (size_t)n, "}");
}

static const char *wallet_state(const char *channel, char *out, size_t len)
{
	json_t *r = admin_ok(&hn.net, "w1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	snprintf(out, len, "(absent)");
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!strcmp(json_str(json_array_get(list, i), "channel_id"), channel))
			snprintf(out, len, "%s", json_str(json_array_get(list, i), "state"));
	json_decref(r);
	return out;
}

static void expect_w1(const char *channel, const char *state, int m, int64_t epoch)
{
	char holder[64], st[32];
	int64_t e;
	wallet_channel_holder(&hn.net, "w1", channel, holder, sizeof(holder), &e);
	ck_assert_msg(!strcmp(holder, hn.tm[m].mid_hex) && e == epoch,
		      "w1 records holder %s epoch %lld, expected m%d epoch %lld", holder,
		      (long long)e, m, (long long)epoch);
	ck_assert_str_eq(wallet_state(channel, st, sizeof(st)), state);
}

/* w1's first transfer.send: through the broker, which names m1 (bound meanwhile); w1 stays
 * TRANSFERRING with holder m1 in epoch 0. The offer (malloc'd). */
static char *send_through_broker(const char *channel)
{
	char *offer = w2_offer(channel);
	char params[4096], err[1024];
	send_params(params, sizeof(params), channel, offer, NULL);
	json_t *r = admin(&hn.net, "w1", "transfer.send", params, err, sizeof(err));
	ck_assert_msg(r == NULL, "transfer.send of a bound channel went through the broker");
	ck_assert_msg(strstr(err, "bound") && strstr(err, hn.tm[1].mid_hex), "%s", err);
	expect_w1(channel, "TRANSFERRING", 1, 0);
	return offer;
}

static uint8_t *stored_transfer(const char *channel, size_t *len)
{
	return twallet_blob(&hn.net, "w1",
			    "SELECT transfer FROM transfers_out WHERE channel_id = ?1", channel,
			    len);
}

static Micropay__V1__Transfer *transfer_body(const MpSigned *t, const struct mp_key *owner)
{
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(t, MP_STMT_TRANSFER, owner->pk,
				      &micropay__v1__transfer__descriptor, &body),
			 MP_ST(OK));
	return (Micropay__V1__Transfer *)body;
}

static bool same_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

/* The bundle's Transfer is the stored one (epoch 0, declared_last 0) re-signed for m2's epoch 1
 * with declared_last 7 and nothing else changed; m2's Cap of it is at index 7 of segment 0 and
 * w1 stores that Transfer now. */
static void expect_resigned(const char *channel, const char *bundle, const uint8_t *t0_bytes,
			    size_t t0_len, const struct tchannel *tch)
{
	size_t blen;
	uint8_t *bb = tmp_b64_decode(bundle, &blen);
	Micropay__V1__TransferBundle *tb = (Micropay__V1__TransferBundle *)mp_strict_unpack(
	    &micropay__v1__transfer_bundle__descriptor, bb, blen);
	ck_assert_ptr_nonnull(tb);
	ck_assert_uint_eq(tb->n_segments, 2);
	MpSigned *t0 = mp_stmt_decode(t0_bytes, t0_len);
	ck_assert_ptr_nonnull(t0);
	Micropay__V1__Transfer *a = transfer_body(t0, &tch->owner);
	Micropay__V1__Transfer *b = transfer_body(tb->segments[0], &tch->owner);
	ck_assert_uint_eq(a->holder_epoch, 0);
	ck_assert_uint_eq(a->declared_last, 0);
	ck_assert_uint_eq(b->holder_epoch, 1);
	ck_assert_uint_eq(b->declared_last, 7);
	ck_assert_uint_eq(b->new_seg_seq, a->new_seg_seq);
	ck_assert_uint_eq(b->new_len, a->new_len);
	ck_assert_uint_eq(b->valid_until, a->valid_until);
	ck_assert(same_bytes(&a->channel_id, &b->channel_id) &&
		  same_bytes(&a->to_owner_pk, &b->to_owner_pk) &&
		  same_bytes(&a->new_nonce, &b->new_nonce) &&
		  same_bytes(&a->new_root, &b->new_root) &&
		  same_bytes(&a->prev_seg_hash, &b->prev_seg_hash));
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(tb->segments[1], MP_STMT_CAP, hn.tm[2].key.pk,
				      &micropay__v1__cap__descriptor, &body),
			 MP_ST(OK));
	const Micropay__V1__Cap *cap = (const Micropay__V1__Cap *)body;
	uint8_t th[MP_HASH_LEN];
	mp_stmt_hash(tb->segments[0], th);
	ck_assert(cap->hseq == 1 && cap->point && cap->point->seg_seq == 0 &&
		  cap->point->index == 7 && !memcmp(cap->transfer_hash.data, th, MP_HASH_LEN));
	ck_assert_uint_eq(tb->n_custody, 1); /* Handoff 1, linked to the Bind the bundle carries */
	ck_assert_ptr_nonnull(tb->bind);
	size_t now_len, sent_len;
	uint8_t *now = stored_transfer(channel, &now_len);
	uint8_t *sent = mp_stmt_encode(tb->segments[0], &sent_len);
	ck_assert(sent && now_len == sent_len && !memcmp(now, sent, sent_len));
	free(now);
	free(sent);
	protobuf_c_message_free_unpacked(body, NULL);
	micropay__v1__transfer__free_unpacked(a, NULL);
	micropay__v1__transfer__free_unpacked(b, NULL);
	mp_stmt_free(t0);
	micropay__v1__transfer_bundle__free_unpacked(tb, NULL);
	free(bb);
}

/* w1 sends with m1's endpoint (twice: the same bundle) and w2 accepts (spendable 93). */
static void finish_at_m2(const char *channel, const char *offer, const struct tchannel *tch)
{
	size_t t0_len;
	uint8_t *t0 = stored_transfer(channel, &t0_len);
	char params[4096];
	send_params(params, sizeof(params), channel, offer, hn.ep[1]);
	char *bundle = w_call("w1", "transfer.send", params, "bundle");
	char *again = w_call("w1", "transfer.send", params, "bundle");
	ck_assert_str_eq(bundle, again);
	expect_w1(channel, "TRANSFERRED_OUT", 2, 1);
	expect_resigned(channel, bundle, t0, t0_len, tch);
	char *accept = malloc(strlen(bundle) + 32);
	ck_assert_ptr_nonnull(accept);
	sprintf(accept, "{\"bundle\":\"%s\"}", bundle);
	json_t *r = admin_ok(&hn.net, "w2", "transfer.accept", accept);
	ck_assert_int_eq(json_int(r, "spendable"), N - 7);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	free(accept);
	free(again);
	free(bundle);
	free(t0);
}

/* m1 shows its Handoff only to the owner: a Transfer signed by another key gets HANDED_OFF
 * alone; the owner's gets Handoff 1 naming m2, m2's MerchantCert and the Bind. */
static void m1_redirects_only_the_owner(const struct tchannel *tch)
{
	uint8_t id[MP_ID_LEN], head[MP_HASH_LEN];
	tchannel_id(tch, id);
	mp_stmt_hash(tch->cert, head);
	struct tseg junk;
	tseg_make(&junk, N);
	MpSigned *forged = transfer_sign(id, 1, 0, 0, &junk, &junk.owner, head);
	MpEnvelope *e = twallet_transfer_call(hn.ep[1], hn.ca, forged);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(HANDED_OFF));
	ck_assert(e->transfer_resp->redirect == NULL && e->transfer_resp->status->evidence == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	MpSigned *owners = transfer_sign(id, 1, 0, 0, &junk, &tch->owner, head);
	e = twallet_transfer_call(hn.ep[1], hn.ca, owners);
	const Micropay__V1__TransferResp *r = e->transfer_resp;
	ck_assert_int_eq(r->status->code, MP_ST(HANDED_OFF));
	ck_assert(r->redirect && r->redirect->n_custody == 1 && r->redirect->handoff &&
		  r->redirect->bind && r->cap == NULL);
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(r->redirect->handoff, MP_STMT_HANDOFF, hn.tm[1].key.pk,
				      &micropay__v1__handoff__descriptor, &body),
			 MP_ST(OK));
	const Micropay__V1__Handoff *h = (const Micropay__V1__Handoff *)body;
	ck_assert(h->hseq == 1 && !memcmp(h->to_mid.data, hn.tm[2].mid, MP_ID_LEN) &&
		  h->point->index == 3);
	protobuf_c_message_free_unpacked(body, NULL);
	ck_assert_uint_eq(r->redirect->n_merchant_certs, 2); /* m1 (signer) and m2 (named) */
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(forged);
	mp_stmt_free(owners);
	mp_key_free(&junk.owner);
}

/* Pay j of A's segment 0 at merchant m as the second device: the PayAck's status. */
static MpCode device_pay(const struct tchannel *tch, int m, uint32_t j)
{
	struct wire w;
	ck_assert(wire_connect(&w, hn.ep[m], hn.ca, NULL, NULL));
	MpEnvelope *e = tchannel_open(tch, &w);
	if (e)
		micropay__v1__envelope__free_unpacked(e, NULL);
	MpCode c = pay_status(tch, &w, j);
	wire_close(&w);
	return c;
}

START_TEST(transfer_stuck_at_a_former_holder_finishes_at_the_current_one)
{
	int64_t before[4];
	for (int m = 1; m <= 3; m++)
		before[m] = net_pending(&hn.net, hn.tm[m].mid_hex);
	char channel[MP_HEX_ID_LEN + 1];
	struct tchannel tch;
	moved_behind_w1(channel, &tch);
	m1_redirects_only_the_owner(&tch);
	char *offer = send_through_broker(channel);
	finish_at_m2(channel, offer, &tch);
	/* B pays 5 at m2 in segment 1. */
	char params[600], order[64], err[600];
	net_new_order(&hn.net, "m2", 5, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":5,"
		 "\"order_ref\":\"%s\"}",
		 channel, hn.tm[2].mid_hex, hn.ep[2], order);
	json_t *r = admin(&hn.net, "w2", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "w2: pay at m2 failed: %s", err);
	ck_assert_int_eq(json_int(r, "last"), 12);
	json_decref(r);
	/* A's paywords: refused at m2 (the segment was capped) and at m1 (handed off). */
	ck_assert_int_eq(device_pay(&tch, 2, 8), MP_ST(STALE_SEGMENT));
	ck_assert_int_eq(device_pay(&tch, 1, 8), MP_ST(HANDED_OFF));
	net_new_order(&hn.net, "m2", 1, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":1,"
		 "\"order_ref\":\"%s\"}",
		 channel, hn.tm[2].mid_hex, hn.ep[2], order);
	ck_assert_msg(admin(&hn.net, "w1", "pay", params, err, sizeof(err)) == NULL,
		      "w1 paid after giving the channel away");
	/* The broker records segment 1 from m2's Cap at 7 and B's account for the refund. */
	char want[200];
	snprintf(want, sizeof(want), "7/%s/%s", hn.tm[2].mid_hex, account[2]);
	char *v = sql_value(&hn.net,
			    "SELECT cap_index || '/' || encode(holder_mid, 'hex') || '/' || "
			    "encode(payout_account_id, 'hex') FROM segment_transfers WHERE "
			    "channel_id = '\\x%s'::bytea",
			    channel);
	ck_assert_msg(v && !strcmp(v, want), "segment 1: %s, expected %s", v ? v : "?", want);
	free(v);
	/* Each merchant is credited exactly its range: m1 3, m2 4 (A's device) + 5 (B). */
	for (int m = 1; m <= 3; m++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", m);
		json_decref(admin_ok(&hn.net, name, "redeem", NULL));
	}
	const int64_t expect[4] = {0, 3, 9, 0};
	for (int m = 1; m <= 3; m++) {
		int64_t got = net_pending(&hn.net, hn.tm[m].mid_hex) - before[m];
		fprintf(stderr, "transfer_redirect: m%d credited %lld\n", m, (long long)got);
		ck_assert_int_eq(got, expect[m]);
	}
	free(offer);
	tchannel_free(&tch);
	net_audit_clean(&hn.net);
}
END_TEST

/* ---- a former holder whose redirect must not be followed (a test server at m1's endpoint) ---- */

enum bad_redirect {
	WRONG_SIGNER,
	NOT_OUR_WORD,
	CAPPED_HEAD,
	OTHER_CHANNEL,
	NO_NEW_HOLDER_CERT,
	NO_OLD_HOLDER_CERT,
	N_BAD
};

/* The redirect of `kind`: Handoff 1 m1 -> m2 at index 3 as m1 signed it, but for the fault. */
static MpSigned *bad_handoff(enum bad_redirect kind, const struct tchannel *tch, const MpSigned *t0)
{
	uint8_t id[MP_ID_LEN], head[MP_HASH_LEN], w3[MP_HASH_LEN], zero[MP_HASH_LEN] = {0};
	tchannel_id(tch, id);
	mp_stmt_hash(tch->cert, head);
	tchannel_word(tch, 3, w3);
	if (kind == NOT_OUR_WORD)
		w3[0] ^= 1;
	if (kind == CAPPED_HEAD) /* "the Transfer was capped before the Handoff" */
		mp_stmt_hash(t0, head);
	if (kind == OTHER_CHANNEL)
		id[0] ^= 1;
	const struct mp_key *key = kind == WRONG_SIGNER ? &hn.tm[3].key : &hn.tm[1].key;
	return handoff_forge(key, id, 1, hn.tm[1].mid, hn.tm[2].mid, 3, w3, head, zero, zero);
}

struct bg_send {
	const char *params;
	json_t *result;
	char err[800];
	pthread_t thread;
};

static void *bg_send_run(void *arg)
{
	struct bg_send *b = arg;
	b->result = admin(&hn.net, "w1", "transfer.send", b->params, b->err, sizeof(b->err));
	return NULL;
}

static void reply(struct wire *c, uint64_t request_id, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = request_id;
	ck_assert(wire_send_env(c, env));
}

/* Serve w1 as a misbehaving m1: its Open gets HANDED_OFF, its TransferReq (the stored Transfer,
 * byte for byte) HANDED_OFF with the redirect of `kind`. */
static void serve_bad(struct tserver *srv, enum bad_redirect kind, const struct tchannel *tch,
		      const MpSigned *t0, MpSigned *m1_cert, MpSigned *m2_cert)
{
	struct wire c;
	ck_assert_msg(tserver_accept(srv, &c, 15000), "w1 did not connect to m1's endpoint");
	MpEnvelope *req = wire_recv(&c);
	ck_assert(req && req->body_case == MP_BODY(OPEN_REQ) && !req->open_req->move);
	Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(HANDED_OFF);
	st.detail = "handed off to another merchant: pay there";
	ack.status = &st;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_ACK);
	env.open_ack = &ack;
	reply(&c, req->request_id, &env);
	micropay__v1__envelope__free_unpacked(req, NULL);
	req = wire_recv(&c);
	ck_assert(req && req->body_case == MP_BODY(TRANSFER_REQ) && req->transfer_req->transfer);
	size_t a_len, b_len;
	uint8_t *a = mp_stmt_encode(req->transfer_req->transfer, &a_len);
	uint8_t *b = mp_stmt_encode(t0, &b_len);
	ck_assert_msg(a && b && a_len == b_len && !memcmp(a, b, a_len),
		      "w1 did not send its stored Transfer");
	free(a);
	free(b);
	MpSigned *h = bad_handoff(kind, tch, t0);
	MpSigned *certs[2] = {m1_cert, m2_cert};
	Micropay__V1__HandoffResp redirect = MICROPAY__V1__HANDOFF_RESP__INIT;
	redirect.handoff = h;
	redirect.custody = &h;
	redirect.n_custody = 1;
	redirect.merchant_certs = kind == NO_OLD_HOLDER_CERT ? certs + 1 : certs;
	redirect.n_merchant_certs =
	    kind == NO_OLD_HOLDER_CERT || kind == NO_NEW_HOLDER_CERT ? 1 : 2;
	Micropay__V1__TransferResp resp = MICROPAY__V1__TRANSFER_RESP__INIT;
	st.detail = "handed off: the latest Handoff";
	st.evidence = h;
	resp.status = &st;
	resp.redirect = &redirect;
	env.body_case = MP_BODY(TRANSFER_RESP);
	env.transfer_resp = &resp;
	reply(&c, req->request_id, &env);
	micropay__v1__envelope__free_unpacked(req, NULL);
	mp_stmt_free(h);
	wire_closed_within(&c, 15000); /* w1 closes once it has judged the answer */
	wire_close(&c);
}

START_TEST(forged_redirects_change_nothing)
{
	static const char *const expected[N_BAD] = {
	    [WRONG_SIGNER] = "not a Handoff signed by the holder we know",
	    [NOT_OUR_WORD] = "not a word of our chain",
	    [CAPPED_HEAD] = "segments_head",
	    [OTHER_CHANNEL] = "another channel",
	    [NO_NEW_HOLDER_CERT] = "no MerchantCert of the new holder",
	    [NO_OLD_HOLDER_CERT] = "no MerchantCert of the holder we know",
	};
	char channel[MP_HEX_ID_LEN + 1];
	struct tchannel tch;
	moved_behind_w1(channel, &tch);
	char *offer = send_through_broker(channel);
	size_t t0_len;
	uint8_t *t0_bytes = stored_transfer(channel, &t0_len);
	MpSigned *t0 = mp_stmt_decode(t0_bytes, t0_len);
	ck_assert_ptr_nonnull(t0);
	MpSigned *m1_cert = tmerchant_stored_cert(&hn.net, "m1");
	MpSigned *m2_cert = tmerchant_stored_cert(&hn.net, "m2");
	char params[4096];
	send_params(params, sizeof(params), channel, offer, hn.ep[1]);
	ck_assert_int_eq(net_cmd(&hn.net, "kill", "m1"), 0);
	struct tserver srv;
	ck_assert(tserver_listen(&srv, hn.ep[1], hn.tm[1].cert, hn.tm[1].tls_key, hn.ca));
	for (int kind = 0; kind < N_BAD; kind++) {
		struct bg_send bg = {.params = params};
		ck_assert_int_eq(pthread_create(&bg.thread, NULL, bg_send_run, &bg), 0);
		serve_bad(&srv, (enum bad_redirect)kind, &tch, t0, m1_cert, m2_cert);
		ck_assert_int_eq(pthread_join(bg.thread, NULL), 0);
		ck_assert_msg(bg.result == NULL, "kind %d: transfer.send succeeded", kind);
		fprintf(stderr, "transfer_redirect: forged redirect %d: %s\n", kind, bg.err);
		ck_assert_msg(strstr(bg.err, "redirect not followed") &&
				  strstr(bg.err, expected[kind]) &&
				  strstr(bg.err, "still TRANSFERRING"),
			      "kind %d: unclear error: %s", kind, bg.err);
		/* nothing changed: m1 in epoch 0, TRANSFERRING with the same stored Transfer */
		expect_w1(channel, "TRANSFERRING", 1, 0);
		size_t len;
		uint8_t *now = stored_transfer(channel, &len);
		ck_assert(len == t0_len && !memcmp(now, t0_bytes, len));
		free(now);
	}
	tserver_close(&srv);
	expect_merchant_channel(&hn.net, "m2", channel, "HELD", 1, 7); /* no Cap at m2 */
	/* The real m1 back: the transfer finishes at m2 as if nothing had happened. */
	ck_assert_int_eq(net_cmd(&hn.net, "start", "m1"), 0);
	finish_at_m2(channel, offer, &tch);
	mp_stmt_free(m1_cert);
	mp_stmt_free(m2_cert);
	mp_stmt_free(t0);
	free(t0_bytes);
	free(offer);
	tchannel_free(&tch);
	net_audit_clean(&hn.net);
}
END_TEST

/* Every merchant redeems what it has. */
static void redeem_all(void)
{
	for (int m = 1; m <= 3; m++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", m);
		json_decref(admin_ok(&hn.net, name, "redeem", NULL));
	}
}

/* w2 (B) pays units at merchant m, expecting its last index then. */
static void w2_pays(const char *channel, int m, int units, int64_t last)
{
	char params[600], order[64], name[8], err[600];
	snprintf(name, sizeof(name), "m%d", m);
	net_new_order(&hn.net, name, units, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%d,"
		 "\"order_ref\":\"%s\"}",
		 channel, hn.tm[m].mid_hex, hn.ep[m], units, order);
	json_t *r = admin(&hn.net, "w2", "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "w2: pay at m%d failed: %s", m, err);
	ck_assert_int_eq(json_int(r, "last"), last);
	json_decref(r);
}

/* A TransferResp carries the pair m2 stored for segment 1: Transfer t and m2's Cap of it at 7. */
static void expect_stored_pair(const Micropay__V1__TransferResp *r, const MpSigned *t)
{
	uint8_t th[MP_HASH_LEN], got[MP_HASH_LEN];
	mp_stmt_hash(t, th);
	ck_assert(r->transfer && r->cap && r->redirect == NULL);
	mp_stmt_hash(r->transfer, got);
	ck_assert(!memcmp(got, th, MP_HASH_LEN));
	ProtobufCMessage *body = NULL;
	ck_assert_int_eq(mp_stmt_open(r->cap, MP_STMT_CAP, hn.tm[2].key.pk,
				      &micropay__v1__cap__descriptor, &body),
			 MP_ST(OK));
	const Micropay__V1__Cap *cap = (const Micropay__V1__Cap *)body;
	ck_assert(cap->hseq == 1 && cap->new_seg_seq == 1 && cap->point && cap->point->index == 7 &&
		  !memcmp(cap->transfer_hash.data, th, MP_HASH_LEN));
	protobuf_c_message_free_unpacked(body, NULL);
}

/* m2 capped segment 1 (w1's Transfer, re-signed for epoch 1) and then handed the channel on to
 * m3 when B paid there. A former holder answers a Transfer for a segment it capped before its
 * Handoff with what it stored, not with a redirect: w1's Transfer again is DUPLICATE_OK with
 * the stored Cap (byte for byte the pair of the bundle); another Transfer of segment 1 signed
 * by A's key is CONFLICT with the stored Cap as evidence. Nothing changes: B goes on paying at
 * m3, each merchant is credited its range (m1 3, m2 4, m3 3). */
START_TEST(handed_off_holder_answers_its_capped_segment_with_the_stored_pair)
{
	int64_t before[4];
	redeem_all(); /* what earlier cases left unclaimed */
	for (int m = 1; m <= 3; m++)
		before[m] = net_pending(&hn.net, hn.tm[m].mid_hex);
	char channel[MP_HEX_ID_LEN + 1];
	struct tchannel tch;
	moved_behind_w1(channel, &tch);
	char *offer = send_through_broker(channel);
	finish_at_m2(channel, offer, &tch);
	w2_pays(channel, 3, 2, 9); /* m2 -> m3: Handoff 2 at 7 of segment 1 */
	size_t len;
	uint8_t *bytes = stored_transfer(channel, &len);
	MpSigned *t1 = mp_stmt_decode(bytes, len);
	ck_assert_ptr_nonnull(t1);
	MpEnvelope *e = twallet_transfer_call(hn.ep[2], hn.ca, t1);
	ck_assert_int_eq(e->transfer_resp->status->code, MP_ST(DUPLICATE_OK));
	expect_stored_pair(e->transfer_resp, t1);
	micropay__v1__envelope__free_unpacked(e, NULL);

	uint8_t id[MP_ID_LEN], head[MP_HASH_LEN];
	tchannel_id(&tch, id);
	mp_stmt_hash(tch.cert, head);
	struct tseg other;
	tseg_make(&other, N);
	MpSigned *t2 = transfer_sign(id, 1, 1, 7, &other, &tch.owner, head);
	e = twallet_transfer_call(hn.ep[2], hn.ca, t2);
	const Micropay__V1__TransferResp *r = e->transfer_resp;
	ck_assert_int_eq(r->status->code, MP_ST(CONFLICT));
	expect_stored_pair(r, t1);
	ck_assert_ptr_nonnull(r->status->evidence);
	ck_assert_int_eq(r->status->evidence->type, MP_STMT_CAP);
	micropay__v1__envelope__free_unpacked(e, NULL);

	w2_pays(channel, 3, 1, 10);
	redeem_all();
	const int64_t expect[4] = {0, 3, 4, 3};
	for (int m = 1; m <= 3; m++)
		ck_assert_int_eq(net_pending(&hn.net, hn.tm[m].mid_hex) - before[m], expect[m]);
	mp_stmt_free(t1);
	mp_stmt_free(t2);
	mp_key_free(&other.owner);
	free(bytes);
	free(offer);
	tchannel_free(&tch);
	net_audit_clean(&hn.net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("transfer_redirect");
	TCase *tc = tcase_create("transfer_redirect");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, transfer_stuck_at_a_former_holder_finishes_at_the_current_one);
	tcase_add_test(tc, forged_redirects_change_nothing);
	tcase_add_test(tc, handed_off_holder_answers_its_capped_segment_with_the_stored_pair);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
