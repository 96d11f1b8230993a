/* BindReq -> Bind (protocol.md sections 4 and 6, "Bind"): a channel issued without holder0 is
 * bound by the first merchant that asks. The asking merchant is the peer certificate (mutual
 * TLS); the customer's consent is the wallet's Move (from_epoch 0, to_mid = that merchant),
 * verified under the owner key of the channel's current segment taken from our own state. One
 * SQL function (mp_bind, brokerd/sql/0009-bind.sql) binds by compare-and-set on the channel
 * row; the Bind leaves only after COMMIT, and a retry gets the stored bytes.
 *
 *   received --(no merchant certificate)-----------------------------------> BAD_SIG
 *      | --(channel_id length, no Move)----------------------------------> MALFORMED
 *      v
 *   bind_lookup --(no channel)---------------------------------------------> UNKNOWN_CHANNEL
 *      | owner key of the current segment
 *      v
 *   VERIFYING [worker pool, verify_job.h]: the Move (type, key, signature, strict parse)
 *      |                                         --(queue full)------------> LIMIT busy
 *      |                                         --(refused)---------------> BAD_SIG/MALFORMED
 *      |                                         --(pool stopped)----------> INTERNAL
 *      | then on the loop: channel, seg_seq, from_epoch 0, to_mid = peer ---> MALFORMED
 *      v
 *   SIGNING [worker pool, common/sign_job.h]: the Bind --(queue full)------> LIMIT busy
 *      |                                   --(failed, or pool stopped)--> INTERNAL
 *      v
 *   mp_bind --(COMMIT)--> OK / DUPLICATE_OK (stored Bind, byte for byte) /
 *                         NOT_HOLDER + the stored Bind of another merchant /
 *                         refusal (EXPIRED, MALFORMED, ...)
 *
 * Nothing is stored before mp_bind. While the Move or the Bind is on a worker the call holds its
 * own reference to the connection: a peer that hangs up only loses the answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "sign_job.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"
#include "verify_job.h"

struct bind_call {
	struct broker_call *call;
	uint8_t channel_id[MP_ID_LEN];
	uint8_t peer_mid[MP_ID_LEN];
	MpSigned *move;
	uint8_t owner_pk[MP_PK_LEN];	   /* of the current segment, from bind_lookup */
	uint32_t seg_seq;		   /* the current segment, from bind_lookup */
	char what[2 * MP_HEX_ID_LEN + 16]; /* "channel X for merchant Y" context for logs */
};

static void bind_free(struct bind_call *bc)
{
	mp_stmt_free(bc->move);
	free(bc);
}

static void reply_bind(struct bind_call *bc, MpCode code, const char *detail, const MpSigned *bind)
{
	Micropay__V1__BindResp resp = MICROPAY__V1__BIND_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	if (code == MP_ST(NOT_HOLDER))
		st.evidence = (MpSigned *)bind;
	resp.bind = (MpSigned *)bind;
	resp.broker_time = mp_clock_now(&bc->call->b->clock);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(BIND_RESP);
	env.bind_resp = &resp;
	log_info("bind %s: %s%s%s", bc->what, mp_code_name(code), detail && *detail ? ": " : "",
		 detail ? detail : "");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		bc->call->b->stats.requests_refused++;
	broker_call_reply(bc->call, &env);
	bind_free(bc);
}

static MpSigned *stored_bind(const PGresult *res)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, 0, "bind", &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	return s;
}

static void on_bound(const PGresult *res, const char *error, void *arg)
{
	struct bind_call *bc = arg;
	if (!res || PQntuples(res) != 1) {
		reply_bind(bc, MP_ST(INTERNAL), error ? error : "unexpected database result; retry",
			   NULL);
		return;
	}
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	const char *detail = db_get_text(res, 0, "detail");
	MpSigned *bind = stored_bind(res);
	if ((code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) && !bind)
		reply_bind(bc, MP_ST(INTERNAL), "stored Bind unreadable", NULL);
	else
		reply_bind(bc, code, detail, bind);
	mp_stmt_free(bind);
}

static void store_bind(struct bind_call *bc, const MpSigned *bind)
{
	struct broker *b = bc->call->b;
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(bind, &len);
	uint8_t hash[MP_HASH_LEN];
	if (!bytes) {
		reply_bind(bc, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	mp_stmt_hash(bind, hash);
	struct db_params p = {0};
	db_param_bytes(&p, bc->channel_id, MP_ID_LEN);
	db_param_bytes(&p, bc->peer_mid, MP_ID_LEN);
	db_param_bytes(&p, bc->owner_pk, MP_PK_LEN);
	db_param_bytes(&p, hash, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	db_param_u64(&p, b->cfg.t_grace);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "bind", &p, on_bound, bc);
	free(bytes);
	if (refused)
		reply_bind(bc, MP_ST(INTERNAL), refused, NULL);
}

static void on_bind_signed(void *arg, MpSigned *bind)
{
	struct bind_call *bc = arg;
	if (!bind) {
		reply_bind(bc, MP_ST(INTERNAL), "signing failed; retry", NULL);
		return;
	}
	bc->call->b->stats.signatures_worker++;
	store_bind(bc, bind);
	mp_stmt_free(bind);
}

static void sign_bind(struct bind_call *bc)
{
	struct broker *b = bc->call->b;
	Micropay__V1__Bind bd = MICROPAY__V1__BIND__INIT;
	bd.channel_id = (ProtobufCBinaryData){MP_ID_LEN, bc->channel_id};
	bd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, bc->peer_mid};
	if (mp_sign_job_submit(b->workers, &b->key, MP_STMT_BIND, &bd.base, on_bind_signed, bc))
		return;
	log_warn("bind %s refused: worker queue full", bc->what);
	b->stats.worker_queue_refusals++;
	reply_bind(bc, MP_ST(LIMIT), "broker busy: signing queue full, retry later", NULL);
}

/* The Move's fields against the request, once its signature verified. */
static MpCode check_move(const struct bind_call *bc, const Micropay__V1__Move *mv,
			 const char **detail)
{
	if (!mp_bytes_len_is(mv->channel_id, MP_ID_LEN) || !mp_bytes_len_is(mv->to_mid, MP_ID_LEN))
		return *detail = "Move field lengths", MP_ST(MALFORMED);
	if (memcmp(mv->channel_id.data, bc->channel_id, MP_ID_LEN) != 0)
		return *detail = "Move names another channel", MP_ST(MALFORMED);
	if (memcmp(mv->to_mid.data, bc->peer_mid, MP_ID_LEN) != 0)
		return *detail = "Move names another merchant than the peer certificate",
		       MP_ST(MALFORMED);
	if (mv->seg_seq != bc->seg_seq)
		return *detail = "Move names another segment than the current one",
		       MP_ST(MALFORMED);
	if (mv->from_epoch != 0)
		return *detail = "Move for a Bind must have from_epoch 0", MP_ST(MALFORMED);
	return MP_ST(OK);
}

/* VERIFYING done, on the loop: the Move's signature under the owner key from our state. */
static void on_move_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct bind_call *bc = arg;
	if (code != MP_ST(OK)) {
		reply_bind(bc, code,
			   code == MP_ST(INTERNAL)
			       ? "verification did not finish; retry"
			       : "Move refused under the current segment's owner key",
			   NULL);
		return;
	}
	const char *detail = NULL;
	code = check_move(bc, (const Micropay__V1__Move *)body, &detail);
	protobuf_c_message_free_unpacked(body, NULL);
	if (code != MP_ST(OK))
		reply_bind(bc, code, detail, NULL);
	else
		sign_bind(bc);
}

static void on_lookup(const PGresult *res, const char *error, void *arg)
{
	struct bind_call *bc = arg;
	if (!res) {
		reply_bind(bc, MP_ST(INTERNAL), error, NULL);
		return;
	}
	if (PQntuples(res) != 1 || !db_get_bytes(res, 0, "owner_pk", bc->owner_pk, MP_PK_LEN)) {
		reply_bind(bc, MP_ST(UNKNOWN_CHANNEL), "no such channel", NULL);
		return;
	}
	if (db_get_bool(res, 0, "cert_holder0")) {
		reply_bind(bc, MP_ST(NOT_HOLDER), "the cert names holder0: no Bind", NULL);
		return;
	}
	bc->seg_seq = (uint32_t)db_get_i64(res, 0, "seg_seq");
	/* bc->move is the job's to read until on_move_opened. */
	if (!broker_verify_submit(bc->call->b, bc->move, MP_STMT_MOVE, bc->owner_pk,
				  &micropay__v1__move__descriptor, on_move_opened, bc))
		reply_bind(bc, MP_ST(LIMIT), BROKER_BUSY_VERIFYING, NULL);
}

void handle_bind(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct bind_call *bc = calloc(1, sizeof(*bc));
	if (!bc || !(bc->call = broker_call_new(b, c, env))) {
		free(bc);
		return;
	}
	const Micropay__V1__BindReq *req = env->bind_req;
	snprintf(bc->what, sizeof(bc->what), "from %s", mp_conn_peer(c));
	if (!mp_tls_peer_merchant_id(mp_conn_ssl(c), bc->peer_mid)) {
		reply_bind(bc, MP_ST(BAD_SIG), "BindReq needs a merchant client certificate", NULL);
		return;
	}
	if (!mp_bytes_len_is(req->channel_id, MP_ID_LEN) || !req->move ||
	    !(bc->move = mp_stmt_copy(req->move))) {
		reply_bind(bc, MP_ST(MALFORMED), "channel_id of 16 bytes and a Move required",
			   NULL);
		return;
	}
	memcpy(bc->channel_id, req->channel_id.data, MP_ID_LEN);
	char ch_hex[MP_HEX_ID_LEN + 1], m_hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(bc->channel_id, MP_ID_LEN, ch_hex);
	mp_hex_encode(bc->peer_mid, MP_ID_LEN, m_hex);
	snprintf(bc->what, sizeof(bc->what), "%s for %s", ch_hex, m_hex);
	struct db_params p = {0};
	db_param_bytes(&p, bc->channel_id, MP_ID_LEN);
	const char *refused = db_call(b->db, "bind_lookup", &p, on_lookup, bc);
	if (refused)
		reply_bind(bc, MP_ST(INTERNAL), refused, NULL);
}
