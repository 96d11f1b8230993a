/* Bounded protobuf decoding. The wire size of a message is checked by the frame codec; this
 * bounds what it becomes once unpacked: a frame of empty repeated sub-messages (2 bytes each on
 * the wire, a pointer, a struct and protobuf-c's scan record each in memory) expands about 50x.
 * Every allocation protobuf-c makes while unpacking is charged to a budget of
 * MP_DECODE_FACTOR * wire length + MP_DECODE_FLOOR bytes; when it runs out the message is
 * refused. Then every repeated field's item count is checked against its protocol limit
 * (common/limits.h); a repeated field without a declared limit accepts no item at all. */
#pragma once
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Measured in tests/unit/test_decode.c: a Redeem of 10,000 claims decodes to 4.6x its wire
 * size, with a custody statement per claim 2.3x; the floor covers small messages and messages
 * whose items are a few bytes each (a RedeemResp of MP_MAX_CLAIMS_CEILING BAD_CHAIN results,
 * 31x of 80 kB). A 1 MiB frame from a wallet can thus cost at most 10 MiB while decoding. */
#define MP_DECODE_FACTOR 8
#define MP_DECODE_FLOOR	 (2u << 20)
/* Charged per allocation on top of its size: the allocator's own header and rounding. */
#define MP_DECODE_ALLOC_OVERHEAD 16

enum mp_decode_result {
	MP_DECODE_OK,
	MP_DECODE_UNPARSABLE, /* not a valid encoding of the message */
	MP_DECODE_OVER_BUDGET,
	MP_DECODE_TOO_MANY, /* a repeated field above its limit */
};

struct mp_decode_error {
	enum mp_decode_result code;
	char detail[160]; /* for logs and error answers: which field, which budget */
};

size_t mp_decode_budget(size_t wire_len);

/* Unpack data as desc within the budget and item limits. NULL with *err filled on refusal.
 * The result is plain malloc'd protobuf-c: free with protobuf_c_message_free_unpacked(m, NULL).
 * If used is not NULL it receives the bytes charged (for tests and measurements). */
ProtobufCMessage *mp_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			    struct mp_decode_error *err, size_t *used);

/* The most items field f of desc may hold (0 if the protocol declares no limit for it). */
size_t mp_decode_max_items(const ProtobufCMessageDescriptor *desc,
			   const ProtobufCFieldDescriptor *f);
