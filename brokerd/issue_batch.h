/* IssueRequests stored in batches (issue_batch.c): the requests ready for the database wait
 * in one queue and go as one mp_issue_batch call (brokerd/sql/0036-issue-batch.sql), so the
 * commit, the round trip and each table's statement are shared by the batch. */
#pragma once
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "ids.h"
#include "sig.h"

struct broker;

/* One request's parameters for mp_issue, owned by the row (request, cert and currency are malloc'd
 * and freed by issue_row_clear). done is called exactly once, on the loop: with the result
 * and the request's row in it, or with res NULL and an error fit for the client's INTERNAL
 * answer. A row submitted is the batcher's until then. */
struct issue_row {
	struct issue_row *next;
	uint8_t account_id[MP_ID_LEN], issue_req_id[MP_ID_LEN], channel_id[MP_ID_LEN];
	uint8_t escrow_id[MP_ID_LEN], nonce[MP_NONCE_LEN], holder0[MP_ID_LEN];
	uint8_t req_hash[MP_HASH_LEN], owner_pk[MP_PK_LEN], root[MP_HASH_LEN];
	size_t holder0_len; /* 0: unbound */
	uint8_t *request, *cert;
	size_t request_len, cert_len; /* cert NULL: refused in bounds, no cert signed */
	int64_t bounds;
	const char *bounds_detail; /* static text */
	char *currency;		   /* malloc'd */
	uint64_t n, unit_value, issued_at, pay_until, redeem_until;
	uint64_t queued_at_ms; /* set by issue_batcher_submit */
	void (*done)(struct issue_row *row, const PGresult *res, int res_row, const char *error);
};

void issue_row_clear(struct issue_row *row);

struct issue_batcher;

struct issue_batcher *issue_batcher_new(struct broker *b);
/* Answers every row still queued DB_ERR_SHUTTING_DOWN; the batches in flight are answered by
 * the pool as it closes. */
void issue_batcher_free(struct issue_batcher *ib);
/* Queues the row (NULL), or refuses it with why (DB_ERR_QUEUE_FULL: done is not called). */
const char *issue_batcher_submit(struct issue_batcher *ib, struct issue_row *row);

/* Rows waiting for a batch slot (the batches and their rows are counted in broker_stats). */
unsigned issue_batcher_queued(const struct issue_batcher *ib);
