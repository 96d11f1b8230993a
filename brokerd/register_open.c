#include "register_open.h"

#include <stdlib.h>
#include <string.h>

#include "pb_peek.h"
#include "verify_job.h"

struct register_open {
	uint8_t pk[MP_PK_LEN];
	size_t key_offset;
	mp_opened_fn done;
	void *arg;
};

/* The number of the field at key_offset in messages of desc (0 if none). */
static uint32_t field_number(const ProtobufCMessageDescriptor *desc, size_t key_offset)
{
	for (unsigned i = 0; i < desc->n_fields; i++)
		if (desc->fields[i].offset == key_offset)
			return desc->fields[i].id;
	return 0;
}

static void on_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct register_open *ro = arg;
	if (code == MP_ST(OK)) {
		ProtobufCBinaryData parsed =
		    *(ProtobufCBinaryData *)((char *)body + ro->key_offset);
		if (!mp_bytes_len_is(parsed, MP_PK_LEN) ||
		    memcmp(parsed.data, ro->pk, MP_PK_LEN) != 0) {
			protobuf_c_message_free_unpacked(body, NULL);
			body = NULL;
			code = MP_ST(MALFORMED);
		}
	}
	mp_opened_fn done = ro->done;
	void *done_arg = ro->arg;
	free(ro);
	done(done_arg, code, body);
}

MpCode register_open_submit(struct broker *b, const MpSigned *s, enum mp_stmt_type type,
			    const ProtobufCMessageDescriptor *desc, size_t key_offset,
			    mp_opened_fn done, void *arg)
{
	const uint8_t *key;
	size_t len;
	if (!s ||
	    !mp_pb_peek_bytes(s->body.data, s->body.len, field_number(desc, key_offset), &key,
			      &len) ||
	    len != MP_PK_LEN)
		return MP_ST(MALFORMED);
	struct register_open *ro = malloc(sizeof(*ro));
	if (!ro) {
		b->stats.worker_queue_refusals++; /* refused like a full queue: retry later */
		return MP_ST(LIMIT);
	}
	*ro = (struct register_open){.key_offset = key_offset, .done = done, .arg = arg};
	memcpy(ro->pk, key, MP_PK_LEN);
	if (broker_verify_submit(b, s, type, ro->pk, desc, on_opened, ro))
		return MP_ST(OK);
	free(ro);
	return MP_ST(LIMIT);
}
