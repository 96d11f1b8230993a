/* The daemon as a systemd service (Type=notify): READY=1 once serving, STATUS= with live
 * counters refreshed on a timer, WATCHDOG=1 at half of WATCHDOG_USEC when the unit sets
 * WatchdogSec=. Outside systemd (no NOTIFY_SOCKET) every notification is a no-op.
 * Reload (SIGHUP) is common/reload.h, the graceful stop (SIGTERM) common/drain.h.
 *
 * The [service] section every daemon accepts:
 *   log_level        error | warn | info | debug (default info; -v starts at debug); re-read
 *                    on reload
 *   drain_timeout    seconds a graceful stop may take before the daemon exits anyway (30)
 *   status_interval  seconds between STATUS= refreshes (10) */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

struct event_base;
struct mp_service;

struct mp_service_config {
	char *log_level;
	uint32_t drain_timeout;
	uint32_t status_interval;
};

#define MP_SERVICE_KEY(type, member, name, ctype, min, max, help)                                  \
	{                                                                                          \
		"service", #name, ctype, offsetof(type, member.name), false, help, min, max        \
	}
#define MP_SERVICE_KEYS(type, member)                                                              \
	MP_SERVICE_KEY(type, member, log_level, MP_CFG_STRING, 0, 0,                               \
		       "error, warn, info or debug"),                                              \
	    MP_SERVICE_KEY(type, member, drain_timeout, MP_CFG_U32, 1, 3600,                       \
			   "seconds a graceful stop may take, default 30"),                        \
	    MP_SERVICE_KEY(type, member, status_interval, MP_CFG_U32, 1, 3600,                     \
			   "seconds between STATUS= notifications, default 10")

void mp_service_config_default(struct mp_service_config *c);
/* The log level the section names (info when unset); false with "path: [service] ..." in err
 * for an unknown name. */
bool mp_service_log_level(const struct mp_service_config *c, const char *path,
			  enum mp_log_level *out, char *err, size_t errlen);

/* At start: the section's level, or debug when verbose (-v). False with err as above. */
bool mp_service_apply_log_level(const struct mp_service_config *c, const char *path, bool verbose,
				char *err, size_t errlen);

/* One line of live counters for STATUS= (e.g. "serving: 3 connections, 120 payments"). */
typedef void (*mp_service_status_fn)(void *ctx, char *out, size_t len);

/* Arms the STATUS= timer and, when systemd asks for it, the watchdog. NULL (logged) if a
 * timer cannot be created. */
struct mp_service *mp_service_new(struct event_base *base, const struct mp_service_config *cfg,
				  mp_service_status_fn status, void *ctx);
/* READY=1 with the current STATUS= line: listeners and storage are up. Also the end of a
 * reload (common/reload.c). */
void mp_service_ready(struct mp_service *s);
/* Send STATUS= now (also done every status_interval seconds). */
void mp_service_status(struct mp_service *s);
void mp_service_free(struct mp_service *s);
