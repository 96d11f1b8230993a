/* A Dispute's evidence (docs/disputes.md): the payword at pay_index is the Offer's merchant's
 * redemption evidence, so it is verified exactly as that merchant's claim at pay_index would
 * be, by the Redeem's own steps (redeem_custody.c, redeem.c) run with hooks: a Redeem of one
 * claim {channel, hseq_in = the number of Handoffs carried, point (seg_seq, pay_index,
 * w_pay_index), the custody and segments carried} for the merchant, its word hashed even at
 * or below the merchant's credited end, not charged to the merchant's bad-chain budget (the
 * sender is any client): the connection's own budget (dispute_budget.c) admits it first.
 *
 *   BUDGET: verifying + BAD_CHAIN answers on this connection < 3 --(else)--> LIMIT
 *      v
 *   COMPLETE (db): a carried chain starting at Handoff k > 1 (walletd carries the holder's own
 *      | Handoff only) gets the broker's stored Handoffs 1..k-1 in front, when it has them all
 *      v
 *   CUSTODY [worker pool]: the Handoffs 1..H carried (H = the Offer's signer's epoch) against
 *      | the channel as the broker knows it; new Handoffs and pairs recorded
 *      v
 *   CHECKS: the epoch's holder is the Offer's merchant --(else)--> NOT_HOLDER; pay_index in
 *      | its segment and epoch --(else)--> OUT_OF_RANGE
 *      v
 *   HASHING [worker pool]: w_pay_index against the nearest verified point --(no)--> BAD_CHAIN
 *      v
 *   mp_dispute_open (db, one transaction): the checks again under the channel's lock, the
 *      epoch starts at or below after_index (else NOT_HOLDER), the claim credited by mp_redeem
 *      (its refusal refuses the dispute, nothing stays), the dispute OPEN --> the answer */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispute.h"
#include "dispute_budget.h"
#include "log.h"
#include "pb_peek.h"
#include "proto_limits.h"
#include "redeem.h"
#include "stmt.h"
#include "util.h"

static struct dispute *owner(const struct redeem *rd)
{
	return rd->hook_arg;
}

static void on_refused(struct redeem *rd, MpCode code, const char *detail)
{
	dispute_reply(owner(rd), code, detail);
}

static void on_opened(const PGresult *res, const char *error, void *arg)
{
	struct dispute *d = arg;
	if (d->proven && res && PQntuples(res) == 1 && db_get_i64(res, 0, "status") == MP_ST(OK))
		dispute_prove(d); /* opened: the proof goes on it */
	else
		dispute_reply_row(d, res, error);
}

/* Every check passed (or claim 0 refused): mp_dispute_open, or the refusal. */
static void on_credit(struct redeem *rd)
{
	struct dispute *d = owner(rd);
	const struct claim_check *ck = &rd->checks[0];
	if (ck->status != MP_ST(OK)) {
		dispute_reply(d, ck->status, ck->detail);
		redeem_discard(rd);
		return;
	}
	const struct custody_claim *cc = rd->custody ? &rd->custody[0] : NULL;
	bool on_branch = cc && cc->checked && cc->on_branch;
	struct broker *b = d->call->b;
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(d->stmt, &len);
	struct db_params p = {0};
	db_param_bytes(&p, d->channel_id, MP_ID_LEN);
	db_param_bytes(&p, d->offer.order_ref, MP_ID_LEN);
	db_param_bytes(&p, d->stmt_hash, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	db_param_bytes(&p, d->merchant_id, MP_ID_LEN);
	db_param_u64(&p, d->seg_seq);
	db_param_u64(&p, d->n_custody);
	db_param_u64(&p, d->offer.after_index);
	db_param_u64(&p, d->offer.pay_index);
	db_param_bytes(&p, d->w, MP_HASH_LEN);
	db_param_bytes(&p, d->offer.key_hash, MP_HASH_LEN);
	db_param_u64(&p, d->offer.deadline);
	db_param_bytes(&p, d->payout, MP_ID_LEN);
	db_param_u64(&p, b->cfg.dispute_window);
	db_param_u64(&p, b->cfg.dispute_answer);
	db_param_u64(&p, broker_now(b));
	if (on_branch)
		db_param_bytes(&p, cc->opener, MP_HASH_LEN);
	else
		db_param_text(&p, NULL);
	const char *refused =
	    bytes ? db_call(b->db, "dispute_open", &p, on_opened, d) : "out of memory";
	free(bytes);
	redeem_discard(rd);
	if (refused)
		dispute_reply(d, MP_ST(INTERNAL), refused);
}

static const struct redeem_hooks hooks = {
    .credit = on_credit, .refused = on_refused, .verify_all = true, .no_budget = true};

/* The Redeem of the one claim, packed and unpacked so that the Redeem's steps own and free
 * it as their own. */
static Micropay__V1__Redeem *claim_redeem(const struct dispute *d)
{
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = d->seg_seq;
	pt.index = d->offer.pay_index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)d->w};
	Micropay__V1__Claim cl = MICROPAY__V1__CLAIM__INIT;
	Micropay__V1__Claim *claims[1] = {&cl};
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)d->channel_id};
	cl.hseq_in = (uint32_t)d->n_custody;
	cl.point = &pt;
	cl.custody = d->custody;
	cl.n_custody = d->n_custody;
	cl.segments = d->segments;
	cl.n_segments = d->n_segments;
	Micropay__V1__Redeem r = MICROPAY__V1__REDEEM__INIT;
	r.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)d->offer.order_ref};
	r.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)d->merchant_id};
	r.claims = claims;
	r.n_claims = 1;
	size_t len = micropay__v1__redeem__get_packed_size(&r);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return NULL;
	micropay__v1__redeem__pack(&r, buf);
	Micropay__V1__Redeem *out = micropay__v1__redeem__unpack(NULL, len, buf);
	free(buf);
	return out;
}

static void evidence_start(struct dispute *d)
{
	struct redeem *rd = calloc(1, sizeof(*rd));
	if (!rd || !(rd->r = claim_redeem(d)) || !(rd->checks = calloc(1, sizeof(*rd->checks))) ||
	    !(rd->stmt = mp_stmt_copy(d->stmt))) {
		if (rd && rd->r)
			micropay__v1__redeem__free_unpacked(rd->r, NULL);
		if (rd)
			free(rd->checks);
		free(rd);
		dispute_reply(d, MP_ST(INTERNAL), "out of memory");
		return;
	}
	rd->call = d->call;
	rd->hooks = &hooks;
	rd->hook_arg = d;
	memcpy(rd->peer_mid, d->merchant_id, MP_ID_LEN);
	redeem_custody(rd);
}

/* ---- COMPLETE: Handoffs 1..k-1 the broker stored, before a carried chain starting at k ---- */

/* The hseq of the first carried Handoff (0 if none or unreadable). */
static uint32_t first_hseq(const struct dispute *d)
{
	uint64_t h = 0;
	if (d->n_custody == 0 ||
	    !mp_pb_peek_uint(d->custody[0]->body.data, d->custody[0]->body.len, 2, &h) ||
	    h > MP_MAX_HANDOFFS)
		return 0;
	return (uint32_t)h;
}

/* The stored Handoffs 1..k-1 in front of the carried ones; false (nothing changed) unless the
 * rows are exactly those. */
static bool prepend_stored(struct dispute *d, const PGresult *res, uint32_t k)
{
	int rows = PQntuples(res);
	if (rows != (int)k - 1)
		return false;
	MpSigned **all = calloc((size_t)rows + d->n_custody + 1, sizeof(*all));
	if (!all)
		return false;
	bool ok = true;
	for (int i = 0; ok && i < rows; i++) {
		size_t len = 0;
		uint8_t *bytes = db_get_blob(res, i, "stmt", &len);
		ok = bytes && db_get_i64(res, i, "hseq") == i + 1 &&
		     (all[i] = mp_stmt_decode(bytes, len)) != NULL;
		free(bytes);
	}
	if (!ok) {
		for (int i = 0; i < rows; i++)
			mp_stmt_free(all[i]);
		free(all);
		return false;
	}
	memcpy(all + rows, d->custody, d->n_custody * sizeof(*all));
	free(d->custody);
	d->custody = all;
	d->n_custody += (size_t)rows;
	return true;
}

static void on_stored(const PGresult *res, const char *error, void *arg)
{
	struct dispute *d = arg;
	uint32_t k = first_hseq(d);
	if (!res) {
		dispute_reply(d, MP_ST(INTERNAL), error ? error : "no result; retry");
		return;
	}
	if (prepend_stored(d, res, k))
		log_info("dispute %s: custody completed with the %u Handoffs the broker stored",
			 d->what, k - 1);
	evidence_start(d); /* else the chain as carried: its verification says what is missing */
}

void dispute_evidence_run(struct dispute *d)
{
	char why[160];
	if (!dispute_budget_admit(d->call->conn, why, sizeof(why))) {
		dispute_reply(d, MP_ST(LIMIT), why);
		return;
	}
	d->budgeted = true;
	uint32_t k = first_hseq(d);
	if (k <= 1 || k - 1 + d->n_custody > MP_MAX_HANDOFFS) {
		evidence_start(d);
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, d->channel_id, MP_ID_LEN);
	db_param_u64(&p, k);
	const char *refused = db_call(d->call->b->db, "dispute_handoffs", &p, on_stored, d);
	if (refused)
		dispute_reply(d, MP_ST(INTERNAL), refused);
}
