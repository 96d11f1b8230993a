/* A proven BadKeyProof recorded on its dispute (docs/disputes.md "A key that does not open";
 * migration 0031): the proof was checked against the verified Offer on the worker pool
 * (dispute.c), the dispute is stored (opened by this request or an earlier one with the same
 * statement), and mp_dispute_prove, in one transaction under the channel's row lock, makes it
 * OPEN with answer_by = now, so the next sweep refunds it by the rules of an unanswered
 * dispute. The answer is the function's row. */
#include <stdlib.h>

#include "db.h"
#include "dispute.h"

static void on_proven(const PGresult *res, const char *error, void *arg)
{
	dispute_reply_row(arg, res, error);
}

void dispute_prove(struct dispute *d)
{
	struct broker *b = d->call->b;
	struct db_params p = {0};
	db_param_bytes(&p, d->channel_id, MP_ID_LEN);
	db_param_bytes(&p, d->offer.order_ref, MP_ID_LEN);
	db_param_bytes(&p, d->stmt_hash, MP_HASH_LEN);
	db_param_bytes(&p, d->proof, d->proof_len);
	db_param_u64(&p, d->offer.deadline);
	db_param_u64(&p, b->cfg.dispute_window);
	db_param_u64(&p, broker_now(b));
	const char *refused = db_call(b->db, "dispute_prove", &p, on_proven, d);
	if (refused)
		dispute_reply(d, MP_ST(INTERNAL), refused);
}
