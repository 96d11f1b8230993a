/* ReleaseReq (protocol.md section 6 "Release", statement 17; docs/release.md): the owner of a
 * channel's current segment asks the broker to release the channel from its holder. Any
 * client may send it, as a RefundReq; the key comes from our own state: the ReleaseRequest
 * must be signed by the owner key of the channel's current segment as the broker knows it.
 * Idempotent by statement: the same statement again answers the release's state (DUPLICATE_OK,
 * with the ForcedClose once signed); another while one is PENDING or FORCED, or for the
 * segment and epoch of a DONE one, CONFLICT with the stored one (migration 0032).
 *
 *   received --(no statement, too large, no channel_id)-----------------> MALFORMED
 *      v
 *   release_lookup (db) --(no channel)--------------------------------> UNKNOWN_CHANNEL
 *      | --(these exact bytes stored: verified then)--> mp_release_request (its answer)
 *      | the current segment's owner key --(none)--------------------> STALE_SEGMENT
 *      v
 *   SIGNATURE [worker pool]: ReleaseRequest (type 17) under the owner key, strictly parsed
 *      |                           --(refused)--> BAD_SIG / MALFORMED --(queue full)--> LIMIT
 *      v
 *   fields: channel_id as peeked, to_mid 16 bytes xor close, seg_seq and epoch at most
 *      | 2^31-1 --(else)-------------------------------------------------> MALFORMED
 *      v
 *   mp_release_request (db, one transaction under the channel's row lock)
 *      --> OK PENDING + release_at / DUPLICATE_OK + state / CONFLICT + the stored request /
 *          TOO_LATE (finalised) / CLOSED / STALE_SEGMENT / HANDED_OFF / OUT_OF_RANGE (epoch)
 *          / NOT_HOLDER
 *
 * Every refusal stores nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "pb_peek.h"
#include "sign_job.h"
#include "stmt.h"
#include "util.h"
#include "verify_job.h"

/* A ReleaseRequest: two ids, two small integers and a flag. */
#define RELEASE_BODY_MAX 256

struct release {
	struct broker_call *call;
	MpSigned *stmt; /* our copy; the verify job's to read while it runs */
	uint8_t stmt_hash[MP_HASH_LEN];
	uint8_t channel_id[MP_ID_LEN];
	char what[MP_HEX_ID_LEN + 80];
};

static Micropay__V1__ReleaseState state_of(const char *state)
{
	return (Micropay__V1__ReleaseState)mp_enum_value(&micropay__v1__release_state__descriptor,
							 "RELEASE_", state,
							 MICROPAY__V1__RELEASE_STATE__RELEASE_NONE);
}

static void send_resp(struct release *r, Micropay__V1__ReleaseResp *resp, MpCode code,
		      const char *detail, MpSigned *evidence)
{
	MpStatus st;
	resp->status = broker_status(&st, code, detail);
	st.evidence = evidence;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RELEASE_RESP);
	env.release_resp = resp;
	log_info("release %s: %s%s%s", r->what, mp_code_name(code), detail && *detail ? ": " : "",
		 detail ? detail : "");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		r->call->b->stats.requests_refused++;
	broker_call_reply(r->call, &env);
	mp_stmt_free(r->stmt);
	free(r);
}

static void release_reply(struct release *r, MpCode code, const char *detail)
{
	Micropay__V1__ReleaseResp resp = MICROPAY__V1__RELEASE_RESP__INIT;
	send_resp(r, &resp, code, detail, NULL);
}

static MpSigned *blob_stmt(const PGresult *res, const char *col)
{
	size_t len = 0;
	uint8_t *blob = db_get_blob(res, 0, col, &len);
	MpSigned *s = blob ? mp_stmt_decode(blob, len) : NULL;
	free(blob);
	return s;
}

static void on_recorded(const PGresult *res, const char *error, void *arg)
{
	struct release *r = arg;
	if (!res || PQntuples(res) != 1) {
		release_reply(r, MP_ST(INTERNAL),
			      error ? error : "unexpected database result; retry");
		return;
	}
	Micropay__V1__ReleaseResp resp = MICROPAY__V1__RELEASE_RESP__INIT;
	resp.state = state_of(db_get_text(res, 0, "state"));
	if (!db_is_null(res, 0, "release_at"))
		resp.release_at = (uint64_t)db_get_i64(res, 0, "release_at");
	MpSigned *forced = blob_stmt(res, "forced_close");
	MpSigned *evidence = blob_stmt(res, "stored_stmt");
	resp.forced_close = forced;
	send_resp(r, &resp, (MpCode)db_get_i64(res, 0, "status"), db_get_text(res, 0, "detail"),
		  evidence);
	mp_stmt_free(forced);
	mp_stmt_free(evidence);
}

static void record(struct release *r, const Micropay__V1__ReleaseRequest *rq)
{
	struct broker *b = r->call->b;
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(r->stmt, &len);
	if (!bytes) {
		release_reply(r, MP_ST(INTERNAL), "out of memory");
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, r->channel_id, MP_ID_LEN);
	db_param_bytes(&p, r->stmt_hash, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	db_param_u64(&p, rq->seg_seq);
	db_param_u64(&p, rq->epoch);
	db_param_bytes(&p, rq->to_mid.data, rq->to_mid.len);
	db_param_text(&p, rq->close ? "true" : "false");
	db_param_u64(&p, b->cfg.release_wait);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "release_request", &p, on_recorded, r);
	free(bytes);
	if (refused)
		release_reply(r, MP_ST(INTERNAL), refused);
}

static const char *check_fields(const struct release *r, const Micropay__V1__ReleaseRequest *rq)
{
	if (!mp_bytes_len_is(rq->channel_id, MP_ID_LEN) ||
	    memcmp(rq->channel_id.data, r->channel_id, MP_ID_LEN))
		return "channel_id unreadable";
	if (rq->to_mid.len != 0 && rq->to_mid.len != MP_ID_LEN)
		return "to_mid 16 bytes";
	if ((rq->to_mid.len == MP_ID_LEN) == rq->close)
		return "exactly one of to_mid and close";
	if (rq->seg_seq > INT32_MAX || rq->epoch > INT32_MAX)
		return "seg_seq and epoch at most 2^31-1";
	return NULL;
}

static void on_verified(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct release *r = arg;
	if (code != MP_ST(OK)) {
		release_reply(
		    r, code,
		    code == MP_ST(INTERNAL)
			? "verification did not finish; retry"
			: "ReleaseRequest refused under the owner key of the current segment");
		return;
	}
	r->call->b->stats.verifications_worker++;
	const Micropay__V1__ReleaseRequest *rq = (const Micropay__V1__ReleaseRequest *)body;
	const char *bad = check_fields(r, rq);
	if (bad)
		release_reply(r, MP_ST(MALFORMED), bad);
	else
		record(r, rq);
	protobuf_c_message_free_unpacked(body, NULL);
}

/* These exact bytes were verified when they were stored: their release's answer, without a
 * new verification (the channel may have another owner by now). */
static void answer_stored(struct release *r)
{
	ProtobufCMessage *body = mp_strict_unpack(&micropay__v1__release_request__descriptor,
						  r->stmt->body.data, r->stmt->body.len);
	if (!body) {
		release_reply(r, MP_ST(INTERNAL), "a stored ReleaseRequest unreadable");
		return;
	}
	record(r, (const Micropay__V1__ReleaseRequest *)body);
	protobuf_c_message_free_unpacked(body, NULL);
}

static void on_lookup(const PGresult *res, const char *error, void *arg)
{
	struct release *r = arg;
	uint8_t owner_pk[MP_PK_LEN];
	struct broker *b = r->call->b;
	if (!res) {
		release_reply(r, MP_ST(INTERNAL), error ? error : "no result; retry");
	} else if (PQntuples(res) != 1) {
		release_reply(r, MP_ST(UNKNOWN_CHANNEL), "no such channel");
	} else if (db_get_bool(res, 0, "stored")) {
		answer_stored(r);
	} else if (!db_get_bytes(res, 0, "owner_pk", owner_pk, MP_PK_LEN)) {
		release_reply(r, MP_ST(STALE_SEGMENT), "the channel has no current segment");
	} else if (!mp_verify_job_submit(b->workers, r->stmt, MP_STMT_RELEASE_REQUEST, owner_pk,
					 &micropay__v1__release_request__descriptor, on_verified,
					 r)) {
		b->stats.worker_queue_refusals++;
		release_reply(r, MP_ST(LIMIT), BROKER_BUSY_VERIFYING);
	}
}

void handle_release(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct release *r = calloc(1, sizeof(*r));
	if (!r || !(r->call = broker_call_new(b, c, env))) {
		free(r);
		return;
	}
	snprintf(r->what, sizeof(r->what), "from %s", mp_conn_peer(c));
	const MpSigned *stmt = env->release_req->stmt;
	const uint8_t *v;
	size_t len = 0;
	if (!stmt || stmt->body.len > RELEASE_BODY_MAX || !(r->stmt = mp_stmt_copy(stmt)) ||
	    !mp_pb_peek_bytes(stmt->body.data, stmt->body.len, 1, &v, &len) || len != MP_ID_LEN) {
		release_reply(r, MP_ST(MALFORMED),
			      "a ReleaseRequest of at most 256 bytes naming its channel required");
		return;
	}
	memcpy(r->channel_id, v, MP_ID_LEN);
	mp_stmt_hash(r->stmt, r->stmt_hash);
	char ch[MP_HEX_ID_LEN + 1];
	mp_hex_encode(r->channel_id, MP_ID_LEN, ch);
	snprintf(r->what, sizeof(r->what), "channel %s from %s", ch, mp_conn_peer(c));
	struct db_params p = {0};
	db_param_bytes(&p, r->channel_id, MP_ID_LEN);
	db_param_bytes(&p, r->stmt_hash, MP_HASH_LEN);
	const char *refused = db_call(b->db, "release_lookup", &p, on_lookup, r);
	if (refused)
		release_reply(r, MP_ST(INTERNAL), refused);
}
