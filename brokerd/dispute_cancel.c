/* A dispute answered with the buyer's OfferCancel (docs/disputes.md "Cancelling an offer";
 * common/offer_cancel.h): the merchant shows that the buyer gave the disputed Offer up before
 * paying it, so the Dispute's word paid other orders and no key is owed.
 *
 *   DisputeKeyReq{cancel} (dispute_key.c: lengths, the peer names merchant_id)
 *      v
 *   mp_dispute_stmt (db): the stored Dispute of this merchant --none--> UNKNOWN_CHANNEL
 *      v   its signer key (the owner key of the Offer's segment, checked when it was taken)
 *      |   and its Offer's fields
 *   SIGNATURE [worker pool]: the cancel under that key --(queue full)--> LIMIT
 *      | --(type, signer, signature)--> BAD_SIG; --(body)--> MALFORMED
 *      v   its fields name the Offer (merchant, channel, segment, order_ref, stmt_hash)
 *      |   --else--> MALFORMED
 *   mp_dispute_cancel (db, under the dispute's row lock) --> OK CANCELLED (nothing refunded)
 *      / DUPLICATE_OK (cancelled before) / CONFLICT (key released, or proven) / TOO_LATE
 *      (refunded, or past answer_by) */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispute.h"
#include "log.h"
#include "offer_cancel.h"
#include "stmt.h"
#include "verify_job.h"

struct cancel_call {
	struct key_call *k;
	MpSigned *cancel; /* our copy: the worker reads it until done */
	uint8_t merchant_id[MP_ID_LEN], channel_id[MP_ID_LEN], order_ref[MP_ID_LEN];
	Micropay__V1__Dispute *dispute; /* the stored Dispute's body: its Offer */
	struct mp_offer offer;		/* the Offer's fields the cancel must name */
};

static void finish(struct cancel_call *cc, MpCode code, const char *detail,
		   Micropay__V1__DisputeState state)
{
	dispute_key_reply(cc->k, code, detail, state);
	mp_stmt_free(cc->cancel);
	if (cc->dispute)
		protobuf_c_message_free_unpacked(&cc->dispute->base, NULL);
	free(cc);
}

static void on_cancelled(const PGresult *res, const char *error, void *arg)
{
	struct cancel_call *cc = arg;
	if (!res || PQntuples(res) != 1) {
		finish(cc, MP_ST(INTERNAL), error ? error : "unexpected database result; retry",
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	finish(cc, (MpCode)db_get_i64(res, 0, "status"), db_get_text(res, 0, "detail"),
	       dispute_state_of(db_get_text(res, 0, "state")));
}

static void on_verified(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct cancel_call *cc = arg;
	if (code != MP_ST(OK)) {
		finish(cc, code,
		       code == MP_ST(BAD_SIG)
			   ? "cancel: not an OfferCancel signed by the Dispute's signer (the owner "
			     "key of the Offer's segment)"
		       : code == MP_ST(INTERNAL) ? "stopping; retry"
						 : "cancel: malformed OfferCancel body",
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	const char *bad = mp_offer_cancel_names((const Micropay__V1__OfferCancel *)body,
						cc->dispute->offer, &cc->offer);
	protobuf_c_message_free_unpacked(body, NULL);
	if (bad) {
		finish(cc, MP_ST(MALFORMED), bad, MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(cc->cancel, &len);
	struct db_params p = {0};
	db_param_bytes(&p, cc->merchant_id, MP_ID_LEN);
	db_param_bytes(&p, cc->channel_id, MP_ID_LEN);
	db_param_bytes(&p, cc->order_ref, MP_ID_LEN);
	db_param_bytes(&p, bytes, len);
	db_param_u64(&p, broker_now(cc->k->call->b));
	const char *refused =
	    bytes ? db_call(cc->k->call->b->db, "dispute_cancel", &p, on_cancelled, cc)
		  : "out of memory; retry";
	free(bytes);
	if (refused)
		finish(cc, MP_ST(INTERNAL), refused, MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
}

/* The stored Dispute's body and its Offer's fields into cc; false if it does not parse (it was
 * parsed strictly when it was taken: only a damaged row fails). */
static bool take_dispute(struct cancel_call *cc, const MpSigned *stmt)
{
	cc->dispute = (Micropay__V1__Dispute *)mp_strict_unpack(&micropay__v1__dispute__descriptor,
								stmt->body.data, stmt->body.len);
	if (!cc->dispute || !cc->dispute->offer)
		return false;
	const MpSigned *o = cc->dispute->offer;
	Micropay__V1__Offer *ob = (Micropay__V1__Offer *)mp_strict_unpack(
	    &micropay__v1__offer__descriptor, o->body.data, o->body.len);
	bool ok = ob && mp_bytes_len_is(ob->merchant_id, MP_ID_LEN) &&
		  mp_bytes_len_is(ob->channel_id, MP_ID_LEN) &&
		  mp_bytes_len_is(ob->order_ref, MP_ID_LEN);
	if (ok) {
		memcpy(cc->offer.merchant_id, ob->merchant_id.data, MP_ID_LEN);
		memcpy(cc->offer.channel_id, ob->channel_id.data, MP_ID_LEN);
		memcpy(cc->offer.order_ref, ob->order_ref.data, MP_ID_LEN);
		cc->offer.seg_seq = ob->seg_seq;
	}
	if (ob)
		protobuf_c_message_free_unpacked(&ob->base, NULL);
	return ok;
}

static void on_stmt(const PGresult *res, const char *error, void *arg)
{
	struct cancel_call *cc = arg;
	if (!res) {
		finish(cc, MP_ST(INTERNAL), error ? error : "no result; retry",
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	if (PQntuples(res) != 1) {
		finish(cc, MP_ST(UNKNOWN_CHANNEL),
		       "no dispute of this merchant for that channel and order_ref",
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, 0, "stmt", &len);
	MpSigned *stmt = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	bool ok = stmt && mp_bytes_len_is(stmt->signer_pk, MP_PK_LEN) && take_dispute(cc, stmt);
	uint8_t signer[MP_PK_LEN];
	if (ok)
		memcpy(signer, stmt->signer_pk.data, MP_PK_LEN);
	mp_stmt_free(stmt);
	if (!ok) {
		log_err("dispute %s: the stored Dispute does not parse", cc->k->mid);
		finish(cc, MP_ST(INTERNAL), "the stored Dispute cannot be read",
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	struct broker *b = cc->k->call->b;
	if (!broker_verify_submit(b, cc->cancel, MP_STMT_OFFER_CANCEL, signer,
				  &micropay__v1__offer_cancel__descriptor, on_verified, cc))
		finish(cc, MP_ST(LIMIT), BROKER_BUSY_VERIFYING,
		       MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
}

void dispute_cancel_run(struct key_call *k, const Micropay__V1__DisputeKeyReq *req)
{
	struct cancel_call *cc = calloc(1, sizeof(*cc));
	if (!cc || !(cc->cancel = mp_stmt_copy(req->cancel))) {
		free(cc);
		dispute_key_reply(k, MP_ST(INTERNAL), "out of memory; retry",
				  MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
		return;
	}
	cc->k = k;
	memcpy(cc->merchant_id, req->merchant_id.data, MP_ID_LEN);
	memcpy(cc->channel_id, req->channel_id.data, MP_ID_LEN);
	memcpy(cc->order_ref, req->order_ref.data, MP_ID_LEN);
	struct db_params p = {0};
	db_param_bytes(&p, cc->merchant_id, MP_ID_LEN);
	db_param_bytes(&p, cc->channel_id, MP_ID_LEN);
	db_param_bytes(&p, cc->order_ref, MP_ID_LEN);
	const char *refused = db_call(k->call->b->db, "dispute_stmt", &p, on_stmt, cc);
	if (refused)
		finish(cc, MP_ST(INTERNAL), refused, MICROPAY__V1__DISPUTE_STATE__DISPUTE_NONE);
}
