#include "clock_guard.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

struct mp_clock_guard {
	const struct mp_clock *clock;
	struct mp_clock_guard_config cfg;
	const char *who;
	mp_clock_probe_fn probe;
	void *probe_arg;
	struct event *timer;
	bool known;
	uint64_t broker_time; /* of the last answer carrying it */
	uint64_t seen_ms;     /* mp_boottime_ms() when it arrived */
	int64_t measured;     /* broker_time - our clock when it arrived */
	bool beyond;	      /* the state last logged */
	bool refusal_logged;  /* the first refusal since BEYOND was logged */
	uint64_t refused;
	uint64_t known_gauge; /* metrics: known as 0/1 */
};

void mp_clock_guard_config_default(struct mp_clock_guard_config *cfg)
{
	cfg->max_offset = 30;	   /* protocol.md section 11 */
	cfg->probe_interval = 300; /* the broker is asked this often when nothing else asks it */
}

uint64_t mp_boottime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t mp_clock_offset_carried(uint64_t broker_time, uint64_t seen_ms, uint64_t boot_ms,
				uint64_t now)
{
	uint64_t elapsed = boot_ms > seen_ms ? (boot_ms - seen_ms) / 1000 : 0;
	return (int64_t)(broker_time + elapsed - now);
}

static int64_t offset_now(const struct mp_clock_guard *g)
{
	if (!g->known)
		return 0;
	return mp_clock_offset_carried(g->broker_time, g->seen_ms, mp_boottime_ms(),
				       mp_clock_now(g->clock));
}

static bool beyond(const struct mp_clock_guard *g, int64_t offset)
{
	uint64_t size = offset < 0 ? (uint64_t)-offset : (uint64_t)offset;
	return g->known && size > g->cfg.max_offset;
}

/* The state now; a transition is logged once. */
static bool update(struct mp_clock_guard *g)
{
	int64_t offset = offset_now(g);
	bool now_beyond = beyond(g, offset);
	if (now_beyond && !g->beyond)
		log_err("clock offset against the broker is %" PRId64
			" s, beyond the maximum %" PRIu64
			" s (positive: the broker is ahead): %s refuses to serve until the clocks "
			"agree again; check this machine's time synchronisation",
			offset, g->cfg.max_offset, g->who);
	else if (!now_beyond && g->beyond)
		log_warn("clock offset against the broker is %" PRId64
			 " s again, within the maximum %" PRIu64 " s: %s serves again (%" PRIu64
			 " requests refused in all)",
			 offset, g->cfg.max_offset, g->who, g->refused);
	if (now_beyond != g->beyond)
		g->refusal_logged = false;
	g->beyond = now_beyond;
	return !now_beyond;
}

static bool probe_due(const struct mp_clock_guard *g)
{
	return !g->known || g->beyond ||
	       mp_boottime_ms() - g->seen_ms >= (uint64_t)g->cfg.probe_interval * 1000;
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
	struct mp_clock_guard *g = arg;
	update(g);
	if (g->probe && probe_due(g))
		g->probe(g->probe_arg);
	struct timeval tv = {MP_CLOCK_GUARD_RECHECK_S, 0};
	if (evtimer_add(g->timer, &tv) != 0)
		log_err("clock: cannot arm the offset check; checked only when a request comes");
}

struct mp_clock_guard *mp_clock_guard_new(struct event_base *base, const struct mp_clock *clock,
					  const struct mp_clock_guard_config *cfg, const char *who,
					  mp_clock_probe_fn probe, void *probe_arg)
{
	struct mp_clock_guard *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	*g = (struct mp_clock_guard){
	    .clock = clock, .cfg = *cfg, .who = who, .probe = probe, .probe_arg = probe_arg};
	g->timer = evtimer_new(base, on_check, g);
	struct timeval tv = {MP_CLOCK_GUARD_RECHECK_S, 0};
	if (!g->timer || evtimer_add(g->timer, &tv) != 0) {
		mp_clock_guard_free(g);
		return NULL;
	}
	return g;
}

void mp_clock_guard_free(struct mp_clock_guard *g)
{
	if (!g)
		return;
	if (g->timer)
		event_free(g->timer);
	free(g);
}

void mp_clock_guard_seen(struct mp_clock_guard *g, uint64_t broker_time)
{
	if (!g || !broker_time)
		return;
	int64_t v = (int64_t)(broker_time - mp_clock_now(g->clock));
	if (!g->known)
		log_info("clock offset against the broker: %" PRId64 " s", v);
	else if (v != g->measured)
		log_info("clock offset against the broker now %" PRId64 " s (was %" PRId64 " s)", v,
			 g->measured);
	g->known = true;
	g->known_gauge = 1;
	g->broker_time = broker_time;
	g->seen_ms = mp_boottime_ms();
	g->measured = v;
	update(g);
}

bool mp_clock_guard_serving(struct mp_clock_guard *g, char *why, size_t whylen)
{
	if (!g || update(g))
		return true;
	g->refused++;
	snprintf(why, whylen,
		 "clock offset against the broker %" PRId64 " s is beyond the maximum %" PRIu64
		 " s: %s does not serve until the clocks agree",
		 offset_now(g), g->cfg.max_offset, g->who);
	if (!g->refusal_logged)
		log_warn("refusing requests: %s (logged once; counted in clock_refusals_total)",
			 why);
	g->refusal_logged = true;
	return false;
}

void mp_clock_guard_moved(struct mp_clock_guard *g)
{
	if (!g)
		return;
	update(g);
	if (g->probe)
		g->probe(g->probe_arg);
}

bool mp_clock_guard_within(struct mp_clock_guard *g)
{
	return !g || update(g);
}

json_t *mp_clock_guard_json(struct mp_clock_guard *g)
{
	if (!g)
		return json_null();
	bool within = update(g);
	return json_pack("{s:b,s:I,s:I,s:b,s:I}", "known", g->known, "offset",
			 (json_int_t)offset_now(g), "max_offset", (json_int_t)g->cfg.max_offset,
			 "within", within, "refused", (json_int_t)g->refused);
}

static double offset_metric(const void *arg)
{
	return (double)offset_now(arg);
}

static double within_metric(const void *arg)
{
	const struct mp_clock_guard *g = arg;
	return beyond(g, offset_now(g)) ? 0 : 1;
}

void mp_clock_guard_metrics(struct mp_clock_guard *g, struct mp_metrics *reg, const char *prefix)
{
	char name[128];
	snprintf(name, sizeof(name), "%s_broker_clock_offset_seconds", prefix);
	mp_metrics_fn(reg, MP_METRIC_GAUGE, name,
		      "The clock offset against the broker now: broker_time of its last answer "
		      "plus the time elapsed since, minus our clock (positive: the broker is "
		      "ahead); 0 while unknown.",
		      NULL, offset_metric, g);
	snprintf(name, sizeof(name), "%s_broker_clock_known", prefix);
	mp_metrics_u64(reg, MP_METRIC_GAUGE, name,
		       "1 once a broker answer with broker_time arrived in this run, else 0.", NULL,
		       &g->known_gauge);
	snprintf(name, sizeof(name), "%s_clock_within_limit", prefix);
	mp_metrics_fn(reg, MP_METRIC_GAUGE, name,
		      "0 while the clock offset against the broker is beyond [clock] max_offset "
		      "and requests are refused, else 1.",
		      NULL, within_metric, g);
	snprintf(name, sizeof(name), "%s_clock_refusals_total", prefix);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name,
		       "Requests refused because the clock offset against the broker was beyond "
		       "[clock] max_offset.",
		       NULL, &g->refused);
}
