/* Following a redirect (docs/custody.md, "Following a redirect"): we opened at merchant M2 with
 * a Move from our epoch h, naming holder M1; M1 had already handed the channel to M3, so M2
 * answered HANDED_OFF with OpenAck.redirect, M1's answer to it. We step exactly one epoch, and
 * only on what we can check ourselves:
 *   - redirect.custody[h] is Handoff h+1 of this channel, signed by the key of the MerchantCert
 *     we hold for M1 (verified under the broker key when we stored it; for a holder we know
 *     only from the broker's Bind, M1's MerchantCert in the redirect, verified under the broker
 *     key), from M1, naming a merchant M3 other than M1;
 *   - its point lies in our current segment, its segments_head is that segment's head (no
 *     Transfer of our segment was capped before it), and its word is our own chain's word at
 *     that index (so the new epoch starts at a point of our chain: we never lose our place);
 *   - a MerchantCert of M3 under the broker key is among redirect.merchant_certs (its key
 *     checks M3's next Handoff, its endpoint is where M2 will ask).
 * Then M3 becomes the holder in epoch h+1, durably, before any Move from h+1 is signed. Every
 * failure is a clear error and changes nothing. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "stmt.h"
#include "store.h"
#include "wallet.h"

/* The Handoff ending our epoch, signed by the holder we know: NULL or why not. */
static const char *check_handoff(struct wallet *w, struct wchannel *ch, const MpSigned *holder_cert,
				 const MpSigned *s, uint8_t to_mid[MP_ID_LEN])
{
	uint8_t pk[MP_PK_LEN], ours[MP_HASH_LEN], head[MP_HASH_LEN];
	if (wallet_merchant_cert_check(w, holder_cert, ch->holder, pk))
		return "no MerchantCert of the holder we know";
	wallet_segment_head(ch, head);
	ProtobufCMessage *body = NULL;
	if (!s || mp_stmt_open(s, MP_STMT_HANDOFF, pk, &micropay__v1__handoff__descriptor, &body) !=
		      MP_ST(OK))
		return "the evidence is not a Handoff signed by the holder we know";
	Micropay__V1__Handoff *h = (Micropay__V1__Handoff *)body;
	const MpPoint *pt = h->point;
	const char *bad = NULL;
	if (!mp_bytes_len_is(h->channel_id, MP_ID_LEN) ||
	    memcmp(h->channel_id.data, ch->channel_id, MP_ID_LEN))
		bad = "the Handoff is for another channel";
	else if (h->hseq != ch->epoch + 1)
		bad = "the Handoff does not end our epoch";
	else if (!mp_bytes_len_is(h->from_mid, MP_ID_LEN) ||
		 memcmp(h->from_mid.data, ch->holder, MP_ID_LEN) ||
		 !mp_bytes_len_is(h->to_mid, MP_ID_LEN) ||
		 !memcmp(h->to_mid.data, ch->holder, MP_ID_LEN))
		bad = "the Handoff names other merchants";
	else if (!pt || pt->seg_seq != ch->seg_seq || pt->index < ch->seg_start ||
		 pt->index > ch->n || !mp_bytes_len_is(pt->w, MP_HASH_LEN))
		bad = "the Handoff's point is not in our segment";
	else if (!mp_bytes_len_is(h->segments_head, MP_HASH_LEN) ||
		 memcmp(h->segments_head.data, head, MP_HASH_LEN))
		bad = "the Handoff's segments_head is not our segment's head";
	else if (!wallet_channel_word(w, ch, pt->index, ours) ||
		 CRYPTO_memcmp(ours, pt->w.data, MP_HASH_LEN))
		bad = "the Handoff's point is not a word of our chain";
	else
		memcpy(to_mid, h->to_mid.data, MP_ID_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

const char *wallet_redirect_follow(struct wallet *w, struct wchannel *ch,
				   const Micropay__V1__HandoffResp *r)
{
	uint8_t to_mid[MP_ID_LEN];
	if (wallet_id_is_zero(ch->holder))
		return "a redirect for a channel not bound to a merchant";
	if (!r || r->n_custody <= ch->epoch)
		return "the redirect does not carry the Handoff ending our epoch";
	/* the holder's MerchantCert from its OpenAck, else (a holder we know only from the
	 * broker's Bind) the one the redirect carries, checked under the broker key */
	const MpSigned *holder_cert = ch->holder_cert;
	for (size_t i = 0; i < r->n_merchant_certs && !holder_cert; i++)
		if (!wallet_merchant_cert_check(w, r->merchant_certs[i], ch->holder, NULL))
			holder_cert = r->merchant_certs[i];
	const char *bad = check_handoff(w, ch, holder_cert, r->custody[ch->epoch], to_mid);
	if (bad)
		return bad;
	const MpSigned *cert = NULL;
	for (size_t i = 0; i < r->n_merchant_certs && !cert; i++)
		if (!wallet_merchant_cert_check(w, r->merchant_certs[i], to_mid, NULL))
			cert = r->merchant_certs[i];
	if (!cert)
		return "the redirect carries no MerchantCert of the new holder";
	MpSigned *copy = mp_stmt_copy(cert);
	if (!copy)
		return "out of memory";
	MpSigned *old_cert = ch->holder_cert;
	uint8_t old_holder[MP_ID_LEN];
	memcpy(old_holder, ch->holder, MP_ID_LEN);
	ch->holder_cert = copy;
	memcpy(ch->holder, to_mid, MP_ID_LEN);
	ch->epoch++;
	if (!wstore_channel_holder(w->store, ch)) { /* nothing changed: back to what we had */
		ch->holder_cert = old_cert;
		memcpy(ch->holder, old_holder, MP_ID_LEN);
		ch->epoch--;
		mp_stmt_free(copy);
		return "cannot store the new holder";
	}
	mp_stmt_free(old_cert);
	return NULL;
}
