/* Frame codec: be32(length) || Envelope. The length is checked against the configured maximum
 * before any allocation; a zero length is refused (an Envelope always has a version). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "proto.h"

#define MP_FRAME_HEADER_LEN   4
#define MP_FRAME_MAX_WALLET   (1u << 20)
#define MP_FRAME_MAX_MERCHANT (16u << 20)

struct evbuffer;

enum mp_frame_result {
	MP_FRAME_NEED_MORE, /* not a whole frame yet */
	MP_FRAME_OK,
	MP_FRAME_EMPTY,	  /* length 0 */
	MP_FRAME_TOO_BIG, /* length above the maximum: refused before allocating */
	MP_FRAME_NOMEM,
};

const char *mp_frame_result_str(enum mp_frame_result r);

/* Look at avail bytes: decide whether a whole frame of at most max bytes is there. */
enum mp_frame_result mp_frame_peek(const uint8_t *buf, size_t avail, size_t max, uint32_t *len);

/* Decode the whole frame at the front of in (no copy), then remove it. On MP_FRAME_OK *env is
 * the Envelope, or NULL if decoding refused it (*err says why: unparsable, above the decoded
 * size budget, too many items; *len says how big the frame was). */
enum mp_frame_result mp_frame_take(struct evbuffer *in, size_t max, MpEnvelope **env, size_t *len,
				   struct mp_decode_error *err);
/* The same decoding into arena (common/decode.h; NULL: the heap): free *env with
 * mp_decode_release(arena, &(*env)->base). */
enum mp_frame_result mp_frame_take_in(struct evbuffer *in, size_t max,
				      struct mp_decode_arena *arena, MpEnvelope **env, size_t *len,
				      struct mp_decode_error *err);

/* Append be32(len) || packed envelope to out. Returns 0, or -1 (logged) on failure. */
int mp_frame_push(struct evbuffer *out, const MpEnvelope *env, size_t max);

/* Parse an Envelope body within the decoding bounds of common/decode.h; NULL with *err filled
 * if refused. Free with micropay__v1__envelope__free_unpacked(env, NULL). */
MpEnvelope *mp_envelope_decode(const uint8_t *body, size_t len, struct mp_decode_error *err);
