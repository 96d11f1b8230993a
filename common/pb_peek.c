#include "pb_peek.h"

enum wire_type { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* A base-128 varint of at most 10 bytes at msg[*pos]. */
static bool read_varint(const uint8_t *msg, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 70 && *pos < len; shift += 7) {
		uint8_t b = msg[(*pos)++];
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* Skip the value of a field of wire type wt starting at msg[*pos]; its bytes are at
 * msg[*start] for *vlen bytes. */
static bool skip_value(const uint8_t *msg, size_t len, size_t *pos, uint64_t wt, size_t *start,
		       size_t *vlen)
{
	uint64_t n;
	switch (wt) {
	case WT_VARINT:
		return read_varint(msg, len, pos, &n);
	case WT_I64:
		n = 8;
		break;
	case WT_I32:
		n = 4;
		break;
	case WT_LEN:
		if (!read_varint(msg, len, pos, &n))
			return false;
		break;
	default: /* groups (3, 4) and the unused types 6, 7 */
		return false;
	}
	if (n > len - *pos)
		return false;
	*start = *pos;
	*vlen = (size_t)n;
	*pos += (size_t)n;
	return true;
}

bool mp_pb_peek_bytes(const uint8_t *msg, size_t len, uint32_t number, const uint8_t **value,
		      size_t *value_len)
{
	size_t pos = 0;
	while (pos < len) {
		uint64_t tag, field;
		size_t start = 0, vlen = 0;
		if (!read_varint(msg, len, &pos, &tag) || (field = tag >> 3) == 0 ||
		    !skip_value(msg, len, &pos, tag & 7, &start, &vlen))
			return false;
		if (field == number && (tag & 7) == WT_LEN) {
			*value = msg + start;
			*value_len = vlen;
			return true;
		}
	}
	return false;
}

bool mp_pb_peek_uint(const uint8_t *msg, size_t len, uint32_t number, uint64_t *value)
{
	size_t pos = 0;
	while (pos < len) {
		uint64_t tag, field;
		size_t value_pos, start = 0, vlen = 0;
		if (!read_varint(msg, len, &pos, &tag) || (field = tag >> 3) == 0)
			return false;
		value_pos = pos;
		if (!skip_value(msg, len, &pos, tag & 7, &start, &vlen))
			return false;
		if (field == number && (tag & 7) == WT_VARINT)
			return read_varint(msg, len, &value_pos, value);
	}
	*value = 0; /* proto3: an absent scalar is its default */
	return true;
}
