#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "proto_limits.h"
#include "merchant.h"

#define K(sec, name, type, field, req, help)                                                       \
	{                                                                                          \
		sec, name, type, offsetof(struct merchant_config, field), req, help                \
	}

static const struct mp_cfg_key merchant_keys[] = {
    K("merchant", "id", MP_CFG_STRING, id_hex, true, "merchant_id, 32 hex digits"),
    K("merchant", "listen", MP_CFG_STRING, listen, true, "host:port for wallets"),
    K("merchant", "endpoint", MP_CFG_STRING, endpoint, false, "announced host:port"),
    K("merchant", "key_file", MP_CFG_STRING, key_file, true, "Ed25519 seed file, mode 0600"),
    K("merchant", "store", MP_CFG_STRING, store, true, "SQLite file"),
    K("merchant", "broker", MP_CFG_STRING, broker, true, "brokerd host:port"),
    K("merchant", "broker_pk", MP_CFG_STRING, broker_pk_hex, true, "64 hex digits"),
    K("merchant", "currency", MP_CFG_STRING, currency, false, "ISO 4217, default EUR"),
    K("merchant", "max_jump", MP_CFG_U32, max_jump, false, "units, default 4096"),
    K("merchant", "max_bad_chain", MP_CFG_U32, max_bad_chain, false, "per connection"),
    K("merchant", "pay_margin", MP_CFG_U64, pay_margin, false, "seconds before pay_until"),
    K("merchant", "t_grace", MP_CFG_U64, t_grace, false, "seconds"),
    K("merchant", "max_pay_window", MP_CFG_U64, max_pay_window, false, "seconds"),
    K("merchant", "redeem_interval", MP_CFG_U32, redeem_interval, false, "seconds, 0: off"),
    K("merchant", "commit_delay_us", MP_CFG_U32, commit_delay_us, false, "microseconds"),
    K("merchant", "commit_max", MP_CFG_U32, commit_max, false, "payments per batch"),
    K("merchant", "t_dedupe", MP_CFG_U64, t_dedupe, false,
      "seconds an accepted Pay stays in the journal at least, default 3600"),
    K("merchant", "outbox_retention", MP_CFG_U64, outbox_retention, false,
      "seconds an answered Redeem is kept, default 604800"),
    K("merchant", "compact_interval", MP_CFG_U32, compact_interval, false,
      "seconds between store compactions, default 600; 0: only store.compact"),
    K("merchant", "max_claims_per_redeem", MP_CFG_U32, max_claims, false, NULL),
    K("merchant", "idle_timeout", MP_CFG_U32, idle_timeout, false, "seconds, 1..86400"),
    MP_NET_LIMIT_KEYS(struct merchant_config, limits),
    K("tls", "cert", MP_CFG_STRING, tls_cert, true, "PEM certificate, CN m-<id>"),
    K("tls", "key", MP_CFG_STRING, tls_key, true, "PEM private key"),
    K("tls", "ca", MP_CFG_STRING, tls_ca, true, "PEM CA certificate"),
    K("admin", "socket", MP_CFG_STRING, admin_socket, true, "Unix socket path"),
    MP_CFG_END,
};

bool merchant_config_load(struct merchant_config *cfg, const char *path, char *err, size_t errlen)
{
	*cfg = (struct merchant_config){0};
	cfg->max_jump = 4096;
	cfg->max_bad_chain = 3;
	cfg->pay_margin = 300;
	cfg->t_grace = 24 * 3600;
	cfg->max_pay_window = 31 * 24 * 3600;
	cfg->redeem_interval = 60;
	cfg->commit_delay_us = 2000;
	cfg->commit_max = 256;
	cfg->t_dedupe = 3600;
	cfg->outbox_retention = 7 * 24 * 3600;
	cfg->compact_interval = 600;
	cfg->max_claims = 10000;
	cfg->idle_timeout = 300;
	mp_net_limits_default(&cfg->limits);
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
	if (cfg->max_jump == 0 || cfg->commit_max == 0 || cfg->max_bad_chain == 0 ||
	    cfg->max_claims == 0) {
		snprintf(err, errlen,
			 "%s: max_jump, commit_max, max_bad_chain and "
			 "max_claims_per_redeem must be at least 1",
			 path);
		return false;
	}
	if (cfg->max_claims > MP_MAX_CLAIMS_CEILING) {
		snprintf(err, errlen, "%s: [merchant] max_claims_per_redeem must be at most %u",
			 path, MP_MAX_CLAIMS_CEILING);
		return false;
	}
	return mp_net_limits_check(&cfg->limits, path, err, errlen) &&
	       mp_net_idle_timeout_check(cfg->idle_timeout, path, "merchant", err, errlen);
}

void merchant_config_free(struct merchant_config *cfg)
{
	mp_config_free(merchant_keys, cfg);
}
