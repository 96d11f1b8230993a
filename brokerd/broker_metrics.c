/* brokerd's metrics: one registry (common/metrics.h) describing the broker's counters, the
 * listener's, the database pool's and the sweep's, exposed by the admin `metrics` method and,
 * if configured, on the HTTP port. Everything here is updated on the loop thread (the hashing
 * workers hand their results back to the loop before any counter moves). docs/metrics.md lists
 * every metric. */
#include <stdlib.h>

#include "broker.h"
#include "db.h"
#include "issue_batch.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "sweep.h"
#include "tls.h"
#include "workers.h"

static double worker_queue(const void *arg)
{
	const struct broker *b = arg;
	return mp_workers_queued(b->workers);
}

static double worker_busy(const void *arg)
{
	const struct broker *b = arg;
	return mp_workers_busy(b->workers);
}

static double issue_queue(const void *arg)
{
	const struct broker *b = arg;
	return b->issues ? issue_batcher_queued(b->issues) : 0;
}

static double register_addresses(const void *arg)
{
	const struct broker *b = arg;
	return b->register_limit.buckets ? ratelimit_entries(b->register_limit.buckets) : 0;
}

static double register_addresses_max(const void *arg)
{
	return ratelimit_capacity();
}

static void counter(struct broker *b, const char *name, const char *help, const uint64_t *v)
{
	mp_metrics_u64(b->metrics, MP_METRIC_COUNTER, name, help, NULL, v);
}

static void register_requests(struct broker *b)
{
	struct broker_stats *s = &b->stats;
	counter(b, "micropay_broker_accounts_registered_total", "Customer accounts registered.",
		&s->accounts_registered);
	counter(b, "micropay_broker_merchants_registered_total",
		"RegisterMerchant answered with a first MerchantCert.", &s->merchants_registered);
	counter(b, "micropay_broker_merchant_certs_renewed_total",
		"RegisterMerchant answered with a renewed MerchantCert.",
		&s->merchant_certs_renewed);
	counter(b, "micropay_broker_channels_issued_total", "Channels issued (IssueReq OK).",
		&s->channels_issued);
	counter(b, "micropay_broker_issue_duplicates_total",
		"IssueReq retries answered with the stored cert.", &s->issue_duplicates);
	counter(b, "micropay_broker_issue_batches_total",
		"Batches of IssueRequests sent to the database (one call and transaction each).",
		&s->issue_batches);
	counter(b, "micropay_broker_issue_batched_total",
		"IssueRequests in those batches (divided by the batches: the mean batch size).",
		&s->issue_batched);
	counter(b, "micropay_broker_issue_queue_refusals_total",
		"IssueRequests refused at once: [db] max_queue requests already waited for the "
		"database.",
		&s->issue_queue_refusals);
	counter(b, "micropay_broker_issue_queue_expired_total",
		"IssueRequests answered timed out: queued longer than [db] queue_timeout_ms.",
		&s->issue_queue_expired);
	counter(b, "micropay_broker_issue_batch_splits_total",
		"Batches of IssueRequests cancelled by the statement timeout (nothing stored) and "
		"sent again in halves.",
		&s->issue_batch_splits);
	counter(b, "micropay_broker_redeems_total", "Redeem requests answered.", &s->redeems);
	counter(b, "micropay_broker_claims_credited_total", "Claims that credited a merchant.",
		&s->claims_credited);
	counter(b, "micropay_broker_refunds_total", "RefundRequests answered OK (refund paid).",
		&s->refunds);
	counter(b, "micropay_broker_refund_duplicates_total",
		"RefundRequests answered DUPLICATE_OK.", &s->refund_duplicates);
	counter(b, "micropay_broker_requests_refused_total",
		"Requests answered with a refusal status.", &s->requests_refused);
	counter(b, "micropay_broker_unroutable_requests_total",
		"Requests of a kind the broker does not serve.", &s->unroutable_requests);
}

static void register_limits(struct broker *b)
{
	struct broker_stats *s = &b->stats;
	counter(b, "micropay_broker_bad_chain_hashes_total",
		"Hashes charged to merchants' BAD_CHAIN budgets.", &s->bad_chain_hashes);
	counter(b, "micropay_broker_bad_chain_budget_refusals_total",
		"Redeems refused: the merchant's BAD_CHAIN budget was spent.",
		&s->bad_chain_budget_refusals);
	counter(b, "micropay_broker_worker_queue_refusals_total",
		"Requests refused: the worker queue (hashing, verifying, signing) was full.",
		&s->worker_queue_refusals);
	mp_metrics_u64(b->metrics, MP_METRIC_COUNTER, "micropay_broker_signatures_total",
		       "Statements brokerd signed while serving peers, by where the signature ran.",
		       (const char *[]){"where", "worker", NULL}, &s->signatures_worker);
	mp_metrics_u64(b->metrics, MP_METRIC_COUNTER, "micropay_broker_verifications_total",
		       "Signatures of peers' statements brokerd checked, by where the check ran.",
		       (const char *[]){"where", "worker", NULL}, &s->verifications_worker);
	counter(b, "micropay_broker_redeem_timeouts_total",
		"Redeems answered LIMIT: a database step ran past the statement timeout.",
		&s->redeem_timeouts);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_issue_queue",
		      "IssueRequests waiting for a batch to the database.", NULL, issue_queue, b);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_worker_queue",
		      "Hashing jobs waiting.", NULL, worker_queue, b);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_worker_busy",
		      "Hashing threads at work.", NULL, worker_busy, b);
	mp_metrics_u64(b->metrics, MP_METRIC_COUNTER, "micropay_broker_register_refused_total",
		       "RegisterAccount refused by a limit.",
		       (const char *[]){"reason", "register_rate", NULL},
		       &b->register_limit.refused);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_register_rate_addresses",
		      "Peer addresses in the RegisterAccount rate table.", NULL, register_addresses,
		      b);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_register_rate_addresses_max",
		      "Size of the RegisterAccount rate table.", NULL, register_addresses_max, b);
	mp_listener_metrics_register(b->listener, b->metrics, "micropay_broker");
}

bool broker_metrics_open(struct broker *b)
{
	b->metrics = mp_metrics_new();
	if (!b->metrics) {
		log_err("metrics: out of memory");
		return false;
	}
	register_requests(b);
	register_limits(b);
	db_pool_metrics_register(b->db, b->metrics);
	sweep_metrics_register(b->sweep, b->metrics);
	mp_metrics_fn(b->metrics, MP_METRIC_GAUGE, "micropay_broker_tls_cert_expiry_time",
		      "notAfter of the broker's TLS certificate, Unix seconds.", NULL,
		      mp_tls_cert_not_after, &b->tls);
	if (!mp_metrics_ok(b->metrics))
		return false;
	return mp_metrics_http_start(b->base, &b->cfg.metrics, b->metrics, &b->metrics_http);
}

void broker_metrics_close(struct broker *b)
{
	db_pool_metrics_forget(b->db);
	mp_metrics_http_close(b->metrics_http);
	b->metrics_http = NULL;
	mp_metrics_free(b->metrics);
	b->metrics = NULL;
}
