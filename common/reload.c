#include "reload.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "service.h"

struct mp_reload {
	struct mp_service *service;
	mp_reload_fn fn;
	void *ctx;
	struct event *sighup;
	unsigned done, failed;
};

static uint64_t monotonic_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

bool mp_reload_run(struct mp_reload *r, const char *trigger, char *err, size_t errlen)
{
	int rc = sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading (%s)",
			    (unsigned long long)monotonic_usec(), trigger);
	if (rc < 0)
		log_warn("sd_notify: cannot send RELOADING=1: %s", strerror(-rc));
	log_info("reload (%s): re-reading the configuration", trigger);
	bool ok = r->fn(r->ctx, err, errlen);
	if (ok) {
		r->done++;
		log_info("reload (%s): done", trigger);
	} else {
		r->failed++;
		log_err("reload (%s) failed, the previous settings stay in force: %s", trigger,
			err);
	}
	mp_service_ready(r->service);
	return ok;
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	char err[512];
	mp_reload_run(arg, "SIGHUP", err, sizeof(err));
}

struct mp_reload *mp_reload_new(struct event_base *base, struct mp_service *service,
				mp_reload_fn fn, void *ctx)
{
	struct mp_reload *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->service = service;
	r->fn = fn;
	r->ctx = ctx;
	r->sighup = evsignal_new(base, SIGHUP, on_sighup, r);
	if (!r->sighup || event_add(r->sighup, NULL) != 0) {
		log_err("reload: cannot watch SIGHUP");
		mp_reload_free(r);
		return NULL;
	}
	return r;
}

void mp_reload_counts(const struct mp_reload *r, unsigned *done, unsigned *failed)
{
	*done = r ? r->done : 0;
	*failed = r ? r->failed : 0;
}

void mp_reload_free(struct mp_reload *r)
{
	if (!r)
		return;
	if (r->sighup)
		event_free(r->sighup);
	free(r);
}
