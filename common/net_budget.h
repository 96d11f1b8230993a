/* The read budget of a listener (every daemon has one TLS listener, so it bounds the daemon):
 * the bytes its connections may hold in partially read frames, all together. Without it each
 * of max_connections peers could make the daemon hold a whole maximal frame at once.
 *
 * A frame of at most NET_BUDGET_FREE_BYTES (with its length) is read without asking: every
 * request of an honest wallet is far smaller, so small-frame clients never wait. A larger frame
 * reserves its announced length from the budget once its header is read; reading from that
 * connection stops at NET_BUDGET_FREE_BYTES until the reservation is granted. Reservations are
 * granted in arrival order (first come, first served; nobody overtakes the first in line) while
 * they fit, or to the first in line when nothing is reserved (a single frame larger than the
 * budget still passes, alone). A waiting connection keeps its frame deadline: a peer that never
 * completes its frame is closed at frame_timeout, which frees its place.
 *
 *   (no large partial frame) --header of a large frame read--> fits and nobody waits? --yes-->
 *        ^      ^                                                     | no            RESERVED
 *        |      |                                                     v                  |
 *        |      +--------- closed, drained (frame_timeout...) ---- WAITING --granted--> -+
 *        +--------------------- frame taken, closed or drained ------------------------ RESERVED
 *
 * Memory held in partial frames is then at most max(read_budget, one frame) plus
 * NET_BUDGET_FREE_BYTES per connection. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct mp_conn;

#define NET_BUDGET_FREE_BYTES (64u << 10)

struct net_budget {
	uint64_t limit;	   /* bytes; 0: no budget */
	uint64_t reserved; /* bytes reserved by frames being read */
	uint64_t waits;	   /* times a connection had to wait (reads_paused_total) */
	struct mp_conn *first_waiting, *last_waiting;
};

/* The read high-water mark of c's input: what libevent reads before it stops. */
size_t net_read_high_water(const struct mp_conn *c);
/* After c's complete frames were taken: reserve for the large frame at the head of its input,
 * or wait in line for it. */
void net_budget_admit(struct mp_conn *c);
/* A frame was taken from c's input: its reservation (if any) is released, its place in line
 * (a frame that was whole when paused) given up. */
void net_budget_frame_taken(struct mp_conn *c);
/* c closes or drains (its input is discarded): leave the line, release the reservation. */
void net_budget_forget(struct mp_conn *c);
