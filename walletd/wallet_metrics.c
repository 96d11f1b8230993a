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
	w->broker_clock_offset = mp_metrics_gauge(
	    w->metrics, "micropay_wallet_broker_clock_offset_seconds",
	    "broker_time of the broker's last answer minus our clock when it arrived (positive: "
	    "the broker is ahead).",
	    NULL);
	w->broker_clock_known = mp_metrics_gauge(
	    w->metrics, "micropay_wallet_broker_clock_known",
	    "1 once a broker answer with broker_time arrived in this run, else 0.", NULL);
	if (!mp_metrics_ok(w->metrics))
		return false;
	return mp_metrics_http_start(w->base, &w->cfg.metrics, w->metrics, &w->metrics_http);
}

void wallet_broker_time_seen(struct wallet *w, uint64_t broker_time)
{
	mp_metrics_broker_time_seen(w->broker_clock_offset, w->broker_clock_known, broker_time,
				    wallet_now(w));
}

void wallet_metrics_close(struct wallet *w)
{
	w->broker_clock_offset = NULL;
	w->broker_clock_known = NULL;
	mp_metrics_http_close(w->metrics_http);
	w->metrics_http = NULL;
	mp_metrics_free(w->metrics);
	w->metrics = NULL;
}
