#include "decode.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto_limits.h"
#include "proto.h"

/* Under AddressSanitizer the arena's free part is poisoned: a pointer into a released message
 * (kept past its handler) faults as a freed heap block would. */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ARENA_POISON(p, n)   ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Every repeated field of proto/micropay.proto with the most items the protocol allows. */
struct item_limit {
	const ProtobufCMessageDescriptor *message;
	uint32_t field_id;
	size_t max;
};

static const struct item_limit item_limits[] = {
    {&micropay__v1__open_req__descriptor, 2, MP_MAX_SEGMENT_STMTS},	      /* segments */
    {&micropay__v1__redeem__descriptor, 3, MP_MAX_CLAIMS_CEILING},	      /* claims */
    {&micropay__v1__redeem_resp__descriptor, 2, MP_MAX_CLAIMS_CEILING},	      /* results */
    {&micropay__v1__claim__descriptor, 4, MP_MAX_CUSTODY},		      /* custody */
    {&micropay__v1__segment_claim__descriptor, 5, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__refund_request__descriptor, 6, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__handoff_resp__descriptor, 3, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__handoff_resp__descriptor, 4, MP_MAX_CUSTODY},	      /* merchant_certs */
    {&micropay__v1__claim__descriptor, 5, MP_MAX_SEGMENT_STMTS},	      /* segments */
    {&micropay__v1__handoff_resp__descriptor, 5, MP_MAX_SEGMENT_STMTS},	      /* segments */
    {&micropay__v1__transfer_resp__descriptor, 4, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__transfer_resp__descriptor, 5, MP_MAX_CUSTODY},	      /* merchant_certs */
    {&micropay__v1__transfer_resp__descriptor, 6, MP_MAX_SEGMENT_STMTS},      /* segments */
    {&micropay__v1__cap_notice_req__descriptor, 3, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__cap_notice_req__descriptor, 4, MP_MAX_SEGMENT_STMTS},     /* segments */
    {&micropay__v1__segment_claim_req__descriptor, 2, MP_MAX_SEGMENT_STMTS},  /* segments */
    {&micropay__v1__transfer_bundle__descriptor, 2, MP_MAX_SEGMENT_STMTS},    /* segments */
    {&micropay__v1__transfer_bundle__descriptor, 3, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__transfer_bundle__descriptor, 4, MP_MAX_CUSTODY},	      /* merchant_certs */
    {&micropay__v1__close_resp__descriptor, 3, MP_MAX_CUSTODY},		      /* custody */
    {&micropay__v1__bad_key_proof__descriptor, 5, MP_MAX_PROOF_PATH},	      /* path */
    {&micropay__v1__close_resp__descriptor, 4, MP_MAX_CUSTODY},		      /* merchant_certs */
    {&micropay__v1__close_resp__descriptor, 5, MP_MAX_SEGMENT_STMTS},	      /* segments */
    {&micropay__v1__dispute_req__descriptor, 2, MP_MAX_CUSTODY},	      /* custody */
    {&micropay__v1__dispute_req__descriptor, 3, MP_MAX_SEGMENT_STMTS},	      /* segments */
    {&micropay__v1__open_disputes_resp__descriptor, 2, MP_MAX_OPEN_DISPUTES}, /* disputes */
    {&micropay__v1__forced_closes_resp__descriptor, 2, MP_MAX_FORCED_CLOSES}, /* forced_closes */
};

size_t mp_decode_max_items(const ProtobufCMessageDescriptor *desc,
			   const ProtobufCFieldDescriptor *f)
{
	for (size_t i = 0; i < sizeof(item_limits) / sizeof(item_limits[0]); i++)
		if (item_limits[i].message == desc && item_limits[i].field_id == f->id)
			return item_limits[i].max;
	return 0;
}

size_t mp_decode_budget(size_t wire_len)
{
	return MP_DECODE_FACTOR * wire_len + MP_DECODE_FLOOR;
}

struct budget {
	size_t used, limit;
	bool exhausted;
	struct mp_decode_arena *arena; /* NULL: every allocation on the heap */
	unsigned allocs;	       /* allocations made */
};

/* The next 16-byte aligned piece of the arena's buffer, or NULL if size does not fit. */
static void *arena_carve(struct mp_decode_arena *a, size_t size)
{
	size_t at = (a->used + 15) & ~(size_t)15;
	if (at > a->cap || size > a->cap - at)
		return NULL;
	a->used = at + size;
	ARENA_UNPOISON(a->buf + at, size);
	return a->buf + at;
}

/* Empty again; what was carved is poisoned (under ASan). */
static void arena_reset(struct mp_decode_arena *a)
{
	ARENA_POISON(a->buf, a->used);
	a->used = 0;
	a->spilled = 0;
	a->taken = false;
	a->message = NULL;
}

static bool in_arena(const struct mp_decode_arena *a, const void *p)
{
	const uint8_t *q = p;
	return a && a->buf && q >= a->buf && q < a->buf + a->cap;
}

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	size_t cost = size + MP_DECODE_ALLOC_OVERHEAD;
	if (cost < size || cost > b->limit - b->used) {
		b->exhausted = true;
		return NULL;
	}
	b->used += cost;
	b->allocs++;
	void *p = b->arena ? arena_carve(b->arena, size) : NULL;
	if (p || !b->arena)
		return p ? p : malloc(size);
	b->arena->heap_allocs++;
	b->arena->spilled++;
	return malloc(size);
}

static void budget_free(void *data, void *p)
{
	struct budget *b = data;
	if (!in_arena(b->arena, p))
		free(p); /* the budget counts what was allocated, never what is given back */
}

/* An unknown field numbered 0, which no encoder writes: protobuf-c takes it when its tag is
 * written in more than one byte (80 00) but packs it back as the one-byte tag 00, which it
 * refuses, so a message holding one could not be encoded again (found by fuzz_frame). */
static bool unknown_field_zero(const ProtobufCMessage *m, struct mp_decode_error *err)
{
	for (unsigned u = 0; u < m->n_unknown_fields; u++) {
		if (m->unknown_fields[u].tag == 0) {
			snprintf(err->detail, sizeof(err->detail), "field number 0 in %s",
				 m->descriptor->short_name);
			return true;
		}
	}
	return false;
}

/* What refuses a decoded message, at any depth: an unknown field numbered 0 (UNPARSABLE) or a
 * repeated field above its limit (TOO_MANY); MP_DECODE_OK if nothing does. */
static enum mp_decode_result refusal(const ProtobufCMessage *m, struct mp_decode_error *err)
{
	if (unknown_field_zero(m, err))
		return MP_DECODE_UNPARSABLE;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue; /* another member of the oneof shares this memory */
		bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
		size_t n = repeated ? *(const size_t *)(base + f->quantifier_offset) : 1;
		if (repeated && n > mp_decode_max_items(d, f)) {
			snprintf(err->detail, sizeof(err->detail),
				 "%zu items in %s.%s, at most %zu", n, d->short_name, f->name,
				 mp_decode_max_items(d, f));
			return MP_DECODE_TOO_MANY;
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		ProtobufCMessage *const *items =
		    repeated ? *(ProtobufCMessage *const *const *)(base + f->offset)
			     : (ProtobufCMessage *const *)(base + f->offset);
		for (size_t k = 0; k < n; k++) {
			enum mp_decode_result code =
			    items[k] ? refusal(items[k], err) : MP_DECODE_OK;
			if (code != MP_DECODE_OK)
				return code;
		}
	}
	return MP_DECODE_OK;
}

static ProtobufCMessage *decode(struct budget *b, const ProtobufCMessageDescriptor *desc,
				const uint8_t *data, size_t len, struct mp_decode_error *err,
				size_t *used)
{
	ProtobufCAllocator alloc = {budget_alloc, budget_free, b};
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &alloc, len, data);
	if (used)
		*used = b->used;
	err->code = MP_DECODE_OK;
	err->detail[0] = '\0';
	if (!m && b->exhausted) {
		err->code = MP_DECODE_OVER_BUDGET;
		snprintf(err->detail, sizeof(err->detail),
			 "decoded size above the budget of %zu bytes for a %zu-byte %s", b->limit,
			 len, desc->short_name);
		return NULL;
	}
	if (!m) {
		err->code = MP_DECODE_UNPARSABLE;
		snprintf(err->detail, sizeof(err->detail), "unparsable %s (%zu bytes)",
			 desc->short_name, len);
		return NULL;
	}
	enum mp_decode_result code = refusal(m, err);
	if (code != MP_DECODE_OK) {
		err->code = code;
		protobuf_c_message_free_unpacked(m, &alloc);
		return NULL;
	}
	return m;
}

ProtobufCMessage *mp_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			    struct mp_decode_error *err, size_t *used)
{
	struct budget b = {0, mp_decode_budget(len), false, NULL, 0};
	return decode(&b, desc, data, len, err, used);
}

bool mp_decode_arena_init(struct mp_decode_arena *a, size_t cap)
{
	*a = (struct mp_decode_arena){.buf = malloc(cap), .cap = cap};
	if (!a->buf)
		a->cap = 0;
	else
		ARENA_POISON(a->buf, cap);
	return a->buf != NULL;
}

void mp_decode_arena_fini(struct mp_decode_arena *a)
{
	if (a->buf)
		ARENA_UNPOISON(a->buf, a->cap);
	free(a->buf);
	*a = (struct mp_decode_arena){0};
}

/* A decode while the arena is taken (nested) is made on the heap, its allocations counted. */
ProtobufCMessage *mp_decode_in(struct mp_decode_arena *a, const ProtobufCMessageDescriptor *desc,
			       const uint8_t *data, size_t len, struct mp_decode_error *err,
			       size_t *used)
{
	if (!a || !a->buf || a->taken) {
		struct budget heap = {0, mp_decode_budget(len), false, NULL, 0};
		ProtobufCMessage *m = decode(&heap, desc, data, len, err, used);
		if (a)
			a->heap_allocs += heap.allocs;
		return m;
	}
	a->used = 0;
	a->spilled = 0;
	struct budget b = {0, mp_decode_budget(len), false, a, 0};
	ProtobufCMessage *m = decode(&b, desc, data, len, err, used);
	a->taken = m != NULL;
	a->message = m;
	if (!m)
		arena_reset(a);
	return m;
}

void mp_decode_release(struct mp_decode_arena *a, ProtobufCMessage *m)
{
	if (!m)
		return;
	if (!a || !a->taken || a->message != m) { /* decoded on the heap */
		protobuf_c_message_free_unpacked(m, NULL);
		return;
	}
	if (a->spilled) { /* only what went to malloc is freed; the arena's pieces stay */
		struct budget b = {0, 0, false, a, 0};
		ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
		protobuf_c_message_free_unpacked(m, &alloc);
	}
	arena_reset(a);
}
