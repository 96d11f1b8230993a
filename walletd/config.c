#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "amount.h"
#include "config_doc.h"
#include "clock_guard.h"
#include "service.h"
#include "net.h"
#include "wallet.h"

/* A string or boolean key. */
#define K(sec, name, type, field, req, help)                                                       \
	{                                                                                          \
		sec, name, type, offsetof(struct wallet_config, field), req, help, 0, 0            \
	}

/* A numeric key: never required, always with its accepted range (min .. max). */
#define N(sec, name, type, field, min, max, help)                                                  \
	{                                                                                          \
		sec, name, type, offsetof(struct wallet_config, field), false, help, min, max      \
	}

static const struct mp_cfg_key wallet_keys[] = {
    K("wallet", "store", MP_CFG_STRING, store, true, "SQLite file, created with mode 0600"),
    K("wallet", "account_key", MP_CFG_STRING, account_key, false,
      "the account key: a seed file (mode 0600) or a PKCS#11 URI (docs/keys.md); default: "
      "generated at the first start and kept in the store"),
    K("wallet", "passphrase_file", MP_CFG_STRING, passphrase_file, false,
      "file (mode 0600), the passphrase the store's secrets are encrypted under "
      "(docs/wallet-store.md); default: a plain store"),
    K("wallet", "broker", MP_CFG_STRING, broker, true, "host:port of brokerd"),
    K("wallet", "broker_pk", MP_CFG_STRING, broker_pk_hex, true,
      "the broker's Ed25519 public key, 64 hex digits"),
    K("wallet", "currency", MP_CFG_STRING, currency, false, "ISO 4217 code, default EUR"),
    N("wallet", "checkpoint_interval", MP_CFG_U32, checkpoint_interval, 1, 65536,
      "units between stored chain words, 1 .. 65536, default 256"),
    N("wallet", "idle_timeout", MP_CFG_U32, idle_timeout, 1, MP_DAYS(1),
      "seconds, default 60: a silent server, and the wait for each PayAck"),
    N("wallet", "refund_check_interval", MP_CFG_U32, refund_check_interval, 0, MP_DAYS(1),
      "seconds between the checks for refunds to ask for, default 300; 0: only on demand"),
    N("wallet", "dispute_check_interval", MP_CFG_U32, dispute_check_interval, 0, MP_DAYS(1),
      "seconds between the checks for paid key-release offers whose key did not come by "
      "their deadline (disputed at the broker), default 60; 0: only on demand"),
    N("wallet", "auto_issue_budget", MP_CFG_U64, auto_issue_budget, 0, MP_AMOUNT_MAX,
      "minor units `buy` and `http` may escrow in all in channels they issue themselves when "
      "none fits (docs/goods.md, docs/gateway.md), default 0: never"),
    N("wallet", "auto_issue_channel", MP_CFG_U64, auto_issue_channel, 0, MP_AMOUNT_MAX,
      "minor units: the least escrow of a channel `buy` or `http` issues (for later ones "
      "too), default 0: what the item or request needs"),
    N("wallet", "auto_issue_unit_value", MP_CFG_U64, auto_issue_unit_value, 1, MP_AMOUNT_MAX,
      "minor units: the least unit value of a channel `buy` or `http` issues, default 1"),
    N("wallet", "auto_issue_days", MP_CFG_U32, auto_issue_days, 1, 30,
      "the lifetime of a channel `buy` or `http` issues: 1, 7 or 30 days, default 7"),
    N("wallet", "http_max_price", MP_CFG_U64, http_max_price, 0, (uint64_t)1 << 53,
      "minor units one HTTP request may cost (mpctl http; docs/gateway.md) unless max_price "
      "says otherwise, default 100"),
    K("proxy", "listen", MP_CFG_STRING, proxy_listen, false,
      "loopback host:port of the forward proxy that pays HTTP 402 gateways (docs/gateway.md); "
      "default none: off"),
    N("proxy", "host_budget", MP_CFG_U64, proxy_host_budget, 0, MP_AMOUNT_MAX,
      "minor units the proxy may pay each host:port in all (kept in the store), default 1000"),
    K("tls", "ca", MP_CFG_STRING, tls_ca, true, "PEM CA certificate"),
    K("admin", "socket", MP_CFG_STRING, admin_socket, true, "Unix socket path"),
    K("admin", "group", MP_CFG_STRING, admin_group, false,
      "group (name or gid) whose members may use the admin socket"),
    MP_SERVICE_KEYS(struct wallet_config, service),
    MP_METRICS_KEYS(struct wallet_config, metrics),
    MP_CLOCK_GUARD_KEYS(struct wallet_config, clock_guard),
    MP_CFG_END,
};

static bool is_currency(const char *c)
{
	return strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' &&
	       c[2] >= 'A' && c[2] <= 'Z';
}

static void set_defaults(struct wallet_config *cfg)
{
	*cfg = (struct wallet_config){0};
	cfg->checkpoint_interval = 256;
	cfg->idle_timeout = 60;
	cfg->refund_check_interval = 300;
	cfg->dispute_check_interval = 60;
	cfg->auto_issue_unit_value = 1;
	cfg->auto_issue_days = 7;
	cfg->http_max_price = 100;
	cfg->proxy_host_budget = 1000;
	mp_service_config_default(&cfg->service);
	mp_clock_guard_config_default(&cfg->clock_guard);
}

bool wallet_config_load(struct wallet_config *cfg, const char *path, char *err, size_t errlen)
{
	set_defaults(cfg);
	if (!mp_config_load(path, wallet_keys, cfg, err, errlen))
		return false;
	if (!cfg->currency && !(cfg->currency = strdup("EUR"))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!is_currency(cfg->currency)) {
		snprintf(err, errlen,
			 "%s: [wallet] currency must be a 3-letter ISO 4217 code, not '%s'", path,
			 cfg->currency);
		return false;
	}
	if (!mp_hex_decode(cfg->broker_pk_hex, cfg->broker_pk, MP_PK_LEN)) {
		snprintf(err, errlen, "%s: [wallet] broker_pk must be 64 hex digits", path);
		return false;
	}
	if (!mp_split_endpoint(cfg->broker, cfg->broker_host, sizeof(cfg->broker_host),
			       &cfg->broker_port)) {
		snprintf(err, errlen, "%s: [wallet] broker must be host:port, not '%s'", path,
			 cfg->broker);
		return false;
	}
	if (cfg->auto_issue_days != 1 && cfg->auto_issue_days != 7 && cfg->auto_issue_days != 30) {
		snprintf(err, errlen, "%s: [wallet] auto_issue_days must be 1, 7 or 30, not %u",
			 path, cfg->auto_issue_days);
		return false;
	}
	enum mp_log_level level;
	return mp_service_log_level(&cfg->service, path, &level, err, errlen);
}

void wallet_config_free(struct wallet_config *cfg)
{
	mp_config_free(wallet_keys, cfg);
}

/* Values the example configuration gives the required keys. */
static const struct mp_cfg_example wallet_examples[] = {
    {"wallet", "store", "/var/lib/micropay/wallet/wallet.db"},
    {"wallet", "broker", "broker.example.net:7000"},
    {"wallet", "broker_pk", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
    {"tls", "ca", "/etc/micropay/tls/ca.crt"},
    {"admin", "socket", "/run/micropay/wallet.sock"},
    {NULL, NULL, NULL},
};

bool wallet_config_doc(FILE *out, enum mp_cfg_doc_format format)
{
	struct wallet_config defaults;
	set_defaults(&defaults);
	return mp_config_doc(out, format, "walletd", wallet_keys, &defaults, wallet_examples);
}
