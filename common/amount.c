#include "amount.h"

bool mp_amount_mul(uint64_t a, uint64_t b, uint64_t *out)
{
	if (!mp_amount_valid(a) || !mp_amount_valid(b))
		return false;
	uint64_t product;
	if (__builtin_mul_overflow(a, b, &product) || !mp_amount_valid(product))
		return false;
	*out = product;
	return true;
}

bool mp_amount_add(uint64_t a, uint64_t b, uint64_t *out)
{
	if (!mp_amount_valid(a) || !mp_amount_valid(b))
		return false;
	uint64_t sum = a + b; /* both <= 2^63-1: cannot wrap */
	if (!mp_amount_valid(sum))
		return false;
	*out = sum;
	return true;
}

enum mp_escrow_check mp_escrow_bounds(uint32_t n, uint64_t unit_value, uint32_t n_max,
				      uint64_t max_unit_value, uint64_t max_escrow,
				      uint64_t *escrow)
{
	if (n < 1 || n > n_max)
		return MP_ESCROW_BAD_N;
	if (unit_value < 1 || unit_value > max_unit_value || !mp_amount_valid(unit_value))
		return MP_ESCROW_BAD_UNIT;
	uint64_t product;
	if (!mp_amount_mul(n, unit_value, &product) || product > max_escrow)
		return MP_ESCROW_TOO_BIG;
	*escrow = product;
	return MP_ESCROW_OK;
}
