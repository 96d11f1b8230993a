/* A CapNoticeReq or SegmentClaimReq after its handler's first checks:
 *
 *   custody_prepare (db): the channel, its stored Handoffs, pairs, points; merchant keys
 *      |                                              --(no channel)--> UNKNOWN_CHANNEL
 *      v
 *   VERIFY [worker pool] (segment_verify.c)           --(queue full)--> LIMIT busy
 *      |                                              --(refused)----> its status
 *      v
 *   segment_record (db, one transaction: segments, base and cap points, statements, the
 *      | SegmentClaim and its payout account)
 *      v
 *   answer after COMMIT: OK / DUPLICATE_OK / CONFLICT + stored Cap or SegmentClaim /
 *      MALFORMED reused / UNKNOWN_ACCOUNT / TOO_EARLY / LIMIT / CLOSED (a new segment or
 *      SegmentClaim of a channel closed early: nothing stored; a new Cap of a ForcedClose's
 *      epoch recorded as the conflict cap_after_forced_close, migration 0032)
 *
 * Nothing is stored before the last step, and that step is idempotent by (channel, seg_seq). */
#include "segment_intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "stmt.h"
#include "util.h"
#include "workers.h"

void segment_intake_reply(struct segment_intake *in, MpCode code, const char *detail,
			  const MpSigned *evidence)
{
	MpStatus st;
	broker_status(&st, code, detail);
	if (code == MP_ST(CONFLICT))
		st.evidence = (MpSigned *)evidence;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__CapNoticeResp notice = MICROPAY__V1__CAP_NOTICE_RESP__INIT;
	Micropay__V1__SegmentClaimResp claim = MICROPAY__V1__SEGMENT_CLAIM_RESP__INIT;
	if (in->is_claim) {
		claim.status = &st;
		claim.broker_time = mp_clock_now(&in->call->b->clock);
		env.body_case = MP_BODY(SEGMENT_CLAIM_RESP);
		env.segment_claim_resp = &claim;
	} else {
		notice.status = &st;
		notice.broker_time = mp_clock_now(&in->call->b->clock);
		env.body_case = MP_BODY(CAP_NOTICE_RESP);
		env.cap_notice_resp = &notice;
	}
	bool ok = code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK);
	mp_log(ok ? MP_LOG_INFO : MP_LOG_WARN, "%s %s: %s%s%s",
	       in->is_claim ? "segment claim" : "cap notice", in->what, mp_code_name(code),
	       detail && *detail ? ": " : "", detail ? detail : "");
	if (!ok)
		in->call->b->stats.requests_refused++;
	broker_call_reply(in->call, &env);
	segment_job_free(in->job);
	free(in);
}

/* ---- RECORD ---- */

static void on_recorded(const PGresult *res, const char *error, void *arg)
{
	struct segment_intake *in = arg;
	if (!res || PQntuples(res) != 1) {
		segment_intake_reply(in, MP_ST(INTERNAL),
				     error ? error : "unexpected database result; retry", NULL);
		return;
	}
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, 0, "evidence", &len);
	MpSigned *evidence = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	if (code == MP_ST(CONFLICT) && !evidence)
		log_err("%s: stored statement unreadable", in->what);
	if (db_get_i64(res, 0, "conflicts_new"))
		log_warn("%s: conflict recorded (%s)", in->what,
			 code == MP_ST(CLOSED) ? "cap_after_forced_close" : "double_cap");
	segment_intake_reply(in, code, db_get_text(res, 0, "detail"), evidence);
	mp_stmt_free(evidence);
}

static void record(struct segment_intake *in)
{
	struct segment_job *job = in->job;
	struct segment_record_req req = {
	    .channel_id = in->channel_id,
	    .source = in->is_claim ? "claim" : "notice",
	    .main_seg = job->seg_seq,
	    .pairs = job->found,
	    .n_pairs = job->n_found,
	    .claim = in->is_claim ? job->claim_stmt : NULL,
	    .payout = in->is_claim ? job->claim->payout_account_id.data : NULL,
	};
	const char *refused = segment_record_call(in->call->b->db, &req, on_recorded, in);
	if (refused)
		segment_intake_reply(in, MP_ST(INTERNAL), refused, NULL);
}

/* ---- VERIFY ---- */

static void on_verified(void *arg, enum mp_job_outcome outcome)
{
	struct segment_job *job = arg;
	struct segment_intake *in = job->owner;
	if (outcome == MP_JOB_CANCELLED)
		segment_intake_reply(in, MP_ST(INTERNAL), "verification did not finish; retry",
				     NULL);
	else if (job->code != MP_ST(OK))
		segment_intake_reply(in, job->code, job->detail, NULL);
	else
		record(in);
}

static void on_prepared(const PGresult *res, const char *error, void *arg)
{
	struct segment_intake *in = arg;
	struct segment_job *job = in->job;
	if (!res) {
		segment_intake_reply(in, MP_ST(INTERNAL), error ? error : "no result; retry", NULL);
		return;
	}
	if (!custody_load(res, &job->chans, &job->n_chans, &job->keys, &job->n_keys)) {
		log_err("%s: channel rows unreadable or out of memory", in->what);
		segment_intake_reply(in, MP_ST(INTERNAL), "channel evidence unreadable; retry",
				     NULL);
		return;
	}
	if (job->n_chans != 1) {
		segment_intake_reply(in, MP_ST(UNKNOWN_CHANNEL), "unknown channel", NULL);
		return;
	}
	job->owner = in;
	if (!mp_workers_submit(in->call->b->workers, segment_work, on_verified, job)) {
		in->call->b->stats.worker_queue_refusals++;
		segment_intake_reply(in, MP_ST(LIMIT),
				     "broker busy: verification queue full, retry later", NULL);
	}
}

void segment_intake_run(struct segment_intake *in)
{
	char lit[2 * MP_ID_LEN + 16];
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(in->channel_id, MP_ID_LEN, hex);
	snprintf(lit, sizeof(lit), "{\"\\\\x%s\"}", hex);
	struct db_params p = {0};
	db_param_text(&p, lit);
	db_param_text(&p, lit);
	const char *refused = db_call(in->call->b->db, "custody_prepare", &p, on_prepared, in);
	if (refused)
		segment_intake_reply(in, MP_ST(INTERNAL), refused, NULL);
}

bool segment_intake_copy(MpSigned *const *src, size_t n, MpSigned ***out, size_t *n_out)
{
	*out = NULL, *n_out = 0;
	if (!n)
		return true;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return false;
	for (; *n_out < n; (*n_out)++)
		if (!src[*n_out] || !((*out)[*n_out] = mp_stmt_copy(src[*n_out])))
			return false;
	return true;
}

struct segment_intake *segment_intake_new(struct broker *b, struct mp_conn *c,
					  const MpEnvelope *env, bool is_claim)
{
	struct segment_intake *in = calloc(1, sizeof(*in));
	if (in)
		in->job = calloc(1, sizeof(*in->job));
	if (!in || !in->job || !(in->call = broker_call_new(b, c, env))) {
		if (in)
			free(in->job);
		free(in);
		return NULL;
	}
	in->is_claim = is_claim;
	snprintf(in->what, sizeof(in->what), "from %s", mp_conn_peer(c));
	return in;
}
