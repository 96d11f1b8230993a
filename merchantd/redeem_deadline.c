/* Redeeming before the deadline (redeem_deadline.h). At each check (every
 * [redeem] deadline_check_interval seconds, merchant clock):
 *
 *   for each channel held now with durable payments above the broker's credited end (not
 *   TOO_LATE; epochs handed off earlier are claimed by every round, see redeem_build.c):
 *     now < redeem_until - margin        --> nothing to do yet
 *     now >= redeem_until - margin       --> at risk: counted, logged once per channel,
 *                                            and a redemption round is started (one per check)
 *   TOO_LATE from the broker (the channel is finalised) --> never claimed again, logged with
 *                                            the amount lost, counted
 *
 * A round started here is an ordinary redeemer round: a channel at risk that it credits stops
 * being at risk at the next check; one it cannot credit (broker unreachable) is retried by the
 * redeemer's own backoff and by the next checks. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "log.h"
#include "metrics.h"
#include "merchant.h"
#include "redeem_deadline.h"
#include "too_late_store.h"

/* Epochs answered TOO_LATE, remembered in a ring of this many for counting each once. An epoch
 * pushed out of it is still never claimed again: the store records every such epoch
 * (too_late_store.h), a held channel carries the flag, and the store's query of handed-off
 * epochs leaves recorded ones out. */
#define TOO_LATE_MAX 4096

struct late_epoch {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t hseq;
};

struct redeem_deadline {
	struct merchant *m;
	struct event *timer;
	struct redeem_deadline_stats stats;
	struct late_epoch late[TOO_LATE_MAX];
	size_t n_late, next_late;
};

static uint64_t unredeemed(const struct channel *ch)
{
	uint64_t amount;
	if (ch->durable_last <= ch->redeemed_end ||
	    !mp_amount_mul(ch->durable_last - ch->redeemed_end, ch->unit_value, &amount))
		return 0;
	return amount;
}

static void on_round_done(void *arg, bool ok, const char *summary, uint64_t credited)
{
	log_info("redeem before the deadline: round %s: %s", ok ? "done" : "failed", summary);
}

static void check_channels(struct redeem_deadline *d)
{
	struct merchant *m = d->m;
	uint64_t now = merchant_now(m), margin = m->cfg.deadline_margin;
	uint64_t at_risk = 0, amount = 0;
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		uint64_t owed = unredeemed(ch);
		if (!owed || ch->state != CHANNEL_HELD || ch->too_late ||
		    now + margin < ch->redeem_until)
			continue;
		at_risk++;
		if (!mp_amount_add(amount, owed, &amount))
			amount = MP_AMOUNT_MAX;
		if (ch->risk_logged)
			continue;
		ch->risk_logged = true;
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
		log_warn(
		    "channel %s: %llu unredeemed (units %u..%u) and redeem_until %llu is %s: at "
		    "risk of expiring unredeemed; redeeming now",
		    hex, (unsigned long long)owed, ch->redeemed_end + 1, ch->durable_last,
		    (unsigned long long)ch->redeem_until,
		    now >= ch->redeem_until ? "past" : "within the margin");
	}
	d->stats.at_risk = at_risk;
	d->stats.amount_at_risk = amount;
	if (at_risk) {
		d->stats.rounds_started++;
		redeemer_run(m->redeemer, on_round_done, NULL);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	check_channels(arg);
}

static void remember_late(struct redeem_deadline *d, const uint8_t id[MP_ID_LEN], uint32_t hseq);

/* Start-up: an epoch answered TOO_LATE before the restart (too_late_store.h). */
static void load_late(void *arg, const uint8_t id[MP_ID_LEN], uint32_t hseq, uint64_t lost)
{
	struct redeem_deadline *d = arg;
	struct channel *ch = channel_find(&d->m->channels, id);
	if (ch && ch->hseq == hseq)
		ch->too_late = true;
	remember_late(d, id, hseq);
	d->stats.claims_too_late++;
	if (!mp_amount_add(d->stats.amount_too_late, lost, &d->stats.amount_too_late))
		d->stats.amount_too_late = MP_AMOUNT_MAX;
}

struct redeem_deadline *redeem_deadline_start(struct merchant *m, uint32_t check_s)
{
	struct redeem_deadline *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->m = m;
	if (!too_late_store_load(m->store, load_late, d)) {
		free(d);
		return NULL;
	}
	if (d->stats.claims_too_late)
		log_info("redeem: %llu epochs answered TOO_LATE before (%llu lost): not claimed "
			 "again",
			 (unsigned long long)d->stats.claims_too_late,
			 (unsigned long long)d->stats.amount_too_late);
	d->timer = event_new(m->base, -1, EV_PERSIST, on_timer, d);
	struct timeval tv = {.tv_sec = check_s};
	if (!d->timer || event_add(d->timer, &tv) != 0) {
		log_err("redeem deadline: cannot start its timer");
		redeem_deadline_free(d);
		return NULL;
	}
	return d;
}

void redeem_deadline_free(struct redeem_deadline *d)
{
	if (!d)
		return;
	if (d->timer)
		event_free(d->timer);
	free(d);
}

bool redeem_deadline_is_too_late(const struct merchant *m, const uint8_t id[MP_ID_LEN],
				 uint32_t hseq)
{
	const struct redeem_deadline *d = m->deadline;
	for (size_t i = 0; d && i < d->n_late; i++)
		if (d->late[i].hseq == hseq && memcmp(d->late[i].channel_id, id, MP_ID_LEN) == 0)
			return true;
	return false;
}

static void remember_late(struct redeem_deadline *d, const uint8_t id[MP_ID_LEN], uint32_t hseq)
{
	struct late_epoch *e = &d->late[d->next_late];
	memcpy(e->channel_id, id, MP_ID_LEN);
	e->hseq = hseq;
	d->next_late = (d->next_late + 1) % TOO_LATE_MAX;
	if (d->n_late < TOO_LATE_MAX)
		d->n_late++;
}

uint64_t redeem_deadline_too_late(struct merchant *m, const uint8_t id[MP_ID_LEN], uint32_t hseq,
				  uint32_t index, uint32_t credited_end, const char *detail)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(id, MP_ID_LEN, hex);
	struct channel *ch = channel_find(&m->channels, id);
	uint64_t lost = 0;
	if (ch && index > credited_end &&
	    !mp_amount_mul(index - credited_end, ch->unit_value, &lost))
		lost = MP_AMOUNT_MAX;
	if (ch && ch->hseq == hseq)
		ch->too_late = true;
	if (m->deadline && !redeem_deadline_is_too_late(m, id, hseq)) {
		remember_late(m->deadline, id, hseq);
		m->deadline->stats.claims_too_late++;
		if (!mp_amount_add(m->deadline->stats.amount_too_late, lost,
				   &m->deadline->stats.amount_too_late))
			m->deadline->stats.amount_too_late = MP_AMOUNT_MAX;
	}
	log_warn("channel %s: claim of epoch %u at %u TOO_LATE (%s): the broker finalised the "
		 "channel; %llu unredeemed is lost and the claim is not retried",
		 hex, hseq, index, detail ? detail : "", (unsigned long long)lost);
	return lost;
}

void redeem_deadline_metrics_register(struct redeem_deadline *d, struct mp_metrics *reg)
{
	struct redeem_deadline_stats *s = &d->stats;
	mp_metrics_u64(reg, MP_METRIC_GAUGE, "micropay_merchant_channels_at_risk",
		       "Channels near their redeem deadline with unredeemed payments (last check).",
		       NULL, &s->at_risk);
	mp_metrics_u64(reg, MP_METRIC_GAUGE, "micropay_merchant_amount_at_risk",
		       "Their unredeemed amount, minor units.", NULL, &s->amount_at_risk);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_deadline_rounds_total",
		       "Redeem rounds the deadline timer started.", NULL, &s->rounds_started);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_claims_too_late_total",
		       "Claims answered TOO_LATE (never retried).", NULL, &s->claims_too_late);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_amount_too_late_total",
		       "Unredeemed amount of channels answered TOO_LATE (lost), minor units.", NULL,
		       &s->amount_too_late);
}
