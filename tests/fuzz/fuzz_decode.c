/* The bounded decoder (common/decode.h) for every message an Envelope can carry: the first
 * byte picks one of the Envelope's message fields, the rest is decoded as that message under
 * the decoded-size budget and the repeated-field limits. What decodes must respect them: no
 * repeated field above its protocol limit, and the bytes charged within the budget. The same
 * input is decoded again into a decode arena (decode.h) of a size picked by the second byte
 * (from a few bytes, so that allocations spill to the heap, to the daemons' 64 KiB): the
 * arena must give the same verdict, charge the same bytes and decode to the same encoding. */
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "fuzz.h"
#include "proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static const ProtobufCMessageDescriptor *pick(uint8_t b)
{
	const ProtobufCMessageDescriptor *env = &micropay__v1__envelope__descriptor;
	unsigned messages = 0;
	for (unsigned i = 0; i < env->n_fields; i++)
		messages += env->fields[i].type == PROTOBUF_C_TYPE_MESSAGE;
	if (!messages)
		return env;
	unsigned want = b % (messages + 1), seen = 0;
	for (unsigned i = 0; i < env->n_fields; i++)
		if (env->fields[i].type == PROTOBUF_C_TYPE_MESSAGE && ++seen == want)
			return env->fields[i].descriptor;
	return env; /* want == 0: the Envelope itself */
}

/* Every repeated field of m, at any depth, within its limit. */
static void check_limits(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;
		size_t n = 1;
		const void *const *items = NULL;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			if (n > mp_decode_max_items(d, f))
				abort(); /* more items than the protocol allows */
			items = *(const void *const *const *)(base + f->offset);
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (!items) {
			const ProtobufCMessage *sub =
			    *(const ProtobufCMessage *const *)(base + f->offset);
			if (sub)
				check_limits(sub);
			continue;
		}
		for (size_t k = 0; k < n; k++)
			check_limits(items[k]);
	}
}

static bool same_encoding(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a);
	size_t lb = protobuf_c_message_get_packed_size(b);
	uint8_t *ea = malloc(la ? la : 1), *eb = malloc(lb ? lb : 1);
	if (!ea || !eb) {
		free(ea);
		free(eb);
		return true; /* out of memory: nothing to compare */
	}
	protobuf_c_message_pack(a, ea);
	protobuf_c_message_pack(b, eb);
	bool same = la == lb && memcmp(ea, eb, la) == 0;
	free(ea);
	free(eb);
	return same;
}

/* The arena decodes exactly as the heap does (m, err and used: the heap's results). */
static void check_arena(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			size_t cap, const ProtobufCMessage *m, const struct mp_decode_error *err,
			size_t used)
{
	struct mp_decode_arena a;
	if (!mp_decode_arena_init(&a, cap))
		return;
	struct mp_decode_error aerr;
	size_t aused = 0;
	ProtobufCMessage *am = mp_decode_in(&a, desc, data, len, &aerr, &aused);
	if (!am != !m || aerr.code != err->code || aused != used)
		abort(); /* another verdict or another charge than on the heap */
	if (am && !same_encoding(am, m))
		abort();
	if (am && !a.taken)
		abort();
	mp_decode_release(&a, am);
	if (a.taken || a.used || a.spilled)
		abort(); /* not given back */
	mp_decode_arena_fini(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const ProtobufCMessageDescriptor *desc = pick(data[0]);
	size_t cap = data[1] == 255 ? MP_DECODE_ARENA_SIZE : (size_t)data[1] * 16 + 1;
	struct mp_decode_error err;
	size_t used = 0;
	ProtobufCMessage *m = mp_decode(desc, data + 2, size - 2, &err, &used);
	check_arena(desc, data + 2, size - 2, cap, m, &err, used);
	if (!m)
		return 0;
	if (used > mp_decode_budget(size - 2))
		abort(); /* decoded beyond the budget */
	check_limits(m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
