/* OfferCancelReq (docs/disputes.md "Cancelling an offer"; common/offer_cancel.h): the buyer
 * gives up an offer it never paid. The channel then pays past the offer's after_index again,
 * and a dispute of the offer is answered with the cancel (dispute_answer.c).
 *
 *   OfferCancelReq --cancel missing, its body not a strict OfferCancel, ids or hash of the
 *        wrong length--> MALFORMED;  --naming another merchant--> UNKNOWN_ITEM
 *        the channel unknown here --> UNKNOWN_CHANNEL
 *        the offer (the channel's current one, or the store's row) unknown --> UNKNOWN_ITEM;
 *        the store cannot be read --> INTERNAL (retry)
 *        paid (also by a Pay still committing) --> CONFLICT;  cancelled before --> DUPLICATE_OK
 *        (TOO_EARLY while that cancel is committing)
 *        v
 *   VERIFYING [worker pool]: the signature under the owner key of the offer's segment
 *        --(queue full)--> LIMIT;  --(type, signer, signature)--> BAD_SIG
 *        v   its fields name the offer (merchant, channel, segment, order_ref, stmt_hash of
 *            the Offer) --else--> MALFORMED
 *        v   the offer looked up again: paid meanwhile --> CONFLICT; cancelled --> DUPLICATE_OK;
 *            the batch full --> LIMIT
 *   RECORDING: the current offer's cancel set in memory (from here no Pay pays it and the
 *        channel pays past its after_index again), the cancel queued (ENTRY_OFFER_CANCEL) into
 *        the offer's row --committed--> OK
 *
 * Batches commit in order, so a Pay past after_index accepted after the cancel is never
 * durable before it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "log.h"
#include "merchant.h"
#include "offer.h"
#include "offer_cancel.h"
#include "segments.h"
#include "sign_job.h"
#include "stmt.h"

struct cancel_job {
	struct merchant *m;
	struct mp_conn *conn; /* referenced */
	uint64_t request_id;
	MpSigned *cancel; /* owned: the worker reads it until done */
	uint8_t channel_id[MP_ID_LEN], order_ref[MP_ID_LEN];
};

static void reply(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail)
{
	Micropay__V1__OfferCancelResp resp = MICROPAY__V1__OFFER_CANCEL_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_CANCEL_RESP);
	env.offer_cancel_resp = &resp;
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK))
		log_info("%s: OfferCancel refused: %s: %s", mp_conn_peer(c), mp_code_name(code),
			 detail);
	merchant_send(c, request_id, &env);
}

static void job_free(struct cancel_job *j)
{
	mp_conn_unref(j->conn);
	mp_stmt_free(j->cancel);
	free(j);
}

static void job_reply(struct cancel_job *j, MpCode code, const char *detail)
{
	if (mp_conn_is_open(j->conn))
		reply(j->conn, j->request_id, code, detail);
	job_free(j);
}

/* Paid or cancelled already: the answer (CONFLICT, DUPLICATE_OK) in *code; else false. */
static bool settled(const struct offer *o, MpCode *code, char *why, size_t len)
{
	if (o->paid) {
		snprintf(why, len, "the offer was paid at index %u: it cannot be cancelled",
			 o->pay_index);
		*code = MP_ST(CONFLICT);
		return true;
	}
	if (o->cancel && !o->cancel_durable) {
		snprintf(why, len, "the offer's cancel is being recorded; retry");
		*code = MP_ST(TOO_EARLY);
		return true;
	}
	if (o->cancel) {
		snprintf(why, len, "the offer is cancelled");
		*code = MP_ST(DUPLICATE_OK);
		return true;
	}
	return false;
}

/* The Offer statement o was made as, and its fields, for the cancel's check. */
static const char *names_check(const struct merchant *m, const struct offer *o,
			       const Micropay__V1__OfferCancel *body)
{
	struct mp_offer fields = {.seg_seq = o->seg_seq};
	memcpy(fields.merchant_id, m->mid, MP_ID_LEN);
	memcpy(fields.channel_id, o->channel_id, MP_ID_LEN);
	memcpy(fields.order_ref, o->order_ref, MP_ID_LEN);
	MpSigned *offer = mp_stmt_decode(o->signed_offer, o->signed_len);
	if (!offer)
		return "the stored Offer cannot be read";
	const char *bad = mp_offer_cancel_names(body, offer, &fields);
	mp_stmt_free(offer);
	return bad;
}

/* The verified cancel into the offer's row (and the current offer in memory). */
static void record(struct cancel_job *j, struct offer *o)
{
	struct merchant *m = j->m;
	uint8_t *bytes = NULL;
	size_t len = 0;
	struct channel *ch = channel_find(&m->channels, j->channel_id);
	if (!batch_has_room(m) || !(bytes = mp_stmt_encode(j->cancel, &len))) {
		free(bytes);
		offer_free(o);
		job_reply(j, MP_ST(LIMIT), "merchant busy: payments are being committed; retry");
		return;
	}
	o->cancel = bytes;
	o->cancel_len = len;
	struct offer *cur = ch ? ch->offer : NULL;
	if (offer_is_ref(cur, j->order_ref, OFFER_REF_LEN) && !(cur->cancel = malloc(len))) {
		offer_free(o);
		job_reply(j, MP_ST(LIMIT), "out of memory; retry");
		return;
	}
	if (offer_is_ref(cur, j->order_ref, OFFER_REF_LEN)) {
		memcpy(cur->cancel, bytes, len);
		cur->cancel_len = len;
	}
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(j->channel_id, MP_ID_LEN, hex);
	log_info("%s: offer of '%s' on channel %s (after_index %u) cancelled by the buyer",
		 mp_conn_peer(j->conn), o->item.id, hex, o->after_index);
	m->stats.offers_cancelled++;
	struct batch_entry e = {.kind = ENTRY_OFFER_CANCEL,
				.ch = ch,
				.conn = j->conn,
				.request_id = j->request_id,
				.offer_row = o};
	memcpy(e.channel_id, j->channel_id, MP_ID_LEN);
	batch_add(m, &e);
	job_free(j);
}

static void on_verified(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct cancel_job *j = arg;
	char why[200];
	if (code != MP_ST(OK)) {
		job_reply(j, code,
			  code == MP_ST(BAD_SIG)
			      ? "not an OfferCancel signed by the owner key of the offer's segment"
			  : code == MP_ST(INTERNAL) ? "stopping; retry"
						    : "malformed OfferCancel body");
		return;
	}
	struct offer *o = NULL;
	int found = offer_lookup(j->m, j->channel_id, j->order_ref, &o);
	const char *bad = found < 0 ? "cannot read the offer from the store; retry"
			  : found == 0
			      ? "no such offer"
			      : names_check(j->m, o, (const Micropay__V1__OfferCancel *)body);
	protobuf_c_message_free_unpacked(body, NULL);
	if (bad) {
		code = found < 0 ? MP_ST(INTERNAL) : o ? MP_ST(MALFORMED) : MP_ST(UNKNOWN_ITEM);
		offer_free(o);
		job_reply(j, code, bad);
		return;
	}
	if (settled(o, &code, why, sizeof(why))) {
		offer_free(o);
		job_reply(j, code, why);
		return;
	}
	record(j, o);
}

/* The cancel's body, strictly parsed, naming ids of the right lengths; NULL if not. */
static Micropay__V1__OfferCancel *peek(const MpSigned *cancel)
{
	if (!cancel || cancel->type != MP_STMT_OFFER_CANCEL)
		return NULL;
	Micropay__V1__OfferCancel *b = (Micropay__V1__OfferCancel *)mp_strict_unpack(
	    &micropay__v1__offer_cancel__descriptor, cancel->body.data, cancel->body.len);
	if (b && (!mp_bytes_len_is(b->merchant_id, MP_ID_LEN) ||
		  !mp_bytes_len_is(b->channel_id, MP_ID_LEN) ||
		  !mp_bytes_len_is(b->order_ref, OFFER_REF_LEN) ||
		  !mp_bytes_len_is(b->offer_hash, MP_HASH_LEN))) {
		protobuf_c_message_free_unpacked(&b->base, NULL);
		return NULL;
	}
	return b;
}

/* The offer and the key its cancel must be signed by; false (answered) if there is none. */
static bool find_offer(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		       const Micropay__V1__OfferCancel *b, uint8_t owner[MP_PK_LEN])
{
	char why[200];
	MpCode code;
	const struct channel *ch = channel_find(&m->channels, b->channel_id.data);
	struct offer *o = NULL;
	int found = ch ? offer_lookup(m, b->channel_id.data, b->order_ref.data, &o) : 0;
	if (!ch || ch->state == CHANNEL_UNKNOWN) {
		reply(c, request_id, MP_ST(UNKNOWN_CHANNEL), "no such channel here");
	} else if (found < 0) {
		reply(c, request_id, MP_ST(INTERNAL),
		      "cannot read the offer from the store; retry");
	} else if (!o || o->seg_seq > ch->seg_seq) {
		reply(c, request_id, MP_ST(UNKNOWN_ITEM), "no such offer on this channel");
	} else if (settled(o, &code, why, sizeof(why))) {
		reply(c, request_id, code, why);
	} else {
		memcpy(owner, channel_segment_owner(ch, o->seg_seq), MP_PK_LEN);
		offer_free(o);
		return true;
	}
	offer_free(o);
	return false;
}

void handle_offer_cancel(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const MpSigned *cancel = env->offer_cancel_req->cancel;
	Micropay__V1__OfferCancel *b = peek(cancel);
	uint8_t owner[MP_PK_LEN];
	if (!b) {
		reply(c, env->request_id, MP_ST(MALFORMED),
		      "an OfferCancel (statement 21) with ids of 16 bytes and offer_hash of 32");
		return;
	}
	bool ours = !memcmp(b->merchant_id.data, m->mid, MP_ID_LEN);
	if (!ours)
		reply(c, env->request_id, MP_ST(UNKNOWN_ITEM), "the cancel names another merchant");
	if (!ours || !find_offer(m, c, env->request_id, b, owner)) {
		protobuf_c_message_free_unpacked(&b->base, NULL);
		return;
	}
	struct cancel_job *j = calloc(1, sizeof(*j));
	if (j && !(j->cancel = mp_stmt_copy(cancel))) {
		free(j);
		j = NULL;
	}
	if (j) {
		*j = (struct cancel_job){
		    .m = m, .conn = c, .request_id = env->request_id, .cancel = j->cancel};
		memcpy(j->channel_id, b->channel_id.data, MP_ID_LEN);
		memcpy(j->order_ref, b->order_ref.data, OFFER_REF_LEN);
		mp_conn_ref(c);
	}
	protobuf_c_message_free_unpacked(&b->base, NULL);
	if (!j) {
		reply(c, env->request_id, MP_ST(LIMIT), "out of memory; retry");
		return;
	}
	if (!mp_verify_job_submit(m->workers, j->cancel, MP_STMT_OFFER_CANCEL, owner,
				  &micropay__v1__offer_cancel__descriptor, on_verified, j))
		job_reply(j, MP_ST(LIMIT), "merchant busy: worker queue full; retry");
}

void offer_cancel_acknowledge(struct merchant *m, struct batch_entry *e)
{
	(void)m;
	if (mp_conn_is_open(e->conn))
		reply(e->conn, e->request_id, MP_ST(OK), "");
}
