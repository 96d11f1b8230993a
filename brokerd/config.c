#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <stdlib.h>

#include "amount.h"
#include "broker.h"
#include "config.h"
#include "config_doc.h"
#include "frame.h"
#include "proto_limits.h"
#include "sealed_proof.h"
#include "service.h"

/* A string or boolean key. */
#define K(sec, name, type, field, req, help)                                                       \
	{                                                                                          \
		sec, name, type, offsetof(struct broker_config, field), req, help, 0, 0            \
	}

/* A numeric key: never required, always with its accepted range (min .. max). */
#define N(sec, name, type, field, min, max, help)                                                  \
	{                                                                                          \
		sec, name, type, offsetof(struct broker_config, field), false, help, min, max      \
	}

static const struct mp_cfg_key broker_keys[] = {
    K("broker", "listen", MP_CFG_STRING, listen, true, "host:port for wallets and merchants"),
    K("broker", "key_file", MP_CFG_STRING, key_file, true,
      "Ed25519 seed file (mode 0600) or a PKCS#11 URI (docs/keys.md)"),
    K("broker", "currency", MP_CFG_STRING, currency, false, "ISO 4217 code, default EUR"),
    N("broker", "max_unit_value", MP_CFG_U64, max_unit_value, 1, MP_AMOUNT_MAX, "minor units"),
    N("broker", "max_escrow", MP_CFG_U64, max_escrow, 1, (uint64_t)1 << 62,
      "minor units, at most 2^62"),
    N("broker", "n_max", MP_CFG_U32, n_max, 1, INT32_MAX, "longest chain, default 2^20"),
    N("broker", "max_claims_per_redeem", MP_CFG_U32, max_claims, 1, MP_MAX_CLAIMS_CEILING, NULL),
    N("broker", "redeem_hash_budget", MP_CFG_U64, hash_budget, 1, (uint64_t)1 << 40, NULL),
    N("broker", "bad_chain_hash_rate", MP_CFG_U64, bad_chain_hash_rate, 1, (uint64_t)1 << 40,
      "hashes per second a merchant may waste on BAD_CHAIN claims"),
    N("broker", "bad_chain_hash_burst", MP_CFG_U64, bad_chain_hash_burst, 1, (uint64_t)1 << 50,
      "hashes a merchant may waste at once"),
    N("broker", "workers", MP_CFG_U32, workers, 1, 64, "hashing threads, default 2"),
    N("broker", "worker_queue", MP_CFG_U32, worker_queue, 1, 4096,
      "jobs waiting for a worker thread, default 1024"),
    N("broker", "t_grace", MP_CFG_U64, t_grace, 0, MP_DAYS(31), "seconds"),
    N("broker", "max_clock_offset", MP_CFG_U64, max_offset, 1, 3600, "seconds"),
    N("broker", "sweep_interval", MP_CFG_U32, sweep_interval, 1, 3600,
      "seconds between settlement sweeps, default 60"),
    N("broker", "sweep_batch", MP_CFG_U32, sweep_batch, 1, 10000,
      "channels listed per sweep batch, default 100"),
    N("broker", "dispute_window", MP_CFG_U64, dispute_window, 1, MP_DAYS(31),
      "T_dispute: seconds after an Offer's deadline a Dispute is taken, default 86400"),
    N("broker", "dispute_answer", MP_CFG_U64, dispute_answer, 1, MP_DAYS(7),
      "seconds a merchant has to send a disputed Offer's key, default 3600"),
    N("broker", "release_wait", MP_CFG_U64, release_wait, 1, MP_DAYS(7),
      "T_release: seconds a holder has to hand off or close before a ForcedClose, default 7200"),
    N("broker", "idle_timeout", MP_CFG_U32, idle_timeout, 1, MP_DAYS(1), "seconds"),
    N("broker", "merchant_cert_days", MP_CFG_U32, merchant_cert_days, 1, 3650,
      "MerchantCert lifetime in days, default 90"),
    N("broker", "merchant_cert_lifetime_s", MP_CFG_U64, merchant_cert_lifetime_s, 0, MP_DAYS(3650),
      "MerchantCert lifetime in seconds, overrides merchant_cert_days (tests); 0: off"),
    MP_NET_LIMIT_KEYS(struct broker_config, limits, MP_PROOF_FRAME_MIN,
		      "bytes, default 1 MiB; at least 768 KiB, since a dispute's BadKeyProof "
		      "carries a sealed chunk of up to 512 KiB"),
    N("limits", "max_frame_merchant", MP_CFG_U32, max_frame_merchant, 4096, MP_FRAME_MAX_MERCHANT,
      "bytes, at least max_frame, default 16 MiB"),
    N("limits", "register_rate", MP_CFG_U32, register_rate, 1, 1000000,
      "RegisterAccount per minute per address"),
    N("limits", "register_burst", MP_CFG_U32, register_burst, 1, 1000000, NULL),
    K("tls", "cert", MP_CFG_STRING, tls_cert, true, "PEM certificate with CN broker"),
    K("tls", "key", MP_CFG_STRING, tls_key, true, "PEM private key"),
    K("tls", "ca", MP_CFG_STRING, tls_ca, true, "PEM CA certificate"),
    N("tls", "expiry_warning_days", MP_CFG_U32, tls_expiry_warning_days, 0, 3650,
      "days before the certificate's notAfter from which a warning is logged daily (0: "
      "never), default 21"),
    K("db", "conninfo", MP_CFG_STRING, db_conninfo, true, "libpq connection string"),
    N("db", "pool", MP_CFG_U32, db_pool, 1, 64, "connections, default 4"),
    N("db", "issue_batch", MP_CFG_U32, issue_batch, 1, 1000,
      "IssueRequests stored together in one call and transaction, at most; default 64 (1: "
      "one by one)"),
    N("db", "max_queue", MP_CFG_U32, db_max_queue, 1, 1000000,
      "requests waiting for a connection, default 10000"),
    N("db", "queue_timeout_ms", MP_CFG_U32, db_queue_timeout_ms, 10, 600000,
      "longest wait for a connection, default 5000"),
    N("db", "statement_timeout_ms", MP_CFG_U32, db_statement_timeout_ms, 100, 3600000,
      "PostgreSQL statement_timeout, default 10000"),
    N("db", "idle_in_transaction_session_timeout_ms", MP_CFG_U32, db_idle_in_tx_timeout_ms, 100,
      3600000, "PostgreSQL idle_in_transaction_session_timeout, default 10000"),
    K("admin", "socket", MP_CFG_STRING, admin_socket, true, "Unix socket path"),
    K("admin", "group", MP_CFG_STRING, admin_group, false,
      "group (name or gid) whose members may use the admin socket"),
    MP_SERVICE_KEYS(struct broker_config, service),
    MP_METRICS_KEYS(struct broker_config, metrics),
    MP_CFG_END,
};

static void set_defaults(struct broker_config *cfg)
{
	*cfg = (struct broker_config){0};
	cfg->max_unit_value = 1000000;
	cfg->max_escrow = (uint64_t)1 << 40;
	cfg->n_max = 1u << 20;
	cfg->max_claims = 10000;
	cfg->hash_budget = (uint64_t)1 << 28;
	cfg->bad_chain_hash_rate = (uint64_t)1 << 17;
	cfg->bad_chain_hash_burst = (uint64_t)1 << 28;
	cfg->workers = 2;
	cfg->worker_queue =
	    1024; /* 16 connections of 64 requests in flight: a burst queues, not refused */
	cfg->t_grace = 24 * 3600;
	cfg->max_offset = 30;
	cfg->tls_expiry_warning_days = 21;
	cfg->idle_timeout = 300;
	cfg->sweep_interval = 60;
	cfg->sweep_batch = 100;
	cfg->dispute_window = 24 * 3600;
	cfg->dispute_answer = 3600;
	cfg->release_wait = 7200;
	mp_net_limits_default(&cfg->limits);
	mp_service_config_default(&cfg->service);
	cfg->max_frame_merchant = MP_FRAME_MAX_MERCHANT;
	cfg->register_rate = 30;
	cfg->register_burst = 30;
	cfg->db_pool = 4;
	cfg->issue_batch = 64;
	cfg->merchant_cert_days = 90;
	cfg->db_max_queue = 10000;
	cfg->db_queue_timeout_ms = 5000;
	cfg->db_statement_timeout_ms = 10000;
	cfg->db_idle_in_tx_timeout_ms = 10000;
}

static bool check_limits(const struct broker_config *cfg, const char *path, char *err,
			 size_t errlen)
{
	if (!mp_net_limits_check(&cfg->limits, path, err, errlen) ||
	    !mp_net_idle_timeout_check(cfg->idle_timeout, path, "broker", err, errlen))
		return false;
	if (cfg->max_frame_merchant < cfg->limits.max_frame ||
	    cfg->max_frame_merchant > MP_FRAME_MAX_MERCHANT) {
		snprintf(err, errlen, "%s: [limits] max_frame_merchant must be max_frame..%u", path,
			 MP_FRAME_MAX_MERCHANT);
		return false;
	}
	if (cfg->register_rate < 1 || cfg->register_rate > 1000000 || cfg->register_burst < 1 ||
	    cfg->register_burst > 1000000) {
		snprintf(err, errlen,
			 "%s: [limits] register_rate and register_burst must be 1..1000000", path);
		return false;
	}
	if (cfg->max_claims < 1 || cfg->max_claims > MP_MAX_CLAIMS_CEILING) {
		snprintf(err, errlen, "%s: [broker] max_claims_per_redeem must be 1..%u", path,
			 MP_MAX_CLAIMS_CEILING);
		return false;
	}
	return true;
}

bool broker_config_load(struct broker_config *cfg, const char *path, char *err, size_t errlen)
{
	set_defaults(cfg);
	if (!mp_config_load(path, broker_keys, cfg, err, errlen))
		return false;
	if (!cfg->currency && !(cfg->currency = strdup("EUR"))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (strlen(cfg->currency) != 3) {
		snprintf(err, errlen, "%s: [broker] currency must be a 3-letter ISO 4217 code",
			 path);
		return false;
	}
	enum mp_log_level level;
	return check_limits(cfg, path, err, errlen) &&
	       mp_service_log_level(&cfg->service, path, &level, err, errlen);
}

uint64_t broker_merchant_cert_lifetime(const struct broker_config *cfg)
{
	return cfg->merchant_cert_lifetime_s ? cfg->merchant_cert_lifetime_s
					     : MP_DAYS(cfg->merchant_cert_days);
}

void broker_config_free(struct broker_config *cfg)
{
	mp_config_free(broker_keys, cfg);
}

/* Values the example configuration gives the required keys. */
static const struct mp_cfg_example broker_examples[] = {
    {"broker", "listen", "0.0.0.0:7000"},
    {"broker", "key_file", "/var/lib/micropay/broker/broker.key"},
    {"tls", "cert", "/etc/micropay/tls/broker.crt"},
    {"tls", "key", "/etc/micropay/tls/broker.key"},
    {"tls", "ca", "/etc/micropay/tls/ca.crt"},
    {"db", "conninfo", "host=/run/postgresql dbname=micropay user=micropay"},
    {"admin", "socket", "/run/micropay/broker.sock"},
    {NULL, NULL, NULL},
};

bool broker_config_doc(FILE *out, enum mp_cfg_doc_format format)
{
	struct broker_config defaults;
	set_defaults(&defaults);
	return mp_config_doc(out, format, "brokerd", broker_keys, &defaults, broker_examples);
}
