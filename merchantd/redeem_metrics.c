#include "redeem_metrics.h"

#include <stdio.h>

#include "amount.h"
#include "merchant.h"
#include "store_redeem.h"

/* Earned but not yet credited: durable payments above each channel's redeemed end. */
static uint64_t unredeemed_amount(const struct merchant *m)
{
	uint64_t total = 0, part;
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		if (ch->durable_last <= ch->redeemed_end)
			continue;
		if (!mp_amount_mul(ch->durable_last - ch->redeemed_end, ch->unit_value, &part) ||
		    !mp_amount_add(total, part, &total))
			return MP_AMOUNT_MAX;
	}
	return total;
}

size_t redeem_metrics_text(struct merchant *m, const struct redeem_stats *s,
			   const struct broker_link_stats *ls, char *out, size_t len)
{
	uint64_t oldest = 0, now = mp_clock_now(&m->clock), age = 0;
	if (store_oldest_unredeemed(m->store, &oldest) && oldest && now > oldest)
		age = now - oldest;
	int n =
	    snprintf(out, len,
		     "micropay_merchant_unredeemed_amount %llu\n"
		     "micropay_merchant_unredeemed_oldest_age_seconds %llu\n"
		     "micropay_merchant_redeems_sent_total %llu\n"
		     "micropay_merchant_redeems_answered_total %llu\n"
		     "micropay_merchant_redeem_limits_total %llu\n"
		     "micropay_merchant_redeem_splits_total %llu\n"
		     "micropay_merchant_redeem_steps_total %llu\n"
		     "micropay_merchant_redeems_refused_total %llu\n"
		     "micropay_merchant_redeem_rounds_failed_total %llu\n"
		     "micropay_merchant_redeem_claims_waiting_funds %llu\n"
		     "micropay_merchant_redeem_waiting_retries_total %llu\n"
		     "micropay_merchant_redeem_waiting_dropped_total %llu\n"
		     "micropay_merchant_broker_connects_total{result=\"ok\"} %llu\n"
		     "micropay_merchant_broker_connects_total{result=\"failed\"} %llu\n"
		     "micropay_merchant_broker_answer_timeouts_total %llu\n",
		     (unsigned long long)unredeemed_amount(m), (unsigned long long)age,
		     (unsigned long long)s->sent, (unsigned long long)s->answered,
		     (unsigned long long)s->limits, (unsigned long long)s->splits,
		     (unsigned long long)s->steps, (unsigned long long)s->refused,
		     (unsigned long long)s->failed_rounds, (unsigned long long)s->claims_waiting,
		     (unsigned long long)s->waiting_retries, (unsigned long long)s->waiting_dropped,
		     (unsigned long long)ls->connects_ok, (unsigned long long)ls->connects_failed,
		     (unsigned long long)ls->answer_timeouts);
	if (n < 0)
		return 0;
	return (size_t)n < len ? (size_t)n : len - 1;
}
