/* Conflicts at the broker (protocol.md section 7; docs/custody.md "Conflicts"), with the real
 * daemons (deploy/mpnet): the test acts as merchants m1, m2 and m3 at the wire level, signs what
 * an honest merchant would (and what a cheating one does) and checks what the broker records
 * and pays, to the unit, with the audit clean after each case. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_merchant.h"
#include "../check_run.h"

#define N 100

static struct net net;
static char ca[700], broker_ep[128];
static struct tmerchant m1, m2, m3;

static void setup_net(void)
{
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

static int64_t pending_of(const struct tmerchant *tm)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", tm->mid_hex);
	json_t *acc = admin_ok(&net, "broker", "account.show", params);
	json_t *rel = json_array_get(json_object_get(acc, "related"), 0);
	ck_assert_str_eq(json_str(rel, "kind"), "merchant_pending");
	int64_t b = json_int(rel, "balance");
	json_decref(acc);
	return b;
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

/* merchantd resends a Redeem verbatim; one it signed before its Handoff cannot list that
 * Handoff. Neither its replay nor its late first delivery is an omitted custody statement. */
START_TEST(redeem_signed_before_own_handoff_is_no_omission)
{
	int64_t before1 = pending_of(&m1), before2 = pending_of(&m2);
	struct tchan c;
	issue(&c);
	/* m1 signs two Redeems of epoch 0 (at 5 and at 10) with its complete record then: no
	 * Handoff. It sends the first; then it hands off at 10. */
	struct cclaim at5[] = {{&c, 0, 5, NULL, 0}}, at10[] = {{&c, 0, 10, NULL, 0}};
	MpSigned *r5 = redeem_stmt(&m1, at5, 1), *r10 = redeem_stmt(&m1, at10, 1);
	MpEnvelope *resp = redeem_as(&m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	MpSigned *h[1] = {handoff(&c, 1, &m1, &m2, 10, NULL, NULL)};
	/* m2 redeems first with the Handoff: the broker stores it. */
	struct cclaim c2[] = {{&c, 1, 30, h, 1}};
	redeem_expect(&m2, c2, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	/* The replay of the first Redeem and the first delivery of the second. */
	resp = redeem_as(&m1, r5);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(DUPLICATE_OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	resp = redeem_as(&m1, r10);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 5, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = conflicts_of(&c);
	ck_assert_msg(json_array_size(conf) == 0, "conflicts recorded against honest merchants");
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	ck_assert_int_eq(pending_of(&m2) - before2, 20);
	/* A claim that relies on holding past the omitted Handoff is still the conflict, with the
	 * claim above it; nothing more is paid. */
	struct cclaim past[] = {{&c, 0, 11, NULL, 0}};
	MpSigned *s = redeem_stmt(&m1, past, 1);
	resp = redeem_as(&m1, s);
	expect_result(resp, 0, MP_ST(OUT_OF_RANGE), 0, "above your own Handoff 1");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 2);
	expect_conflict(conf, "omitted_custody", 1, &m1);
	expect_conflict(conf, "claim_above_handoff", 0, &m1);
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 10);
	mp_stmt_free(r5);
	mp_stmt_free(r10);
	free_all(h, 1);
	release(&c);
	audit_clean();
}
END_TEST

/* A Redeem of a later epoch signed before the claimant's next Handoff: the chain M1 -> M2 ->
 * M1, m1 claims epoch 2 with custody 1..2; the broker then learns m1's Handoff 3 to m3. */
START_TEST(later_epoch_redeem_before_next_handoff_is_no_omission)
{
	int64_t before1 = pending_of(&m1), before3 = pending_of(&m3);
	struct tchan c;
	issue(&c);
	MpSigned *h[3];
	h[0] = handoff(&c, 1, &m1, &m2, 10, NULL, NULL);
	h[1] = handoff(&c, 2, &m2, &m1, 20, h[0], NULL);
	struct cclaim mine[] = {{&c, 0, 10, h, 2}, {&c, 2, 40, h, 2}};
	MpSigned *r = redeem_stmt(&m1, mine, 2);
	h[2] = handoff(&c, 3, &m1, &m3, 40, h[1], NULL);
	struct cclaim c3[] = {{&c, 3, 60, h, 3}};
	redeem_expect(&m3, c3, 1, (MpCode[]){MP_ST(OK)}, (uint64_t[]){20});
	MpEnvelope *resp = redeem_as(&m1, r);
	ck_assert_int_eq(resp->redeem_resp->status->code, MP_ST(OK));
	expect_result(resp, 0, MP_ST(OK), 10, NULL);
	expect_result(resp, 1, MP_ST(OK), 20, NULL);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	json_t *conf = conflicts_of(&c);
	ck_assert_uint_eq(json_array_size(conf), 0);
	json_decref(conf);
	ck_assert_int_eq(pending_of(&m1) - before1, 30);
	ck_assert_int_eq(pending_of(&m3) - before3, 20);
	mp_stmt_free(r);
	free_all(h, 3);
	release(&c);
	audit_clean();
}
END_TEST

static Suite *conflicts_suite(void)
{
	Suite *s = suite_create("conflicts");
	TCase *tc = tcase_create("conflicts");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, redeem_signed_before_own_handoff_is_no_omission);
	tcase_add_test(tc, later_epoch_redeem_before_next_handoff_is_no_omission);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(conflicts_suite());
}
