/* The merchant's side of a dispute (docs/disputes.md), on its mutual-TLS link: OpenDisputesReq
 * lists the disputes open against it (at most MP_MAX_OPEN_DISPUTES, the oldest answer time
 * first), DisputeKeyReq answers one with the Offer's key. The peer certificate must name
 * merchant_id, as a Redeem's must.
 *
 *   OpenDisputesReq --(no merchant certificate / another merchant)--> BAD_SIG
 *      v
 *   mp_open_disputes (db) --> OK + the list, each with its Dispute's word at pay_index (the
 *      merchant takes it as the Offer's payment before it releases the key)
 *
 *   DisputeKeyReq --(ids not 16 bytes, key not 32; or a cancel and a key)--> MALFORMED
 *      | --(no merchant certificate / another merchant)------------> BAD_SIG
 *      | --a cancel instead of the key--> dispute_cancel.c
 *      v
 *   mp_dispute_key (db, under the dispute's row lock)
 *      --> OK KEY_RELEASED (SHA-256(key) = key_hash, OPEN, not past answer_by)
 *        / DUPLICATE_OK (released before) / CONFLICT (another key: nothing changes)
 *        / TOO_LATE (REFUNDED, or past answer_by) / UNKNOWN_CHANNEL (no such dispute)
 *
 *   DisputeStateReq --(ids not 16 bytes)--> MALFORMED; --(another merchant)--> BAD_SIG
 *      v
 *   dispute_state (db, one read) --> OK + state, the Dispute's word, proven / UNKNOWN_CHANNEL,
 *      window_closed when the broker's now is past the given deadline + T_dispute + 600 s (for a
 * held offer whose dispute ended, or can no longer come, while the merchant was away: merchantd
 * dispute_ended.c) */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "dispute.h"
#include "log.h"
#include "proto_limits.h"
#include "sealed.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"

static bool peer_is(struct mp_conn *c, const ProtobufCBinaryData *mid)
{
	uint8_t peer[MP_ID_LEN];
	return mp_bytes_len_is(*mid, MP_ID_LEN) && mp_tls_peer_merchant_id(mp_conn_ssl(c), peer) &&
	       memcmp(peer, mid->data, MP_ID_LEN) == 0;
}

static struct key_call *key_call_new(struct broker *b, struct mp_conn *c, const MpEnvelope *env,
				     const ProtobufCBinaryData *mid)
{
	struct key_call *k = calloc(1, sizeof(*k));
	if (!k || !(k->call = broker_call_new(b, c, env))) {
		free(k);
		return NULL;
	}
	if (mp_bytes_len_is(*mid, MP_ID_LEN))
		mp_hex_encode(mid->data, MP_ID_LEN, k->mid);
	else
		strcpy(k->mid, "?");
	return k;
}

/* ---- OpenDisputesReq ---- */

static void open_reply(struct key_call *k, MpCode code, const char *detail,
		       Micropay__V1__OpenDispute **list, size_t n)
{
	Micropay__V1__OpenDisputesResp resp = MICROPAY__V1__OPEN_DISPUTES_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.disputes = list;
	resp.n_disputes = n;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_DISPUTES_RESP);
	env.open_disputes_resp = &resp;
	if (code != MP_ST(OK)) {
		log_info("open disputes of merchant %s: %s: %s", k->mid, mp_code_name(code),
			 detail ? detail : "");
		k->call->b->stats.requests_refused++;
	}
	broker_call_reply(k->call, &env);
	free(k);
}

struct listed {
	uint8_t channel_id[MP_ID_LEN], order_ref[MP_ID_LEN], w[MP_HASH_LEN];
};

/* The word at pay_index of a stored Dispute's bytes into w; false if they do not parse (they
 * were parsed strictly when the dispute was taken). */
static bool stored_word(const PGresult *res, int row, uint8_t w[MP_HASH_LEN])
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, row, "stmt", &len);
	MpSigned *stmt = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	Micropay__V1__Dispute *d =
	    stmt ? (Micropay__V1__Dispute *)mp_strict_unpack(&micropay__v1__dispute__descriptor,
							     stmt->body.data, stmt->body.len)
		 : NULL;
	bool ok = d && mp_bytes_len_is(d->w_pay_index, MP_HASH_LEN);
	if (ok)
		memcpy(w, d->w_pay_index.data, MP_HASH_LEN);
	if (d)
		protobuf_c_message_free_unpacked(&d->base, NULL);
	mp_stmt_free(stmt);
	return ok;
}

static void on_listed(const PGresult *res, const char *error, void *arg)
{
	struct key_call *k = arg;
	if (!res) {
		open_reply(k, MP_ST(INTERNAL), error ? error : "no result; retry", NULL, 0);
		return;
	}
	size_t n = (size_t)PQntuples(res);
	if (n > MP_MAX_OPEN_DISPUTES)
		n = MP_MAX_OPEN_DISPUTES;
	Micropay__V1__OpenDispute *items = calloc(n + 1, sizeof(*items));
	Micropay__V1__OpenDispute **ptrs = calloc(n + 1, sizeof(*ptrs));
	struct listed *rows = calloc(n + 1, sizeof(*rows));
	if (!items || !ptrs || !rows) {
		free(items), free(ptrs), free(rows);
		open_reply(k, MP_ST(INTERNAL), "out of memory", NULL, 0);
		return;
	}
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		struct listed *r = &rows[m];
		if (!db_get_bytes(res, (int)i, "channel_id", r->channel_id, MP_ID_LEN) ||
		    !db_get_bytes(res, (int)i, "order_ref", r->order_ref, MP_ID_LEN) ||
		    !stored_word(res, (int)i, r->w)) {
			log_err("open disputes of merchant %s: an unreadable dispute row", k->mid);
			continue;
		}
		micropay__v1__open_dispute__init(&items[m]);
		items[m].channel_id = (ProtobufCBinaryData){MP_ID_LEN, r->channel_id};
		items[m].order_ref = (ProtobufCBinaryData){MP_ID_LEN, r->order_ref};
		items[m].answer_by = (uint64_t)db_get_i64(res, (int)i, "answer_by");
		items[m].w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, r->w};
		ptrs[m] = &items[m];
		m++;
	}
	open_reply(k, MP_ST(OK), NULL, ptrs, m);
	free(items), free(ptrs), free(rows);
}

void handle_open_disputes(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const ProtobufCBinaryData *mid = &env->open_disputes_req->merchant_id;
	struct key_call *k = key_call_new(b, c, env, mid);
	if (!k)
		return;
	if (!peer_is(c, mid)) {
		open_reply(k, MP_ST(BAD_SIG), "the peer certificate must name merchant_id", NULL,
			   0);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, mid->data, MP_ID_LEN);
	db_param_u64(&p, MP_MAX_OPEN_DISPUTES);
	const char *refused = db_call(b->db, "open_disputes", &p, on_listed, k);
	if (refused)
		open_reply(k, MP_ST(INTERNAL), refused, NULL, 0);
}

/* ---- DisputeKeyReq ---- */

void dispute_key_reply(struct key_call *k, MpCode code, const char *detail,
		       Micropay__V1__DisputeState state)
{
	Micropay__V1__DisputeKeyResp resp = MICROPAY__V1__DISPUTE_KEY_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.state = state;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_KEY_RESP);
	env.dispute_key_resp = &resp;
	log_info("dispute key from merchant %s: %s%s%s", k->mid, mp_code_name(code),
		 detail && *detail ? ": " : "", detail ? detail : "");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		k->call->b->stats.requests_refused++;
	broker_call_reply(k->call, &env);
	free(k);
}

static void on_keyed(const PGresult *res, const char *error, void *arg)
{
	struct key_call *k = arg;
	if (!res || PQntuples(res) != 1) {
		dispute_key_reply(k, MP_ST(INTERNAL),
				  error ? error : "unexpected database result; retry",
				  MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	dispute_key_reply(k, (MpCode)db_get_i64(res, 0, "status"), db_get_text(res, 0, "detail"),
			  dispute_state_of(db_get_text(res, 0, "state")));
}

void handle_dispute_key(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__DisputeKeyReq *req = env->dispute_key_req;
	struct key_call *k = key_call_new(b, c, env, &req->merchant_id);
	if (!k)
		return;
	if (!mp_bytes_len_is(req->merchant_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(req->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(req->order_ref, MP_ID_LEN) ||
	    (req->cancel ? req->key.len != 0 : !mp_bytes_len_is(req->key, MP_SEAL_KEY_LEN))) {
		dispute_key_reply(k, MP_ST(MALFORMED),
				  "ids 16 bytes, and a key of 32 bytes or a cancel (not both)",
				  MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	if (!peer_is(c, &req->merchant_id)) {
		dispute_key_reply(k, MP_ST(BAD_SIG), "the peer certificate must name merchant_id",
				  MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	if (req->cancel) {
		dispute_cancel_run(k, req);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, req->merchant_id.data, MP_ID_LEN);
	db_param_bytes(&p, req->channel_id.data, MP_ID_LEN);
	db_param_bytes(&p, req->order_ref.data, MP_ID_LEN);
	db_param_bytes(&p, req->key.data, MP_SEAL_KEY_LEN);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "dispute_key", &p, on_keyed, k);
	if (refused)
		dispute_key_reply(k, MP_ST(INTERNAL), refused,
				  MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
}

/* ---- DisputeStateReq ---- */

/* Seconds past an Offer's deadline + T_dispute before window_closed: far above the protocol's
 * maximum clock offset (30 s) between brokerd processes and the seconds a Dispute takes from
 * binding its now to committing in mp_dispute_open. */
#define DISPUTE_STATE_MARGIN 600

static void state_reply(struct key_call *k, MpCode code, const char *detail,
			Micropay__V1__DisputeState state, const uint8_t *w, bool proven)
{
	Micropay__V1__DisputeStateResp resp = MICROPAY__V1__DISPUTE_STATE_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.state = state;
	/* No Dispute of the Offer is taken past its deadline + T_dispute (mp_dispute_open checks
	 * it with its own now). A Dispute checked just before the window closed may still be
	 * on its way to its commit, and another brokerd process's clock may be behind ours: the
	 * window counts as closed only DISPUTE_STATE_MARGIN later. */
	resp.window_closed = code == MP_ST(UNKNOWN_CHANNEL) && k->window_end &&
			     broker_now(k->call->b) > k->window_end + DISPUTE_STATE_MARGIN;
	if (w)
		resp.w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)w};
	resp.proven = proven;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(DISPUTE_STATE_RESP);
	env.dispute_state_resp = &resp;
	if (code != MP_ST(OK) && code != MP_ST(UNKNOWN_CHANNEL)) {
		log_info("dispute state for merchant %s: %s: %s", k->mid, mp_code_name(code),
			 detail ? detail : "");
		k->call->b->stats.requests_refused++;
	}
	broker_call_reply(k->call, &env);
	free(k);
}

static void on_state(const PGresult *res, const char *error, void *arg)
{
	struct key_call *k = arg;
	uint8_t w[MP_HASH_LEN];
	if (!res) {
		state_reply(k, MP_ST(INTERNAL), error ? error : "no result; retry",
			    MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE, NULL, false);
	} else if (PQntuples(res) == 0) {
		state_reply(k, MP_ST(UNKNOWN_CHANNEL),
			    "no dispute of this merchant for that channel and order_ref",
			    MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE, NULL, false);
	} else if (!stored_word(res, 0, w)) {
		log_err("dispute state for merchant %s: an unreadable dispute row", k->mid);
		state_reply(k, MP_ST(INTERNAL), "the stored Dispute is unreadable",
			    MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE, NULL, false);
	} else {
		state_reply(k, MP_ST(OK), NULL, dispute_state_of(db_get_text(res, 0, "state")), w,
			    db_get_bool(res, 0, "proven"));
	}
}

void handle_dispute_state(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__DisputeStateReq *req = env->dispute_state_req;
	struct key_call *k = key_call_new(b, c, env, &req->merchant_id);
	if (!k)
		return;
	if (!mp_bytes_len_is(req->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(req->order_ref, MP_ID_LEN)) {
		state_reply(k, MP_ST(MALFORMED), "ids 16 bytes",
			    MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE, NULL, false);
		return;
	}
	if (!peer_is(c, &req->merchant_id)) {
		state_reply(k, MP_ST(BAD_SIG), "the peer certificate must name merchant_id",
			    MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE, NULL, false);
		return;
	}
	if (req->deadline &&
	    req->deadline <= UINT64_MAX - b->cfg.dispute_window - DISPUTE_STATE_MARGIN)
		k->window_end = req->deadline + b->cfg.dispute_window;
	struct db_params p = {0};
	db_param_bytes(&p, req->merchant_id.data, MP_ID_LEN);
	db_param_bytes(&p, req->channel_id.data, MP_ID_LEN);
	db_param_bytes(&p, req->order_ref.data, MP_ID_LEN);
	const char *refused = db_call(b->db, "dispute_state", &p, on_state, k);
	if (refused)
		state_reply(k, MP_ST(INTERNAL), refused, MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE,
			    NULL, false);
}
