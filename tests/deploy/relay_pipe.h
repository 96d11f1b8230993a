/* One direction of a relayed TCP connection (mprelay.c): bytes read from `from` are held for a
 * delay, then written to `to`, in order and complete. A pipe may "lose" a chunk (what one read
 * returned, at most RELAY_CHUNK bytes): it is held for an extra retransmission stall, as a lost
 * segment is until TCP resends it, and arrives late but whole. It may also cut the connection:
 * the chunk and everything queued after it never arrive, both ends get a reset. Memory is
 * bounded: reading from `from` stops while queued plus unsent bytes reach the pipe's limit. */
#pragma once
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_CHUNK 16384

/* Fault settings of one direction; read when a chunk is queued, so a reload applies at once. */
struct relay_faults {
	uint32_t delay_ms;	/* every chunk */
	uint32_t loss_permille; /* a chunk is lost (stalled) with this probability */
	uint32_t stall_ms;     /* first stall of a loss; doubles per consecutive loss (TCP's RTO) */
	uint32_t cut_permille; /* the connection is cut at a chunk with this probability */
};

struct relay_stats {
	uint64_t bytes, chunks, lost, cuts;
};

struct relay_chunk;

/* Called once when the pipe wants the whole connection to end: cut (a fault), the source's
 * end of stream delivered, or an error on either side. */
typedef void (*relay_end_fn)(void *arg, bool cut, const char *why);

struct relay_pipe {
	struct bufferevent *from, *to;
	const struct relay_faults *faults;
	struct relay_stats *stats;
	uint64_t *rng; /* xorshift64 state, shared by the relay */
	size_t limit;  /* queued + unsent bytes before reading stops */
	size_t queued; /* bytes in chunks not yet written to `to` */
	struct relay_chunk *head, *tail;
	uint64_t last_due_us; /* chunks leave in order: none before the previous one's time */
	uint32_t stall_ms;    /* the next loss's stall (backoff) */
	bool eof;	      /* `from` ended: the connection ends after the queue is delivered */
	struct event *timer;
	relay_end_fn end;
	void *end_arg;
};

/* Sets up the pipe's timer; the caller routes `from`'s read and `to`'s write callbacks to
 * relay_pipe_readable / relay_pipe_drained. */
bool relay_pipe_init(struct relay_pipe *p, struct event_base *base, size_t limit);
void relay_pipe_free(struct relay_pipe *p);
/* `from` has data: queue it (with delay, loss, cut), or stop reading at the limit. */
void relay_pipe_readable(struct relay_pipe *p);
/* `to` wrote out its buffer: read again if reading was stopped. */
void relay_pipe_drained(struct relay_pipe *p);
/* `from` reached end of stream: end the connection once the queue is delivered. */
void relay_pipe_eof(struct relay_pipe *p);
/* A uniform draw in [0, 1000) from the relay's generator. */
uint32_t relay_permille(uint64_t *rng);
