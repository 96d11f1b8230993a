/* Many small frames pipelined on one TLS connection while their answers are read: the frames
 * are written as fast as the daemon takes them and every answer is counted, so the daemon's own
 * flow control (max_in_flight, output_high_water) paces the flood, not the client. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

struct flood_result {
	uint64_t sent;	   /* frames written */
	uint64_t answers;  /* frames read back */
	uint64_t same;	   /* answers byte for byte equal to the first one */
	MpEnvelope *first; /* the first answer decoded (the caller frees it), or NULL */
	double seconds;	   /* from the first write to the last answer */
};

/* Send `count` copies of frame (be32 length and body) on w and read answers until there are
 * `count` of them, the connection ends, or nothing moves for stall_ms. */
void flood_frames(struct wire *w, const uint8_t *frame, size_t len, uint64_t count, int stall_ms,
		  struct flood_result *r);

/* Write as much of data to each of the n connections as it takes without blocking, for ms
 * milliseconds: a connection whose peer stops reading keeps the rest. took[i] is what w[i]
 * took. */
void flood_fill(struct wire *w, int n, const uint8_t *data, size_t len, int ms, size_t *took);
