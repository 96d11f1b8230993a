/* Latency histogram: log-linear buckets (HIST_SUB per power of two, about 3% wide), so that
 * recording is one increment and any run length fits in fixed memory. */
#include "mpbench.h"

static unsigned bucket_of(uint64_t us)
{
	if (us < HIST_SUB)
		return (unsigned)us;
	unsigned top = 63u - (unsigned)__builtin_clzll(us); /* >= 5 */
	unsigned shift = top - 5u;
	unsigned sub = (unsigned)(us >> shift) & (HIST_SUB - 1);
	unsigned b = (shift + 1u) * HIST_SUB + sub;
	return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static double bucket_low(unsigned b)
{
	if (b < HIST_SUB)
		return (double)b;
	unsigned shift = b / HIST_SUB - 1u;
	unsigned sub = b % HIST_SUB;
	return (double)((uint64_t)(HIST_SUB + sub) << shift);
}

void hist_add(struct hist *h, uint64_t us)
{
	h->buckets[bucket_of(us)]++;
	h->count++;
}

double hist_quantile(const struct hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen > rank)
			return bucket_low(b);
	}
	return bucket_low(HIST_BUCKETS - 1);
}
