#include "cert_expiry.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "tls.h"

#define CHECK_INTERVAL_S 86400

struct mp_cert_expiry {
	struct event *timer;
	char what[96];
	SSL_CTX *const *ctx;
	unsigned warn_days;
};

void mp_cert_expiry_check(struct mp_cert_expiry *w)
{
	if (!w)
		return;
	time_t not_after = (time_t)mp_tls_cert_not_after(w->ctx);
	if (not_after <= 0) {
		log_warn("%s: no certificate or no readable notAfter", w->what);
		return;
	}
	char at[32];
	struct tm tm;
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&not_after, &tm));
	time_t now = (time_t)mp_wall_clock_s(); /* OpenSSL checks validity against real time */
	if (not_after <= now) {
		log_err("%s expired at %s; peers refuse it: renew it and reload (SIGHUP)", w->what,
			at);
		return;
	}
	long long days = (long long)(not_after - now) / 86400;
	if (w->warn_days && (not_after - now) <= (time_t)w->warn_days * 86400)
		log_warn("%s expires in %lld days (at %s): renew it and reload (SIGHUP)", w->what,
			 days, at);
	else
		log_debug("%s valid until %s (%lld days)", w->what, at, days);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	mp_cert_expiry_check(arg);
}

struct mp_cert_expiry *mp_cert_expiry_new(struct event_base *base, const char *what,
					  SSL_CTX *const *ctx, unsigned warn_days)
{
	struct mp_cert_expiry *w = calloc(1, sizeof(*w));
	if (!w) {
		log_err("%s: cannot watch its expiry: out of memory", what);
		return NULL;
	}
	snprintf(w->what, sizeof(w->what), "%s", what);
	w->ctx = ctx;
	w->warn_days = warn_days;
	w->timer = event_new(base, -1, EV_PERSIST, on_timer, w);
	struct timeval daily = {CHECK_INTERVAL_S, 0};
	if (!w->timer || event_add(w->timer, &daily) != 0) {
		log_err("%s: cannot arm the daily expiry check", what);
		mp_cert_expiry_free(w);
		return NULL;
	}
	mp_cert_expiry_check(w);
	return w;
}

void mp_cert_expiry_free(struct mp_cert_expiry *w)
{
	if (!w)
		return;
	if (w->timer)
		event_free(w->timer);
	free(w);
}
