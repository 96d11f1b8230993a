/* Amounts are uint64 minor units <= 2^63-1; every product and sum is overflow-checked. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define MP_AMOUNT_MAX ((uint64_t)INT64_MAX)

static inline bool mp_amount_valid(uint64_t v)
{
	return v <= MP_AMOUNT_MAX;
}

/* *out = a * b; false if either input or the result exceeds 2^63-1. */
bool mp_amount_mul(uint64_t a, uint64_t b, uint64_t *out);
/* *out = a + b; false if either input or the result exceeds 2^63-1. */
bool mp_amount_add(uint64_t a, uint64_t b, uint64_t *out);

enum mp_escrow_check { MP_ESCROW_OK, MP_ESCROW_BAD_N, MP_ESCROW_BAD_UNIT, MP_ESCROW_TOO_BIG };

/* Bounds of an issue: 1 <= n <= n_max, 1 <= unit_value <= max_unit_value, n * unit_value <=
 * max_escrow (overflow-checked). On success *escrow holds the product. */
enum mp_escrow_check mp_escrow_bounds(uint32_t n, uint64_t unit_value, uint32_t n_max,
				      uint64_t max_unit_value, uint64_t max_escrow,
				      uint64_t *escrow);
