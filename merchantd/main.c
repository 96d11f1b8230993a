/* merchantd: verifies off-line hash-chain payments, persists them, redeems in batches. */
#include <event2/event.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "batch.h"
#include "gateway.h"
#include "journal_sync.h"
#include "cap_outbox.h"
#include "dispute_answer.h"
#include "catalogue_admin.h"
#include "compact.h"
#include "clock.h"
#include "daemon.h"
#include "dns.h"
#include "log.h"
#include "redeem_deadline.h"
#include "redeem_lag.h"
#include "release_poll.h"
#include "restore.h"
#include "workers.h"
#include "register.h"
#include "merchant.h"
#include "stmt.h"
#include "store.h"
#include "offer_store.h"
#include "purchase_store.h"
#include "store_thread.h"
#include "tls.h"
#include "fault.h"

/* The longest the event loop waits for a lock on the store (store.h, store_set_lock_wait). */
#define LOOP_LOCK_WAIT_MS 20

static bool load_identity(struct merchant *m)
{
	char err[512];
	if (!mp_hex_decode(m->cfg.id_hex, m->mid, MP_ID_LEN) ||
	    !mp_hex_decode(m->cfg.broker_pk_hex, m->broker_pk, MP_PK_LEN)) {
		log_err("config: [merchant] id must be 32 and broker_pk 64 hex digits");
		return false;
	}
	mp_key_id(m->broker_pk, m->broker_key_id);
	if (!mp_key_load(&m->key, m->cfg.key_file, err, sizeof(err))) {
		log_err("merchant key: %s", err);
		return false;
	}
	if (!merchant_tls_load(m, &m->cfg, &m->server_tls, &m->client_tls, err, sizeof(err))) {
		log_err("tls: %s", err);
		return false;
	}
	return true;
}

/* Each channel's newest purchase goes back on it (a channel no longer here drops it). */
static void attach_purchase(void *arg, struct purchase *p)
{
	struct merchant *m = arg;
	struct channel *ch = channel_find(&m->channels, p->channel_id);
	if (!ch) {
		purchase_free(p);
		return;
	}
	purchase_free(ch->purchase);
	ch->purchase = p;
}

/* Each channel's newest offer goes back on it (a channel no longer here drops it). */
static void attach_offer(void *arg, struct offer *o)
{
	struct merchant *m = arg;
	struct channel *ch = channel_find(&m->channels, o->channel_id);
	if (!ch) {
		offer_free(o);
		return;
	}
	offer_free(ch->offer);
	ch->offer = o;
}

/* Recovery: the channel rows hold each channel's last committed payment. */
static bool load_state(struct merchant *m)
{
	char err[512];
	m->store = store_open(m->cfg.store, &m->clock, err, sizeof(err));
	if (!m->store) {
		log_err("store: %s", err);
		return false;
	}
	if (!table_init(&m->channels, 1 << 10) || !table_init(&m->orders, 1 << 10) ||
	    !store_load_channels(m->store, &m->channels) ||
	    !store_load_orders(m->store, &m->orders) ||
	    !purchase_store_load(m->store, attach_purchase, m) ||
	    !offer_store_load(m->store, attach_offer, m) || !restore_start(m, m->start_restored))
		return false;
	redeem_lag_load(m->store, &m->channels);
	m->channels_recorded = m->channels.count;
	m->store_thread = store_thread_start(m->base, m->cfg.store, &m->clock, err, sizeof(err));
	if (!m->store_thread) {
		log_err("store thread: %s", err);
		return false;
	}
	if (!merchant_cert_load(m))
		return false;
	store_set_lock_wait(m->store, LOOP_LOCK_WAIT_MS); /* serving from now on */
	log_info("store: %zu channels, %zu orders recovered", m->channels.count, m->orders.count);
	return true;
}

static bool merchant_start(struct merchant *m)
{
	if (!load_identity(m) || !merchant_register_sign(m) || !merchant_catalogue_start(m) ||
	    !load_state(m) || !batch_init(m) || !compactor_start(m) || !journal_sync_start(m))
		return false;
	m->workers = mp_workers_new(m->base, m->cfg.handoff_workers, m->cfg.worker_queue);
	m->dns = mp_dns_new(m->base, m->cfg.broker_resolv_conf);
	if (!m->workers || !m->dns)
		return false;
	if (!merchant_listen(m) || !merchant_admin_open(m) || !gateway_start(m))
		return false;
	m->redeemer = redeemer_new(m);
	if (!m->redeemer || !cap_outbox_start(m) || !dispute_answer_start(m))
		return false;
	m->clock_guard = mp_clock_guard_new(m->base, &m->clock, &m->cfg.clock_guard, "merchantd",
					    redeemer_probe_clock, m->redeemer);
	if (!m->clock_guard)
		return false;
	m->deadline = redeem_deadline_start(m, m->cfg.deadline_check);
	m->release_poll = release_poll_start(m, m->cfg.release_poll);
	if (!m->deadline || !m->release_poll || !merchant_metrics_open(m))
		return false;
	return merchant_service_start(m);
}

static void merchant_stop(struct merchant *m)
{
	merchant_metrics_close(m);
	redeemer_stop(m->redeemer); /* its writes completing below send nothing */
	release_poll_stop(m->release_poll);
	cap_outbox_stop(m);
	dispute_answer_stop(m);
	mp_workers_free(m->workers); /* takeovers being verified are refused */
	m->workers = NULL;
	takeover_stop_all(m);
	gateway_stop(m); /* requests waiting for their upstream: released, uncharged */
	compactor_stop(m);
	if (m->batch && m->store_thread)
		batch_drain(m); /* commits and acknowledges what is pending */
	gateway_free(m);
	store_thread_stop(m->store_thread);
	compactor_free(m);
	journal_sync_free(m);
	batch_free(m);
	redeem_deadline_free(m->deadline);
	redeemer_free(m->redeemer); /* Binds awaited get their answer: none */
	/* after the store thread (its writes are done) and the link (its call answered) */
	release_poll_free(m->release_poll);
	mp_clock_guard_free(m->clock_guard);
	bind_stop_all(m);
	cap_outbox_free(m); /* after the link: a notice in flight got its answer, none */
	dispute_answer_free(m);
	merchant_service_stop(m);
	mp_admin_close(m->admin);
	mp_listener_free(m->listener);
	table_free_channels(&m->channels);
	table_free_orders(&m->orders);
	merchant_catalogue_free(m);
	mp_stmt_free(m->registration);
	m->registration = NULL;
	store_close(m->store);
	if (m->server_tls)
		SSL_CTX_free(m->server_tls);
	if (m->client_tls)
		SSL_CTX_free(m->client_tls);
	mp_hasher_free(m->hasher);
	mp_key_free(&m->key);
	merchant_config_free(&m->cfg);
	if (m->dns)
		mp_dns_free(m->dns);
	if (m->base)
		event_base_free(m->base);
}

/* The loop with precise timers: libevent's default clock on Linux is CLOCK_MONOTONIC_COARSE,
 * one tick (about 4 ms) coarse, which a commit_delay_us of 2 ms would turn into 4 or more. */
static struct event_base *loop_new(void)
{
	struct event_config *ec = event_config_new();
	if (!ec)
		return NULL;
	struct event_base *base = NULL;
	if (event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER) == 0)
		base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!base)
		log_err("merchantd: cannot create the event loop with precise timers");
	return base;
}

int main(int argc, char **argv)
{
	struct mp_daemon_opts opts;
	switch (mp_daemon_init(argc, argv, "merchantd", merchant_config_doc, &opts)) {
	case MP_DAEMON_RUN:
		break;
	case MP_DAEMON_EXIT_OK:
		return 0;
	case MP_DAEMON_EXIT_USAGE:
		return 2;
	}
	/* Before SQLite starts: no allocation statistics, which took a global lock per malloc on
	 * the store thread's hot path (nothing here reads them). */
	if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
		log_warn("store: SQLite keeps its allocation statistics (cannot turn them off)");
	const char *config = opts.config;
	struct merchant m = {0};
	mp_clock_init(&m.clock, opts.test_clock);
	char err[512];
	m.config_path = config;
	m.start_restored = opts.restored;
	if (!merchant_config_load(&m.cfg, config, err, sizeof(err)) ||
	    !mp_service_apply_log_level(&m.cfg.service, config, opts.verbose, err, sizeof(err))) {
		log_err("%s", err);
		merchant_config_free(&m.cfg);
		return 1;
	}
	if (opts.check_config) {
		merchant_config_free(&m.cfg);
		return mp_daemon_config_ok("merchantd", config);
	}
	if (!mp_fault_from_env(&m.fault)) {
		merchant_config_free(&m.cfg);
		return 1;
	}
	m.started_mono = mp_monotonic_s();
	m.base = loop_new();
	m.hasher = mp_hasher_new();
	bool ok = m.base && m.hasher && merchant_start(&m);
	if (ok) {
		log_info("merchantd ready");
		mp_service_ready(m.service);
		event_base_dispatch(m.base);
	}
	merchant_stop(&m);
	return ok && !m.failed ? 0 : 1;
}
