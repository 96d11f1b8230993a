/* The listener's read budget: reservations for large frames and the line of connections
 * waiting for one (the state diagram is in net_budget.h). */
#include "net_budget.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frame.h"
#include "log.h"
#include "net_internal.h"
#include "util.h"

static struct net_budget *budget_of(const struct mp_conn *c)
{
	return c->listener && c->listener->budget.limit ? &c->listener->budget : NULL;
}

size_t net_read_high_water(const struct mp_conn *c)
{
	size_t whole = MP_FRAME_HEADER_LEN + c->opts.max_frame;
	if (!budget_of(c))
		return whole;
	size_t allowed = NET_BUDGET_FREE_BYTES;
	if (c->budget_held && MP_FRAME_HEADER_LEN + c->budget_held > allowed)
		allowed = MP_FRAME_HEADER_LEN + c->budget_held;
	return allowed < whole ? allowed : whole;
}

static void set_high_water(struct mp_conn *c)
{
	if (c->bev)
		bufferevent_setwatermark(c->bev, EV_READ, 0, net_read_high_water(c));
}

static bool fits(const struct net_budget *b, uint64_t want)
{
	return b->reserved == 0 || b->reserved + want <= b->limit;
}

static void grant(struct net_budget *b, struct mp_conn *c, uint64_t want)
{
	c->budget_held = want;
	b->reserved += want;
	set_high_water(c); /* raising it resumes reading */
}

static void enqueue(struct net_budget *b, struct mp_conn *c, uint64_t want)
{
	c->budget_want = want;
	c->budget_waiting = true;
	c->wait_next = NULL;
	c->wait_prev = b->last_waiting;
	if (b->last_waiting)
		b->last_waiting->wait_next = c;
	else
		b->first_waiting = c;
	b->last_waiting = c;
	b->waits++;
	if (!c->logged_budget)
		log_info("%s %s: reading paused: a frame of %llu bytes waits for the read budget "
			 "(%llu of %llu bytes reserved; read_budget; logged once per connection)",
			 c->opts.name, c->peer, (unsigned long long)want,
			 (unsigned long long)b->reserved, (unsigned long long)b->limit);
	c->logged_budget = true;
}

static void dequeue(struct net_budget *b, struct mp_conn *c)
{
	if (c->wait_prev)
		c->wait_prev->wait_next = c->wait_next;
	else
		b->first_waiting = c->wait_next;
	if (c->wait_next)
		c->wait_next->wait_prev = c->wait_prev;
	else
		b->last_waiting = c->wait_prev;
	c->wait_prev = c->wait_next = NULL;
	c->budget_waiting = false;
}

/* Grant the line in order while the first in it fits. */
static void wake(struct net_budget *b)
{
	while (b->first_waiting && fits(b, b->first_waiting->budget_want)) {
		struct mp_conn *c = b->first_waiting;
		dequeue(b, c);
		grant(b, c, c->budget_want);
	}
}

void net_budget_admit(struct mp_conn *c)
{
	struct net_budget *b = budget_of(c);
	if (!b || c->budget_held || c->budget_waiting || c->closed || c->draining || !c->bev)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (evbuffer_get_length(in) < MP_FRAME_HEADER_LEN)
		return;
	uint8_t header[MP_FRAME_HEADER_LEN];
	evbuffer_copyout(in, header, sizeof(header));
	uint32_t n = mp_get_be32(header);
	if (n > c->opts.max_frame || MP_FRAME_HEADER_LEN + (size_t)n <= NET_BUDGET_FREE_BYTES ||
	    evbuffer_get_length(in) >= MP_FRAME_HEADER_LEN + (size_t)n)
		return; /* refused when taken, small enough to read without asking, or whole */
	if (!b->first_waiting && fits(b, n))
		grant(b, c, n);
	else
		enqueue(b, c, n);
}

static void release(struct net_budget *b, struct mp_conn *c)
{
	if (!c->budget_held)
		return;
	b->reserved -= c->budget_held;
	c->budget_held = 0;
	set_high_water(c);
	wake(b);
}

void net_budget_frame_taken(struct mp_conn *c)
{
	net_budget_forget(c);
}

void net_budget_forget(struct mp_conn *c)
{
	struct net_budget *b = budget_of(c);
	if (!b)
		return;
	if (c->budget_waiting)
		dequeue(b, c);
	release(b, c);
}
