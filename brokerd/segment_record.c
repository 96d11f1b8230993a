#include "segment_record.h"

#include <stdlib.h>
#include <string.h>

#include "pg_array.h"
#include "redeem.h"
#include "stmt.h"

void segment_found_set(struct segment_found *out, const uint8_t channel_id[MP_ID_LEN],
		       const struct mp_custody_segment *segments, const struct mp_custody_cap *caps,
		       MpSigned *const *stmts, uint32_t k)
{
	const struct mp_custody_segment *seg = &segments[k];
	const struct mp_custody_cap *cap = &caps[k - 1];
	*out = (struct segment_found){.seg_seq = k,
				      .start = cap->point.index,
				      .len = seg->len,
				      .hseq = cap->hseq,
				      .declared_last = cap->declared_last,
				      .transfer = stmts[2 * k - 2],
				      .cap = stmts[2 * k - 1]};
	memcpy(out->channel_id, channel_id, MP_ID_LEN);
	memcpy(out->nonce, seg->nonce, MP_NONCE_LEN);
	memcpy(out->root, seg->root, MP_HASH_LEN);
	memcpy(out->owner_pk, seg->owner_pk, MP_PK_LEN);
	memcpy(out->w_cap, cap->point.w, MP_HASH_LEN);
	memcpy(out->holder, cap->holder, MP_ID_LEN);
	memcpy(out->t_hash, cap->transfer_hash, MP_HASH_LEN);
	memcpy(out->c_hash, cap->cap_hash, MP_HASH_LEN);
}

enum {
	A_SEG,
	A_START,
	A_LEN,
	A_NONCE,
	A_ROOT,
	A_OWNER,
	A_TRANSFER,
	A_T_HASH,
	A_CAP,
	A_C_HASH,
	A_HSEQ,
	A_W_CAP,
	A_HOLDER,
	A_DECLARED,
	A_COUNT
};

static void array_stmt(struct pg_array *a, const MpSigned *s)
{
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(s, &len);
	if (!bytes)
		a->failed = true;
	pg_array_bytea(a, bytes, len);
	free(bytes);
}

static void fill(struct pg_array *a, const struct segment_found *f)
{
	pg_array_int(&a[A_SEG], f->seg_seq);
	pg_array_int(&a[A_START], redeem_sql_int(f->start));
	pg_array_int(&a[A_LEN], redeem_sql_int(f->len));
	pg_array_bytea(&a[A_NONCE], f->nonce, MP_NONCE_LEN);
	pg_array_bytea(&a[A_ROOT], f->root, MP_HASH_LEN);
	pg_array_bytea(&a[A_OWNER], f->owner_pk, MP_PK_LEN);
	array_stmt(&a[A_TRANSFER], f->transfer);
	pg_array_bytea(&a[A_T_HASH], f->t_hash, MP_HASH_LEN);
	array_stmt(&a[A_CAP], f->cap);
	pg_array_bytea(&a[A_C_HASH], f->c_hash, MP_HASH_LEN);
	pg_array_int(&a[A_HSEQ], redeem_sql_int(f->hseq));
	pg_array_bytea(&a[A_W_CAP], f->w_cap, MP_HASH_LEN);
	pg_array_bytea(&a[A_HOLDER], f->holder, MP_ID_LEN);
	pg_array_int(&a[A_DECLARED], redeem_sql_int(f->declared_last));
}

const char *segment_record_call(struct db_pool *db, const struct segment_record_req *req,
				db_done_fn done, void *arg)
{
	struct pg_array a[A_COUNT];
	bool ok = true;
	for (int i = 0; i < A_COUNT; i++)
		ok = pg_array_begin(&a[i]) & ok; /* all begun, so all can be freed */
	for (size_t i = 0; ok && i < req->n_pairs; i++)
		fill(a, &req->pairs[i]);
	struct db_params p = {0};
	db_param_bytes(&p, req->channel_id, MP_ID_LEN);
	db_param_text(&p, req->source);
	db_param_u64(&p, req->main_seg);
	for (int i = 0; i < A_COUNT; i++) {
		const char *text = ok ? pg_array_end(&a[i]) : NULL;
		ok = ok && text;
		db_param_text(&p, text);
	}
	size_t claim_len = 0;
	uint8_t *claim = req->claim ? mp_stmt_encode(req->claim, &claim_len) : NULL;
	uint8_t claim_hash[MP_HASH_LEN];
	if (req->claim) {
		ok = ok && claim;
		mp_stmt_hash(req->claim, claim_hash);
		db_param_bytes(&p, claim, claim_len);
		db_param_bytes(&p, claim_hash, MP_HASH_LEN);
		db_param_bytes(&p, req->payout, MP_ID_LEN);
	} else {
		db_param_text(&p, NULL);
		db_param_text(&p, NULL);
		db_param_text(&p, NULL);
	}
	const char *refused =
	    ok && !p.overflow ? db_call(db, "segment_record", &p, done, arg) : "out of memory";
	free(claim);
	for (int i = 0; i < A_COUNT; i++)
		pg_array_free(&a[i]);
	return refused;
}
