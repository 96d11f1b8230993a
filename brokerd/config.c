#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <stdlib.h>

#include "amount.h"
#include "broker.h"
#include "config.h"
#include "frame.h"
#include "proto_limits.h"

#define K(sec, name, type, field, req, help)                                                       \
	{                                                                                          \
		sec, name, type, offsetof(struct broker_config, field), req, help                  \
	}

static const struct mp_cfg_key broker_keys[] = {
    K("broker", "listen", MP_CFG_STRING, listen, true, "host:port for wallets and merchants"),
    K("broker", "key_file", MP_CFG_STRING, key_file, true, "Ed25519 seed file, mode 0600"),
    K("broker", "currency", MP_CFG_STRING, currency, false, "ISO 4217 code, default EUR"),
    K("broker", "max_unit_value", MP_CFG_U64, max_unit_value, false, "minor units"),
    K("broker", "max_escrow", MP_CFG_U64, max_escrow, false, "minor units, at most 2^62"),
    K("broker", "n_max", MP_CFG_U32, n_max, false, "longest chain, default 2^20"),
    K("broker", "max_claims_per_redeem", MP_CFG_U32, max_claims, false, NULL),
    K("broker", "redeem_hash_budget", MP_CFG_U64, hash_budget, false, NULL),
    K("broker", "bad_chain_hash_rate", MP_CFG_U64, bad_chain_hash_rate, false,
      "hashes per second a merchant may waste on BAD_CHAIN claims, 1..2^40"),
    K("broker", "bad_chain_hash_burst", MP_CFG_U64, bad_chain_hash_burst, false,
      "hashes a merchant may waste at once, 1..2^50"),
    K("broker", "workers", MP_CFG_U32, workers, false, "hashing threads, 1..64, default 2"),
    K("broker", "worker_queue", MP_CFG_U32, worker_queue, false, "jobs waiting, 1..4096"),
    K("broker", "t_grace", MP_CFG_U64, t_grace, false, "seconds"),
    K("broker", "max_clock_offset", MP_CFG_U64, max_offset, false, "seconds"),
    K("broker", "idle_timeout", MP_CFG_U32, idle_timeout, false, "seconds, 1..86400"),
    MP_NET_LIMIT_KEYS(struct broker_config, limits),
    K("limits", "max_frame_merchant", MP_CFG_U32, max_frame_merchant, false,
      "bytes, max_frame..16777216, default 16 MiB"),
    K("limits", "register_rate", MP_CFG_U32, register_rate, false,
      "RegisterAccount per minute per address, 1..1000000"),
    K("limits", "register_burst", MP_CFG_U32, register_burst, false, "1..1000000"),
    K("tls", "cert", MP_CFG_STRING, tls_cert, true, "PEM certificate with CN broker"),
    K("tls", "key", MP_CFG_STRING, tls_key, true, "PEM private key"),
    K("tls", "ca", MP_CFG_STRING, tls_ca, true, "PEM CA certificate"),
    K("db", "conninfo", MP_CFG_STRING, db_conninfo, true, "libpq connection string"),
    K("db", "pool", MP_CFG_U32, db_pool, false, "connections, default 4"),
    K("admin", "socket", MP_CFG_STRING, admin_socket, true, "Unix socket path"),
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
	cfg->worker_queue = 64;
	cfg->t_grace = 24 * 3600;
	cfg->max_offset = 30;
	cfg->idle_timeout = 300;
	mp_net_limits_default(&cfg->limits);
	cfg->max_frame_merchant = MP_FRAME_MAX_MERCHANT;
	cfg->register_rate = 30;
	cfg->register_burst = 30;
	cfg->db_pool = 4;
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
	if (cfg->max_escrow > ((uint64_t)1 << 62) || cfg->max_unit_value > MP_AMOUNT_MAX) {
		snprintf(err, errlen, "%s: [broker] max_escrow must be <= 2^62", path);
		return false;
	}
	if (cfg->bad_chain_hash_rate == 0 || cfg->bad_chain_hash_rate > ((uint64_t)1 << 40) ||
	    cfg->bad_chain_hash_burst == 0 || cfg->bad_chain_hash_burst > ((uint64_t)1 << 50)) {
		snprintf(
		    err, errlen,
		    "%s: [broker] bad_chain_hash_rate must be 1..2^40 and bad_chain_hash_burst "
		    "1..2^50",
		    path);
		return false;
	}
	if (cfg->workers == 0 || cfg->workers > 64 || cfg->worker_queue == 0 ||
	    cfg->worker_queue > 4096) {
		snprintf(err, errlen, "%s: [broker] workers must be 1..64 and worker_queue 1..4096",
			 path);
		return false;
	}
	if (cfg->db_pool == 0 || cfg->db_pool > 64) {
		snprintf(err, errlen, "%s: [db] pool must be 1..64", path);
		return false;
	}
	return check_limits(cfg, path, err, errlen);
}

void broker_config_free(struct broker_config *cfg)
{
	mp_config_free(broker_keys, cfg);
}
