/* The holder's side of a forced release (docs/release.md "Delivery"), on its mutual-TLS link:
 * ForcedClosesReq lists the ForcedCloses of epochs the merchant held (at most
 * MP_MAX_FORCED_CLOSES, the newest first; paged: those after the cursor `after`, the oldest
 * first, at most `limit`, with the next cursor and whether the page was full), each exactly as
 * stored with its early refund, and
 * says how many PENDING releases name it as the holder (the broker asking it for a Handoff or
 * Close: merchantd redeems at once, release_poll.c). The peer certificate must name
 * merchant_id, as a Redeem's must.
 *
 *   ForcedClosesReq --(no merchant certificate / another merchant)--> BAD_SIG
 *      v
 *   mp_release_pending_of (db): the count and the first release_at
 *      v
 *   mp_forced_closes / paged: mp_forced_closes_after (db) --> OK + the list + the pending
 *      count (+ paged: next_after, more) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "proto_limits.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"

struct fc_call {
	struct broker_call *call;
	char mid[MP_HEX_ID_LEN + 1];
	uint8_t mid_raw[MP_ID_LEN];
	uint32_t pending;
	uint64_t first_release_at;
	bool paged;
	uint64_t after; /* paged: the cursor asked from, then the one after the last listed */
	uint32_t limit; /* paged: the page size */
	bool more;
};

static void fc_reply(struct fc_call *k, MpCode code, const char *detail, MpSigned **list, size_t n)
{
	Micropay__V1__ForcedClosesResp resp = MICROPAY__V1__FORCED_CLOSES_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.forced_closes = list;
	resp.n_forced_closes = n;
	resp.pending_releases = k->pending;
	resp.first_release_at = k->first_release_at;
	if (k->paged) {
		resp.next_after = k->after;
		resp.more = k->more;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(FORCED_CLOSES_RESP);
	env.forced_closes_resp = &resp;
	if (code != MP_ST(OK)) {
		log_info("forced closes of merchant %s: %s: %s", k->mid, mp_code_name(code),
			 detail ? detail : "");
		k->call->b->stats.requests_refused++;
	}
	broker_call_reply(k->call, &env);
	free(k);
}

static void on_listed(const PGresult *res, const char *error, void *arg)
{
	struct fc_call *k = arg;
	if (!res) {
		fc_reply(k, MP_ST(INTERNAL), error ? error : "no result; retry", NULL, 0);
		return;
	}
	size_t n = (size_t)PQntuples(res);
	if (n > MP_MAX_FORCED_CLOSES)
		n = MP_MAX_FORCED_CLOSES;
	if (k->paged && n > 0) {
		k->after = (uint64_t)db_get_i64(res, (int)n - 1, "forced_seq");
		k->more = n >= k->limit;
	}
	MpSigned **list = calloc(n + 1, sizeof(*list));
	if (!list) {
		fc_reply(k, MP_ST(INTERNAL), "out of memory", NULL, 0);
		return;
	}
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		uint8_t *blob = db_get_blob(res, (int)i, "forced_close", &len);
		if (blob && (list[m] = mp_stmt_decode(blob, len)))
			m++;
		else
			log_err("forced closes of merchant %s: a stored ForcedClose is unreadable",
				k->mid);
		free(blob);
	}
	fc_reply(k, MP_ST(OK), NULL, list, m);
	for (size_t i = 0; i < m; i++)
		mp_stmt_free(list[i]);
	free(list);
}

static void on_pending(const PGresult *res, const char *error, void *arg)
{
	struct fc_call *k = arg;
	if (!res || PQntuples(res) != 1) {
		fc_reply(k, MP_ST(INTERNAL), error ? error : "no result; retry", NULL, 0);
		return;
	}
	int64_t pending = db_get_i64(res, 0, "pending");
	k->pending = pending > UINT32_MAX ? UINT32_MAX : (uint32_t)pending;
	k->first_release_at = (uint64_t)db_get_i64(res, 0, "first_release_at");
	struct db_params p = {0};
	db_param_bytes(&p, k->mid_raw, MP_ID_LEN);
	if (k->paged)
		db_param_u64(&p, k->after);
	db_param_u64(&p, k->paged ? k->limit : MP_MAX_FORCED_CLOSES);
	const char *refused = db_call(
	    k->call->b->db, k->paged ? "forced_closes_after" : "forced_closes", &p, on_listed, k);
	if (refused)
		fc_reply(k, MP_ST(INTERNAL), refused, NULL, 0);
}

void handle_forced_closes(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const ProtobufCBinaryData *mid = &env->forced_closes_req->merchant_id;
	struct fc_call *k = calloc(1, sizeof(*k));
	if (!k || !(k->call = broker_call_new(b, c, env))) {
		free(k);
		return;
	}
	strcpy(k->mid, "?");
	if (mp_bytes_len_is(*mid, MP_ID_LEN))
		mp_hex_encode(mid->data, MP_ID_LEN, k->mid);
	uint8_t peer[MP_ID_LEN];
	if (!mp_bytes_len_is(*mid, MP_ID_LEN) || !mp_tls_peer_merchant_id(mp_conn_ssl(c), peer) ||
	    memcmp(peer, mid->data, MP_ID_LEN) != 0) {
		fc_reply(k, MP_ST(BAD_SIG), "the peer certificate must name merchant_id", NULL, 0);
		return;
	}
	memcpy(k->mid_raw, mid->data, MP_ID_LEN);
	const Micropay__V1__ForcedClosesReq *rq = env->forced_closes_req;
	k->paged = rq->paged;
	k->after = rq->after > INT64_MAX ? INT64_MAX : rq->after;
	k->limit =
	    rq->limit == 0 || rq->limit > MP_MAX_FORCED_CLOSES ? MP_MAX_FORCED_CLOSES : rq->limit;
	struct db_params p = {0};
	db_param_bytes(&p, mid->data, MP_ID_LEN);
	const char *refused = db_call(b->db, "release_pending_of", &p, on_pending, k);
	if (refused)
		fc_reply(k, MP_ST(INTERNAL), refused, NULL, 0);
}
