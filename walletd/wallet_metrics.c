/* walletd's metrics: one registry (common/metrics.h) exposed by the admin `metrics` method
 * and, if configured, on the HTTP port. Every value changes on the loop thread. docs/metrics.md
 * lists every metric. */
#include "log.h"
#include "wallet.h"

static double channels(const void *arg)
{
	return wallet_channel_count(arg);
}

static void counter(struct wallet *w, const char *name, const char *help, const uint64_t *v)
{
	mp_metrics_u64(w->metrics, MP_METRIC_COUNTER, name, help, NULL, v);
}

bool wallet_metrics_open(struct wallet *w)
{
	w->metrics = mp_metrics_new();
	if (!w->metrics) {
		log_err("metrics: out of memory");
		return false;
	}
	struct wallet_stats *s = &w->stats;
	mp_metrics_fn(w->metrics, MP_METRIC_GAUGE, "micropay_wallet_channels",
		      "Channels this wallet keeps, any state.", NULL, channels, w);
	counter(w, "micropay_wallet_channels_issued_total", "Channels issued to this wallet.",
		&s->channels_issued);
	counter(w, "micropay_wallet_issue_attempts_total", "IssueReqs sent (retries included).",
		&s->issue_attempts);
	counter(w, "micropay_wallet_pays_sent_total", "Pays sent.", &s->pays_sent);
	counter(w, "micropay_wallet_pays_resent_total", "Pays resent verbatim.", &s->pays_resent);
	counter(w, "micropay_wallet_pays_refused_total", "Pays refused by merchants.",
		&s->pays_refused);
	counter(w, "micropay_wallet_units_paid_total", "Units paid (accepted).", &s->units_paid);
	mp_clock_guard_metrics(w->clock_guard, w->metrics, "micropay_wallet");
	if (!mp_metrics_ok(w->metrics))
		return false;
	return mp_metrics_http_start(w->base, &w->cfg.metrics, w->metrics, &w->metrics_http);
}

void wallet_broker_time_seen(struct wallet *w, uint64_t broker_time)
{
	mp_clock_guard_seen(w->clock_guard, broker_time);
}

void wallet_metrics_close(struct wallet *w)
{
	mp_metrics_http_close(w->metrics_http);
	w->metrics_http = NULL;
	mp_metrics_free(w->metrics);
	w->metrics = NULL;
}
