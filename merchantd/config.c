#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_doc.h"
#include "clock_guard.h"
#include "service.h"
#include "proto_limits.h"
#include "merchant.h"

/* A string or boolean key. */
#define K(sec, name, type, field, req, help)                                                       \
	{                                                                                          \
		sec, name, type, offsetof(struct merchant_config, field), req, help, 0, 0          \
	}

/* A numeric key: never required, always with its accepted range (min .. max). */
#define N(sec, name, type, field, min, max, help)                                                  \
	{                                                                                          \
		sec, name, type, offsetof(struct merchant_config, field), false, help, min, max    \
	}

static const struct mp_cfg_key merchant_keys[] = {
    K("merchant", "id", MP_CFG_STRING, id_hex, true, "merchant_id, 32 hex digits"),
    K("merchant", "listen", MP_CFG_STRING, listen, true, "host:port for wallets"),
    K("merchant", "endpoint", MP_CFG_STRING, endpoint, false, "announced host:port"),
    K("merchant", "key_file", MP_CFG_STRING, key_file, true,
      "Ed25519 seed file (mode 0600) or a PKCS#11 URI (docs/keys.md)"),
    K("merchant", "store", MP_CFG_STRING, store, true, "SQLite file"),
    K("merchant", "broker", MP_CFG_STRING, broker, true, "brokerd host:port"),
    K("merchant", "broker_pk", MP_CFG_STRING, broker_pk_hex, true, "64 hex digits"),
    K("merchant", "currency", MP_CFG_STRING, currency, false, "ISO 4217, default EUR"),
    K("merchant", "catalogue", MP_CFG_STRING, catalogue, false,
      "the goods on sale: a catalogue file (docs/goods.md), re-read on reload; default none"),
    N("merchant", "key_deadline", MP_CFG_U64, key_deadline, 60, MP_DAYS(1),
      "seconds an Offer (key release, docs/goods.md) stays payable, default 600"),
    N("merchant", "max_jump", MP_CFG_U32, max_jump, 1, 1u << 20, "units, default 4096"),
    N("merchant", "max_bad_chain", MP_CFG_U32, max_bad_chain, 1, 1000, "per connection"),
    N("merchant", "pay_margin", MP_CFG_U64, pay_margin, 0, MP_DAYS(1), "seconds before pay_until"),
    N("merchant", "t_grace", MP_CFG_U64, t_grace, 0, MP_DAYS(31), "seconds"),
    N("merchant", "max_pay_window", MP_CFG_U64, max_pay_window, 1, MP_DAYS(366), "seconds"),
    N("merchant", "redeem_interval", MP_CFG_U32, redeem_interval, 0, MP_DAYS(7), "seconds, 0: off"),
    N("merchant", "dispute_poll", MP_CFG_U32, dispute_poll, 1, 86400,
      "seconds between asking the broker for disputes open against this merchant (answered "
      "with the offers' keys), default 30"),
    N("merchant", "commit_delay_us", MP_CFG_U32, commit_delay_us, 0, 999999,
      "microseconds a batch waits for more; default 0: commit at once when the store is idle"),
    N("merchant", "commit_max", MP_CFG_U32, commit_max, 1, 1000000, "payments per batch"),
    N("merchant", "t_dedupe", MP_CFG_U64, t_dedupe, 0, MP_DAYS(31),
      "seconds an accepted Pay stays in the journal at least, default 3600"),
    N("merchant", "outbox_retention", MP_CFG_U64, outbox_retention, 0, MP_DAYS(366),
      "seconds an answered Redeem is kept, default 604800"),
    N("merchant", "goods_retention", MP_CFG_U64, goods_retention, MP_DAYS(2), MP_DAYS(3660),
      "seconds old offers and finished purchases are kept, default 691200 (docs/goods.md)"),
    N("merchant", "compact_interval", MP_CFG_U32, compact_interval, 0, MP_DAYS(1),
      "seconds between store compactions, default 600; 0: only store.compact"),
    N("merchant", "idle_timeout", MP_CFG_U32, idle_timeout, 1, MP_DAYS(1), "seconds"),
    N("merchant", "handoff_timeout", MP_CFG_U32, handoff_timeout, 1, 600,
      "seconds to reach the holder and get its Handoff, default 10"),
    N("merchant", "handoff_workers", MP_CFG_U32, handoff_workers, 1, 64,
      "threads verifying received custody chains, default 1"),
    N("merchant", "worker_queue", MP_CFG_U32, worker_queue, 1, 4096,
      "jobs waiting for a worker thread (chain checks, signatures), default 64"),
    MP_NET_LIMIT_KEYS(struct merchant_config, limits, 4096,
		      "bytes, default 1 MiB; every catalogue chunk_size plus 4 KiB must fit"),
    N("broker", "connect_timeout", MP_CFG_U32, broker_connect_timeout, 1, 3600,
      "seconds to resolve, connect and finish the TLS handshake, default 10"),
    N("broker", "answer_timeout", MP_CFG_U32, broker_answer_timeout, 1, MP_DAYS(1),
      "seconds to wait for each answer, default 120"),
    N("broker", "reconnect_max", MP_CFG_U32, broker_reconnect_max, 1, MP_DAYS(1),
      "seconds, longest wait between connection attempts, default 60"),
    K("broker", "resolv_conf", MP_CFG_STRING, broker_resolv_conf, false,
      "resolver configuration file, default /etc/resolv.conf"),
    N("redeem", "max_claims", MP_CFG_U32, max_claims, 1, MP_MAX_CLAIMS_CEILING,
      "claims per Redeem (the broker may take up to 10000), default 2000"),
    N("redeem", "hash_budget", MP_CFG_U64, hash_budget, 1, (uint64_t)1 << 40,
      "hashes per Redeem, default 2^28"),
    N("redeem", "retry_max", MP_CFG_U32, redeem_retry_max, 1, MP_DAYS(1),
      "seconds, longest wait before a failed Redeem is retried, default 300"),
    N("redeem", "deadline_margin", MP_CFG_U64, deadline_margin, 60, MP_DAYS(2),
      "seconds before redeem_until when every unredeemed channel is redeemed on its own and "
      "counted at risk, default 21600"),
    N("merchant", "release_poll", MP_CFG_U32, release_poll, 1, MP_DAYS(1),
      "seconds between asking the broker for ForcedCloses of our epochs, default 30"),
    N("redeem", "deadline_check_interval", MP_CFG_U32, deadline_check, 1, 3600,
      "seconds between the checks for channels near redeem_until, default 60"),
    K("tls", "cert", MP_CFG_STRING, tls_cert, true, "PEM certificate, CN m-<id>"),
    K("tls", "key", MP_CFG_STRING, tls_key, true, "PEM private key"),
    K("tls", "ca", MP_CFG_STRING, tls_ca, true, "PEM CA certificate"),
    N("tls", "expiry_warning_days", MP_CFG_U32, tls_expiry_warning_days, 0, 3650,
      "days before the certificate's notAfter from which a warning is logged daily (0: "
      "never), default 21"),
    K("admin", "socket", MP_CFG_STRING, admin_socket, true, "Unix socket path"),
    K("admin", "group", MP_CFG_STRING, admin_group, false,
      "group (name or gid) whose members may use the admin socket"),
    MP_SERVICE_KEYS(struct merchant_config, service),
    MP_METRICS_KEYS(struct merchant_config, metrics),
    MP_CLOCK_GUARD_KEYS(struct merchant_config, clock_guard),
    K("gateway", "listen", MP_CFG_STRING, gateway_listen, false,
      "host:port of the HTTP 402 gateway (docs/gateway.md); default none: off"),
    K("gateway", "upstream", MP_CFG_STRING, gateway_upstream, false,
      "host:port of the plain-HTTP service behind the gateway; required with listen"),
    K("gateway", "routes", MP_CFG_STRING, gateway_routes, false,
      "the price list: 'METHOD PATH PRICE' entries separated by ';' (PATH ending in * is a "
      "prefix, PRICE in minor units, 0: free); a path no route names is answered 404"),
    K("gateway", "tls_cert", MP_CFG_STRING, gateway_tls_cert, false,
      "PEM certificate chain: the gateway speaks HTTPS (TLS 1.3) with it; default none: plain "
      "HTTP"),
    K("gateway", "tls_key", MP_CFG_STRING, gateway_tls_key, false, "PEM private key of tls_cert"),
    N("gateway", "upstream_timeout", MP_CFG_U32, gateway_upstream_timeout, 1, 3600,
      "seconds to connect to the upstream, send and get its answer, default 30"),
    N("gateway", "read_timeout", MP_CFG_U32, gateway_read_timeout, 1, 3600,
      "seconds a client may take to send its request, default 30"),
    N("gateway", "max_body", MP_CFG_U64, gateway_max_body, 0, (uint64_t)1 << 30,
      "request body bytes, default 1 MiB (larger: 413)"),
    N("gateway", "max_response", MP_CFG_U64, gateway_max_response, 1, (uint64_t)1 << 30,
      "upstream answer body bytes, default 16 MiB (larger: 502, not charged)"),
    N("gateway", "max_pending", MP_CFG_U32, gateway_max_pending, 1, 65536,
      "requests waiting for the upstream or the group commit, default 256 (more: 503)"),
    N("gateway", "upstream_idle", MP_CFG_U32, gateway_upstream_idle, 0, 1024,
      "idle connections to the upstream kept open for the next requests (HTTP keep-alive), "
      "default 32; 0: a connection per request"),
    MP_CFG_END,
};

static bool broker_endpoint_valid(const struct merchant_config *cfg, const char *path, char *err,
				  size_t errlen)
{
	char host[256];
	uint16_t port;
	if (mp_split_endpoint(cfg->broker, host, sizeof(host), &port))
		return true;
	snprintf(err, errlen, "%s: [merchant] broker must be host:port, not '%s'", path,
		 cfg->broker);
	return false;
}

static void set_defaults(struct merchant_config *cfg)
{
	*cfg = (struct merchant_config){0};
	cfg->max_jump = 4096;
	cfg->max_bad_chain = 3;
	cfg->pay_margin = 300;
	cfg->t_grace = 24 * 3600;
	cfg->max_pay_window = 31 * 24 * 3600;
	cfg->redeem_interval = 60;
	cfg->dispute_poll = 30;
	cfg->release_poll = 30;
	cfg->commit_delay_us = 0;
	cfg->tls_expiry_warning_days = 21;
	cfg->commit_max = 256;
	cfg->t_dedupe = 3600;
	cfg->key_deadline = 600;
	cfg->outbox_retention = 7 * 24 * 3600;
	cfg->goods_retention = 8 * 24 * 3600;
	cfg->compact_interval = 600;
	cfg->idle_timeout = 300;
	cfg->handoff_timeout = 10;
	cfg->handoff_workers = 1;
	cfg->worker_queue = 64;
	mp_net_limits_default(&cfg->limits);
	mp_service_config_default(&cfg->service);
	cfg->broker_connect_timeout = 10;
	cfg->broker_answer_timeout = 120;
	cfg->broker_reconnect_max = 60;
	/* Below MAX_CLAIMS_PER_REDEEM (10,000, protocol.md section 11): a Redeem of 2,000
	 * plain claims costs the broker's PostgreSQL about 0.4 s of CPU (docs/performance.md
	 * "Settlement"), so it stays well inside brokerd's 10 s statement timeout on a loaded
	 * machine; a backlog goes in several Redeems of one round. */
	cfg->max_claims = 2000;
	cfg->hash_budget = (uint64_t)1 << 28; /* protocol.md section 11 */
	cfg->redeem_retry_max = 300;
	cfg->deadline_margin = 6 * 3600;
	cfg->deadline_check = 60;
	mp_clock_guard_config_default(&cfg->clock_guard);
	cfg->gateway_upstream_timeout = 30;
	cfg->gateway_read_timeout = 30;
	cfg->gateway_max_body = 1 << 20;
	cfg->gateway_max_response = 16 << 20;
	cfg->gateway_max_pending = 256;
	cfg->gateway_upstream_idle = 32;
}

static bool gateway_valid(const struct merchant_config *cfg, const char *path, char *err,
			  size_t errlen)
{
	if (!cfg->gateway_listen || cfg->gateway_upstream)
		return true;
	snprintf(err, errlen, "%s: [gateway] listen needs [gateway] upstream", path);
	return false;
}

bool merchant_config_load(struct merchant_config *cfg, const char *path, char *err, size_t errlen)
{
	set_defaults(cfg);
	if (!mp_config_load(path, merchant_keys, cfg, err, errlen))
		return false;
	if (!cfg->currency && !(cfg->currency = strdup("EUR"))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!cfg->endpoint && !(cfg->endpoint = strdup(cfg->listen))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	/* The ranges are declared with the keys; these are the relations between keys. */
	enum mp_log_level level;
	return mp_service_log_level(&cfg->service, path, &level, err, errlen) &&
	       broker_endpoint_valid(cfg, path, err, errlen) &&
	       mp_net_limits_check(&cfg->limits, path, err, errlen) &&
	       gateway_valid(cfg, path, err, errlen) &&
	       mp_net_idle_timeout_check(cfg->idle_timeout, path, "merchant", err, errlen);
}

void merchant_config_free(struct merchant_config *cfg)
{
	mp_config_free(merchant_keys, cfg);
}

/* Values the example configuration gives the required keys. */
static const struct mp_cfg_example merchant_examples[] = {
    {"merchant", "id", "00112233445566778899aabbccddeeff"},
    {"merchant", "listen", "0.0.0.0:7100"},
    {"merchant", "key_file", "/var/lib/micropay/merchant/merchant.key"},
    {"merchant", "store", "/var/lib/micropay/merchant/merchant.db"},
    {"merchant", "broker", "broker.example.net:7000"},
    {"merchant", "broker_pk", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
    {"tls", "cert", "/etc/micropay/tls/m-00112233445566778899aabbccddeeff.crt"},
    {"tls", "key", "/etc/micropay/tls/m-00112233445566778899aabbccddeeff.key"},
    {"tls", "ca", "/etc/micropay/tls/ca.crt"},
    {"admin", "socket", "/run/micropay/merchant.sock"},
    {NULL, NULL, NULL},
};

bool merchant_config_doc(FILE *out, enum mp_cfg_doc_format format)
{
	struct merchant_config defaults;
	set_defaults(&defaults);
	return mp_config_doc(out, format, "merchantd", merchant_keys, &defaults, merchant_examples);
}
