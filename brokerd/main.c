/* brokerd: issues channels, holds accounts, settles redemptions in PostgreSQL. */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "bad_chain_budget.h"
#include "clock.h"
#include "daemon.h"
#include "broker.h"
#include "db.h"
#include "issue_batch.h"
#include "log.h"
#include "migrate.h"
#include "sweep.h"
#include "net.h"
#include "tls.h"
#include "workers.h"

static bool migrate_and_seed(const struct broker_config *cfg)
{
	char err[512];
	PGconn *pg = db_connect_blocking(cfg->db_conninfo, err, sizeof(err));
	if (!pg) {
		log_err("%s", err);
		return false;
	}
	bool ok = migrate(pg, err, sizeof(err));
	if (!ok)
		log_err("db migration: %s", err);
	PQfinish(pg);
	return ok;
}

/* The database answered: storage is up, the listener already is. Only now READY=1. */
static void on_seeded(const PGresult *res, const char *error, void *arg)
{
	struct broker *b = arg;
	if (!res) {
		log_err("db: cannot create the system accounts: %s", error);
		b->failed = true;
		event_base_loopbreak(b->base);
		return;
	}
	log_info("brokerd ready (currency %s)", b->cfg.currency);
	mp_service_ready(b->service);
}

static bool broker_start(struct broker *b)
{
	char err[512];
	if (!mp_key_load(&b->key, b->cfg.key_file, err, sizeof(err))) {
		log_err("broker key: %s", err);
		return false;
	}
	mp_key_id(b->key.pk, b->key_id);
	b->tls = mp_tls_server_ctx(b->cfg.tls_cert, b->cfg.tls_key, b->cfg.tls_ca,
				   MP_CLIENT_CERT_OPTIONAL, err, sizeof(err));
	if (!b->tls) {
		log_err("tls: %s", err);
		return false;
	}
	if (!migrate_and_seed(&b->cfg))
		return false;
	b->workers = mp_workers_new(b->base, b->cfg.workers, b->cfg.worker_queue);
	b->bad_chain = bad_chain_budget_new(b->cfg.bad_chain_hash_rate, b->cfg.bad_chain_hash_burst,
					    BAD_CHAIN_BUDGET_SLOTS);
	if (!b->workers || !b->bad_chain)
		return false;
	const struct db_pool_config pool = {
	    .conninfo = b->cfg.db_conninfo,
	    .size = b->cfg.db_pool,
	    .max_queue = b->cfg.db_max_queue,
	    .queue_timeout_ms = b->cfg.db_queue_timeout_ms,
	    .statement_timeout_ms = b->cfg.db_statement_timeout_ms,
	    .idle_in_tx_timeout_ms = b->cfg.db_idle_in_tx_timeout_ms,
	};
	b->db = db_pool_open(b->base, &pool, broker_statements);
	b->issues = issue_batcher_new(b);
	if (!b->db || !b->issues)
		return false;
	struct db_params p = {0};
	db_param_text(&p, b->cfg.currency);
	const char *refused = db_call(b->db, "ensure_system_accounts", &p, on_seeded, b);
	if (refused) {
		log_err("db: cannot create the system accounts: %s", refused);
		return false;
	}
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(b->cfg.listen, host, sizeof(host), &port)) {
		log_err("config: [broker] listen must be host:port, not '%s'", b->cfg.listen);
		return false;
	}
	if (!broker_listen(b, host, port) || !broker_admin_open(b))
		return false;
	b->sweep = sweep_start(b, b->cfg.sweep_interval, b->cfg.sweep_batch);
	if (!b->sweep || !broker_metrics_open(b))
		return false;
	return broker_service_start(b);
}

static void broker_stop(struct broker *b)
{
	broker_service_stop(b);
	/* First: jobs still queued or running are answered while everything else still exists. */
	mp_workers_free(b->workers);
	bad_chain_budget_free(b->bad_chain);
	broker_metrics_close(b);
	mp_admin_close(b->admin);
	mp_listener_free(b->listener);
	register_limit_stop(b);
	sweep_stop(b->sweep);
	/* The pool first: the batches in flight are answered (their rows with them), and any
	 * request still queued is refused by the closing pool; then the queue, empty by now. */
	db_pool_close(b->db);
	issue_batcher_free(b->issues);
	sweep_free(b->sweep);
	if (b->tls)
		SSL_CTX_free(b->tls);
	mp_hasher_free(b->hasher);
	mp_key_free(&b->key);
	broker_config_free(&b->cfg);
	if (b->base)
		event_base_free(b->base);
}

int main(int argc, char **argv)
{
	struct mp_daemon_opts opts;
	switch (mp_daemon_init(argc, argv, "brokerd", broker_config_doc, &opts)) {
	case MP_DAEMON_RUN:
		break;
	case MP_DAEMON_EXIT_OK:
		return 0;
	case MP_DAEMON_EXIT_USAGE:
		return 2;
	}
	const char *config = opts.config;
	struct broker b = {0};
	mp_clock_init(&b.clock, opts.test_clock);
	char err[512];
	b.config_path = config;
	if (!broker_config_load(&b.cfg, config, err, sizeof(err)) ||
	    !mp_service_apply_log_level(&b.cfg.service, config, opts.verbose, err, sizeof(err))) {
		log_err("%s", err);
		broker_config_free(&b.cfg);
		return 1;
	}
	if (opts.check_config) {
		broker_config_free(&b.cfg);
		return mp_daemon_config_ok("brokerd", config);
	}
	b.started_mono = mp_monotonic_s();
	b.base = event_base_new();
	b.hasher = mp_hasher_new();
	bool ok = b.base && b.hasher && broker_start(&b);
	if (ok)
		event_base_dispatch(b.base); /* READY=1 once the database answered (on_seeded) */
	broker_stop(&b);
	return ok && !b.failed ? 0 : 1;
}
