/* The one clock every daemon reads: wall-clock seconds plus an offset.
 *
 * In production the offset is 0 and cannot move. A daemon started with --test-clock lets its
 * operator move the offset forward through the admin method `clock.advance seconds=N`, so that
 * tests and the demo can reach pay_until, redeem_until and finalisation without waiting days.
 * The offset lives in memory only: a restarted daemon starts again at offset 0 and the test
 * advances it again (`clock.show` reports the offset). Nothing else in the daemons reads the
 * wall clock for protocol time: log timestamps and rate limiters are not protocol time (rate
 * limiters use mp_monotonic_s, which no test clock moves).
 *
 * The offset is atomic: store threads and workers read the clock while the loop may advance it. */
#pragma once
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mp_admin_req;

struct mp_clock {
	bool test_mode;		/* started with --test-clock */
	_Atomic int64_t offset; /* seconds added to the wall clock; only moves forward */
};

#define MP_CLOCK_MAX_ADVANCE (10LL * 366 * 86400) /* one call moves at most ten years */

void mp_clock_init(struct mp_clock *c, bool test_mode);
/* Protocol time: wall-clock seconds since 1970-01-01 UTC plus the test offset. */
uint64_t mp_clock_now(const struct mp_clock *c);
/* Move a test clock forward by 1..MP_CLOCK_MAX_ADVANCE seconds; false (err filled) when the
 * daemon was not started with --test-clock or the amount is out of range. */
bool mp_clock_advance(struct mp_clock *c, int64_t seconds, char *err, size_t errlen);

/* Seconds of a clock no test moves and no one sets (CLOCK_MONOTONIC): for rate limiters. */
uint64_t mp_monotonic_s(void);
/* Wall-clock seconds with no offset: only for mp_clock itself, for test programs, which
 * compare against the real time of the machine, and for TLS certificate expiry warnings
 * (cert_expiry.c: OpenSSL checks a certificate's validity against the real time). */
uint64_t mp_wall_clock_s(void);

/* The admin methods every daemon offers over its clock:
 *   clock.advance {seconds}: refused (MP_ADMIN_FAILED, "not started with --test-clock") unless
 *     the daemon runs with --test-clock; answers {test_clock, offset, now};
 *   clock.show: {test_clock, offset, now}. */
void mp_clock_admin_advance(struct mp_admin_req *req, json_t *params, struct mp_clock *c);
void mp_clock_admin_show(struct mp_admin_req *req, struct mp_clock *c);
