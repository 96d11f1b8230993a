/* The clock offset against the broker, and refusing to serve beyond its maximum (protocol.md
 * section 8: one clock at the broker; every daemon logs and exports its offset against broker
 * time; beyond the maximum offset, 30 s by default, it refuses to serve).
 *
 * merchantd and walletd learn the broker's time from the broker_time of its answers. Between
 * answers the guard carries the last one forward on a clock no one sets (CLOCK_BOOTTIME, which
 * also counts a suspended machine): the offset now is
 *     (broker_time + time elapsed since that answer arrived) - our protocol clock now,
 * so a jump of our own clock (a wall-clock step, or a test clock advanced) shows at once,
 * before the broker is asked again. The broker's answers carry whole seconds: the offset is
 * exact to about a second.
 *
 *   UNKNOWN --an answer with broker_time--> WITHIN or BEYOND
 *   WITHIN  --|offset| > max_offset (a later answer, or our clock moved)--> BEYOND: logged as
 *             an error, requests refused with the reason, the broker asked every
 *             MP_CLOCK_GUARD_RECHECK_S until an answer brings the offset back within
 *   BEYOND  --|offset| <= max_offset--> WITHIN: logged, served again
 * While UNKNOWN (no broker answer yet in this run) nothing is refused: there is nothing to
 * judge by; the guard asks the broker (probe) at its first check.
 *
 * The guard checks itself every MP_CLOCK_GUARD_RECHECK_S (a timer on the loop: the transitions
 * are logged even when nothing is asked of the daemon) and asks the owner to probe the broker
 * (a cheap idempotent request whose answer carries broker_time) while BEYOND or UNKNOWN, or when
 * no answer brought the broker's time for probe_interval seconds. Everything runs on the loop
 * thread. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

struct event_base;
struct mp_metrics;

#define MP_CLOCK_GUARD_RECHECK_S 5 /* seconds between checks (and probes while BEYOND) */

/* [clock] keys of merchantd and walletd (type: the config struct, member: a struct
 * mp_clock_guard_config in it). */
struct mp_clock_guard_config {
	uint64_t max_offset;	 /* seconds; protocol.md section 11: 30 */
	uint32_t probe_interval; /* seconds without broker_time after which the broker is asked */
};
#define MP_CLOCK_GUARD_KEYS(type, member)                                                          \
	{"clock",                                                                                  \
	 "max_offset",                                                                             \
	 MP_CFG_U64,                                                                               \
	 offsetof(type, member.max_offset),                                                        \
	 false,                                                                                    \
	 "seconds of clock offset against the broker beyond which this daemon refuses to serve, "  \
	 "default 30",                                                                             \
	 1,                                                                                        \
	 3600},                                                                                    \
	{                                                                                          \
		"clock", "probe_interval", MP_CFG_U32, offsetof(type, member.probe_interval),      \
		    false,                                                                         \
		    "seconds without an answer from the broker after which it is asked its time, " \
		    "default 300",                                                                 \
		    10, 86400                                                                      \
	}
void mp_clock_guard_config_default(struct mp_clock_guard_config *cfg);

/* Ask the broker something whose answer carries broker_time, and pass that to
 * mp_clock_guard_seen. Called on the loop; nothing to report back if it cannot be sent. */
typedef void (*mp_clock_probe_fn)(void *arg);

struct mp_clock_guard;

/* NULL on failure (out of memory, no timer). probe may be NULL (never asks). who names the
 * daemon in log lines and refusals ("merchantd", "walletd"). */
struct mp_clock_guard *mp_clock_guard_new(struct event_base *base, const struct mp_clock *clock,
					  const struct mp_clock_guard_config *cfg, const char *who,
					  mp_clock_probe_fn probe, void *probe_arg);
void mp_clock_guard_free(struct mp_clock_guard *g);

/* A broker answer carrying broker_time (0: none, ignored) arrived now. Logs the first offset
 * and each change of the measured offset; a transition back within is logged at once. */
void mp_clock_guard_seen(struct mp_clock_guard *g, uint64_t broker_time);

/* True when the daemon may serve. False beyond the maximum offset: why gets the reason
 * ("clock offset against the broker -60 s is beyond the maximum 30 s: ..."), the refusal is
 * counted, and the first refusal after a transition is logged (the rest are counted only). */
bool mp_clock_guard_serving(struct mp_clock_guard *g, char *why, size_t whylen);

/* Our own clock was moved (admin clock.advance): check now and ask the broker at once, without
 * waiting for the next check, so that a network whose clocks were all moved serves again
 * after one round trip. */
void mp_clock_guard_moved(struct mp_clock_guard *g);

/* False while beyond the maximum offset (nothing counted): for status lines. */
bool mp_clock_guard_within(struct mp_clock_guard *g);

/* {known, offset, max_offset, within, refused} for the daemons' status. */
json_t *mp_clock_guard_json(struct mp_clock_guard *g);

/* Series (prefix "micropay_merchant" or "micropay_wallet"):
 *   PREFIX_broker_clock_offset_seconds  gauge: the offset now (0 while unknown)
 *   PREFIX_broker_clock_known           gauge: 1 once a broker answer carried broker_time
 *   PREFIX_clock_within_limit           gauge: 1 while serving (unknown counts as within)
 *   PREFIX_clock_refusals_total         counter: requests refused for the clock */
void mp_clock_guard_metrics(struct mp_clock_guard *g, struct mp_metrics *reg, const char *prefix);

/* The offset the guard computes, exposed for tests: broker_time received when the boot clock
 * read seen_ms, carried forward to boot_ms and compared with our protocol clock now. */
int64_t mp_clock_offset_carried(uint64_t broker_time, uint64_t seen_ms, uint64_t boot_ms,
				uint64_t now);
/* CLOCK_BOOTTIME in milliseconds: no one sets it, and it counts suspended time. */
uint64_t mp_boottime_ms(void);
