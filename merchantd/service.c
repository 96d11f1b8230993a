/* merchantd as a systemd service (common/service.h, reload.h, drain.h): its TLS contexts (at
 * start and on reload), its STATUS= line and how it drains: no new connection, the open pay
 * batch committed at once, each open connection answered what it has in flight (so that every
 * payment acknowledged is durable and every payment in flight is acknowledged), then closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "gateway.h"
#include "catalogue_admin.h"
#include "cert_expiry.h"
#include "drain.h"
#include "log.h"
#include "merchant.h"
#include "net.h"
#include "reload.h"
#include "tls.h"

bool merchant_tls_load(const struct merchant *m, const struct merchant_config *cfg,
		       SSL_CTX **server, SSL_CTX **client, char *err, size_t errlen)
{
	*server = mp_tls_server_ctx(cfg->tls_cert, cfg->tls_key, cfg->tls_ca,
				    MP_CLIENT_CERT_OPTIONAL, err, errlen);
	*client = *server ? mp_tls_client_ctx(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, err, errlen)
			  : NULL;
	/* Wallets pay only a server whose certificate names the merchant they mean to pay. */
	char cn[64] = "", want[64], hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(m->mid, MP_ID_LEN, hex);
	snprintf(want, sizeof(want), "m-%s", hex);
	if (*client && (!mp_tls_own_cn(*server, cn, sizeof(cn)) || strcmp(cn, want) != 0))
		snprintf(err, errlen, "%s has CN '%s', must have CN %s (protocol.md section 3)",
			 cfg->tls_cert, cn, want);
	else if (*client)
		return true;
	if (*server)
		SSL_CTX_free(*server);
	if (*client)
		SSL_CTX_free(*client);
	*server = *client = NULL;
	return false;
}

static void merchant_status_line(void *ctx, char *out, size_t len)
{
	struct merchant *m = ctx;
	const struct merchant_stats *s = &m->stats;
	unsigned reloads, reload_failures;
	mp_reload_counts(m->reload, &reloads, &reload_failures);
	snprintf(
	    out, len,
	    "%s: %u connections, %zu channels, %llu payments accepted, %llu refused, "
	    "%llu batches committed, %llu claims credited, %u reloads (%u failed)",
	    mp_drain_active(m->drain)		    ? "stopping"
	    : mp_clock_guard_within(m->clock_guard) ? "serving"
						    : "refusing (clock offset against the broker)",
	    mp_listener_connections(m->listener), m->channels.count, (unsigned long long)s->pays_ok,
	    (unsigned long long)s->pays_refused, (unsigned long long)s->batches,
	    (unsigned long long)s->claims_credited, reloads, reload_failures);
}

/* The configuration file again: new TLS contexts (server for new wallet connections, client
 * for new connections to the broker and to other merchants), the log level, the catalogue
 * ([merchant] catalogue, catalogue_admin.h). Other keys take effect at the next start. Any
 * fault and nothing changes: the old contexts, level and catalogue stay. */
static bool merchant_reload(void *ctx, char *err, size_t errlen)
{
	struct merchant *m = ctx;
	struct merchant_config fresh;
	enum mp_log_level level;
	SSL_CTX *server, *client;
	if (!merchant_config_load(&fresh, m->config_path, err, errlen) ||
	    !mp_service_log_level(&fresh.service, m->config_path, &level, err, errlen) ||
	    !merchant_tls_load(m, &fresh, &server, &client, err, errlen)) {
		merchant_config_free(&fresh);
		return false;
	}
	struct catalogue *goods =
	    merchant_catalogue_prepare(fresh.catalogue, m->cfg.limits.max_frame, err, errlen);
	if (!goods) {
		SSL_CTX_free(server);
		SSL_CTX_free(client);
		merchant_config_free(&fresh);
		return false;
	}
	merchant_catalogue_adopt(m, goods);
	mp_listener_set_ctx(m->listener, server);
	/* Connections made with the old contexts hold their own references. */
	SSL_CTX_free(m->server_tls);
	SSL_CTX_free(m->client_tls);
	m->server_tls = server;
	m->client_tls = client;
	mp_log_set_level(level);
	log_info("reload: certificate %s, key %s, CA %s, log level %s", fresh.tls_cert,
		 fresh.tls_key, fresh.tls_ca, mp_log_level_name(level));
	merchant_config_free(&fresh);
	mp_cert_expiry_check(m->cert_expiry);
	return true;
}

static void merchant_drain_begin(void *ctx)
{
	struct merchant *m = ctx;
	mp_listener_drain(m->listener, "merchantd is stopping");
	gateway_drain(m); /* requests in flight finish: answered, committed */
	batch_flush(m); /* the open batch commits now rather than at its timer */
}

static bool merchant_drain_idle(void *ctx, char *left, size_t len)
{
	struct merchant *m = ctx;
	unsigned open = mp_listener_connections(m->listener);
	bool batch_idle = batch_is_idle(m);
	bool gateway = gateway_idle(m);
	snprintf(left, len, "%u connections with answers owed, group commit %s, gateway %s", open,
		 batch_idle ? "idle" : "not done", gateway ? "idle" : "with requests in flight");
	return open == 0 && batch_idle && gateway;
}

static const struct mp_drain_hooks merchant_drain_hooks = {merchant_drain_begin,
							   merchant_drain_idle};

bool merchant_service_start(struct merchant *m)
{
	m->service = mp_service_new(m->base, &m->cfg.service, merchant_status_line, m);
	if (!m->service)
		return false;
	m->reload = mp_reload_new(m->base, m->service, merchant_reload, m);
	m->drain = mp_drain_new(m->base, &merchant_drain_hooks, m, m->cfg.service.drain_timeout);
	m->cert_expiry = mp_cert_expiry_new(m->base, "merchantd TLS certificate", &m->server_tls,
					    m->cfg.tls_expiry_warning_days);
	return m->reload && m->drain && m->cert_expiry;
}

void merchant_service_stop(struct merchant *m)
{
	mp_cert_expiry_free(m->cert_expiry);
	m->cert_expiry = NULL;
	mp_drain_free(m->drain);
	mp_reload_free(m->reload);
	mp_service_free(m->service);
	m->drain = NULL;
	m->reload = NULL;
	m->service = NULL;
}
