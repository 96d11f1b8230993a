/* The early refund (protocol.md section 6 "Close"; docs/close.md, docs/settlement.md): a
 * RefundRequest, signed by the owner of the channel's last segment (refund.c checked that and
 * parsed it), carries the holder's Close and the custody chain (Handoffs 1..H) it ends. The
 * broker verifies both on the worker pool exactly as it verifies a claim carrying them
 * (custody_verify.c, close_verify.c), then pays (n - max(final_index, spent)) * unit_value at
 * once and marks the channel CLOSED_EARLY, under the channel's row lock (mp_refund_early).
 *
 *   refund.c (signature, body) --> custody_prepare (db: the channel, its stored Handoffs and
 *      | pairs, merchant keys)                          --(no channel)--> UNKNOWN_CHANNEL
 *      v
 *   VERIFY [worker pool]: custody chain, fork, Close   --(queue full)--> LIMIT busy
 *      |                                               --(refused)----> BAD_SIG / MALFORMED /
 *      |                            BAD_CHAIN / OUT_OF_RANGE / NOT_HOLDER / CONFLICT /
 *      |                            STALE_SEGMENT
 *      v
 *   mp_refund_early (db, one transaction) --(COMMIT)--> OK + the refund / DUPLICATE_OK + the
 *      stored result / CONFLICT + the stored RefundRequest or Close / TOO_LATE / HANDED_OFF /
 *      STALE_SEGMENT / MALFORMED (name a payout account) / UNKNOWN_ACCOUNT
 *
 * Nothing is stored before the last step, which is idempotent by refund_id and by channel. It
 * stores the Handoffs 1..H the broker did not have as custody evidence (as a Redeem's custody
 * is stored), with the refund; a Handoff H+1 already stored makes the Close void (HANDED_OFF,
 * conflict close_after_handoff against its signer; migration 0022, docs/close.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody_arrays.h"
#include "custody_verify.h"
#include "db.h"
#include "log.h"
#include "refund.h"
#include "stmt.h"
#include "util.h"
#include "workers.h"

struct refund_early {
	struct refund_call *rc;
	struct custody_close_job *job;
	uint8_t refund_id[MP_ID_LEN];
	uint8_t payout[MP_ID_LEN];
	bool has_payout;
	uint32_t seg_seq; /* the RefundRequest's */
};

static void early_done(struct refund_early *x, MpCode code, const char *detail)
{
	refund_reply(x->rc, code, detail, NULL);
	custody_close_job_free(x->job);
	free(x);
}

/* ---- PAY ---- */

static void on_refunded(const PGresult *res, const char *error, void *arg)
{
	struct refund_early *x = arg;
	refund_reply_row(x->rc, res, error);
	custody_close_job_free(x->job);
	free(x);
}

/* The Handoffs the broker has not stored as mp_refund_early's p_h_* parameters (all arrays but
 * the channel's). a must be freed after the call whatever this returns. */
static bool handoff_params(struct db_params *p, struct handoff_arrays *a,
			   const struct custody_close_job *job)
{
	bool ok = true;
	for (int i = 0; i < HANDOFF_ARRAYS; i++)
		ok = pg_array_begin(custody_handoff_array(a, i)) & ok; /* all begun: all freeable */
	for (size_t i = 0; ok && i < job->n_news; i++)
		custody_fill_handoff(a, &job->news[i]);
	for (int i = 1; ok && i < HANDOFF_ARRAYS; i++) {
		const char *text = pg_array_end(custody_handoff_array(a, i));
		ok = text != NULL;
		db_param_text(p, text);
	}
	return ok;
}

static void pay(struct refund_early *x)
{
	struct refund_call *rc = x->rc;
	struct custody_close_job *job = x->job;
	const MpSigned *close = job->custody[job->n_custody - 1];
	size_t len = 0, close_len = 0;
	uint8_t *bytes = mp_stmt_encode(rc->stmt, &len);
	uint8_t *close_bytes = mp_stmt_encode(close, &close_len);
	uint8_t hash[MP_HASH_LEN], close_hash[MP_HASH_LEN];
	if (!bytes || !close_bytes) {
		free(bytes), free(close_bytes);
		early_done(x, MP_ST(INTERNAL), "out of memory");
		return;
	}
	mp_stmt_hash(rc->stmt, hash);
	mp_stmt_hash(close, close_hash);
	struct db_params p = {0};
	db_param_bytes(&p, x->refund_id, MP_ID_LEN);
	db_param_bytes(&p, rc->channel_id, MP_ID_LEN);
	db_param_u64(&p, x->seg_seq);
	db_param_bytes(&p, hash, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	if (x->has_payout)
		db_param_bytes(&p, x->payout, MP_ID_LEN);
	else
		db_param_text(&p, NULL);
	db_param_bytes(&p, close_hash, MP_HASH_LEN);
	db_param_bytes(&p, close_bytes, close_len);
	db_param_u64(&p, job->hseq);
	db_param_u64(&p, job->final_index);
	db_param_u64(&p, broker_now(rc->call->b));
	db_param_bytes(&p, job->closer, MP_ID_LEN);
	struct handoff_arrays a;
	bool ok = handoff_params(&p, &a, job);
	const char *refused =
	    ok ? db_call(rc->call->b->db, "refund_early", &p, on_refunded, x) : "out of memory";
	for (int i = 0; i < HANDOFF_ARRAYS; i++)
		pg_array_free(custody_handoff_array(&a, i));
	free(bytes);
	free(close_bytes);
	if (refused)
		early_done(x, MP_ST(INTERNAL), refused);
}

/* ---- VERIFY ---- */

static void on_verified(void *arg, enum mp_job_outcome outcome)
{
	struct custody_close_job *job = arg;
	struct refund_early *x = job->owner;
	if (outcome == MP_JOB_CANCELLED) {
		early_done(x, MP_ST(INTERNAL), "verification did not finish; retry");
		return;
	}
	if (job->code != MP_ST(OK)) {
		early_done(x, job->code, job->detail);
		return;
	}
	char mid[MP_HEX_ID_LEN + 1];
	mp_hex_encode(job->closer, MP_ID_LEN, mid);
	log_info("refund %s: Close of epoch %u by %s at index %u verified", x->rc->what, job->hseq,
		 mid, job->final_index);
	pay(x);
}

static void on_prepared(const PGresult *res, const char *error, void *arg)
{
	struct refund_early *x = arg;
	struct custody_close_job *job = x->job;
	if (!res) {
		early_done(x, MP_ST(INTERNAL), error ? error : "no result; retry");
		return;
	}
	if (!custody_load(res, &job->chans, &job->n_chans, &job->keys, &job->n_keys)) {
		log_err("refund %s: channel rows unreadable or out of memory", x->rc->what);
		early_done(x, MP_ST(INTERNAL), "channel evidence unreadable; retry");
		return;
	}
	if (job->n_chans != 1) {
		early_done(x, MP_ST(UNKNOWN_CHANNEL), "unknown channel");
		return;
	}
	struct broker *b = x->rc->call->b;
	if (!mp_workers_submit(b->workers, custody_close_work, on_verified, job)) {
		b->stats.worker_queue_refusals++;
		early_done(x, MP_ST(LIMIT), "broker busy: verification queue full, retry later");
	}
}

/* Copies of the custody chain and the Close for the job (the request is freed on return). */
static bool copy_evidence(struct custody_close_job *job, const Micropay__V1__RefundRequest *rq)
{
	job->custody = calloc(rq->n_custody + 1, sizeof(*job->custody));
	if (!job->custody)
		return false;
	for (size_t i = 0; i < rq->n_custody; i++)
		if (!rq->custody[i] ||
		    !(job->custody[job->n_custody++] = mp_stmt_copy(rq->custody[i])))
			return false;
	return (job->custody[job->n_custody++] = mp_stmt_copy(rq->close)) != NULL;
}

void refund_early_run(struct refund_call *rc, const Micropay__V1__RefundRequest *rq)
{
	struct refund_early *x = calloc(1, sizeof(*x));
	if (x)
		x->job = calloc(1, sizeof(*x->job));
	if (!x || !x->job || !copy_evidence(x->job, rq)) {
		if (x)
			custody_close_job_free(x->job);
		free(x);
		refund_reply(rc, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	x->rc = rc;
	x->job->owner = x;
	x->job->seg_seq = rc->last_seg;
	x->seg_seq = rq->seg_seq;
	memcpy(x->refund_id, rq->refund_id.data, MP_ID_LEN);
	x->has_payout = rq->payout_account_id.len == MP_ID_LEN;
	if (x->has_payout)
		memcpy(x->payout, rq->payout_account_id.data, MP_ID_LEN);
	char lit[2 * MP_ID_LEN + 16];
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(rc->channel_id, MP_ID_LEN, hex);
	snprintf(lit, sizeof(lit), "{\"\\\\x%s\"}", hex);
	struct db_params p = {0};
	db_param_text(&p, lit);
	db_param_text(&p, lit);
	const char *refused = db_call(rc->call->b->db, "custody_prepare", &p, on_prepared, x);
	if (refused)
		early_done(x, MP_ST(INTERNAL), refused);
}
