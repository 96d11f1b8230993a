/* Bounded protobuf decoding. The wire size of a message is checked by the frame codec; this
 * bounds what it becomes once unpacked: a frame of empty repeated sub-messages (2 bytes each on
 * the wire, a pointer, a struct and protobuf-c's scan record each in memory) expands about 50x.
 * Every allocation protobuf-c makes while unpacking is charged to a budget of
 * MP_DECODE_FACTOR * wire length + MP_DECODE_FLOOR bytes; when it runs out the message is
 * refused. Then every repeated field's item count is checked against its protocol limit
 * (common/limits.h); a repeated field without a declared limit accepts no item at all. */
#pragma once
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
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

/* A decode arena: one fixed buffer that decoded messages are carved from, so that decoding a
 * frame allocates nothing on the heap (issue 9, docs/performance.md). One message lives in it
 * at a time: mp_decode_in takes it, mp_decode_release gives it back (resetting it). The decode
 * budget above is charged exactly as for the heap (size + MP_DECODE_ALLOC_OVERHEAD per
 * allocation): the arena changes where memory comes from, never how much a message may take.
 * An allocation that does not fit in what is left of the buffer, and every allocation of a
 * message decoded while the arena is taken (a nested decode), goes to malloc and is counted in
 * heap_allocs. Owned by one thread (the event loop of a listener). */
#define MP_DECODE_ARENA_SIZE (64u << 10)

struct mp_decode_arena {
	uint8_t *buf;
	size_t cap, used;
	bool taken;	      /* a decoded message lives in the buffer */
	const void *message;  /* that message (its top may have spilled to the heap) */
	unsigned spilled;     /* heap allocations of that message (then release walks it) */
	uint64_t heap_allocs; /* allocations that went to malloc, since the arena was made */
};

/* A buffer of cap bytes; false (nothing allocated) if memory is short. */
bool mp_decode_arena_init(struct mp_decode_arena *a, size_t cap);
void mp_decode_arena_fini(struct mp_decode_arena *a);

/* mp_decode into the arena (a NULL: on the heap, as mp_decode). Free the result with
 * mp_decode_release(a, m), never with protobuf-c's free. */
ProtobufCMessage *mp_decode_in(struct mp_decode_arena *a, const ProtobufCMessageDescriptor *desc,
			       const uint8_t *data, size_t len, struct mp_decode_error *err,
			       size_t *used);
void mp_decode_release(struct mp_decode_arena *a, ProtobufCMessage *m);

/* The most items field f of desc may hold (0 if the protocol declares no limit for it). */
size_t mp_decode_max_items(const ProtobufCMessageDescriptor *desc,
			   const ProtobufCFieldDescriptor *f);
