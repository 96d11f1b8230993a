/* A delayed, lossy, bounded one-way pipe.
 *
 * A chunk's life:
 *   READ (from `from`) --cut drawn--> the connection ends (reset), nothing more is delivered
 *        --lost drawn--> QUEUED with due = now + delay + stall (stall doubles while losses
 *                        follow each other, and is reset by a chunk that is not lost)
 *        --otherwise--> QUEUED with due = now + delay
 *   QUEUED --due (and every chunk before it written)--> WRITTEN to `to`
 * due is never earlier than the previous chunk's: the stream stays in order. Reading stops
 * while queued + `to`'s unsent bytes reach the limit, and starts again when `to` drains. */
#include "relay_pipe.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define RELAY_STALL_MAX_MS 6400

struct relay_chunk {
	struct relay_chunk *next;
	uint64_t due_us;
	size_t len;
	unsigned char data[];
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint32_t relay_permille(uint64_t *rng)
{
	uint64_t x = *rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rng = x;
	return (uint32_t)(x % 1000u);
}

static void arm(struct relay_pipe *p)
{
	if (!p->head)
		return;
	uint64_t now = now_us();
	uint64_t wait = p->head->due_us > now ? p->head->due_us - now : 0;
	struct timeval tv = {.tv_sec = (time_t)(wait / 1000000u),
			     .tv_usec = (suseconds_t)(wait % 1000000u)};
	evtimer_add(p->timer, &tv);
}

static bool over_limit(const struct relay_pipe *p)
{
	return p->queued + evbuffer_get_length(bufferevent_get_output(p->to)) >= p->limit;
}

/* Writes every chunk that is due; ends the connection after the last one if `from` ended. */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct relay_pipe *p = arg;
	uint64_t now = now_us();
	while (p->head && p->head->due_us <= now) {
		struct relay_chunk *c = p->head;
		if (bufferevent_write(p->to, c->data, c->len) != 0) {
			p->end(p->end_arg, false, "write failed");
			return;
		}
		p->head = c->next;
		if (!p->head)
			p->tail = NULL;
		p->queued -= c->len;
		free(c);
	}
	if (p->head) {
		arm(p);
		return;
	}
	if (p->eof && evbuffer_get_length(bufferevent_get_output(p->to)) == 0)
		p->end(p->end_arg, false, "end of stream");
}

static uint64_t due_of(struct relay_pipe *p)
{
	const struct relay_faults *f = p->faults;
	uint64_t due = now_us() + (uint64_t)f->delay_ms * 1000u;
	if (f->loss_permille && relay_permille(p->rng) < f->loss_permille) {
		p->stats->lost++;
		due += (uint64_t)p->stall_ms * 1000u;
		p->stall_ms =
		    p->stall_ms * 2 > RELAY_STALL_MAX_MS ? RELAY_STALL_MAX_MS : p->stall_ms * 2;
	} else {
		p->stall_ms = f->stall_ms;
	}
	if (due < p->last_due_us)
		due = p->last_due_us;
	return p->last_due_us = due;
}

void relay_pipe_readable(struct relay_pipe *p)
{
	struct evbuffer *in = bufferevent_get_input(p->from);
	while (evbuffer_get_length(in) > 0) {
		if (over_limit(p)) {
			bufferevent_disable(p->from, EV_READ);
			return;
		}
		if (p->faults->cut_permille && relay_permille(p->rng) < p->faults->cut_permille) {
			p->stats->cuts++;
			p->end(p->end_arg, true, "cut (fault)");
			return;
		}
		size_t len = evbuffer_get_length(in);
		if (len > RELAY_CHUNK)
			len = RELAY_CHUNK;
		struct relay_chunk *c = malloc(sizeof(*c) + len);
		if (!c) {
			p->end(p->end_arg, false, "out of memory");
			return;
		}
		c->next = NULL;
		c->len = (size_t)evbuffer_remove(in, c->data, len);
		c->due_us = due_of(p);
		p->queued += c->len;
		p->stats->bytes += c->len;
		p->stats->chunks++;
		if (p->tail)
			p->tail->next = c;
		else
			p->head = c;
		p->tail = c;
		if (p->head == c)
			arm(p);
	}
}

void relay_pipe_drained(struct relay_pipe *p)
{
	if (p->eof && !p->head) {
		p->end(p->end_arg, false, "end of stream");
		return;
	}
	if (!p->eof && !over_limit(p)) {
		bufferevent_enable(p->from, EV_READ);
		relay_pipe_readable(p); /* bytes read before reading stopped */
	}
}

void relay_pipe_eof(struct relay_pipe *p)
{
	p->eof = true;
	if (!p->head && evbuffer_get_length(bufferevent_get_output(p->to)) == 0)
		p->end(p->end_arg, false, "end of stream");
}

bool relay_pipe_init(struct relay_pipe *p, struct event_base *base, size_t limit)
{
	p->limit = limit;
	p->stall_ms = p->faults->stall_ms;
	p->timer = evtimer_new(base, deliver, p);
	return p->timer != NULL;
}

void relay_pipe_free(struct relay_pipe *p)
{
	while (p->head) {
		struct relay_chunk *c = p->head;
		p->head = c->next;
		free(c);
	}
	p->tail = NULL;
	if (p->timer)
		event_free(p->timer);
	p->timer = NULL;
}
