/* DisputeReq (protocol.md section 6 "Fair exchange", statement 16; docs/disputes.md): a
 * wallet that paid an Offer's pay_index and got no key by its deadline asks the broker. Any
 * client may send it, as a RefundReq; the keys come from our own state: the Dispute must be
 * signed by the owner of the Offer's segment, the Offer by the registered key of its merchant.
 * Idempotent by (channel_id, order_ref): the same statement again answers the dispute's
 * state (DUPLICATE_OK, with the key once released), another CONFLICT with the stored one.
 *
 *   received --(no statement, too large, no Offer with ids)-----------------> MALFORMED
 *      | peek: the Offer's channel_id, seg_seq, merchant_id
 *      v
 *   dispute_lookup (db) --(no channel)-------------------------------------> UNKNOWN_CHANNEL
 *      | the segment's owner key --(none)-------------------------------> STALE_SEGMENT
 *      | the merchant's key --(not registered)--------------------------> UNKNOWN_ACCOUNT
 *      v
 *   SIGNATURES [worker pool]: the Dispute (type 16) under the owner key, then the Offer
 *      | (type 15) under the merchant key, each strictly parsed   --(refused)--> BAD_SIG /
 *      |                     MALFORMED             --(queue full)--> LIMIT busy
 *      v
 *      | with a BadKeyProof (bad_key): checked against the verified Offer on the same worker
 *      | (common/sealed_proof.h) --(the key opens the chunk)--> CONFLICT; --(not the Offer's
 *      | key or chunk, malformed)--> MALFORMED; else proven
 *   fields: w 32 bytes, payout 16, the Offer's ids as peeked, pay_index = after_index +
 *      | ceil(price / unit_value) within MAX_JUMP and <= n --(else)--------> MALFORMED
 *      v
 *   dispute_check (db): stored dispute --> DUPLICATE_OK + state / CONFLICT + stored;
 *      | now < deadline --> TOO_EARLY; past deadline + window, redeem_until --> TOO_LATE;
 *      | payout not a customer account of the currency --> UNKNOWN_ACCOUNT
 *      v
 *   EVIDENCE (dispute_evidence.c): custody and w_pay_index verified as a claim at pay_index
 *      v
 *   mp_dispute_open (db, one transaction) --> OK + OPEN, answer_by (or a refusal, nothing
 *      stored)
 *   proven, the dispute stored (by mp_dispute_open just now, or found by dispute_check with
 *      the same statement) --> mp_dispute_prove (dispute_prove.c): OPEN with answer_by = now,
 *      refunded by the next sweep (or the stored answer, or TOO_LATE)
 *
 * Every refusal before mp_dispute_open stores nothing, except that custody evidence (Handoffs,
 * Transfer/Cap pairs) verified on the way is recorded as a Redeem's is. */
#include "dispute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispute_budget.h"
#include "log.h"
#include "pb_peek.h"
#include "proto_limits.h"
#include "sealed.h"
#include "sealed_proof.h"
#include "stmt.h"
#include "util.h"
#include "verify_job.h"
#include "workers.h"

/* A Dispute carries one Offer (about 300 bytes), a word and an account id. */
#define DISPUTE_BODY_MAX 2048

static void dispute_free(struct dispute *d)
{
	mp_stmt_free(d->stmt);
	for (size_t i = 0; i < d->n_custody; i++)
		mp_stmt_free(d->custody[i]);
	for (size_t i = 0; i < d->n_segments; i++)
		mp_stmt_free(d->segments[i]);
	free(d->custody);
	free(d->segments);
	free(d->proof);
	free(d);
}

Micropay__V1__DisputeState dispute_state_of(const char *state)
{
	return (Micropay__V1__DisputeState)mp_enum_value(&micropay__v1__dispute_state__descriptor,
							 "DISPUTE_", state,
							 MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
}

static void send_resp(struct dispute *d, Micropay__V1__DisputeResp *resp, MpCode code,
		      const char *detail, MpSigned *evidence)
{
	MpStatus st;
	resp->status = broker_status(&st, code, detail);
	st.evidence = evidence;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_RESP);
	env.dispute_resp = resp;
	log_info("dispute %s: %s%s%s", d->what, mp_code_name(code), detail && *detail ? ": " : "",
		 detail ? detail : "");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		d->call->b->stats.requests_refused++;
	struct mp_conn *conn = d->call->conn;
	mp_conn_ref(conn);
	broker_call_reply(d->call, &env);
	if (d->budgeted)
		dispute_budget_done(conn, code);
	mp_conn_unref(conn);
	dispute_free(d);
}

void dispute_reply(struct dispute *d, MpCode code, const char *detail)
{
	Micropay__V1__DisputeResp resp = MICROPAY__V1__DISPUTE_RESP__INIT;
	send_resp(d, &resp, code, detail, NULL);
}

void dispute_reply_row(struct dispute *d, const PGresult *res, const char *error)
{
	if (!res || PQntuples(res) != 1) {
		dispute_reply(d, MP_ST(INTERNAL),
			      error ? error : "unexpected database result; retry");
		return;
	}
	Micropay__V1__DisputeResp resp = MICROPAY__V1__DISPUTE_RESP__INIT;
	uint8_t key[MP_SEAL_KEY_LEN];
	resp.state = dispute_state_of(db_get_text(res, 0, "state"));
	if (db_get_bytes(res, 0, "key", key, sizeof(key)))
		resp.key = (ProtobufCBinaryData){sizeof(key), key};
	if (!db_is_null(res, 0, "refunded"))
		resp.refunded = (uint64_t)db_get_i64(res, 0, "refunded");
	if (!db_is_null(res, 0, "answer_by"))
		resp.answer_by = (uint64_t)db_get_i64(res, 0, "answer_by");
	size_t len = 0;
	uint8_t *stored = db_get_blob(res, 0, "stored_stmt", &len);
	MpSigned *evidence = stored ? mp_stmt_decode(stored, len) : NULL;
	free(stored);
	send_resp(d, &resp, (MpCode)db_get_i64(res, 0, "status"), db_get_text(res, 0, "detail"),
		  evidence);
	mp_stmt_free(evidence);
}

/* ---- CHECK ---- */

static void on_checked(const PGresult *res, const char *error, void *arg)
{
	struct dispute *d = arg;
	int64_t status = res && PQntuples(res) == 1 ? db_get_i64(res, 0, "status") : -1;
	if (status == MP_ST(OK))
		dispute_evidence_run(d);
	else if (status == MP_ST(DUPLICATE_OK) && d->proven)
		dispute_prove(d); /* stored: the proof goes on it */
	else
		dispute_reply_row(d, res, error);
}

static void call_check(struct dispute *d)
{
	struct broker *b = d->call->b;
	struct db_params p = {0};
	db_param_bytes(&p, d->channel_id, MP_ID_LEN);
	db_param_bytes(&p, d->offer.order_ref, MP_ID_LEN);
	db_param_bytes(&p, d->stmt_hash, MP_HASH_LEN);
	db_param_u64(&p, d->offer.deadline);
	db_param_bytes(&p, d->payout, MP_ID_LEN);
	db_param_u64(&p, b->cfg.dispute_window);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "dispute_check", &p, on_checked, d);
	if (refused)
		dispute_reply(d, MP_ST(INTERNAL), refused);
}

/* ---- SIGNATURES ---- */

struct sig_job {
	struct dispute *d;
	const MpSigned *stmt; /* d's, unchanged while the job runs */
	uint8_t owner_pk[MP_PK_LEN], merchant_pk[MP_PK_LEN];
	MpCode code;
	char detail[160];
	struct mp_offer offer;
	uint8_t w[MP_HASH_LEN], payout[MP_ID_LEN];
	const uint8_t *proof; /* d's packed BadKeyProof, or NULL */
	size_t proof_len;
	bool proven;
};

static MpCode sig_fail(struct sig_job *job, MpCode code, const char *what)
{
	snprintf(job->detail, sizeof(job->detail), "%s", what);
	return job->code = code;
}

static void open_body(struct sig_job *job, const Micropay__V1__Dispute *body)
{
	if (!mp_bytes_len_is(body->w_pay_index, MP_HASH_LEN) ||
	    !mp_bytes_len_is(body->payout_account_id, MP_ID_LEN) || !body->offer) {
		sig_fail(job, MP_ST(MALFORMED), "w_pay_index 32 bytes, payout 16 and an Offer");
		return;
	}
	memcpy(job->w, body->w_pay_index.data, MP_HASH_LEN);
	memcpy(job->payout, body->payout_account_id.data, MP_ID_LEN);
	const char *why = mp_offer_open(body->offer, job->merchant_pk, &job->offer);
	if (why) {
		char what[150];
		snprintf(what, sizeof(what), "Offer: %s", why);
		sig_fail(job, MP_ST(BAD_SIG), what);
		return;
	}
	job->code = MP_ST(OK);
}

/* The BadKeyProof against the verified Offer (common/sealed_proof.h): one AES-GCM pass over
 * at most 512 KiB and a few dozen hashes, on this worker. */
static void check_proof(struct sig_job *job)
{
	ProtobufCMessage *m =
	    mp_strict_unpack(&micropay__v1__bad_key_proof__descriptor, job->proof, job->proof_len);
	if (!m) {
		sig_fail(job, MP_ST(MALFORMED), "bad_key unreadable");
		return;
	}
	enum mp_bad_key_verdict v = mp_bad_key_check(
	    (const Micropay__V1__BadKeyProof *)m, job->offer.key_hash, job->offer.ciphertext_hash);
	protobuf_c_message_free_unpacked(m, NULL);
	if (v == MP_BAD_KEY_PROVEN)
		job->proven = true;
	else
		sig_fail(job, v == MP_BAD_KEY_OPENS ? MP_ST(CONFLICT) : MP_ST(MALFORMED),
			 mp_bad_key_verdict_text(v));
}

static void sig_work(void *arg, const atomic_bool *stop)
{
	(void)stop;
	struct sig_job *job = arg;
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(job->stmt, MP_STMT_DISPUTE, job->owner_pk,
				   &micropay__v1__dispute__descriptor, &body);
	if (code != MP_ST(OK)) {
		sig_fail(job, code, "Dispute refused under the owner key of the Offer's segment");
		return;
	}
	open_body(job, (const Micropay__V1__Dispute *)body);
	protobuf_c_message_free_unpacked(body, NULL);
	if (job->code == MP_ST(OK) && job->proof)
		check_proof(job);
}

static const char *check_offer(const struct dispute *d, const struct mp_offer *o)
{
	uint32_t units = 0;
	if (memcmp(o->channel_id, d->channel_id, MP_ID_LEN) ||
	    memcmp(o->merchant_id, d->merchant_id, MP_ID_LEN) || o->seg_seq != d->seg_seq)
		return "Offer ids unreadable";
	if (!mp_offer_units(o->price, d->unit_value, DISPUTE_MAX_JUMP, &units) ||
	    (uint64_t)o->after_index + units != o->pay_index)
		return "pay_index is not after_index + ceil(price / unit_value) within MAX_JUMP";
	if (o->pay_index > d->n)
		return "pay_index above the channel's n";
	return NULL;
}

static void on_signed(void *arg, enum mp_job_outcome outcome)
{
	struct sig_job *job = arg;
	struct dispute *d = job->d;
	if (outcome == MP_JOB_CANCELLED) {
		free(job);
		dispute_reply(d, MP_ST(INTERNAL), "verification did not finish; retry");
		return;
	}
	d->call->b->stats.verifications_worker += 2;
	if (job->code != MP_ST(OK)) {
		char detail[sizeof(job->detail)];
		memcpy(detail, job->detail, sizeof(detail));
		MpCode code = job->code;
		free(job);
		dispute_reply(d, code, detail);
		return;
	}
	d->offer = job->offer;
	d->proven = job->proven;
	memcpy(d->w, job->w, MP_HASH_LEN);
	memcpy(d->payout, job->payout, MP_ID_LEN);
	free(job);
	const char *bad = check_offer(d, &d->offer);
	if (bad)
		dispute_reply(d, MP_ST(MALFORMED), bad);
	else
		call_check(d);
}

/* ---- LOOKUP ---- */

static void on_lookup(const PGresult *res, const char *error, void *arg)
{
	struct dispute *d = arg;
	if (!res) {
		dispute_reply(d, MP_ST(INTERNAL), error ? error : "no result; retry");
		return;
	}
	if (PQntuples(res) != 1) {
		dispute_reply(d, MP_ST(UNKNOWN_CHANNEL), "no such channel");
		return;
	}
	struct sig_job *job = calloc(1, sizeof(*job));
	if (!job) {
		dispute_reply(d, MP_ST(INTERNAL), "out of memory");
		return;
	}
	*job = (struct sig_job){.d = d,
				.stmt = d->stmt,
				.code = MP_ST(INTERNAL),
				.proof = d->proof,
				.proof_len = d->proof_len};
	d->n = (uint32_t)db_get_i64(res, 0, "n");
	d->unit_value = (uint64_t)db_get_i64(res, 0, "unit_value");
	const char *refusal = NULL;
	MpCode code = MP_ST(OK);
	if (!db_get_bytes(res, 0, "owner_pk", job->owner_pk, MP_PK_LEN))
		code = MP_ST(STALE_SEGMENT),
		refusal = "the Offer's segment is unknown to the broker";
	else if (!db_get_bytes(res, 0, "merchant_pk", job->merchant_pk, MP_PK_LEN))
		code = MP_ST(UNKNOWN_ACCOUNT), refusal = "the Offer's merchant is not registered";
	else if (!mp_workers_submit(d->call->b->workers, sig_work, on_signed, job)) {
		d->call->b->stats.worker_queue_refusals++;
		code = MP_ST(LIMIT), refusal = BROKER_BUSY_VERIFYING;
	}
	if (refusal) {
		free(job);
		dispute_reply(d, code, refusal);
	}
}

/* ---- RECEIVED ---- */

/* The Offer's channel_id, seg_seq and merchant_id, read before any signature is checked (to
 * know the keys); the parsed Offer must agree. */
static bool peek_offer(struct dispute *d)
{
	const uint8_t *offer, *v;
	size_t offer_len, len;
	uint64_t seg = 0;
	if (!mp_pb_peek_bytes(d->stmt->body.data, d->stmt->body.len, 1, &offer, &offer_len))
		return false;
	MpSigned *s = micropay__v1__signed__unpack(NULL, offer_len, offer);
	bool ok = s && mp_pb_peek_bytes(s->body.data, s->body.len, 2, &v, &len) && len == MP_ID_LEN;
	if (ok)
		memcpy(d->channel_id, v, MP_ID_LEN);
	ok = ok && mp_pb_peek_bytes(s->body.data, s->body.len, 1, &v, &len) && len == MP_ID_LEN;
	if (ok)
		memcpy(d->merchant_id, v, MP_ID_LEN);
	/* seg_seq 0 is absent on the wire */
	if (ok && mp_pb_peek_uint(s->body.data, s->body.len, 3, &seg))
		ok = seg < MP_MAX_SEGMENTS;
	d->seg_seq = (uint32_t)seg;
	if (s)
		micropay__v1__signed__free_unpacked(s, NULL);
	return ok;
}

static bool copy_list(MpSigned ***out, size_t *n_out, MpSigned *const *in, size_t n)
{
	*out = calloc(n + 1, sizeof(**out));
	if (!*out)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!in[i] || !((*out)[(*n_out)++] = mp_stmt_copy(in[i])))
			return false;
	return true;
}

static const char *take_request(struct dispute *d, const Micropay__V1__DisputeReq *req)
{
	if (!req->stmt || req->stmt->body.len > DISPUTE_BODY_MAX)
		return "a Dispute of at most 2048 bytes required";
	if (req->n_custody > MP_MAX_HANDOFFS || req->n_segments > MP_MAX_SEGMENT_STMTS)
		return "at most MAX_HANDOFFS Handoffs and the pairs of MAX_SEGMENTS segments";
	if (!(d->stmt = mp_stmt_copy(req->stmt)) || !peek_offer(d))
		return "a Dispute with an Offer naming its merchant, channel and segment required";
	if (!copy_list(&d->custody, &d->n_custody, req->custody, req->n_custody) ||
	    !copy_list(&d->segments, &d->n_segments, req->segments, req->n_segments))
		return "custody or segments unreadable";
	mp_stmt_hash(d->stmt, d->stmt_hash);
	if (req->bad_key) {
		d->proof_len = protobuf_c_message_get_packed_size(&req->bad_key->base);
		if (!(d->proof = malloc(d->proof_len)))
			return "out of memory";
		protobuf_c_message_pack(&req->bad_key->base, d->proof);
	}
	return NULL;
}

void handle_dispute(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct dispute *d = calloc(1, sizeof(*d));
	if (!d || !(d->call = broker_call_new(b, c, env))) {
		free(d);
		return;
	}
	snprintf(d->what, sizeof(d->what), "from %s", mp_conn_peer(c));
	const char *bad = take_request(d, env->dispute_req);
	if (bad) {
		dispute_reply(d, MP_ST(MALFORMED), bad);
		return;
	}
	char ch[MP_HEX_ID_LEN + 1];
	mp_hex_encode(d->channel_id, MP_ID_LEN, ch);
	snprintf(d->what, sizeof(d->what), "channel %s from %s", ch, mp_conn_peer(c));
	struct db_params p = {0};
	db_param_bytes(&p, d->channel_id, MP_ID_LEN);
	db_param_u64(&p, d->seg_seq);
	db_param_bytes(&p, d->merchant_id, MP_ID_LEN);
	const char *refused = db_call(b->db, "dispute_lookup", &p, on_lookup, d);
	if (refused)
		dispute_reply(d, MP_ST(INTERNAL), refused);
}
