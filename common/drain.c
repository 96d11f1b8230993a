#include "drain.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

#define DRAIN_POLL_MS  50
#define DRAIN_GRACE_MS 200 /* for answers just queued on the admin socket */

struct mp_drain {
	struct event_base *base;
	const struct mp_drain_hooks *hooks;
	void *ctx;
	unsigned timeout_s;
	struct event *sigterm, *sigint, *poll;
	bool active, timed_out, done;
	uint64_t started_ms;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void finish(struct mp_drain *d)
{
	d->done = true;
	event_del(d->poll);
	struct timeval grace = {0, DRAIN_GRACE_MS * 1000};
	event_base_loopexit(d->base, &grace);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct mp_drain *d = arg;
	char left[256] = "";
	if (d->done)
		return;
	if (d->hooks->idle(d->ctx, left, sizeof(left))) {
		log_info("drain: done in %llu ms; exiting",
			 (unsigned long long)(now_ms() - d->started_ms));
		finish(d);
		return;
	}
	if (now_ms() - d->started_ms >= (uint64_t)d->timeout_s * 1000) {
		d->timed_out = true;
		log_warn("drain: not done after drain_timeout %u s, exiting anyway; left: %s",
			 d->timeout_s, left);
		finish(d);
	}
}

void mp_drain_start(struct mp_drain *d, const char *why)
{
	if (d->active) {
		log_info("drain: %s while already stopping; still draining (deadline %u s)", why,
			 d->timeout_s);
		return;
	}
	d->active = true;
	d->started_ms = now_ms();
	log_info("drain: %s: stopping gracefully (at most %u s)", why, d->timeout_s);
	int rc = sd_notifyf(0, "STOPPING=1\nSTATUS=stopping (%s)", why);
	if (rc < 0)
		log_warn("sd_notify: cannot send STOPPING=1: %s", strerror(-rc));
	d->hooks->begin(d->ctx);
	struct timeval tv = {0, DRAIN_POLL_MS * 1000};
	if (event_add(d->poll, &tv) != 0) {
		log_err("drain: cannot arm the drain timer; exiting now");
		finish(d);
		return;
	}
	on_poll(-1, 0, d); /* perhaps nothing was in flight */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	char why[32];
	snprintf(why, sizeof(why), "signal %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	mp_drain_start(arg, why);
}

struct mp_drain *mp_drain_new(struct event_base *base, const struct mp_drain_hooks *hooks,
			      void *ctx, unsigned timeout_s)
{
	struct mp_drain *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->base = base;
	d->hooks = hooks;
	d->ctx = ctx;
	d->timeout_s = timeout_s;
	d->sigterm = evsignal_new(base, SIGTERM, on_signal, d);
	d->sigint = evsignal_new(base, SIGINT, on_signal, d);
	d->poll = event_new(base, -1, EV_PERSIST, on_poll, d);
	if (!d->sigterm || !d->sigint || !d->poll || event_add(d->sigterm, NULL) != 0 ||
	    event_add(d->sigint, NULL) != 0) {
		log_err("drain: cannot watch SIGTERM and SIGINT");
		mp_drain_free(d);
		return NULL;
	}
	return d;
}

bool mp_drain_active(const struct mp_drain *d)
{
	return d && d->active;
}

bool mp_drain_timed_out(const struct mp_drain *d)
{
	return d && d->timed_out;
}

void mp_drain_free(struct mp_drain *d)
{
	if (!d)
		return;
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->sigint)
		event_free(d->sigint);
	if (d->poll)
		event_free(d->poll);
	free(d);
}
