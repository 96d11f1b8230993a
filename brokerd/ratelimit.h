/* Token buckets per peer address, in a table of fixed size: RegisterAccount creates a row in
 * the database for free, so each address (an IPv4 address, or an IPv6 /64, what one customer
 * line usually gets) may do it `rate` times a minute with bursts of `burst`. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct sockaddr;
struct ratelimit;

/* rate: tokens per minute (>= 1); burst: bucket size (>= 1). NULL if out of memory. */
struct ratelimit *ratelimit_new(uint32_t rate, uint32_t burst);
void ratelimit_free(struct ratelimit *rl);

/* Take a token for addr at now_ms (a monotonic clock); false if its bucket is empty. */
bool ratelimit_take(struct ratelimit *rl, const struct sockaddr *addr, uint64_t now_ms);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t ratelimit_now_ms(void);

/* Addresses the table holds now, and its size (for metrics). */
uint32_t ratelimit_entries(const struct ratelimit *rl);
uint32_t ratelimit_capacity(void);
