#include "frame.h"

#include <event2/buffer.h>

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

enum mp_frame_result mp_frame_take(struct evbuffer *in, size_t max, MpEnvelope **env, size_t *len,
				   struct mp_decode_error *err)
{
	return mp_frame_take_in(in, max, NULL, env, len, err);
}

enum mp_frame_result mp_frame_take_in(struct evbuffer *in, size_t max,
				      struct mp_decode_arena *arena, MpEnvelope **env, size_t *len,
				      struct mp_decode_error *err)
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
	const uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(MP_FRAME_HEADER_LEN + n));
	if (!frame)
		return MP_FRAME_NOMEM;
	*env = (MpEnvelope *)mp_decode_in(arena, &micropay__v1__envelope__descriptor,
					  frame + MP_FRAME_HEADER_LEN, n, err, NULL);
	*len = n;
	evbuffer_drain(in, MP_FRAME_HEADER_LEN + n);
	return MP_FRAME_OK;
}

int mp_frame_push(struct evbuffer *out, const MpEnvelope *env, size_t max)
{
	size_t n = micropay__v1__envelope__get_packed_size(env);
	if (n == 0 || n > max) {
		log_err("frame: refusing to send a %zu-byte envelope (maximum %zu)", n, max);
		return -1;
	}
	/* Packed straight into the output buffer: no allocation per frame. */
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)(MP_FRAME_HEADER_LEN + n), &v, 1) != 1 ||
	    v.iov_len < MP_FRAME_HEADER_LEN + n) {
		log_err("frame: out of memory for a %zu-byte envelope", n);
		return -1;
	}
	uint8_t *buf = v.iov_base;
	mp_put_be32(buf, (uint32_t)n);
	micropay__v1__envelope__pack(env, buf + MP_FRAME_HEADER_LEN);
	v.iov_len = MP_FRAME_HEADER_LEN + n;
	return evbuffer_commit_space(out, &v, 1);
}

MpEnvelope *mp_envelope_decode(const uint8_t *body, size_t len, struct mp_decode_error *err)
{
	return (MpEnvelope *)mp_decode(&micropay__v1__envelope__descriptor, body, len, err, NULL);
}
