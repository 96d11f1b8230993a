/* walletd: the daemon context, its channels and the handlers' entry points. */
#pragma once
#include "config_doc.h"
#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "clock_guard.h"
#include "metrics.h"
#include "metrics_http.h"
#include "chain.h"
#include "chainstore.h"
#include "net.h"
#include "proto.h"
#include "service.h"
#include "sig.h"
#include "util.h"

#include "http_fetch.h"

struct mp_admin;
struct mp_admin_req;
struct wallet_proxy;
struct wstore;

#define WALLET_N_MAX	     (1u << 20) /* protocol.md section 11: N_MAX */
#define WALLET_PAY_MARGIN    (2 * 300)	/* wallets stop paying at pay_until - 2 * delta_pay */
#define WALLET_ORDER_REF_MAX 32

struct wallet_config {
	struct mp_service_config service;
	char *store;
	char *account_key;     /* NULL: the key is generated and kept in the store */
	char *passphrase_file; /* NULL: a plain store (docs/wallet-store.md) */
	char *broker;
	char *broker_pk_hex;
	char *currency;
	uint32_t checkpoint_interval;
	uint32_t idle_timeout;
	uint32_t refund_check_interval;	 /* seconds; 0: only on the admin method refund */
	uint32_t dispute_check_interval; /* seconds; 0: only on the admin method dispute */
	/* buy within a budget (buy_budget.c): the escrow buy may commit in channels it issues by
	 * itself, in all (0: never); each such channel's least escrow, unit value and days. */
	uint64_t auto_issue_budget, auto_issue_channel, auto_issue_unit_value;
	uint32_t auto_issue_days;
	uint64_t http_max_price;    /* http_pay.c: the most one request may cost unless told */
	char *proxy_listen;	    /* http_proxy.c: loopback host:port, NULL: no proxy */
	uint64_t proxy_host_budget; /* ... what it may pay each host in all */
	char *tls_ca;
	char *admin_socket;
	char *admin_group; /* NULL: none */
	struct mp_metrics_config metrics;
	struct mp_clock_guard_config clock_guard; /* [clock] */
	/* Derived at load. */
	uint8_t broker_pk[MP_PK_LEN];
	char broker_host[256];
	uint16_t broker_port;
};

/* protocol.md section 10, wallet channel; docs/transfer.md:
 *
 *   ISSUING --cert checked--> ACTIVE --transfer.send: Transfer signed and stored--> TRANSFERRING
 *      |                        ^                         --Cap checked, bundle stored-->
 * TRANSFERRED_OUT
 *      +--refused--> FAILED     |
 *   (offer: OFFERED, in the offers table) --transfer.accept: bundle verified--> ACTIVE(segment s)
 *
 *   ACTIVE --close: CloseRequest signed and stored--> CLOSING --the holder's Close checked and
 *   stored--> CLOSED (close.c), shown REFUND_PENDING until the early refund (refund_early.c)
 *
 * FAILED when the broker refused the issue (nothing debited). CLOSING and CLOSED come from the
 * store's closes table (store_close.h), not from the channels row.
 *
 *   any --release answered FORCED: the broker's ForcedClose checked and stored--> RELEASED
 *   (release.c; from table forced_closes at start, store_release.h): closed by the broker, its
 *   rest refunded with the ForcedClose; pay, transfer, close and buy refuse it.
 *
 * Refund (refund.c; not a column of the channels table): an ACTIVE channel past pay_until shows
 * as REFUND_PENDING, and as REFUNDED once the broker answered the refund's result:
 *   ACTIVE --pay_until--> REFUND_PENDING --refund: OK / DUPLICATE_OK--> REFUNDED
 *   CLOSED (REFUND_PENDING) --early refund: OK / DUPLICATE_OK--> REFUNDED */
enum wch_state {
	WCH_ISSUING,
	WCH_ACTIVE,
	WCH_FAILED,
	WCH_TRANSFERRING,
	WCH_TRANSFERRED_OUT,
	WCH_CLOSING,
	WCH_CLOSED,
	WCH_RELEASED,
};

struct wchannel {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t issue_req_id[MP_ID_LEN];
	uint8_t holder0[MP_ID_LEN];
	uint8_t holder[MP_ID_LEN]; /* the merchant holding the channel (custody epoch `epoch`) */
	uint32_t epoch;
	MpSigned *holder_cert; /* its MerchantCert (from its OpenAck); NULL until one is known */
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t n;
	uint32_t days;
	uint32_t interval; /* checkpoint interval this channel's chain was stored with */
	uint64_t unit_value;
	char currency[4];
	enum wch_state state;
	uint32_t last;	 /* highest index the merchant acknowledged */
	uint32_t sent;	 /* highest index ever persisted as an in-flight Pay */
	uint64_t credit; /* channel credit at the merchant, from the last OpenAck or PayAck */
	uint64_t issued_at, pay_until, redeem_until; /* from the cert; 0 until ACTIVE */
	MpSigned *request;			     /* the exact signed IssueRequest */
	MpSigned *cert;	   /* the checked ChannelCert; NULL until ACTIVE */
	char *detail;	   /* why the last issue attempt did not finish */
	unsigned inflight; /* in-flight Pays on record */
	bool busy;	   /* a pay or transfer.send is running on this channel */
	bool http_ready; /* http_pay.c: opened at its holder in this run, nothing in flight since */
	/* The current segment (protocol.md section 4; docs/transfer.md): segment 0 from the cert,
	 * or the segment this wallet received by transfer. Its chain is this wallet's: absolute
	 * index j is paid with u_{j - seg_start}, of a chain of seg_len words whose checkpoints
	 * are stored under chain_key (channel_id for segment 0). nonce is that chain's nonce and
	 * the store's owner_seed that segment's owner key. */
	uint32_t seg_seq, seg_start, seg_len;
	uint8_t chain_key[MP_ID_LEN];
	MpSigned **segments; /* Transfer 1, Cap 1, ... of segments 1..seg_seq */
	size_t n_segments;
	bool refunded;		    /* refund.c: the broker answered the refund's result */
	uint64_t refund_amount;	    /* ... that amount */
	uint64_t refund_not_before; /* the broker's TOO_EARLY: not to be asked again before */
	bool refund_busy;	    /* the wallet's own refund request is in flight */
	struct event *refund_retry; /* refund_early.c: the next try of a CLOSED channel's refund */
	unsigned refund_backoff;    /* ... its delay in seconds (doubles, at most 60) */
	struct wallet *refund_wallet; /* ... the wallet, for the timer's callback */
	int claim_state; /* received channels: enum wclaim_answer (0 claim not acknowledged
			    yet, 1 acknowledged, 2 refused for good: shown CLAIM_REFUSED, not
			    spendable); -1 segment 0 (no claim) */
	bool claim_busy; /* segment_claim.c: its SegmentClaimReq is on its way to the broker */
	struct wchain chain;
	struct wchannel *next;
};

struct wallet_stats {
	uint64_t channels_issued;
	uint64_t issue_attempts;
	uint64_t pays_sent;
	uint64_t pays_resent;
	uint64_t units_paid;
	uint64_t pays_refused;
};

struct wallet {
	struct event_base *base;
	struct wallet_config cfg;
	struct wstore *store;
	struct mp_key account_key;
	bool registered;
	uint8_t account_id[MP_ID_LEN];
	SSL_CTX *tls;
	struct evdns_base *dns; /* resolves broker and merchant host names on the loop */
	struct mp_admin *admin;
	struct mp_hasher *hasher;
	struct mp_workers *workers; /* verifies received bundles off the loop */
	struct wchannel *channels;
	struct wallet_op *ops;	     /* network exchanges in progress */
	struct mp_http_client *http; /* http_fetch.h: HTTP exchanges to gateways */
	struct wallet_proxy *proxy;  /* http_proxy.c: the forward proxy, NULL when off */
	struct event *refund_timer;  /* refund.c: asks for refunds on its own */
	struct event *dispute_timer; /* dispute.c: disputes offers whose key did not come */
	unsigned disputes_in_flight; /* ... its own requests still on their way */
	struct event *claim_timer;   /* segment_claim.c: resends SegmentClaims cut on their way */
	unsigned claim_backoff;	     /* ... its next delay in seconds (doubles, at most 60) */
	const char *config_path;     /* -c: read again on reload */
	struct mp_service *service;  /* READY=1, STATUS=, watchdog (service.c) */
	struct mp_reload *reload;    /* SIGHUP, admin reload */
	struct mp_drain *drain;	     /* SIGTERM, SIGINT, admin shutdown */
	bool stopping;		     /* no new network exchange once set */
	uint64_t started_mono;	     /* mp_monotonic_s() at start, for uptime */
	struct mp_clock clock;	     /* protocol time (clock.h) */
	struct wallet_stats stats;
	struct mp_metrics *metrics;	      /* wallet_metrics.c */
	struct mp_metrics_http *metrics_http; /* NULL: [metrics] http_listen not set */
	struct mp_clock_guard *clock_guard;   /* offset against the broker (clock_guard.h) */
	bool clock_probing;		      /* clock_probe.c: a probe is on its way */
	bool rewrapping;		      /* passphrase.c: a passphrase.change is running */
};

/* wallet_metrics.c: registers every metric and opens the HTTP port if configured; false
 * (logged) on failure. Closed first at shutdown. */
bool wallet_metrics_open(struct wallet *w);
void wallet_metrics_close(struct wallet *w);
/* A broker answer carrying broker_time (0: none) arrived now: the clock guard. */
void wallet_broker_time_seen(struct wallet *w, uint64_t broker_time);
/* clock_probe.c: the clock guard's probe (arg: the wallet). */
void wallet_clock_probe(void *arg);

const char *wch_state_name(enum wch_state s);
bool wch_state_parse(const char *name, enum wch_state *out);

/* Channels (channel.c). */
struct wchannel *wallet_channel_find(struct wallet *w, const uint8_t id[MP_ID_LEN]);
unsigned wallet_channel_count(const struct wallet *w);
void wallet_channel_free(struct wchannel *ch);
/* The chain word w_j of the channel's current segment for absolute index j (seg_start <= j <=
 * min(n, seg_start + seg_len); seg_start gives the segment's base word, the root). */
bool wallet_channel_word(struct wallet *w, struct wchannel *ch, uint32_t j,
			 uint8_t out[MP_HASH_LEN]);
json_t *wallet_channel_json(const struct wallet *w, const struct wchannel *ch);
/* The state a user sees: wch_state_name, or REFUND_PENDING / REFUNDED for an ACTIVE channel
 * past pay_until or a CLOSED one / refunded, or CLAIM_REFUSED for a received channel whose
 * SegmentClaim the broker refused for good. */
const char *wallet_channel_state_name(const struct wallet *w, const struct wchannel *ch);
/* A received channel whose SegmentClaim the broker refused for good (CLOSED: the channel was
 * closed early; CONFLICT: another claim or Cap of that segment is stored): marks it (claim_state,
 * detail from the broker's status text). Pay, buy, transfer.send, close and refund refuse it with
 * wallet_channel_claim_refusal (NULL for any other channel). */
void wallet_channel_claim_refused(struct wchannel *ch, const char *status);
const char *wallet_channel_claim_refusal(const struct wchannel *ch);
/* The highest index the channel may have spent: the merchant's acknowledged last, or a Pay in
 * flight above it (the wallet never reuses a word it may have sent). */
static inline uint32_t wallet_channel_spent(const struct wchannel *ch)
{
	return ch->last > ch->sent ? ch->last : ch->sent;
}
/* The wallet's protocol time. */
static inline uint64_t wallet_now(const struct wallet *w)
{
	return mp_clock_now(&w->clock);
}
/* segment.c: read the channel's pairs and claim state from the store and derive seg_head. */
bool wallet_segment_load(struct wallet *w, struct wchannel *ch);
/* stmt_hash of the latest Transfer of the pairs, or of the cert when there are none. */
void wallet_segment_head(const struct wchannel *ch, uint8_t head[MP_HASH_LEN]);
/* The current segment as JSON {seg_seq, start, len, owner_pk?, head}. */
json_t *wallet_segment_json(const struct wchannel *ch);
/* The owner key of the channel's current segment (from the store). */
bool wallet_owner_key(struct wallet *w, const struct wchannel *ch, struct mp_key *key);

/* One network exchange in progress: the connection it owns, for shutdown. */
struct wallet_op {
	struct mp_conn *conn;
	struct wallet_op *next;
};
void wallet_op_add(struct wallet *w, struct wallet_op *op);
void wallet_op_remove(struct wallet *w, struct wallet_op *op);

/* A one-shot request to the broker over TLS (broker.c). fn gets the reply, or NULL and a reason
 * (unreachable, certificate not CN broker, connection lost). The reply is freed after fn. */
typedef void (*wallet_broker_fn)(void *arg, const MpEnvelope *reply, const char *error);
/* body is MP_BODY(REGISTER_ACCOUNT_REQ), ISSUE_REQ, TRANSFER_REQ, REFUND_REQ or RELEASE_REQ;
 * stmt is copied.
 * False (with err) if the connection could not even start; fn is then never called. */
bool wallet_broker_send(struct wallet *w, int body, const MpSigned *stmt, wallet_broker_fn fn,
			void *arg, char *err, size_t errlen);
/* A SegmentClaimReq (its exact packed bytes) to the broker; as wallet_broker_send. */
bool wallet_broker_send_claim(struct wallet *w, const uint8_t *request, size_t len,
			      wallet_broker_fn fn, void *arg, char *err, size_t errlen);
/* A DisputeReq (its exact packed bytes: dispute.c); as wallet_broker_send. */
bool wallet_broker_send_dispute(struct wallet *w, const uint8_t *request, size_t len,
				wallet_broker_fn fn, void *arg, char *err, size_t errlen);
/* "OK", "INSUFFICIENT_FUNDS: detail", ... of a Status (NULL: "no status"). */
void wallet_status_text(const MpStatus *st, char *out, size_t len);

/* Handlers (one file each). */
void wallet_admin_register(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_issue(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_issue_retry(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_pay(struct mp_admin_req *req, json_t *params, void *ctx);
/* http_proxy.c: the forward proxy (docs/gateway.md), when [proxy] listen is set; stopped
 * before the HTTP exchanges are aborted. */
bool wallet_proxy_start(struct wallet *w);
/* http.spending: what each host was paid, the budget and the proxy's port. */
void wallet_admin_http_spending(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_proxy_stop(struct wallet *w);
/* No proxied request waits for its answer (or no proxy). */
bool wallet_proxy_idle(const struct wallet *w);
/* http_pay.c: fetch a URL, paying an HTTP 402 gateway (docs/gateway.md). */
void wallet_admin_http(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_release(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_transfer_offer(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_transfer_send(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_transfer_accept(struct mp_admin_req *req, json_t *params, void *ctx);
/* close.c: early close at the holder (docs/close.md). */
void wallet_admin_close(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_buy(struct mp_admin_req *req, json_t *params, void *ctx);    /* buy_admin.c */
void wallet_admin_budget(struct mp_admin_req *req, json_t *params, void *ctx); /* budget_admin.c */
/* At start-up: CLOSING or CLOSED for every channel with a stored close; false on a store
 * error. */
bool wallet_close_load(struct wallet *w);
/* release.c: at start, after wallet_close_load: channels with a stored ForcedClose RELEASED. */
bool wallet_release_load(struct wallet *w);
void wallet_admin_refund(struct mp_admin_req *req, json_t *params, void *ctx);
/* passphrase.c: the store's data key re-wrapped under [wallet] passphrase_file. */
void wallet_admin_passphrase_change(struct mp_admin_req *req, json_t *params, void *ctx);
/* refund.c: each channel's refund state from the store (start-up). */
bool wallet_refund_load(struct wallet *w);
/* dispute.c: admin dispute and key_offers; the check timer ([wallet]
 * dispute_check_interval), stopped before the connections close. */
void wallet_admin_dispute(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_key_offers(struct mp_admin_req *req, json_t *params, void *ctx);
bool wallet_dispute_start(struct wallet *w);
void wallet_dispute_stop(struct wallet *w);
/* The refund check timer ([wallet] refund_check_interval); stop before the connections close. */
bool wallet_refund_start(struct wallet *w);
void wallet_refund_stop(struct wallet *w);
/* Send the channel's stored RefundRequest (or a new one, signed and stored first: with the
 * stored Close and its custody for a CLOSED channel); req (NULL: the wallet's own) gets the
 * answer. */
void wallet_refund_send(struct wallet *w, struct wchannel *ch, struct mp_admin_req *req);
/* refund_early.c: the stored CloseResp of a CLOSED channel (free with
 * protobuf_c_message_free_unpacked), NULL if none. */
Micropay__V1__CloseResp *wallet_refund_close_evidence(struct wallet *w, const struct wchannel *ch);
bool wallet_refund_request_has_close(const MpSigned *request);
/* A CLOSED channel's refund: ask now (after the close), or again after the backoff. */
void wallet_refund_after_close(struct wallet *w, struct wchannel *ch);
void wallet_refund_retry(struct wallet *w, struct wchannel *ch);
void wallet_refund_retry_free(struct wchannel *ch);
/* segment_claim.c: send the channel's stored SegmentClaimReq unless the broker acknowledged it;
 * req (may be NULL) gets {channel_id, seg_seq, start, spendable, broker_ack, broker_status}. */
void wallet_segment_claim_send(struct wallet *w, struct wchannel *ch, struct mp_admin_req *req);
/* Resend every received channel's SegmentClaim the broker has not acknowledged (start-up). */
void wallet_segment_claim_resume(struct wallet *w);
/* backoff.c: arm *timer (made with cb and arg on first use) for the next try, after 1, 2, 4, ...
 * seconds (*backoff, at most max); a pending timer is left as it is. False if it cannot be. */
bool wallet_backoff_arm(struct wallet *w, struct event **timer, event_callback_fn cb, void *arg,
			unsigned *backoff, unsigned max);
/* Stop the SegmentClaim retry timer (before the connections close). */
void wallet_segment_claim_stop(struct wallet *w);
/* offers of this wallet not yet accepted, for `channels`: [{channel_id, state: OFFERED, ...}] */
json_t *wallet_offers_json(struct wallet *w);

/* move.c: moving a channel to another merchant (protocol.md section 6, "Handoff"). */
/* The Move from the channel's current epoch to to_mid, signed by the owner key (from the
 * store); NULL (logged) on failure. */
MpSigned *wallet_move_sign(struct wallet *w, const struct wchannel *ch,
			   const uint8_t to_mid[MP_ID_LEN]);
/* cert is a MerchantCert of mid under the broker key: NULL, or what is wrong. pk (may be NULL)
 * receives its merchant_pk. */
const char *wallet_merchant_cert_check(const struct wallet *w, const MpSigned *cert,
				       const uint8_t mid[MP_ID_LEN], uint8_t pk[MP_PK_LEN]);
/* OpenAck's custody event after a Move: Handoff epoch+1 of this channel, signed by the holder
 * we moved from (key from its MerchantCert), naming to_mid and carrying our Move. NULL, or what
 * is wrong. */
/* A HANDED_OFF OpenAck's redirect (redirect.c): Handoff epoch+1 from the holder we know,
 * checked against its MerchantCert and our own chain, and the new holder's MerchantCert; then
 * the new holder and epoch are recorded (durably). NULL, or why not (nothing changed). */
const char *wallet_redirect_follow(struct wallet *w, struct wchannel *ch,
				   const Micropay__V1__HandoffResp *r);
const char *wallet_move_check_handoff(const struct wallet *w, const struct wchannel *ch,
				      const MpSigned *event, const MpSigned *move,
				      const uint8_t to_mid[MP_ID_LEN]);
/* Bind-on-first-use (protocol.md section 6, "Bind"): a channel issued without merchant_id has
 * an all-zero holder0 here (its IssueRequest and cert carry none), and an all-zero holder until
 * a merchant is bound to it. */
bool wallet_id_is_zero(const uint8_t id[MP_ID_LEN]);
/* bind is a Bind of this channel signed by the broker: NULL, or what is wrong; mid receives the
 * merchant it binds. */
const char *wallet_bind_check(const struct wallet *w, const struct wchannel *ch,
			      const MpSigned *bind, uint8_t mid[MP_ID_LEN]);
/* Resend every ISSUING channel's stored request (at start-up). */
void wallet_issue_resume(struct wallet *w);

/* Hex parameter of exactly len bytes (exact) or 1..len bytes; a JSON integer is taken as its
 * decimal digits (mpctl sends digit-only values as integers). On failure answers BAD_PARAMS. */
bool wallet_param_hex(struct mp_admin_req *req, json_t *params, const char *key, uint8_t *out,
		      size_t maxlen, bool exact, size_t *outlen);

bool wallet_admin_open(struct wallet *w);
/* service.c: systemd notifications, reload and graceful stop (SIGTERM, admin shutdown: refuse
 * new exchanges, let those in progress answer their callers, then leave the loop). */
bool wallet_service_start(struct wallet *w);
void wallet_service_stop(struct wallet *w);
bool wallet_config_load(struct wallet_config *cfg, const char *path, char *err, size_t errlen);
void wallet_config_free(struct wallet_config *cfg);
/* Every configuration key with its default, in `format` (common/config_doc.h). */
bool wallet_config_doc(FILE *out, enum mp_cfg_doc_format format);
