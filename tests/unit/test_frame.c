/* Frame codec (common/frame.c): be32(length) || Envelope over libevent evbuffers. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "util.h"
#include "../check_run.h"

#define MAX 1024

static struct evbuffer *buf;

static void setup(void)
{
	buf = evbuffer_new();
	ck_assert_ptr_nonnull(buf);
}

static void teardown(void)
{
	evbuffer_free(buf);
}

static void add_header(uint32_t len)
{
	uint8_t h[MP_FRAME_HEADER_LEN];
	mp_put_be32(h, len);
	ck_assert_int_eq(evbuffer_add(buf, h, sizeof(h)), 0);
}

START_TEST(peek)
{
	uint8_t b[8] = {0, 0, 0, 3, 'a', 'b', 'c', 'd'};
	uint32_t len = 0;
	ck_assert_int_eq(mp_frame_peek(b, 3, MAX, &len), MP_FRAME_NEED_MORE);
	ck_assert_int_eq(mp_frame_peek(b, 6, MAX, &len), MP_FRAME_NEED_MORE);
	ck_assert_int_eq(mp_frame_peek(b, 7, MAX, &len), MP_FRAME_OK);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(mp_frame_peek(b, 8, MAX, &len), MP_FRAME_OK); /* a next frame begins */
	ck_assert_int_eq(mp_frame_peek(b, 7, 2, &len), MP_FRAME_TOO_BIG);
}
END_TEST

/* mp_frame_take, keeping only the frame length (the bodies here are not Envelopes). */
static enum mp_frame_result take(size_t *len)
{
	MpEnvelope *env = NULL;
	struct mp_decode_error err;
	enum mp_frame_result r = mp_frame_take(buf, MAX, &env, len, &err);
	if (env)
		micropay__v1__envelope__free_unpacked(env, NULL);
	return r;
}

START_TEST(partial_header_and_body)
{
	static const uint8_t frame[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
	size_t len = 0;
	for (size_t i = 0; i + 1 < sizeof(frame); i++) {
		evbuffer_add(buf, &frame[i], 1);
		ck_assert_int_eq(take(&len), MP_FRAME_NEED_MORE);
		ck_assert_uint_eq(evbuffer_get_length(buf), i + 1); /* nothing consumed */
	}
	evbuffer_add(buf, &frame[sizeof(frame) - 1], 1);
	ck_assert_int_eq(take(&len), MP_FRAME_OK);
	ck_assert_uint_eq(len, 5);
	ck_assert_uint_eq(evbuffer_get_length(buf), 0);
}
END_TEST

START_TEST(two_frames_back_to_back)
{
	static const uint8_t frames[] = {0, 0, 0, 2, 'h', 'i', 0, 0, 0, 3, 'y', 'o', 'u'};
	evbuffer_add(buf, frames, sizeof(frames));
	size_t len = 0;
	ck_assert_int_eq(take(&len), MP_FRAME_OK);
	ck_assert_uint_eq(len, 2);
	ck_assert_uint_eq(evbuffer_get_length(buf), 7);
	ck_assert_int_eq(take(&len), MP_FRAME_OK);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(take(&len), MP_FRAME_NEED_MORE);
}
END_TEST

START_TEST(zero_length_empty)
{
	add_header(0);
	size_t len = 0;
	ck_assert_int_eq(take(&len), MP_FRAME_EMPTY);
}
END_TEST

START_TEST(oversized_refused_before_allocating)
{
	/* Only the header has arrived: the length alone decides. */
	add_header(0xFFFFFFFFu);
	size_t len = 0;
	ck_assert_int_eq(take(&len), MP_FRAME_TOO_BIG);
	ck_assert_uint_eq(evbuffer_get_length(buf), MP_FRAME_HEADER_LEN); /* nothing drained */

	evbuffer_drain(buf, MP_FRAME_HEADER_LEN);
	add_header(MAX + 1);
	evbuffer_add(buf, "xyz", 3);
	ck_assert_int_eq(take(&len), MP_FRAME_TOO_BIG);
	ck_assert_uint_eq(evbuffer_get_length(buf), MP_FRAME_HEADER_LEN + 3);
}
END_TEST

START_TEST(envelope_round_trip)
{
	uint8_t channel_id[16], w[32];
	memset(channel_id, 0x5a, sizeof(channel_id));
	memset(w, 0xa5, sizeof(w));
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	pay.channel_id = (ProtobufCBinaryData){sizeof(channel_id), channel_id};
	pay.seg_seq = 2;
	pay.j = 77;
	pay.w_j = (ProtobufCBinaryData){sizeof(w), w};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = 0x123456789ULL;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;

	ck_assert_int_eq(mp_frame_push(buf, &env, MAX), 0);
	MpEnvelope *got = NULL;
	size_t len = 0;
	struct mp_decode_error err;
	ck_assert_int_eq(mp_frame_take(buf, MAX, &got, &len, &err), MP_FRAME_OK);
	ck_assert_uint_eq(evbuffer_get_length(buf), 0);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->version, MP_PROTOCOL_VERSION);
	ck_assert_uint_eq(got->request_id, 0x123456789ULL);
	ck_assert_int_eq(got->body_case, MP_BODY(PAY_REQ));
	ck_assert_uint_eq(got->pay_req->seg_seq, 2);
	ck_assert_uint_eq(got->pay_req->j, 77);
	ck_assert_uint_eq(got->pay_req->channel_id.len, sizeof(channel_id));
	ck_assert_mem_eq(got->pay_req->channel_id.data, channel_id, sizeof(channel_id));
	ck_assert_uint_eq(got->pay_req->w_j.len, sizeof(w));
	ck_assert_mem_eq(got->pay_req->w_j.data, w, sizeof(w));
	micropay__v1__envelope__free_unpacked(got, NULL);
}
END_TEST

START_TEST(push_refuses_oversized)
{
	uint8_t big[64] = {0};
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	pay.order_ref = (ProtobufCBinaryData){sizeof(big), big};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	ck_assert_int_eq(mp_frame_push(buf, &env, 32), -1);
	ck_assert_uint_eq(evbuffer_get_length(buf), 0);
}
END_TEST

START_TEST(garbage_body_not_decoded)
{
	static const uint8_t garbage[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
					  0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
	struct mp_decode_error err;
	ck_assert_ptr_null(mp_envelope_decode(garbage, sizeof(garbage), &err));
	ck_assert_int_eq(err.code, MP_DECODE_UNPARSABLE);
	static const uint8_t truncated[] = {0xB2, 0x01, 0x10, 0x0A}; /* pay_req, 16 bytes, 2 sent */
	ck_assert_ptr_null(mp_envelope_decode(truncated, sizeof(truncated), &err));
	ck_assert_int_eq(err.code, MP_DECODE_UNPARSABLE);
}
END_TEST

/* An Envelope whose OpenReq holds n empty `segments` (field 2): 2 bytes each on the wire. */
static uint8_t *segment_bomb(size_t n, size_t *len)
{
	size_t inner = 2 * n;
	uint8_t *b = malloc(inner + 16);
	size_t k = 0;
	b[k++] = 0x08; /* version = 1 */
	b[k++] = 0x01;
	b[k++] = 0xA2; /* field 20 (open_req), length-delimited */
	b[k++] = 0x01;
	for (size_t v = inner;; v >>= 7) { /* varint length */
		b[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	for (size_t i = 0; i < n; i++) {
		b[k++] = 0x12; /* field 2 (segments), length-delimited, length 0 */
		b[k++] = 0x00;
	}
	*len = k;
	return b;
}

/* A frame that is small on the wire and huge once decoded is taken off the buffer and refused
 * without decoding beyond the budget; the next frame is decoded normally. */
START_TEST(decoded_size_bomb_refused)
{
	size_t blen;
	uint8_t *bomb = segment_bomb(400000, &blen); /* 800 kB on the wire */
	add_header((uint32_t)blen);
	evbuffer_add(buf, bomb, blen);
	free(bomb);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	ck_assert_int_eq(mp_frame_push(buf, &env, 1u << 20), 0);

	MpEnvelope *got = NULL;
	size_t len = 0;
	struct mp_decode_error err;
	ck_assert_int_eq(mp_frame_take(buf, 1u << 20, &got, &len, &err), MP_FRAME_OK);
	ck_assert_ptr_null(got);
	ck_assert_uint_eq(len, blen);
	ck_assert_int_eq(err.code, MP_DECODE_OVER_BUDGET);
	ck_assert_msg(strstr(err.detail, "decoded size above the budget"), "%s", err.detail);
	ck_assert_int_eq(mp_frame_take(buf, 1u << 20, &got, &len, &err), MP_FRAME_OK);
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(got->body_case, MP_BODY(PAY_REQ));
	micropay__v1__envelope__free_unpacked(got, NULL);
	ck_assert_uint_eq(evbuffer_get_length(buf), 0);
}
END_TEST

/* Found by fuzz_frame on 2026-11-30 (docs/fuzzing.md, "Findings"), the input as it was: a
 * 3-byte Envelope 80 00 00 (an unknown field numbered 0, its tag written in two bytes, value 0),
 * then 2 bytes of the next header. protobuf-c decoded it but packs the field back as the
 * one-byte tag 00, which it refuses: an Envelope the daemon accepted could not be encoded
 * again. The frame is taken off the buffer and refused as unparsable; the rest waits. */
START_TEST(fuzz_unknown_field_zero_refused)
{
	static const uint8_t input[] = {0x00, 0x00, 0x00, 0x03, 0x80, 0x00, 0x00, 0x10, 0xce};
	ck_assert_int_eq(evbuffer_add(buf, input, sizeof(input)), 0);
	MpEnvelope *got = NULL;
	size_t len = 0;
	struct mp_decode_error err;
	ck_assert_int_eq(mp_frame_take(buf, MP_FRAME_MAX_WALLET, &got, &len, &err), MP_FRAME_OK);
	ck_assert_ptr_null(got);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(err.code, MP_DECODE_UNPARSABLE);
	ck_assert_msg(strstr(err.detail, "field number 0"), "%s", err.detail);
	ck_assert_int_eq(mp_frame_take(buf, MP_FRAME_MAX_WALLET, &got, &len, &err),
			 MP_FRAME_NEED_MORE);
	ck_assert_uint_eq(evbuffer_get_length(buf), 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("frame");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, peek);
	tcase_add_test(tc, partial_header_and_body);
	tcase_add_test(tc, two_frames_back_to_back);
	tcase_add_test(tc, zero_length_empty);
	tcase_add_test(tc, oversized_refused_before_allocating);
	tcase_add_test(tc, envelope_round_trip);
	tcase_add_test(tc, push_refuses_oversized);
	tcase_add_test(tc, garbage_body_not_decoded);
	tcase_add_test(tc, decoded_size_bomb_refused);
	tcase_add_test(tc, fuzz_unknown_field_zero_refused);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
