#include "frame.h"

#include <event2/buffer.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

const char *mp_frame_result_str(enum mp_frame_result r)
{
	switch (r) {
	case MP_FRAME_NEED_MORE:
		return "incomplete frame";
	case MP_FRAME_OK:
		return "ok";
	case MP_FRAME_EMPTY:
		return "zero-length frame";
	case MP_FRAME_TOO_BIG:
		return "frame length above the maximum";
	case MP_FRAME_NOMEM:
		return "out of memory";
	}
	return "?";
}

enum mp_frame_result mp_frame_peek(const uint8_t *buf, size_t avail, size_t max, uint32_t *len)
{
	if (avail < MP_FRAME_HEADER_LEN)
		return MP_FRAME_NEED_MORE;
	uint32_t n = mp_get_be32(buf);
	if (n == 0)
		return MP_FRAME_EMPTY;
	if (n > max)
		return MP_FRAME_TOO_BIG;
	*len = n;
	if (avail - MP_FRAME_HEADER_LEN < n)
		return MP_FRAME_NEED_MORE;
	return MP_FRAME_OK;
}

enum mp_frame_result mp_frame_pull(struct evbuffer *in, size_t max, uint8_t **body, size_t *len)
{
	uint8_t header[MP_FRAME_HEADER_LEN];
	size_t avail = evbuffer_get_length(in);
	if (avail < MP_FRAME_HEADER_LEN)
		return MP_FRAME_NEED_MORE;
	evbuffer_copyout(in, header, sizeof(header));
	uint32_t n = 0;
	enum mp_frame_result r = mp_frame_peek(header, avail, max, &n);
	if (r != MP_FRAME_OK)
		return r;
	uint8_t *buf = malloc(n);
	if (!buf)
		return MP_FRAME_NOMEM;
	evbuffer_drain(in, MP_FRAME_HEADER_LEN);
	evbuffer_remove(in, buf, n);
	*body = buf;
	*len = n;
	return MP_FRAME_OK;
}

int mp_frame_push(struct evbuffer *out, const MpEnvelope *env, size_t max)
{
	size_t n = micropay__v1__envelope__get_packed_size(env);
	if (n == 0 || n > max) {
		log_err("frame: refusing to send a %zu-byte envelope (maximum %zu)", n, max);
		return -1;
	}
	uint8_t *buf = malloc(MP_FRAME_HEADER_LEN + n);
	if (!buf) {
		log_err("frame: out of memory for a %zu-byte envelope", n);
		return -1;
	}
	mp_put_be32(buf, (uint32_t)n);
	micropay__v1__envelope__pack(env, buf + MP_FRAME_HEADER_LEN);
	int rc = evbuffer_add(out, buf, MP_FRAME_HEADER_LEN + n);
	free(buf);
	return rc;
}

MpEnvelope *mp_envelope_decode(const uint8_t *body, size_t len)
{
	return micropay__v1__envelope__unpack(NULL, len, body);
}
