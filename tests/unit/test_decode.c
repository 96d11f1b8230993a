/* Bounded decoding (common/decode.c): decoded-size budget and repeated-field limits, for
 * Envelopes and for statement bodies parsed from Signed (common/stmt.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "proto.h"
#include "proto_limits.h"
#include "stmt.h"
#include "../check_run.h"

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *out = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(out);
	protobuf_c_message_pack(m, out);
	return out;
}

/* Decode, require success within the budget, report the expansion. */
static void decodes_within_budget(const ProtobufCMessage *m, const char *what)
{
	size_t len, used = 0;
	uint8_t *wire = pack(m, &len);
	struct mp_decode_error err;
	ProtobufCMessage *got = mp_decode(m->descriptor, wire, len, &err, &used);
	ck_assert_msg(got != NULL, "%s refused: %s", what, err.detail);
	ck_assert_uint_le(used, mp_decode_budget(len));
	printf("%s: %zu bytes on the wire, %zu charged (%.1fx), budget %zu\n", what, len, used,
	       (double)used / (double)len, mp_decode_budget(len));
	protobuf_c_message_free_unpacked(got, NULL);
	free(wire);
}

/* n empty sub-messages in field `field` of a message: 2 bytes each. */
static uint8_t *empty_items(uint8_t field, size_t n, size_t *len)
{
	uint8_t *b = malloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		b[2 * i] = (uint8_t)(field << 3 | 2);
		b[2 * i + 1] = 0;
	}
	*len = 2 * n;
	return b;
}

START_TEST(bomb_of_empty_claims_refused_within_budget)
{
	size_t len, used = 0;
	uint8_t *bomb = empty_items(3, 500000, &len); /* Redeem.claims: 1 MB on the wire */
	struct mp_decode_error err;
	ProtobufCMessage *m = mp_decode(&micropay__v1__redeem__descriptor, bomb, len, &err, &used);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(err.code, MP_DECODE_OVER_BUDGET);
	ck_assert_uint_le(used, mp_decode_budget(len));
	ck_assert_msg(strstr(err.detail, "Redeem"), "%s", err.detail);
	/* The same through the statement parser. */
	ck_assert_ptr_null(mp_strict_unpack(&micropay__v1__redeem__descriptor, bomb, len));
	free(bomb);
}
END_TEST

START_TEST(bomb_of_empty_results_refused_within_budget)
{
	size_t len, used = 0;
	uint8_t *bomb = empty_items(2, 4000000, &len); /* RedeemResp.results: 8 MB */
	struct mp_decode_error err;
	ck_assert_ptr_null(
	    mp_decode(&micropay__v1__redeem_resp__descriptor, bomb, len, &err, &used));
	ck_assert_int_eq(err.code, MP_DECODE_OVER_BUDGET);
	ck_assert_uint_le(used, mp_decode_budget(len));
	free(bomb);
}
END_TEST

START_TEST(too_many_segments_refused)
{
	size_t len;
	/* OpenReq.segments: the Transfer/Cap pairs of segments 1..15 */
	uint8_t *items = empty_items(2, MP_MAX_SEGMENT_STMTS + 1, &len);
	struct mp_decode_error err;
	ck_assert_ptr_null(mp_decode(&micropay__v1__open_req__descriptor, items, len, &err, NULL));
	ck_assert_int_eq(err.code, MP_DECODE_TOO_MANY);
	ck_assert_str_eq(err.detail, "31 items in OpenReq.segments, at most 30");
	ProtobufCMessage *ok =
	    mp_decode(&micropay__v1__open_req__descriptor, items, len - 2, &err, NULL);
	ck_assert_ptr_nonnull(ok);
	protobuf_c_message_free_unpacked(ok, NULL);
	free(items);
}
END_TEST

/* A limit deep inside: custody of one Claim of a Redeem. */
START_TEST(too_many_custody_entries_refused)
{
	Micropay__V1__Signed **custody = calloc(MP_MAX_CUSTODY + 1, sizeof(*custody));
	Micropay__V1__Signed empty = MICROPAY__V1__SIGNED__INIT;
	for (size_t i = 0; i <= MP_MAX_CUSTODY; i++)
		custody[i] = &empty;
	Micropay__V1__Claim claim = MICROPAY__V1__CLAIM__INIT;
	claim.n_custody = MP_MAX_CUSTODY + 1;
	claim.custody = custody;
	Micropay__V1__Claim *claims[] = {&claim};
	Micropay__V1__Redeem r = MICROPAY__V1__REDEEM__INIT;
	r.n_claims = 1;
	r.claims = claims;
	size_t len;
	uint8_t *wire = pack(&r.base, &len);
	struct mp_decode_error err;
	ck_assert_ptr_null(mp_decode(&micropay__v1__redeem__descriptor, wire, len, &err, NULL));
	ck_assert_int_eq(err.code, MP_DECODE_TOO_MANY);
	ck_assert_str_eq(err.detail, "258 items in Claim.custody, at most 257");
	ck_assert_ptr_null(mp_strict_unpack(&micropay__v1__redeem__descriptor, wire, len));
	free(wire);
	claim.n_custody = MP_MAX_CUSTODY;
	decodes_within_budget(&r.base, "Redeem, one claim with a full custody chain");
	free(custody);
}
END_TEST

/* A full Redeem of MAX_CLAIMS_PER_REDEEM claims each with one custody statement. */
START_TEST(normal_redeem_passes)
{
	enum { N = 10000 };
	static uint8_t id[16], w[32], body[120], pk[32], sig[64];
	Micropay__V1__Claim *claims = calloc(N, sizeof(*claims));
	Micropay__V1__Claim **ptrs = calloc(N, sizeof(*ptrs));
	Micropay__V1__Point point = MICROPAY__V1__POINT__INIT;
	point.seg_seq = 1;
	point.index = 123456;
	point.w = (ProtobufCBinaryData){sizeof(w), w};
	Micropay__V1__Signed custody = MICROPAY__V1__SIGNED__INIT;
	custody.type = 4;
	custody.body = (ProtobufCBinaryData){sizeof(body), body};
	custody.signer_pk = (ProtobufCBinaryData){sizeof(pk), pk};
	custody.signature = (ProtobufCBinaryData){sizeof(sig), sig};
	Micropay__V1__Signed *cust[] = {&custody};
	for (size_t i = 0; i < N; i++) {
		micropay__v1__claim__init(&claims[i]);
		claims[i].channel_id = (ProtobufCBinaryData){sizeof(id), id};
		claims[i].hseq_in = 1;
		claims[i].point = &point;
		ptrs[i] = &claims[i];
	}
	Micropay__V1__Redeem r = MICROPAY__V1__REDEEM__INIT;
	r.redeem_id = (ProtobufCBinaryData){sizeof(id), id};
	r.merchant_id = (ProtobufCBinaryData){sizeof(id), id};
	r.n_claims = N;
	r.claims = ptrs;
	decodes_within_budget(&r.base, "Redeem of 10000 claims, no custody");
	for (size_t i = 0; i < N; i++) {
		claims[i].n_custody = 1;
		claims[i].custody = cust;
	}
	decodes_within_budget(&r.base, "Redeem of 10000 claims, one custody statement each");
	free(ptrs);
	free(claims);
}
END_TEST

/* The answer with the smallest items: MAX_CLAIMS_PER_REDEEM results of a few bytes each. */
START_TEST(normal_redeem_resp_passes)
{
	enum { N = 10000 };
	Micropay__V1__ClaimResult *results = calloc(N, sizeof(*results));
	Micropay__V1__ClaimResult **ptrs = calloc(N, sizeof(*ptrs));
	for (size_t i = 0; i < N; i++) {
		micropay__v1__claim_result__init(&results[i]);
		results[i].status = MP_ST(BAD_CHAIN);
		ptrs[i] = &results[i];
	}
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	Micropay__V1__RedeemResp resp = MICROPAY__V1__REDEEM_RESP__INIT;
	resp.status = &st;
	resp.n_results = N;
	resp.results = ptrs;
	resp.broker_time = 1700000000;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REDEEM_RESP);
	env.redeem_resp = &resp;
	decodes_within_budget(&env.base, "RedeemResp of 10000 BAD_CHAIN results");
	for (size_t i = 0; i < N; i++) {
		results[i].status = MP_ST(OK);
		results[i].credited_end = 5000;
		results[i].credited_amount = 5000;
		results[i].detail = "credited";
	}
	decodes_within_budget(&env.base, "RedeemResp of 10000 credited results");
	free(ptrs);
	free(results);
}
END_TEST

/* The most results a RedeemResp may carry, each as small as a real one can be. */
START_TEST(redeem_resp_at_the_ceiling_passes)
{
	Micropay__V1__ClaimResult *results = calloc(MP_MAX_CLAIMS_CEILING + 1, sizeof(*results));
	Micropay__V1__ClaimResult **ptrs = calloc(MP_MAX_CLAIMS_CEILING + 1, sizeof(*ptrs));
	for (size_t i = 0; i <= MP_MAX_CLAIMS_CEILING; i++) {
		micropay__v1__claim_result__init(&results[i]);
		results[i].status = MP_ST(BAD_CHAIN);
		ptrs[i] = &results[i];
	}
	Micropay__V1__RedeemResp resp = MICROPAY__V1__REDEEM_RESP__INIT;
	resp.n_results = MP_MAX_CLAIMS_CEILING;
	resp.results = ptrs;
	decodes_within_budget(&resp.base, "RedeemResp at the claims ceiling");
	resp.n_results = MP_MAX_CLAIMS_CEILING + 1;
	size_t len;
	uint8_t *wire = pack(&resp.base, &len);
	struct mp_decode_error err;
	ck_assert_ptr_null(
	    mp_decode(&micropay__v1__redeem_resp__descriptor, wire, len, &err, NULL));
	ck_assert_int_eq(err.code, MP_DECODE_TOO_MANY);
	free(wire);
	free(ptrs);
	free(results);
}
END_TEST

/* Small messages of each kind a daemon receives, including oneof members of Envelope. */
START_TEST(small_messages_pass)
{
	static uint8_t id[16], w[32];
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	pay.channel_id = (ProtobufCBinaryData){sizeof(id), id};
	pay.j = 7;
	pay.w_j = (ProtobufCBinaryData){sizeof(w), w};
	pay.order_ref = (ProtobufCBinaryData){sizeof(id), id};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = 9;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	decodes_within_budget(&env.base, "Envelope with a PayReq");
	Micropay__V1__Signed seg = MICROPAY__V1__SIGNED__INIT;
	Micropay__V1__Signed *segs[MP_MAX_SEGMENTS];
	for (int i = 0; i < MP_MAX_SEGMENTS; i++)
		segs[i] = &seg;
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	open.cert = &seg;
	open.n_segments = MP_MAX_SEGMENTS;
	open.segments = segs;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &open;
	decodes_within_budget(&env.base, "Envelope with an OpenReq of 16 segments");
}
END_TEST

START_TEST(unparsable_is_not_a_budget_refusal)
{
	static const uint8_t junk[] = {0x1a, 0x05, 0x01}; /* bytes field, 5 announced, 1 sent */
	struct mp_decode_error err;
	ck_assert_ptr_null(
	    mp_decode(&micropay__v1__redeem__descriptor, junk, sizeof(junk), &err, NULL));
	ck_assert_int_eq(err.code, MP_DECODE_UNPARSABLE);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("decode");
	TCase *tc = tcase_create("decode");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, bomb_of_empty_claims_refused_within_budget);
	tcase_add_test(tc, bomb_of_empty_results_refused_within_budget);
	tcase_add_test(tc, too_many_segments_refused);
	tcase_add_test(tc, too_many_custody_entries_refused);
	tcase_add_test(tc, normal_redeem_passes);
	tcase_add_test(tc, normal_redeem_resp_passes);
	tcase_add_test(tc, redeem_resp_at_the_ceiling_passes);
	tcase_add_test(tc, small_messages_pass);
	tcase_add_test(tc, unparsable_is_not_a_budget_refusal);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
