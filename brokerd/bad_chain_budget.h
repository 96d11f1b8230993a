/* Per-merchant budget of hashes wasted on claims that end BAD_CHAIN: a token bucket per
 * merchant (rate hashes per second, at most burst), in a table of bounded size.
 *
 * A Redeem's whole hashing cost is reserved before any hashing; when its claims have been
 * verified the hashes of its BAD_CHAIN claims stay charged and the rest is returned. A
 * merchant whose bucket does not hold a Redeem's cost (or is not full, for a cost above the
 * burst) is refused, so junk costs at most burst + rate * time hashes however it is sent
 * (one at a time or many at once). Honest merchants never keep a charge. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct bad_chain_budget;

/* Merchants tracked at once by brokerd (merchants are created by the operator). */
#define BAD_CHAIN_BUDGET_SLOTS 4096

enum bad_chain_verdict {
	BAD_CHAIN_RESERVED,   /* go ahead and hash; settle afterwards */
	BAD_CHAIN_EXHAUSTED,  /* over budget: refuse, retry later */
	BAD_CHAIN_TABLE_FULL, /* no slot for another merchant: every slot owes or has a reservation
			       */
};

/* rate >= 1 hashes per second, burst >= 1 hashes, slots >= 1 merchants. NULL on failure. */
struct bad_chain_budget *bad_chain_budget_new(uint64_t rate, uint64_t burst, unsigned slots);
void bad_chain_budget_free(struct bad_chain_budget *bb);

/* Milliseconds of a monotonic clock, for now_ms below. */
uint64_t bad_chain_clock_ms(void);

/* Reserve cost hashes for merchant mid. A cost of 0 is always reserved (nothing to charge). */
enum bad_chain_verdict bad_chain_reserve(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN],
					 uint64_t cost, uint64_t now_ms);
/* The hashing of a reservation of `reserved` ended: `wasted` of them (on BAD_CHAIN claims)
 * stay charged, the rest returns to the bucket. */
void bad_chain_settle(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN], uint64_t reserved,
		      uint64_t wasted, uint64_t now_ms);

/* Tokens of mid's bucket now (burst for a merchant not in the table); for tests and logs. */
int64_t bad_chain_tokens(struct bad_chain_budget *bb, const uint8_t mid[MP_ID_LEN],
			 uint64_t now_ms);
