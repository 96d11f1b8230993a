/* merchantd: verifies off-line hash-chain payments, persists what it accepted, redeems. */
#pragma once
#include "config_doc.h"
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "clock_guard.h"
#include "metrics.h"
#include "metrics_http.h"
#include "chain.h"
#include "fault.h"
#include "net.h"
#include "net_limits.h"
#include "proto.h"
#include "service.h"
#include "sig.h"
#include "util.h"

#define MP_ORDER_REF_MAX 32

struct merchant_config {
	struct mp_service_config service;
	char *id_hex;
	char *listen;
	char *endpoint;
	char *key_file;
	char *store;
	char *broker;
	char *broker_pk_hex;
	char *currency;
	char *catalogue;       /* the catalogue file (catalogue.h), NULL: none */
	uint64_t key_deadline; /* seconds an Offer is payable (offer.h) */
	uint32_t max_jump;
	uint32_t max_bad_chain;
	uint64_t pay_margin;	   /* δ_pay, seconds */
	uint64_t t_grace;	   /* the broker's T_grace, seconds */
	uint64_t max_pay_window;   /* refuse channels whose pay_until is further away */
	uint32_t redeem_interval;  /* seconds; 0: only on demand */
	uint32_t dispute_poll;	   /* seconds between asking the broker for open disputes */
	uint32_t commit_delay_us;  /* group commit: wait this long for company; 0: adaptive */
	uint32_t commit_max;	   /* ... or this many payments */
	uint64_t t_dedupe;	   /* seconds a Pay stays in the journal at least */
	uint64_t outbox_retention; /* seconds an answered Redeem stays in the outbox */
	uint64_t goods_retention;  /* seconds an offer outlives its deadline (compact_goods.h) */
	uint32_t compact_interval; /* seconds between compactions; 0: only on demand */
	uint32_t idle_timeout;
	uint32_t handoff_timeout;    /* seconds to reach a holder and get its Handoff */
	uint32_t handoff_workers;    /* threads verifying received custody chains */
	uint32_t worker_queue;	     /* jobs waiting for one of them (chain checks, signatures) */
	struct mp_net_limits limits; /* [limits]: the wallet-facing listener */
	/* [broker]: the connection to brokerd (broker_link.c) */
	uint32_t broker_connect_timeout; /* seconds: resolve, connect, TLS handshake */
	uint32_t broker_answer_timeout;	 /* seconds per request */
	uint32_t broker_reconnect_max;	 /* seconds: longest wait between attempts */
	char *broker_resolv_conf; /* the resolver's configuration, default /etc/resolv.conf */
	/* [redeem]: what merchantd assumes of the broker's limits until a LIMIT says otherwise */
	uint32_t max_claims;	   /* claims per Redeem (MAX_CLAIMS_PER_REDEEM) */
	uint64_t hash_budget;	   /* hashes per Redeem (REDEEM_HASH_BUDGET) */
	uint32_t redeem_retry_max; /* seconds: longest wait before a failed Redeem is retried */
	uint64_t deadline_margin;  /* redeem everything this long before redeem_until */
	uint32_t deadline_check;   /* seconds between the checks for it */
	uint32_t release_poll;	   /* seconds between ForcedClose polls (release_poll.c) */
	char *tls_cert;
	char *tls_key;
	char *tls_ca;
	uint32_t tls_expiry_warning_days;
	char *admin_socket;
	char *admin_group; /* NULL: none */
	struct mp_metrics_config metrics;
	struct mp_clock_guard_config clock_guard; /* [clock] */
	/* [gateway]: the HTTP 402 gateway (gateway.h), off unless gateway_listen is set */
	char *gateway_listen;			  /* host:port for HTTP clients */
	char *gateway_upstream;			  /* host:port of the service behind it */
	char *gateway_routes;			  /* the price list (gateway_routes.h) */
	char *gateway_tls_cert, *gateway_tls_key; /* HTTPS when both are set */
	uint32_t gateway_upstream_timeout;	  /* seconds: connect, send, answer */
	uint32_t gateway_read_timeout;		  /* seconds a client may take to send a request */
	uint64_t gateway_max_body;		  /* request body bytes */
	uint64_t gateway_max_response;		  /* upstream answer body bytes */
	uint32_t gateway_max_pending;	/* requests waiting for the upstream or the commit */
	uint32_t gateway_upstream_idle; /* idle upstream connections kept for reuse */
};

/* protocol.md section 10, merchant channel: UNKNOWN -> HELD(epoch) -> HANDED_OFF | CLOSED, and
 * HELD again in a later epoch after a new Handoff naming us (handoff.c, takeover.c); CLOSED
 * after a Close we signed on the owner's CloseRequest (close.c) is final. */
enum channel_state {
	CHANNEL_UNKNOWN = 0, /* in memory only, while its first Handoff is being fetched */
	CHANNEL_HELD = 1,
	CHANNEL_EXPIRED = 2,
	CHANNEL_HANDED_OFF = 3,
	CHANNEL_CLOSED = 4,
};
const char *channel_state_name(enum channel_state s);

/* One channel this merchant holds. `last`/`w_last`/`credit`/`last_order_ref` are the pay
 * path's view: they include payments whose batch has not committed yet. The durable_* fields
 * are what the store holds (advanced when a batch's commit completes); everything reported
 * outside the pay path (OpenAck, admin methods, redemption) uses only those. */
struct segment_row;
struct purchase;
struct offer;

/* The current segment (nonce, root, owner_pk, seg_seq, seg_start, seg_head) is the last of the
 * channel's Transfer/Cap pairs, or segment 0 from the cert while there is none (segments.h). */
struct channel {
	uint8_t id[MP_ID_LEN];
	uint8_t *cert;
	size_t cert_len;
	uint8_t cert_hash[MP_HASH_LEN]; /* stmt_hash(ChannelCert): segment 0's head */
	uint8_t nonce0[MP_NONCE_LEN], root0[MP_HASH_LEN], owner0_pk[MP_PK_LEN]; /* segment 0 */
	uint8_t nonce[MP_NONCE_LEN];   /* of the current segment */
	uint8_t root[MP_HASH_LEN];     /* of the current segment */
	uint8_t owner_pk[MP_PK_LEN];   /* of the current segment */
	uint8_t seg_head[MP_HASH_LEN]; /* segments_head: the latest Transfer's hash, or cert's */
	struct segment_row *segs;      /* pairs 1..seg_seq: segs[s-1] made segment s */
	uint8_t holder0[MP_ID_LEN];    /* the cert's, or the Bind's merchant for an unbound cert */
	bool unbound;		       /* the cert has no holder0: event 0 is the Bind (bind.c) */
	uint8_t *bind;		       /* our stored Bind's bytes (unbound certs), else NULL */
	size_t bind_len;
	uint8_t *close; /* the Close we signed (state CLOSED), else NULL */
	size_t close_len;
	uint32_t n;
	uint64_t unit_value;
	uint64_t pay_until, redeem_until;
	enum channel_state state;
	uint32_t hseq, seg_seq, seg_start;
	uint32_t last;
	uint8_t w_last[MP_HASH_LEN];
	uint64_t credit;
	uint8_t last_order_ref[MP_ORDER_REF_MAX];
	uint8_t last_order_ref_len;
	bool recorded;	      /* its row is durable (false between a first Open and its commit) */
	bool handoff_pending; /* a Handoff we signed waits for its batch to commit */
	bool cap_pending;     /* a Cap we signed (the last pair) waits for its batch to commit */
	bool close_pending;   /* a Close we signed waits for its batch to commit */
	bool signing; /* chan_sign.h: its Close, Cap or Handoff is at a worker: requests LIMIT */
	bool gateway_hold;    /* gateway.h: a paid HTTP request waits for its upstream: LIMIT */
	bool fetching;	      /* takeover.c: asking the holder for a Handoff */
	uint32_t durable_seg; /* the segment of the durable point */
	uint32_t durable_last;
	uint8_t durable_w[MP_HASH_LEN];
	uint64_t durable_credit;
	uint8_t durable_order_ref[MP_ORDER_REF_MAX];
	uint8_t durable_order_ref_len;
	MpCode durable_code;	   /* the answer to the Pay at durable_last */
	uint64_t durable_price;	   /* the price that Pay paid, else 0 */
	uint32_t redeemed_end;	   /* the broker's credited_end for our epoch (durable) */
	uint32_t redeem_pass;	   /* redeemer: the pass of redemption that last claimed it */
	bool too_late;		   /* the broker answered TOO_LATE: never claimed again */
	bool risk_logged;	   /* redeem_deadline.c: its at-risk warning was logged */
	bool custody_unconfirmed;  /* restore.h: held when the store was restored; not served */
	int64_t journal_head;	   /* its newest committed journal row, 0: not known (store.h) */
	uint64_t unredeemed_since; /* redeem_lag.h: when its first durable Pay above
				      redeemed_end was journalled; meaningful only while
				      durable_last > redeemed_end */
	uint64_t next_since;	   /* redeem_lag.h: the first durable Pay's above claim_top */
	uint32_t claim_top;	   /* redeem_lag.h: the point a Redeem claims it up to, 0: none */
	struct purchase *purchase; /* purchase.h: the goods being bought with it, or NULL */
	struct offer *offer;	   /* offer.h: its newest offer (key release), or NULL */
	bool offer_busy;	   /* offer.c: an offer for it is being hashed or signed */
	struct channel *next;	   /* hash bucket */
};

struct order {
	uint8_t ref[MP_ORDER_REF_MAX];
	uint8_t ref_len;
	uint64_t price;
	bool paid;	   /* pay path: paid by an accepted Pay, durable or not */
	bool recorded;	   /* its row is durable (order.create answered) */
	bool paid_durable; /* the Pay that paid it is durable: what order.show reports */
	struct order *next;
};

struct table {
	void **buckets;	 /* nbuckets in use, room for capacity */
	size_t nbuckets; /* in use: base + split (table.c, linear hashing) */
	size_t base;	 /* a power of two */
	size_t split;	 /* the next bucket to split, below base */
	size_t capacity; /* slots allocated */
	size_t count;	 /* entries */
};

/* What handed a group-commit batch to the store thread (batch.c). */
enum batch_trigger {
	BATCH_IDLE,	    /* due when its entry arrived, and no batch was committing */
	BATCH_AFTER_COMMIT, /* due while a batch committed: handed over when that one completed */
	BATCH_TIMER,	    /* commit_delay_us elapsed with no batch committing */
};
#define BATCH_TRIGGERS (BATCH_TIMER + 1)

/* What the HTTP 402 gateway did with a request (gateway.c), counted in merchant_stats. */
enum gateway_result {
	GW_PAID,	/* upstream answered, payment committed, answer relayed */
	GW_FREE,	/* a route of price 0: forwarded without payment */
	GW_REQUIRED,	/* no X-Payment: 402 with the requirements */
	GW_REFUSED,	/* X-Payment refused: nothing changed */
	GW_NOT_CHARGED, /* verified, not charged: the upstream failed, timed out or answered
			 * >= 500, 408 or 429; the channel no longer payable; no room in time;
			 * the merchant stopping */
	GW_NO_ROUTE,	/* 400 or 404 */
	GW_BUSY,	/* 503 before any check: too many in flight, stopping, out of memory */
	GW_RESULTS
};

struct merchant_stats {
	uint64_t pays_ok, pays_underpaid, pays_duplicate, pays_refused, bad_chain;
	uint64_t store_busy; /* requests refused while the store was behind */
	uint64_t forced_closes_applied, forced_closes_refused; /* release_poll.c */
	uint64_t release_redeems; /* ... redemptions started for a PENDING release */
	uint64_t batches, opens, redeems_sent, claims_credited, amount_credited;
	uint64_t handoffs_signed, handoffs_taken, handoff_refusals;
	uint64_t handoff_redirects; /* Opens answered HANDED_OFF with a verified redirect */
	uint64_t caps_signed, transfer_refusals, stale_segment;
	uint64_t closes_signed, close_refusals;
	uint64_t receipts_signed, receipt_refusals;			/* receipt.c */
	uint64_t chunks_served, chunk_bytes, chunk_refusals, purchases; /* chunk.c */
	uint64_t offers, keys_released;					/* offer.c, key.c */
	uint64_t offers_cancelled;  /* OfferCancels recorded (offer_cancel.c) */
	uint64_t signatures_worker; /* statements signed on the worker pool (chan_sign.h) */
	uint64_t batches_by_trigger[BATCH_TRIGGERS]; /* batches handed to the store thread */
	uint64_t gateway[GW_RESULTS];		     /* gateway.c: requests by result */
	uint64_t gateway_in_flight; /* gateway.c: requests waiting for the upstream or commit */
};

/* Metrics the pay path and the redeemer update on the loop thread (merchant_metrics.c);
 * NULL until registered and again once the registry is freed (every update checks). */
#define MERCHANT_PAY_CODES (MP_ST(INTERNAL) + 1)
struct merchant_hot_metrics {
	struct mp_histogram *pay_latency;   /* accepted Pays: frame read -> answer sent */
	struct mp_histogram *batch_entries; /* entries per committed group-commit batch */
	struct mp_histogram *batch_seconds; /* submit -> committed, per batch */
	struct mp_counter *pay_answers[MERCHANT_PAY_CODES]; /* Pay answers by status */
};

struct store;
struct store_thread;
struct batch_pipe;
struct compactor;
struct redeemer;
struct takeover;
struct binding;
struct cap_outbox;
struct dispute_answer;
struct evdns_base;
struct redeem_deadline;
struct gateway;

struct merchant {
	struct event_base *base;
	struct merchant_config cfg;
	uint8_t mid[MP_ID_LEN];
	struct mp_key key;
	MpSigned *registration; /* register.h: our RegisterMerchant, signed once at start */
	uint8_t broker_pk[MP_PK_LEN];
	uint8_t broker_key_id[MP_KEY_ID_LEN];
	uint64_t cert_valid_until; /* our MerchantCert; 0 until registered */
	uint64_t cert_received_at; /* when we received it: its life is counted from here */
	bool cert_confirmed;	   /* the broker answered our RegisterMerchant in this run */
	bool failed;		   /* stopped on a condition no retry can fix: exit status 1 */
	SSL_CTX *server_tls, *client_tls;
	struct mp_listener *listener;
	struct mp_admin *admin;
	struct store *store;		   /* the loop's connection: reads only */
	struct store_thread *store_thread; /* every write: commits, outbox, compaction */
	struct table channels;		   /* struct channel, by id */
	struct redeem_deadline *deadline;  /* redeem_deadline.c */
	struct release_poll *release_poll; /* release_poll.c */
	struct table orders;		   /* struct order, by ref */
	size_t channels_recorded;	   /* channels whose row is durable */
	struct batch_pipe *batch;
	struct compactor *compactor;
	struct journal_sync *journal_sync; /* journal_sync.h */
	struct redeemer *redeemer;
	struct mp_hasher *hasher;
	struct mp_workers *workers;  /* custody chain verification, off the loop */
	struct catalogue *catalogue; /* the goods on sale (catalogue.h), never NULL once started */
	struct evdns_base *dns;	     /* takeover.c: resolves holders' endpoints on the loop */
	struct takeover *takeovers;  /* takeover.c: in progress */
	struct binding *binds;	     /* bind.c: asking the broker for a Bind */
	size_t n_binds;
	struct cap_outbox *cap_outbox; /* cap_outbox.c: Caps not yet acknowledged by the broker */
	struct dispute_answer *dispute_answer; /* dispute_answer.c: keys for open disputes */
	const char *config_path;	       /* -c: read again on reload */
	struct mp_service *service;	       /* READY=1, STATUS=, watchdog (service.c) */
	struct mp_reload *reload;	       /* SIGHUP, admin reload */
	struct mp_drain *drain;		       /* SIGTERM, SIGINT, admin shutdown */
	struct mp_cert_expiry *cert_expiry;    /* warnings ahead of the TLS certificate expiring */
	uint64_t started_mono;		       /* mp_monotonic_s() at start, for uptime */
	struct mp_clock clock;		       /* protocol time (clock.h) */
	struct mp_clock_guard *clock_guard;    /* offset against the broker (clock_guard.h) */
	struct merchant_stats stats;
	struct mp_metrics *metrics;	      /* merchant_metrics.c */
	struct mp_metrics_http *metrics_http; /* NULL: [metrics] http_listen not set */
	struct merchant_hot_metrics hot;
	struct gateway *gateway; /* gateway.h: NULL when off */
	enum mp_fault fault;	 /* fault.h: test-only, from MP_FAULT at start-up */
	bool start_restored;	 /* --restored: mark the channels held now (restore.h) */
	struct {
		uint64_t restored_at; /* protocol time of the latest --restored start; 0: never */
		uint64_t unconfirmed; /* channels whose custody is unconfirmed (restore.h) */
	} restore;
};

/* config.c */
bool merchant_config_load(struct merchant_config *cfg, const char *path, char *err, size_t errlen);
void merchant_config_free(struct merchant_config *cfg);
/* Every configuration key with its default, in `format` (common/config_doc.h). */
bool merchant_config_doc(FILE *out, enum mp_cfg_doc_format format);

/* table.c: id-keyed hash tables of channels and orders */
bool table_init(struct table *t, size_t nbuckets);
struct channel *channel_find(struct table *t, const uint8_t id[MP_ID_LEN]);
void channel_insert(struct table *t, struct channel *ch);
struct order *order_find(struct table *t, const uint8_t *ref, size_t len);
void order_insert(struct table *t, struct order *o);
void table_free_channels(struct table *t);
/* A channel's memory (cert, Bind, segment pairs). */
void channel_free(struct channel *ch);
void table_free_orders(struct table *t);
#define TABLE_FOREACH(t, type, var)                                                                \
	for (size_t var##_b = 0; var##_b < (t)->nbuckets; var##_b++)                               \
		for (type *var = (t)->buckets[var##_b]; var; var = var->next)

/* The merchant's protocol time. */
static inline uint64_t merchant_now(const struct merchant *m)
{
	return mp_clock_now(&m->clock);
}

/* server.c */
bool merchant_listen(struct merchant *m);
/* The listener's counters, Prometheus text at out. */
/* merchant_metrics.c: registers every metric (after the listener, the redeemer, the Cap
 * outbox and the deadline timer are up) and opens the HTTP port if configured; false (logged)
 * on failure. Closed first at shutdown (the hot pointers are cleared). */
bool merchant_metrics_open(struct merchant *m);
void merchant_metrics_close(struct merchant *m);
/* A Pay answered with code (loop thread). */
static inline void merchant_count_pay_answer(struct merchant *m, MpCode code)
{
	if ((unsigned)code < MERCHANT_PAY_CODES && m->hot.pay_answers[code])
		mp_counter_inc(m->hot.pay_answers[code]);
}
/* A broker answer carrying broker_time (0: none) arrived now: the clock guard (its offset
 * against the broker, clock_guard.h). */
void merchant_broker_time_seen(struct merchant *m, uint64_t broker_time);
void merchant_send(struct mp_conn *c, uint64_t request_id, MpEnvelope *env);
MpStatus *merchant_status(MpStatus *st, MpCode code, const char *detail);

/* open.c, pay.c, handoff.c (holder side), takeover.c (successor side) */
void handle_open(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
void handle_handoff(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
/* transfer.c: wallet A's TransferReq (holder side of a customer-to-customer transfer). */
void handle_transfer(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
/* close.c: the owner's CloseRequest (holder side of an early close). */
void handle_close(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
/* receipt.c: a wallet's ReceiptReq for a payment we durably accepted. */
void handle_receipt(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
void handle_chunk(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
/* offer.c, key.c: key release (offer.h). */
void handle_offer(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
void handle_key(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
void handle_offer_cancel(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
/* Pay's steps 1-5 for ch (NULL: unknown): OK also when j <= ch->last (a retry or a stale
 * index, the caller's to tell); else the code and *detail. */
MpCode merchant_pay_precheck(const struct merchant *m, uint32_t seg_seq, uint32_t j,
			     const struct channel *ch, const char **detail);
/* Why requests that would move ch's point are answered LIMIT now (its statement being signed,
 * chan_sign.h; a paid HTTP request waiting for its upstream, gateway.h), or NULL. */
const char *channel_busy(const struct channel *ch);
/* Pay's step 1 after the channel is found (also for ChunkReq): OK if we hold ch and serve it;
 * else the code and *detail. */
MpCode merchant_holding(const struct channel *ch, const char **detail);
/* An Open carrying a Move for a channel we do not hold: ask the holder (cc verified). */
void takeover_start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		    const Micropay__V1__ChannelCert *cc, struct channel *ch);
/* At shutdown: every takeover in progress ends (its Open answered INTERNAL). */
void takeover_stop_all(struct merchant *m);
void reply_open(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
		struct merchant *m, const struct channel *ch);
/* The same with Status.evidence (bind.c: NOT_HOLDER carrying another merchant's Bind). */
void reply_open_evidence(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
			 struct merchant *m, const MpSigned *evidence);
/* A verified Open of a channel we hold or will hold from now on: acknowledged once its record
 * is durable. bind: our Bind for a cert without holder0 (stored with the record), else NULL.
 * rows: for a channel new here, its verified Transfer/Cap pairs 1..n_rows (a channel
 * transferred through the broker before its Bind): the last is its current segment, and the
 * pairs are stored with the record (copied). */
void open_hold(struct merchant *m, struct mp_conn *c, uint64_t request_id, const MpSigned *cert,
	       const Micropay__V1__ChannelCert *cc, const MpSigned *bind,
	       const struct segment_row *rows, size_t n_rows);
/* bind.c: an Open with a Move for an unbound channel new here: ask the broker for the Bind. */
void bind_start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		const Micropay__V1__ChannelCert *cc);
/* At shutdown, after the broker link is gone: every Bind still awaited ends (INTERNAL). */
void bind_stop_all(struct merchant *m);
void handle_pay(struct merchant *m, struct mp_conn *c, const MpEnvelope *env);
void reply_pay(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
	       uint32_t last, uint64_t credit, uint64_t price);

/* batch.c: group commit (batch.h). batch_flush asks for the filling batch to be committed
 * as soon as the store thread is free rather than after commit_delay_us; it returns at once
 * (acknowledged = durable). */
bool batch_init(struct merchant *m);
void batch_flush(struct merchant *m);
void batch_free(struct merchant *m);

/* redeemer.c: registration with the broker and batched redemption */
struct redeemer *redeemer_new(struct merchant *m);
/* No further steps (a store write completing at shutdown sends nothing): before batch_drain. */
void redeemer_stop(struct redeemer *r);
void redeemer_free(struct redeemer *r);
/* The one connection to the broker (also used by bind.c). */
struct broker_link *redeemer_link(struct redeemer *r);
/* Start a redemption round now; done(arg, summary) is called when it ends. */
typedef void (*redeem_done_fn)(void *arg, bool ok, const char *summary, uint64_t credited);
void redeemer_run(struct redeemer *r, redeem_done_fn done, void *arg);
/* The clock guard's probe (clock_guard.h): RegisterMerchant, whose answer carries broker_time,
 * unless one is already on its way; the link is asked for if it is down. */
void redeemer_probe_clock(void *r);
/* Prometheus lines: unredeemed amount and age, Redeem and broker connection counters. Returns
 * the length written (truncated to len - 1). */
void redeemer_metrics_register(struct redeemer *r, struct mp_metrics *reg);

bool merchant_admin_open(struct merchant *m);
void *merchant_peer_new(void);

/* merchant_cert.c: our MerchantCert (accept, load, renewal, CONFLICT) */
/* Verify cert (broker key, our id and key): its valid_until. Nothing is adopted or stored. */
bool merchant_cert_check(const struct merchant *m, const MpSigned *cert, uint64_t *valid_until);
/* Make a cert the one we use (once it is durable: register.c stores it first). */
void merchant_cert_adopt(struct merchant *m, uint64_t valid_until, uint64_t received_at);
/* Our current MerchantCert's stored bytes (malloc'd); false if we have none. */
bool merchant_own_cert(struct merchant *m, uint8_t **bytes, size_t *len);
/* The stored cert at start-up (false only on a store error). */
bool merchant_cert_load(struct merchant *m);
/* Renewal due (common/cert_renewal.h: the longest channel must still fit), or expired. */
bool merchant_cert_renewal_due(const struct merchant *m, uint64_t now);
/* A RegisterMerchant is wanted: no cert, not yet confirmed in this run, or renewal due. */
bool merchant_cert_wanted(const struct merchant *m, uint64_t now);
/* Seconds between renewal checks: a hundredth of the life, 1 s .. 1 h. */
unsigned merchant_cert_check_interval(const struct merchant *m);
/* The broker answered CONFLICT carrying its stored cert: log both sides and stop. */
void merchant_cert_conflict(struct merchant *m, const MpSigned *stored, const char *detail);

/* service.c: systemd notifications, reload and graceful stop (after the listener is up). */
bool merchant_service_start(struct merchant *m);
void merchant_service_stop(struct merchant *m);
/* TLS contexts from cfg's [tls] files: the server one must name this merchant (CN m-<id>).
 * False with err (nothing allocated) otherwise. */
bool merchant_tls_load(const struct merchant *m, const struct merchant_config *cfg,
		       SSL_CTX **server, SSL_CTX **client, char *err, size_t errlen);
