/* The settlement sweep (docs/settlement.md "The sweep"). A pass fixes the broker's effective
 * time once, lists due channels in channel_id order in batches of at most `batch`
 * (mp_sweep_due), and steps each with mp_sweep_channel: one implicit transaction per channel
 * under its row lock, so a step is all or nothing, a repeated step changes nothing, and a
 * broker killed in the middle of a pass resumes with the channels not yet committed. A channel
 * whose step fails is logged, counted and left for the next pass (the cursor moves past it, so
 * it cannot hold the others back). Only one call is in flight at a time: the sweep never takes
 * more than one pool connection from the requests.
 *
 *   idle --timer (sweep_interval) or sweep.run--> disputes (dispute_sweep.c: the OPEN disputes
 *      past answer_by refunded, each in its own transaction) --> releases (release_sweep.c:
 *      the PENDING releases past release_at forced, each in its own transaction) --> listing
 *   listing --(ids)--> stepping --(each channel, one at a time)--> stepping
 *   stepping --(batch done, it was full)--> listing after the last id
 *   stepping --(batch done, it was short)--> idle: pass complete, waiting admin calls answered
 *   listing --(database error)--> idle (counted; the next timer tries again)
 *   a sweep.run during a pass is answered at the end of the next pass, which starts at once. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "broker.h"
#include "db.h"
#include "dispute_sweep.h"
#include "release_sweep.h"
#include "log.h"
#include "metrics.h"
#include "sweep.h"
#include "util.h"

#define SWEEP_MAX_WAITERS 16

struct sweep_pass {
	uint64_t now; /* the broker's effective time for every step of the pass */
	uint64_t started_ms;
	uint64_t expired, finalized, failures;
};

struct sweep {
	struct broker *b;
	struct event *timer;
	uint32_t batch_max;
	bool running, stopping;
	struct sweep_pass pass;
	uint8_t cursor[MP_ID_LEN];
	bool have_cursor;
	uint8_t (*batch)[MP_ID_LEN];
	size_t n, next;
	struct mp_admin_req *waiting[SWEEP_MAX_WAITERS]; /* answered at the end of this pass */
	size_t n_waiting;
	struct mp_admin_req *queued[SWEEP_MAX_WAITERS]; /* ... of the next pass */
	size_t n_queued;
	struct sweep_stats stats;
};

static void sweep_list(struct sweep *s);
static void sweep_step(struct sweep *s);
static void pass_end(struct sweep *s);

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static json_t *pass_json(const struct sweep *s)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "time", (json_int_t)s->pass.now, "expired",
			 (json_int_t)s->pass.expired, "finalized", (json_int_t)s->pass.finalized,
			 "failures", (json_int_t)s->pass.failures, "passes",
			 (json_int_t)s->stats.passes);
}

/* The pass's releases forced (or left for the next pass): now the channels. */
static void on_releases_done(void *arg, uint64_t forced, uint64_t failures)
{
	struct sweep *s = arg;
	s->stats.releases_forced += forced;
	s->pass.failures += failures;
	s->stats.failures += failures;
	if (s->stopping)
		pass_end(s);
	else
		sweep_list(s);
}

/* The pass's disputes refunded (or left for the next pass): now the releases. */
static void on_disputes_done(void *arg, uint64_t refunded, uint64_t failures)
{
	struct sweep *s = arg;
	s->stats.disputes_refunded += refunded;
	s->pass.failures += failures;
	s->stats.failures += failures;
	if (s->stopping)
		pass_end(s);
	else if (!release_sweep_run(s->b, s->pass.now, s->batch_max, on_releases_done, s))
		sweep_list(s); /* releases wait for the next pass */
}

static void pass_start(struct sweep *s)
{
	s->running = true;
	s->pass = (struct sweep_pass){.now = broker_now(s->b), .started_ms = now_ms()};
	s->have_cursor = false;
	memcpy(s->waiting, s->queued, s->n_queued * sizeof(s->queued[0]));
	s->n_waiting = s->n_queued;
	s->n_queued = 0;
	if (!dispute_sweep_run(s->b, s->pass.now, s->batch_max, on_disputes_done, s))
		sweep_list(s); /* disputes wait for the next pass; their channels are skipped */
}

static void pass_end(struct sweep *s)
{
	s->running = false;
	s->stats.passes++;
	s->stats.last_pass_at = s->pass.now;
	s->stats.last_pass_ms = now_ms() - s->pass.started_ms;
	if (s->pass.expired || s->pass.finalized || s->pass.failures)
		log_info("sweep at %llu: %llu expired, %llu finalized, %llu failed in %llu ms",
			 (unsigned long long)s->pass.now, (unsigned long long)s->pass.expired,
			 (unsigned long long)s->pass.finalized,
			 (unsigned long long)s->pass.failures,
			 (unsigned long long)s->stats.last_pass_ms);
	for (size_t i = 0; i < s->n_waiting; i++)
		mp_admin_reply(s->waiting[i], pass_json(s));
	s->n_waiting = 0;
	if (s->n_queued && !s->stopping)
		pass_start(s);
}

static void on_stepped(const PGresult *res, const char *error, void *arg)
{
	struct sweep *s = arg;
	char ch[MP_HEX_ID_LEN + 1];
	mp_hex_encode(s->batch[s->next], MP_ID_LEN, ch);
	s->next++;
	if (!res || PQntuples(res) != 1) {
		log_warn("sweep: channel %s: step failed: %s", ch,
			 error ? error : "unexpected result");
		s->pass.failures++;
		s->stats.failures++;
	} else {
		const char *action = db_get_text(res, 0, "action");
		if (strcmp(action, "expired") == 0) {
			log_info("sweep: channel %s EXPIRED", ch);
			s->pass.expired++;
			s->stats.channels_expired++;
		} else if (strcmp(action, "finalized") == 0) {
			bool paid = db_get_bool(res, 0, "refund_paid");
			log_info(
			    "sweep: channel %s FINALIZED: spent %lld, refund %lld%s, unclaimed "
			    "%lld",
			    ch, (long long)db_get_i64(res, 0, "spent"),
			    (long long)db_get_i64(res, 0, "refund"),
			    paid ? " paid" : " held (no payout account recorded)",
			    (long long)db_get_i64(res, 0, "unclaimed"));
			s->pass.finalized++;
			s->stats.channels_finalized++;
			s->stats.refunds_paid += paid;
		}
	}
	if (s->stopping)
		pass_end(s);
	else
		sweep_step(s);
}

static void sweep_step(struct sweep *s)
{
	if (s->next == s->n) {
		if (s->n < s->batch_max) {
			pass_end(s);
			return;
		}
		memcpy(s->cursor, s->batch[s->n - 1], MP_ID_LEN);
		s->have_cursor = true;
		sweep_list(s);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, s->batch[s->next], MP_ID_LEN);
	db_param_u64(&p, s->pass.now);
	const char *refused = db_call(s->b->db, "sweep_channel", &p, on_stepped, s);
	if (refused) {
		log_warn("sweep: cannot step: %s; the pass stops here", refused);
		s->pass.failures++;
		s->stats.failures++;
		pass_end(s);
	}
}

static void on_listed(const PGresult *res, const char *error, void *arg)
{
	struct sweep *s = arg;
	if (!res) {
		log_warn("sweep: cannot list due channels: %s", error ? error : "no result");
		s->pass.failures++;
		s->stats.failures++;
		pass_end(s);
		return;
	}
	s->n = 0;
	s->next = 0;
	int rows = PQntuples(res);
	for (int i = 0; i < rows && s->n < s->batch_max; i++)
		if (db_get_bytes(res, i, "channel_id", s->batch[s->n], MP_ID_LEN))
			s->n++;
	if (s->stopping || s->n == 0)
		pass_end(s);
	else
		sweep_step(s);
}

static void sweep_list(struct sweep *s)
{
	struct db_params p = {0};
	db_param_u64(&p, s->pass.now);
	if (s->have_cursor)
		db_param_bytes(&p, s->cursor, MP_ID_LEN);
	else
		db_param_text(&p, NULL);
	db_param_u64(&p, s->batch_max);
	const char *refused = db_call(s->b->db, "sweep_due", &p, on_listed, s);
	if (refused) {
		log_warn("sweep: cannot list due channels: %s", refused);
		s->pass.failures++;
		s->stats.failures++;
		pass_end(s);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sweep *s = arg;
	if (!s->running && !s->stopping)
		pass_start(s);
}

struct sweep *sweep_start(struct broker *b, uint32_t interval_s, uint32_t batch)
{
	struct sweep *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->b = b;
	s->batch_max = batch;
	s->batch = calloc(batch, sizeof(*s->batch));
	s->timer = event_new(b->base, -1, EV_PERSIST, on_timer, s);
	struct timeval tv = {.tv_sec = interval_s};
	if (!s->batch || !s->timer || event_add(s->timer, &tv) != 0) {
		log_err("sweep: cannot start its timer");
		sweep_free(s);
		return NULL;
	}
	log_info("sweep: every %u s, batches of %u channels", interval_s, batch);
	pass_start(s);
	return s;
}

void sweep_stop(struct sweep *s)
{
	if (!s)
		return;
	s->stopping = true;
	if (s->timer)
		event_del(s->timer);
}

void sweep_free(struct sweep *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_waiting; i++)
		mp_admin_fail(s->waiting[i], MP_ADMIN_UNAVAILABLE, "shutting down");
	for (size_t i = 0; i < s->n_queued; i++)
		mp_admin_fail(s->queued[i], MP_ADMIN_UNAVAILABLE, "shutting down");
	if (s->timer)
		event_free(s->timer);
	free(s->batch);
	free(s);
}

void sweep_run_admin(struct sweep *s, struct mp_admin_req *req)
{
	if (s->stopping) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE, "shutting down");
		return;
	}
	if (s->n_queued == SWEEP_MAX_WAITERS) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE,
			      "%d sweep.run calls already waiting; retry later", SWEEP_MAX_WAITERS);
		return;
	}
	s->queued[s->n_queued++] = req;
	if (!s->running)
		pass_start(s);
}

void sweep_get_stats(const struct sweep *s, struct sweep_stats *out)
{
	*out = s->stats;
}

static double last_pass_seconds(const void *arg)
{
	const struct sweep *s = arg;
	return (double)s->stats.last_pass_ms / 1000;
}

void sweep_metrics_register(struct sweep *s, struct mp_metrics *reg)
{
	struct sweep_stats *st = &s->stats;
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_passes_total",
		       "Settlement sweep passes completed.", NULL, &st->passes);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_channels_expired_total",
		       "Channels moved OPEN -> EXPIRED by the sweep.", NULL, &st->channels_expired);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_channels_finalized_total",
		       "Channels finalised by the sweep.", NULL, &st->channels_finalized);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_refunds_paid_total",
		       "Finalisations that paid the refund at once.", NULL, &st->refunds_paid);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_disputes_refunded_total",
		       "Disputes refunded after their answer time.", NULL, &st->disputes_refunded);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_releases_forced_total",
		       "Releases forced with a ForcedClose after release_wait.", NULL,
		       &st->releases_forced);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_sweep_failures_total",
		       "Sweep channel steps or listings that failed (logged).", NULL,
		       &st->failures);
	mp_metrics_u64(reg, MP_METRIC_GAUGE, "micropay_broker_sweep_last_pass_time",
		       "Broker time (Unix seconds) of the last completed pass; 0: none.", NULL,
		       &st->last_pass_at);
	mp_metrics_fn(reg, MP_METRIC_GAUGE, "micropay_broker_sweep_last_pass_seconds",
		      "Duration of the last completed pass, seconds.", NULL, last_pass_seconds, s);
}
