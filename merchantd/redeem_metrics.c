#include "redeem_metrics.h"

#include "amount.h"
#include "merchant.h"
#include "metrics.h"
#include "redeem_lag.h"

/* Earned but not yet credited: durable payments above each channel's redeemed end. */
static double unredeemed_amount(const void *arg)
{
	const struct merchant *m = arg;
	uint64_t total = 0, part;
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		if (ch->durable_last <= ch->redeemed_end)
			continue;
		if (!mp_amount_mul(ch->durable_last - ch->redeemed_end, ch->unit_value, &part) ||
		    !mp_amount_add(total, part, &total))
			return (double)MP_AMOUNT_MAX;
	}
	return (double)total;
}

/* The redemption lag: how long the oldest unredeemed payment has waited (protocol time). */
static double oldest_unredeemed_age(const void *arg)
{
	const struct merchant *m = arg;
	uint64_t oldest = redeem_lag_oldest(&m->channels), now = mp_clock_now(&m->clock);
	return oldest && now > oldest ? (double)(now - oldest) : 0;
}

static void counter(struct mp_metrics *reg, const char *name, const char *help,
		    const char *const *labels, const uint64_t *v)
{
	mp_metrics_u64(reg, MP_METRIC_COUNTER, name, help, labels, v);
}

void redeem_metrics_register(struct merchant *m, const struct redeem_stats *s,
			     const struct broker_link_stats *ls, struct mp_metrics *reg)
{
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "micropay_merchant_unredeemed_amount",
		      "Accepted durable payments not yet credited by the broker, minor units.",
		      NULL, unredeemed_amount, m);
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "micropay_merchant_unredeemed_oldest_age_seconds",
		      "Redemption lag: age of the oldest unredeemed payment, seconds.", NULL,
		      oldest_unredeemed_age, m);
	counter(reg, "micropay_merchant_redeems_sent_total", "Redeem requests sent.", NULL,
		&s->sent);
	counter(reg, "micropay_merchant_redeems_answered_total", "Redeem requests answered.", NULL,
		&s->answered);
	counter(reg, "micropay_merchant_redeem_limits_total",
		"Redeems answered LIMIT (split and retried).", NULL, &s->limits);
	counter(reg, "micropay_merchant_redeem_splits_total", "Redeems split after a LIMIT.", NULL,
		&s->splits);
	counter(reg, "micropay_merchant_redeem_steps_total", "Redeem round steps.", NULL,
		&s->steps);
	counter(reg, "micropay_merchant_redeems_refused_total", "Redeems refused by the broker.",
		NULL, &s->refused);
	counter(reg, "micropay_merchant_redeem_rounds_failed_total", "Redeem rounds that failed.",
		NULL, &s->failed_rounds);
	const char *help = "Connections to the broker, by result.";
	counter(reg, "micropay_merchant_broker_connects_total", help,
		(const char *[]){"result", "ok", NULL}, &ls->connects_ok);
	counter(reg, "micropay_merchant_broker_connects_total", help,
		(const char *[]){"result", "failed", NULL}, &ls->connects_failed);
	counter(reg, "micropay_merchant_broker_answer_timeouts_total",
		"Broker requests that got no answer in time.", NULL, &ls->answer_timeouts);
}
