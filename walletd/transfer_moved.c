/* transfer.send after the channel moved on while we were TRANSFERRING (docs/transfer.md, "Bound
 * while TRANSFERRING"): our stored Transfer names the epoch of a merchant that has handed the
 * channel on (another device of the customer bound it, moved it and paid there), so that
 * merchant refuses it and no later holder caps it.
 *
 *   TRANSFERRING(epoch e, stored Transfer T for e) --Open at the holder of e: HANDED_OFF-->
 *     TransferReq T --HANDED_OFF with a redirect (the Transfer is the owner's consent)-->
 *     Handoff e+1 checked (redirect.c: the holder's key, our segment and its head, a word of
 *     our chain, the new holder's MerchantCert), holder and epoch e+1 stored
 *     --> Open at the new holder (its endpoint from its MerchantCert) --> HANDED_OFF again:
 *     the same step (at most MAX_HANDOFFS, within TRANSFER_FOLLOW_TIMEOUT of the call)
 *     --> OpenAck in epoch h > e, its point in our segment and of our chain:
 *     T' = T with holder_epoch h and declared_last max(T's, the holder's last), signed and
 *     stored in T's place --> TransferReq T' --> Cap checked, bundle stored --> TRANSFERRED_OUT
 *   any refusal or failure: stays TRANSFERRING with what is stored (T, or T' once stored).
 *
 * Why T' may be signed (the decision, docs/transfer.md): T can never be capped validly. Only the
 * holder of epoch e could cap it (or the broker before a Bind, which signs no Cap after it);
 * that holder signed Handoff e+1 at a point of our segment whose segments_head is our segment's
 * head, so it capped no Transfer of our segment before it, and a Cap of T after it is
 * inconsistent with its own Handoff (protocol.md section 7: void for settlement). Nobody stored
 * T either (a refused Transfer is not stored), so T' reuses no party's conflict key, and T'
 * differs from T only in holder_epoch and declared_last: the same new segment for the same new
 * owner. The epoch only moves past T's while TRANSFERRING through verified Handoffs of our
 * segment (transfer_follow), so holder_epoch < our epoch is that proof. When the holder's point
 * is not in our segment (it capped a Transfer of our segment meanwhile), T goes as it is: the
 * holder answers with the stored pair or CONFLICT. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto_limits.h"
#include "stmt.h"
#include "store.h"
#include "transfer_send.h"

#define TRANSFER_FOLLOW_TIMEOUT 60 /* seconds from the transfer.send call to the last redirect */

void transfer_follow(struct pay_op *s, struct send_op *x, const Micropay__V1__TransferResp *r)
{
	struct wchannel *ch = x->ch;
	char text[400], endpoint[300], hex[MP_HEX_ID_LEN + 1];
	wallet_status_text(r->status, text, sizeof(text));
	const char *bad = NULL;
	if (++x->redirects > MP_MAX_HANDOFFS) {
		wallet_session_fail(s,
				    "Transfer refused: %s; more than %d redirects (still "
				    "TRANSFERRING)",
				    text, MP_MAX_HANDOFFS);
		return;
	}
	if (mp_monotonic_s() - x->started >= TRANSFER_FOLLOW_TIMEOUT) {
		wallet_session_fail(s,
				    "Transfer refused: %s; no holder reached within %d s (%u "
				    "redirects; still TRANSFERRING)",
				    text, TRANSFER_FOLLOW_TIMEOUT, x->redirects - 1);
		return;
	}
	if ((bad = wallet_redirect_follow(x->w, ch, r->redirect))) {
		log_warn("channel %s: TRANSFERRING: redirect not followed: %s", x->hex, bad);
		wallet_session_fail(s,
				    "Transfer refused: %s; redirect not followed: %s (still "
				    "TRANSFERRING)",
				    text, bad);
		return;
	}
	mp_hex_encode(ch->holder, MP_ID_LEN, hex);
	if (!wallet_holder_endpoint(x->w, ch, endpoint, sizeof(endpoint))) {
		wallet_session_fail(s,
				    "the new holder m-%s has no readable MerchantCert (still "
				    "TRANSFERRING)",
				    hex);
		return;
	}
	log_info("channel %s: TRANSFERRING: handed on to m-%s (epoch %u) at %s; following", x->hex,
		 hex, ch->epoch, endpoint);
	struct mp_admin_req *req = NULL;
	x = wallet_session_handover(s, &req);
	transfer_send_at_holder(req, x, endpoint);
}

/* T for the holder's epoch and last (T's other fields unchanged), signed by our owner key. */
static MpSigned *resign(struct send_op *x, Micropay__V1__Transfer *t)
{
	struct wchannel *ch = x->ch;
	t->holder_epoch = ch->epoch;
	if (t->declared_last < ch->last)
		t->declared_last = ch->last;
	struct mp_key owner = {0};
	if (!wallet_owner_key(x->w, ch, &owner))
		return NULL;
	MpSigned *stmt = mp_stmt_sign(&owner, MP_STMT_TRANSFER, &t->base);
	mp_key_free(&owner);
	return stmt;
}

bool transfer_current(struct pay_op *s, struct send_op *x)
{
	struct wchannel *ch = x->ch;
	Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)mp_strict_unpack(
	    &micropay__v1__transfer__descriptor, x->transfer->body.data, x->transfer->body.len);
	if (!t) {
		wallet_session_fail(s, "our stored Transfer is unreadable (still TRANSFERRING)");
		return false;
	}
	uint32_t was = t->holder_epoch;
	if (was >= ch->epoch || !wallet_session_in_segment(s)) {
		protobuf_c_message_free_unpacked(&t->base, NULL);
		if (was <= ch->epoch)
			return true; /* the stored bytes, verbatim */
		wallet_session_fail(s, "our stored Transfer names epoch %u, after the holder's %u",
				    was, ch->epoch);
		return false;
	}
	MpSigned *fresh = resign(x, t);
	uint32_t declared = t->declared_last;
	protobuf_c_message_free_unpacked(&t->base, NULL);
	int stored =
	    fresh ? wstore_xfer_resign(x->w->store, ch->channel_id, x->transfer, fresh) : -1;
	if (stored != 1) {
		mp_stmt_free(fresh);
		wallet_session_fail(s,
				    "cannot %s the Transfer for epoch %u (still TRANSFERRING; "
				    "retry)",
				    stored == 0 ? "replace (the stored one changed)"
						: "re-sign and store",
				    ch->epoch);
		return false;
	}
	mp_stmt_free(x->transfer);
	x->transfer = fresh;
	log_info("channel %s: TRANSFERRING: the Transfer for epoch %u can no longer be capped; "
		 "re-signed for epoch %u, declared_last %u",
		 x->hex, was, ch->epoch, declared);
	return true;
}
