/* Receipts (protocol.md statement 14, docs/receipts.md) against the real daemons (deploy/mpnet:
 * brokerd, merchant m1, walletd w1):
 * - walletd's `receipt` for a payment m1 accepted: m1 signs a Receipt at the accepted index and
 *   order_ref with its MerchantCert's key; the wallet checks and stores it; it verifies
 *   off-line (walletd's receipt.verify and common/receipt.c in this test, under the broker key
 *   read from the network); asking again, after a later payment and after m1 was killed and
 *   restarted gets the same bytes;
 * - a receipt for a point m1 did not accept is refused (an index jumped over, an index above
 *   the wallet's last, which the wallet does not even send), and a ReceiptReq on the wire with
 *   the wrong word, an unknown channel or index 0 gets a typed error;
 * - a tampered receipt, a receipt checked under another broker key or against the wrong
 *   statement is refused by receipt.verify with the reason.
 * - `pay ... receipt=true` answers the payment with the last Pay's Receipt, stored.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_store.h"
#include "receipt.h"
#include "stmt.h"
#include "../check_run.h"

static struct net net;
static char ca[700], m1_hex[64], m1_ep[128], broker_pk_hex[80];

static void setup_net(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	json_t *st = admin_ok(&net, "broker", "status", NULL);
	snprintf(broker_pk_hex, sizeof(broker_pk_hex), "%s", json_str(st, "broker_pk"));
	json_decref(st);
	json_t *w = admin_ok(&net, "w1", "register", NULL);
	net_fund(&net, json_str(w, "account_id"), 10000);
	json_decref(w);
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- helpers ---- */

static void pay(const char *channel, uint32_t units, const char *order)
{
	char params[400];
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":%u,\"order_ref\":\"%s\"}",
		 channel, m1_ep, units, order);
	json_decref(admin_ok(&net, "w1", "pay", params));
}

static json_t *receipt_call(const char *channel, uint32_t index, char *err, size_t errlen)
{
	char params[300];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"index\":%u}", channel, index);
	return admin(&net, "w1", "receipt", params, err, errlen);
}

static json_t *receipt_ok(const char *channel, uint32_t index)
{
	char err[1024];
	json_t *r = receipt_call(channel, index, err, sizeof(err));
	ck_assert_msg(r != NULL, "receipt %s at %u: %s", channel, index, err);
	return r;
}

static void receipt_refused(const char *channel, uint32_t index, const char *want)
{
	char err[1024];
	json_t *r = receipt_call(channel, index, err, sizeof(err));
	ck_assert_msg(r == NULL, "receipt %s at %u was given", channel, index);
	ck_assert_msg(strstr(err, want), "receipt at %u: expected '%s' in: %s", index, want, err);
}

static json_t *verify_call(const char *receipt, const char *cert, const char *broker_pk, char *err,
			   size_t errlen)
{
	json_t *params = json_pack("{s:s,s:s}", "receipt", receipt, "merchant_cert", cert);
	if (broker_pk)
		json_object_set_new(params, "broker_pk", json_string(broker_pk));
	char *text = json_dumps(params, JSON_COMPACT);
	json_t *r = admin(&net, "w1", "receipt.verify", text, err, errlen);
	free(text);
	json_decref(params);
	return r;
}

static void verify_refused(const char *receipt, const char *cert, const char *broker_pk,
			   const char *want)
{
	char err[1024];
	json_t *r = verify_call(receipt, cert, broker_pk, err, sizeof(err));
	ck_assert_msg(r == NULL, "receipt.verify accepted what it should refuse ('%s')", want);
	ck_assert_msg(strstr(err, want), "receipt.verify: expected '%s' in: %s", want, err);
}

static MpSigned *from_b64(const char *text)
{
	size_t len = strlen(text);
	uint8_t *buf = malloc(len);
	ck_assert(buf != NULL);
	int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	ck_assert_int_gt(n, 0);
	while (len > 0 && text[len - 1] == '=') { /* EVP_DecodeBlock keeps the padding's zeros */
		len--;
		n--;
	}
	MpSigned *s = mp_stmt_decode(buf, (size_t)n);
	free(buf);
	ck_assert(s != NULL);
	return s;
}

static char *to_b64(const MpSigned *s)
{
	size_t len;
	uint8_t *bytes = mp_stmt_encode(s, &len);
	ck_assert(bytes != NULL);
	char *out = malloc(4 * (len / 3 + 1) + 1);
	ck_assert(out != NULL);
	EVP_EncodeBlock((unsigned char *)out, bytes, (int)len);
	free(bytes);
	return out;
}

/* The receipt's fields as walletd shows them. */
static void expect_fields(json_t *r, const char *channel, uint32_t index, const char *order)
{
	ck_assert_str_eq(json_str(r, "channel_id"), channel);
	ck_assert_int_eq(json_int(r, "seg_seq"), 0);
	ck_assert_int_eq(json_int(r, "index"), index);
	ck_assert_str_eq(json_str(r, "order_ref"), order);
	ck_assert_str_eq(json_str(r, "merchant_id"), m1_hex);
	ck_assert_int_gt(json_int(r, "time"), 1700000000);
}

/* A receipt checked here with common/receipt.c, under the broker key the network reports. */
static void verify_here(json_t *r, uint32_t index)
{
	uint8_t broker_pk[MP_PK_LEN];
	hex_to_bytes(broker_pk_hex, broker_pk, MP_PK_LEN);
	MpSigned *receipt = from_b64(json_str(r, "receipt"));
	MpSigned *cert = from_b64(json_str(r, "merchant_cert"));
	struct mp_receipt out;
	const char *why = mp_receipt_verify(receipt, cert, broker_pk, &out);
	ck_assert_msg(why == NULL, "the receipt does not verify here: %s", why);
	ck_assert_uint_eq(out.index, index);
	ck_assert_int_eq(out.time, json_int(r, "time"));
	char mid[MP_HEX_ID_LEN + 1];
	mp_hex_encode(out.merchant_id, MP_ID_LEN, mid);
	ck_assert_str_eq(mid, m1_hex);
	mp_stmt_free(receipt);
	mp_stmt_free(cert);
}

/* ---- tests ---- */

START_TEST(receipt_verified_offline_and_replayed_byte_for_byte)
{
	char channel[64], order[64], order2[64];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, sizeof(channel));
	net_new_order(&net, "m1", 6, order, sizeof(order));
	pay(channel, 3, order); /* one Pay, j = 3 */

	json_t *r = receipt_ok(channel, 3);
	expect_fields(r, channel, 3, order);
	verify_here(r, 3);
	char *bytes = strdup(json_str(r, "receipt"));
	char *cert = strdup(json_str(r, "merchant_cert"));

	char err[1024];
	json_t *v = verify_call(bytes, cert, NULL, err, sizeof(err));
	ck_assert_msg(v != NULL, "receipt.verify: %s", err);
	expect_fields(v, channel, 3, order);
	ck_assert_int_eq(json_int(v, "time"), json_int(r, "time"));
	json_decref(v);
	v = verify_call(bytes, cert, broker_pk_hex, err, sizeof(err));
	ck_assert_msg(v != NULL, "receipt.verify with broker_pk: %s", err);
	json_decref(v);

	/* the same payment again, after a later one, and after m1 died and came back */
	json_t *again = receipt_ok(channel, 3);
	ck_assert_str_eq(json_str(again, "receipt"), bytes);
	json_decref(again);
	net_new_order(&net, "m1", 4, order2, sizeof(order2));
	pay(channel, 2, order2);	     /* j = 5 */
	json_t *r5 = receipt_ok(channel, 5); /* index omitted below: the channel's last */
	expect_fields(r5, channel, 5, order2);
	ck_assert_str_ne(json_str(r5, "receipt"), bytes);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	again = receipt_ok(channel, 3);
	ck_assert_str_eq(json_str(again, "receipt"), bytes);
	json_decref(again);
	char params[200];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	again = admin_ok(&net, "w1", "receipt", params);
	ck_assert_str_eq(json_str(again, "receipt"), json_str(r5, "receipt"));
	json_decref(again);

	/* both stored with the channel, checked again when listed */
	json_t *list = admin_ok(&net, "w1", "receipts", params);
	json_t *items = json_object_get(list, "receipts");
	ck_assert_uint_eq(json_array_size(items), 2);
	ck_assert_int_eq(json_int(json_array_get(items, 0), "index"), 3);
	ck_assert_str_eq(json_str(json_array_get(items, 0), "receipt"), bytes);
	ck_assert_int_eq(json_int(json_array_get(items, 1), "index"), 5);
	json_decref(list);

	json_decref(r5);
	json_decref(r);
	free(bytes);
	free(cert);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	net_audit_clean(&net);
}
END_TEST

/* pay receipt=true: the pay's answer carries the last Pay's Receipt, stored like any other. */
START_TEST(pay_with_receipt)
{
	char channel[64], order[64], params[400];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, sizeof(channel));
	net_new_order(&net, "m1", 10, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":5,\"order_ref\":\"%s\","
		 "\"receipt\":true}",
		 channel, m1_ep, order);
	json_t *paid = admin_ok(&net, "w1", "pay", params);
	ck_assert_str_eq(json_str(paid, "status"), "OK");
	ck_assert_int_eq(json_int(paid, "last"), 5);
	json_t *r = json_object_get(paid, "receipt");
	ck_assert_msg(r != NULL, "no receipt in the pay's answer: %s",
		      json_str(paid, "receipt_error"));
	expect_fields(r, channel, 5, order);
	verify_here(r, 5);
	json_t *again = receipt_ok(channel, 5);
	ck_assert_str_eq(json_str(again, "receipt"), json_str(r, "receipt"));
	json_decref(again);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	json_t *list = admin_ok(&net, "w1", "receipts", params);
	ck_assert_uint_eq(json_array_size(json_object_get(list, "receipts")), 1);
	json_decref(list);
	json_decref(paid);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	net_audit_clean(&net);
}
END_TEST

/* A ReceiptReq sent by hand: its answer's status code. */
static MpCode wire_receipt(const uint8_t channel[MP_ID_LEN], uint32_t index,
			   const uint8_t w[MP_HASH_LEN])
{
	struct wire m;
	ck_assert(wire_connect(&m, m1_ep, ca, NULL, NULL));
	Micropay__V1__ReceiptReq rq = MICROPAY__V1__RECEIPT_REQ__INIT;
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)channel};
	rq.index = index;
	rq.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)w};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RECEIPT_REQ);
	env.receipt_req = &rq;
	MpEnvelope *e = wire_call(&m, &env);
	ck_assert(e != NULL);
	ck_assert_int_eq(e->body_case, MP_BODY(RECEIPT_RESP));
	MpCode code = e->receipt_resp->status->code;
	if (code != MP_ST(OK))
		ck_assert(e->receipt_resp->receipt == NULL);
	micropay__v1__envelope__free_unpacked(e, NULL);
	wire_close(&m);
	return code;
}

START_TEST(receipt_for_unaccepted_payment_refused)
{
	char channel[64], order[64];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, sizeof(channel));
	net_new_order(&net, "m1", 8, order, sizeof(order));
	pay(channel, 4, order); /* one Pay, j = 4: indices 1-3 were never a payment */

	int64_t refusals = metric(&net, "m1", "micropay_merchant_receipt_refusals_total");
	int64_t signed_before = metric(&net, "m1", "micropay_merchant_receipts_signed_total");
	ck_assert_int_ge(refusals, 0);
	receipt_refused(channel, 2, "OUT_OF_RANGE");
	receipt_refused(channel, 5, "not an acknowledged payment"); /* no payword sent */
	receipt_refused(channel, 0, "not an acknowledged payment");

	uint8_t id[MP_ID_LEN], w[MP_HASH_LEN] = {0}, unknown[MP_ID_LEN];
	hex_to_bytes(channel, id, MP_ID_LEN);
	memset(unknown, 0x5a, sizeof(unknown));
	ck_assert_int_eq(wire_receipt(id, 4, w), MP_ST(BAD_CHAIN)); /* not the payer's word */
	ck_assert_int_eq(wire_receipt(id, 7, w), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(wire_receipt(unknown, 4, w), MP_ST(UNKNOWN_CHANNEL));
	ck_assert_int_eq(wire_receipt(id, 0, w), MP_ST(MALFORMED));
	/* five refused at m1 (two were refused by the wallet, never sent), none signed */
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_receipt_refusals_total"),
			 refusals + 5);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_receipts_signed_total"),
			 signed_before);

	char params[200];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", channel);
	json_t *list = admin_ok(&net, "w1", "receipts", params);
	ck_assert_uint_eq(json_array_size(json_object_get(list, "receipts")), 0);
	json_decref(list);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	net_audit_clean(&net);
}
END_TEST

/* A payment whose batch has not committed (m1's store held by an outside write lock, as a
 * stalled disk would) is acknowledged to nobody yet, and its receipt is TOO_EARLY with nothing
 * signed; once the batch commits, the same ReceiptReq is signed. */
START_TEST(receipt_before_the_payment_is_durable_is_too_early)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	tchannel_opened(&net, "m1", &tw, &ch, 20, &w);
	uint8_t id[MP_ID_LEN], w1[MP_HASH_LEN];
	tchannel_id(&ch, id);
	tchannel_word(&ch, 1, w1);
	char db[700];
	net_path(&net, "m1/merchant.db", db, sizeof(db));
	const char *idle = "micropay_merchant_batches_submitted_total{trigger=\"idle\"}";
	int64_t submitted = metric(&net, "m1", idle);
	int64_t signed_before = metric(&net, "m1", "micropay_merchant_receipts_signed_total");
	sqlite3 *lock = store_lock_hold(db);
	tchannel_send_pay(&ch, &w, 1);
	/* The Pay is in a batch whose commit waits on the lock. */
	ck_assert_int_eq(metric_wait(&net, "m1", idle, submitted + 1, 5000), submitted + 1);
	ck_assert_int_eq(wire_receipt(id, 1, w1), MP_ST(TOO_EARLY));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_receipts_signed_total"),
			 signed_before);
	store_lock_release(lock);
	MpEnvelope *e = wire_recv(&w);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_uint_eq(e->pay_ack->last, 1);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(wire_receipt(id, 1, w1), MP_ST(OK));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_receipts_signed_total"),
			 signed_before + 1);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	json_decref(admin_ok(&net, "m1", "redeem", NULL));
	net_audit_clean(&net);
}
END_TEST

START_TEST(tampered_receipt_refused)
{
	char channel[64], order[64];
	net_wallet_issue(&net, "w1", m1_hex, 100, 2, channel, sizeof(channel));
	net_new_order(&net, "m1", 2, order, sizeof(order));
	pay(channel, 1, order);
	json_t *r = receipt_ok(channel, 1);
	const char *good = json_str(r, "receipt"), *cert = json_str(r, "merchant_cert");

	MpSigned *s = from_b64(good);
	for (size_t i = 0; i < s->body.len; i++) { /* every byte of the body */
		s->body.data[i] ^= 0x04;
		char *bad = to_b64(s);
		char err[1024];
		json_t *v = verify_call(bad, cert, NULL, err, sizeof(err));
		ck_assert_msg(v == NULL, "receipt with body byte %zu changed accepted", i);
		ck_assert_msg(strstr(err, "refused: receipt: "), "byte %zu: %s", i, err);
		free(bad);
		s->body.data[i] ^= 0x04;
	}
	s->signature.data[0] ^= 1;
	char *bad = to_b64(s);
	verify_refused(bad, cert, NULL, "not a Receipt signed by the MerchantCert's key");
	free(bad);
	mp_stmt_free(s);

	/* the wrong broker key, the wrong statement as the cert, garbage */
	char other_pk[65];
	memset(other_pk, 'a', 64);
	other_pk[64] = '\0';
	verify_refused(good, cert, other_pk,
		       "merchant_cert: not a MerchantCert signed by the given broker key");
	verify_refused(good, good, NULL, "merchant_cert: not a MerchantCert");
	verify_refused(cert, cert, NULL, "not a Receipt signed");
	verify_refused("bm90IGEgc3RhdGVtZW50", cert, NULL, "not base64 of a signed statement");
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("receipts");
	TCase *tc = tcase_create("receipts");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, receipt_verified_offline_and_replayed_byte_for_byte);
	tcase_add_test(tc, pay_with_receipt);
	tcase_add_test(tc, receipt_for_unaccepted_payment_refused);
	tcase_add_test(tc, receipt_before_the_payment_is_durable_is_too_early);
	tcase_add_test(tc, tampered_receipt_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
