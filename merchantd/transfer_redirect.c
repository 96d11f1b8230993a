/* A TransferReq at a merchant that handed the channel on (docs/transfer.md, "Bound while
 * TRANSFERRING"; protocol.md sections 3 and 9). Wallet A signed its Transfer for the epoch it
 * knew; the channel moved on (another device of the customer paid elsewhere), so A must learn
 * where it is. We answer HANDED_OFF with the latest Handoff we signed only to someone who shows
 * the owner's consent, as a HandoffReq must: a Transfer of our last segment signed by that
 * segment's owner key (verified before anything is revealed). The first case that applies:
 *   our Handoff is waiting for its commit              -> LIMIT (retry; never sent before)
 *   the Transfer is not for the segment after our last  -> HANDED_OFF, no statement
 *   not signed by our last segment's owner key (type, key, signature, strict parse) or for
 *   another channel                                    -> HANDED_OFF, no statement
 *   otherwise -> HANDED_OFF with TransferResp.redirect: Handoffs 1..h+1 (h our last epoch), the
 *   signers' MerchantCerts and that of the merchant Handoff h+1 names, the pairs, the Bind.
 * Nothing is stored and nothing is signed here: the Transfer stays the wallet's business. */
#include "transfer_redirect.h"

#include <string.h>

#include "custody_reply.h"
#include "log.h"
#include "stmt.h"

static void answer(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		   const char *detail, Micropay__V1__HandoffResp *redirect)
{
	Micropay__V1__TransferResp resp = MICROPAY__V1__TRANSFER_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	if (redirect) {
		st.evidence = redirect->handoff;
		resp.redirect = redirect;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_RESP);
	env.transfer_resp = &resp;
	merchant_send(c, request_id, &env);
}

/* The Transfer is the owner's consent for our last segment: NULL, or why not. */
static const char *owner_consent(const struct channel *ch, const MpSigned *transfer, uint32_t s)
{
	if (s != ch->seg_seq + 1)
		return "the Transfer's segment does not follow ours";
	ProtobufCMessage *body = NULL;
	if (mp_stmt_open(transfer, MP_STMT_TRANSFER, ch->owner_pk,
			 &micropay__v1__transfer__descriptor, &body) != MP_ST(OK))
		return "the Transfer is not signed by the segment's owner";
	const Micropay__V1__Transfer *t = (const Micropay__V1__Transfer *)body;
	bool ours = mp_bytes_len_is(t->channel_id, MP_ID_LEN) &&
		    !memcmp(t->channel_id.data, ch->id, MP_ID_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return ours ? NULL : "the Transfer is for another channel";
}

void transfer_redirect(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		       const struct channel *ch, const MpSigned *transfer, uint32_t s,
		       const char *hex)
{
	m->stats.transfer_refusals++;
	if (ch->handoff_pending || !ch->recorded) {
		log_info("%s: transfer of channel %s: our Handoff is being committed",
			 mp_conn_peer(c), hex);
		answer(m, c, request_id, MP_ST(LIMIT), "the Handoff is being committed; retry",
		       NULL);
		return;
	}
	const char *why = owner_consent(ch, transfer, s);
	if (why) {
		log_info("%s: transfer of channel %s refused: HANDED_OFF without a redirect (%s)",
			 mp_conn_peer(c), hex, why);
		answer(m, c, request_id, MP_ST(HANDED_OFF), "handed off to another merchant", NULL);
		return;
	}
	Micropay__V1__HandoffResp redirect = MICROPAY__V1__HANDOFF_RESP__INIT;
	if (!handoff_resp_load(m, ch, ch->hseq + 1, true, &redirect)) {
		answer(m, c, request_id, MP_ST(INTERNAL), "stored custody chain unreadable", NULL);
		return;
	}
	log_info("%s: transfer of channel %s refused: HANDED_OFF with Handoff %u as a redirect",
		 mp_conn_peer(c), hex, ch->hseq + 1);
	answer(m, c, request_id, MP_ST(HANDED_OFF), "handed off: the latest Handoff", &redirect);
	handoff_resp_clear(&redirect);
}
