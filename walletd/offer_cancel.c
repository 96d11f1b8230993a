/* Giving up an Offer that holds the channel (docs/goods.md "Cancelling an offer";
 * common/offer_cancel.h). A holder pays nothing past an unpaid Offer's after_index, and takes no
 * other Offer, until the Offer is paid or the buyer cancels it; its OpenAck names such an Offer
 * (held_by_offer). After the in-flight Pays were resent, a session whose OpenAck named one:
 *
 *   CHECK: an Offer signed by the holder's MerchantCert key, of this channel and our segment,
 *        made at the OpenAck's point --else--> the session fails (nothing signed)
 *   our key_offers row: PAYING, PAID, KEYED, DISPUTED, REFUNDED, TOO_LATE or KEY_BAD (a word
 *        at its pay_index may have left, or did), or the session resent an in-flight Pay
 *        naming its order_ref (a `pay` given the Offer's order_ref by hand, interrupted)
 *        --> not ours to give up: the session goes on
 *        (a resent Pay may have paid it; if not, the holder refuses new Pays and says why)
 *   OFFERED, CANCELLED or no row (never paid: the row is PAYING before the word leaves) -->
 *   SIGNING: OfferCancel under the owner key of our segment --> CANCELLED on record (never
 *        paid from here on) --> SENT: OfferCancelReq --OK / DUPLICATE_OK--> the session goes on
 *        --refusal, no answer--> the session fails with the holder's answer (the cancel stays
 *        on record and is sent again by the next session)
 *
 * The channel is busy for the whole session, so no buy of this wallet is under way on it: an
 * OFFERED row here is an abandoned purchase. */
#include <string.h>

#include "log.h"
#include "offer_cancel.h"
#include "session.h"
#include "stmt.h"
#include "store_key_offer.h"
#include "wallet.h"

/* Why the held Offer is not one the holder could hold our channel with; NULL if it is (its
 * fields in *o). */
static const char *check_held(struct pay_op *s, const MpSigned *held, struct mp_offer *o)
{
	const struct wchannel *ch = wallet_session_channel(s);
	uint8_t pk[MP_PK_LEN];
	const char *bad = ch->holder_cert
			      ? wallet_merchant_cert_check(wallet_session_wallet(s),
							   ch->holder_cert, ch->holder, pk)
			      : "the holder's MerchantCert is not known";
	if (bad || (bad = mp_offer_open(held, pk, o)))
		return bad;
	if (memcmp(o->channel_id, ch->channel_id, MP_ID_LEN) != 0 || o->seg_seq != ch->seg_seq)
		return "it is not of this channel and segment";
	if (o->after_index != wallet_session_point(s))
		return "it was not made at the holder's point";
	return NULL;
}

/* Whether our row says a word at the Offer's pay_index may have left (or did). */
static bool maybe_paid(enum wkey_offer_state st)
{
	return st != WKO_OFFERED && st != WKO_CANCELLED;
}

static void on_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	(void)c;
	struct pay_op *s = arg;
	char text[300];
	if (!env)
		return; /* the session failed and says why */
	if (env->body_case != MP_BODY(OFFER_CANCEL_RESP) || !env->offer_cancel_resp->status) {
		wallet_session_fail(s, "unexpected answer to the OfferCancel; no payword sent");
		return;
	}
	const MpStatus *st = env->offer_cancel_resp->status;
	if (st->code != MP_ST(OK) && st->code != MP_ST(DUPLICATE_OK)) {
		wallet_status_text(st, text, sizeof(text));
		wallet_session_fail(s, "the holder refused our OfferCancel: %s; no payword sent",
				    text);
		return;
	}
	log_info("channel: the holder took our OfferCancel; going on");
	wallet_session_held_done(s);
}

/* Sign the cancel, put it on record, send it; false (the session failed) if it cannot. */
static bool send_cancel(struct pay_op *s, const MpSigned *held, const struct mp_offer *o,
			bool stored)
{
	struct wallet *w = wallet_session_wallet(s);
	const struct wchannel *ch = wallet_session_channel(s);
	struct mp_key owner;
	if (!wallet_owner_key(w, ch, &owner)) {
		wallet_session_fail(s, "cannot load the owner key to cancel the held Offer");
		return false;
	}
	MpSigned *cancel = mp_offer_cancel_sign(&owner, held, o);
	mp_key_free(&owner);
	if (!cancel || (stored && !wstore_key_offer_set(w->store, o->channel_id, o->order_ref,
							WKO_CANCELLED, NULL, 0))) {
		mp_stmt_free(cancel);
		wallet_session_fail(s, "cannot sign or record the OfferCancel; no payword sent");
		return false;
	}
	Micropay__V1__OfferCancelReq req = MICROPAY__V1__OFFER_CANCEL_REQ__INIT;
	req.cancel = cancel;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(OFFER_CANCEL_REQ);
	env.offer_cancel_req = &req;
	bool sent = wallet_session_call(s, &env, on_answer, "OfferCancelReq");
	mp_stmt_free(cancel);
	if (!sent)
		wallet_session_fail(s, "cannot send the OfferCancel; no payword sent");
	return sent;
}

void wallet_session_cancel_held(struct pay_op *s, const MpSigned *held)
{
	struct wallet *w = wallet_session_wallet(s);
	struct mp_offer o;
	const char *bad = check_held(s, held, &o);
	if (bad) {
		wallet_session_fail(s,
				    "the holder says an Offer holds the channel, but %s; no "
				    "payword sent",
				    bad);
		return;
	}
	enum wkey_offer_state state = WKO_OFFERED;
	int stored = wstore_key_offer_state(w->store, o.channel_id, o.order_ref, &state);
	if (stored < 0) {
		wallet_session_fail(s, "cannot read our record of the held Offer; no payword sent");
		return;
	}
	char ref[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o.order_ref, MP_ID_LEN, ref);
	if (maybe_paid(state)) {
		log_info("offer %s holds the channel and is %s here: not cancelled", ref,
			 wkey_offer_state_name(state));
		wallet_session_held_done(s);
		return;
	}
	if (wallet_session_resent_ref(s, o.order_ref, MP_ID_LEN)) {
		/* Its word may have left: PAYING, so the next buy asks for the key and the wallet
		 * disputes it after the deadline, as for any Offer it paid. */
		bool paying =
		    stored == 1 && wstore_key_offer_paying(w->store, o.channel_id, o.order_ref);
		log_info("offer %s: this session resent an in-flight Pay naming it (a `pay` with "
			 "its order_ref): not cancelled%s",
			 ref, paying ? "; now PAYING" : "");
		wallet_session_held_done(s);
		return;
	}
	log_info("offer %s (after_index %u, pay_index %u) holds the channel, never paid (%s): "
		 "cancelling it",
		 ref, o.after_index, o.pay_index,
		 stored ? wkey_offer_state_name(state) : "not stored");
	send_cancel(s, held, &o, stored == 1);
}

struct may_hold {
	const struct wchannel *ch;
	uint8_t holder_pk[MP_PK_LEN];
	bool found;
};

static void note_unsettled(void *arg, const struct wkey_offer *row)
{
	struct may_hold *h = arg;
	struct mp_offer o;
	if (h->found || memcmp(row->channel_id, h->ch->channel_id, MP_ID_LEN) != 0 ||
	    mp_offer_open(row->offer, h->holder_pk, &o))
		return;
	h->found = o.seg_seq == h->ch->seg_seq && o.after_index == h->ch->last;
}

bool wallet_offer_may_hold(struct wallet *w, const struct wchannel *ch)
{
	struct may_hold h = {.ch = ch};
	if (!ch->holder_cert ||
	    wallet_merchant_cert_check(w, ch->holder_cert, ch->holder, h.holder_pk))
		return false;
	if (!wstore_key_offer_each(w->store, false, WKO_OFFERED, note_unsettled, &h) ||
	    !wstore_key_offer_each(w->store, false, WKO_PAYING, note_unsettled, &h))
		return true; /* the store cannot tell: ask the holder */
	return h.found;
}
