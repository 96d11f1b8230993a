/* TransferReq -> Cap signed by the broker (protocol.md section 6, docs/transfer.md "Unbound
 * channels"): wallet A gives the rest of a channel issued without holder0 that no merchant
 * holds yet. The expected signer of Transfer s is the owner of segment s-1 from our own records
 * (verify, then parse); the checks are the holder's (docs/transfer.md "The holder:
 * TransferReq") with epoch 0 and the point (s-1, 0, root of segment s-1): the broker caps only
 * at index 0, as no merchant can have been paid. mp_unbound_transfer (brokerd/sql/0012)
 * records the pair as a CapNotice would, under the channel row lock mp_bind takes; the Cap
 * leaves only after COMMIT, and a retry gets the stored bytes.
 *
 *   received --(no Transfer, body without channel_id)------------------------> MALFORMED
 *      v
 *   lookup --(no channel)---------------------------------------------------> UNKNOWN_CHANNEL
 *      | --(bound: NOT_HOLDER + the Bind; the cert names holder0)-----------> NOT_HOLDER
 *      |   (unless the Transfer names a segment this broker capped: its replay goes on)
 *      v
 *   VERIFYING [worker pool, verify_job.h] (type, key, signature, strict parse) under
 *      |   the owner of segment s-1 when new_seg_seq s is in 1..current (already capped),
 *      |   else under the current owner      --(queue full)----------------> LIMIT busy
 *      |                                     --(refused)-------------------> BAD_SIG/MALFORMED
 *      |                                     --(pool stopped)--------------> INTERNAL
 *      | already capped: DUPLICATE_OK (the stored Cap) / CONFLICT (the stored pair)
 *      v
 *      | lengths, channel_id, new_seg_seq = current + 1, prev_seg_hash ------> MALFORMED
 *      | holder_epoch 0 ---------------------------------------------------> NOT_HOLDER
 *      | new_seg_seq < MAX_SEGMENTS --------------------------------------> LIMIT
 *      | 0 + new_len >= n -------------------------------------------------> OUT_OF_RANGE
 *      v
 *   SIGNING [worker pool, common/sign_job.h]: the Cap --(queue full)---------> LIMIT busy
 *      |                                  --(failed, or pool stopped)------> INTERNAL
 *      v
 *   mp_unbound_transfer --(COMMIT)--> OK / DUPLICATE_OK / CONFLICT / NOT_HOLDER
 *                                     (bound meanwhile) / EXPIRED (database
 *                                     clock) / MALFORMED ("reused")
 *
 * Nothing is stored before mp_unbound_transfer. While the Transfer or the Cap is on a worker the
 * call holds its own reference to the connection: a peer that hangs up only loses the answer. */
#include "unbound_transfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "pb_peek.h"
#include "sign_job.h"
#include "proto_limits.h"
#include "stmt.h"
#include "util.h"
#include "verify_job.h"

#define DELTA_XFER 3600 /* protocol.md section 8: Transfer and Cap below pay_until - δ_xfer */

/* Segment k of the channel as our records give it (k >= 1 with its recorded pair). */
struct unbound_seg {
	uint32_t start;
	uint8_t owner_pk[MP_PK_LEN], root[MP_HASH_LEN], head[MP_HASH_LEN];
	MpSigned *transfer, *cap;
};

struct unbound_call {
	struct broker_call *call;
	uint8_t channel_id[MP_ID_LEN];
	uint64_t peeked_seg; /* new_seg_seq read from the body before verification */
	uint32_t capped_seg; /* > 0: the Transfer is for this segment, already capped */
	MpSigned *transfer;
	Micropay__V1__Transfer *t; /* parsed once verified and checked */
	struct unbound_seg segs[MP_MAX_SEGMENTS];
	uint32_t n_segs, n;
	char what[MP_HEX_ID_LEN + 1];
};

static void unbound_free(struct unbound_call *uc)
{
	mp_stmt_free(uc->transfer);
	if (uc->t)
		micropay__v1__transfer__free_unpacked(uc->t, NULL);
	for (uint32_t i = 0; i < uc->n_segs; i++) {
		mp_stmt_free(uc->segs[i].transfer);
		mp_stmt_free(uc->segs[i].cap);
	}
	free(uc);
}

/* The answer; pair_seg > 0 adds the recorded pairs before segment pair_seg (the evidence wallet
 * B verifies with the new one). */
static void reply(struct unbound_call *uc, MpCode code, const char *detail,
		  const MpSigned *transfer, const MpSigned *cap, const MpSigned *bind,
		  uint32_t pair_seg)
{
	Micropay__V1__TransferResp resp = MICROPAY__V1__TRANSFER_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	if (code == MP_ST(NOT_HOLDER))
		st.evidence = (MpSigned *)bind;
	resp.transfer = (MpSigned *)transfer;
	resp.cap = (MpSigned *)cap;
	MpSigned *earlier[2 * MP_MAX_SEGMENTS];
	for (uint32_t k = 1; k < pair_seg && k < uc->n_segs; k++) {
		earlier[resp.n_segments++] = uc->segs[k].transfer;
		earlier[resp.n_segments++] = uc->segs[k].cap;
	}
	resp.segments = earlier;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_RESP);
	env.transfer_resp = &resp;
	log_info("unbound transfer of channel %s: %s%s%s", uc->what, mp_code_name(code),
		 detail && *detail ? ": " : "", detail ? detail : "");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		uc->call->b->stats.requests_refused++;
	broker_call_reply(uc->call, &env);
	unbound_free(uc);
}

static MpSigned *row_stmt(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *bytes = db_is_null(res, row, col) ? NULL : db_get_blob(res, row, col, &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	return s;
}

static void on_recorded(const PGresult *res, const char *error, void *arg)
{
	struct unbound_call *uc = arg;
	if (!res || PQntuples(res) != 1) {
		reply(uc, MP_ST(INTERNAL), error ? error : "unexpected database result; retry",
		      NULL, NULL, NULL, 0);
		return;
	}
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	MpSigned *transfer = row_stmt(res, 0, "transfer"), *cap = row_stmt(res, 0, "cap");
	MpSigned *bind = row_stmt(res, 0, "bind");
	bool needs_pair =
	    code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK) || code == MP_ST(CONFLICT);
	if (needs_pair && (!transfer || !cap))
		reply(uc, MP_ST(INTERNAL), "stored pair unreadable", NULL, NULL, NULL, 0);
	else
		reply(uc, code, db_get_text(res, 0, "detail"), transfer, cap, bind,
		      (uint32_t)uc->peeked_seg);
	mp_stmt_free(transfer);
	mp_stmt_free(cap);
	mp_stmt_free(bind);
}

static void record(struct unbound_call *uc, const MpSigned *cap)
{
	struct broker *b = uc->call->b;
	const Micropay__V1__Transfer *t = uc->t;
	uint32_t s = t->new_seg_seq;
	size_t t_len = 0, c_len = 0;
	uint8_t *t_bytes = mp_stmt_encode(uc->transfer, &t_len);
	uint8_t *c_bytes = mp_stmt_encode(cap, &c_len);
	uint8_t t_hash[MP_HASH_LEN], c_hash[MP_HASH_LEN];
	const char *refused = "out of memory";
	if (t_bytes && c_bytes) {
		mp_stmt_hash(uc->transfer, t_hash);
		mp_stmt_hash(cap, c_hash);
		struct db_params p = {0};
		db_param_bytes(&p, uc->channel_id, MP_ID_LEN);
		db_param_u64(&p, s);
		db_param_bytes(&p, uc->segs[s - 1].owner_pk, MP_PK_LEN);
		db_param_bytes(&p, t_bytes, t_len);
		db_param_bytes(&p, t_hash, MP_HASH_LEN);
		db_param_bytes(&p, c_bytes, c_len);
		db_param_bytes(&p, c_hash, MP_HASH_LEN);
		db_param_u64(&p, t->new_len);
		db_param_bytes(&p, t->new_nonce.data, MP_NONCE_LEN);
		db_param_bytes(&p, t->new_root.data, MP_HASH_LEN);
		db_param_bytes(&p, t->to_owner_pk.data, MP_PK_LEN);
		db_param_u64(&p, t->declared_last);
		db_param_bytes(&p, uc->segs[s - 1].root, MP_HASH_LEN);
		db_param_u64(&p, t->valid_until > INT64_MAX ? INT64_MAX : t->valid_until);
		db_param_u64(&p, DELTA_XFER);
		db_param_u64(&p, broker_now(b));
		refused = db_call(b->db, "unbound_transfer", &p, on_recorded, uc);
	}
	free(t_bytes);
	free(c_bytes);
	if (refused)
		reply(uc, MP_ST(INTERNAL), refused, NULL, NULL, NULL, 0);
}

static void on_cap_signed(void *arg, MpSigned *cap)
{
	struct unbound_call *uc = arg;
	if (!cap) {
		reply(uc, MP_ST(INTERNAL), "signing failed; retry", NULL, NULL, NULL, 0);
		return;
	}
	uc->call->b->stats.signatures_worker++;
	record(uc, cap);
	mp_stmt_free(cap);
}

/* The Cap's body now; its signature on a worker. */
static void sign_cap(struct unbound_call *uc)
{
	struct broker *b = uc->call->b;
	uint32_t s = uc->t->new_seg_seq;
	uint8_t transfer_hash[MP_HASH_LEN];
	mp_stmt_hash(uc->transfer, transfer_hash);
	Micropay__V1__Cap cap = MICROPAY__V1__CAP__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	cap.channel_id = (ProtobufCBinaryData){MP_ID_LEN, uc->channel_id};
	cap.new_seg_seq = s;
	cap.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, transfer_hash};
	cap.hseq = 0;
	pt.seg_seq = s - 1;
	pt.index = 0;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, uc->segs[s - 1].root};
	cap.point = &pt;
	if (mp_sign_job_submit(b->workers, &b->key, MP_STMT_CAP, &cap.base, on_cap_signed, uc))
		return;
	log_warn("unbound transfer of channel %s refused: worker queue full", uc->what);
	b->stats.worker_queue_refusals++;
	reply(uc, MP_ST(LIMIT), "broker busy: signing queue full, retry later", NULL, NULL, NULL,
	      0);
}

static bool lengths_ok(const Micropay__V1__Transfer *t)
{
	return mp_bytes_len_is(t->channel_id, MP_ID_LEN) &&
	       mp_bytes_len_is(t->to_owner_pk, MP_PK_LEN) &&
	       mp_bytes_len_is(t->new_nonce, MP_NONCE_LEN) &&
	       mp_bytes_len_is(t->new_root, MP_HASH_LEN) &&
	       mp_bytes_len_is(t->prev_seg_hash, MP_HASH_LEN);
}

/* The holder's checks of a verified Transfer (docs/transfer.md), in their order, for epoch 0
 * and cap_index 0; the clocks are checked by the database. */
static MpCode check(const struct unbound_call *uc, const Micropay__V1__Transfer *t,
		    const char **detail)
{
	const struct unbound_seg *cur = &uc->segs[uc->n_segs - 1];
	if (!lengths_ok(t))
		return *detail = "field lengths", MP_ST(MALFORMED);
	if (memcmp(t->channel_id.data, uc->channel_id, MP_ID_LEN))
		return *detail = "another channel", MP_ST(MALFORMED);
	if (t->holder_epoch != 0)
		return *detail = "holder_epoch must be 0 for an unbound channel", MP_ST(NOT_HOLDER);
	if (t->new_seg_seq != uc->n_segs)
		return *detail = "new_seg_seq is not the current segment + 1", MP_ST(MALFORMED);
	if (memcmp(t->prev_seg_hash.data, cur->head, MP_HASH_LEN))
		return *detail = "prev_seg_hash is not the current segment's head",
		       MP_ST(MALFORMED);
	if (t->new_seg_seq >= MP_MAX_SEGMENTS)
		return *detail = "MAX_SEGMENTS reached", MP_ST(LIMIT);
	if (cur->start != 0)
		return *detail = "the current segment does not start at 0", MP_ST(INTERNAL);
	if (t->new_len < uc->n)
		return *detail = "new_len too short to reach n", MP_ST(OUT_OF_RANGE);
	return MP_ST(OK);
}

/* A Transfer for segment s, already capped, verified under the owner of segment s-1. */
static void answer_capped(struct unbound_call *uc, uint32_t s)
{
	const struct unbound_seg *seg = &uc->segs[s];
	uint8_t got[MP_HASH_LEN], stored[MP_HASH_LEN];
	mp_stmt_hash(uc->transfer, got);
	mp_stmt_hash(seg->transfer, stored);
	if (memcmp(got, stored, MP_HASH_LEN) == 0)
		reply(uc, MP_ST(DUPLICATE_OK), "the stored Cap", seg->transfer, seg->cap, NULL, s);
	else
		reply(uc, MP_ST(CONFLICT), "segment already capped: the stored pair", seg->transfer,
		      seg->cap, NULL, s);
}

/* VERIFYING done, on the loop: the Transfer under the key decide() chose. */
static void on_transfer_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct unbound_call *uc = arg;
	if (code != MP_ST(OK)) {
		reply(uc, code,
		      code == MP_ST(INTERNAL) ? "verification did not finish; retry"
		      : uc->capped_seg ? "Transfer refused under the owner key of its segment"
				       : "Transfer refused under the current segment's owner key",
		      NULL, NULL, NULL, 0);
		return;
	}
	if (uc->capped_seg) {
		protobuf_c_message_free_unpacked(body, NULL);
		answer_capped(uc, uc->capped_seg);
		return;
	}
	uc->t = (Micropay__V1__Transfer *)body;
	const char *detail = NULL;
	code = check(uc, uc->t, &detail);
	if (code == MP_ST(OK))
		sign_cap(uc);
	else
		reply(uc, code, detail, NULL, NULL, NULL, 0);
}

/* Which key must have signed: for a segment already capped the owner of the one before it
 * (the answer is then the stored pair), else the current segment's owner. */
static void decide(struct unbound_call *uc)
{
	uint32_t s = uc->peeked_seg <= UINT32_MAX ? (uint32_t)uc->peeked_seg : UINT32_MAX;
	uc->capped_seg = s >= 1 && s < uc->n_segs ? s : 0;
	const uint8_t *pk =
	    uc->capped_seg ? uc->segs[s - 1].owner_pk : uc->segs[uc->n_segs - 1].owner_pk;
	/* uc->transfer is the job's to read until on_transfer_opened. */
	if (!broker_verify_submit(uc->call->b, uc->transfer, MP_STMT_TRANSFER, pk,
				  &micropay__v1__transfer__descriptor, on_transfer_opened, uc))
		reply(uc, MP_ST(LIMIT), BROKER_BUSY_VERIFYING, NULL, NULL, NULL, 0);
}

/* Our records, one row per segment in order: key, root, start; the head of each segment (the
 * cert's hash for segment 0, else its Transfer's). */
static bool load_segments(struct unbound_call *uc, const PGresult *res)
{
	int rows = PQntuples(res);
	if (rows < 1 || rows > MP_MAX_SEGMENTS)
		return false;
	MpSigned *cert = row_stmt(res, 0, "cert");
	if (!cert)
		return false;
	mp_stmt_hash(cert, uc->segs[0].head);
	mp_stmt_free(cert);
	uc->n = (uint32_t)db_get_i64(res, 0, "n");
	for (int r = 0; r < rows; r++) {
		struct unbound_seg *seg = &uc->segs[r];
		uc->n_segs++;
		if (db_get_i64(res, r, "seg_seq") != r ||
		    !db_get_bytes(res, r, "owner_pk", seg->owner_pk, MP_PK_LEN) ||
		    !db_get_bytes(res, r, "root", seg->root, MP_HASH_LEN))
			return false;
		seg->start = (uint32_t)db_get_i64(res, r, "seg_start");
		if (r == 0)
			continue;
		seg->transfer = row_stmt(res, r, "transfer");
		seg->cap = row_stmt(res, r, "cap");
		if (!seg->transfer || !seg->cap)
			return false;
		mp_stmt_hash(seg->transfer, seg->head);
	}
	return true;
}

/* The Transfer names a segment this broker capped itself (while the channel was unbound): a
 * resend gets the stored pair (protocol.md section 5) even once the channel is bound. */
static bool broker_capped(const struct unbound_call *uc)
{
	uint64_t s = uc->peeked_seg;
	if (s < 1 || s >= uc->n_segs)
		return false;
	const MpSigned *cap = uc->segs[s].cap;
	return cap->signer_pk.len == MP_PK_LEN &&
	       memcmp(cap->signer_pk.data, uc->call->b->key.pk, MP_PK_LEN) == 0;
}

static void on_lookup(const PGresult *res, const char *error, void *arg)
{
	struct unbound_call *uc = arg;
	if (!res) {
		reply(uc, MP_ST(INTERNAL), error, NULL, NULL, NULL, 0);
		return;
	}
	if (PQntuples(res) < 1) {
		reply(uc, MP_ST(UNKNOWN_CHANNEL), "no such channel", NULL, NULL, NULL, 0);
		return;
	}
	if (!load_segments(uc, res)) {
		reply(uc, MP_ST(INTERNAL), "stored segments unreadable", NULL, NULL, NULL, 0);
		return;
	}
	bool bound = !db_is_null(res, 0, "bind");
	if ((bound || db_get_bool(res, 0, "cert_holder0")) && !broker_capped(uc)) {
		MpSigned *bind = bound ? row_stmt(res, 0, "bind") : NULL;
		reply(uc, MP_ST(NOT_HOLDER),
		      bound ? "the channel is bound: ask its holder"
			    : "the cert names holder0: ask the holder",
		      NULL, NULL, bind, 0);
		mp_stmt_free(bind);
		return;
	}
	decide(uc);
}

void handle_unbound_transfer(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct unbound_call *uc = calloc(1, sizeof(*uc));
	if (!uc || !(uc->call = broker_call_new(b, c, env))) {
		free(uc);
		return;
	}
	snprintf(uc->what, sizeof(uc->what), "?");
	const Micropay__V1__TransferReq *req = env->transfer_req;
	const uint8_t *cid = NULL;
	size_t cid_len = 0;
	const MpSigned *t = req->transfer;
	if (!t || !mp_pb_peek_bytes(t->body.data, t->body.len, 1, &cid, &cid_len) ||
	    cid_len != MP_ID_LEN ||
	    !mp_pb_peek_uint(t->body.data, t->body.len, 2, &uc->peeked_seg) ||
	    !(uc->transfer = mp_stmt_copy(t))) {
		reply(uc, MP_ST(MALFORMED), "a Transfer naming a channel of 16 bytes required",
		      NULL, NULL, NULL, 0);
		return;
	}
	memcpy(uc->channel_id, cid, MP_ID_LEN);
	mp_hex_encode(uc->channel_id, MP_ID_LEN, uc->what);
	log_info("%s: TransferReq for channel %s (segment %llu)", mp_conn_peer(c), uc->what,
		 (unsigned long long)uc->peeked_seg);
	struct db_params p = {0};
	db_param_bytes(&p, uc->channel_id, MP_ID_LEN);
	const char *refused = db_call(b->db, "unbound_transfer_lookup", &p, on_lookup, uc);
	if (refused)
		reply(uc, MP_ST(INTERNAL), refused, NULL, NULL, NULL, 0);
}
