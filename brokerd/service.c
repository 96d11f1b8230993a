/* brokerd as a systemd service (common/service.h, reload.h, drain.h): its STATUS= line, what a
 * reload re-reads (the TLS certificate, key and CA, the log level) and how it drains (no new
 * connection; each open one answers what it has in flight, then closes). */
#include <stdio.h>
#include <stdlib.h>

#include "broker.h"
#include "cert_expiry.h"
#include "drain.h"
#include "log.h"
#include "net.h"
#include "reload.h"
#include "tls.h"

static void broker_status_line(void *ctx, char *out, size_t len)
{
	struct broker *b = ctx;
	const struct broker_stats *s = &b->stats;
	unsigned reloads, reload_failures;
	mp_reload_counts(b->reload, &reloads, &reload_failures);
	snprintf(out, len,
		 "%s: %u connections, %llu channels issued, %llu redeems, %llu claims credited, "
		 "%llu requests refused, %u reloads (%u failed)",
		 mp_drain_active(b->drain) ? "stopping" : "serving",
		 mp_listener_connections(b->listener), (unsigned long long)s->channels_issued,
		 (unsigned long long)s->redeems, (unsigned long long)s->claims_credited,
		 (unsigned long long)s->requests_refused, reloads, reload_failures);
}

/* The configuration file again: a new server context for new connections, the log level.
 * Other keys take effect at the next start. */
static bool broker_reload(void *ctx, char *err, size_t errlen)
{
	struct broker *b = ctx;
	struct broker_config fresh;
	enum mp_log_level level;
	if (!broker_config_load(&fresh, b->config_path, err, errlen) ||
	    !mp_service_log_level(&fresh.service, b->config_path, &level, err, errlen)) {
		broker_config_free(&fresh);
		return false;
	}
	char tls_err[512];
	SSL_CTX *tls = mp_tls_server_ctx(fresh.tls_cert, fresh.tls_key, fresh.tls_ca,
					 MP_CLIENT_CERT_OPTIONAL, tls_err, sizeof(tls_err));
	if (!tls) {
		snprintf(err, errlen, "tls: %s", tls_err);
		broker_config_free(&fresh);
		return false;
	}
	mp_listener_set_ctx(b->listener, tls);
	SSL_CTX_free(b->tls); /* connections accepted with it hold their own reference */
	b->tls = tls;
	mp_log_set_level(level);
	log_info("reload: certificate %s, key %s, CA %s, log level %s", fresh.tls_cert,
		 fresh.tls_key, fresh.tls_ca, mp_log_level_name(level));
	broker_config_free(&fresh);
	mp_cert_expiry_check(b->cert_expiry);
	return true;
}

static void broker_drain_begin(void *ctx)
{
	struct broker *b = ctx;
	mp_listener_drain(b->listener, "brokerd is stopping");
}

static bool broker_drain_idle(void *ctx, char *left, size_t len)
{
	struct broker *b = ctx;
	unsigned open = mp_listener_connections(b->listener);
	snprintf(left, len, "%u connections with answers owed", open);
	return open == 0;
}

static const struct mp_drain_hooks broker_drain_hooks = {broker_drain_begin, broker_drain_idle};

bool broker_service_start(struct broker *b)
{
	b->service = mp_service_new(b->base, &b->cfg.service, broker_status_line, b);
	if (!b->service)
		return false;
	b->reload = mp_reload_new(b->base, b->service, broker_reload, b);
	b->drain = mp_drain_new(b->base, &broker_drain_hooks, b, b->cfg.service.drain_timeout);
	b->cert_expiry = mp_cert_expiry_new(b->base, "brokerd TLS certificate", &b->tls,
					    b->cfg.tls_expiry_warning_days);
	return b->reload && b->drain && b->cert_expiry;
}

void broker_service_stop(struct broker *b)
{
	mp_cert_expiry_free(b->cert_expiry);
	b->cert_expiry = NULL;
	mp_drain_free(b->drain);
	mp_reload_free(b->reload);
	mp_service_free(b->service);
	b->drain = NULL;
	b->reload = NULL;
	b->service = NULL;
}
