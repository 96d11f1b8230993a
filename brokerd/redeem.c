/* Redeem: batched, signed, idempotent redemption (protocol.md section 6, "Redemption").
 * The loop keeps answering everyone else while a Redeem is verified: the signature of the
 * statement and the hashing of claims run on the worker pool (redeem_verify.c), with copies of
 * what they read, and come back to the loop for the next step.
 *
 *   RedeemReq --(no statement)-----------------------------------------------> MALFORMED
 *      | peer certificate names merchant M --(no merchant certificate)------> BAD_SIG
 *      v
 *   merchant_lookup(M) (db) --(not registered)-------------------------------> UNKNOWN_ACCOUNT
 *      | M's key, from our state
 *      v
 *   SIGNATURE [worker pool]: type, signer_pk, signature, then strict parse
 *      |                                        --(refused)----------------> BAD_SIG/MALFORMED
 *      |                                        --(pool queue full)--------> LIMIT busy
 *      | ids (merchant_id = M), 1 <= claims <= MAX_CLAIMS_PER_REDEEM -(no)-> MALFORMED/LIMIT
 *      v
 *   CUSTODY (redeem_custody.c): custody chains verified on the worker pool, Handoffs,
 *      | epochs and conflicts recorded (db)
 *      v
 *   redeem_prepare (db): each claim's channel, claimed epoch, nearest verified points
 *      v
 *   CHECKS without hashing (each claim: refusal, DUPLICATE_OK, or a chain task with its cost)
 *      | total cost > REDEEM_HASH_BUDGET ---------------------------------> LIMIT, split it
 *      | reserve the cost in M's bad-chain bucket --(short)---------------> LIMIT, retry later
 *      v
 *   HASHING [worker pool] --(queue full)-----------------------------------> LIMIT busy
 *      | failing claims become BAD_CHAIN; their hashes stay charged to M,
 *      | the rest of the reservation returns to M's bucket
 *      v
 *   mp_redeem (db, one transaction) --> OK / DUPLICATE_OK (replay) / CONFLICT + stored Redeem
 *
 * A database step (custody, redeem_prepare, mp_redeem) cancelled by the statement timeout
 * stores nothing and answers LIMIT "split it" (redeem_timeout.c); another database failure
 * answers INTERNAL (the same bytes again).
 * Every refusal before mp_redeem stores nothing. A job cancelled by shutdown answers INTERNAL
 * (retry), and returns its reservation. */
#include <stdlib.h>
#include <string.h>

#include "bad_chain_budget.h"
#include "db.h"
#include "log.h"
#include "pg_array.h"
#include "redeem.h"
#include "redeem_verify.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"
#include "workers.h"

/* Every signature and every hash of a Redeem runs on the worker pool, however small (an
 * Ed25519 check is 50-100 us, 4096 hashes about 2 ms: a peer sending many small Redeems must
 * not hold the loop either). */
static const char busy_detail[] = "broker busy: verification queue full, retry later";

static void merchant_hex(const struct redeem *rd, char hex[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(rd->peer_mid, MP_ID_LEN, hex);
}

/* The reservation's hashing ended: `wasted` hashes stay charged, the rest is returned. */
static void settle_budget(struct redeem *rd, uint64_t wasted)
{
	if (!rd->reserved)
		return;
	bad_chain_settle(rd->call->b->bad_chain, rd->peer_mid, rd->reserved, wasted,
			 bad_chain_clock_ms());
	rd->reserved = 0;
}

static void redeem_free(struct redeem *rd)
{
	mp_stmt_free(rd->stmt);
	if (rd->r)
		micropay__v1__redeem__free_unpacked(rd->r, NULL);
	free(rd->checks);
	free(rd->custody);
	free(rd);
}

void redeem_reply(struct redeem *rd, MpCode code, const char *detail,
		  Micropay__V1__ClaimResult **results, size_t n_results, const MpSigned *evidence)
{
	if (rd->hooks) {
		settle_budget(rd, 0);
		rd->hooks->refused(rd, code, detail);
		redeem_free(rd);
		return;
	}
	Micropay__V1__RedeemResp resp = MICROPAY__V1__REDEEM_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	st.evidence = (MpSigned *)evidence;
	resp.results = results;
	resp.n_results = n_results;
	resp.broker_time = mp_clock_now(&rd->call->b->clock);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_RESP);
	env.redeem_resp = &resp;
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		rd->call->b->stats.requests_refused++;
	settle_budget(rd, 0); /* a reservation still held returns (cancelled); before the call,
				 which holds the broker, is freed with the answer */
	broker_call_reply(rd->call, &env);
	redeem_free(rd);
}

void redeem_discard(struct redeem *rd)
{
	settle_budget(rd, 0);
	redeem_free(rd);
}

static void reply_busy(struct redeem *rd, const char *step)
{
	char hex[MP_HEX_ID_LEN + 1];
	merchant_hex(rd, hex);
	log_warn("redeem from merchant %s refused at %s: worker queue full", hex, step);
	rd->call->b->stats.worker_queue_refusals++;
	redeem_reply(rd, MP_ST(LIMIT), busy_detail, NULL, 0, NULL);
}

/* ---- HASHING ---- */

static void on_chain_verified(void *arg, enum mp_job_outcome outcome)
{
	struct redeem_chain_job *job = arg;
	struct redeem *rd = job->owner;
	struct broker *b = rd->call->b;
	if (outcome == MP_JOB_CANCELLED || !job->complete) {
		free(job->tasks);
		free(job);
		redeem_reply(rd, MP_ST(INTERNAL), "verification did not finish; retry", NULL, 0,
			     NULL);
		return;
	}
	uint64_t wasted = 0;
	size_t bad = 0;
	for (size_t i = 0; i < job->n; i++) {
		const struct chain_task *t = &job->tasks[i];
		if (t->ok)
			continue;
		rd->checks[t->claim] =
		    (struct claim_check){MP_ST(BAD_CHAIN), "word does not verify", false};
		wasted += t->cost;
		bad++;
	}
	free(job->tasks);
	free(job);
	settle_budget(rd, wasted);
	if (bad) {
		b->stats.bad_chain_hashes += wasted;
		char hex[MP_HEX_ID_LEN + 1];
		merchant_hex(rd, hex);
		log_info(
		    "redeem from merchant %s: %zu claims BAD_CHAIN, %llu hashes charged to its "
		    "bad-chain budget",
		    hex, bad, (unsigned long long)wasted);
	}
	if (rd->hooks)
		rd->hooks->credit(rd);
	else
		redeem_credit(rd);
}

static void start_hashing(struct redeem *rd, struct redeem_chain_job *job, uint64_t cost)
{
	struct broker *b = rd->call->b;
	char hex[MP_HEX_ID_LEN + 1];
	merchant_hex(rd, hex);
	const char *refusal = NULL;
	switch (rd->hooks && rd->hooks->no_budget
		    ? BAD_CHAIN_RESERVED
		    : bad_chain_reserve(b->bad_chain, rd->peer_mid, cost, bad_chain_clock_ms())) {
	case BAD_CHAIN_RESERVED:
		break;
	case BAD_CHAIN_EXHAUSTED:
		refusal = "bad-chain hashing budget exhausted, retry later";
		break;
	case BAD_CHAIN_TABLE_FULL:
		refusal = "bad-chain hashing budget table full, retry later";
		break;
	}
	if (refusal) {
		b->stats.bad_chain_budget_refusals++;
		log_warn("redeem from merchant %s refused: %s (%llu hashes needed)", hex, refusal,
			 (unsigned long long)cost);
		free(job->tasks);
		free(job);
		redeem_reply(rd, MP_ST(LIMIT), refusal, NULL, 0, NULL);
		return;
	}
	rd->reserved = rd->hooks && rd->hooks->no_budget ? 0 : cost;
	job->owner = rd;
	if (job->n == 0) { /* nothing to hash (every claim decided by the checks) */
		job->complete = true;
		on_chain_verified(job, MP_JOB_DONE);
		return;
	}
	if (!mp_workers_submit(b->workers, redeem_chain_work, on_chain_verified, job)) {
		free(job->tasks);
		free(job);
		reply_busy(rd, "hashing");
	}
}

/* ---- CHECKS ---- */

/* Decide what needs no hashing. cc: the custody step's decision for this claim (NULL or not
 * checked: no custody evidence, so only epoch 0 can be claimed). */
static void check_claim(const Micropay__V1__Claim *cl, const PGresult *res, int row,
			const uint8_t mid[MP_ID_LEN], const struct custody_claim *cc,
			struct claim_check *out)
{
	*out = (struct claim_check){MP_ST(OK), "", false};
	const MpPoint *pt = cl->point;
	if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN) || !pt ||
	    !mp_bytes_len_is(pt->w, MP_HASH_LEN)) {
		*out = (struct claim_check){MP_ST(MALFORMED), "claim field lengths", false};
		return;
	}
	if (!db_get_bool(res, row, "found")) {
		*out = (struct claim_check){MP_ST(UNKNOWN_CHANNEL), "unknown channel", false};
		return;
	}
	bool custody_checked = cc && cc->checked;
	if (custody_checked && cc->status != MP_ST(OK)) {
		*out = (struct claim_check){cc->status, cc->detail, false};
		return;
	}
	uint8_t holder[MP_ID_LEN];
	/* Epochs above 0 need their custody chain (verified by the custody step, which stored
	 * the epoch read here). */
	if ((cl->hseq_in != 0 && !custody_checked) ||
	    !db_get_bytes(res, row, "epoch_merchant", holder, MP_ID_LEN) ||
	    memcmp(holder, mid, MP_ID_LEN) != 0) {
		*out =
		    (struct claim_check){MP_ST(NOT_HOLDER), "not the holder of that epoch", false};
		return;
	}
	if (!db_get_bool(res, row, "seg_found")) {
		*out = (struct claim_check){MP_ST(TOO_EARLY), "segment unknown", false};
		return;
	}
	int64_t seg_start = db_get_i64(res, row, "seg_start");
	int64_t n = db_get_i64(res, row, "n");
	/* A segment ended by the next one's Cap ends at its cap index. */
	int64_t end = db_is_null(res, row, "seg_end") ? n : db_get_i64(res, row, "seg_end");
	if ((int64_t)pt->index <= seg_start || (int64_t)pt->index > n || (int64_t)pt->index > end) {
		*out =
		    (struct claim_check){MP_ST(OUT_OF_RANGE), "index outside its segment", false};
		return;
	}
	/* At or below the credited end: DUPLICATE_OK decided under lock by the SQL function. */
	out->verify = (int64_t)pt->index > db_get_i64(res, row, "credited_end");
}

/* Decide every claim that needs no hashing and build the chain tasks of the others; returns
 * their total cost (saturating). */
static uint64_t check_claims(struct redeem *rd, const PGresult *res, struct redeem_chain_job *job)
{
	uint64_t cost = 0;
	for (size_t i = 0; i < rd->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = rd->r->claims[i];
		struct claim_check *ck = &rd->checks[i];
		check_claim(cl, res, (int)i, rd->peer_mid, rd->custody ? &rd->custody[i] : NULL,
			    ck);
		if (ck->status != MP_ST(OK) ||
		    !(ck->verify || (rd->hooks && rd->hooks->verify_all)))
			continue;
		struct chain_task *t = &job->tasks[job->n];
		if (!chain_task_init(t, i, cl->point, res, (int)i)) {
			log_err("redeem: stored verified point of claim %zu unreadable", i);
			*ck =
			    (struct claim_check){MP_ST(INTERNAL), "stored point unreadable", false};
			continue;
		}
		job->n++;
		cost = cost + t->cost < cost ? UINT64_MAX : cost + t->cost;
	}
	return cost;
}

static void on_prepared(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	struct broker *b = rd->call->b;
	size_t n = rd->r->n_claims;
	if (!res || (size_t)PQntuples(res) != n) {
		redeem_reply_db_error(rd, "redeem_prepare", error,
				      "unexpected database result; retry");
		return;
	}
	struct redeem_chain_job *job = calloc(1, sizeof(*job));
	if (!job || !(job->tasks = calloc(n, sizeof(*job->tasks)))) {
		free(job);
		redeem_reply(rd, MP_ST(INTERNAL), "out of memory", NULL, 0, NULL);
		return;
	}
	uint64_t cost = check_claims(rd, res, job);
	if (cost > b->cfg.hash_budget) {
		free(job->tasks);
		free(job);
		redeem_reply(rd, MP_ST(LIMIT), "above the hashing budget of one Redeem: split it",
			     NULL, 0, NULL);
		return;
	}
	start_hashing(rd, job, cost);
}

void redeem_prepare(struct redeem *rd)
{
	struct pg_array ids, hseqs, segs, idx, openers;
	/* & not &&: all five are begun, so all five can be freed */
	bool ok = pg_array_begin(&ids) & pg_array_begin(&hseqs) & pg_array_begin(&segs) &
		  pg_array_begin(&idx) & pg_array_begin(&openers);
	static const uint8_t zero[MP_ID_LEN];
	for (size_t i = 0; ok && i < rd->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = rd->r->claims[i];
		bool id_ok = mp_bytes_len_is(cl->channel_id, MP_ID_LEN);
		pg_array_bytea(&ids, id_ok ? cl->channel_id.data : zero, MP_ID_LEN);
		pg_array_int(&hseqs, redeem_sql_int(cl->hseq_in));
		pg_array_int(&segs, cl->point ? redeem_sql_int(cl->point->seg_seq) : 0);
		pg_array_int(&idx, cl->point ? redeem_sql_int(cl->point->index) : 0);
		redeem_array_opener(&openers, rd, i);
	}
	struct db_params p = {0};
	if (ok) {
		db_param_text(&p, pg_array_end(&ids));
		db_param_text(&p, pg_array_end(&hseqs));
		db_param_text(&p, pg_array_end(&segs));
		db_param_text(&p, pg_array_end(&idx));
		db_param_bytes(&p, rd->peer_mid, MP_ID_LEN); /* its fork epoch, if it holds one */
		db_param_text(&p, pg_array_end(&openers));   /* which, if it holds two */
	}
	const char *refused =
	    !ok || !p.values[0] || !p.values[1] || !p.values[2] || !p.values[3] || !p.values[5]
		? "out of memory"
		: db_call(rd->call->b->db, "redeem_prepare", &p, on_prepared, rd);
	if (refused)
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
	pg_array_free(&ids), pg_array_free(&hseqs), pg_array_free(&segs), pg_array_free(&idx);
	pg_array_free(&openers);
}

/* ---- SIGNATURE ---- */

static void on_signature_checked(void *arg, enum mp_job_outcome outcome)
{
	struct redeem_sig_job *job = arg;
	struct redeem *rd = job->owner;
	MpCode code = job->code;
	rd->stmt = job->stmt;
	rd->r = job->body;
	free(job);
	if (outcome == MP_JOB_CANCELLED) {
		redeem_reply(rd, MP_ST(INTERNAL), "verification did not finish; retry", NULL, 0,
			     NULL);
		return;
	}
	rd->call->b->stats.verifications_worker++; /* the Redeem's own signature */
	if (code != MP_ST(OK)) {
		redeem_reply(rd, code, "Redeem refused", NULL, 0, NULL);
		return;
	}
	if (!mp_bytes_len_is(rd->r->redeem_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(rd->r->merchant_id, MP_ID_LEN) ||
	    memcmp(rd->r->merchant_id.data, rd->peer_mid, MP_ID_LEN) != 0) {
		redeem_reply(rd, MP_ST(MALFORMED), "redeem_id or merchant_id", NULL, 0, NULL);
		return;
	}
	if (rd->r->n_claims == 0 || rd->r->n_claims > rd->call->b->cfg.max_claims) {
		redeem_reply(rd, MP_ST(LIMIT), "claims per Redeem: 1 to MAX_CLAIMS_PER_REDEEM",
			     NULL, 0, NULL);
		return;
	}
	rd->checks = calloc(rd->r->n_claims, sizeof(*rd->checks));
	if (!rd->checks) {
		redeem_reply(rd, MP_ST(INTERNAL), "out of memory", NULL, 0, NULL);
		return;
	}
	redeem_custody(rd);
}

static void check_signature(struct redeem *rd, const uint8_t pk[MP_PK_LEN])
{
	struct redeem_sig_job *job = calloc(1, sizeof(*job));
	if (!job) {
		redeem_reply(rd, MP_ST(INTERNAL), "out of memory", NULL, 0, NULL);
		return;
	}
	job->owner = rd;
	job->code = MP_ST(INTERNAL);
	memcpy(job->pk, pk, MP_PK_LEN);
	job->stmt = rd->stmt; /* the job's until it is handed back */
	rd->stmt = NULL;
	if (!mp_workers_submit(rd->call->b->workers, redeem_sig_work, on_signature_checked, job)) {
		rd->stmt = job->stmt;
		free(job);
		reply_busy(rd, "signature");
	}
}

static void on_merchant_key(const PGresult *res, const char *error, void *arg)
{
	struct redeem *rd = arg;
	uint8_t pk[MP_PK_LEN];
	if (!res || PQntuples(res) != 1) {
		redeem_reply(rd, MP_ST(INTERNAL),
			     error ? error : "unexpected database result; retry", NULL, 0, NULL);
		return;
	}
	if (!db_get_bool(res, 0, "found") || !db_get_bytes(res, 0, "merchant_pk", pk, MP_PK_LEN)) {
		redeem_reply(rd, MP_ST(UNKNOWN_ACCOUNT), "merchant not registered", NULL, 0, NULL);
		return;
	}
	check_signature(rd, pk);
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
		redeem_reply(rd, MP_ST(MALFORMED), "missing statement", NULL, 0, NULL);
		return;
	}
	if (!mp_tls_peer_merchant_id(mp_conn_ssl(c), rd->peer_mid)) {
		redeem_reply(rd, MP_ST(BAD_SIG), "Redeem needs a merchant client certificate", NULL,
			     0, NULL);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, rd->peer_mid, MP_ID_LEN);
	const char *refused = db_call(b->db, "merchant_lookup", &p, on_merchant_key, rd);
	if (refused)
		redeem_reply(rd, MP_ST(INTERNAL), refused, NULL, 0, NULL);
}
