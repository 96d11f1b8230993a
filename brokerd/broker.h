/* brokerd: the daemon context and the handlers' entry points. */
#pragma once
#include "config_doc.h"
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "metrics_http.h"
#include "chain.h"
#include "net.h"
#include "net_limits.h"
#include "proto.h"
#include "service.h"
#include "sig.h"
#include "util.h"

struct broker_config {
	struct mp_service_config service;
	char *listen;
	char *key_file;
	char *currency;
	uint64_t max_unit_value;
	uint64_t max_escrow;
	uint32_t n_max;
	uint32_t max_claims;
	uint64_t hash_budget;
	uint64_t bad_chain_hash_rate;  /* hashes per second a merchant may waste on BAD_CHAIN */
	uint64_t bad_chain_hash_burst; /* ... and at most this many at once */
	uint32_t workers;	       /* threads hashing and verifying off the loop */
	uint32_t worker_queue;	       /* jobs waiting for a worker, at most */
	uint64_t t_grace;
	uint64_t max_offset;
	uint32_t merchant_cert_days;
	uint64_t merchant_cert_lifetime_s; /* 0: merchant_cert_days */
	uint32_t idle_timeout;
	uint32_t sweep_interval;     /* seconds between settlement sweeps */
	uint32_t sweep_batch;	     /* channels listed per batch */
	uint64_t dispute_window;     /* T_dispute: seconds after an Offer's deadline */
	uint64_t dispute_answer;     /* seconds the merchant has to send the key */
	uint64_t release_wait;	     /* T_release: seconds before a ForcedClose */
	struct mp_net_limits limits; /* [limits]: the listener, and frames from wallets */
	uint32_t max_frame_merchant; /* [limits]: frames from peers with a merchant certificate */
	uint32_t register_rate;	     /* [limits]: RegisterAccount per minute per address */
	uint32_t register_burst;
	char *tls_cert;
	char *tls_key;
	char *tls_ca;
	uint32_t tls_expiry_warning_days;
	char *db_conninfo;
	uint32_t db_pool;
	uint32_t issue_batch; /* [db] issue_batch: IssueRequests per mp_issue_batch call */
	uint32_t db_max_queue;
	uint32_t db_queue_timeout_ms;
	uint32_t db_statement_timeout_ms;
	uint32_t db_idle_in_tx_timeout_ms;
	char *admin_socket;
	char *admin_group; /* NULL: none */
	struct mp_metrics_config metrics;
};

struct broker_stats {
	uint64_t accounts_registered;
	uint64_t merchants_registered;
	uint64_t merchant_certs_renewed;
	uint64_t channels_issued;
	uint64_t issue_duplicates;
	uint64_t issue_batches;	       /* mp_issue_batch calls sent */
	uint64_t issue_batched;	       /* IssueRequests in them */
	uint64_t issue_queue_refusals; /* refused: [db] max_queue requests already waiting */
	uint64_t issue_queue_expired;  /* answered timed out while queued */
	uint64_t issue_batch_splits;   /* batches past the statement timeout, sent again halved */
	uint64_t claims_credited;
	uint64_t redeems;
	uint64_t requests_refused;
	uint64_t bad_chain_hashes;	    /* charged to merchants' budgets */
	uint64_t bad_chain_budget_refusals; /* Redeems refused: budget exhausted */
	uint64_t worker_queue_refusals;	    /* requests refused: worker queue full */
	uint64_t signatures_worker;	    /* statements signed on the worker pool */
	uint64_t verifications_worker;	    /* statements verified on the worker pool */
	uint64_t redeem_timeouts;	    /* Redeems answered LIMIT: statement timeout */
	uint64_t unroutable_requests;	    /* requests of a kind the broker does not serve */
	uint64_t refunds;		    /* RefundRequests answered OK */
	uint64_t refund_duplicates;	    /* ... answered DUPLICATE_OK */
};

/* unroutable.c: lines about unroutable requests beyond each connection's first */
struct unroutable_log {
	uint64_t logged_at; /* when the last such line was written (seconds), 0: never */
	uint64_t unlogged;  /* requests since then without a line of their own */
};

#define BROKER_KEY_CACHE_SIZE 4096

struct key_cache_entry {
	uint8_t account_id[MP_ID_LEN];
	uint8_t pk[MP_PK_LEN];
	bool used;
};

/* RegisterAccount admission per peer address (register_limit.c over ratelimit.c). */
struct register_limit {
	struct ratelimit *buckets;
	uint64_t refused;
	uint64_t logged_at, unlogged; /* refusals are logged at most once a second */
};

struct broker {
	struct event_base *base;
	struct broker_config cfg;
	struct mp_key key;
	uint8_t key_id[MP_KEY_ID_LEN];
	SSL_CTX *tls;
	struct mp_listener *listener;
	struct register_limit register_limit;
	struct unroutable_log unroutable_log;
	struct mp_admin *admin;
	struct db_pool *db;
	struct issue_batcher *issues; /* issue_batch.c: IssueRequests stored in batches */
	struct mp_hasher *hasher;
	struct mp_workers *workers;
	struct bad_chain_budget *bad_chain;
	struct sweep *sweep;		    /* sweep.c: expiry and finalisation */
	const char *config_path;	    /* -c: read again on reload */
	bool failed;			    /* start-up failed inside the loop: exit 1 */
	struct mp_service *service;	    /* READY=1, STATUS=, watchdog (service.c) */
	struct mp_reload *reload;	    /* SIGHUP, admin reload */
	struct mp_drain *drain;		    /* SIGTERM, SIGINT, admin shutdown */
	struct mp_cert_expiry *cert_expiry; /* warnings ahead of the TLS certificate expiring */
	uint64_t started_mono;		    /* mp_monotonic_s() at start, for uptime */
	struct mp_clock clock;		    /* protocol time (clock.h) */
	struct broker_stats stats;
	struct mp_metrics *metrics;	      /* broker_metrics.c: everything the admin
					       * `metrics` and the HTTP port show */
	struct mp_metrics_http *metrics_http; /* NULL: [metrics] http_listen not set */
	struct key_cache_entry key_cache[BROKER_KEY_CACHE_SIZE];
};

/* The broker's effective time: every deadline it evaluates, in C or in the database (as the
 * SQL functions' p_now), is against this clock. */
static inline uint64_t broker_now(const struct broker *b)
{
	return mp_clock_now(&b->clock);
}

/* key_cache.c: registered account keys (they never change) */
bool key_cache_get(const struct broker *b, const uint8_t account_id[MP_ID_LEN],
		   uint8_t pk[MP_PK_LEN]);
void key_cache_put(struct broker *b, const uint8_t account_id[MP_ID_LEN],
		   const uint8_t pk[MP_PK_LEN]);

/* A request being answered asynchronously: the connection is held until the reply. */
struct broker_call {
	struct broker *b;
	struct mp_conn *conn;
	uint64_t request_id;
};

struct broker_call *broker_call_new(struct broker *b, struct mp_conn *conn, const MpEnvelope *req);
/* Send env (its version and request_id are filled in) and release the call. */
void broker_call_reply(struct broker_call *call, MpEnvelope *env);
void broker_call_free(struct broker_call *call);

MpStatus *broker_status(MpStatus *st, MpCode code, const char *detail);

/* One file per request. */
void handle_register_account(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_register_merchant(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_issue(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_redeem(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_bind(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_cap_notice(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_segment_claim(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_refund(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_dispute(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_open_disputes(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_dispute_key(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_dispute_state(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_release(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void handle_forced_closes(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
/* unroutable.c: MALFORMED "not a broker request", logged within limits; the per-connection
 * state it keeps (mp_conn_data) is made at open and freed at close. */
void handle_unroutable(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
void broker_peer_open(struct mp_conn *c);
void broker_peer_close(struct mp_conn *c);

bool broker_admin_open(struct broker *b);
bool broker_config_load(struct broker_config *cfg, const char *path, char *err, size_t errlen);
/* Seconds a MerchantCert lives: merchant_cert_lifetime_s if set, else merchant_cert_days. */
uint64_t broker_merchant_cert_lifetime(const struct broker_config *cfg);
void broker_config_free(struct broker_config *cfg);
/* Every configuration key with its default, in `format` (common/config_doc.h). */
bool broker_config_doc(FILE *out, enum mp_cfg_doc_format format);
bool broker_listen(struct broker *b, const char *host, uint16_t port);
/* The listener's and the admission limits' counters, Prometheus text appended at out. */
/* broker_metrics.c: registers every metric (after the listener, the pool and the sweep are
 * up) and opens the HTTP port if configured; false (logged) on failure. Closed before the
 * listener, the pool and the sweep are freed. */
bool broker_metrics_open(struct broker *b);
void broker_metrics_close(struct broker *b);

/* register_limit.c: false if the request was refused (answered LIMIT, logged, counted). */
bool register_limit_start(struct broker *b);
void register_limit_stop(struct broker *b);
bool register_limit_admit(struct broker *b, struct mp_conn *c, const MpEnvelope *env);

/* service.c: systemd notifications, reload and graceful stop (after the listener is up). */
bool broker_service_start(struct broker *b);
void broker_service_stop(struct broker *b);
