/* Disputes of key-release purchases (docs/disputes.md "The wallet"): an offer the wallet paid
 * (PAID in key_offers) whose key did not come by the Offer's deadline is disputed at the
 * broker with the Dispute statement (the Offer, the word at pay_index, this wallet's account
 * as payout), signed by the owner key of the Offer's segment. The statement is deterministic
 * (Ed25519, the same fields), so asking again sends the same bytes and learns the dispute's
 * state; the broker keys it by (channel_id, order_ref).
 *
 *   PAID --deadline passed: dispute (admin, or the check every [wallet]
 *     dispute_check_interval)--> DisputeReq --OPEN--> DISPUTED (answer_by shown)
 *   DISPUTED --asked again--> OPEN: unchanged
 *                         --KEY_RELEASED: the key checked against key_hash--> KEYED, OUT.sealed
 *                           opened into OUT (buy_unseal.c)
 *                         --REFUNDED--> REFUNDED (the amount paid to the payout account)
 *                         --CANCELLED (the merchant showed an OfferCancel of ours)--> CANCELLED:
 *                           final (this wallet signs one only for an offer it never paid)
 *   KEY_BAD (the key does not open a chunk, buy_unseal.h) --deadline passed: the same dispute
 *     with the stored BadKeyProof--> DISPUTED (the broker answers OPEN, due at once) -->
 *     REFUNDED after its next sweep; the proof goes with every later ask
 *   KEY_BAD --the broker refuses the proof (CONFLICT: the key opens the chunk; MALFORMED: the
 *     chunk is not the Offer's, the local copy damaged after it was checked)--> PROOF_REFUSED:
 *     final, neither the check nor `dispute` asks again (the answer says why)
 *   PAYING, PAID or KEY_BAD --TOO_LATE (past the Offer's deadline + T_dispute, or redeem_until)-->
 *     TOO_LATE: final, neither the check nor `dispute` asks again (the answer says why)
 *   any --TOO_EARLY, refused, unreachable--> unchanged (the answer says why) */
#include <event2/event.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "buy_unseal.h"
#include "log.h"
#include "offer.h"
#include "stmt.h"
#include "store_key_offer.h"
#include "wallet.h"

struct dispute_op {
	struct wallet *w;
	struct mp_admin_req *req; /* NULL: the wallet's own check */
	struct wkey_offer o;	  /* as stored when sent */
	struct mp_offer offer;
	json_t *answer; /* kept while the file is unsealed */
};

/* The wallet's own check sends at most this many disputes a round, and starts no round while
 * one of its disputes is still on its way (every request is a TLS connection to the broker). */
#define DISPUTE_CHECK_MAX 16

static void op_free(struct dispute_op *op)
{
	if (!op->req)
		op->w->disputes_in_flight--;
	wkey_offer_clear(&op->o);
	json_decref(op->answer);
	free(op);
}

static void op_fail(struct dispute_op *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void op_fail(struct dispute_op *op, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(op->o.order_ref, MP_ID_LEN, hex);
	if (op->req)
		mp_admin_fail(op->req, MP_ADMIN_FAILED, "dispute: %s", msg);
	else
		log_warn("dispute of offer %s: %s", hex, msg);
	op_free(op);
}

static void op_reply(struct dispute_op *op, json_t *answer)
{
	if (op->req)
		mp_admin_reply(op->req, answer);
	else
		json_decref(answer);
	op_free(op);
}

static json_t *answer_of(const struct dispute_op *op, const char *state, uint64_t answer_by,
			 uint64_t refunded)
{
	char ch[MP_HEX_ID_LEN + 1], ref[MP_HEX_ID_LEN + 1];
	mp_hex_encode(op->o.channel_id, MP_ID_LEN, ch);
	mp_hex_encode(op->o.order_ref, MP_ID_LEN, ref);
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "channel_id", ch, "order_ref",
			 ref, "item", op->o.item, "state", state, "answer_by",
			 (json_int_t)answer_by, "refunded", (json_int_t)refunded, "pay_index",
			 (json_int_t)op->offer.pay_index, "price", (json_int_t)op->offer.price,
			 "out", op->o.out);
}

static void on_unsealed(void *arg, const char *err, const uint8_t *proof, size_t proof_len)
{
	struct dispute_op *op = arg;
	if (proof) {
		bool kept = wstore_key_offer_bad_key(op->w->store, op->o.channel_id,
						     op->o.order_ref, proof, proof_len);
		op_fail(op, "the key the broker relayed does not open the goods (%s): %s", err,
			kept ? "the proof is stored (KEY_BAD) and sent with the next dispute"
			     : "the proof cannot be stored");
		return;
	}
	if (err) {
		op_fail(op, "the broker relayed the key (stored), but %s", err);
		return;
	}
	log_info("dispute: the key of offer for %s came through the broker; %s written", op->o.item,
		 op->o.out);
	json_t *a = op->answer;
	op->answer = NULL;
	op_reply(op, a);
}

/* KEY_RELEASED: the key checked against the Offer, stored, the file opened. */
static void take_key(struct dispute_op *op, const ProtobufCBinaryData *key)
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	if (key->len != MP_SEAL_KEY_LEN) {
		op_fail(op, "the broker's answer KEY_RELEASED carries no 32-byte key");
		return;
	}
	SHA256(key->data, key->len, h);
	if (CRYPTO_memcmp(h, op->offer.key_hash, sizeof(h))) {
		op_fail(op, "the key the broker relayed is not the Offer's (SHA-256 differs)");
		return;
	}
	if (!wstore_key_offer_set(op->w->store, op->o.channel_id, op->o.order_ref, WKO_KEYED,
				  key->data, 0)) {
		op_fail(op, "the key cannot be stored");
		return;
	}
	struct buy_unseal_spec spec = {.overwrite = false, /* OUT is the user's if it exists */
				       .size = op->o.size,
				       .chunk_size = op->o.chunk_size,
				       .chunks = op->o.chunks};
	snprintf(spec.out, sizeof(spec.out), "%s", op->o.out);
	memcpy(spec.key, key->data, MP_SEAL_KEY_LEN);
	op->answer = answer_of(op, "KEY_RELEASED", 0, 0);
	if (!buy_unseal(op->w->workers, &spec, on_unsealed, op))
		op_fail(op, "the key is stored but the decryption cannot be queued");
}

/* A refusal that asking again cannot change, kept as final state `final`: TOO_LATE (the
 * window to dispute has closed at broker time) or PROOF_REFUSED (the broker refused the stored
 * BadKeyProof; the Dispute and the proof are the same bytes every time). The offer is never
 * disputed again (the paid units are lost to the buyer). */
static void refused_for_good(struct dispute_op *op, enum wkey_offer_state final, const char *text)
{
	if (!wstore_key_offer_set(op->w->store, op->o.channel_id, op->o.order_ref, final, NULL,
				  0)) {
		op_fail(op, "the broker refused it (%s), and the state cannot be stored", text);
		return;
	}
	op_fail(op, "the broker refused it: %s; the offer is now %s and is not disputed again",
		text, wkey_offer_state_name(final));
}

static void on_dispute_reply(void *arg, const MpEnvelope *reply, const char *error)
{
	struct dispute_op *op = arg;
	char text[400];
	if (!reply) {
		op_fail(op, "the broker: %s", error);
		return;
	}
	if (reply->body_case != MP_BODY(DISPUTE_RESP) || !reply->dispute_resp->status) {
		op_fail(op, "unexpected answer from the broker");
		return;
	}
	const Micropay__V1__DisputeResp *r = reply->dispute_resp;
	MpCode code = r->status->code;
	wallet_status_text(r->status, text, sizeof(text));
	if (code == MP_ST(TOO_LATE) && op->o.state != WKO_DISPUTED) {
		refused_for_good(op, WKO_TOO_LATE, text);
		return;
	}
	if (op->o.state == WKO_KEY_BAD && (code == MP_ST(CONFLICT) || code == MP_ST(MALFORMED))) {
		refused_for_good(op, WKO_PROOF_REFUSED, text);
		return;
	}
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) {
		op_fail(op, "the broker refused it: %s", text);
		return;
	}
	enum wkey_offer_state next =
	    r->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_REFUNDED	 ? WKO_REFUNDED
	    : r->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_CANCELLED ? WKO_CANCELLED
									 : WKO_DISPUTED;
	if (r->state == MICROPAY__V1__DISPUTE_STATE__DISPUTE_KEY_RELEASED) {
		take_key(op, &r->key);
		return;
	}
	if (r->state != MICROPAY__V1__DISPUTE_STATE__DISPUTE_OPEN && next == WKO_DISPUTED) {
		op_fail(op, "the broker answered %s without a dispute state", text);
		return;
	}
	if (!wstore_key_offer_set(op->w->store, op->o.channel_id, op->o.order_ref, next, NULL,
				  r->refunded)) {
		op_fail(op, "the broker answered, but the state cannot be stored");
		return;
	}
	op_reply(op, answer_of(op, wkey_offer_state_name(next), r->answer_by, r->refunded));
}

/* The DisputeReq's packed bytes (malloc'd), signed by the owner key of the Offer's segment. */
static uint8_t *build_request(struct dispute_op *op, struct wchannel *ch, size_t *len,
			      const char **why)
{
	struct mp_key owner;
	uint8_t w_pay[MP_HASH_LEN];
	*why = "the channel has moved to another segment since the offer";
	if (ch->seg_seq != op->offer.seg_seq)
		return NULL;
	*why = "cannot compute the word at pay_index or load the owner key";
	if (!wallet_channel_word(op->w, ch, op->offer.pay_index, w_pay) ||
	    !wallet_owner_key(op->w, ch, &owner))
		return NULL;
	Micropay__V1__Dispute d = MICROPAY__V1__DISPUTE__INIT;
	d.offer = op->o.offer;
	d.w_pay_index = (ProtobufCBinaryData){MP_HASH_LEN, w_pay};
	d.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, op->w->account_id};
	MpSigned *stmt = mp_stmt_sign(&owner, MP_STMT_DISPUTE, &d.base);
	mp_key_free(&owner);
	*why = "cannot sign the Dispute";
	if (!stmt)
		return NULL;
	Micropay__V1__DisputeReq rq = MICROPAY__V1__DISPUTE_REQ__INIT;
	MpSigned *custody[1] = {op->o.custody};
	rq.stmt = stmt;
	rq.custody = op->o.custody ? custody : NULL;
	rq.n_custody = op->o.custody ? 1 : 0;
	rq.segments = ch->segments;
	rq.n_segments = ch->n_segments;
	if (op->o.proof)
		rq.bad_key =
		    micropay__v1__bad_key_proof__unpack(NULL, op->o.proof_len, op->o.proof);
	*why = "the stored proof is unreadable";
	uint8_t *bytes = op->o.proof && !rq.bad_key ? NULL : mp_stmt_pack_body(&rq.base, len);
	if (rq.bad_key) {
		micropay__v1__bad_key_proof__free_unpacked(rq.bad_key, NULL);
		*why = "out of memory";
	} else if (!op->o.proof) {
		*why = "out of memory";
	}
	mp_stmt_free(stmt);
	return bytes;
}

/* Send the dispute of stored offer o (copied); req NULL: the wallet's own check. */
static void dispute_send(struct wallet *w, const struct wkey_offer *o, struct mp_admin_req *req)
{
	struct dispute_op *op = calloc(1, sizeof(*op));
	struct wchannel *ch = wallet_channel_find(w, o->channel_id);
	char err[300] = "out of memory";
	const char *why = "out of memory";
	if (!op) {
		if (req)
			mp_admin_fail(req, MP_ADMIN_INTERNAL, "dispute: out of memory");
		return;
	}
	*op = (struct dispute_op){.w = w, .req = req, .o = *o};
	if (!req)
		w->disputes_in_flight++;
	op->o.offer = mp_stmt_copy(o->offer);
	op->o.custody = o->custody ? mp_stmt_copy(o->custody) : NULL;
	op->o.proof = o->proof ? malloc(o->proof_len) : NULL;
	if (op->o.proof)
		memcpy(op->o.proof, o->proof, o->proof_len);
	if (!op->o.offer || (o->custody && !op->o.custody) || (o->proof && !op->o.proof)) {
		op_fail(op, "out of memory");
		return;
	}
	/* The Offer was checked under the holder's key when it was accepted; here only read. */
	ProtobufCMessage *body = mp_strict_unpack(&micropay__v1__offer__descriptor,
						  op->o.offer->body.data, op->o.offer->body.len);
	if (!body || !ch) {
		if (body)
			protobuf_c_message_free_unpacked(body, NULL);
		op_fail(op, "%s", ch ? "the stored Offer is unreadable" : "the channel is unknown");
		return;
	}
	const Micropay__V1__Offer *b = (const Micropay__V1__Offer *)body;
	op->offer.seg_seq = b->seg_seq;
	op->offer.after_index = b->after_index;
	op->offer.pay_index = b->pay_index;
	op->offer.price = b->price;
	op->offer.deadline = b->deadline;
	if (b->key_hash.len == MP_HASH_LEN)
		memcpy(op->offer.key_hash, b->key_hash.data, MP_HASH_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	size_t len = 0;
	uint8_t *bytes = build_request(op, ch, &len, &why);
	if (!bytes) {
		op_fail(op, "%s", why);
		return;
	}
	bool sent =
	    wallet_broker_send_dispute(w, bytes, len, on_dispute_reply, op, err, sizeof(err));
	free(bytes);
	if (!sent)
		op_fail(op, "%s", err);
}

void wallet_admin_dispute(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t ch[MP_ID_LEN], ref[MP_ID_LEN];
	if (!wallet_param_hex(req, params, "channel_id", ch, MP_ID_LEN, true, NULL) ||
	    !wallet_param_hex(req, params, "order_ref", ref, MP_ID_LEN, true, NULL))
		return;
	struct wkey_offer o;
	if (!wstore_key_offer_get(w->store, ch, ref, &o)) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "dispute: no such key-release offer in the store");
		return;
	}
	if (o.state != WKO_PAID && o.state != WKO_PAYING && o.state != WKO_DISPUTED &&
	    o.state != WKO_KEY_BAD) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "dispute: the offer is %s; only a PAYING, PAID, KEY_BAD or DISPUTED "
			      "offer is disputed",
			      wkey_offer_state_name(o.state));
	} else if (!w->registered) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "dispute: the wallet is not registered");
	} else {
		dispute_send(w, &o, req);
	}
	wkey_offer_clear(&o);
}

static void add_row(void *arg, const struct wkey_offer *o)
{
	char ch[MP_HEX_ID_LEN + 1], ref[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o->channel_id, MP_ID_LEN, ch);
	mp_hex_encode(o->order_ref, MP_ID_LEN, ref);
	json_array_append_new(arg, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "channel_id", ch,
					     "order_ref", ref, "item", o->item, "out", o->out,
					     "state", wkey_offer_state_name(o->state), "deadline",
					     (json_int_t)o->deadline, "size", (json_int_t)o->size,
					     "refunded", (json_int_t)o->refunded));
}

void wallet_admin_key_offers(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	json_t *rows = json_array();
	if (!rows || !wstore_key_offer_each(w->store, true, WKO_OFFERED, add_row, rows)) {
		json_decref(rows);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "key_offers: cannot read the store");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o}", "offers", rows));
}

/* ---- the wallet's own check ---- */

struct due {
	struct wallet *w;
	uint64_t now;
};

static void dispute_if_due(void *arg, const struct wkey_offer *o)
{
	struct due *d = arg;
	if (o->deadline <= d->now && d->w->disputes_in_flight < DISPUTE_CHECK_MAX)
		dispute_send(d->w, o, NULL);
}

static void on_dispute_check(evutil_socket_t fd, short what, void *arg)
{
	struct wallet *w = arg;
	if (w->stopping || !w->registered || w->disputes_in_flight)
		return;
	struct due d = {w, wallet_now(w)};
	wstore_key_offer_each(w->store, false, WKO_PAYING, dispute_if_due, &d);
	wstore_key_offer_each(w->store, false, WKO_PAID, dispute_if_due, &d);
	wstore_key_offer_each(w->store, false, WKO_DISPUTED, dispute_if_due, &d);
	wstore_key_offer_each(w->store, false, WKO_KEY_BAD, dispute_if_due, &d);
}

bool wallet_dispute_start(struct wallet *w)
{
	if (!w->cfg.dispute_check_interval)
		return true;
	w->dispute_timer = event_new(w->base, -1, EV_PERSIST, on_dispute_check, w);
	struct timeval tv = {.tv_sec = w->cfg.dispute_check_interval};
	if (!w->dispute_timer || event_add(w->dispute_timer, &tv) != 0) {
		log_err("dispute: cannot start the check timer");
		return false;
	}
	return true;
}

void wallet_dispute_stop(struct wallet *w)
{
	if (w->dispute_timer)
		event_free(w->dispute_timer);
	w->dispute_timer = NULL;
}
