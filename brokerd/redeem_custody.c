/* The custody step of a Redeem (protocol.md sections 6 and 7; docs/custody.md), between the
 * signature and redeem_prepare:
 *
 *   custody_prepare (db): channels of the Redeem with custody, segments or stored evidence: their
 *      | Handoffs, pairs, points, keys  --(no such channel)--> redeem_prepare (epoch 0 rules)
 *      v
 *   VERIFY [worker pool] (custody_verify.c): each distinct custody list once; per claim a
 *      | refusal or OK; new Handoffs; conflicts   --(queue full)-----> LIMIT busy
 *      |                                          --(over the hash budget)--> LIMIT
 *      v
 *   segment_record (db, one transaction per channel with new Transfer/Cap pairs from the
 *      | claims' segments: segments, base and cap points, statements; brokerd/segment_record.c)
 *      v
 *   custody_record (db, one transaction): Handoffs, their points, epochs and their ends,
 *      | second branches of forks (their Handoffs and epochs), conflicts (nothing new: skipped)
 *      v
 *   redeem_prepare (redeem.c), which reads the claimed epochs stored above
 *
 * Recording is idempotent (a stored Handoff again is a replay; a conflict's evidence key is
 * unique), so a retried Redeem records nothing twice. */
#include <stdlib.h>
#include <string.h>

#include "custody_arrays.h"
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
		redeem_reply_db_error(rd, "custody_record", error, "custody not recorded; retry");
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
	struct handoff_arrays h;
	struct pg_array c_kind, c_cid, c_hseq, c_liable, c_stmt, c_other, c_idx, c_detail;
	struct pg_array b_branch, b_liable; /* between b.cid and b.hseq */
	struct handoff_arrays b;
	struct pg_array b_prev; /* after b.w: each branch row's predecessor in its chain */
};
#define RECORD_ARRAYS 29

/* In the order of mp_custody_record_branches' parameters after the first two. */
static struct pg_array *record_array(struct record_arrays *a, int i)
{
	struct pg_array *all[RECORD_ARRAYS] = {
	    &a->h.cid,	  &a->h.hseq,	&a->h.stmt,  &a->h.hash, &a->h.from,   &a->h.to,
	    &a->h.seg,	  &a->h.idx,	&a->h.w,     &a->c_kind, &a->c_cid,    &a->c_hseq,
	    &a->c_liable, &a->c_stmt,	&a->c_other, &a->c_idx,	 &a->c_detail, &a->b.cid,
	    &a->b_branch, &a->b_liable, &a->b.hseq,  &a->b.stmt, &a->b.hash,   &a->b.from,
	    &a->b.to,	  &a->b.seg,	&a->b.idx,   &a->b.w,	 &a->b_prev};
	return all[i];
}

static void fill_record(struct record_arrays *a, const struct custody_job *job)
{
	for (size_t i = 0; i < job->n_news; i++)
		custody_fill_handoff(&a->h, &job->news[i]);
	for (size_t i = 0; i < job->n_branches; i++) {
		const struct custody_branch *b = &job->branches[i];
		custody_fill_handoff(&a->b, &b->h);
		pg_array_bytea(&a->b_branch, b->branch, MP_HASH_LEN);
		pg_array_bytea(&a->b_liable, b->liable, MP_ID_LEN);
		pg_array_bytea(&a->b_prev, b->prev, MP_HASH_LEN);
	}
	for (size_t i = 0; i < job->n_conflicts; i++) {
		const struct custody_conflict *c = &job->conflicts[i];
		pg_array_text(&a->c_kind, custody_conflict_name(c->kind));
		pg_array_bytea(&a->c_cid, c->channel_id, MP_ID_LEN);
		pg_array_int(&a->c_hseq, c->hseq);
		pg_array_bytea(&a->c_liable, c->liable, MP_ID_LEN);
		custody_array_stmt(&a->c_stmt, c->stmt);
		custody_array_stmt(&a->c_other, c->other);
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

/* Handoffs, second branches and conflicts (or nothing new: straight on), then the job is
 * done. */
static void record_custody(struct redeem *rd, struct custody_job *job)
{
	if (job->n_news || job->n_conflicts || job->n_branches)
		record(rd, job);
	else
		redeem_prepare(rd);
	custody_job_free(job);
}

/* ---- RECORD PAIRS: one mp_segment_record per channel with pairs new to the broker ---- */

struct pairs_step {
	struct redeem *rd;
	struct custody_job *job;
	size_t from, to; /* job->found[from, to): one channel's pairs */
};

static void record_pairs(struct redeem *rd, struct custody_job *job, size_t from);

static void on_pairs_recorded(const PGresult *res, const char *error, void *arg)
{
	struct pairs_step *st = arg;
	struct redeem *rd = st->rd;
	struct custody_job *job = st->job;
	size_t to = st->to;
	free(st);
	if (!res || PQntuples(res) != 1) {
		custody_job_free(job);
		redeem_reply_db_error(rd, "segment_record", error, "segments not recorded; retry");
		return;
	}
	int64_t status = db_get_i64(res, 0, "status");
	int64_t fresh = db_get_i64(res, 0, "pairs_new");
	char hex[MP_HEX_ID_LEN + 1], cid[MP_HEX_ID_LEN + 1];
	mid_hex(rd, hex);
	mp_hex_encode(job->found[to - 1].channel_id, MP_ID_LEN, cid);
	if (status != MP_ST(OK) && status != MP_ST(DUPLICATE_OK))
		log_warn("redeem from merchant %s: segments of channel %s not all recorded: %s "
			 "(%s)",
			 hex, cid, mp_code_name((MpCode)status), db_get_text(res, 0, "detail"));
	else if (fresh)
		log_info("redeem from merchant %s: %lld new segments of channel %s recorded", hex,
			 (long long)fresh, cid);
	record_pairs(rd, job, to);
}

static void record_pairs(struct redeem *rd, struct custody_job *job, size_t from)
{
	if (from >= job->n_found) {
		record_custody(rd, job);
		return;
	}
	size_t to = from + 1;
	while (to < job->n_found &&
	       memcmp(job->found[to].channel_id, job->found[from].channel_id, MP_ID_LEN) == 0)
		to++;
	struct pairs_step *st = malloc(sizeof(*st));
	struct segment_record_req req = {.channel_id = job->found[from].channel_id,
					 .source = "redeem",
					 .pairs = &job->found[from],
					 .n_pairs = to - from};
	const char *refused = "out of memory";
	if (st) {
		*st = (struct pairs_step){rd, job, from, to};
		refused = segment_record_call(rd->call->b->db, &req, on_pairs_recorded, st);
	}
	if (refused) {
		free(st);
		custody_job_free(job);
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
	}
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
	if (job->n_found)
		record_pairs(rd, job, 0);
	else
		record_custody(rd, job);
}

/* ---- LOAD ---- */

static void on_custody_prepared(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	if (!res) {
		redeem_reply_db_error(rd, "custody_prepare", error, "no result; retry");
		return;
	}
	if (PQntuples(res) == 0) {
		redeem_prepare(rd); /* no custody anywhere in this Redeem */
		return;
	}
	struct custody_job *job = calloc(1, sizeof(*job));
	if (!job || !(job->claims = calloc(rd->r->n_claims, sizeof(*job->claims))) ||
	    !custody_load(res, &job->chans, &job->n_chans, &job->keys, &job->n_keys)) {
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
		if (cl->n_custody || cl->hseq_in || cl->n_segments)
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
