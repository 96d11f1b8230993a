/* walletd: holds the customer's keys, chain seeds and channel state; pays merchants. */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "clock.h"
#include "daemon.h"
#include "dns.h"
#include "http_client.h"
#include "http_fetch.h"
#include "log.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "vault.h"
#include "wallet.h"
#include "workers.h"

/* The account key from the store: its seed, or a new one on the first start. A store whose
 * account key was configured (a token) and is not any more has a pk but no seed: refused. */
static bool stored_account_key(struct wallet *w, bool has_pk)
{
	uint8_t seed[MP_SK_LEN];
	int found = wstore_account_seed(w->store, seed);
	bool ok = false;
	if (found == 1) {
		ok = mp_key_from_seed(&w->account_key, seed);
	} else if (found == 0 && has_pk) {
		log_err("store %s: the account key is not in the store (it was configured by "
			"[wallet] account_key); set account_key again",
			w->cfg.store);
	} else if (found == 0) {
		ok = mp_key_generate(&w->account_key, seed) &&
		     wstore_set_account_seed(w->store, seed);
		if (ok)
			log_info("generated a new account key");
	}
	OPENSSL_cleanse(seed, sizeof(seed));
	if (!ok && found >= 0)
		log_err("store %s: cannot read or create the account key", w->cfg.store);
	return ok;
}

/* The account key: [wallet] account_key (a seed file or a PKCS#11 URI) or the store's; it must
 * be the key this store has used before (its pk is kept in the store). */
static bool load_account_key(struct wallet *w)
{
	uint8_t pk[MP_PK_LEN];
	int has_pk = wstore_account_pk(w->store, pk);
	if (has_pk < 0)
		return false;
	char err[512];
	if (w->cfg.account_key &&
	    !mp_key_load(&w->account_key, w->cfg.account_key, err, sizeof(err))) {
		log_err("[wallet] account_key: %s", err);
		return false;
	}
	if (!w->cfg.account_key && !stored_account_key(w, has_pk == 1))
		return false;
	if (has_pk == 1 && memcmp(pk, w->account_key.pk, MP_PK_LEN) != 0) {
		log_err("store %s: the account key differs from the one this store has used; a "
			"wallet's account key cannot change",
			w->cfg.store);
		return false;
	}
	return has_pk == 1 || wstore_set_account_pk(w->store, w->account_key.pk);
}

static bool load_account(struct wallet *w)
{
	if (!load_account_key(w))
		return false;
	int found = wstore_account_id(w->store, w->account_id);
	if (found < 0)
		return false;
	w->registered = found == 1;
	return true;
}

static void add_channel(void *arg, struct wchannel *ch)
{
	struct wallet *w = arg;
	struct wchannel **tail = &w->channels;
	while (*tail)
		tail = &(*tail)->next;
	*tail = ch;
}

/* [wallet] passphrase_file read and the store opened with it (store_vault.c: refused without
 * the passphrase an encrypted store needs, or with a wrong one; a plain store is encrypted).
 * scrypt runs here, before the daemon serves. */
static bool unlock_store(struct wallet *w)
{
	char pass[WVAULT_PASSPHRASE_MAX + 1], err[512];
	ssize_t len = 0;
	if (w->cfg.passphrase_file) {
		len = mp_read_secret_line(w->cfg.passphrase_file, pass, sizeof(pass), err,
					  sizeof(err));
		if (len == 0)
			snprintf(err, sizeof(err), "%s: the passphrase is empty",
				 w->cfg.passphrase_file);
		if (len <= 0) {
			log_err("[wallet] passphrase_file: %s", err);
			OPENSSL_cleanse(pass, sizeof(pass));
			return false;
		}
	}
	bool ok = wstore_unlock(w->store, w->cfg.passphrase_file ? pass : NULL, (size_t)len,
				WVAULT_LOG2_N_DEFAULT, err, sizeof(err));
	OPENSSL_cleanse(pass, sizeof(pass));
	if (!ok)
		log_err("%s", err);
	return ok;
}

static bool wallet_start(struct wallet *w)
{
	char err[512];
	if (!wstore_wipe_freed_memory()) {
		log_err("store: cannot make SQLite wipe the memory it frees");
		return false;
	}
	w->store = wstore_open(w->cfg.store, &w->clock, err, sizeof(err));
	if (!w->store) {
		log_err("%s", err);
		return false;
	}
	if (!unlock_store(w) || !load_account(w) || !wstore_channels_load(w->store, add_channel, w))
		return false;
	for (struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (!wallet_segment_load(w, ch))
			return false;
	if (!wallet_close_load(w) || !wallet_release_load(w) || !wallet_refund_load(w))
		return false;
	w->tls = mp_tls_client_ctx(w->cfg.tls_ca, NULL, NULL, err, sizeof(err));
	if (!w->tls) {
		log_err("tls: %s", err);
		return false;
	}
	w->workers = mp_workers_new(w->base, 1, 8);
	if (!w->workers)
		return false;
	w->dns = mp_dns_new(w->base, NULL);
	w->clock_guard = mp_clock_guard_new(w->base, &w->clock, &w->cfg.clock_guard, "walletd",
					    wallet_clock_probe, w);
	w->http = w->dns ? http_fetch_client(w->base, w->dns, w->cfg.idle_timeout) : NULL;
	if (!w->dns || !w->http || !w->clock_guard || !wallet_admin_open(w) ||
	    !wallet_metrics_open(w))
		return false;
	if (!wallet_service_start(w) || !wallet_proxy_start(w))
		return false;
	wallet_issue_resume(w);
	wallet_segment_claim_resume(w);
	return wallet_refund_start(w) && wallet_dispute_start(w);
}

static void wallet_stop(struct wallet *w)
{
	wallet_metrics_close(w);
	wallet_refund_stop(w);
	wallet_dispute_stop(w);
	wallet_segment_claim_stop(w);
	if (w->workers) /* cancelled verifications answer their admin requests first */
		mp_workers_free(w->workers);
	wallet_proxy_stop(w); /* its requests answered 503; their exchanges end below */
	while (w->ops)
		mp_conn_close(w->ops->conn, "walletd is stopping");
	if (w->http) /* their admin requests answered */
		mp_http_client_abort(w->http, "walletd is stopping");
	mp_http_client_free(w->http);
	mp_dns_free(w->dns); /* after the connections: they may have been resolving */
	mp_clock_guard_free(w->clock_guard); /* after the connections: a probe's answer uses it */
	wallet_service_stop(w);
	mp_admin_close(w->admin);
	while (w->channels) {
		struct wchannel *ch = w->channels;
		w->channels = ch->next;
		wallet_channel_free(ch);
	}
	wstore_close(w->store);
	if (w->tls)
		SSL_CTX_free(w->tls);
	mp_key_free(&w->account_key);
	mp_hasher_free(w->hasher);
	wallet_config_free(&w->cfg);
	if (w->base)
		event_base_free(w->base);
}

int main(int argc, char **argv)
{
	struct mp_daemon_opts opts;
	switch (mp_daemon_init(argc, argv, "walletd", wallet_config_doc, &opts)) {
	case MP_DAEMON_RUN:
		break;
	case MP_DAEMON_EXIT_OK:
		return 0;
	case MP_DAEMON_EXIT_USAGE:
		return 2;
	}
	const char *config = opts.config;
	struct wallet w = {0};
	mp_clock_init(&w.clock, opts.test_clock);
	char err[512];
	w.config_path = config;
	if (!wallet_config_load(&w.cfg, config, err, sizeof(err)) ||
	    !mp_service_apply_log_level(&w.cfg.service, config, opts.verbose, err, sizeof(err))) {
		log_err("%s", err);
		wallet_config_free(&w.cfg);
		return 1;
	}
	if (opts.check_config) {
		wallet_config_free(&w.cfg);
		return mp_daemon_config_ok("walletd", config);
	}
	w.started_mono = mp_monotonic_s();
	w.base = event_base_new();
	w.hasher = mp_hasher_new();
	bool ok = w.base && w.hasher && wallet_start(&w);
	if (ok) {
		log_info("walletd ready (account %s, %u channels)",
			 w.registered ? "registered" : "not registered", wallet_channel_count(&w));
		mp_service_ready(w.service);
		event_base_dispatch(w.base);
	}
	wallet_stop(&w);
	return ok ? 0 : 1;
}
