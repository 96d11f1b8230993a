/* IssueRequests stored in batches. A request that has passed every check brokerd makes (and
 * has its cert signed) is a row for mp_issue; rows wait here and leave as one mp_issue_batch
 * call, which decides each exactly as mp_issue alone would and commits them together:
 *
 *   submit --(queue full: db max_queue rows queued or in flight)---------> refused (QUEUE_FULL)
 *     | queued
 *     v
 *   QUEUED --(still queued after queue_timeout_ms when a slot frees)--> timed out (INTERNAL)
 *     |--(a batch slot free: at most max(1, pool - 1) batches in flight, one connection
 *     |       left for everything else)--> up to [db] issue_batch rows, in arrival order
 *     v
 *   IN FLIGHT (one transaction) --(COMMIT)--> each row's answer from its result row
 *     |        --(statement timeout, several rows: nothing stored)--> back to the queue's head,
 *     |                    batches half as large until one commits
 *     |        --(any other error, or one row timed out)--> each row the error
 *     v
 *   slot free: the rows that queued meanwhile go next
 *
 * Nothing waits for a timer: with no batch in flight a row goes at once (a batch of one), and
 * under load the rows that arrive during a commit form the next batch, so the batch grows with
 * the load (the same scheme as merchantd's group commit). Every wait is bounded: [db] max_queue
 * bounds the rows queued and in flight together, a batch waits for a connection at most
 * [db] queue_timeout_ms and runs at most statement_timeout_ms, and a row still queued after
 * queue_timeout_ms when a slot frees is answered timed out (DB_ERR_TIMED_OUT_*) instead of
 * going. */
#include "issue_batch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "db.h"
#include "log.h"
#include "pg_array.h"

struct issue_batcher {
	struct broker *b;
	struct issue_row *head, *tail;
	unsigned queued, in_flight;
	unsigned in_batches; /* rows of the batches in flight */
	unsigned max_rows;   /* the next batch's most rows: [db] issue_batch, less after a split */
};

/* A batch in flight: its rows by position (mp_issue_batch's ord - 1). */
struct issue_batch {
	struct issue_batcher *ib;
	unsigned count;
	struct issue_row *rows[];
};

/* The 18 per-row arrays of mp_issue_batch, in its parameter order. */
enum issue_column {
	COL_ACCOUNT,
	COL_REQ_ID,
	COL_REQ_HASH,
	COL_REQUEST,
	COL_BOUNDS,
	COL_BOUNDS_DETAIL,
	COL_CHANNEL,
	COL_ESCROW,
	COL_OWNER,
	COL_NONCE,
	COL_ROOT,
	COL_N,
	COL_UNIT,
	COL_CURRENCY,
	COL_HOLDER0,
	COL_ISSUED_AT,
	COL_PAY_UNTIL,
	COL_REDEEM_UNTIL,
	COL_COUNT
};

static void flush(struct issue_batcher *ib);

void issue_row_clear(struct issue_row *row)
{
	free(row->request);
	free(row->cert);
	free(row->currency);
	row->request = row->cert = NULL;
	row->currency = NULL;
}

static void fail_queued(struct issue_batcher *ib, const char *error)
{
	log_err("issue batch: %u queued requests answered: %s", ib->queued, error);
	while (ib->head) {
		struct issue_row *row = ib->head;
		ib->head = row->next;
		ib->queued--;
		row->done(row, NULL, 0, error);
	}
	ib->tail = NULL;
}

struct issue_batcher *issue_batcher_new(struct broker *b)
{
	struct issue_batcher *ib = calloc(1, sizeof(*ib));
	if (ib)
		ib->b = b;
	else
		log_err("issue: out of memory for the batch queue");
	return ib;
}

void issue_batcher_free(struct issue_batcher *ib)
{
	if (!ib)
		return;
	if (ib->head)
		fail_queued(ib, DB_ERR_SHUTTING_DOWN);
	free(ib);
}

unsigned issue_batcher_queued(const struct issue_batcher *ib)
{
	return ib->queued;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* [db] max_queue bounds the requests waiting for the database: here, the rows queued and
 * those of the batches not yet answered. */
const char *issue_batcher_submit(struct issue_batcher *ib, struct issue_row *row)
{
	if (ib->queued + ib->in_batches >= ib->b->cfg.db_max_queue) {
		ib->b->stats.issue_queue_refusals++;
		return DB_ERR_QUEUE_FULL;
	}
	row->queued_at_ms = monotonic_ms();
	row->next = NULL;
	if (ib->tail)
		ib->tail->next = row;
	else
		ib->head = row;
	ib->tail = row;
	ib->queued++;
	flush(ib);
	return NULL;
}

static void add_row(struct pg_array *col, const struct issue_row *r)
{
	pg_array_bytea(&col[COL_ACCOUNT], r->account_id, MP_ID_LEN);
	pg_array_bytea(&col[COL_REQ_ID], r->issue_req_id, MP_ID_LEN);
	pg_array_bytea(&col[COL_REQ_HASH], r->req_hash, MP_HASH_LEN);
	pg_array_bytea(&col[COL_REQUEST], r->request, r->request_len);
	pg_array_int(&col[COL_BOUNDS], r->bounds);
	pg_array_text(&col[COL_BOUNDS_DETAIL], r->bounds_detail ? r->bounds_detail : "");
	pg_array_bytea(&col[COL_CHANNEL], r->channel_id, MP_ID_LEN);
	pg_array_bytea(&col[COL_ESCROW], r->escrow_id, MP_ID_LEN);
	pg_array_bytea(&col[COL_OWNER], r->owner_pk, MP_PK_LEN);
	pg_array_bytea(&col[COL_NONCE], r->nonce, MP_NONCE_LEN);
	pg_array_bytea(&col[COL_ROOT], r->root, MP_HASH_LEN);
	/* Refused bounds never reach a SQL integer: mp_issue gets 0 (brokerd passes 0 too). */
	pg_array_int(&col[COL_N], r->bounds == 0 ? (int64_t)r->n : 0);
	pg_array_int(&col[COL_UNIT], r->bounds == 0 ? (int64_t)r->unit_value : 0);
	/* A request refused in bounds may name any bytes as its currency, not even UTF-8, which
	 * would fail the whole array and so the batch; mp_issue never reads a refused request's
	 * currency (its bounds answer first), and an accepted one's is ours. */
	pg_array_text(&col[COL_CURRENCY], r->bounds == 0 ? r->currency : "");
	pg_array_bytea(&col[COL_HOLDER0], r->holder0, r->holder0_len);
	pg_array_int(&col[COL_ISSUED_AT], (int64_t)r->issued_at);
	pg_array_int(&col[COL_PAY_UNTIL], (int64_t)r->pay_until);
	pg_array_int(&col[COL_REDEEM_UNTIL], (int64_t)r->redeem_until);
}

/* Answers every row of a batch that could not be sent or did not commit. */
static void fail_batch(struct issue_batch *batch, const char *error)
{
	for (unsigned i = 0; i < batch->count; i++)
		batch->rows[i]->done(batch->rows[i], NULL, 0, error);
}

/* A batch of several rows cancelled by the statement timeout stored nothing (one transaction):
 * its rows go back to the head of the queue, in order, and the batches are half as large
 * until one commits. A single row that times out is answered with the error. */
static bool split_timed_out(struct issue_batch *batch, const char *error)
{
	struct issue_batcher *ib = batch->ib;
	if (batch->count < 2 || !db_error_is_statement_timeout(error))
		return false;
	uint64_t now = monotonic_ms(); /* each had a connection: its wait for one starts again */
	for (unsigned i = batch->count; i-- > 0;) {
		batch->rows[i]->queued_at_ms = now;
		batch->rows[i]->next = ib->head;
		ib->head = batch->rows[i];
		if (!ib->tail)
			ib->tail = batch->rows[i];
		ib->queued++;
	}
	if (!ib->max_rows || batch->count / 2 < ib->max_rows)
		ib->max_rows = batch->count / 2; /* never back up after another split */
	ib->b->stats.issue_batch_splits++;
	log_warn("issue batch of %u requests ran past the statement timeout (nothing stored): "
		 "sent again in batches of at most %u",
		 batch->count, ib->max_rows);
	return true;
}

static void on_batch_done(const PGresult *res, const char *error, void *arg)
{
	struct issue_batch *batch = arg;
	struct issue_batcher *ib = batch->ib;
	ib->in_flight--;
	ib->in_batches -= batch->count;
	if (!res && split_timed_out(batch, error)) {
		free(batch);
		flush(ib);
		return;
	}
	if (res && ib->max_rows < ib->b->cfg.issue_batch)
		ib->max_rows = ib->max_rows * 2 < ib->b->cfg.issue_batch ? ib->max_rows * 2
									 : ib->b->cfg.issue_batch;
	bool answered[batch->count];
	memset(answered, 0, sizeof(answered));
	for (int row = 0; res && row < PQntuples(res); row++) {
		int64_t ord = db_get_i64(res, row, "ord");
		if (ord < 1 || ord > (int64_t)batch->count || answered[ord - 1])
			continue;
		answered[ord - 1] = true;
		batch->rows[ord - 1]->done(batch->rows[ord - 1], res, row, NULL);
	}
	for (unsigned i = 0; i < batch->count; i++) {
		if (answered[i])
			continue;
		if (res)
			log_err("issue batch: no result for request %u of %u", i + 1, batch->count);
		batch->rows[i]->done(batch->rows[i], NULL, 0,
				     error ? error : "unexpected database result; retry");
	}
	free(batch);
	flush(ib);
}

/* The next batch's rows off the queue, in arrival order. */
static struct issue_batch *take_batch(struct issue_batcher *ib)
{
	if (!ib->max_rows || ib->max_rows > ib->b->cfg.issue_batch)
		ib->max_rows = ib->b->cfg.issue_batch; /* the start, or a reload that lowered it */
	unsigned max = ib->max_rows ? ib->max_rows : 1;
	unsigned count = ib->queued < max ? ib->queued : max;
	struct issue_batch *batch = malloc(sizeof(*batch) + count * sizeof(batch->rows[0]));
	if (!batch)
		return NULL;
	batch->ib = ib;
	batch->count = count;
	for (unsigned i = 0; i < count; i++) {
		batch->rows[i] = ib->head;
		ib->head = ib->head->next;
	}
	if (!ib->head)
		ib->tail = NULL;
	ib->queued -= count;
	return batch;
}

/* The call's parameters: the 18 arrays, T_grace, brokerd's clock (without the test clock's
 * offset, which moves deadlines, not the machine), max_offset, the certs. */
static const char *send_batch(struct issue_batch *batch)
{
	struct broker *b = batch->ib->b;
	struct pg_array col[COL_COUNT], certs;
	bool ok = pg_array_begin(&certs);
	for (unsigned c = 0; c < COL_COUNT; c++)
		ok &= pg_array_begin(&col[c]);
	for (unsigned i = 0; i < batch->count; i++) {
		const struct issue_row *r = batch->rows[i];
		add_row(col, r);
		if (r->cert)
			pg_array_bytea(&certs, r->cert, r->cert_len);
		else
			pg_array_null(&certs);
	}
	struct db_params p = {0};
	for (unsigned c = 0; c < COL_COUNT; c++) {
		const char *text = pg_array_end(&col[c]);
		ok &= text != NULL;
		db_param_text(&p, text);
	}
	db_param_u64(&p, b->cfg.t_grace);
	db_param_u64(&p, broker_now(b) - (uint64_t)atomic_load(&b->clock.offset));
	db_param_u64(&p, b->cfg.max_offset);
	const char *cert_text = pg_array_end(&certs);
	db_param_text(&p, cert_text);
	ok &= cert_text != NULL;
	const char *refused =
	    ok ? db_call(b->db, "issue_batch", &p, on_batch_done, batch) : "out of memory";
	for (unsigned c = 0; c < COL_COUNT; c++)
		pg_array_free(&col[c]);
	pg_array_free(&certs);
	return refused;
}

static unsigned max_in_flight(const struct broker *b)
{
	return b->cfg.db_pool > 1 ? b->cfg.db_pool - 1 : 1;
}

/* Rows that waited longer than [db] queue_timeout_ms (behind batches that took that long) are
 * answered as a request the pool kept waiting that long would be. */
static void expire_queued(struct issue_batcher *ib)
{
	uint64_t now = monotonic_ms(), limit = ib->b->cfg.db_queue_timeout_ms;
	while (ib->head && now - ib->head->queued_at_ms >= limit) {
		struct issue_row *row = ib->head;
		ib->head = row->next;
		if (!ib->head)
			ib->tail = NULL;
		ib->queued--;
		struct db_pool_stats st;
		db_pool_get_stats(ib->b->db, &st);
		ib->b->stats.issue_queue_expired++;
		row->done(row, NULL, 0,
			  st.connections_up ? DB_ERR_TIMED_OUT_BUSY : DB_ERR_TIMED_OUT_DOWN);
	}
}

static void flush(struct issue_batcher *ib)
{
	expire_queued(ib);
	while (ib->head && ib->in_flight < max_in_flight(ib->b)) {
		struct issue_batch *batch = take_batch(ib);
		if (!batch) {
			fail_queued(ib, "out of memory; retry");
			return;
		}
		const char *refused = send_batch(batch);
		if (refused) {
			log_warn("issue batch of %u refused by the database pool: %s", batch->count,
				 refused);
			fail_batch(batch, refused);
			free(batch);
			continue;
		}
		ib->in_flight++;
		ib->in_batches += batch->count;
		ib->b->stats.issue_batches++;
		ib->b->stats.issue_batched += batch->count;
	}
}
