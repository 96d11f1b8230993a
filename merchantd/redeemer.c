/* Redemption rounds (protocol.md section 6, "Redemption"): a Redeem is signed and stored in
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
 *   NEXT  --an unanswered Redeem in the outbox (an older round's, or one just stored)--> SENT
 *   NEXT  --else build the next Redeem of the pass--> SIGNING (on the worker: never on the
 *           loop; --signing failed, pool stopped--> FAILED, nothing stored) --signed--> STORING
 *         --a step claim needs a long walk--> WALKING --worker done: built--> SIGNING
 *         --the pass is over: it credited something (a channel redeemed in steps needs more
 *           passes)--> new pass, NEXT;  it credited nothing--> DONE
 *   STORING --outbox write durable (store thread)--> NEXT (which finds and sends it)
 *   STORING --write failed--> FAILED (nothing was sent)
 *   SENT  --OK / DUPLICATE_OK--> RECORDING (credited_end of each claim, answered)
 *           --durable: applied in memory--> NEXT; --write failed--> FAILED (sent again later)
 *   SENT  --LIMIT "retry later" (the broker's load)--> FAILED (the same bytes later)
 *   SENT  --other LIMIT (stores nothing at the broker): the limits halved (claims; a single
 *           claim's hashes: steps)--> RECORDING (abandoned: answered in the outbox)
 *           --durable--> a new pass, NEXT; nothing smaller possible--> FAILED
 *   SENT  --INTERNAL, no answer (deadline, connection lost)--> FAILED (the same bytes later)
 *   SENT  --another refusal of the whole Redeem--> RECORDING (answered, never sent again)
 *           --> FAILED
 *   FAILED --retry timer: 1 s, doubling per failed round up to [redeem] retry_max--> START
 *   DONE with claims answered INSUFFICIENT_FUNDS (redeem_wait.h) --again timer: 1 s, doubling
 *           while they wait, up to [redeem] retry_max--> START
 *   (start-up) with claims the store keeps waiting (redeem_wait_store.h) --again timer: 1 s-->
 *           START
 *
 * Every write (STORING, RECORDING) is a job of the store thread (store_writes.h), queued with
 * the group commits; the loop goes on serving while it waits on the disk or a lock, and nothing
 * is sent before what it depends on is durable (protocol.md section 5). One step at a time:
 * while a write, a walk or a signature is under way nothing else of the round runs, and a lost link
 * is noticed at the next step.
 *
 * A failed round is always retried, whatever redeem_interval says: a stalled or restarted
 * broker delays redemption, it never stops it. Each step is logged with its reason. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "broker_link.h"
#include "chan_sign.h"
#include "log.h"
#include "merchant.h"
#include "redeem_build.h"
#include "redeem_deadline.h"
#include "redeem_lag.h"
#include "redeem_metrics.h"
#include "redeem_wait.h"
#include "register.h"
#include "sign_job.h"
#include "stmt.h"
#include "store_redeem.h"
#include "store_writes.h"
#include "workers.h"

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
	struct event *again; /* claims waiting for the broker's funds (redeem_wait.h), again */
	bool registering;
	bool running;  /* a round */
	bool awaiting; /* a Redeem sent, its answer awaited */
	bool storing;  /* a write of ours queued on the store thread (STORING, RECORDING) */
	bool walking;  /* a step's chain walk on the worker (WALKING) */
	bool signing;  /* a built Redeem being signed on the worker (SIGNING) */
	bool stopping;
	struct mp_workers *walker; /* one thread: long step walks, Redeem signatures */
	unsigned failures;	   /* rounds failed in a row */
	struct redeem_limits limits;
	struct redeem_pass pass;
	uint64_t pass_credited, round_credited;
	unsigned round_claims;
	struct waiter waiters[MAX_WAITERS];
	size_t n_waiters;
	struct redeem_stats stats;
	struct redeem_wait wait;
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

/* Claims that wait for the broker's funds: the next round after the backoff. */
static void schedule_waiting(struct redeemer *r)
{
	uint64_t delay = redeem_wait_next_delay(&r->wait, r->m->cfg.redeem_retry_max);
	if (!delay)
		return;
	log_info("redeem: %zu claims wait for the broker's funds; claiming them again in %llu s "
		 "(attempt %u)",
		 r->wait.n, (unsigned long long)delay, r->wait.attempts);
	struct timeval tv = {(time_t)delay, 0};
	if (evtimer_add(r->again, &tv) != 0)
		log_err("redeem: cannot arm the timer of waiting claims; the next round retries");
}

static void finish_round(struct redeemer *r, bool ok, const char *summary)
{
	r->running = false;
	if (ok) {
		r->failures = 0;
		log_info("redeem: %s", summary);
		schedule_waiting(r);
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
	if (!merchant_cert_wanted(r->m, mp_clock_now(&r->m->clock)) || r->registering)
		return;
	if (!broker_link_is_up(r->link)) {
		broker_link_want(r->link);
		return;
	}
	r->registering = merchant_register(r->m, r->link, on_registered, r);
	if (!r->registering && r->running && r->m->cert_valid_until == 0)
		finish_round(r, false, "cannot send RegisterMerchant");
}

void redeemer_probe_clock(void *arg)
{
	struct redeemer *r = arg;
	if (r->registering || r->stopping)
		return;
	if (!broker_link_is_up(r->link)) {
		broker_link_want(r->link);
		return;
	}
	r->registering = merchant_register(r->m, r->link, on_registered, r);
	if (!r->registering)
		log_warn("clock: cannot send RegisterMerchant to learn the broker's time");
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

/* What a Redeem's answer does once it is recorded in the outbox. */
enum after_answered {
	AFTER_CREDITED,	   /* OK / DUPLICATE_OK: apply the credited ends, NEXT */
	AFTER_LIMIT,	   /* abandoned after LIMIT: a new pass with the lowered limits */
	AFTER_REFUSED,	   /* refused whole: the round fails */
	AFTER_UNPARSEABLE, /* a stored Redeem that does not parse: NEXT */
};

/* An outbox write of an answer under way, and what follows it. */
struct answered {
	struct redeemer *r;
	enum after_answered after;
	uint8_t redeem_id[MP_ID_LEN];
	struct redeemed_claim *claims; /* CREDITED */
	uint64_t *amounts;	       /* CREDITED: credited_amount per claim */
	unsigned fresh;		       /* CREDITED: claims answered OK */
	size_t n;
	char summary[300]; /* REFUSED: the round's summary */
};

static void answered_free(struct answered *a)
{
	free(a->claims);
	free(a->amounts);
	free(a);
}

static void on_answer_recorded(void *arg, bool ok);

/* Queue the outbox write of an answer (a's claims, if any); false (a freed) if it cannot. */
static bool record_answer(struct redeemer *r, struct answered *a)
{
	if (!store_write_outbox_answered(r->m, a->redeem_id, a->claims, a->n, on_answer_recorded,
					 a)) {
		answered_free(a);
		return false;
	}
	r->storing = true;
	return true;
}

static struct answered *answered_new(struct redeemer *r, enum after_answered after,
				     const uint8_t redeem_id[MP_ID_LEN])
{
	struct answered *a = calloc(1, sizeof(*a));
	if (a) {
		a->r = r;
		a->after = after;
		memcpy(a->redeem_id, redeem_id, MP_ID_LEN);
	} else {
		log_err("redeem: out of memory recording an answer");
	}
	return a;
}

/* OK / DUPLICATE_OK: each claim's credited_end to be stored with the entry answered. */
static bool record_results(struct redeemer *r, const struct in_flight *f,
			   const Micropay__V1__RedeemResp *resp)
{
	const Micropay__V1__Redeem *body = f->body;
	size_t n = body->n_claims < resp->n_results ? body->n_claims : resp->n_results;
	if (resp->n_results != body->n_claims)
		log_warn("redeem: %zu results for %zu claims", resp->n_results, body->n_claims);
	struct answered *a = answered_new(r, AFTER_CREDITED, f->redeem_id);
	if (!a)
		return false;
	a->claims = calloc(n + 1, sizeof(*a->claims));
	a->amounts = calloc(n + 1, sizeof(*a->amounts));
	if (!a->claims || !a->amounts) {
		answered_free(a);
		return false;
	}
	a->n = n;
	for (size_t i = 0; i < n; i++) {
		const Micropay__V1__ClaimResult *res = resp->results[i];
		if (mp_bytes_len_is(body->claims[i]->channel_id, MP_ID_LEN))
			memcpy(a->claims[i].channel_id, body->claims[i]->channel_id.data,
			       MP_ID_LEN);
		a->claims[i].hseq = body->claims[i]->hseq_in;
		a->claims[i].credited_end = res->credited_end;
		a->amounts[i] = res->credited_amount;
		a->fresh += res->status == MP_ST(OK);
		if (mp_bytes_len_is(body->claims[i]->channel_id, MP_ID_LEN)) {
			a->claims[i].waits = res->status == MP_ST(INSUFFICIENT_FUNDS);
			a->claims[i].wait_changed =
			    redeem_wait_result(&r->wait, body->claims[i]->channel_id.data,
					       body->claims[i]->hseq_in, res->status);
		}
		if (res->status == MP_ST(TOO_LATE) &&
		    mp_bytes_len_is(body->claims[i]->channel_id, MP_ID_LEN)) {
			a->claims[i].too_late = true;
			a->claims[i].index =
			    body->claims[i]->point ? body->claims[i]->point->index : 0;
			a->claims[i].lost = redeem_deadline_too_late(
			    r->m, body->claims[i]->channel_id.data, body->claims[i]->hseq_in,
			    a->claims[i].index, res->credited_end, res->detail);
		} else if (res->status != MP_ST(OK) && res->status != MP_ST(DUPLICATE_OK))
			log_claim_refused(body->claims[i], res);
	}
	return record_answer(r, a);
}

/* The answer is durable: apply it in memory. */
static void apply_results(struct redeemer *r, const struct answered *a)
{
	for (size_t i = 0; i < a->n; i++) {
		struct channel *ch = channel_find(&r->m->channels, a->claims[i].channel_id);
		/* Any state: a channel handed off or closed since is credited for the epoch we
		 * held (hseq), as store_outbox_answered records it. */
		if (ch && ch->hseq == a->claims[i].hseq &&
		    a->claims[i].credited_end > ch->redeemed_end) {
			ch->redeemed_end = a->claims[i].credited_end;
			redeem_lag_credited(ch);
		}
		if (!mp_amount_add(r->m->stats.amount_credited, a->amounts[i],
				   &r->m->stats.amount_credited))
			log_warn("redeem: credited amount counter overflow");
		r->pass_credited += a->amounts[i];
		r->round_credited += a->amounts[i];
	}
	r->m->stats.claims_credited += a->fresh;
	r->round_claims += (unsigned)a->n;
}

static void after_limit(struct redeemer *r, const struct answered *a)
{
	char hex[MP_HEX_ID_LEN + 1];
	r->stats.splits++;
	log_info("redeem %s: abandoned; its channels go again in Redeems of at most %u claims "
		 "and %llu hashes",
		 id_hex(a->redeem_id, hex), r->limits.max_claims,
		 (unsigned long long)r->limits.budget);
	new_pass(r);
	next_step(r);
}

/* Loop: an answer's outbox write completed. */
static void on_answer_recorded(void *arg, bool ok)
{
	struct answered *a = arg;
	struct redeemer *r = a->r;
	char hex[MP_HEX_ID_LEN + 1];
	r->storing = false;
	if (r->stopping) {
		answered_free(a);
		return;
	}
	switch (a->after) {
	case AFTER_CREDITED:
		if (ok) {
			apply_results(r, a);
			next_step(r);
		} else {
			finish_round(r, false, "cannot store the broker's answer");
		}
		break;
	case AFTER_LIMIT:
		if (ok)
			after_limit(r, a);
		else
			finish_round(r, false, "cannot record the LIMIT in the outbox");
		break;
	case AFTER_REFUSED:
		if (!ok)
			log_err("redeem %s: cannot mark it answered; it will be sent again",
				id_hex(a->redeem_id, hex));
		finish_round(r, false, a->summary);
		break;
	case AFTER_UNPARSEABLE:
		if (ok)
			next_step(r);
		else
			finish_round(r, false,
				     "cannot abandon a stored Redeem that does not parse");
		break;
	}
	answered_free(a);
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
	struct answered *a = answered_new(r, AFTER_LIMIT, f->redeem_id);
	if (!a || !record_answer(r, a))
		finish_round(r, false, "cannot record the LIMIT in the outbox");
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
	if (resp)
		merchant_broker_time_seen(r->m, resp->broker_time);
	id_hex(f->redeem_id, hex);
	if (r->stopping) {
		/* shutting down: the outbox keeps what is unanswered */
	} else if (!env) {
		finish_round(r, false, "no answer from the broker (connection lost or late)");
	} else if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
		r->stats.answered++;
		r->failures = 0; /* the backoff is per Redeem: this one is answered */
		r->m->stats.redeems_sent++;
		if (!record_results(r, f, resp))
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
		snprintf(summary, sizeof(summary), "broker refused the Redeem: %s %s",
			 mp_code_name(code), detail);
		struct answered *a = answered_new(r, AFTER_REFUSED, f->redeem_id);
		if (a)
			memcpy(a->summary, summary, sizeof(summary));
		if (!a || !record_answer(r, a)) {
			log_err("redeem %s: cannot mark it answered; it will be sent again", hex);
			finish_round(r, false, summary);
		}
	}
	micropay__v1__redeem__free_unpacked(f->body, NULL);
	free(f);
}

/* ---- sending ---- */

enum send_result { SENT, ABANDONING, NOT_SENT };

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
	struct answered *a = answered_new(r, AFTER_UNPARSEABLE, item->redeem_id);
	*abandoned = a && record_answer(r, a);
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
		return abandoned ? ABANDONING : NOT_SENT;
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

/* ---- building, walking, storing ---- */

static void on_redeem_stored(void *arg, bool ok)
{
	struct redeemer *r = arg;
	r->storing = false;
	if (r->stopping)
		return;
	if (ok)
		next_step(r); /* finds it in the outbox and sends it */
	else
		finish_round(r, false, "cannot store the Redeem in the outbox (nothing sent)");
}

/* A signed Redeem: into the outbox on the store thread; sent once durable. */
static void store_redeem(struct redeemer *r, struct outbox_item *item)
{
	r->storing = store_write_outbox_put(r->m, item, on_redeem_stored, r);
	free(item->bytes);
	item->bytes = NULL;
	if (!r->storing)
		finish_round(r, false, "cannot queue the Redeem's outbox write");
}

struct redeem_sign {
	struct redeemer *r;
	uint8_t redeem_id[MP_ID_LEN];
};

static void on_redeem_signed(void *arg, MpSigned *stmt)
{
	struct redeem_sign *job = arg;
	struct redeemer *r = job->r;
	r->signing = false;
	struct outbox_item item = {0};
	memcpy(item.redeem_id, job->redeem_id, MP_ID_LEN);
	free(job);
	if (stmt)
		merchant_count_worker_signature(r->m);
	item.bytes = stmt ? mp_stmt_encode(stmt, &item.len) : NULL;
	mp_stmt_free(stmt);
	if (r->stopping)
		free(item.bytes);
	else if (!item.bytes)
		finish_round(r, false, "cannot sign the Redeem (nothing stored or sent)");
	else
		store_redeem(r, &item);
}

/* A built Redeem (its body): signed on the worker (SIGNING), then stored. item->bytes is
 * taken. */
static void sign_redeem(struct redeemer *r, struct outbox_item *item)
{
	struct redeem_sign *job = calloc(1, sizeof(*job));
	if (job) {
		job->r = r;
		memcpy(job->redeem_id, item->redeem_id, MP_ID_LEN);
	}
	r->signing =
	    job && mp_sign_packed_job_submit(r->walker, &r->m->key, MP_STMT_REDEEM, item->bytes,
					     item->len, on_redeem_signed, job);
	if (!job)
		free(item->bytes);
	item->bytes = NULL;
	if (!r->signing) {
		free(job);
		finish_round(r, false, "cannot start signing the Redeem");
	}
}

struct walk_job {
	struct redeemer *r;
	struct step_walk walk;
};

/* Worker thread. */
static void walk_work(void *arg, const atomic_bool *stop)
{
	redeem_step_walk(&((struct walk_job *)arg)->walk, stop);
}

static void on_walked(void *arg, enum mp_job_outcome outcome)
{
	struct walk_job *job = arg;
	struct redeemer *r = job->r;
	r->walking = false;
	if (!r->stopping) {
		struct outbox_item item = {0};
		enum build_result res = BUILD_FAILED;
		if (outcome == MP_JOB_DONE && job->walk.done)
			res = redeem_build_step(r->m, &r->pass, &job->walk, &item);
		if (res == BUILD_SEALED) {
			r->stats.steps++;
			sign_redeem(r, &item);
		} else if (res == BUILD_NOTHING_LEFT) {
			next_step(r);
		} else {
			finish_round(r, false, "cannot walk or sign a step claim");
		}
	}
	free(job);
}

static void start_walk(struct redeemer *r, const struct step_walk *walk)
{
	struct walk_job *job = calloc(1, sizeof(*job));
	if (job)
		*job = (struct walk_job){r, *walk};
	r->walking = job && mp_workers_submit(r->walker, walk_work, on_walked, job);
	if (!r->walking) {
		free(job);
		finish_round(r, false, "cannot start a step's chain walk");
	}
}

/* The oldest unanswered Redeem (found), else a new one; NOTHING_LEFT when the round is done. */
static enum build_result next_redeem(struct redeemer *r, struct outbox_item *item,
				     struct step_walk *walk, bool *found)
{
	*item = (struct outbox_item){0};
	*found = store_outbox_next(r->m->store, item->redeem_id, &item->bytes, &item->len);
	if (*found)
		return BUILD_SEALED;
	for (;;) {
		unsigned steps = 0;
		enum build_result res =
		    redeem_build_next(r->m, &r->pass, &r->limits, item, &steps, walk);
		r->stats.steps += steps;
		if (res != BUILD_NOTHING_LEFT || r->pass_credited == 0)
			return res;
		new_pass(r); /* the last pass made progress: steps may remain */
	}
}

static void next_step(struct redeemer *r)
{
	if (r->stopping || !r->running || r->awaiting || r->storing || r->walking || r->signing)
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
	struct step_walk walk;
	bool found;
	switch (next_redeem(r, &item, &walk, &found)) {
	case BUILD_SEALED:
		if (!found)
			sign_redeem(r, &item);
		else if (send_stored(r, &item) == NOT_SENT)
			finish_round(r, false, "cannot send the Redeem");
		break;
	case BUILD_WALK:
		start_walk(r, &walk);
		break;
	case BUILD_NOTHING_LEFT:
		finish_done(r);
		break;
	case BUILD_FAILED:
		finish_round(r, false, "cannot build a Redeem");
		break;
	}
	free(item.bytes);
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
	if (r->running && !r->awaiting && !r->storing && !r->walking && !r->signing) {
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

static void on_again(evutil_socket_t fd, short what, void *arg)
{
	struct redeemer *r = arg;
	if (r->running)
		return; /* this round claims them; its end schedules the next attempt */
	r->wait.retries++;
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

struct broker_link *redeemer_link(struct redeemer *r)
{
	return r->link;
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
	r->again = evtimer_new(m->base, on_again, r);
	r->walker = mp_workers_new(m->base, 1, 1);
	if (!r->link || !r->tick || !r->retry || !r->again || !r->walker) {
		redeemer_free(r);
		return NULL;
	}
	struct timeval now = {0, 0};
	if (!redeem_wait_load(&r->wait, m->store) || evtimer_add(r->tick, &now) != 0) {
		redeemer_free(r);
		return NULL;
	}
	schedule_waiting(r); /* claims that waited before a restart */
	return r;
}

void redeemer_stop(struct redeemer *r)
{
	if (r)
		r->stopping = true;
}

void redeemer_free(struct redeemer *r)
{
	if (!r)
		return;
	r->stopping = true;
	if (r->walker)
		mp_workers_free(r->walker); /* a walk or signature under way: cancelled, its done
					     * frees it */
	broker_link_free(r->link);	    /* a Redeem in flight stays in the outbox */
	if (r->tick)
		event_free(r->tick);
	if (r->retry)
		event_free(r->retry);
	if (r->again)
		event_free(r->again);
	for (size_t i = 0; i < r->n_waiters; i++)
		r->waiters[i].done(r->waiters[i].arg, false, "merchantd is stopping", 0);
	free(r);
}

void redeemer_metrics_register(struct redeemer *r, struct mp_metrics *reg)
{
	redeem_metrics_register(r->m, &r->stats, broker_link_stats(r->link), reg);
	redeem_wait_metrics_register(&r->wait, reg);
}
