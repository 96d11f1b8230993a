/* Overflow-checked amounts and issue bounds (common/amount.c). */
#include <check.h>
#include <stdint.h>

#include "amount.h"
#include "../check_run.h"

#define MAX MP_AMOUNT_MAX /* 2^63 - 1 */

START_TEST(mul_in_range)
{
	uint64_t out = 0;
	ck_assert(mp_amount_mul(1000, 25, &out));
	ck_assert_uint_eq(out, 25000);
	ck_assert(mp_amount_mul(0, MAX, &out));
	ck_assert_uint_eq(out, 0);
}
END_TEST

START_TEST(mul_exactly_at_limit)
{
	/* 2^63 - 1 = 7 * 1317624576693539401. */
	uint64_t out = 0;
	ck_assert(mp_amount_mul(7, MAX / 7, &out));
	ck_assert_uint_eq(out, MAX);
	ck_assert(mp_amount_mul(MAX, 1, &out));
	ck_assert_uint_eq(out, MAX);
}
END_TEST

START_TEST(mul_overflow_refused)
{
	uint64_t out = 12345;
	ck_assert(!mp_amount_mul(UINT64_C(1) << 32, UINT64_C(1) << 32, &out)); /* wraps uint64 */
	ck_assert(!mp_amount_mul(UINT64_C(1) << 62, 2, &out)); /* 2^63: fits uint64, not int64 */
	ck_assert(!mp_amount_mul(MAX / 7 + 1, 7, &out));
	ck_assert_uint_eq(out, 12345); /* untouched on failure */
}
END_TEST

START_TEST(input_above_limit_refused)
{
	uint64_t out = 12345;
	ck_assert(!mp_amount_mul(MAX + 1, 1, &out));
	ck_assert(!mp_amount_mul(1, UINT64_MAX, &out));
	ck_assert(!mp_amount_mul(MAX + 1, 0, &out)); /* even when the product would be 0 */
	ck_assert(!mp_amount_add(MAX + 1, 0, &out));
	ck_assert(!mp_amount_add(0, UINT64_MAX, &out));
	ck_assert_uint_eq(out, 12345);
}
END_TEST

START_TEST(add)
{
	uint64_t out = 0;
	ck_assert(mp_amount_add(40, 2, &out));
	ck_assert_uint_eq(out, 42);
	ck_assert(mp_amount_add(MAX - 1, 1, &out));
	ck_assert_uint_eq(out, MAX);
	ck_assert(!mp_amount_add(MAX, 1, &out));
	ck_assert(!mp_amount_add(MAX, MAX, &out));
}
END_TEST

/* Issue bounds: n_max 1000, max unit 100, max escrow 50000. */
static enum mp_escrow_check bounds(uint32_t n, uint64_t unit, uint64_t *escrow)
{
	return mp_escrow_bounds(n, unit, 1000, 100, 50000, escrow);
}

START_TEST(escrow_ok)
{
	uint64_t escrow = 0;
	ck_assert_int_eq(bounds(500, 100, &escrow), MP_ESCROW_OK);
	ck_assert_uint_eq(escrow, 50000); /* exactly at max_escrow */
	ck_assert_int_eq(bounds(1, 1, &escrow), MP_ESCROW_OK);
	ck_assert_uint_eq(escrow, 1);
}
END_TEST

START_TEST(escrow_bad_n)
{
	uint64_t escrow = 7;
	ck_assert_int_eq(bounds(0, 10, &escrow), MP_ESCROW_BAD_N);
	ck_assert_int_eq(bounds(1001, 10, &escrow), MP_ESCROW_BAD_N);
	ck_assert_int_eq(bounds(1000, 10, &escrow), MP_ESCROW_OK);
}
END_TEST

START_TEST(escrow_bad_unit)
{
	uint64_t escrow = 7;
	ck_assert_int_eq(bounds(10, 0, &escrow), MP_ESCROW_BAD_UNIT);
	ck_assert_int_eq(bounds(10, 101, &escrow), MP_ESCROW_BAD_UNIT);
	ck_assert_uint_eq(escrow, 7);
	/* Above 2^63-1 even when the configured maximum would allow it. */
	ck_assert_int_eq(mp_escrow_bounds(1, MAX + 1, 10, UINT64_MAX, UINT64_MAX, &escrow),
			 MP_ESCROW_BAD_UNIT);
}
END_TEST

START_TEST(escrow_too_big)
{
	uint64_t escrow = 7;
	ck_assert_int_eq(bounds(501, 100, &escrow), MP_ESCROW_TOO_BIG);
	/* n * unit wraps uint64: 2^32 - 1 times 2^62. */
	ck_assert_int_eq(
	    mp_escrow_bounds(UINT32_MAX, UINT64_C(1) << 62, UINT32_MAX, MAX, UINT64_MAX, &escrow),
	    MP_ESCROW_TOO_BIG);
	/* n * unit above 2^63-1 without wrapping. */
	ck_assert_int_eq(mp_escrow_bounds(2, UINT64_C(1) << 62, 10, MAX, UINT64_MAX, &escrow),
			 MP_ESCROW_TOO_BIG);
	ck_assert_uint_eq(escrow, 7);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("amount");
	TCase *tc = tcase_create("arith");
	tcase_add_test(tc, mul_in_range);
	tcase_add_test(tc, mul_exactly_at_limit);
	tcase_add_test(tc, mul_overflow_refused);
	tcase_add_test(tc, input_above_limit_refused);
	tcase_add_test(tc, add);
	suite_add_tcase(s, tc);

	tc = tcase_create("escrow");
	tcase_add_test(tc, escrow_ok);
	tcase_add_test(tc, escrow_bad_n);
	tcase_add_test(tc, escrow_bad_unit);
	tcase_add_test(tc, escrow_too_big);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
