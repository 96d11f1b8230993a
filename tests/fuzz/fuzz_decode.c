/* The bounded decoder (common/decode.h) for every message an Envelope can carry: the first
 * byte picks one of the Envelope's message fields, the rest is decoded as that message under
 * the decoded-size budget and the repeated-field limits. What decodes must respect them: no
 * repeated field above its protocol limit, and the bytes charged within the budget. */
#include <stdlib.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *desc = pick(data[0]);
	struct mp_decode_error err;
	size_t used = 0;
	ProtobufCMessage *m = mp_decode(desc, data + 1, size - 1, &err, &used);
	if (!m)
		return 0;
	if (used > mp_decode_budget(size - 1))
		abort(); /* decoded beyond the budget */
	check_limits(m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
