/* The MerchantCert renewal rule (common/cert_renewal.c) shared by brokerd and merchantd: a
 * default 90-day cert is renewed while it can still back the longest channel. */
#include <check.h>

#include "cert_renewal.h"
#include "../check_run.h"

#define DAY ((uint64_t)86400)

/* Can a cert valid until `valid_until` be holder0 of a 30-day channel issued at `now`? */
static bool backs_longest_channel(uint64_t valid_until, uint64_t now)
{
	return valid_until >= now + MP_LONGEST_PAY_UNTIL_S + MP_REDEEM_WINDOW_S + MP_T_GRACE_S;
}

/* The gap seen: renewal at a third (30 days) left, but a 30-day channel needs 33. Walk a cert
 * hour by hour through its life: whenever it can no longer back the longest channel, it is
 * already due (so merchantd asked at least a day earlier, checking every hour). */
START_TEST(a_90_day_cert_is_due_before_it_stops_backing_30_day_channels)
{
	uint64_t issued = 1700000000, valid_until = issued + 90 * DAY;
	uint64_t need = mp_cert_channel_need(MP_T_GRACE_S);
	ck_assert_uint_eq(need, 34 * DAY);
	for (uint64_t now = issued; now < valid_until; now += 3600) {
		if (!backs_longest_channel(valid_until, now))
			ck_assert_msg(
			    mp_cert_renewal_due(issued, valid_until, now - DAY + 1, need),
			    "day %llu: stops backing before renewal was due a day earlier",
			    (unsigned long long)((now - issued) / DAY));
	}
	/* Day 57 (33 days left): the old rule (a third) says not due; this rule says due. */
	ck_assert(mp_cert_renewal_due(issued, valid_until, issued + 57 * DAY, need));
	/* A fresh cert is not due, and stays so for 56 days. */
	ck_assert(!mp_cert_renewal_due(issued, valid_until, issued, need));
	ck_assert(!mp_cert_renewal_due(issued, valid_until, issued + 56 * DAY - 1, need));
	ck_assert(mp_cert_renewal_due(issued, valid_until, issued + 56 * DAY + 1, need));
}
END_TEST

/* A life too short to back the longest channel (tests use seconds): the need is capped at half
 * the life, so a fresh cert is never due at once; a third stays the floor. */
START_TEST(short_life_capped_at_half)
{
	uint64_t need = mp_cert_channel_need(MP_T_GRACE_S);
	ck_assert_uint_eq(mp_cert_renew_before(15, need), 7);
	ck_assert(!mp_cert_renewal_due(1000, 1015, 1000, need));
	ck_assert(!mp_cert_renewal_due(1000, 1015, 1008, need));
	ck_assert(mp_cert_renewal_due(1000, 1015, 1009, need));
	/* No need (0): a third. A long life: the third dominates the need. */
	ck_assert_uint_eq(mp_cert_renew_before(90 * DAY, 0), 30 * DAY);
	ck_assert_uint_eq(mp_cert_renew_before(365 * DAY, need), 365 * DAY / 3);
	/* Expired, or a nonsensical life: due. */
	ck_assert(mp_cert_renewal_due(1000, 1015, 1015, need));
	ck_assert(mp_cert_renewal_due(2000, 1015, 1000, need));
}
END_TEST

/* The broker's T_grace (configurable) moves the need; merchantd uses the protocol's 24 h. */
START_TEST(need_follows_t_grace)
{
	ck_assert_uint_eq(mp_cert_channel_need(0), 33 * DAY);
	ck_assert_uint_eq(mp_cert_channel_need(3 * DAY), 36 * DAY);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cert_renewal");
	TCase *tc = tcase_create("cert_renewal");
	tcase_add_test(tc, a_90_day_cert_is_due_before_it_stops_backing_30_day_channels);
	tcase_add_test(tc, short_life_capped_at_half);
	tcase_add_test(tc, need_follows_t_grace);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
