#include "bad_chain_budget.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Buckets count thousandths of a hash, so that a refill of rate * milliseconds / 1000 loses
 * no fraction however often it runs. Costs are clamped here (a merchant owing this much waits
 * for ever anyway) and the arithmetic stays below 2^63 (rate <= 2^40, burst <= 2^50). */
#define MILLI	  1000
#define COST_CAP  ((uint64_t)1 << 51)
#define RATE_MAX  ((uint64_t)1 << 40)
#define BURST_MAX ((uint64_t)1 << 50)

struct bucket {
	uint8_t mid[MP_ID_LEN];
	bool used;
	int64_t milli;	   /* tokens * MILLI; negative: a debt */
	uint64_t reserved; /* by Redeems still being hashed */
	uint64_t stamp_ms; /* milli is as of this time */
};

struct bad_chain_budget {
	uint64_t rate, burst;
	unsigned slots;
	struct bucket *buckets;
};

struct bad_chain_budget *bad_chain_budget_new(uint64_t rate, uint64_t burst, unsigned slots)
{
	if (rate == 0 || rate > RATE_MAX || burst == 0 || burst > BURST_MAX || slots == 0)
		return NULL;
	struct bad_chain_budget *bb = calloc(1, sizeof(*bb));
	if (!bb || !(bb->buckets = calloc(slots, sizeof(*bb->buckets)))) {
		free(bb);
		return NULL;
	}
	bb->rate = rate;
	bb->burst = burst;
	bb->slots = slots;
	return bb;
}

void bad_chain_budget_free(struct bad_chain_budget *bb)
{
	if (!bb)
		return;
	free(bb->buckets);
	free(bb);
}

uint64_t bad_chain_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t full(const struct bad_chain_budget *bb)
{
	return (int64_t)(bb->burst * MILLI);
}

static void refill(const struct bad_chain_budget *bb, struct bucket *e, uint64_t now_ms)
{
	if (now_ms <= e->stamp_ms)
		return;
	uint64_t dt = now_ms - e->stamp_ms;
	e->stamp_ms = now_ms;
	if (e->milli >= full(bb))
		return;
	uint64_t missing = (uint64_t)(full(bb) - e->milli);
	if (dt >= missing / bb->rate + 1)
		e->milli = full(bb);
	else
		e->milli += (int64_t)(bb->rate * dt); /* rate per second = rate milli per ms */
	if (e->milli > full(bb))
		e->milli = full(bb);
}

static struct bucket *find(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN])
{
	for (unsigned i = 0; i < bb->slots; i++)
		if (bb->buckets[i].used && memcmp(bb->buckets[i].mid, mid, MP_ID_LEN) == 0)
			return &bb->buckets[i];
	return NULL;
}

/* A slot for a merchant not in the table: a free one, or one whose bucket is full again with
 * nothing reserved (forgetting it loses nothing: a new bucket starts full). */
static struct bucket *claim(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN],
			    uint64_t now_ms)
{
	struct bucket *e = NULL;
	for (unsigned i = 0; i < bb->slots && !e; i++) {
		struct bucket *c = &bb->buckets[i];
		if (c->used && c->reserved == 0)
			refill(bb, c, now_ms);
		if (!c->used || (c->reserved == 0 && c->milli >= full(bb)))
			e = c;
	}
	if (!e)
		return NULL;
	*e = (struct bucket){.used = true, .milli = full(bb), .stamp_ms = now_ms};
	memcpy(e->mid, mid, MP_ID_LEN);
	return e;
}

enum bad_chain_verdict bad_chain_reserve(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN],
					 uint64_t cost, uint64_t now_ms)
{
	if (cost == 0)
		return BAD_CHAIN_RESERVED;
	if (cost > COST_CAP)
		cost = COST_CAP;
	struct bucket *e = find(bb, mid);
	if (!e && !(e = claim(bb, mid, now_ms)))
		return BAD_CHAIN_TABLE_FULL;
	refill(bb, e, now_ms);
	uint64_t needed = cost < bb->burst ? cost : bb->burst;
	if (e->milli < (int64_t)(needed * MILLI))
		return BAD_CHAIN_EXHAUSTED;
	e->milli -= (int64_t)(cost * MILLI);
	e->reserved += cost;
	return BAD_CHAIN_RESERVED;
}

void bad_chain_settle(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN], uint64_t reserved,
		      uint64_t wasted, uint64_t now_ms)
{
	if (reserved > COST_CAP)
		reserved = COST_CAP;
	struct bucket *e = reserved ? find(bb, mid) : NULL;
	if (!e)
		return;
	refill(bb, e, now_ms);
	uint64_t back = wasted < reserved ? reserved - wasted : 0;
	e->reserved = e->reserved > reserved ? e->reserved - reserved : 0;
	e->milli += (int64_t)(back * MILLI);
	if (e->milli > full(bb))
		e->milli = full(bb);
}

int64_t bad_chain_tokens(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN], uint64_t now_ms)
{
	struct bucket *e = find(bb, mid);
	if (!e)
		return (int64_t)bb->burst;
	refill(bb, e, now_ms);
	return e->milli >= 0 ? e->milli / MILLI : -((-e->milli + MILLI - 1) / MILLI);
}
