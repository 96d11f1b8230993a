/* Redemption rounds (PROTOCOL.md section 6, "Redemption"): a Redeem is signed and stored in
 * the outbox before it is sent, resent verbatim until the broker answers it, and the broker's
 * credited_end is taken as the truth for the next batch. Registration comes first (register.c);
 * both go over the broker link (broker_link.c: deadlines, reconnection with backoff).
 *
 * A round (one at a time; started by the admin method `redeem`, every redeem_interval, and
 * after a failed round by the retry timer):
 *
 *   START --no MerchantCert yet--> REGISTER --MerchantCert stored--> NEXT
 *         (a stored cert is confirmed, and renewed when due, by RegisterMerchant alongside)
 *   NEXT  --link not up--> (want the link; on_up: NEXT, on_down: FAILED)
 *   NEXT  --an unanswered Redeem in the outbox (an older round's, or LIMIT's halves)--> SENT
 *   NEXT  --else build the next Redeem of the pass--> SENT
 *         --the pass is over: it credited something (a channel redeemed in steps needs more
 *           passes)--> new pass, NEXT;  it credited nothing--> DONE
 *   SENT  --OK / DUPLICATE_OK: credited_end of each claim stored, then applied--> NEXT
 *   SENT  --LIMIT "retry later" (the broker's load)--> FAILED (the same bytes later)
 *   SENT  --other LIMIT (stores nothing at the broker): abandoned (answered in the outbox), the
 *           limits halved (claims; a single claim's hashes: steps), a new pass--> NEXT;
 *           nothing smaller possible--> FAILED
 *   SENT  --INTERNAL, no answer (deadline, connection lost)--> FAILED (the same bytes later)
 *   SENT  --another refusal of the whole Redeem: answered, never sent again--> FAILED
 *   FAILED --retry timer: 1 s, doubling per failed round up to [redeem] retry_max--> START
 *
 * A failed round is always retried, whatever redeem_interval says: a stalled or restarted
 * broker delays redemption, it never stops it. Each step is logged with its reason. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "redeem_build.h"
#include "redeem_metrics.h"
#include "register.h"
#include "stmt.h"
#include "store.h"
#include "store_redeem.h"

#define MAX_WAITERS	    16
#define REGISTER_RETRY_SECS 5
#define IDLE_TICK_SECS	    3600
#define RETRY_MAX_SHIFT	    20

struct waiter {
	redeem_done_fn done;
	void *arg;
};

struct redeemer {
	struct merchant *m;
	struct broker_link *link;
	struct event *tick;  /* registration retries; redeem_interval */
	struct event *retry; /* a failed round, again */
	bool registering;
	bool running;  /* a round */
	bool awaiting; /* a Redeem sent, its answer awaited */
	bool stopping;
	unsigned failures; /* rounds failed in a row */
	struct redeem_limits limits;
	struct redeem_pass pass;
	uint64_t pass_credited, round_credited;
	unsigned round_claims;
	struct waiter waiters[MAX_WAITERS];
	size_t n_waiters;
	struct redeem_stats stats;
};

/* One Redeem sent: its id and parsed body, to pair the results with the claims. */
struct in_flight {
	struct redeemer *r;
	uint8_t redeem_id[MP_ID_LEN];
	Micropay__V1__Redeem *body;
};

static void next_step(struct redeemer *r);

static const char *id_hex(const uint8_t id[MP_ID_LEN], char out[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(id, MP_ID_LEN, out);
	return out;
}

static void finish_round(struct redeemer *r, bool ok, const char *summary)
{
	r->running = false;
	if (ok) {
		r->failures = 0;
		log_info("redeem: %s", summary);
	} else {
		if (r->failures < RETRY_MAX_SHIFT)
			r->failures++;
		uint64_t delay = (uint64_t)1 << (r->failures - 1);
		if (delay > r->m->cfg.redeem_retry_max)
			delay = r->m->cfg.redeem_retry_max;
		r->stats.failed_rounds++;
		log_warn("redeem: %s; retrying in %llu s (%u failed in a row)", summary,
			 (unsigned long long)delay, r->failures);
		struct timeval tv = {(time_t)delay, 0};
		if (evtimer_add(r->retry, &tv) != 0)
			log_err("redeem: cannot arm the retry timer; the next round retries");
	}
	for (size_t i = 0; i < r->n_waiters; i++)
		r->waiters[i].done(r->waiters[i].arg, ok, summary, r->round_credited);
	r->n_waiters = 0;
}

static void finish_done(struct redeemer *r)
{
	char summary[128];
	snprintf(summary, sizeof(summary), "%u claims answered, %llu credited", r->round_claims,
		 (unsigned long long)r->round_credited);
	finish_round(r, true, summary);
}

static void new_pass(struct redeemer *r)
{
	if (++r->pass.number == 0)
		r->pass.number = 1; /* 0 is "never claimed" */
	r->pass.bucket = 0;
	r->pass.epochs_done = false;
	r->pass_credited = 0;
}

static void start_round(struct redeemer *r)
{
	evtimer_del(r->retry); /* this round is the retry */
	r->running = true;
	r->limits = (struct redeem_limits){r->m->cfg.max_claims, r->m->cfg.hash_budget};
	r->round_credited = 0;
	r->round_claims = 0;
	new_pass(r);
	next_step(r);
}

/* ---- registration ---- */

static void on_registered(void *arg, bool ok)
{
	struct redeemer *r = arg;
	r->registering = false;
	if (r->stopping || !r->running)
		return;
	if (ok)
		next_step(r);
	else if (r->m->cert_valid_until == 0)
		finish_round(r, false, "not registered with the broker");
}

/* Registration (a first cert, confirming a stored one, renewal) needs the link: sent now if it
 * is up, else when on_up comes. */
static void ensure_registered(struct redeemer *r)
{
	if (!merchant_cert_wanted(r->m, mp_now()) || r->registering)
		return;
	if (!broker_link_is_up(r->link)) {
		broker_link_want(r->link);
		return;
	}
	r->registering = merchant_register(r->m, r->link, on_registered, r);
	if (!r->registering && r->running && r->m->cert_valid_until == 0)
		finish_round(r, false, "cannot send RegisterMerchant");
}

/* ---- answers ---- */

static void log_claim_refused(const Micropay__V1__Claim *c, const Micropay__V1__ClaimResult *res)
{
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (mp_bytes_len_is(c->channel_id, MP_ID_LEN))
		id_hex(c->channel_id.data, hex);
	log_warn("redeem: claim of channel %s at %u refused: %s %s", hex,
		 c->point ? c->point->index : 0, mp_code_name(res->status), res->detail);
}

/* Store each claim's credited_end (and the outbox entry answered), then apply it in memory. */
static bool apply_results(struct redeemer *r, const struct in_flight *f,
			  const Micropay__V1__RedeemResp *resp)
{
	const Micropay__V1__Redeem *body = f->body;
	size_t n = body->n_claims < resp->n_results ? body->n_claims : resp->n_results;
	if (resp->n_results != body->n_claims)
		log_warn("redeem: %zu results for %zu claims", resp->n_results, body->n_claims);
	struct redeemed_claim *claims = calloc(n + 1, sizeof(*claims));
	if (!claims)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (mp_bytes_len_is(body->claims[i]->channel_id, MP_ID_LEN))
			memcpy(claims[i].channel_id, body->claims[i]->channel_id.data, MP_ID_LEN);
		claims[i].hseq = body->claims[i]->hseq_in;
		claims[i].credited_end = resp->results[i]->credited_end;
	}
	bool stored = store_outbox_answered(r->m->store, f->redeem_id, claims, n);
	for (size_t i = 0; stored && i < n; i++) {
		const Micropay__V1__ClaimResult *res = resp->results[i];
		struct channel *ch = channel_find(&r->m->channels, claims[i].channel_id);
		if (ch && ch->hseq == claims[i].hseq && ch->state == CHANNEL_HELD &&
		    res->credited_end > ch->redeemed_end)
			ch->redeemed_end = res->credited_end;
		if (res->status != MP_ST(OK) && res->status != MP_ST(DUPLICATE_OK))
			log_claim_refused(body->claims[i], res);
		r->m->stats.claims_credited += res->status == MP_ST(OK);
		if (!mp_amount_add(r->m->stats.amount_credited, res->credited_amount,
				   &r->m->stats.amount_credited))
			log_warn("redeem: credited amount counter overflow");
		r->pass_credited += res->credited_amount;
		r->round_credited += res->credited_amount;
	}
	r->round_claims += stored ? (unsigned)n : 0;
	free(claims);
	return stored;
}

/* LIMIT stores nothing under the redeem_id. A LIMIT that asks to retry later (the broker's
 * worker queue is full, or our budget for hashes wasted on BAD_CHAIN is spent) is about the
 * broker's load, not this Redeem's size: the same bytes go again after the backoff. The detail
 * is only a hint: shrinking on a LIMIT that was not about size is slower, never wrong.
 * Otherwise that Redeem is abandoned (answered in the outbox, never sent again) and the channels
 * are claimed again, in a new pass, by smaller Redeems with new redeem_ids. Rebuilding rather
 * than splitting the stored Redeem in halves costs log2(claims / the broker's limit) refused
 * Redeems, not one per half that is still too big. */
static void on_limit(struct redeemer *r, const struct in_flight *f, const char *detail)
{
	char hex[MP_HEX_ID_LEN + 1], summary[300];
	id_hex(f->redeem_id, hex);
	r->stats.limits++;
	log_warn("redeem %s: LIMIT for %zu claims (%s)", hex, f->body->n_claims, detail);
	if (strstr(detail, "retry later")) {
		snprintf(summary, sizeof(summary), "broker answered LIMIT: %s", detail);
		finish_round(r, false, summary);
		return;
	}
	if (!redeem_limits_shrink(r->m, f->body, &r->limits)) {
		finish_round(r, false, "LIMIT for a Redeem that cannot be made smaller");
		return;
	}
	if (!store_outbox_answered(r->m->store, f->redeem_id, NULL, 0)) {
		finish_round(r, false, "cannot record the LIMIT in the outbox");
		return;
	}
	r->stats.splits++;
	log_info("redeem %s: abandoned; its channels go again in Redeems of at most %u claims "
		 "and %llu hashes",
		 hex, r->limits.max_claims, (unsigned long long)r->limits.budget);
	new_pass(r);
	next_step(r);
}

static void on_redeemed(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct in_flight *f = arg;
	struct redeemer *r = f->r;
	r->awaiting = false;
	const Micropay__V1__RedeemResp *resp =
	    env && env->body_case == MP_BODY(REDEEM_RESP) ? env->redeem_resp : NULL;
	MpCode code = resp && resp->status ? resp->status->code : MP_ST(INTERNAL);
	const char *detail =
	    resp && resp->status && resp->status->detail ? resp->status->detail : "";
	char hex[MP_HEX_ID_LEN + 1], summary[300];
	id_hex(f->redeem_id, hex);
	if (r->stopping) {
		/* shutting down: the outbox keeps what is unanswered */
	} else if (!env) {
		finish_round(r, false, "no answer from the broker (connection lost or late)");
	} else if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
		r->stats.answered++;
		r->failures = 0; /* the backoff is per Redeem: this one is answered */
		r->m->stats.redeems_sent++;
		if (apply_results(r, f, resp))
			next_step(r);
		else
			finish_round(r, false, "cannot store the broker's answer");
	} else if (code == MP_ST(LIMIT)) {
		on_limit(r, f, detail);
	} else if (code == MP_ST(INTERNAL) || !resp) {
		snprintf(summary, sizeof(summary), "redeem %s: broker answered %s %s", hex,
			 mp_code_name(code), detail);
		finish_round(r, false, summary);
	} else {
		/* Refused whole for good (MALFORMED, BAD_SIG, CONFLICT, ...): these bytes are not
		 * sent again; the next round builds a new Redeem from the channels. */
		r->stats.refused++;
		log_err("redeem %s: refused by the broker: %s %s", hex, mp_code_name(code), detail);
		if (!store_outbox_answered(r->m->store, f->redeem_id, NULL, 0))
			log_err("redeem %s: cannot mark it answered; it will be sent again", hex);
		snprintf(summary, sizeof(summary), "broker refused the Redeem: %s %s",
			 mp_code_name(code), detail);
		finish_round(r, false, summary);
	}
	micropay__v1__redeem__free_unpacked(f->body, NULL);
	free(f);
}

/* ---- sending ---- */

enum send_result { SENT, ABANDONED, NOT_SENT };

/* Parse a stored Redeem; one that does not parse is abandoned (logged), it cannot be sent. */
static struct in_flight *in_flight_new(struct redeemer *r, const struct outbox_item *item,
				       MpSigned **stmt, bool *abandoned)
{
	struct in_flight *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	*stmt = mp_stmt_decode(item->bytes, item->len);
	if (*stmt)
		f->body = (Micropay__V1__Redeem *)mp_strict_unpack(
		    &micropay__v1__redeem__descriptor, (*stmt)->body.data, (*stmt)->body.len);
	if (f->body) {
		f->r = r;
		memcpy(f->redeem_id, item->redeem_id, MP_ID_LEN);
		return f;
	}
	char hex[MP_HEX_ID_LEN + 1];
	log_err("redeem %s: the stored Redeem does not parse; abandoning it",
		id_hex(item->redeem_id, hex));
	*abandoned = store_outbox_answered(r->m->store, item->redeem_id, NULL, 0);
	free(f);
	mp_stmt_free(*stmt);
	*stmt = NULL;
	return NULL;
}

static enum send_result send_stored(struct redeemer *r, const struct outbox_item *item)
{
	MpSigned *s = NULL;
	bool abandoned = false;
	struct in_flight *f = in_flight_new(r, item, &s, &abandoned);
	if (!f)
		return abandoned ? ABANDONED : NOT_SENT;
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	bool ok = broker_link_call(r->link, &env, on_redeemed, f) == 0;
	mp_stmt_free(s);
	if (!ok) {
		micropay__v1__redeem__free_unpacked(f->body, NULL);
		free(f);
		return NOT_SENT;
	}
	r->awaiting = true;
	r->stats.sent++;
	return SENT;
}

/* The oldest unanswered Redeem, else a new one; NOTHING_LEFT when the round is done. */
static enum build_result next_redeem(struct redeemer *r, struct outbox_item *item)
{
	*item = (struct outbox_item){0};
	if (store_outbox_next(r->m->store, item->redeem_id, &item->bytes, &item->len))
		return BUILD_STORED;
	for (;;) {
		unsigned steps = 0;
		enum build_result res = redeem_build_next(r->m, &r->pass, &r->limits, item, &steps);
		r->stats.steps += steps;
		if (res != BUILD_NOTHING_LEFT || r->pass_credited == 0)
			return res;
		new_pass(r); /* the last pass made progress: steps may remain */
	}
}

static void next_step(struct redeemer *r)
{
	if (r->stopping || !r->running || r->awaiting)
		return;
	if (r->m->cert_valid_until == 0) {
		ensure_registered(r);
		return;
	}
	if (!broker_link_is_up(r->link)) {
		broker_link_want(r->link); /* on_up resumes, on_down fails the round */
		return;
	}
	struct outbox_item item;
	enum send_result sent = NOT_SENT;
	switch (next_redeem(r, &item)) {
	case BUILD_STORED:
		sent = send_stored(r, &item);
		if (sent == NOT_SENT)
			finish_round(r, false, "cannot send the Redeem");
		break;
	case BUILD_NOTHING_LEFT:
		finish_done(r);
		break;
	case BUILD_FAILED:
		finish_round(r, false, "cannot build or store a Redeem");
		break;
	}
	free(item.bytes);
	if (sent == ABANDONED)
		next_step(r); /* the next one: this one is answered in the outbox now */
}

/* ---- the link ---- */

static void on_link_up(void *arg)
{
	struct redeemer *r = arg;
	ensure_registered(r);
	if (r->m->cert_valid_until != 0)
		next_step(r);
}

static void on_link_down(void *arg, const char *reason)
{
	struct redeemer *r = arg;
	if (r->running && !r->awaiting) {
		char summary[300];
		snprintf(summary, sizeof(summary), "broker unreachable: %s", reason);
		finish_round(r, false, summary);
	}
}

static const struct broker_link_ops link_ops = {
    .on_up = on_link_up,
    .on_down = on_link_down,
};

/* ---- timers and entry points ---- */

void redeemer_run(struct redeemer *r, redeem_done_fn done, void *arg)
{
	if (done) {
		if (r->n_waiters == MAX_WAITERS) {
			done(arg, false, "too many redemptions waiting", 0);
			return;
		}
		r->waiters[r->n_waiters++] = (struct waiter){done, arg};
	}
	if (r->running)
		return;
	batch_flush(r->m); /* redeem what has been acknowledged, right now */
	start_round(r);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct redeemer *r = arg;
	if (!r->running)
		start_round(r);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct redeemer *r = arg;
	struct merchant *m = r->m;
	ensure_registered(r); /* also the renewal of the MerchantCert, ahead of time */
	if (m->cert_valid_until != 0 && m->cfg.redeem_interval)
		redeemer_run(r, NULL, NULL);
	unsigned next = m->cert_valid_until == 0 ? REGISTER_RETRY_SECS
			: m->cfg.redeem_interval ? m->cfg.redeem_interval
						 : IDLE_TICK_SECS;
	if (m->cert_valid_until != 0 && merchant_cert_check_interval(m) < next)
		next = merchant_cert_check_interval(m);
	struct timeval tv = {next, 0};
	if (evtimer_add(r->tick, &tv) != 0)
		log_err("redeem: cannot arm the timer; redemption and renewal run only on demand");
}

struct redeemer *redeemer_new(struct merchant *m)
{
	struct redeemer *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->m = m;
	r->link = broker_link_new(m, &link_ops, r);
	r->tick = evtimer_new(m->base, on_tick, r);
	r->retry = evtimer_new(m->base, on_retry, r);
	if (!r->link || !r->tick || !r->retry) {
		redeemer_free(r);
		return NULL;
	}
	struct timeval now = {0, 0};
	if (evtimer_add(r->tick, &now) != 0) {
		redeemer_free(r);
		return NULL;
	}
	return r;
}

void redeemer_free(struct redeemer *r)
{
	if (!r)
		return;
	r->stopping = true;
	broker_link_free(r->link); /* a Redeem in flight stays in the outbox */
	if (r->tick)
		event_free(r->tick);
	if (r->retry)
		event_free(r->retry);
	for (size_t i = 0; i < r->n_waiters; i++)
		r->waiters[i].done(r->waiters[i].arg, false, "merchantd is stopping", 0);
	free(r);
}

size_t redeemer_metrics(struct redeemer *r, char *out, size_t len)
{
	return redeem_metrics_text(r->m, &r->stats, broker_link_stats(r->link), out, len);
}
