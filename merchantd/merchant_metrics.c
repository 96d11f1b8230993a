/* merchantd's metrics: one registry (common/metrics.h) describing the pay path, group commit,
 * the redeemer, the Cap outbox, the deadline timer, compaction, the wallet listener and the
 * certificates, exposed by the admin `metrics` method and, if configured, on the HTTP port.
 *
 * Threads: every value here changes on the loop thread. The store thread commits batches, but
 * their sizes and durations are measured on the loop (submit and completion both run there);
 * compaction totals and the Cap outbox counts are updated by their loop callbacks. Only the
 * WAL checkpoints' counters change on other threads (register_wal): atomics. docs/metrics.md lists
 * every metric. */
#include <stdlib.h>

#include "cap_outbox.h"
#include "dispute_answer.h"
#include "compact.h"
#include "log.h"
#include "merchant.h"
#include "redeem_deadline.h"
#include "store_thread.h"
#include "wal_checkpointer.h"
#include "tls.h"

/* Seconds; a Pay waits at most commit_delay_us (adaptive, 0: one commit in flight) plus one
 * commit. */
static const double pay_latency_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
					    0.05,   0.1,   0.2,	  0.5,	 1,    2.5};
static const double batch_seconds_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01,
					      0.02,   0.05,  0.1,   0.25,  1};
static const double batch_entries_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static double channels_recorded(const void *arg)
{
	const struct merchant *m = arg;
	return (double)m->channels_recorded;
}

static void counter(struct merchant *m, const char *name, const char *help,
		    const char *const *labels, const uint64_t *v)
{
	mp_metrics_u64(m->metrics, MP_METRIC_COUNTER, name, help, labels, v);
}

static void register_pays(struct merchant *m)
{
	struct merchant_stats *s = &m->stats;
	const char *help = "Pay answers by result (ok, underpaid, duplicate, refused).";
	const char *name = "micropay_merchant_pays_total";
	counter(m, name, help, (const char *[]){"result", "ok", NULL}, &s->pays_ok);
	counter(m, name, help, (const char *[]){"result", "underpaid", NULL}, &s->pays_underpaid);
	counter(m, name, help, (const char *[]){"result", "duplicate", NULL}, &s->pays_duplicate);
	counter(m, name, help, (const char *[]){"result", "refused", NULL}, &s->pays_refused);
	for (int code = 0; code < MERCHANT_PAY_CODES; code++)
		m->hot.pay_answers[code] = mp_metrics_counter(
		    m->metrics, "micropay_merchant_pay_answers_total",
		    "Pay answers by protocol status: OK and UNDERPAID accepted, DUPLICATE_OK "
		    "replayed, every other status refused.",
		    (const char *[]){"status", mp_code_name((MpCode)code), NULL});
	m->hot.pay_latency = mp_metrics_histogram(
	    m->metrics, "micropay_merchant_pay_latency_seconds",
	    "Accepted Pays (and retries of pending ones): from the frame read to the answer sent, "
	    "group commit included.",
	    NULL, pay_latency_bounds, COUNT(pay_latency_bounds));
	counter(m, "micropay_merchant_bad_chain_total", "Pays answered BAD_CHAIN.", NULL,
		&s->bad_chain);
	counter(m, "micropay_merchant_store_busy_total",
		"Requests refused while the store was behind (LIMIT).", NULL, &s->store_busy);
}

/* Updated by the store thread and the WAL checkpointer's thread: atomics. */
static void register_wal(struct merchant *m)
{
	const struct wal_checkpoint_totals *w = store_thread_wal_totals(m->store_thread);
	const char *name = "micropay_merchant_wal_checkpoints_total";
	const char *help = "WAL checkpoints, by who ran them: thread (the checkpointer, beside the "
			   "commits), writer (in a commit: the frames appended while the thread "
			   "copied), limit (in a commit, at the WAL's size limit: all of it).";
	mp_metrics_atomic(m->metrics, MP_METRIC_COUNTER, name, help,
			  (const char *[]){"by", "thread", NULL}, &w->runs);
	mp_metrics_atomic(m->metrics, MP_METRIC_COUNTER, name, help,
			  (const char *[]){"by", "writer", NULL}, &w->writer_runs);
	mp_metrics_atomic(m->metrics, MP_METRIC_COUNTER, name, help,
			  (const char *[]){"by", "limit", NULL}, &w->limit_runs);
	mp_metrics_atomic(
	    m->metrics, MP_METRIC_COUNTER, "micropay_merchant_wal_checkpoint_failures_total",
	    "WAL checkpoints that failed (a busy one is not counted).", NULL, &w->failures);
	mp_metrics_atomic(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_wal_frames",
			  "The store's WAL size after the last commit, in pages.", NULL,
			  &w->wal_frames);
}

static void register_commit(struct merchant *m)
{
	counter(m, "micropay_merchant_batches_total", "Group-commit batches committed.", NULL,
		&m->stats.batches);
	const char *help = "Group-commit batches handed to the store thread, by trigger: idle (at "
			   "once, no batch committing), after_commit (waited for the committing "
			   "batch), timer (commit_delay_us elapsed).";
	const char *trigger[BATCH_TRIGGERS] = {
	    [BATCH_IDLE] = "idle", [BATCH_AFTER_COMMIT] = "after_commit", [BATCH_TIMER] = "timer"};
	for (int t = 0; t < BATCH_TRIGGERS; t++)
		counter(m, "micropay_merchant_batches_submitted_total", help,
			(const char *[]){"trigger", trigger[t], NULL},
			&m->stats.batches_by_trigger[t]);
	m->hot.batch_entries = mp_metrics_histogram(
	    m->metrics, "micropay_merchant_batch_entries", "Entries per committed batch.", NULL,
	    batch_entries_bounds, COUNT(batch_entries_bounds));
	m->hot.batch_seconds = mp_metrics_histogram(
	    m->metrics, "micropay_merchant_batch_commit_seconds",
	    "Per batch: from its hand-over to the store thread to its commit seen by the loop.",
	    NULL, batch_seconds_bounds, COUNT(batch_seconds_bounds));
	const struct compact_totals *ct = compact_totals(m);
	counter(m, "micropay_merchant_compactions_total", "Store compactions run.", NULL,
		&ct->runs);
	counter(m, "micropay_merchant_journal_rows_folded_total",
		"Redeemed journal rows folded by compaction.", NULL, &ct->journal_rows);
	counter(m, "micropay_merchant_outbox_rows_deleted_total",
		"Answered Redeem outbox rows deleted by compaction.", NULL, &ct->outbox_rows);
	counter(m, "micropay_merchant_goods_rows_deleted_total",
		"Key-release offers and finished purchases deleted by compaction.", NULL,
		&ct->goods_rows);
	counter(m, "micropay_merchant_store_pages_freed_total", "Store pages freed by compaction.",
		NULL, &ct->pages_freed);
	register_wal(m);
}

static void register_channels(struct merchant *m)
{
	struct merchant_stats *s = &m->stats;
	mp_metrics_fn(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_channels",
		      "Channels whose record is durable here.", NULL, channels_recorded, m);
	counter(m, "micropay_merchant_opens_total", "Opens answered.", NULL, &s->opens);
	counter(m, "micropay_merchant_handoffs_signed_total", "Handoffs signed.", NULL,
		&s->handoffs_signed);
	counter(m, "micropay_merchant_handoffs_taken_total", "Channels taken over.", NULL,
		&s->handoffs_taken);
	counter(m, "micropay_merchant_handoff_refusals_total", "Handoff requests refused.", NULL,
		&s->handoff_refusals);
	counter(m, "micropay_merchant_handoff_redirects_total",
		"Opens answered HANDED_OFF with a verified redirect.", NULL, &s->handoff_redirects);
	counter(m, "micropay_merchant_caps_signed_total", "Caps signed.", NULL, &s->caps_signed);
	counter(m, "micropay_merchant_transfer_refusals_total", "Transfers refused.", NULL,
		&s->transfer_refusals);
	counter(m, "micropay_merchant_stale_segment_total", "Pays answered STALE_SEGMENT.", NULL,
		&s->stale_segment);
	counter(m, "micropay_merchant_closes_signed_total", "Closes signed.", NULL,
		&s->closes_signed);
	counter(m, "micropay_merchant_close_refusals_total", "Closes refused.", NULL,
		&s->close_refusals);
	counter(m, "micropay_merchant_forced_closes_applied_total",
		"The broker's ForcedCloses applied (channels made CLOSED).", NULL,
		&s->forced_closes_applied);
	counter(m, "micropay_merchant_forced_closes_refused_total",
		"ForcedCloses refused (not under the broker key, or not of our epoch).", NULL,
		&s->forced_closes_refused);
	counter(m, "micropay_merchant_release_redeems_total",
		"Redemptions started because the broker holds a PENDING release naming us.", NULL,
		&s->release_redeems);
	counter(m, "micropay_merchant_receipts_signed_total", "Receipts signed and sent.", NULL,
		&s->receipts_signed);
	counter(m, "micropay_merchant_signatures_total",
		"Statements signed (Close, Cap, Handoff, Receipt), by where the signature ran.",
		(const char *[]){"where", "worker", NULL}, &s->signatures_worker);
	counter(m, "micropay_merchant_receipt_refusals_total",
		"Receipt requests refused (not accepted here, wrong word, busy, ...).", NULL,
		&s->receipt_refusals);
	counter(m, "micropay_merchant_chunks_served_total",
		"Chunks of goods read and sent (docs/goods.md).", NULL, &s->chunks_served);
	counter(m, "micropay_merchant_chunk_bytes_total", "Bytes of goods sent.", NULL,
		&s->chunk_bytes);
	counter(m, "micropay_merchant_chunk_refusals_total",
		"Chunk requests refused (not paid yet, unknown item, busy, ...).", NULL,
		&s->chunk_refusals);
	counter(m, "micropay_merchant_purchases_total", "Purchases started.", NULL, &s->purchases);
	counter(m, "micropay_merchant_offers_total", "Offers made (key release, docs/goods.md).",
		NULL, &s->offers);
	counter(m, "micropay_merchant_keys_released_total",
		"Keys of paid offers sent to wallets (KeyResp OK).", NULL, &s->keys_released);
	counter(m, "micropay_merchant_offers_cancelled_total",
		"Unpaid offers the buyer gave up with an OfferCancel (recorded).", NULL,
		&s->offers_cancelled);
	mp_metrics_u64(m->metrics, MP_METRIC_GAUGE,
		       "micropay_merchant_custody_unconfirmed_channels",
		       "Channels held when the store was restored (--restored) whose custody the "
		       "operator has not confirmed: not served as held.",
		       NULL, &m->restore.unconfirmed);
	mp_metrics_u64(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_store_restored_time",
		       "Protocol time of the latest start with --restored; 0: never.", NULL,
		       &m->restore.restored_at);
}

static void register_gateway(struct merchant *m)
{
	static const char *const result[GW_RESULTS] = {[GW_PAID] = "paid",
						       [GW_FREE] = "free",
						       [GW_REQUIRED] = "required",
						       [GW_REFUSED] = "refused",
						       [GW_NOT_CHARGED] = "not_charged",
						       [GW_NO_ROUTE] = "no_route",
						       [GW_BUSY] = "busy"};
	for (int r = 0; r < GW_RESULTS; r++)
		counter(
		    m, "micropay_merchant_gateway_requests_total",
		    "HTTP 402 gateway requests by result (docs/gateway.md): paid, free, "
		    "required (402, no payment), refused, not_charged (verified but not charged: "
		    "the upstream failed or answered >= 500, 408 or 429, the channel no longer "
		    "payable, no room in time, stopping), no_route, busy.",
		    (const char *[]){"result", result[r], NULL}, &m->stats.gateway[r]);
	mp_metrics_u64(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_gateway_in_flight",
		       "Gateway requests waiting for the upstream or the group commit.", NULL,
		       &m->stats.gateway_in_flight);
}

static void register_time(struct merchant *m)
{
	mp_metrics_fn(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_tls_cert_expiry_time",
		      "notAfter of the merchant's TLS certificate, Unix seconds.", NULL,
		      mp_tls_cert_not_after, &m->server_tls);
	mp_metrics_u64(m->metrics, MP_METRIC_GAUGE, "micropay_merchant_merchant_cert_expiry_time",
		       "valid_until of our MerchantCert (protocol time, seconds); 0: none yet.",
		       NULL, &m->cert_valid_until);
	mp_clock_guard_metrics(m->clock_guard, m->metrics, "micropay_merchant");
}

void merchant_broker_time_seen(struct merchant *m, uint64_t broker_time)
{
	mp_clock_guard_seen(m->clock_guard, broker_time);
}

bool merchant_metrics_open(struct merchant *m)
{
	m->metrics = mp_metrics_new();
	if (!m->metrics) {
		log_err("metrics: out of memory");
		return false;
	}
	register_pays(m);
	register_commit(m);
	register_channels(m);
	register_gateway(m);
	redeemer_metrics_register(m->redeemer, m->metrics);
	cap_outbox_metrics_register(m, m->metrics);
	dispute_answer_metrics_register(m, m->metrics);
	redeem_deadline_metrics_register(m->deadline, m->metrics);
	mp_listener_metrics_register(m->listener, m->metrics, "micropay_merchant");
	register_time(m);
	if (!mp_metrics_ok(m->metrics))
		return false;
	return mp_metrics_http_start(m->base, &m->cfg.metrics, m->metrics, &m->metrics_http);
}

void merchant_metrics_close(struct merchant *m)
{
	m->hot = (struct merchant_hot_metrics){0};
	mp_metrics_http_close(m->metrics_http);
	m->metrics_http = NULL;
	mp_metrics_free(m->metrics);
	m->metrics = NULL;
}
