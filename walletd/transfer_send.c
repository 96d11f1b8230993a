/* transfer.send (docs/transfer.md, "A: transfer.send"): A gives the unspent rest of a channel to
 * the customer whose offer it got. Open at the holder (in-flight Pays resolved first, so that
 * declared_last is our last index), sign the Transfer and store it with state TRANSFERRING before
 * it leaves (a retry resends those bytes verbatim), send TransferReq, check the Cap against the
 * holder's key and our own chain, store the bundle with state TRANSFERRED_OUT, answer it.
 *
 *   ACTIVE --checks--> OPENING (session: Open, in-flight Pays resent)
 *     --Transfer signed, stored--> TRANSFERRING --TransferReq--> (holder) --Cap checked,
 *     bundle stored--> TRANSFERRED_OUT
 *   TRANSFERRING --transfer.send with the same offer--> OPENING --the stored Transfer--> ...
 *   TRANSFERRING, the holder handed the channel on --HANDED_OFF with a redirect--> the next
 *     holder, where the Transfer is re-signed for its epoch (transfer_moved.c)
 *   TRANSFERRED_OUT --transfer.send with the same offer--> the stored bundle
 *   any failure after TRANSFERRING: stays TRANSFERRING (no more payments); retry. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "frame.h"
#include "log.h"
#include "proto_limits.h"
#include "session.h"
#include "stmt.h"
#include "store.h"
#include "transfer_send.h"
#include "wallet.h"

void send_op_free(void *arg)
{
	struct send_op *x = arg;
	free(x->offer_bytes);
	if (x->offer)
		protobuf_c_message_free_unpacked(&x->offer->base, NULL);
	mp_stmt_free(x->transfer);
	free(x);
}

/* The offer as given: base64 of a TransferOffer with fields of the right lengths. */
static const char *offer_parse(const char *text, struct send_op *x)
{
	if (!(x->offer_bytes = mp_b64_decode(text, 4096, &x->offer_len)))
		return "offer is not base64 (of at most 4096 bytes)";
	x->offer = (Micropay__V1__TransferOffer *)mp_strict_unpack(
	    &micropay__v1__transfer_offer__descriptor, x->offer_bytes, x->offer_len);
	if (!x->offer)
		return "offer is not a TransferOffer";
	const Micropay__V1__TransferOffer *o = x->offer;
	if (!mp_bytes_len_is(o->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(o->owner_pk, MP_PK_LEN) || !mp_bytes_len_is(o->nonce, MP_NONCE_LEN) ||
	    !mp_bytes_len_is(o->root, MP_HASH_LEN) || o->len < 1 || o->len > WALLET_N_MAX)
		return "offer has a field of the wrong length (channel_id 16, owner_pk 32, nonce "
		       "16, "
		       "root 32 bytes, len 1 .. N_MAX)";
	return NULL;
}

/* ---- the holder's answer ---- */

static const char *open_cap(struct send_op *x, const MpSigned *cap_stmt, Micropay__V1__Transfer *t,
			    Micropay__V1__Cap **out)
{
	struct wchannel *ch = x->ch;
	uint8_t pk[MP_PK_LEN], th[MP_HASH_LEN], ours[MP_HASH_LEN];
	if (wallet_merchant_cert_check(x->w, ch->holder_cert, ch->holder, pk))
		return "no MerchantCert of the holder to check the Cap with";
	ProtobufCMessage *body = NULL;
	if (!cap_stmt || mp_stmt_open(cap_stmt, MP_STMT_CAP, pk, &micropay__v1__cap__descriptor,
				      &body) != MP_ST(OK))
		return "the answer carries no Cap signed by the holder";
	Micropay__V1__Cap *cap = (Micropay__V1__Cap *)body;
	*out = cap;
	mp_stmt_hash(x->transfer, th);
	const MpPoint *pt = cap->point;
	if (!mp_bytes_len_is(cap->channel_id, MP_ID_LEN) ||
	    memcmp(cap->channel_id.data, ch->channel_id, MP_ID_LEN))
		return "the Cap is for another channel";
	if (cap->new_seg_seq != t->new_seg_seq)
		return "the Cap is for another segment";
	if (!mp_bytes_len_is(cap->transfer_hash, MP_HASH_LEN) ||
	    memcmp(cap->transfer_hash.data, th, MP_HASH_LEN))
		return "the Cap does not name our Transfer (transfer_hash)";
	if (cap->hseq != t->holder_epoch)
		return "the Cap's hseq is not our Transfer's holder_epoch";
	if (!pt || pt->seg_seq != ch->seg_seq || pt->index < ch->seg_start ||
	    pt->index > t->declared_last || !mp_bytes_len_is(pt->w, MP_HASH_LEN))
		return "the Cap's point is not in our segment at or below declared_last";
	if (!wallet_channel_word(x->w, ch, pt->index, ours) ||
	    CRYPTO_memcmp(ours, pt->w.data, MP_HASH_LEN))
		return "the Cap's w_cap does not match our chain";
	return NULL;
}

static bool has_cert(const Micropay__V1__TransferResp *r, const MpSigned *cert)
{
	for (size_t i = 0; i < r->n_merchant_certs; i++)
		if (r->merchant_certs[i]->body.len == cert->body.len &&
		    memcmp(r->merchant_certs[i]->body.data, cert->body.data, cert->body.len) == 0)
			return true;
	return false;
}

/* TransferBundle{cert, pairs 1..s, custody, merchant certs (the holder's included), holder
 * cert, the Bind of an unbound channel}, packed (malloc'd). */
static uint8_t *pack_bundle(struct send_op *x, struct pay_op *s,
			    const Micropay__V1__TransferResp *r, size_t *len)
{
	struct wchannel *ch = x->ch;
	size_t n_seg = ch->n_segments + 2, n_certs = r->n_merchant_certs;
	MpSigned **segs = calloc(n_seg, sizeof(*segs));
	MpSigned **certs = calloc(n_certs + 1, sizeof(*certs));
	uint8_t *buf = NULL;
	if (segs && certs) {
		for (size_t i = 0; i < ch->n_segments; i++) /* none for segment 0 */
			segs[i] = ch->segments[i];
		segs[n_seg - 2] = x->transfer;
		segs[n_seg - 1] = r->cap;
		for (size_t i = 0; i < n_certs; i++)
			certs[i] = r->merchant_certs[i];
		if (!has_cert(r, ch->holder_cert))
			certs[n_certs++] = ch->holder_cert;
		Micropay__V1__TransferBundle b = MICROPAY__V1__TRANSFER_BUNDLE__INIT;
		b.cert = ch->cert;
		b.n_segments = n_seg;
		b.segments = segs;
		b.n_custody = r->n_custody;
		b.custody = r->custody;
		b.n_merchant_certs = n_certs;
		b.merchant_certs = certs;
		b.holder_cert = ch->holder_cert;
		/* event 0 of a channel issued without holder0: the holder's copy of the Bind (any
		 * epoch), else the OpenAck's custody event in epoch 0 (a holder that sends none) */
		if (wallet_id_is_zero(ch->holder0))
			b.bind = r->bind	  ? r->bind
				 : ch->epoch == 0 ? (MpSigned *)wallet_session_custody_event(s)
						  : NULL;
		*len = protobuf_c_message_get_packed_size(&b.base);
		if ((buf = malloc(*len)))
			protobuf_c_message_pack(&b.base, buf);
	}
	free(segs);
	free(certs);
	return buf;
}

void transfer_reply_bundle(struct mp_admin_req *req, struct pay_op *s, const uint8_t *bundle,
			   size_t len, uint32_t seg_seq)
{
	char *text = mp_b64_encode(bundle, len);
	json_t *r =
	    text ? json_pack("{s:s,s:I}", "bundle", text, "seg_seq", (json_int_t)seg_seq) : NULL;
	free(text);
	if (s && r)
		wallet_session_reply(s, r);
	else if (s)
		wallet_session_fail(s, "out of memory");
	else if (r)
		mp_admin_reply(req, r);
	else
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "transfer.send: out of memory");
}

/* OK or DUPLICATE_OK: the Cap checks out; bundle stored, TRANSFERRED_OUT. */
static void capped(struct send_op *x, struct pay_op *s, const Micropay__V1__TransferResp *r)
{
	Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)mp_strict_unpack(
	    &micropay__v1__transfer__descriptor, x->transfer->body.data, x->transfer->body.len);
	Micropay__V1__Cap *cap = NULL;
	const char *bad = t ? open_cap(x, r->cap, t, &cap) : "our stored Transfer is unreadable";
	uint32_t seg_seq = t ? t->new_seg_seq : 0,
		 cap_index = cap && cap->point ? cap->point->index : 0;
	if (t)
		protobuf_c_message_free_unpacked(&t->base, NULL);
	if (cap)
		protobuf_c_message_free_unpacked(&cap->base, NULL);
	if (bad) {
		log_err("channel %s: the holder's Cap is refused: %s; stays TRANSFERRING", x->hex,
			bad);
		wallet_session_fail(s, "the holder's Cap is refused: %s (still TRANSFERRING)", bad);
		return;
	}
	size_t len = 0;
	uint8_t *bundle = pack_bundle(x, s, r, &len);
	if (!bundle || !wstore_xfer_done(x->w->store, x->ch->channel_id, bundle, len)) {
		free(bundle);
		wallet_session_fail(s, "cannot store the bundle (still TRANSFERRING; retry)");
		return;
	}
	x->ch->state = WCH_TRANSFERRED_OUT;
	log_info("channel %s: TRANSFERRED_OUT (segment %u from index %u)", x->hex, seg_seq,
		 cap_index);
	transfer_reply_bundle(NULL, s, bundle, len, seg_seq);
	free(bundle);
}

static void on_transfer_resp(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return; /* the session reports the closed connection */
	struct send_op *x = NULL;
	char text[400];
	if (env->body_case != MP_BODY(TRANSFER_RESP) || !env->transfer_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		wallet_session_fail(s, "unexpected answer to TransferReq: %s (still TRANSFERRING)",
				    text);
		return;
	}
	const Micropay__V1__TransferResp *r = env->transfer_resp;
	MpCode code = r->status->code;
	wallet_status_text(r->status, text, sizeof(text));
	x = wallet_session_arg(s);
	if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
		capped(x, s, r);
	} else if (code == MP_ST(HANDED_OFF) && r->redirect) {
		transfer_follow(s, x, r);
	} else {
		log_warn("channel %s: the holder refused the Transfer: %s; stays TRANSFERRING",
			 x->hex, text);
		wallet_session_fail(s, "the holder refused the Transfer: %s (still TRANSFERRING)",
				    text);
	}
}

/* ---- signing and sending ---- */

MpSigned *transfer_sign(struct send_op *x)
{
	struct wchannel *ch = x->ch;
	const Micropay__V1__TransferOffer *o = x->offer;
	uint8_t head[MP_HASH_LEN];
	wallet_segment_head(ch, head);
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->channel_id};
	t.new_seg_seq = ch->seg_seq + 1;
	t.holder_epoch = ch->epoch; /* of the OpenAck just checked */
	t.declared_last = ch->last;
	t.to_owner_pk = o->owner_pk;
	t.new_nonce = o->nonce;
	t.new_root = o->root;
	t.new_len = o->len;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, head};
	t.valid_until = ch->pay_until - DELTA_XFER;
	struct mp_key owner = {0};
	if (!wallet_owner_key(x->w, ch, &owner))
		return NULL;
	MpSigned *stmt = mp_stmt_sign(&owner, MP_STMT_TRANSFER, &t.base);
	mp_key_free(&owner);
	return stmt;
}

/* The in-flight Pays are resolved: sign and store the Transfer (first time) and send it. */
static void on_opened(struct pay_op *s, void *arg)
{
	struct send_op *x = arg;
	struct wchannel *ch = x->ch;
	if (ch->state == WCH_ACTIVE) {
		if (!wallet_session_pays_resolved(s, ch, "transferring"))
			return;
		if (x->offer->len < ch->n - ch->last) {
			wallet_session_fail(s, "offer chain too short: need len >= %u",
					    ch->n - ch->last);
			return;
		}
		if (!(x->transfer = transfer_sign(x)) ||
		    !wstore_xfer_begin(x->w->store, ch->channel_id, x->offer_bytes, x->offer_len,
				       x->transfer)) {
			wallet_session_fail(s, "cannot sign and store the Transfer; nothing sent");
			return;
		}
		ch->state = WCH_TRANSFERRING;
		log_info("channel %s: TRANSFERRING (segment %u, declared_last %u, epoch %u)",
			 x->hex, ch->seg_seq + 1, ch->last, ch->epoch);
	} else if (!transfer_current(s, x)) {
		return;
	}
	Micropay__V1__TransferReq req = MICROPAY__V1__TRANSFER_REQ__INIT;
	req.transfer = x->transfer;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &req;
	if (!wallet_session_call(s, &env, on_transfer_resp,
				 "TransferReq (still TRANSFERRING; retry)"))
		wallet_session_fail(s, "cannot send the TransferReq (still TRANSFERRING; retry)");
}

/* ---- the admin method ---- */

/* TRANSFERRING or TRANSFERRED_OUT: the stored transfer, if it answers the same offer. NULL
 * (answered) otherwise or when there is nothing more to do. */
static bool resume(struct mp_admin_req *req, struct send_op *x)
{
	struct wstore_xfer st;
	int found = wstore_xfer_get(x->w->store, x->ch->channel_id, &st);
	if (found != 1) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL,
			      "transfer.send: the stored Transfer of a %s "
			      "channel cannot be read",
			      wch_state_name(x->ch->state));
		return false;
	}
	bool same = st.offer_len == x->offer_len && !memcmp(st.offer, x->offer_bytes, x->offer_len);
	bool go_on = false;
	if (!same)
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "transfer.send: channel %s is %s for another offer", x->hex,
			      x->ch->state == WCH_TRANSFERRED_OUT ? "transferred out"
								  : "TRANSFERRING");
	else if (st.bundle)
		transfer_reply_bundle(req, NULL, st.bundle, st.bundle_len, x->ch->seg_seq + 1);
	else if (x->ch->busy)
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "transfer.send: a transfer of this channel is in progress");
	else {
		x->transfer = st.transfer;
		st.transfer = NULL;
		go_on = true;
	}
	wstore_xfer_clear(&st);
	return go_on;
}

/* The offer names an owner key a segment of this channel already had (an offer answered
 * before: a channel that came back keeps the pairs that gave it away and back). */
static bool offer_key_used(const struct send_op *x)
{
	bool used = false;
	for (size_t i = 0; !used && i + 1 < x->ch->n_segments; i += 2) {
		const MpSigned *ts = x->ch->segments[i];
		Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)mp_strict_unpack(
		    &micropay__v1__transfer__descriptor, ts->body.data, ts->body.len);
		used = t && t->to_owner_pk.len == x->offer->owner_pk.len &&
		       !memcmp(t->to_owner_pk.data, x->offer->owner_pk.data, t->to_owner_pk.len);
		if (t)
			micropay__v1__transfer__free_unpacked(t, NULL);
	}
	return used;
}

/* An ACTIVE channel's refusals before anything is sent; NULL if it may be transferred. */
static const char *refusal(struct send_op *x, char *why, size_t len)
{
	struct wchannel *ch = x->ch;
	uint32_t spent = wallet_channel_spent(ch);
	if (ch->state != WCH_ACTIVE) {
		snprintf(why, len, "channel %s is %s, not ACTIVE", x->hex,
			 wch_state_name(ch->state));
		return why;
	}
	if (wallet_channel_claim_refusal(ch))
		return wallet_channel_claim_refusal(ch);
	if (ch->busy)
		return "a pay or transfer on this channel is in progress";
	if (spent >= ch->n)
		return "channel exhausted: nothing left to transfer";
	if (ch->seg_seq + 1 >= MP_MAX_SEGMENTS) {
		snprintf(why, len, "channel already has %u segments (at most %d)", ch->seg_seq + 1,
			 MP_MAX_SEGMENTS);
		return why;
	}
	if (x->offer->len < ch->n - spent) {
		snprintf(why, len, "offer chain too short: need len >= %u", ch->n - spent);
		return why;
	}
	if (offer_key_used(x))
		return "the offer's owner key already owned a segment of this channel (an old "
		       "offer?): ask for a new offer";
	if (mp_clock_now(&x->w->clock) + 60 >= ch->pay_until - DELTA_XFER)
		return "too late to transfer: a Transfer must be valid until pay_until - 1 h";
	return NULL;
}

static struct send_op *send_params(struct wallet *w, struct mp_admin_req *req, json_t *params)
{
	uint8_t id[MP_ID_LEN];
	const char *text;
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL) ||
	    !mp_admin_param_str(req, params, "offer", &text, true))
		return NULL;
	struct send_op *x = calloc(1, sizeof(*x));
	if (!x) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return NULL;
	}
	x->w = w;
	x->started = mp_monotonic_s();
	mp_hex_encode(id, MP_ID_LEN, x->hex);
	const char *bad = offer_parse(text, x);
	int code = MP_ADMIN_BAD_PARAMS;
	if (!bad && !(x->ch = wallet_channel_find(w, id)))
		bad = "no such channel in this wallet";
	else if (!bad && memcmp(x->offer->channel_id.data, id, MP_ID_LEN)) {
		bad = "the offer is for another channel";
		code = MP_ADMIN_FAILED;
	}
	if (bad) {
		mp_admin_fail(req, code, "transfer.send: %s", bad);
		send_op_free(x);
		return NULL;
	}
	return x;
}

void wallet_admin_transfer_send(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	struct send_op *x = send_params(w, req, params);
	if (!x)
		return;
	char why[200], endpoint[300];
	const char *refuse = NULL;
	bool resuming = x->ch->state == WCH_TRANSFERRING || x->ch->state == WCH_TRANSFERRED_OUT;
	if (w->stopping)
		refuse = "walletd is stopping";
	else if (!resuming)
		refuse = refusal(x, why, sizeof(why));
	if (refuse) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "transfer.send: %s", refuse);
		send_op_free(x);
		return;
	}
	if (resuming && !resume(req, x)) {
		send_op_free(x);
		return;
	}
	if (wallet_id_is_zero(x->ch->holder)) { /* no merchant holds it: through the broker */
		const char *given = NULL;
		if (!mp_admin_param_str(req, params, "endpoint", &given, false)) {
			send_op_free(x);
			return;
		}
		snprintf(x->endpoint, sizeof(x->endpoint), "%s", given ? given : "");
		transfer_send_unbound(req, x);
		return;
	}
	if (!wallet_session_endpoint(req, params, w, x->ch, "transfer.send",
				     " (or pay at the holder once)", endpoint, sizeof(endpoint))) {
		send_op_free(x);
		return;
	}
	transfer_send_at_holder(req, x, endpoint);
}

void transfer_send_at_holder(struct mp_admin_req *req, struct send_op *x, const char *endpoint)
{
	char err[300];
	if (!wallet_session_open(x->w, req, "transfer.send", x->ch, endpoint, on_opened, x,
				 send_op_free, err, sizeof(err))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "transfer.send: %s", err);
		send_op_free(x);
	}
}
