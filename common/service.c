#include "service.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

struct mp_service {
	mp_service_status_fn status;
	void *ctx;
	struct event *status_timer;
	struct event *watchdog_timer; /* NULL unless WATCHDOG_USEC is set for this process */
};

void mp_service_config_default(struct mp_service_config *c)
{
	c->log_level = NULL;
	c->drain_timeout = 30;
	c->status_interval = 10;
}

bool mp_service_log_level(const struct mp_service_config *c, const char *path,
			  enum mp_log_level *out, char *err, size_t errlen)
{
	if (!c->log_level) {
		*out = MP_LOG_INFO;
		return true;
	}
	if (mp_log_level_parse(c->log_level, out))
		return true;
	snprintf(err, errlen, "%s: [service] log_level = %s: expected error, warn, info or debug",
		 path, c->log_level);
	return false;
}

bool mp_service_apply_log_level(const struct mp_service_config *c, const char *path, bool verbose,
				char *err, size_t errlen)
{
	enum mp_log_level level;
	if (!mp_service_log_level(c, path, &level, err, errlen))
		return false;
	mp_log_set_level(verbose ? MP_LOG_DEBUG : level);
	return true;
}

static void send_status(struct mp_service *s, const char *prefix)
{
	char line[512];
	s->status(s->ctx, line, sizeof(line));
	int rc = sd_notifyf(0, "%sSTATUS=%s", prefix, line);
	if (rc < 0)
		log_warn("sd_notify: cannot tell the service manager '%sSTATUS=%s': %s", prefix,
			 line, strerror(-rc));
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
	send_status(arg, "");
}

static void on_watchdog_timer(evutil_socket_t fd, short what, void *arg)
{
	int rc = sd_notify(0, "WATCHDOG=1");
	if (rc < 0)
		log_warn("sd_notify: cannot send WATCHDOG=1: %s", strerror(-rc));
}

static struct event *periodic(struct event_base *base, uint64_t usec, event_callback_fn fn,
			      void *arg)
{
	struct event *ev = event_new(base, -1, EV_PERSIST, fn, arg);
	struct timeval tv = {(time_t)(usec / 1000000), (suseconds_t)(usec % 1000000)};
	if (ev && event_add(ev, &tv) != 0) {
		event_free(ev);
		ev = NULL;
	}
	return ev;
}

struct mp_service *mp_service_new(struct event_base *base, const struct mp_service_config *cfg,
				  mp_service_status_fn status, void *ctx)
{
	struct mp_service *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->status = status;
	s->ctx = ctx;
	s->status_timer =
	    periodic(base, (uint64_t)cfg->status_interval * 1000000, on_status_timer, s);
	uint64_t watchdog_usec = 0;
	int wd = sd_watchdog_enabled(0, &watchdog_usec);
	if (wd > 0 && watchdog_usec >= 2) {
		s->watchdog_timer = periodic(base, watchdog_usec / 2, on_watchdog_timer, s);
		if (s->watchdog_timer)
			log_info("watchdog: pinging every %llu ms (WatchdogSec=%llu ms)",
				 (unsigned long long)(watchdog_usec / 2000),
				 (unsigned long long)(watchdog_usec / 1000));
	} else if (wd < 0) {
		log_warn("watchdog: WATCHDOG_USEC is malformed (%s); not pinging", strerror(-wd));
	}
	if (!s->status_timer || (wd > 0 && watchdog_usec >= 2 && !s->watchdog_timer)) {
		log_err("service: cannot arm the STATUS= or watchdog timer");
		mp_service_free(s);
		return NULL;
	}
	return s;
}

void mp_service_ready(struct mp_service *s)
{
	send_status(s, "READY=1\n");
}

void mp_service_status(struct mp_service *s)
{
	send_status(s, "");
}

void mp_service_free(struct mp_service *s)
{
	if (!s)
		return;
	if (s->status_timer)
		event_free(s->status_timer);
	if (s->watchdog_timer)
		event_free(s->watchdog_timer);
	free(s);
}
