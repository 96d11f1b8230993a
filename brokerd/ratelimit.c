/* The table is set-associative: an address hashes (with a per-process random key, so peers
 * cannot aim at one set) to a set of WAYS entries; a new address takes a free entry or the one
 * seen longest ago. Evicting an entry forgets at most that its bucket was not full, so memory
 * stays fixed whatever the number of addresses; the cost is that a peer with very many
 * addresses can make others' buckets start full again. Tokens are kept in thousandths so the
 * refill needs no floating point. */
#include "ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

#define SETS  512
#define WAYS  8
#define MILLI 1000u

struct bucket {
	uint64_t key;	  /* IPv4 address, or the IPv6 /64 prefix */
	uint64_t seen_ms; /* last refill */
	uint64_t tokens;  /* thousandths of a token */
	uint8_t family;	  /* 0: free */
};

struct ratelimit {
	uint32_t rate, burst;
	uint64_t hash_key;
	uint32_t entries;
	struct bucket table[SETS][WAYS];
};

struct ratelimit *ratelimit_new(uint32_t rate, uint32_t burst)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->rate = rate ? rate : 1;
	rl->burst = burst ? burst : 1;
	if (!mp_random_bytes((uint8_t *)&rl->hash_key, sizeof(rl->hash_key))) {
		free(rl);
		return NULL;
	}
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	free(rl);
}

uint64_t ratelimit_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint32_t ratelimit_entries(const struct ratelimit *rl)
{
	return rl->entries;
}

uint32_t ratelimit_capacity(void)
{
	return SETS * WAYS;
}

/* The part of an address that names one customer; false for other families. */
static bool address_key(const struct sockaddr *sa, uint8_t *family, uint64_t *key)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		*family = AF_INET;
		*key = in->sin_addr.s_addr;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		*family = AF_INET6;
		memcpy(key, in6->sin6_addr.s6_addr, sizeof(*key)); /* the /64 */
		return true;
	}
	return false;
}

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static struct bucket *find_or_evict(struct ratelimit *rl, uint8_t family, uint64_t key,
				    uint64_t now_ms)
{
	struct bucket *set = rl->table[mix(key ^ rl->hash_key ^ family) % SETS];
	struct bucket *victim = &set[0];
	for (int i = 0; i < WAYS; i++) {
		struct bucket *b = &set[i];
		if (b->family == family && b->key == key)
			return b;
		if (victim->family && (!b->family || b->seen_ms < victim->seen_ms))
			victim = b;
	}
	if (!victim->family)
		rl->entries++;
	*victim = (struct bucket){key, now_ms, (uint64_t)rl->burst * MILLI, family};
	return victim;
}

bool ratelimit_take(struct ratelimit *rl, const struct sockaddr *addr, uint64_t now_ms)
{
	uint8_t family;
	uint64_t key;
	if (!address_key(addr, &family, &key))
		return true; /* not a network peer (e.g. a Unix socket): nothing to key on */
	struct bucket *b = find_or_evict(rl, family, key, now_ms);
	uint64_t full = (uint64_t)rl->burst * MILLI;
	uint64_t elapsed = now_ms > b->seen_ms ? now_ms - b->seen_ms : 0;
	uint64_t fill_ms = full * 60 / rl->rate; /* from empty to full: bounds the product below */
	if (elapsed >= fill_ms) {
		b->tokens = full;
		b->seen_ms = now_ms;
	} else {
		/* rate per minute = rate * 1000 / 60000 thousandths per ms; the time whose
		 * refill rounds away stays to be counted next time */
		uint64_t added = elapsed * rl->rate / 60;
		b->tokens = b->tokens + added < full ? b->tokens + added : full;
		b->seen_ms += added * 60 / rl->rate;
	}
	if (b->tokens < MILLI)
		return false;
	b->tokens -= MILLI;
	return true;
}
