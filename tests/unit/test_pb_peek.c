/* Reading one top-level field of a serialised message without parsing it (common/pb_peek.c),
 * against messages packed by protobuf-c and against broken framing. */
#include <check.h>
#include <string.h>

#include "pb_peek.h"
#include "proto.h"
#include "../check_run.h"

static size_t packed_issue_request(uint8_t *out, size_t cap, const uint8_t account[16])
{
	static uint8_t req_id[16] = {1}, owner[32] = {2}, nonce[16] = {3}, root[32] = {4};
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){16, req_id};
	r.account_id = (ProtobufCBinaryData){16, (uint8_t *)account};
	r.owner_pk = (ProtobufCBinaryData){32, owner};
	r.chain_nonce = (ProtobufCBinaryData){16, nonce};
	r.root = (ProtobufCBinaryData){32, root};
	r.n = 300;
	r.unit_value = 1ULL << 40;
	r.currency = "EUR";
	r.pay_until_days = 7;
	size_t len = micropay__v1__issue_request__get_packed_size(&r);
	ck_assert_uint_le(len, cap);
	micropay__v1__issue_request__pack(&r, out);
	return len;
}

/* A Cap's hseq (field 4, varint) as protobuf-c packs it; absent means 0; framing errors. */
START_TEST(peeks_a_varint_field)
{
	uint8_t w[32] = {1}, th[32] = {2}, cid[16] = {3};
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = 7;
	pt.w = (ProtobufCBinaryData){32, w};
	Micropay__V1__Cap c = MICROPAY__V1__CAP__INIT;
	c.channel_id = (ProtobufCBinaryData){16, cid};
	c.new_seg_seq = 2;
	c.transfer_hash = (ProtobufCBinaryData){32, th};
	c.hseq = 300; /* two varint bytes */
	c.point = &pt;
	uint8_t buf[256];
	size_t len = micropay__v1__cap__pack(&c, buf);
	uint64_t v = 99;
	ck_assert(mp_pb_peek_uint(buf, len, 4, &v));
	ck_assert_uint_eq(v, 300);
	ck_assert(mp_pb_peek_uint(buf, len, 2, &v));
	ck_assert_uint_eq(v, 2);
	c.hseq = 0; /* proto3 leaves it out */
	len = micropay__v1__cap__pack(&c, buf);
	v = 99;
	ck_assert(mp_pb_peek_uint(buf, len, 4, &v));
	ck_assert_uint_eq(v, 0);
	/* a length-delimited field of that number is not taken for it */
	ck_assert(mp_pb_peek_uint(buf, len, 1, &v));
	ck_assert_uint_eq(v, 0);
	/* truncated framing before the field */
	ck_assert(!mp_pb_peek_uint(buf, 5, 4, &v));
	static const uint8_t bad_varint[] = {0x20, 0xff, 0xff};
	ck_assert(!mp_pb_peek_uint(bad_varint, sizeof(bad_varint), 4, &v));
}
END_TEST

START_TEST(finds_the_field_protobuf_c_packed)
{
	uint8_t account[16], buf[512];
	for (int i = 0; i < 16; i++)
		account[i] = (uint8_t)(0xa0 + i);
	size_t len = packed_issue_request(buf, sizeof(buf), account);
	const uint8_t *v;
	size_t vlen;
	ck_assert(mp_pb_peek_bytes(buf, len, 2, &v, &vlen));
	ck_assert_uint_eq(vlen, 16);
	ck_assert_mem_eq(v, account, 16);
	ck_assert(mp_pb_peek_bytes(buf, len, 8, &v, &vlen)); /* currency, after varints */
	ck_assert_uint_eq(vlen, 3);
	ck_assert_mem_eq(v, "EUR", 3);
	ck_assert(!mp_pb_peek_bytes(buf, len, 9, &v, &vlen)); /* holder0 empty: not sent */
	ck_assert(!mp_pb_peek_bytes(buf, len, 6, &v, &vlen)); /* n is a varint, not bytes */
}
END_TEST

START_TEST(junk_after_the_field_is_not_read)
{
	uint8_t account[16] = {9}, buf[512];
	size_t len = packed_issue_request(buf, sizeof(buf), account);
	/* Keep issue_req_id and account_id (2 + 16 bytes each), then bytes no parser accepts. */
	len = 36;
	memcpy(buf + len, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x07", 12);
	const uint8_t *v;
	size_t vlen;
	ck_assert(mp_pb_peek_bytes(buf, len + 12, 2, &v, &vlen));
	ck_assert_mem_eq(v, account, 16);
	ck_assert(micropay__v1__issue_request__unpack(NULL, len + 12, buf) == NULL);
}
END_TEST

START_TEST(broken_framing_before_the_field_is_refused)
{
	const uint8_t *v;
	size_t vlen;
	/* truncated varint tag */
	ck_assert(!mp_pb_peek_bytes((const uint8_t *)"\x80", 1, 2, &v, &vlen));
	/* field 1, length 16, only 3 bytes follow */
	ck_assert(!mp_pb_peek_bytes((const uint8_t *)"\x0a\x10\x01\x02\x03", 5, 2, &v, &vlen));
	/* a group start (wire type 3) */
	ck_assert(!mp_pb_peek_bytes((const uint8_t *)"\x0b\x12\x00", 3, 2, &v, &vlen));
	/* field number 0 */
	ck_assert(!mp_pb_peek_bytes((const uint8_t *)"\x02\x00", 2, 2, &v, &vlen));
	/* a length that would wrap around */
	ck_assert(!mp_pb_peek_bytes(
	    (const uint8_t *)"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12\x00", 13, 2, &v,
	    &vlen));
	/* an 11-byte varint */
	ck_assert(!mp_pb_peek_bytes(
	    (const uint8_t *)"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12\x00", 14, 2, &v,
	    &vlen));
	/* empty message: absent */
	ck_assert(!mp_pb_peek_bytes((const uint8_t *)"", 0, 2, &v, &vlen));
	/* fixed32 and fixed64 values are skipped */
	ck_assert(mp_pb_peek_bytes((const uint8_t *)"\x0d\x01\x02\x03\x04\x11\x01\x02\x03\x04\x05"
						    "\x06\x07\x08\x12\x01\x61",
				   17, 2, &v, &vlen));
	ck_assert_uint_eq(vlen, 1);
	ck_assert_int_eq(v[0], 'a');
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pb_peek");
	TCase *tc = tcase_create("peek");
	tcase_add_test(tc, finds_the_field_protobuf_c_packed);
	tcase_add_test(tc, junk_after_the_field_is_not_read);
	tcase_add_test(tc, broken_framing_before_the_field_is_refused);
	tcase_add_test(tc, peeks_a_varint_field);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
