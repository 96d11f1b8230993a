#include "decode.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto_limits.h"
#include "proto.h"

/* Every repeated field of proto/micropay.proto with the most items the protocol allows. */
struct item_limit {
	const ProtobufCMessageDescriptor *message;
	uint32_t field_id;
	size_t max;
};

static const struct item_limit item_limits[] = {
    {&micropay__v1__open_req__descriptor, 2, MP_MAX_SEGMENT_STMTS},	     /* segments */
    {&micropay__v1__redeem__descriptor, 3, MP_MAX_CLAIMS_CEILING},	     /* claims */
    {&micropay__v1__redeem_resp__descriptor, 2, MP_MAX_CLAIMS_CEILING},	     /* results */
    {&micropay__v1__claim__descriptor, 4, MP_MAX_CUSTODY},		     /* custody */
    {&micropay__v1__segment_claim__descriptor, 5, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__refund_request__descriptor, 6, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__handoff_resp__descriptor, 3, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__handoff_resp__descriptor, 4, MP_MAX_CUSTODY},	     /* merchant_certs */
    {&micropay__v1__claim__descriptor, 5, MP_MAX_SEGMENT_STMTS},	     /* segments */
    {&micropay__v1__handoff_resp__descriptor, 5, MP_MAX_SEGMENT_STMTS},	     /* segments */
    {&micropay__v1__transfer_resp__descriptor, 4, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__transfer_resp__descriptor, 5, MP_MAX_CUSTODY},	     /* merchant_certs */
    {&micropay__v1__transfer_resp__descriptor, 6, MP_MAX_SEGMENT_STMTS},     /* segments */
    {&micropay__v1__cap_notice_req__descriptor, 3, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__cap_notice_req__descriptor, 4, MP_MAX_SEGMENT_STMTS},    /* segments */
    {&micropay__v1__segment_claim_req__descriptor, 2, MP_MAX_SEGMENT_STMTS}, /* segments */
    {&micropay__v1__transfer_bundle__descriptor, 2, MP_MAX_SEGMENT_STMTS},   /* segments */
    {&micropay__v1__transfer_bundle__descriptor, 3, MP_MAX_CUSTODY},	     /* custody */
    {&micropay__v1__transfer_bundle__descriptor, 4, MP_MAX_CUSTODY},	     /* merchant_certs */
    {&micropay__v1__close_resp__descriptor, 3, MP_MAX_CUSTODY},		     /* custody */
    {&micropay__v1__close_resp__descriptor, 4, MP_MAX_CUSTODY},		     /* merchant_certs */
    {&micropay__v1__close_resp__descriptor, 5, MP_MAX_SEGMENT_STMTS},	     /* segments */
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
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	size_t cost = size + MP_DECODE_ALLOC_OVERHEAD;
	if (cost < size || cost > b->limit - b->used) {
		b->exhausted = true;
		return NULL;
	}
	b->used += cost;
	return malloc(size);
}

static void budget_free(void *data, void *p)
{
	free(p); /* the budget counts what was allocated, never what is given back */
}

/* The first repeated field above its limit, at any depth; false if none. */
static bool over_item_limit(const ProtobufCMessage *m, struct mp_decode_error *err)
{
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
			return true;
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		ProtobufCMessage *const *items =
		    repeated ? *(ProtobufCMessage *const *const *)(base + f->offset)
			     : (ProtobufCMessage *const *)(base + f->offset);
		for (size_t k = 0; k < n; k++)
			if (items[k] && over_item_limit(items[k], err))
				return true;
	}
	return false;
}

ProtobufCMessage *mp_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			    struct mp_decode_error *err, size_t *used)
{
	struct budget b = {0, mp_decode_budget(len), false};
	ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &alloc, len, data);
	if (used)
		*used = b.used;
	err->code = MP_DECODE_OK;
	err->detail[0] = '\0';
	if (!m && b.exhausted) {
		err->code = MP_DECODE_OVER_BUDGET;
		snprintf(err->detail, sizeof(err->detail),
			 "decoded size above the budget of %zu bytes for a %zu-byte %s", b.limit,
			 len, desc->short_name);
		return NULL;
	}
	if (!m) {
		err->code = MP_DECODE_UNPARSABLE;
		snprintf(err->detail, sizeof(err->detail), "unparsable %s (%zu bytes)",
			 desc->short_name, len);
		return NULL;
	}
	if (over_item_limit(m, err)) {
		err->code = MP_DECODE_TOO_MANY;
		protobuf_c_message_free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}
