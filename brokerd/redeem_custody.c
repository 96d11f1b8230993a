/* The custody step of a Redeem (protocol.md sections 6 and 7; docs/custody.md), between the
 * signature and redeem_prepare:
 *
 *   custody_prepare (db): channels of the Redeem with custody or stored Handoffs, their stored
 *      | Handoffs, merchant keys        --(no such channel)--> redeem_prepare (epoch 0 rules)
 *      v
 *   VERIFY [worker pool] (custody_verify.c): each distinct custody list once; per claim a
 *      | refusal or OK; new Handoffs; conflicts   --(queue full)-----> LIMIT busy
 *      |                                          --(over the hash budget)--> LIMIT
 *      v
 *   custody_record (db, one transaction): Handoffs, their points, epochs and their ends,
 *      | conflicts (nothing new: skipped)
 *      v
 *   redeem_prepare (redeem.c), which reads the claimed epochs stored above
 *
 * Recording is idempotent (a stored Handoff again is a replay; a conflict's evidence key is
 * unique), so a retried Redeem records nothing twice. */
#include <stdlib.h>
#include <string.h>

#include "custody_verify.h"
#include "db.h"
#include "log.h"
#include "pg_array.h"
#include "redeem.h"
#include "stmt.h"
#include "util.h"
#include "workers.h"

static void mid_hex(const struct redeem *rd, char hex[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(rd->peer_mid, MP_ID_LEN, hex);
}

/* ---- RECORD ---- */

static void on_recorded(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	if (!res || PQntuples(res) != 1) {
		redeem_reply(rd, MP_ST(INTERNAL), error ? error : "custody not recorded; retry",
			     NULL, 0, NULL);
		return;
	}
	int64_t handoffs = db_get_i64(res, 0, "handoffs_new");
	int64_t conflicts = db_get_i64(res, 0, "conflicts_new");
	if (handoffs || conflicts) {
		char hex[MP_HEX_ID_LEN + 1];
		mid_hex(rd, hex);
		log_info("redeem from merchant %s: %lld new Handoffs stored, %lld new conflicts "
			 "recorded",
			 hex, (long long)handoffs, (long long)conflicts);
	}
	redeem_prepare(rd);
}

struct record_arrays {
	struct pg_array h_cid, h_hseq, h_stmt, h_hash, h_from, h_to, h_seg, h_idx, h_w;
	struct pg_array c_kind, c_cid, c_hseq, c_liable, c_stmt, c_other, c_idx, c_detail;
};
#define RECORD_ARRAYS 17

static struct pg_array *record_array(struct record_arrays *a, int i)
{
	struct pg_array *all[RECORD_ARRAYS] = {
	    &a->h_cid,	  &a->h_hseq, &a->h_stmt,  &a->h_hash, &a->h_from,  &a->h_to,
	    &a->h_seg,	  &a->h_idx,  &a->h_w,	   &a->c_kind, &a->c_cid,   &a->c_hseq,
	    &a->c_liable, &a->c_stmt, &a->c_other, &a->c_idx,  &a->c_detail};
	return all[i];
}

/* A statement's exact bytes into an array (an empty element when s is NULL). */
static void array_stmt(struct pg_array *a, const MpSigned *s)
{
	size_t len = 0;
	uint8_t *bytes = s ? mp_stmt_encode(s, &len) : NULL;
	if (s && !bytes)
		a->failed = true;
	pg_array_bytea(a, bytes, len);
	free(bytes);
}

static void fill_record(struct record_arrays *a, const struct custody_job *job)
{
	for (size_t i = 0; i < job->n_news; i++) {
		const struct custody_new *nw = &job->news[i];
		pg_array_bytea(&a->h_cid, nw->channel_id, MP_ID_LEN);
		pg_array_int(&a->h_hseq, nw->hseq);
		array_stmt(&a->h_stmt, nw->stmt);
		pg_array_bytea(&a->h_hash, nw->hash, MP_HASH_LEN);
		pg_array_bytea(&a->h_from, nw->from, MP_ID_LEN);
		pg_array_bytea(&a->h_to, nw->to, MP_ID_LEN);
		pg_array_int(&a->h_seg, nw->pt.seg_seq);
		pg_array_int(&a->h_idx, nw->pt.index);
		pg_array_bytea(&a->h_w, nw->pt.w, MP_HASH_LEN);
	}
	for (size_t i = 0; i < job->n_conflicts; i++) {
		const struct custody_conflict *c = &job->conflicts[i];
		pg_array_text(&a->c_kind, custody_conflict_name(c->kind));
		pg_array_bytea(&a->c_cid, c->channel_id, MP_ID_LEN);
		pg_array_int(&a->c_hseq, c->hseq);
		pg_array_bytea(&a->c_liable, c->liable, MP_ID_LEN);
		array_stmt(&a->c_stmt, c->stmt);
		array_stmt(&a->c_other, c->other);
		pg_array_int(&a->c_idx, c->has_index ? (int64_t)c->claim_index : -1);
		pg_array_text(&a->c_detail, c->detail);
	}
}

static void record(struct redeem *rd, const struct custody_job *job)
{
	struct record_arrays a;
	bool ok = true;
	for (int i = 0; i < RECORD_ARRAYS; i++)
		ok = pg_array_begin(record_array(&a, i)) & ok; /* all begun, so all can be freed */
	size_t stmt_len = 0;
	uint8_t *stmt = mp_stmt_encode(rd->stmt, &stmt_len);
	struct db_params p = {0};
	db_param_bytes(&p, rd->peer_mid, MP_ID_LEN);
	db_param_bytes(&p, stmt, stmt_len);
	if (ok)
		fill_record(&a, job);
	for (int i = 0; ok && i < RECORD_ARRAYS; i++) {
		const char *text = pg_array_end(record_array(&a, i));
		ok = text != NULL;
		db_param_text(&p, text);
	}
	const char *refused = !ok || !stmt
				  ? "out of memory"
				  : db_call(rd->call->b->db, "custody_record", &p, on_recorded, rd);
	for (int i = 0; i < RECORD_ARRAYS; i++)
		pg_array_free(record_array(&a, i));
	free(stmt);
	if (refused)
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
}

/* ---- VERIFY ---- */

static void on_verified(void *arg, enum mp_job_outcome outcome)
{
	struct custody_job *job = arg;
	struct redeem *rd = job->owner;
	char hex[MP_HEX_ID_LEN + 1];
	mid_hex(rd, hex);
	if (outcome == MP_JOB_CANCELLED || (!job->complete && !job->over_budget)) {
		custody_job_free(job);
		redeem_reply(rd, MP_ST(INTERNAL), "custody verification did not finish; retry",
			     NULL, 0, NULL);
		return;
	}
	if (job->over_budget) {
		log_warn("redeem from merchant %s refused: custody chains above the hash budget",
			 hex);
		custody_job_free(job);
		redeem_reply(rd, MP_ST(LIMIT),
			     "custody chains above the hashing budget of one Redeem: split it",
			     NULL, 0, NULL);
		return;
	}
	rd->custody = job->claims; /* kept for check_claim, freed with rd */
	job->claims = NULL;
	if (job->n_conflicts)
		log_warn("redeem from merchant %s: %zu conflicts found in custody evidence", hex,
			 job->n_conflicts);
	if (job->n_news || job->n_conflicts)
		record(rd, job);
	else
		redeem_prepare(rd);
	custody_job_free(job);
}

/* ---- LOAD (custody_prepare rows into the job) ---- */

static struct custody_chan *chan_of(struct custody_job *job, const PGresult *res, int row)
{
	uint8_t cid[MP_ID_LEN];
	if (!db_get_bytes(res, row, "channel_id", cid, MP_ID_LEN))
		return NULL;
	for (size_t i = 0; i < job->n_chans; i++)
		if (memcmp(job->chans[i].channel_id, cid, MP_ID_LEN) == 0)
			return &job->chans[i];
	return NULL;
}

static MpSigned *row_stmt(const PGresult *res, int row)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, row, "bytes_a", &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	return s;
}

static bool load_chan(struct custody_chan *ch, const PGresult *res, int row)
{
	ch->n = (uint32_t)db_get_i64(res, row, "n");
	ch->finalize_at = (uint64_t)db_get_i64(res, row, "finalize_at");
	ch->has_holder0 = db_get_bytes(res, row, "merchant_id", ch->holder0, MP_ID_LEN);
	ch->seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = ch->n};
	ch->cert = row_stmt(res, row);
	if (!ch->cert)
		return false;
	mp_stmt_hash(ch->cert, ch->seg0.head);
	return db_get_bytes(res, row, "channel_id", ch->channel_id, MP_ID_LEN) &&
	       db_get_bytes(res, row, "nonce", ch->seg0.nonce, MP_NONCE_LEN) &&
	       db_get_bytes(res, row, "root", ch->seg0.root, MP_HASH_LEN);
}

static bool load_handoff(struct custody_chan *ch, const PGresult *res, int row)
{
	struct custody_stored *grown = realloc(ch->stored, (ch->n_stored + 1) * sizeof(*grown));
	if (!grown)
		return false;
	ch->stored = grown;
	struct custody_stored *s = &ch->stored[ch->n_stored];
	*s = (struct custody_stored){.hseq = (uint32_t)db_get_i64(res, row, "hseq")};
	s->pt.seg_seq = (uint32_t)db_get_i64(res, row, "seg_seq");
	s->pt.index = (uint32_t)db_get_i64(res, row, "idx");
	s->stmt = row_stmt(res, row);
	if (!s->stmt)
		return false;
	ch->n_stored++;
	mp_stmt_hash(s->stmt, s->hash);
	return db_get_bytes(res, row, "merchant_id", s->from, MP_ID_LEN) &&
	       db_get_bytes(res, row, "to_mid", s->to, MP_ID_LEN) &&
	       db_get_bytes(res, row, "w", s->pt.w, MP_HASH_LEN);
}

static int by_hseq(const void *a, const void *b)
{
	const struct custody_stored *x = a, *y = b;
	return (x->hseq > y->hseq) - (x->hseq < y->hseq);
}

/* Stored Handoffs in hseq order; only the contiguous run from 1 counts (it always is). */
static void order_stored(struct custody_chan *ch)
{
	if (ch->n_stored)
		qsort(ch->stored, ch->n_stored, sizeof(*ch->stored), by_hseq);
	size_t k = 0;
	while (k < ch->n_stored && ch->stored[k].hseq == k + 1)
		k++;
	for (size_t i = k; i < ch->n_stored; i++)
		mp_stmt_free(ch->stored[i].stmt);
	ch->n_stored = k;
}

static bool load_rows(struct custody_job *job, const PGresult *res)
{
	int rows = PQntuples(res);
	job->chans = calloc((size_t)rows + 1, sizeof(*job->chans));
	job->keys = calloc((size_t)rows + 1, sizeof(*job->keys));
	if (!job->chans || !job->keys)
		return false;
	for (int i = 0; i < rows; i++) {
		const char *kind = db_get_text(res, i, "kind");
		if (kind && strcmp(kind, "chan") == 0) {
			if (!load_chan(&job->chans[job->n_chans++], res, i))
				return false;
		} else if (kind && strcmp(kind, "key") == 0) {
			struct custody_key *k = &job->keys[job->n_keys++];
			k->valid_until = (uint64_t)db_get_i64(res, i, "valid_until");
			if (!db_get_bytes(res, i, "merchant_id", k->mid, MP_ID_LEN) ||
			    !db_get_bytes(res, i, "bytes_a", k->pk, MP_PK_LEN))
				return false;
		}
	}
	for (int i = 0; i < rows; i++) {
		const char *kind = db_get_text(res, i, "kind");
		struct custody_chan *ch =
		    kind && strcmp(kind, "handoff") == 0 ? chan_of(job, res, i) : NULL;
		if (ch && !load_handoff(ch, res, i))
			return false;
	}
	for (size_t i = 0; i < job->n_chans; i++)
		order_stored(&job->chans[i]);
	return true;
}

static void on_custody_prepared(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	if (!res) {
		redeem_reply(rd, MP_ST(INTERNAL), error ? error : "no result; retry", NULL, 0,
			     NULL);
		return;
	}
	if (PQntuples(res) == 0) {
		redeem_prepare(rd); /* no custody anywhere in this Redeem */
		return;
	}
	struct custody_job *job = calloc(1, sizeof(*job));
	if (!job || !(job->claims = calloc(rd->r->n_claims, sizeof(*job->claims))) ||
	    !load_rows(job, res)) {
		char hex[MP_HEX_ID_LEN + 1];
		mid_hex(rd, hex);
		log_err("redeem from merchant %s: custody rows unreadable or out of memory", hex);
		custody_job_free(job);
		redeem_reply(rd, MP_ST(INTERNAL), "custody evidence unreadable; retry", NULL, 0,
			     NULL);
		return;
	}
	job->owner = rd;
	job->r = rd->r;
	job->hash_budget = rd->call->b->cfg.hash_budget;
	memcpy(job->claimant, rd->peer_mid, MP_ID_LEN);
	if (!mp_workers_submit(rd->call->b->workers, custody_work, on_verified, job)) {
		custody_job_free(job);
		rd->call->b->stats.worker_queue_refusals++;
		redeem_reply(rd, MP_ST(LIMIT), "broker busy: verification queue full, retry later",
			     NULL, 0, NULL);
	}
}

void redeem_custody(struct redeem *rd)
{
	struct pg_array ids, with;
	bool ok = pg_array_begin(&ids) & pg_array_begin(&with);
	for (size_t i = 0; ok && i < rd->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = rd->r->claims[i];
		if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN))
			continue;
		pg_array_bytea(&ids, cl->channel_id.data, MP_ID_LEN);
		if (cl->n_custody || cl->hseq_in)
			pg_array_bytea(&with, cl->channel_id.data, MP_ID_LEN);
	}
	struct db_params p = {0};
	if (ok) {
		db_param_text(&p, pg_array_end(&ids));
		db_param_text(&p, pg_array_end(&with));
	}
	const char *refused =
	    !ok || !p.values[0] || !p.values[1]
		? "out of memory"
		: db_call(rd->call->b->db, "custody_prepare", &p, on_custody_prepared, rd);
	pg_array_free(&ids), pg_array_free(&with);
	if (refused)
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
}
