/* brokerd/ratelimit.c: token buckets per address in a table of fixed size. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "../../brokerd/ratelimit.h"
#include "../check_run.h"

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
	ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6};
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

#define TAKE(rl, a, t) ratelimit_take(rl, (const struct sockaddr *)&(a), t)

START_TEST(burst_then_refill)
{
	struct ratelimit *rl = ratelimit_new(60, 3); /* one a second, bursts of 3 */
	struct sockaddr_in a = v4("192.0.2.1");
	uint64_t t = 1000000;
	for (int i = 0; i < 3; i++)
		ck_assert(TAKE(rl, a, t));
	ck_assert(!TAKE(rl, a, t));
	ck_assert(!TAKE(rl, a, t + 999));
	ck_assert(TAKE(rl, a, t + 1000)); /* one second: one token */
	ck_assert(!TAKE(rl, a, t + 1000));
	ck_assert(TAKE(rl, a, t + 60000)); /* a long pause refills at most the burst */
	ck_assert(TAKE(rl, a, t + 60000));
	ck_assert(TAKE(rl, a, t + 60000));
	ck_assert(!TAKE(rl, a, t + 60000));
	ratelimit_free(rl);
}
END_TEST

/* A peer asking every few milliseconds still refills at the configured rate (no refill
 * rounds away). */
START_TEST(slow_rate_refills_under_frequent_asks)
{
	struct ratelimit *rl = ratelimit_new(1, 1); /* one a minute */
	struct sockaddr_in a = v4("192.0.2.2");
	uint64_t t = 5000;
	ck_assert(TAKE(rl, a, t));
	int granted = 0;
	for (uint64_t now = t + 7; now < t + 60000; now += 7)
		granted += TAKE(rl, a, now);
	ck_assert_int_eq(granted, 0);
	ck_assert(TAKE(rl, a, t + 60010));
	ratelimit_free(rl);
}
END_TEST

START_TEST(addresses_are_independent_and_ipv6_counts_per_64)
{
	struct ratelimit *rl = ratelimit_new(1, 1);
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	ck_assert(TAKE(rl, a, 1));
	ck_assert(!TAKE(rl, a, 1));
	ck_assert(TAKE(rl, b, 1));
	struct sockaddr_in6 x1 = v6("2001:db8:1:2::1"), x2 = v6("2001:db8:1:2:ffff::9");
	struct sockaddr_in6 y = v6("2001:db8:1:3::1");
	ck_assert(TAKE(rl, x1, 1));
	ck_assert(!TAKE(rl, x2, 1)); /* same /64 */
	ck_assert(TAKE(rl, y, 1));
	ratelimit_free(rl);
}
END_TEST

/* However many addresses ask, the table keeps its size; an address pushed out starts with a
 * full bucket again, which is the documented cost. */
START_TEST(table_stays_bounded)
{
	struct ratelimit *rl = ratelimit_new(1, 1);
	for (uint32_t i = 0; i < 5 * ratelimit_capacity(); i++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(0x0a000000 + i)};
		ck_assert(TAKE(rl, a, 1000 + i));
		ck_assert_uint_le(ratelimit_entries(rl), ratelimit_capacity());
	}
	ck_assert_uint_eq(ratelimit_entries(rl), ratelimit_capacity());
	ratelimit_free(rl);
}
END_TEST

/* Eviction only when a set is full: an address just refused keeps its empty bucket while a
 * few others come and go. */
START_TEST(few_addresses_never_evict_each_other)
{
	struct ratelimit *rl = ratelimit_new(1, 1);
	struct sockaddr_in flood = v4("198.51.100.7");
	uint64_t t = 1000;
	ck_assert(TAKE(rl, flood, t));
	for (uint32_t i = 0; i < 7; i++) { /* fewer than a set holds, whatever the hashing */
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(0x0a000000 + i)};
		ck_assert(TAKE(rl, a, t));
	}
	ck_assert(!TAKE(rl, flood, t + 1));
	ratelimit_free(rl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("ratelimit");
	tcase_add_test(tc, burst_then_refill);
	tcase_add_test(tc, slow_rate_refills_under_frequent_asks);
	tcase_add_test(tc, addresses_are_independent_and_ipv6_counts_per_64);
	tcase_add_test(tc, table_stays_bounded);
	tcase_add_test(tc, few_addresses_never_evict_each_other);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
