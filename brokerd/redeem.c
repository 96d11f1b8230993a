/* Redeem: batched, signed, idempotent redemption (PROTOCOL.md section 6, "Redemption").
 * 1. the merchant's key (peer certificate must name Redeem.merchant_id), signature first;
 * 2. a read of each claim's channel, epoch and nearest verified points (mp_redeem_prepare);
 * 3. every decision that needs no hashing, the hashing budget, then the hashing;
 * 4. one SQL function credits, stores the results under redeem_id and commits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "pg_array.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"

/* uint32 protocol values into SQL int: anything above is out of range anyway. */
static int64_t sql_int(uint32_t v)
{
	return v > INT32_MAX ? INT32_MAX : v;
}

struct claim_check {
	MpCode status;
	const char *detail;
	uint64_t cost; /* hashes needed to verify */
	bool verify;   /* above the credited end: the word must be checked */
};

struct redeem {
	struct broker_call *call;
	MpSigned *stmt;
	uint8_t peer_mid[MP_ID_LEN];
	Micropay__V1__Redeem *r;
	struct claim_check *checks;
};

static void redeem_free(struct redeem *rd)
{
	mp_stmt_free(rd->stmt);
	if (rd->r)
		micropay__v1__redeem__free_unpacked(rd->r, NULL);
	free(rd->checks);
	free(rd);
}

static void reply_redeem(struct redeem *rd, MpCode code, const char *detail,
			 Micropay__V1__ClaimResult **results, size_t n_results)
{
	Micropay__V1__RedeemResp resp = MICROPAY__V1__REDEEM_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.results = results;
	resp.n_results = n_results;
	resp.broker_time = mp_now();
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_RESP);
	env.redeem_resp = &resp;
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		rd->call->b->stats.requests_refused++;
	broker_call_reply(rd->call, &env);
	redeem_free(rd);
}

static void on_redeemed(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	if (!res) {
		reply_redeem(rd, MP_ST(INTERNAL), "database error; retry", NULL, 0);
		return;
	}
	int rows = PQntuples(res);
	if (rows >= 1 && db_get_bool(res, 0, "conflict")) {
		reply_redeem(rd, MP_ST(CONFLICT), "redeem_id already used with another Redeem",
			     NULL, 0);
		return;
	}
	bool replayed = rows >= 1 && db_get_bool(res, 0, "replayed");
	Micropay__V1__ClaimResult *items = calloc((size_t)rows + 1, sizeof(*items));
	Micropay__V1__ClaimResult **ptrs = calloc((size_t)rows + 1, sizeof(*ptrs));
	if (!items || !ptrs) {
		free(items);
		free(ptrs);
		reply_redeem(rd, MP_ST(INTERNAL), "out of memory", NULL, 0);
		return;
	}
	uint64_t credited = 0;
	for (int i = 0; i < rows; i++) {
		micropay__v1__claim_result__init(&items[i]);
		items[i].status = (MpCode)db_get_i64(res, i, "status");
		items[i].credited_end = (uint32_t)db_get_i64(res, i, "credited_end");
		items[i].credited_amount = (uint64_t)db_get_i64(res, i, "credited_amount");
		const char *detail = db_get_text(res, i, "detail");
		items[i].detail = (char *)(detail ? detail : "");
		ptrs[i] = &items[i];
		if (items[i].status == MP_ST(OK))
			credited++;
	}
	if (!replayed)
		rd->call->b->stats.claims_credited += credited;
	rd->call->b->stats.redeems++;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(rd->peer_mid, MP_ID_LEN, hex);
	log_info("redeem from merchant %s: %d claims, %llu credited%s", hex, rows,
		 (unsigned long long)credited, replayed ? " (replay: nothing credited now)" : "");
	reply_redeem(rd, replayed ? MP_ST(DUPLICATE_OK) : MP_ST(OK), NULL, ptrs, (size_t)rows);
	free(items);
	free(ptrs);
}

/* Decide what needs no hashing; return the hashes the claim will cost. */
static void check_claim(const Micropay__V1__Claim *cl, const PGresult *res, int row,
			const uint8_t mid[MP_ID_LEN], struct claim_check *out)
{
	*out = (struct claim_check){MP_ST(OK), "", 0, false};
	const MpPoint *pt = cl->point;
	if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN) || !pt ||
	    !mp_bytes_len_is(pt->w, MP_HASH_LEN)) {
		*out = (struct claim_check){MP_ST(MALFORMED), "claim field lengths", 0, false};
		return;
	}
	if (!db_get_bool(res, row, "found")) {
		*out = (struct claim_check){MP_ST(UNKNOWN_CHANNEL), "unknown channel", 0, false};
		return;
	}
	uint8_t holder0[MP_ID_LEN];
	/* Epochs above 0 come with handoffs (issue B): until then only holder0 can claim. */
	if (cl->hseq_in != 0 || !db_get_bytes(res, row, "epoch0_merchant", holder0, MP_ID_LEN) ||
	    memcmp(holder0, mid, MP_ID_LEN) != 0) {
		*out = (struct claim_check){MP_ST(NOT_HOLDER), "not the holder of that epoch", 0,
					    false};
		return;
	}
	if (!db_get_bool(res, row, "seg_found")) {
		*out = (struct claim_check){MP_ST(STALE_SEGMENT), "unknown segment", 0, false};
		return;
	}
	int64_t seg_start = db_get_i64(res, row, "seg_start");
	int64_t n = db_get_i64(res, row, "n");
	if ((int64_t)pt->index <= seg_start || (int64_t)pt->index > n) {
		*out = (struct claim_check){MP_ST(OUT_OF_RANGE), "index outside the segment", 0,
					    false};
		return;
	}
	if ((int64_t)pt->index <= db_get_i64(res, row, "credited_end"))
		return; /* DUPLICATE_OK decided under lock by the SQL function; no hashing */
	uint64_t below = db_is_null(res, row, "lo_idx")
			     ? UINT64_MAX
			     : pt->index - (uint64_t)db_get_i64(res, row, "lo_idx");
	uint64_t above = db_is_null(res, row, "hi_idx")
			     ? UINT64_MAX
			     : (uint64_t)db_get_i64(res, row, "hi_idx") - pt->index;
	out->cost = below < above ? below : above;
	out->verify = true;
}

/* Verify a claim's word against the nearest verified point of its segment. */
static bool verify_claim(struct mp_hasher *h, const Micropay__V1__Claim *cl, const PGresult *res,
			 int row)
{
	uint8_t nonce[MP_NONCE_LEN], w[MP_HASH_LEN];
	uint32_t c = (uint32_t)db_get_i64(res, row, "seg_start");
	uint32_t j = cl->point->index - c;
	if (!db_get_bytes(res, row, "nonce", nonce, sizeof(nonce)))
		return false;
	bool has_lo = !db_is_null(res, row, "lo_idx");
	bool has_hi = !db_is_null(res, row, "hi_idx");
	uint32_t lo = (uint32_t)db_get_i64(res, row, "lo_idx") - c;
	uint32_t hi = (uint32_t)db_get_i64(res, row, "hi_idx") - c;
	if (has_hi && (!has_lo || hi - j < j - lo))
		return db_get_bytes(res, row, "hi_w", w, sizeof(w)) &&
		       mp_chain_verify(h, nonce, j, cl->point->w.data, hi, w);
	return has_lo && db_get_bytes(res, row, "lo_w", w, sizeof(w)) &&
	       mp_chain_verify(h, nonce, lo, w, j, cl->point->w.data);
}

static void call_redeem(struct redeem *rd, const PGresult *prep)
{
	struct broker *b = rd->call->b;
	struct pg_array ids, hseqs, segs, idx, words, pre, details;
	pg_array_begin(&ids), pg_array_begin(&hseqs), pg_array_begin(&segs);
	pg_array_begin(&idx), pg_array_begin(&words), pg_array_begin(&pre);
	pg_array_begin(&details);
	for (size_t i = 0; i < rd->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = rd->r->claims[i];
		struct claim_check *ck = &rd->checks[i];
		if (ck->status == MP_ST(OK) && ck->verify &&
		    !verify_claim(b->hasher, cl, prep, (int)i))
			*ck = (struct claim_check){MP_ST(BAD_CHAIN), "word does not verify", 0,
						   false};
		static const uint8_t zero[MP_HASH_LEN];
		bool shaped = ck->status != MP_ST(MALFORMED);
		pg_array_bytea(&ids, shaped ? cl->channel_id.data : zero, MP_ID_LEN);
		pg_array_int(&hseqs, sql_int(cl->hseq_in));
		pg_array_int(&segs, cl->point ? sql_int(cl->point->seg_seq) : 0);
		pg_array_int(&idx, cl->point ? sql_int(cl->point->index) : 0);
		pg_array_bytea(&words, shaped ? cl->point->w.data : zero, MP_HASH_LEN);
		pg_array_int(&pre, ck->status);
		pg_array_text(&details, ck->detail);
	}
	uint8_t hash[MP_HASH_LEN];
	mp_stmt_hash(rd->stmt, hash);
	struct db_params p = {0};
	db_param_bytes(&p, rd->peer_mid, MP_ID_LEN);
	db_param_bytes(&p, rd->r->redeem_id.data, MP_ID_LEN);
	db_param_bytes(&p, hash, sizeof(hash));
	db_param_text(&p, pg_array_end(&ids));
	db_param_text(&p, pg_array_end(&hseqs));
	db_param_text(&p, pg_array_end(&segs));
	db_param_text(&p, pg_array_end(&idx));
	db_param_text(&p, pg_array_end(&words));
	db_param_text(&p, pg_array_end(&pre));
	db_param_text(&p, pg_array_end(&details));
	bool ok = true;
	for (int i = 3; i < p.n; i++)
		ok = ok && p.values[i];
	if (!ok || db_call(b->db, "redeem", &p, on_redeemed, rd) != 0)
		reply_redeem(rd, MP_ST(INTERNAL), "cannot queue the redemption", NULL, 0);
	struct pg_array *all[] = {&ids, &hseqs, &segs, &idx, &words, &pre, &details};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		pg_array_free(all[i]);
}

static void on_prepared(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	struct broker *b = rd->call->b;
	size_t n = rd->r->n_claims;
	if (!res || (size_t)PQntuples(res) != n) {
		reply_redeem(rd, MP_ST(INTERNAL), "database error; retry", NULL, 0);
		return;
	}
	uint64_t budget = 0;
	for (size_t i = 0; i < n; i++) {
		check_claim(rd->r->claims[i], res, (int)i, rd->peer_mid, &rd->checks[i]);
		budget += rd->checks[i].cost;
	}
	if (budget > b->cfg.hash_budget) {
		reply_redeem(rd, MP_ST(LIMIT), "above the hashing budget of one Redeem: split it",
			     NULL, 0);
		return;
	}
	call_redeem(rd, res);
}

static void prepare(struct redeem *rd)
{
	struct pg_array ids, segs, idx;
	pg_array_begin(&ids), pg_array_begin(&segs), pg_array_begin(&idx);
	static const uint8_t zero[MP_ID_LEN];
	for (size_t i = 0; i < rd->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = rd->r->claims[i];
		bool id_ok = mp_bytes_len_is(cl->channel_id, MP_ID_LEN);
		pg_array_bytea(&ids, id_ok ? cl->channel_id.data : zero, MP_ID_LEN);
		pg_array_int(&segs, cl->point ? sql_int(cl->point->seg_seq) : 0);
		pg_array_int(&idx, cl->point ? sql_int(cl->point->index) : 0);
	}
	struct db_params p = {0};
	db_param_text(&p, pg_array_end(&ids));
	db_param_text(&p, pg_array_end(&segs));
	db_param_text(&p, pg_array_end(&idx));
	if (!p.values[0] || !p.values[1] || !p.values[2] ||
	    db_call(rd->call->b->db, "redeem_prepare", &p, on_prepared, rd) != 0)
		reply_redeem(rd, MP_ST(INTERNAL), "cannot queue the redemption", NULL, 0);
	pg_array_free(&ids), pg_array_free(&segs), pg_array_free(&idx);
}

static void on_merchant_key(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	uint8_t pk[MP_PK_LEN];
	if (!res || PQntuples(res) != 1) {
		reply_redeem(rd, MP_ST(INTERNAL), "database error; retry", NULL, 0);
		return;
	}
	if (!db_get_bool(res, 0, "found") || !db_get_bytes(res, 0, "merchant_pk", pk, MP_PK_LEN)) {
		reply_redeem(rd, MP_ST(UNKNOWN_ACCOUNT), "merchant not registered", NULL, 0);
		return;
	}
	ProtobufCMessage *body;
	MpCode code =
	    mp_stmt_open(rd->stmt, MP_STMT_REDEEM, pk, &micropay__v1__redeem__descriptor, &body);
	rd->r = (Micropay__V1__Redeem *)body;
	if (code != MP_ST(OK)) {
		reply_redeem(rd, code, "Redeem refused", NULL, 0);
		return;
	}
	if (!mp_bytes_len_is(rd->r->redeem_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(rd->r->merchant_id, MP_ID_LEN) ||
	    memcmp(rd->r->merchant_id.data, rd->peer_mid, MP_ID_LEN) != 0) {
		reply_redeem(rd, MP_ST(MALFORMED), "redeem_id or merchant_id", NULL, 0);
		return;
	}
	if (rd->r->n_claims == 0 || rd->r->n_claims > rd->call->b->cfg.max_claims) {
		reply_redeem(rd, MP_ST(LIMIT), "claims per Redeem: 1 to MAX_CLAIMS_PER_REDEEM",
			     NULL, 0);
		return;
	}
	rd->checks = calloc(rd->r->n_claims, sizeof(*rd->checks));
	if (!rd->checks) {
		reply_redeem(rd, MP_ST(INTERNAL), "out of memory", NULL, 0);
		return;
	}
	prepare(rd);
}

void handle_redeem(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct redeem *rd = calloc(1, sizeof(*rd));
	if (!rd || !(rd->call = broker_call_new(b, c, env))) {
		free(rd);
		return;
	}
	const MpSigned *s = env->redeem_req->stmt;
	if (!s || !(rd->stmt = mp_stmt_copy(s))) {
		reply_redeem(rd, MP_ST(MALFORMED), "missing statement", NULL, 0);
		return;
	}
	if (!mp_tls_peer_merchant_id(mp_conn_ssl(c), rd->peer_mid)) {
		reply_redeem(rd, MP_ST(BAD_SIG), "Redeem needs a merchant client certificate", NULL,
			     0);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, rd->peer_mid, MP_ID_LEN);
	if (db_call(b->db, "merchant_lookup", &p, on_merchant_key, rd) != 0)
		reply_redeem(rd, MP_ST(INTERNAL), "cannot queue the key lookup", NULL, 0);
}
