/* Refunding unanswered disputes (protocol.md section 6 "Fair exchange"; docs/disputes.md): at
 * the start of every settlement sweep pass (sweep.c), the OPEN disputes whose answer_by has
 * passed at the pass's time are listed (mp_dispute_due: never tried first, the oldest first)
 * and each refunded in its own transaction under its channel's and its own row lock
 * (mp_dispute_refund): `amount` to the payout account from what this channel's credit to the
 * merchant still holds in its pending account, then its bond, then the loss reserve,
 * REFUNDED. A refund they cannot cover, or that fails, moves nothing: the dispute stays OPEN,
 * the attempt is recorded and the next pass lists it after the untried ones, so it never
 * blocks the queue (logged and counted here). A dispute no longer OPEN
 * is left as it is, so a retried or repeated pass, or a broker killed in between, refunds
 * each dispute exactly once. Channels are then finalised by the same pass (mp_sweep_due skips
 * a channel only while a dispute on it is OPEN).
 *
 *   listing --(ids)--> refunding --(each, one call at a time)--> refunding --> done
 *   listing --(database error)--> done (counted; the next pass tries again)
 *   refunding --(a step fails or is not covered)--> logged, counted, the next one */
#include "dispute_sweep.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "util.h"

struct due {
	uint8_t channel_id[MP_ID_LEN], order_ref[MP_ID_LEN];
};

struct dispute_sweep {
	struct broker *b;
	uint64_t now;
	struct due *due;
	size_t n, next;
	uint64_t refunded, failures;
	void (*done)(void *arg, uint64_t refunded, uint64_t failures);
	void *arg;
};

static void finish(struct dispute_sweep *s)
{
	if (s->refunded || s->failures)
		log_info("sweep at %llu: %llu disputes refunded, %llu failed",
			 (unsigned long long)s->now, (unsigned long long)s->refunded,
			 (unsigned long long)s->failures);
	void (*done)(void *, uint64_t, uint64_t) = s->done;
	void *arg = s->arg;
	uint64_t refunded = s->refunded, failures = s->failures;
	free(s->due);
	free(s);
	done(arg, refunded, failures);
}

static void step(struct dispute_sweep *s);

static void on_refunded(const PGresult *res, const char *error, void *arg)
{
	struct dispute_sweep *s = arg;
	const struct due *d = &s->due[s->next++];
	char ch[MP_HEX_ID_LEN + 1], ref[MP_HEX_ID_LEN + 1];
	mp_hex_encode(d->channel_id, MP_ID_LEN, ch);
	mp_hex_encode(d->order_ref, MP_ID_LEN, ref);
	if (!res || PQntuples(res) != 1) {
		log_warn("sweep: dispute %s/%s: refund failed: %s", ch, ref,
			 error ? error : "unexpected result");
		s->failures++;
	} else if (db_get_bool(res, 0, "refunded")) {
		log_info("sweep: dispute %s/%s REFUNDED", ch, ref);
		s->refunded++;
	} else if (!db_is_null(res, 0, "detail")) {
		log_warn("sweep: dispute %s/%s left OPEN, listed after the others: refund %s", ch,
			 ref, db_get_text(res, 0, "detail"));
		s->failures++;
	}
	step(s);
}

static void step(struct dispute_sweep *s)
{
	if (s->next == s->n) {
		finish(s);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, s->due[s->next].channel_id, MP_ID_LEN);
	db_param_bytes(&p, s->due[s->next].order_ref, MP_ID_LEN);
	db_param_u64(&p, s->now);
	const char *refused = db_call(s->b->db, "dispute_refund", &p, on_refunded, s);
	if (refused) {
		log_warn("sweep: cannot refund disputes: %s; left for the next pass", refused);
		s->failures++;
		finish(s);
	}
}

static void on_listed(const PGresult *res, const char *error, void *arg)
{
	struct dispute_sweep *s = arg;
	if (!res) {
		log_warn("sweep: cannot list due disputes: %s", error ? error : "no result");
		s->failures++;
		finish(s);
		return;
	}
	int rows = PQntuples(res);
	s->due = calloc((size_t)rows + 1, sizeof(*s->due));
	if (!s->due) {
		s->failures++;
		finish(s);
		return;
	}
	for (int i = 0; i < rows; i++)
		if (db_get_bytes(res, i, "channel_id", s->due[s->n].channel_id, MP_ID_LEN) &&
		    db_get_bytes(res, i, "order_ref", s->due[s->n].order_ref, MP_ID_LEN))
			s->n++;
	step(s);
}

bool dispute_sweep_run(struct broker *b, uint64_t now, uint32_t batch,
		       void (*done)(void *arg, uint64_t refunded, uint64_t failures), void *arg)
{
	struct dispute_sweep *s = calloc(1, sizeof(*s));
	if (!s)
		return false;
	*s = (struct dispute_sweep){.b = b, .now = now, .done = done, .arg = arg};
	struct db_params p = {0};
	db_param_u64(&p, now);
	db_param_u64(&p, batch);
	const char *refused = db_call(b->db, "dispute_due", &p, on_listed, s);
	if (refused) {
		log_warn("sweep: cannot list due disputes: %s", refused);
		free(s);
		return false;
	}
	return true;
}
