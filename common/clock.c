#include "clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "admin.h"
#include "log.h"

void mp_clock_init(struct mp_clock *c, bool test_mode)
{
	c->test_mode = test_mode;
	atomic_init(&c->offset, 0);
	if (test_mode)
		log_warn("test clock enabled: clock.advance can move this daemon's time forward");
}

uint64_t mp_wall_clock_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec;
}

uint64_t mp_monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

uint64_t mp_clock_now(const struct mp_clock *c)
{
	return mp_wall_clock_s() + (uint64_t)atomic_load(&c->offset);
}

bool mp_clock_advance(struct mp_clock *c, int64_t seconds, char *err, size_t errlen)
{
	if (!c->test_mode) {
		snprintf(err, errlen, "not started with --test-clock");
		return false;
	}
	if (seconds < 1 || seconds > MP_CLOCK_MAX_ADVANCE) {
		snprintf(err, errlen, "seconds must be 1..%lld", MP_CLOCK_MAX_ADVANCE);
		return false;
	}
	int64_t offset = atomic_fetch_add(&c->offset, seconds) + seconds;
	log_warn("test clock advanced by %" PRId64 " s (offset now %" PRId64 " s)", seconds,
		 offset);
	return true;
}

static json_t *clock_json(const struct mp_clock *c)
{
	return json_pack("{s:b,s:I,s:I}", "test_clock", c->test_mode, "offset",
			 (json_int_t)atomic_load(&c->offset), "now", (json_int_t)mp_clock_now(c));
}

void mp_clock_admin_advance(struct mp_admin_req *req, json_t *params, struct mp_clock *c)
{
	uint64_t seconds = 0;
	if (!mp_admin_param_u64(req, params, "seconds", &seconds, true))
		return;
	char err[96];
	if (seconds > (uint64_t)MP_CLOCK_MAX_ADVANCE ||
	    !mp_clock_advance(c, (int64_t)seconds, err, sizeof(err))) {
		if (seconds > (uint64_t)MP_CLOCK_MAX_ADVANCE)
			snprintf(err, sizeof(err), "seconds must be 1..%lld", MP_CLOCK_MAX_ADVANCE);
		log_warn("admin clock.advance %" PRIu64 " refused: %s", seconds, err);
		mp_admin_fail(req, MP_ADMIN_FAILED, "clock.advance refused: %s", err);
		return;
	}
	mp_admin_reply(req, clock_json(c));
}

void mp_clock_admin_show(struct mp_admin_req *req, struct mp_clock *c)
{
	mp_admin_reply(req, clock_json(c));
}
