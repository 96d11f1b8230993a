/* RefundReq (protocol.md section 6, "Finalisation and refund"; docs/settlement.md): the owner
 * of a channel's last segment asks for its refund. The refund itself is paid by finalisation
 * (sweep.c) to the recorded payout account; this request learns the result, or names the
 * payout account when none was recorded. The key comes from our own state: the owner key of
 * the last (not void) segment, or for segment 0 also the issuing account's key; the Signed must
 * name one of them, verifies, and only then is the body parsed. Idempotent by refund_id (same
 * bytes: DUPLICATE_OK; other bytes: CONFLICT with the stored RefundRequest).
 *
 *   received --(no statement, no channel_id, body too large)------------> MALFORMED
 *      v
 *   refund_lookup --(no channel)---------------------------------------> UNKNOWN_CHANNEL
 *      | the last segment and its key(s)
 *      v
 *   signer_pk one of those keys --(else)------------------------------> BAD_SIG
 *      v
 *   VERIFYING [worker pool, verify_job.h]: Signed.type 12, signature, strict parse
 *      |          --(queue full)--> LIMIT busy   --(refused)--> BAD_SIG / MALFORMED
 *      |          --(pool stopped)--> INTERNAL
 *      v
 *      | body: refund_id 16, channel_id as peeked, payout 0 or 16 bytes --(else)--> MALFORMED
 *      v
 *      | custody without a Close, a close that is not a Close ----------> MALFORMED
 *      +--(a Close)--> refund_early.c: the early refund (CLOSED_EARLY) --> its answer
 *      v
 *   mp_refund_request(p_now) --(COMMIT)--> OK / DUPLICATE_OK + the result /
 *                              TOO_EARLY + not_before / STALE_SEGMENT / CONFLICT + stored /
 *                              MALFORMED (name a payout account) / UNKNOWN_ACCOUNT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "pb_peek.h"
#include "proto_limits.h"
#include "refund.h"
#include "stmt.h"
#include "util.h"
#include "verify_job.h"

/* A RefundRequest without a Close is about 100 bytes; with one it carries the Close and up to
 * MAX_HANDOFFS Handoffs (a Signed Handoff is about 300 bytes). Larger ones are refused before
 * their signature is checked (on a worker). */
#define REFUND_SIGNED_STMT_MAX 512
#define REFUND_BODY_MAX	       (1024 + (MP_MAX_HANDOFFS + 1) * REFUND_SIGNED_STMT_MAX)

static void refund_free(struct refund_call *rc)
{
	mp_stmt_free(rc->stmt);
	free(rc);
}

void refund_reply(struct refund_call *rc, MpCode code, const char *detail,
		  const struct refund_result *r)
{
	Micropay__V1__RefundResp resp = MICROPAY__V1__REFUND_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.broker_time = broker_now(rc->call->b);
	if (r) {
		st.evidence = r->evidence;
		resp.not_before = r->not_before;
		resp.refund = r->refund;
		resp.spent = r->spent;
		resp.unclaimed = r->unclaimed;
		resp.refunded_at = r->refunded_at;
		if (r->has_payout)
			resp.payout_account_id =
			    (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)r->payout};
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REFUND_RESP);
	env.refund_resp = &resp;
	log_info("refund %s: %s%s%s", rc->what, mp_code_name(code), detail && *detail ? ": " : "",
		 detail ? detail : "");
	if (code == MP_ST(OK))
		rc->call->b->stats.refunds++;
	else if (code == MP_ST(DUPLICATE_OK))
		rc->call->b->stats.refund_duplicates++;
	else
		rc->call->b->stats.requests_refused++;
	broker_call_reply(rc->call, &env);
	refund_free(rc);
}

void refund_reply_row(struct refund_call *rc, const PGresult *res, const char *error)
{
	if (!res || PQntuples(res) != 1) {
		refund_reply(rc, MP_ST(INTERNAL),
			     error ? error : "unexpected database result; retry", NULL);
		return;
	}
	struct refund_result r = {0};
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	if (!db_is_null(res, 0, "not_before"))
		r.not_before = (uint64_t)db_get_i64(res, 0, "not_before");
	if (!db_is_null(res, 0, "refund"))
		r.refund = (uint64_t)db_get_i64(res, 0, "refund");
	if (!db_is_null(res, 0, "spent"))
		r.spent = (uint32_t)db_get_i64(res, 0, "spent");
	if (!db_is_null(res, 0, "unclaimed"))
		r.unclaimed = (uint64_t)db_get_i64(res, 0, "unclaimed");
	if (!db_is_null(res, 0, "refunded_at"))
		r.refunded_at = (uint64_t)db_get_i64(res, 0, "refunded_at");
	r.has_payout = db_get_bytes(res, 0, "payout_account", r.payout, MP_ID_LEN);
	size_t len = 0;
	uint8_t *stored = db_get_blob(res, 0, "stored_stmt", &len);
	r.evidence = stored ? mp_stmt_decode(stored, len) : NULL;
	free(stored);
	refund_reply(rc, code, db_get_text(res, 0, "detail"), &r);
	mp_stmt_free(r.evidence);
}

static void on_requested(const PGresult *res, const char *error, void *arg)
{
	refund_reply_row(arg, res, error);
}

static void call_request(struct refund_call *rc, const Micropay__V1__RefundRequest *rq)
{
	struct broker *b = rc->call->b;
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(rc->stmt, &len);
	uint8_t hash[MP_HASH_LEN];
	if (!bytes) {
		refund_reply(rc, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	mp_stmt_hash(rc->stmt, hash);
	struct db_params p = {0};
	db_param_bytes(&p, rq->refund_id.data, MP_ID_LEN);
	db_param_bytes(&p, rc->channel_id, MP_ID_LEN);
	db_param_u64(&p, rq->seg_seq);
	db_param_bytes(&p, hash, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	if (rq->payout_account_id.len)
		db_param_bytes(&p, rq->payout_account_id.data, MP_ID_LEN);
	else
		db_param_text(&p, NULL);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "refund_request", &p, on_requested, rc);
	free(bytes);
	if (refused)
		refund_reply(rc, MP_ST(INTERNAL), refused, NULL);
}

/* The key the Signed names, if our state allows it to sign: the last segment's owner key, or
 * for segment 0 the issuing account's key. */
static const uint8_t *expected_key(const PGresult *res, const MpSigned *s, uint8_t owner[MP_PK_LEN],
				   uint8_t account[MP_PK_LEN])
{
	if (!mp_bytes_len_is(s->signer_pk, MP_PK_LEN))
		return NULL;
	if (db_get_bytes(res, 0, "owner_pk", owner, MP_PK_LEN) &&
	    memcmp(s->signer_pk.data, owner, MP_PK_LEN) == 0)
		return owner;
	if (db_get_bytes(res, 0, "account_pk", account, MP_PK_LEN) &&
	    memcmp(s->signer_pk.data, account, MP_PK_LEN) == 0)
		return account;
	return NULL;
}

static const char *check_body(const struct refund_call *rc, const Micropay__V1__RefundRequest *rq)
{
	if (!mp_bytes_len_is(rq->refund_id, MP_ID_LEN))
		return "refund_id must be 16 bytes";
	if (!mp_bytes_len_is(rq->channel_id, MP_ID_LEN) ||
	    memcmp(rq->channel_id.data, rc->channel_id, MP_ID_LEN) != 0)
		return "channel_id unreadable";
	if (rq->payout_account_id.len != 0 && rq->payout_account_id.len != MP_ID_LEN)
		return "payout_account_id must be empty or 16 bytes";
	if (!rq->close && rq->n_custody)
		return "custody without a Close";
	if (rq->close && rq->close->type != MP_STMT_CLOSE)
		return "close must be a Close statement (type 10)";
	return NULL;
}

/* VERIFYING done, on the loop: the body may be looked at now. */
static void on_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct refund_call *rc = arg;
	if (code != MP_ST(OK)) {
		refund_reply(rc, code,
			     code == MP_ST(INTERNAL)
				 ? "verification did not finish; retry"
				 : "RefundRequest refused under the last segment's key",
			     NULL);
		return;
	}
	const Micropay__V1__RefundRequest *rq = (const Micropay__V1__RefundRequest *)body;
	const char *bad = check_body(rc, rq);
	if (bad)
		refund_reply(rc, MP_ST(MALFORMED), bad, NULL);
	else if (rq->close)
		refund_early_run(rc, rq);
	else
		call_request(rc, rq);
	protobuf_c_message_free_unpacked(body, NULL);
}

static void on_lookup(const PGresult *res, const char *error, void *arg)
{
	struct refund_call *rc = arg;
	if (!res) {
		refund_reply(rc, MP_ST(INTERNAL), error, NULL);
		return;
	}
	if (PQntuples(res) != 1) {
		refund_reply(rc, MP_ST(UNKNOWN_CHANNEL), "no such channel", NULL);
		return;
	}
	uint8_t owner[MP_PK_LEN], account[MP_PK_LEN];
	const uint8_t *key = expected_key(res, rc->stmt, owner, account);
	if (!key) {
		refund_reply(rc, MP_ST(BAD_SIG),
			     "not signed by the owner of the last segment (segment 0: or the "
			     "issuing account)",
			     NULL);
		return;
	}
	rc->last_seg = (uint32_t)db_get_i64(res, 0, "seg_seq");
	/* rc->stmt is the job's to read until on_opened. */
	if (!broker_verify_submit(rc->call->b, rc->stmt, MP_STMT_REFUND_REQUEST, key,
				  &micropay__v1__refund_request__descriptor, on_opened, rc))
		refund_reply(rc, MP_ST(LIMIT), BROKER_BUSY_VERIFYING, NULL);
}

void handle_refund(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct refund_call *rc = calloc(1, sizeof(*rc));
	if (!rc || !(rc->call = broker_call_new(b, c, env))) {
		free(rc);
		return;
	}
	const Micropay__V1__RefundReq *req = env->refund_req;
	snprintf(rc->what, sizeof(rc->what), "from %s", mp_conn_peer(c));
	const uint8_t *cid;
	size_t cid_len;
	if (req->stmt && req->stmt->body.len > REFUND_BODY_MAX) {
		refund_reply(rc, MP_ST(MALFORMED),
			     "RefundRequest too large (a Close and at most MAX_HANDOFFS Handoffs)",
			     NULL);
		return;
	}
	if (!req->stmt ||
	    !mp_pb_peek_bytes(req->stmt->body.data, req->stmt->body.len, 2, &cid, &cid_len) ||
	    cid_len != MP_ID_LEN || !(rc->stmt = mp_stmt_copy(req->stmt))) {
		refund_reply(rc, MP_ST(MALFORMED), "a RefundRequest with a channel_id required",
			     NULL);
		return;
	}
	memcpy(rc->channel_id, cid, MP_ID_LEN);
	char ch[MP_HEX_ID_LEN + 1];
	mp_hex_encode(rc->channel_id, MP_ID_LEN, ch);
	snprintf(rc->what, sizeof(rc->what), "channel %s from %s", ch, mp_conn_peer(c));
	struct db_params p = {0};
	db_param_bytes(&p, rc->channel_id, MP_ID_LEN);
	const char *refused = db_call(b->db, "refund_lookup", &p, on_lookup, rc);
	if (refused)
		refund_reply(rc, MP_ST(INTERNAL), refused, NULL);
}
