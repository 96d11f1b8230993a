/* The decode arena (common/decode.h, mp_decode_in): a Pay decodes into it with no heap
 * allocation; the budget and the refusals are exactly those of the heap decoder; what does not
 * fit spills to the heap, counted, and is freed on release; a nested decode goes to the heap,
 * counted; release gives the whole buffer back. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "proto.h"
#include "../check_run.h"

static uint8_t *pack_env(const MpEnvelope *env, size_t *len)
{
	*len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *out = malloc(*len);
	ck_assert_ptr_nonnull(out);
	micropay__v1__envelope__pack(env, out);
	return out;
}

/* A Pay as a wallet sends it, packed. */
static uint8_t *pay_frame(size_t *len)
{
	static uint8_t id[16], w[32], ref[8];
	memset(id, 0x11, sizeof(id));
	memset(w, 0x22, sizeof(w));
	memset(ref, 0x33, sizeof(ref));
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){sizeof(id), id};
	req.j = 7;
	req.w_j = (ProtobufCBinaryData){sizeof(w), w};
	req.order_ref = (ProtobufCBinaryData){sizeof(ref), ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = 1;
	env.request_id = 42;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	return pack_env(&env, len);
}

static const ProtobufCMessageDescriptor *envelope = &micropay__v1__envelope__descriptor;

START_TEST(a_pay_decodes_in_the_arena_without_the_heap)
{
	size_t len, used_heap = 0, used_arena = 0;
	uint8_t *wire = pay_frame(&len);
	struct mp_decode_arena a;
	ck_assert(mp_decode_arena_init(&a, MP_DECODE_ARENA_SIZE));
	struct mp_decode_error err;
	ProtobufCMessage *h = mp_decode(envelope, wire, len, &err, &used_heap);
	ck_assert_ptr_nonnull(h);
	for (int round = 0; round < 3; round++) { /* the arena is reused frame after frame */
		MpEnvelope *env =
		    (MpEnvelope *)mp_decode_in(&a, envelope, wire, len, &err, &used_arena);
		ck_assert_ptr_nonnull(env);
		ck_assert(a.taken);
		ck_assert_uint_eq(used_arena, used_heap); /* the same charge */
		ck_assert_uint_eq(a.heap_allocs, 0);
		ck_assert((uint8_t *)env >= a.buf && (uint8_t *)env < a.buf + a.cap);
		ck_assert(env->pay_req->w_j.data >= a.buf &&
			  env->pay_req->w_j.data < a.buf + a.cap);
		ck_assert_uint_eq(env->pay_req->j, 7);
		ck_assert_uint_eq(env->request_id, 42);
		mp_decode_release(&a, &env->base);
		ck_assert(!a.taken);
		ck_assert_uint_eq(a.used, 0);
	}
	protobuf_c_message_free_unpacked(h, NULL);
	mp_decode_arena_fini(&a);
	free(wire);
}
END_TEST

START_TEST(what_does_not_fit_spills_to_the_heap_counted)
{
	size_t len, used = 0;
	uint8_t *wire = pay_frame(&len);
	struct mp_decode_arena a;
	ck_assert(mp_decode_arena_init(&a, 64)); /* room for the Envelope struct at most */
	struct mp_decode_error err;
	MpEnvelope *env = (MpEnvelope *)mp_decode_in(&a, envelope, wire, len, &err, &used);
	ck_assert_ptr_nonnull(env);
	ck_assert_uint_gt(a.heap_allocs, 0);
	ck_assert_uint_eq(a.spilled, a.heap_allocs);
	ck_assert_uint_eq(env->pay_req->w_j.len, 32);
	ck_assert_uint_eq(env->pay_req->w_j.data[31], 0x22);
	uint64_t spilled = a.heap_allocs;
	mp_decode_release(&a, &env->base); /* frees the spilled pieces (ASan: no leak) */
	ck_assert_uint_eq(a.spilled, 0);
	ck_assert_uint_eq(a.heap_allocs, spilled); /* a total: never reset */
	mp_decode_arena_fini(&a);
	free(wire);
}
END_TEST

/* An arena smaller than the Envelope struct: the message's top goes to the heap while its small
 * pieces (the bytes fields) fit; release must free the top and the spilled pieces, and only
 * them (found by fuzz_decode with a 33-byte arena: the top was taken for a heap message). */
START_TEST(the_top_may_spill_while_its_pieces_fit)
{
	size_t len;
	uint8_t *wire = pay_frame(&len);
	struct mp_decode_arena a;
	ck_assert(mp_decode_arena_init(&a, 33));
	struct mp_decode_error err;
	MpEnvelope *env = (MpEnvelope *)mp_decode_in(&a, envelope, wire, len, &err, NULL);
	ck_assert_ptr_nonnull(env);
	ck_assert((uint8_t *)env < a.buf || (uint8_t *)env >= a.buf + a.cap);
	ck_assert_uint_gt(a.used, 0); /* some piece fitted */
	ck_assert(a.taken);
	mp_decode_release(&a, &env->base); /* ASan: no bad free, no leak */
	ck_assert(!a.taken);
	ck_assert_uint_eq(a.used, 0);
	mp_decode_arena_fini(&a);
	free(wire);
}
END_TEST

START_TEST(a_nested_decode_goes_to_the_heap_counted)
{
	size_t len;
	uint8_t *wire = pay_frame(&len);
	struct mp_decode_arena a;
	ck_assert(mp_decode_arena_init(&a, MP_DECODE_ARENA_SIZE));
	struct mp_decode_error err;
	MpEnvelope *outer = (MpEnvelope *)mp_decode_in(&a, envelope, wire, len, &err, NULL);
	ck_assert_ptr_nonnull(outer);
	size_t taken = a.used;
	MpEnvelope *inner = (MpEnvelope *)mp_decode_in(&a, envelope, wire, len, &err, NULL);
	ck_assert_ptr_nonnull(inner);
	ck_assert((uint8_t *)inner < a.buf || (uint8_t *)inner >= a.buf + a.cap);
	ck_assert_uint_eq(a.used, taken); /* the outer message is untouched */
	ck_assert_uint_ge(a.heap_allocs, 2);
	mp_decode_release(&a, &inner->base);
	ck_assert(a.taken); /* still the outer's */
	ck_assert_uint_eq(outer->pay_req->j, 7);
	mp_decode_release(&a, &outer->base);
	ck_assert(!a.taken);
	mp_decode_arena_fini(&a);
	free(wire);
}
END_TEST

/* The budget bomb of test_decode.c (empty Redeem claims): refused over budget by the arena as
 * by the heap, the arena given back. */
START_TEST(refusals_are_the_heaps)
{
	size_t n = 200000, len = 2 * n, used_heap = 0, used_arena = 0;
	uint8_t *bomb = malloc(len);
	for (size_t i = 0; i < n; i++) {
		bomb[2 * i] = 3 << 3 | 2;
		bomb[2 * i + 1] = 0;
	}
	const ProtobufCMessageDescriptor *redeem = &micropay__v1__redeem__descriptor;
	struct mp_decode_error eh, ea;
	ck_assert_ptr_null(mp_decode(redeem, bomb, len, &eh, &used_heap));
	struct mp_decode_arena a;
	ck_assert(mp_decode_arena_init(&a, MP_DECODE_ARENA_SIZE));
	ck_assert_ptr_null(mp_decode_in(&a, redeem, bomb, len, &ea, &used_arena));
	ck_assert_int_eq(eh.code, MP_DECODE_OVER_BUDGET);
	ck_assert_int_eq(ea.code, eh.code);
	ck_assert_uint_eq(used_arena, used_heap);
	ck_assert(!a.taken);
	ck_assert_uint_eq(a.used, 0);
	ck_assert_uint_gt(a.heap_allocs, 0); /* 400 kB does not fit in 64 KiB */
	/* Unparsable: a truncated varint. */
	uint8_t bad[2] = {0x08, 0x80};
	ck_assert_ptr_null(mp_decode_in(&a, envelope, bad, sizeof(bad), &ea, NULL));
	ck_assert_int_eq(ea.code, MP_DECODE_UNPARSABLE);
	ck_assert(!a.taken);
	mp_decode_arena_fini(&a);
	free(bomb);
}
END_TEST

START_TEST(no_arena_is_the_heap)
{
	size_t len;
	uint8_t *wire = pay_frame(&len);
	struct mp_decode_error err;
	ProtobufCMessage *m = mp_decode_in(NULL, envelope, wire, len, &err, NULL);
	ck_assert_ptr_nonnull(m);
	mp_decode_release(NULL, m);
	free(wire);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("decode_arena");
	TCase *tc = tcase_create("arena");
	tcase_add_test(tc, a_pay_decodes_in_the_arena_without_the_heap);
	tcase_add_test(tc, what_does_not_fit_spills_to_the_heap_counted);
	tcase_add_test(tc, the_top_may_spill_while_its_pieces_fit);
	tcase_add_test(tc, a_nested_decode_goes_to_the_heap_counted);
	tcase_add_test(tc, refusals_are_the_heaps);
	tcase_add_test(tc, no_arena_is_the_heap);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
