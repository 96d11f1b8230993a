/* The last step of a Redeem: one SQL function (mp_redeem) credits the verified claims, stores
 * the per-claim results and the Redeem's bytes under redeem_id and commits; the answer leaves
 * after COMMIT. The same redeem_id again replays the stored results; with another Redeem it is
 * CONFLICT carrying the stored Redeem (protocol.md section 5). */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "pg_array.h"
#include "redeem.h"
#include "stmt.h"
#include "util.h"

static void reply_conflict(struct redeem *rd, const PGresult *res)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, 0, "stored_stmt", &len);
	MpSigned *stored = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(rd->peer_mid, MP_ID_LEN, hex);
	log_info("redeem from merchant %s: CONFLICT, redeem_id already used%s", hex,
		 stored ? "" : " (stored before the statement was kept: no evidence)");
	redeem_reply(rd, MP_ST(CONFLICT), "redeem_id already used with another Redeem", NULL, 0,
		     stored);
	mp_stmt_free(stored);
}

static void on_redeemed(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	if (!res) {
		redeem_reply_db_error(rd, "mp_redeem", error, "no result; retry");
		return;
	}
	int rows = PQntuples(res);
	if (rows >= 1 && db_get_bool(res, 0, "conflict")) {
		reply_conflict(rd, res);
		return;
	}
	bool replayed = rows >= 1 && db_get_bool(res, 0, "replayed");
	Micropay__V1__ClaimResult *items = calloc((size_t)rows + 1, sizeof(*items));
	Micropay__V1__ClaimResult **ptrs = calloc((size_t)rows + 1, sizeof(*ptrs));
	if (!items || !ptrs) {
		free(items);
		free(ptrs);
		redeem_reply(rd, MP_ST(INTERNAL), "out of memory", NULL, 0, NULL);
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
	redeem_reply(rd, replayed ? MP_ST(DUPLICATE_OK) : MP_ST(OK), NULL, ptrs, (size_t)rows,
		     NULL);
	free(items);
	free(ptrs);
}

void redeem_array_opener(struct pg_array *a, const struct redeem *rd, size_t i)
{
	const struct custody_claim *cc = rd->custody ? &rd->custody[i] : NULL;
	bool on_branch = cc && cc->checked && cc->on_branch;
	pg_array_bytea(a, on_branch ? cc->opener : NULL, on_branch ? MP_HASH_LEN : 0);
}

struct claim_arrays {
	struct pg_array ids, hseqs, segs, idx, words, pre, details, openers;
};

static bool arrays_begin(struct claim_arrays *a)
{
	return pg_array_begin(&a->ids) && pg_array_begin(&a->hseqs) && pg_array_begin(&a->segs) &&
	       pg_array_begin(&a->idx) && pg_array_begin(&a->words) && pg_array_begin(&a->pre) &&
	       pg_array_begin(&a->details) && pg_array_begin(&a->openers);
}

static void arrays_free(struct claim_arrays *a)
{
	struct pg_array *all[] = {&a->ids,   &a->hseqs, &a->segs,    &a->idx,
				  &a->words, &a->pre,	&a->details, &a->openers};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		pg_array_free(all[i]);
}

static void arrays_add(struct claim_arrays *a, const Micropay__V1__Claim *cl,
		       const struct claim_check *ck)
{
	static const uint8_t zero[MP_HASH_LEN];
	bool shaped = ck->status != MP_ST(MALFORMED);
	pg_array_bytea(&a->ids, shaped ? cl->channel_id.data : zero, MP_ID_LEN);
	pg_array_int(&a->hseqs, redeem_sql_int(cl->hseq_in));
	pg_array_int(&a->segs, cl->point ? redeem_sql_int(cl->point->seg_seq) : 0);
	pg_array_int(&a->idx, cl->point ? redeem_sql_int(cl->point->index) : 0);
	pg_array_bytea(&a->words, shaped ? cl->point->w.data : zero, MP_HASH_LEN);
	pg_array_int(&a->pre, ck->status);
	pg_array_text(&a->details, ck->detail);
}

static void call_redeem(struct redeem *rd, struct claim_arrays *a)
{
	for (size_t i = 0; i < rd->r->n_claims; i++) {
		arrays_add(a, rd->r->claims[i], &rd->checks[i]);
		redeem_array_opener(&a->openers, rd, i);
	}
	uint8_t hash[MP_HASH_LEN];
	mp_stmt_hash(rd->stmt, hash);
	size_t stmt_len = 0;
	uint8_t *stmt = mp_stmt_encode(rd->stmt, &stmt_len);
	struct db_params p = {0};
	db_param_bytes(&p, rd->peer_mid, MP_ID_LEN);
	db_param_bytes(&p, rd->r->redeem_id.data, MP_ID_LEN);
	db_param_bytes(&p, hash, sizeof(hash));
	db_param_text(&p, pg_array_end(&a->ids));
	db_param_text(&p, pg_array_end(&a->hseqs));
	db_param_text(&p, pg_array_end(&a->segs));
	db_param_text(&p, pg_array_end(&a->idx));
	db_param_text(&p, pg_array_end(&a->words));
	db_param_text(&p, pg_array_end(&a->pre));
	db_param_text(&p, pg_array_end(&a->details));
	db_param_bytes(&p, stmt, stmt_len);
	db_param_text(&p, pg_array_end(&a->openers));
	bool ok = stmt != NULL;
	for (int i = 3; i < p.n; i++)
		ok = ok && p.values[i];
	const char *refused =
	    ok ? db_call(rd->call->b->db, "redeem", &p, on_redeemed, rd) : "out of memory";
	if (refused)
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
	free(stmt);
}

void redeem_credit(struct redeem *rd)
{
	struct claim_arrays a = {0};
	if (arrays_begin(&a))
		call_redeem(rd, &a);
	else
		redeem_reply(rd, MP_ST(INTERNAL), "out of memory", NULL, 0, NULL);
	arrays_free(&a);
}
