/* walletd as a systemd service (common/service.h, reload.h, drain.h): its STATUS= line, what a
 * reload re-reads (the CA it checks brokers and merchants against, the log level) and how it
 * drains: no new network exchange (new admin requests that need one are refused "walletd is
 * stopping"), the exchanges in progress (a payment, an issue, a transfer) run to their answer,
 * which goes back to the admin caller, then the loop ends. */
#include <stdio.h>
#include <stdlib.h>

#include "drain.h"
#include "log.h"
#include "reload.h"
#include "tls.h"
#include "http_client.h"
#include "wallet.h"
#include "workers.h"

static unsigned ops_in_progress(const struct wallet *w)
{
	unsigned n = 0;
	for (const struct wallet_op *op = w->ops; op; op = op->next)
		n++;
	return n;
}

static void wallet_status_line(void *ctx, char *out, size_t len)
{
	struct wallet *w = ctx;
	const struct wallet_stats *s = &w->stats;
	unsigned reloads, reload_failures;
	mp_reload_counts(w->reload, &reloads, &reload_failures);
	snprintf(out, len,
		 "%s: %u channels, %u exchanges in progress, %llu payments sent, %llu units paid, "
		 "%llu refused, %llu channels issued, %u reloads (%u failed)",
		 mp_drain_active(w->drain) ? "stopping"
		 : mp_clock_guard_within(w->clock_guard)
		     ? "serving"
		     : "refusing to pay (clock offset against the broker)",
		 wallet_channel_count(w), ops_in_progress(w), (unsigned long long)s->pays_sent,
		 (unsigned long long)s->units_paid, (unsigned long long)s->pays_refused,
		 (unsigned long long)s->channels_issued, reloads, reload_failures);
}

/* The configuration file again: a new client context (the CA) for new connections, the log
 * level. Other keys take effect at the next start. */
static bool wallet_reload(void *ctx, char *err, size_t errlen)
{
	struct wallet *w = ctx;
	struct wallet_config fresh;
	enum mp_log_level level;
	if (!wallet_config_load(&fresh, w->config_path, err, errlen) ||
	    !mp_service_log_level(&fresh.service, w->config_path, &level, err, errlen)) {
		wallet_config_free(&fresh);
		return false;
	}
	char tls_err[512];
	SSL_CTX *tls = mp_tls_client_ctx(fresh.tls_ca, NULL, NULL, tls_err, sizeof(tls_err));
	if (!tls) {
		snprintf(err, errlen, "tls: %s", tls_err);
		wallet_config_free(&fresh);
		return false;
	}
	SSL_CTX_free(w->tls); /* connections made with it hold their own reference */
	w->tls = tls;
	mp_log_set_level(level);
	log_info("reload: CA %s, log level %s", fresh.tls_ca, mp_log_level_name(level));
	wallet_config_free(&fresh);
	return true;
}

static void wallet_drain_begin(void *ctx)
{
	struct wallet *w = ctx;
	w->stopping = true;
}

static bool wallet_drain_idle(void *ctx, char *left, size_t len)
{
	struct wallet *w = ctx;
	unsigned ops = ops_in_progress(w);
	unsigned jobs = mp_workers_busy(w->workers) + mp_workers_queued(w->workers);
	bool http = !mp_http_client_busy(w->http) && wallet_proxy_idle(w);
	snprintf(left, len, "%u network exchanges, %u verifications in progress%s", ops, jobs,
		 http ? "" : ", HTTP exchanges or proxied requests");
	return ops == 0 && jobs == 0 && http;
}

static const struct mp_drain_hooks wallet_drain_hooks = {wallet_drain_begin, wallet_drain_idle};

bool wallet_service_start(struct wallet *w)
{
	w->service = mp_service_new(w->base, &w->cfg.service, wallet_status_line, w);
	if (!w->service)
		return false;
	w->reload = mp_reload_new(w->base, w->service, wallet_reload, w);
	w->drain = mp_drain_new(w->base, &wallet_drain_hooks, w, w->cfg.service.drain_timeout);
	return w->reload && w->drain;
}

void wallet_service_stop(struct wallet *w)
{
	mp_drain_free(w->drain);
	mp_reload_free(w->reload);
	mp_service_free(w->service);
	w->drain = NULL;
	w->reload = NULL;
	w->service = NULL;
}
