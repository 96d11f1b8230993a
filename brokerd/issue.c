/* IssueRequest -> ChannelCert (protocol.md section 6, "Issue"). The signature is checked
 * first, under the account's registered key (claimed_account says how that key is found
 * without parsing the body); then one SQL function decides replay, conflict, bounds, funds and
 * reuse in one transaction (with the other requests of its batch), and the cert leaves only
 * after COMMIT. Both Ed25519 operations run
 * on the worker pool (common/sign_job.h), never on the loop: the request's verification, and
 * the cert's signature (in memory or in a PKCS#11 token, docs/keys.md).
 *
 *   received --(no account_id in the framing)------------------------------> BAD_SIG
 *      | account_id read from the framing only
 *      v
 *   key cached? --no--> customer_key query --(no row)----------------------> UNKNOWN_ACCOUNT
 *      | yes                 | key (cached from now on)
 *      v                     v
 *   VERIFYING [worker]: type, signer_pk, signature (mp_stmt_open) --(refused)-> BAD_SIG
 *      |                                    --(pool queue full)------------> LIMIT busy
 *      | verified: now parse strictly --(refused, lengths, other account)--> MALFORMED
 *      v
 *   bounds checked --(refused: no cert signed)-----------------------+
 *      | in bounds                                                   |
 *      v                                                             |
 *   SIGNING [worker]: the ChannelCert --(pool queue full)------------|----> LIMIT busy
 *      |                          --(failed, or pool stopped)--------|----> INTERNAL
 *      v                                                             v
 *   mp_issue_batch (db, issue_batch.c: queued, then with the other requests waiting)
 *      --(COMMIT)--> OK / DUPLICATE_OK (the stored cert, byte for byte) /
 *                    CONFLICT + stored request / refusal
 *
 * Nothing is stored before mp_issue: a LIMIT busy or INTERNAL before it leaves no trace, and a
 * resent request goes through the whole path again. A connection that closes while a job is on
 * a worker only loses the answer: the call holds its own reference to the connection, and the
 * job's arg (the issue) stays valid until its done ran on the loop. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "broker.h"
#include "db.h"
#include "ids.h"
#include "issue_batch.h"
#include "log.h"
#include "pb_peek.h"
#include "sign_job.h"
#include "stmt.h"
#include "util.h"
#include "verify_job.h"

#define HOUR	      3600ULL
#define DAY	      (24 * HOUR)
#define REDEEM_WINDOW (48 * HOUR)
/* IssueRequest.account_id in proto/micropay.proto */
#define ISSUE_REQUEST_ACCOUNT_ID_FIELD 2

struct cert_times {
	uint64_t now, issued_at, pay_until, redeem_until;
};

struct issue {
	struct broker_call *call;
	MpSigned *stmt;
	uint8_t account_id[MP_ID_LEN];
	Micropay__V1__IssueRequest *req; /* parsed once verified */
	MpCode bounds;			 /* check_bounds: OK, or the refusal mp_issue stores */
	const char *bounds_detail;
	uint8_t channel_id[MP_ID_LEN];
	struct cert_times t;
	struct issue_row row; /* mp_issue's parameters, in the batch queue (issue_batch.c) */
};

static const char busy_detail[] = "broker busy: signing queue full, retry later";

static void issue_free(struct issue *is)
{
	mp_stmt_free(is->stmt);
	issue_row_clear(&is->row);
	if (is->req)
		micropay__v1__issue_request__free_unpacked(is->req, NULL);
	free(is);
}

static void reply_issue(struct issue *is, MpCode code, const char *detail, const MpSigned *cert,
			const MpSigned *evidence)
{
	Micropay__V1__IssueResp resp = MICROPAY__V1__ISSUE_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	st.evidence = (MpSigned *)evidence;
	resp.channel_cert = (MpSigned *)cert;
	resp.broker_time = mp_clock_now(&is->call->b->clock);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_RESP);
	env.issue_resp = &resp;
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		is->call->b->stats.requests_refused++;
	broker_call_reply(is->call, &env);
	issue_free(is);
}

/* Stateless checks of an issue request: MALFORMED with a detail, or OK. */
static MpCode check_bounds(const struct broker *b, const Micropay__V1__IssueRequest *r,
			   const char **detail)
{
	uint64_t escrow;
	switch (mp_escrow_bounds(r->n, r->unit_value, b->cfg.n_max, b->cfg.max_unit_value,
				 b->cfg.max_escrow, &escrow)) {
	case MP_ESCROW_OK:
		break;
	case MP_ESCROW_BAD_N:
		*detail = "n out of bounds";
		return MP_ST(MALFORMED);
	case MP_ESCROW_BAD_UNIT:
		*detail = "unit_value out of bounds";
		return MP_ST(MALFORMED);
	case MP_ESCROW_TOO_BIG:
		*detail = "n * unit_value above the maximum escrow";
		return MP_ST(MALFORMED);
	}
	if (strcmp(r->currency, b->cfg.currency) != 0) {
		*detail = "currency not served by this broker";
		return MP_ST(MALFORMED);
	}
	if (r->pay_until_days != 1 && r->pay_until_days != 7 && r->pay_until_days != 30) {
		*detail = "pay_until_days must be 1, 7 or 30";
		return MP_ST(MALFORMED);
	}
	return MP_ST(OK);
}

/* Lengths must be right before anything is stored or looked up. */
static bool lengths_ok(const Micropay__V1__IssueRequest *r)
{
	return mp_bytes_len_is(r->issue_req_id, MP_ID_LEN) &&
	       mp_bytes_len_is(r->account_id, MP_ID_LEN) &&
	       mp_bytes_len_is(r->owner_pk, MP_PK_LEN) &&
	       mp_bytes_len_is(r->chain_nonce, MP_NONCE_LEN) &&
	       mp_bytes_len_is(r->root, MP_HASH_LEN) &&
	       (r->holder0.len == 0 || mp_bytes_len_is(r->holder0, MP_ID_LEN));
}

static MpSigned *stored_statement(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, row, col, &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	return s;
}

/* The request's row of its batch's result (issue_batch.c), or the batch's error. */
static void on_issued(struct issue_row *row, const PGresult *res, int res_row, const char *error)
{
	struct issue *is = (struct issue *)((char *)row - offsetof(struct issue, row));
	if (!res) {
		reply_issue(is, MP_ST(INTERNAL), error, NULL, NULL);
		return;
	}
	MpCode code = (MpCode)db_get_i64(res, res_row, "status");
	const char *detail = db_get_text(res, res_row, "detail");
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(is->account_id, MP_ID_LEN, hex);
	log_info("issue for account %s: %s%s%s", hex, mp_code_name(code), detail ? ": " : "",
		 detail ? detail : "");
	MpSigned *stored = NULL;
	if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
		stored = stored_statement(res, res_row, "cert");
		if (!stored)
			code = MP_ST(INTERNAL);
		else if (code == MP_ST(OK))
			is->call->b->stats.channels_issued++;
		else
			is->call->b->stats.issue_duplicates++;
		reply_issue(is, code, detail, stored, NULL);
	} else if (code == MP_ST(CONFLICT)) {
		stored = stored_statement(res, res_row, "request");
		reply_issue(is, code, "issue_req_id already used with another request", NULL,
			    stored);
	} else {
		reply_issue(is, code, detail, NULL, NULL);
	}
	mp_stmt_free(stored);
}

/* The request as a row for mp_issue with, when in bounds, the signed cert (NULL otherwise),
 * into the batch queue. */
static void store_issue(struct issue *is, const MpSigned *cert)
{
	const Micropay__V1__IssueRequest *r = is->req;
	struct issue_row *row = &is->row;
	memcpy(row->account_id, r->account_id.data, MP_ID_LEN);
	memcpy(row->issue_req_id, r->issue_req_id.data, MP_ID_LEN);
	memcpy(row->channel_id, is->channel_id, MP_ID_LEN);
	memcpy(row->owner_pk, r->owner_pk.data, MP_PK_LEN);
	memcpy(row->nonce, r->chain_nonce.data, MP_NONCE_LEN);
	memcpy(row->root, r->root.data, MP_HASH_LEN);
	if (r->holder0.len) /* 0 or MP_ID_LEN: lengths_ok; data may be NULL when 0 */
		memcpy(row->holder0, r->holder0.data, r->holder0.len);
	row->holder0_len = r->holder0.len;
	mp_stmt_hash(is->stmt, row->req_hash);
	row->request = mp_stmt_encode(is->stmt, &row->request_len);
	row->cert = cert ? mp_stmt_encode(cert, &row->cert_len) : NULL;
	row->currency = strdup(r->currency);
	row->bounds = is->bounds;
	row->bounds_detail = is->bounds_detail;
	row->n = r->n;
	row->unit_value = r->unit_value;
	row->issued_at = is->t.issued_at;
	row->pay_until = is->t.pay_until;
	row->redeem_until = is->t.redeem_until;
	row->done = on_issued;
	bool ok = mp_random_bytes(row->escrow_id, sizeof(row->escrow_id)) && row->request &&
		  (!cert || row->cert) && row->currency;
	const char *refused = ok ? issue_batcher_submit(is->call->b->issues, row) : "out of memory";
	if (refused)
		reply_issue(is, MP_ST(INTERNAL), refused, NULL, NULL);
}

static void reply_busy(struct issue *is, const char *step)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(is->account_id, MP_ID_LEN, hex);
	log_warn("issue for account %s refused at %s: worker queue full (%s)", hex, step,
		 mp_conn_peer(is->call->conn));
	is->call->b->stats.worker_queue_refusals++;
	reply_issue(is, MP_ST(LIMIT), busy_detail, NULL, NULL);
}

/* SIGNING done, on the loop. */
static void on_cert_signed(void *arg, MpSigned *cert)
{
	struct issue *is = arg;
	if (!cert) {
		reply_issue(is, MP_ST(INTERNAL), "signing failed; retry", NULL, NULL);
		return;
	}
	is->call->b->stats.signatures_worker++;
	store_issue(is, cert);
	mp_stmt_free(cert);
}

/* The cert's body, serialised now; its signature is made on a worker. */
static void sign_cert(struct issue *is)
{
	struct broker *b = is->call->b;
	const Micropay__V1__IssueRequest *r = is->req;
	Micropay__V1__ChannelCert cc = MICROPAY__V1__CHANNEL_CERT__INIT;
	cc.broker_key_id = (ProtobufCBinaryData){MP_KEY_ID_LEN, b->key_id};
	cc.channel_id = (ProtobufCBinaryData){MP_ID_LEN, is->channel_id};
	cc.owner_pk = r->owner_pk;
	cc.chain_nonce = r->chain_nonce;
	cc.root = r->root;
	cc.n = r->n;
	cc.unit_value = r->unit_value;
	cc.currency = r->currency;
	cc.holder0 = r->holder0;
	cc.issued_at = is->t.issued_at;
	cc.pay_until = is->t.pay_until;
	cc.redeem_until = is->t.redeem_until;
	if (!mp_sign_job_submit(b->workers, &b->key, MP_STMT_CHANNEL_CERT, &cc.base, on_cert_signed,
				is))
		reply_busy(is, "signing");
}

static void check_and_sign(struct issue *is)
{
	const Micropay__V1__IssueRequest *r = is->req;
	mp_channel_id(r->account_id.data, r->issue_req_id.data, is->channel_id);
	is->t.now = mp_clock_now(&is->call->b->clock);
	is->t.issued_at = is->t.now - is->t.now % HOUR;
	is->t.pay_until = is->t.issued_at + r->pay_until_days * DAY;
	is->t.redeem_until = is->t.pay_until + REDEEM_WINDOW;
	is->bounds = check_bounds(is->call->b, r, &is->bounds_detail);
	if (is->bounds == MP_ST(OK))
		sign_cert(is);
	else
		store_issue(is, NULL);
}

/* VERIFYING done, on the loop: now the parsed body may be looked at. */
static void on_verified(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct issue *is = arg;
	if (code != MP_ST(OK)) {
		reply_issue(is, code,
			    code == MP_ST(INTERNAL) ? "verification did not finish; retry"
						    : "IssueRequest refused",
			    NULL, NULL);
		return;
	}
	is->req = (Micropay__V1__IssueRequest *)body;
	if (!lengths_ok(is->req))
		reply_issue(is, MP_ST(MALFORMED), "field lengths", NULL, NULL);
	else if (memcmp(is->req->account_id.data, is->account_id, MP_ID_LEN) != 0)
		reply_issue(is, MP_ST(MALFORMED), "account_id appears more than once", NULL, NULL);
	else
		check_and_sign(is);
}

/* The signature under the account's registered key first (on a worker: is->stmt is the
 * job's to read until on_verified), then everything else. */
static void verify_and_issue(struct issue *is, const uint8_t pk[MP_PK_LEN])
{
	if (!broker_verify_submit(is->call->b, is->stmt, MP_STMT_ISSUE_REQUEST, pk,
				  &micropay__v1__issue_request__descriptor, on_verified, is))
		reply_issue(is, MP_ST(LIMIT), BROKER_BUSY_VERIFYING, NULL, NULL); /* counted */
}

static void on_account_key(const PGresult *res, const char *error, void *arg)
{
	struct issue *is = arg;
	uint8_t pk[MP_PK_LEN];
	if (!res) {
		reply_issue(is, MP_ST(INTERNAL), error, NULL, NULL);
		return;
	}
	if (PQntuples(res) != 1 || !db_get_bytes(res, 0, "account_pk", pk, MP_PK_LEN)) {
		reply_issue(is, MP_ST(UNKNOWN_ACCOUNT), "no such account", NULL, NULL);
		return;
	}
	key_cache_put(is->call->b, is->account_id, pk);
	verify_and_issue(is, pk);
}

/* Which key must have signed this IssueRequest? protocol.md section 4: the registered key of
 * the account the request is for, and that account is named inside the body we may not parse
 * before the signature is verified (section 2). So only the framing of the top-level fields up
 * to account_id is read (common/pb_peek.c: no allocation, no sub-message or string looked
 * into); the id selects a key from our own state (cache or customers table), exactly as a
 * merchant id from a TLS certificate selects a merchant's key. Naming another account only
 * selects another key, under which the signature then fails. The full strict parse runs after
 * the signature verified, and the parsed account_id must equal the one read here. A body that
 * names no account cannot be verified under any key of ours: BAD_SIG, like a bad signature. */
static bool claimed_account(const MpSigned *s, uint8_t out[MP_ID_LEN])
{
	const uint8_t *id;
	size_t len;
	if (!mp_pb_peek_bytes(s->body.data, s->body.len, ISSUE_REQUEST_ACCOUNT_ID_FIELD, &id,
			      &len) ||
	    len != MP_ID_LEN)
		return false;
	memcpy(out, id, MP_ID_LEN);
	return true;
}

void handle_issue(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct issue *is = calloc(1, sizeof(*is));
	if (!is || !(is->call = broker_call_new(b, c, env))) {
		free(is);
		return;
	}
	const MpSigned *s = env->issue_req->stmt;
	if (!s || !(is->stmt = mp_stmt_copy(s))) {
		reply_issue(is, MP_ST(MALFORMED), "missing statement", NULL, NULL);
		return;
	}
	if (!claimed_account(s, is->account_id)) {
		reply_issue(is, MP_ST(BAD_SIG),
			    "IssueRequest names no account whose key could verify it", NULL, NULL);
		return;
	}
	uint8_t pk[MP_PK_LEN];
	if (key_cache_get(b, is->account_id, pk)) {
		verify_and_issue(is, pk);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, is->account_id, MP_ID_LEN);
	const char *refused = db_call(b->db, "customer_key", &p, on_account_key, is);
	if (refused)
		reply_issue(is, MP_ST(INTERNAL), refused, NULL, NULL);
}
