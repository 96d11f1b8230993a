/* transfer.send of a channel no merchant holds yet (issued without holder0, never bound):
 * the TransferReq goes to the broker, which signs the Cap itself, in epoch 0 at index 0
 * (docs/transfer.md "Unbound channels"). Nothing was paid, so declared_last is 0.
 *
 *   ACTIVE (holder none, last 0, nothing in flight) --Transfer signed, stored--> TRANSFERRING
 *     --TransferReq to the broker--> OK / DUPLICATE_OK: the Cap checked (broker key,
 *     transfer_hash, hseq 0, point (seg, 0, our word at 0)), bundle stored --> TRANSFERRED_OUT
 *   TRANSFERRING --transfer.send with the same offer--> the stored Transfer sent again
 *   TRANSFERRING --NOT_HOLDER carrying the broker's Bind (another Open of this owner key bound
 *     the channel meanwhile)--> the Bind's merchant recorded as holder (epoch 0); with an
 *     `endpoint` parameter the same stored Transfer goes to it at once (transfer_send.c),
 *     else the answer asks for a retry with that merchant's endpoint (which does the same)
 *   any other refusal or lost answer: stays TRANSFERRING.
 * Why the same Transfer and never a new one (docs/transfer.md "Bound while TRANSFERRING"): a
 * retry sends the stored bytes (protocol.md section 5); the stored Transfer names
 * holder_epoch 0, which is the epoch of the merchant the Bind names, and declared_last 0, which
 * is all that can have been paid with our consent (none of our Pays are on record). */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stmt.h"
#include "store.h"
#include "transfer_send.h"

/* The broker's Cap of our Transfer t: NULL, or what is wrong. */
static const char *check_cap(struct send_op *x, const MpSigned *cap_stmt,
			     const Micropay__V1__Transfer *t)
{
	struct wchannel *ch = x->ch;
	ProtobufCMessage *body = NULL;
	if (!cap_stmt || mp_stmt_open(cap_stmt, MP_STMT_CAP, x->w->cfg.broker_pk,
				      &micropay__v1__cap__descriptor, &body) != MP_ST(OK))
		return "the answer carries no Cap signed by the broker";
	const Micropay__V1__Cap *cap = (const Micropay__V1__Cap *)body;
	uint8_t th[MP_HASH_LEN], ours[MP_HASH_LEN];
	mp_stmt_hash(x->transfer, th);
	const MpPoint *pt = cap->point;
	const char *bad = NULL;
	if (!mp_bytes_len_is(cap->channel_id, MP_ID_LEN) ||
	    memcmp(cap->channel_id.data, ch->channel_id, MP_ID_LEN))
		bad = "the Cap is for another channel";
	else if (cap->new_seg_seq != t->new_seg_seq)
		bad = "the Cap is for another segment";
	else if (!mp_bytes_len_is(cap->transfer_hash, MP_HASH_LEN) ||
		 memcmp(cap->transfer_hash.data, th, MP_HASH_LEN))
		bad = "the Cap does not name our Transfer (transfer_hash)";
	else if (cap->hseq != 0)
		bad = "the broker's Cap is not in epoch 0";
	else if (!pt || pt->seg_seq != ch->seg_seq || pt->index != 0 ||
		 !mp_bytes_len_is(pt->w, MP_HASH_LEN))
		bad = "the broker's Cap is not at index 0 of our segment";
	else if (!wallet_channel_word(x->w, ch, 0, ours) ||
		 CRYPTO_memcmp(ours, pt->w.data, MP_HASH_LEN))
		bad = "the Cap's w_cap does not match our chain";
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

/* TransferBundle{cert, pairs 1..s}: no custody, no holder (packed, malloc'd). */
static uint8_t *pack_bundle(struct send_op *x, MpSigned *cap, size_t *len)
{
	struct wchannel *ch = x->ch;
	size_t n_seg = ch->n_segments + 2;
	MpSigned **segs = calloc(n_seg, sizeof(*segs));
	uint8_t *buf = NULL;
	if (segs) {
		for (size_t i = 0; i < ch->n_segments; i++) /* none for segment 0 */
			segs[i] = ch->segments[i];
		segs[n_seg - 2] = x->transfer;
		segs[n_seg - 1] = cap;
		Micropay__V1__TransferBundle b = MICROPAY__V1__TRANSFER_BUNDLE__INIT;
		b.cert = ch->cert;
		b.n_segments = n_seg;
		b.segments = segs;
		*len = protobuf_c_message_get_packed_size(&b.base);
		if ((buf = malloc(*len)))
			protobuf_c_message_pack(&b.base, buf);
	}
	free(segs);
	return buf;
}

static void fail(struct send_op *x, const char *what, const char *detail)
{
	log_warn("channel %s: transfer through the broker: %s: %s; stays TRANSFERRING", x->hex,
		 what, detail);
	mp_admin_fail(x->req, MP_ADMIN_FAILED, "transfer.send: %s: %s (still TRANSFERRING; retry)",
		      what, detail);
}

static void capped(struct send_op *x, const Micropay__V1__TransferResp *r)
{
	Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)mp_strict_unpack(
	    &micropay__v1__transfer__descriptor, x->transfer->body.data, x->transfer->body.len);
	const char *bad = t ? check_cap(x, r->cap, t) : "our stored Transfer is unreadable";
	uint32_t seg_seq = t ? t->new_seg_seq : 0;
	if (t)
		protobuf_c_message_free_unpacked(&t->base, NULL);
	if (bad) {
		fail(x, "the broker's Cap is refused", bad);
		return;
	}
	size_t len = 0;
	uint8_t *bundle = pack_bundle(x, r->cap, &len);
	if (!bundle || !wstore_xfer_done(x->w->store, x->ch->channel_id, bundle, len)) {
		free(bundle);
		fail(x, "cannot store the bundle", "store");
		return;
	}
	x->ch->state = WCH_TRANSFERRED_OUT;
	log_info("channel %s: TRANSFERRED_OUT through the broker (segment %u from index 0)", x->hex,
		 seg_seq);
	transfer_reply_bundle(x->req, NULL, bundle, len, seg_seq);
	free(bundle);
}

/* The broker bound the channel before it got our Transfer: record the Bind's merchant as the
 * holder in epoch 0 and send it the same stored Transfer (now if we have its endpoint). Returns
 * x if it is still ours to free, NULL if the holder path took it. */
static struct send_op *bound_meanwhile(struct send_op *x, const MpSigned *bind, const char *text)
{
	uint8_t mid[MP_ID_LEN];
	char mhex[MP_HEX_ID_LEN + 1], detail[400];
	const char *bad = wallet_bind_check(x->w, x->ch, bind, mid);
	if (bad) {
		fail(x, "the broker refused the Transfer with an unusable Bind", bad);
		return x;
	}
	memcpy(x->ch->holder, mid, MP_ID_LEN);
	x->ch->epoch = 0;
	if (!wstore_channel_holder(x->w->store, x->ch)) {
		fail(x, "cannot store the merchant the broker bound the channel to", "store");
		return x;
	}
	mp_hex_encode(mid, MP_ID_LEN, mhex);
	log_info("channel %s: bound to m-%s while TRANSFERRING (%s); the same Transfer goes there",
		 x->hex, mhex, text);
	if (x->endpoint[0]) {
		struct mp_admin_req *req = x->req;
		char endpoint[sizeof(x->endpoint)];
		snprintf(endpoint, sizeof(endpoint), "%s", x->endpoint);
		transfer_send_at_holder(req, x, endpoint);
		return NULL;
	}
	snprintf(detail, sizeof(detail),
		 "the broker bound the channel to m-%s meanwhile; retry transfer.send with "
		 "endpoint=HOST:PORT of m-%s (the same Transfer goes there)",
		 mhex, mhex);
	fail(x, "bound meanwhile", detail);
	return x;
}

static void on_broker_answer(void *arg, const MpEnvelope *reply, const char *error)
{
	struct send_op *x = arg;
	char text[400];
	x->ch->busy = false;
	if (!reply) {
		fail(x, "the broker could not be asked", error ? error : "no answer");
	} else if (reply->body_case != MP_BODY(TRANSFER_RESP) || !reply->transfer_resp->status) {
		wallet_status_text(reply->body_case == MP_BODY(ERROR) ? reply->error : NULL, text,
				   sizeof(text));
		fail(x, "unexpected answer to TransferReq", text);
	} else {
		const Micropay__V1__TransferResp *r = reply->transfer_resp;
		MpCode code = r->status->code;
		wallet_status_text(r->status, text, sizeof(text));
		if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK))
			capped(x, r);
		else if (code == MP_ST(NOT_HOLDER) && r->status->evidence)
			x = bound_meanwhile(x, r->status->evidence, text);
		else
			fail(x, "the broker refused the Transfer", text);
	}
	if (x)
		send_op_free(x);
}

void transfer_send_unbound(struct mp_admin_req *req, struct send_op *x)
{
	struct wchannel *ch = x->ch;
	char err[300];
	x->req = req;
	if (ch->busy) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "transfer.send: a pay or transfer on this channel is in progress");
		send_op_free(x);
		return;
	}
	if (ch->state == WCH_ACTIVE) {
		if (ch->last != 0 || ch->sent != 0 || ch->inflight > 0 || ch->seg_start != 0) {
			mp_admin_fail(req, MP_ADMIN_FAILED,
				      "transfer.send: channel %s has no holder but Pays on record; "
				      "pay once at a merchant, then transfer",
				      x->hex);
			send_op_free(x);
			return;
		}
		if (!(x->transfer = transfer_sign(x)) ||
		    !wstore_xfer_begin(x->w->store, ch->channel_id, x->offer_bytes, x->offer_len,
				       x->transfer)) {
			mp_admin_fail(req, MP_ADMIN_INTERNAL,
				      "transfer.send: cannot sign and store the Transfer; nothing "
				      "sent");
			send_op_free(x);
			return;
		}
		ch->state = WCH_TRANSFERRING;
		log_info("channel %s: TRANSFERRING through the broker (segment %u, no holder yet)",
			 x->hex, ch->seg_seq + 1);
	}
	ch->busy = true;
	if (!wallet_broker_send(x->w, MP_BODY(TRANSFER_REQ), x->transfer, on_broker_answer, x, err,
				sizeof(err))) {
		ch->busy = false;
		mp_admin_fail(req, MP_ADMIN_FAILED, "transfer.send: %s (still TRANSFERRING; retry)",
			      err);
		send_op_free(x);
	}
}
