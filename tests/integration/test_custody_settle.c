/* Settlement of custody chains at the broker, with the real daemons (deploy/mpnet). The test
 * acts as merchants m1, m2 and m3 (their keys and TLS certificates from the mpnet folder),
 * signs Handoffs by hand for a channel issued with holder0 = m1, and redeems with custody
 * evidence: honest chains pay each merchant exactly its range, and each conflict kind lands in
 * the conflicts table with the right liable signer while honest merchants are still paid. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant m1, m2, m3;

/* The Redeem hash budget of this suite: one new custody chain of a 100-unit channel fits, two do
 * not (each may cost n hashes). */
#define HASH_BUDGET "150"

static void setup_net(void)
{
	setenv("MP_HASH_BUDGET", HASH_BUDGET, 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m3"), 0);
	tmerchant_load(&m1, &net, "m1");
	tmerchant_load(&m2, &net, "m2");
	tmerchant_load(&m3, &net, "m3");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	tmerchant_free(&m2);
	tmerchant_free(&m3);
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* A funded wallet's channel of N units of 1, holder0 = m1. */
struct tchan {
	struct twallet tw;
	struct tchannel ch;
	uint8_t id[MP_ID_LEN];
	uint8_t cert_hash[MP_HASH_LEN];
};

static void issue(struct tchan *c)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&c->tw, &b);
	char hex[MP_HEX_ID_LEN + 1], params[200], fund_hex[MP_HEX_ID_LEN + 1];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	mp_hex_encode(c->tw.account_id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%d,\"fund_id\":\"%s\"}",
		 hex, N, fund_hex);
	json_decref(admin_ok(&net, "broker", "account.fund", params));
	tchannel_make(&c->ch, &c->tw, N, 1, m1.mid);
	ck_assert_int_eq(tchannel_issue(&c->ch, &b), MP_ST(OK));
	wire_close(&b);
	tchannel_id(&c->ch, c->id);
	mp_stmt_hash(c->ch.cert, c->cert_hash);
}

static void release(struct tchan *c)
{
	tchannel_free(&c->ch);
	mp_key_free(&c->tw.account);
}

/* Handoff hseq from `from` (the signer) to `to` at index at, linked to prev (NULL: the cert).
 * w: the word at `at`, or NULL for the channel's true word. */
static MpSigned *handoff(const struct tchan *c, uint32_t hseq, const struct tmerchant *from,
			 const struct tmerchant *to, uint32_t at, const MpSigned *prev,
			 const uint8_t *w)
{
	uint8_t word[MP_HASH_LEN], prev_hash[MP_HASH_LEN], move_hash[MP_HASH_LEN];
	if (w)
		memcpy(word, w, MP_HASH_LEN);
	else
		tchannel_word(&c->ch, at, word);
	if (prev)
		mp_stmt_hash(prev, prev_hash);
	else
		memcpy(prev_hash, c->cert_hash, MP_HASH_LEN);
	memset(move_hash, 0x4d, sizeof(move_hash)); /* the broker does not see Moves */
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = at;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, word};
	Micropay__V1__Handoff h = MICROPAY__V1__HANDOFF__INIT;
	h.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)c->id};
	h.hseq = hseq;
	h.from_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)from->mid};
	h.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to->mid};
	h.point = &pt;
	h.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)c->cert_hash};
	h.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, prev_hash};
	h.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	MpSigned *s = mp_stmt_sign(&from->key, MP_STMT_HANDOFF, &h.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* One claim with its custody evidence. */
struct cclaim {
	const struct tchan *c;
	uint32_t hseq, index;
	MpSigned **custody;
	size_t n_custody;
};

static MpSigned *redeem_stmt(const struct tmerchant *tm, const struct cclaim *claims, size_t n)
{
	MpPoint points[8];
	Micropay__V1__Claim items[8], *ptrs[8];
	uint8_t words[8][MP_HASH_LEN], redeem_id[MP_ID_LEN];
	ck_assert_uint_le(n, 8);
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	for (size_t i = 0; i < n; i++) {
		tchannel_word(&claims[i].c->ch, claims[i].index, words[i]);
		micropay__v1__point__init(&points[i]);
		points[i].index = claims[i].index;
		points[i].w = (ProtobufCBinaryData){MP_HASH_LEN, words[i]};
		micropay__v1__claim__init(&items[i]);
		items[i].channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)claims[i].c->id};
		items[i].hseq_in = claims[i].hseq;
		items[i].point = &points[i];
		items[i].custody = claims[i].custody;
		items[i].n_custody = claims[i].n_custody;
		ptrs[i] = &items[i];
	}
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)tm->mid};
	rd.claims = ptrs;
	rd.n_claims = n;
	MpSigned *s = mp_stmt_sign(&tm->key, MP_STMT_REDEEM, &rd.base);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Redeem as tm over mutual TLS; returns the answer (the caller frees it). */
static MpEnvelope *redeem_as(const struct tmerchant *tm, const MpSigned *stmt)
{
	struct wire w;
	tmerchant_connect(tm, &w, broker_ep, ca);
	MpEnvelope *resp = redeem_call(&w, stmt);
	wire_close(&w);
	return resp;
}

/* Claim result i must have this status and credited amount. */
static void expect_result(const MpEnvelope *resp, size_t i, MpCode status, uint64_t amount,
			  const char *detail_part)
{
	const Micropay__V1__RedeemResp *r = resp->redeem_resp;
	ck_assert_uint_gt(r->n_results, i);
	const Micropay__V1__ClaimResult *cr = r->results[i];
	ck_assert_msg(cr->status == status, "claim %zu: %s (%s), want %s", i,
		      mp_code_name(cr->status), cr->detail, mp_code_name(status));
	ck_assert_uint_eq(cr->credited_amount, amount);
	if (detail_part)
		ck_assert_msg(strstr(cr->detail, detail_part), "claim %zu: detail '%s' lacks '%s'",
			      i, cr->detail, detail_part);
}

/* Redeem, expect every claim's status and amount; replay it, expect DUPLICATE_OK with the same
 * results. */
static void redeem_expect(const struct tmerchant *tm, const struct cclaim *claims, size_t n,
			  const MpCode *status, const uint64_t *amount)
{
	MpSigned *s = redeem_stmt(tm, claims, n);
	for (int round = 0; round < 2; round++) {
		MpEnvelope *resp = redeem_as(tm, s);
		ck_assert_int_eq(resp->redeem_resp->status->code,
				 round ? MP_ST(DUPLICATE_OK) : MP_ST(OK));
		ck_assert_uint_eq(resp->redeem_resp->n_results, n);
		for (size_t i = 0; i < n; i++)
			expect_result(resp, i, status[i], amount[i], NULL);
		micropay__v1__envelope__free_unpacked(resp, NULL);
	}
	mp_stmt_free(s);
}

/* The recorded conflicts of a channel, as the admin method lists them. */
static json_t *conflicts_of(const struct tchan *c)
{
	json_t *all = admin_ok(&net, "broker", "conflicts", NULL);
	json_t *list = json_object_get(all, "conflicts");
	ck_assert(json_is_array(list));
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	json_t *mine = json_array();
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		if (strcmp(json_str(item, "channel"), hex) == 0)
			json_array_append(mine, item);
	}
	json_decref(all);
	return mine;
}

static void expect_conflict(json_t *list, const char *kind, uint32_t hseq,
			    const struct tmerchant *liable)
{
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		if (strcmp(json_str(item, "kind"), kind) == 0 && json_int(item, "hseq") == hseq &&
		    strcmp(json_str(item, "liable"), liable->mid_hex) == 0) {
			ck_assert(strlen(json_str(item, "stmt_a")) > 0);
			ck_assert(json_is_string(json_object_get(item, "stmt_b")));
			return;
		}
	}
	char *text = json_dumps(list, JSON_COMPACT);
	ck_abort_msg("no %s conflict at hseq %u against %s in %s", kind, hseq, liable->mid_hex,
		     text);
	free(text);
}

static void free_all(MpSigned **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mp_stmt_free(s[i]);
}

START_TEST(chain_m1_m2_m3_m1_pays_each_its_range)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex),
		before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	issue(&c);
	/* Paid: 10 at m1, 30 at m2, 30 at m3, 20 at m1 again: 90 units. */
	MpSigned *h[3];
	h[0] = handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = handoff(&c, 2, &m2, &m3, 40, h[0], NULL);
	h[2] = handoff(&c, 3, &m3, &m1, 70, h[1], NULL);
	/* m1 first: both its epochs, with its complete record (signed 1, received 3). */
	struct cclaim c1[] = {{&c, 0, 10, h, 3}, {&c, 3, 90, h, 3}};
	redeem_expect(&m1, c1, 2, (MpCode[]){MP_ST(OK), MP_ST(OK)}, (uint64_t[]){10, 20});
	struct cclaim c2[] = {{&c, 1, 40, h, 2}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim c3[] = {{&c, 2, 70, h, 3}};
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 30);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 30);
	/* The epochs as stored: ranges and credits, summing to the 90 units paid. */
	char hex[MP_HEX_ID_LEN + 1], params[128];
	mp_hex_encode(c.id, MP_ID_LEN, hex);
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", hex);
	json_t *show = admin_ok(&net, "broker", "channel.show", params);
	json_t *epochs = json_object_get(show, "epochs");
	ck_assert_uint_eq(json_array_size(epochs), 4);
	static const int start[] = {0, 10, 40, 70}, end[] = {10, 40, 70, -1};
	static const int credited[] = {10, 40, 70, 90};
	const struct tmerchant *holder[] = {&m1, &m2, &m3, &m1};
	int64_t sum = 0;
	for (size_t e = 0; e < 4; e++) {
		json_t *ep = json_array_get(epochs, e);
		ck_assert_str_eq(json_str(ep, "merchant_id"), holder[e]->mid_hex);
		ck_assert_int_eq(json_int(ep, "start_index"), start[e]);
		if (end[e] < 0)
			ck_assert(json_is_null(json_object_get(ep, "end_index")));
		else
			ck_assert_int_eq(json_int(ep, "end_index"), end[e]);
		ck_assert_int_eq(json_int(ep, "credited_end"), credited[e]);
		sum += json_int(ep, "credited_amount");
	}
	ck_assert_int_eq(sum, 90);
	json_decref(show);
	/* A claim at or below the credited end again, in a new Redeem: DUPLICATE_OK. */
	struct cclaim again[] = {{&c, 1, 40, h, 2}};
	redeem_expect(&m2, again, 1, (MpCode[]){MP_ST(DUPLICATE_OK)}, (uint64_t[]){0});
	/* No conflicts for an honest chain; the list is an array even when empty. */
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	free_all(h, 3);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(epoch_above_zero_needs_custody)
{
	struct tchan c;
	issue(&c);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* Without custody nobody holds epoch 1; with a chain naming m2, m3 does not either. */
	struct cclaim bare[] = {{&c, 1, 20, NULL, 0}};
	redeem_expect(&m2, bare, 1, (MpCode[]){MP_ST(NOT_HOLDER)}, (uint64_t[]){0});
	struct cclaim wrong[] = {{&c, 1, 20, h, 1}};
	redeem_expect(&m3, wrong, 1, (MpCode[]){MP_ST(NOT_HOLDER)}, (uint64_t[]){0});
	/* A chain with a broken signature changes nothing. */
	h[0]->signature.data[5] ^= 1;
	redeem_expect(&m2, wrong, 1, (MpCode[]){MP_ST(BAD_SIG)}, (uint64_t[]){0});
	h[0]->signature.data[5] ^= 1;
	redeem_expect(&m2, wrong, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

/* Both branches of a fork are paid (docs/custody.md "Forks"; the whole collection order is
 * test_conflicts' fork_both_branches_paid_excess_from_pending_bond_reserve): m3's 20 units
 * that m2 was also credited are collected from m1 (its pending credit, then the bond posted
 * here), the other 20 come from the escrow. */
static int64_t bond_of_m1(void)
{
	return net_merchant_balance(&net, m1.mid_hex, "merchant_bond");
}

START_TEST(double_handoff_is_recorded_both_branches_paid)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	net_post_bond(&net, m1.mid_hex, 20);
	int64_t before1 = net_pending(&net, m1.mid_hex) + bond_of_m1();
	struct tchan c;
	issue(&c);
	/* m1 hands epoch 1 to m2 and again to m3. */
	MpSigned *a[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *b[1] = {handoff(&c, 1, &m1, &m3, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, a, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	struct cclaim c3[] = {{&c, 1, 50, b, 1}};
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){40});
	json_t *conf = conflicts_of(&c);
	expect_conflict(conf, "double_handoff", 1, &m1);
	json_decref(conf);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 40);
	ck_assert_int_eq(before1 - (net_pending(&net, m1.mid_hex) + bond_of_m1()), 20);
	/* A third Handoff 1, to m2 again: the first to m2 stands, this one is CONFLICT. */
	MpSigned *again[1] = {handoff(&c, 1, &m1, &m2, 12, NULL, NULL)};
	struct cclaim c2b[] = {{&c, 1, 35, again, 1}};
	redeem_expect(&m2, c2b, 1, (MpCode[]){MP_ST(CONFLICT)}, (uint64_t[]){0});
	free_all(again, 1);
	free_all(a, 1);
	free_all(b, 1);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(claim_above_own_handoff_is_recorded)
{
	int64_t before2 = net_pending(&net, m2.mid_hex), before3 = net_pending(&net, m3.mid_hex);
	struct tchan c;
	issue(&c);
	MpSigned *h[2];
	h[0] = handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = handoff(&c, 2, &m2, &m3, 40, h[0], NULL);
	/* m2 claims epoch 1 at 50, above its own Handoff 2 at 40. */
	struct cclaim above[] = {{&c, 1, 50, h, 2}};
	MpSigned *s = redeem_stmt(&m2, above, 1);
	MpEnvelope *resp = redeem_as(&m2, s);
	expect_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 2");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	json_t *conf = conflicts_of(&c);
	expect_conflict(conf, "claim_above_handoff", 1, &m2);
	ck_assert_int_eq(json_int(json_array_get(conf, 0), "claim_index"), 50);
	ck_assert_str_eq(json_str(json_array_get(conf, 0), "claimant"), m2.mid_hex);
	json_decref(conf);
	/* Within its range m2 is paid; m3 is paid its own range. */
	struct cclaim fair[] = {{&c, 1, 40, h, 2}};
	redeem_expect(&m2, fair, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	struct cclaim c3[] = {{&c, 2, 60, h, 2}};
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 30);
	ck_assert_int_eq(net_pending(&net, m3.mid_hex) - before3, 20);
	free_all(h, 2);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(omitted_custody_is_recorded)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	issue(&c);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* m1 leaves out the Handoff it signed and claims past it: both recorded, nothing paid
	 * above 10. */
	struct cclaim hide[] = {{&c, 0, 30, NULL, 0}};
	MpSigned *s = redeem_stmt(&m1, hide, 1);
	MpEnvelope *resp = redeem_as(&m1, s);
	expect_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 1");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	json_t *conf = conflicts_of(&c);
	expect_conflict(conf, "omitted_custody", 1, &m1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	json_decref(conf);
	/* Its own range is still paid. */
	struct cclaim own[] = {{&c, 0, 10, h, 1}};
	redeem_expect(&m1, own, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 10);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(bad_w_at_is_recorded)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	issue(&c);
	uint8_t junk[MP_HASH_LEN];
	memset(junk, 0x6a, sizeof(junk));
	MpSigned *bad[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, junk)};
	/* m2 cannot be paid on a Handoff whose word is false; m1 signed it and is liable. */
	struct cclaim c2[] = {{&c, 1, 30, bad, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(BAD_CHAIN)}, (uint64_t[]){0});
	json_t *conf = conflicts_of(&c);
	expect_conflict(conf, "bad_w_at", 1, &m1);
	json_decref(conf);
	/* The false Handoff was not stored: m1's epoch 0 is not ended by it. */
	struct cclaim c1[] = {{&c, 0, 20, NULL, 0}};
	redeem_expect(&m1, c1, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 20);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 0);
	free_all(bad, 1);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(handoff_learned_late_exposes_an_earlier_claim)
{
	int64_t before1 = net_pending(&net, m1.mid_hex), before2 = net_pending(&net, m2.mid_hex);
	struct tchan c;
	issue(&c);
	/* m1 claims epoch 0 at 30 while the broker knows no Handoff: credited 30. */
	struct cclaim early[] = {{&c, 0, 30, NULL, 0}};
	redeem_expect(&m1, early, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){30});
	/* m2 then shows m1's Handoff 1 at 10: recorded against m1; m2 is paid its range. */
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	struct cclaim c2[] = {{&c, 1, 50, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){40});
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	ck_assert_int_eq(json_int(json_array_get(conf, 0), "claim_index"), 30);
	json_decref(conf);
	/* Nothing more for m1 in epoch 0. */
	struct cclaim more[] = {{&c, 0, 35, h, 1}};
	redeem_expect(&m1, more, 1, (MpCode[]){MP_ST(OUT_OF_RANGE)}, (uint64_t[]){0});
	ck_assert_int_eq(net_pending(&net, m1.mid_hex) - before1, 30);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 40);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

START_TEST(custody_above_hash_budget_is_limit)
{
	int64_t before2 = net_pending(&net, m2.mid_hex);
	struct tchan a, b;
	issue(&a);
	issue(&b);
	MpSigned *ha[1] = {handoff(&a, 1, &m1, &m2, 10, NULL, NULL)};
	MpSigned *hb[1] = {handoff(&b, 1, &m1, &m2, 10, NULL, NULL)};
	/* Two new chains could cost 2 x 100 hashes: LIMIT, nothing stored or credited. */
	struct cclaim both[] = {{&a, 1, 20, ha, 1}, {&b, 1, 20, hb, 1}};
	MpSigned *s = redeem_stmt(&m2, both, 2);
	MpEnvelope *resp = redeem_as(&m2, s);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(LIMIT));
	ck_assert_uint_eq(resp->redeem_resp->n_results, 0);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 0);
	/* Split, each fits. */
	redeem_expect(&m2, both, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	redeem_expect(&m2, both + 1, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){10});
	ck_assert_int_eq(net_pending(&net, m2.mid_hex) - before2, 20);
	free_all(ha, 1);
	free_all(hb, 1);
	release(&a);
	release(&b);
	audit_clean();
}
END_TEST

static Suite *custody_settle_suite(void)
{
	Suite *s = suite_create("custody_settle");
	TCase *tc = tcase_create("settle");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, chain_m1_m2_m3_m1_pays_each_its_range);
	tcase_add_test(tc, epoch_above_zero_needs_custody);
	tcase_add_test(tc, double_handoff_is_recorded_both_branches_paid);
	tcase_add_test(tc, claim_above_own_handoff_is_recorded);
	tcase_add_test(tc, omitted_custody_is_recorded);
	tcase_add_test(tc, bad_w_at_is_recorded);
	tcase_add_test(tc, handoff_learned_late_exposes_an_earlier_claim);
	tcase_add_test(tc, custody_above_hash_budget_is_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(custody_settle_suite());
}
