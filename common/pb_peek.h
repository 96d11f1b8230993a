/* One top-level field of a serialised protobuf message, read without parsing the message.
 * For a verifier that must learn which key to verify with (an IssueRequest's account_id)
 * before it may parse a signed body (protocol.md section 2: verify, then parse). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Walk the top-level (tag, value) framing of msg from its start, skipping the values of other
 * fields, to the first field `number` with the length-delimited wire type; point *value into
 * msg at its bytes. False if a framing error comes first (truncated varint or value, group or
 * unknown wire type, field number 0) or the field is absent. No allocation, no sub-message or
 * string is looked into, at most len bytes are read. */
bool mp_pb_peek_bytes(const uint8_t *msg, size_t len, uint32_t number, const uint8_t **value,
		      size_t *value_len);

/* The first varint field `number` of msg, read the same way; an absent field is 0 (proto3's
 * default) and true. False only on a framing error before it. For a verifier that must learn
 * which signer to expect (a Cap's hseq names the epoch whose holder signed it). */
bool mp_pb_peek_uint(const uint8_t *msg, size_t len, uint32_t number, uint64_t *value);
