/* The frame decoder and the Envelope parser as a daemon's read path runs them: bytes from a
 * peer, cut into frames (be32 length, then an Envelope) with mp_frame_take under the wallet
 * frame limit, decoded into a decode arena as a listener does (decode.h). Every Envelope that
 * decodes must encode again and decode to the same bytes. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

/* Encoding a decoded Envelope gives bytes that decode, and encode to themselves. */
static void check_round_trip(const MpEnvelope *env)
{
	size_t len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *once = malloc(len ? len : 1);
	if (!once)
		return;
	micropay__v1__envelope__pack(env, once);
	struct mp_decode_error err;
	MpEnvelope *again = mp_envelope_decode(once, len, &err);
	if (!again && err.code == MP_DECODE_UNPARSABLE)
		abort(); /* our own encoding refused as unparsable */
	if (again) {
		size_t len2 = micropay__v1__envelope__get_packed_size(again);
		uint8_t *twice = malloc(len2 ? len2 : 1);
		if (twice) {
			micropay__v1__envelope__pack(again, twice);
			if (len2 != len || memcmp(once, twice, len) != 0)
				abort(); /* encoding is not stable */
			free(twice);
		}
		micropay__v1__envelope__free_unpacked(again, NULL);
	}
	free(once);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *in = evbuffer_new();
	struct mp_decode_arena arena;
	if (!mp_decode_arena_init(&arena, MP_DECODE_ARENA_SIZE)) {
		evbuffer_free(in);
		return 0;
	}
	if (!in || evbuffer_add(in, data, size) != 0) {
		evbuffer_free(in);
		mp_decode_arena_fini(&arena);
		return 0;
	}
	for (;;) {
		MpEnvelope *env = NULL;
		size_t len = 0;
		struct mp_decode_error err;
		enum mp_frame_result r =
		    mp_frame_take_in(in, MP_FRAME_MAX_WALLET, &arena, &env, &len, &err);
		if (r != MP_FRAME_OK)
			break;
		if (env) {
			check_round_trip(env);
			mp_decode_release(&arena, &env->base);
		}
		if (arena.taken)
			abort(); /* the arena was not given back */
	}
	evbuffer_free(in);
	mp_decode_arena_fini(&arena);
	return 0;
}
