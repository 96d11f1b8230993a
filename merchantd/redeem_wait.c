#include "redeem_wait.h"

#include <string.h>

#include "log.h"
#include "metrics.h"
#include "redeem_wait_store.h"
#include "util.h"

#define WAIT_MAX_SHIFT 20

static size_t find(const struct redeem_wait *w, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->items[i].hseq == hseq &&
		    memcmp(w->items[i].channel_id, channel_id, MP_ID_LEN) == 0)
			return i;
	return w->n;
}

bool redeem_wait_result(struct redeem_wait *w, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq,
			MpCode status)
{
	char hex[MP_HEX_ID_LEN + 1];
	size_t i = find(w, channel_id, hseq);
	bool waits = status == MP_ST(INSUFFICIENT_FUNDS);
	if (waits && i == w->n) {
		mp_hex_encode(channel_id, MP_ID_LEN, hex);
		if (w->n == REDEEM_WAIT_MAX) {
			w->dropped++;
			log_warn(
			    "redeem: claim of channel %s epoch %u waits for the broker's funds; "
			    "%d claims wait already, not kept (the next round claims it)",
			    hex, hseq, REDEEM_WAIT_MAX);
			return false;
		}
		w->items[w->n++] = (struct redeem_waiting){.hseq = hseq};
		memcpy(w->items[i].channel_id, channel_id, MP_ID_LEN);
		log_info("redeem: claim of channel %s epoch %u waits for the broker's funds "
			 "(INSUFFICIENT_FUNDS); it will be claimed again",
			 hex, hseq);
		return true;
	} else if (!waits && i < w->n) {
		mp_hex_encode(channel_id, MP_ID_LEN, hex);
		log_info("redeem: claim of channel %s epoch %u no longer waits: %s", hex, hseq,
			 mp_code_name(status));
		w->items[i] = w->items[--w->n];
		if (w->n == 0)
			w->attempts = 0;
		return true;
	}
	return false;
}

static void load_one(void *arg, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq)
{
	struct redeem_wait *w = arg;
	if (w->n == REDEEM_WAIT_MAX || find(w, channel_id, hseq) < w->n)
		return; /* at most REDEEM_WAIT_MAX rows are ever written */
	w->items[w->n] = (struct redeem_waiting){.hseq = hseq};
	memcpy(w->items[w->n++].channel_id, channel_id, MP_ID_LEN);
}

bool redeem_wait_load(struct redeem_wait *w, struct store *s)
{
	if (!redeem_wait_store_load(s, load_one, w))
		return false;
	if (w->n)
		log_info("redeem: %zu claims waited for the broker's funds before the restart; "
			 "claiming them again",
			 w->n);
	return true;
}

uint64_t redeem_wait_next_delay(struct redeem_wait *w, uint64_t max_secs)
{
	if (w->n == 0)
		return 0;
	if (w->attempts < WAIT_MAX_SHIFT)
		w->attempts++;
	uint64_t delay = (uint64_t)1 << (w->attempts - 1);
	return delay < max_secs ? delay : max_secs;
}

static double claims_waiting(const void *arg)
{
	const struct redeem_wait *w = arg;
	return (double)w->n;
}

void redeem_wait_metrics_register(const struct redeem_wait *w, struct mp_metrics *reg)
{
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "micropay_merchant_redeem_claims_waiting_funds",
		      "Claims answered INSUFFICIENT_FUNDS, waiting to be claimed again.", NULL,
		      claims_waiting, w);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_redeem_waiting_retries_total",
		       "Redemption rounds run again for claims waiting for the broker's funds.",
		       NULL, &w->retries);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_redeem_waiting_dropped_total",
		       "Claims answered INSUFFICIENT_FUNDS not kept (more than REDEEM_WAIT_MAX).",
		       NULL, &w->dropped);
}
