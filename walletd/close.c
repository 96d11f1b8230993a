/* close (docs/close.md; protocol.md sections 5, 6 "Close", 10): the wallet ends a channel early
 * at its holder. Open at the holder (in-flight Pays resolved first, so that the Close covers
 * every acknowledged payment), sign a CloseRequest{channel_id, seg_seq, epoch} with the current
 * segment's owner key and store it with the state CLOSING before it leaves (a retry resends those
 * bytes verbatim), send CloseReq, check the Close (signed by the holder of our epoch per our
 * custody record, for our segment, final_index >= our last acknowledged index, w_final our own
 * chain's word), store the answer and the state CLOSED.
 *
 *   ACTIVE --checks--> OPENING (session: Open, in-flight Pays resent)
 *     --CloseRequest signed, stored--> CLOSING --CloseReq--> (holder) --Close checked,
 *     stored--> CLOSED
 *   CLOSING --close--> OPENING (the holder's Open answers CLOSED once it closed) --the stored
 *     CloseRequest--> ... (the holder answers its stored Close, DUPLICATE_OK)
 *   CLOSING --the holder refuses (it signed nothing: NOT_HOLDER, HANDED_OFF, ...)--> ACTIVE
 *   CLOSING --no answer, LIMIT, INTERNAL, a Close that does not check out--> stays CLOSING
 *   CLOSED --close--> the stored Close
 *   CLOSED --at once (refund_early.c)--> RefundRequest with the Close --> REFUNDED
 * A CLOSING channel pays no more (pay refuses every state but ACTIVE). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "log.h"
#include "session.h"
#include "stmt.h"
#include "store.h"
#include "store_close.h"
#include "wallet.h"

struct close_op {
	struct wallet *w;
	struct wchannel *ch;
	char hex[MP_HEX_ID_LEN + 1];
	MpSigned *request; /* the stored CloseRequest once signed */
};

static void close_op_free(void *arg)
{
	struct close_op *x = arg;
	mp_stmt_free(x->request);
	free(x);
}

bool wallet_close_load(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		struct wstore_close c;
		int found = wstore_close_get(w->store, ch->channel_id, &c);
		if (found < 0)
			return false;
		if (found == 1)
			ch->state = c.resp ? WCH_CLOSED : WCH_CLOSING;
		wstore_close_clear(&c);
	}
	return true;
}

/* ---- the answer ---- */

/* The Close of a stored or received CloseResp, checked against our channel: NULL, or what is
 * wrong. *out (freed by the caller) is the parsed Close. */
static const char *check_close(struct wallet *w, struct wchannel *ch, const MpSigned *close,
			       Micropay__V1__Close **out)
{
	uint8_t pk[MP_PK_LEN], ours[MP_HASH_LEN];
	*out = NULL;
	if (wallet_merchant_cert_check(w, ch->holder_cert, ch->holder, pk))
		return "no MerchantCert of the holder to check the Close with";
	ProtobufCMessage *body = NULL;
	if (!close || mp_stmt_open(close, MP_STMT_CLOSE, pk, &micropay__v1__close__descriptor,
				   &body) != MP_ST(OK))
		return "the answer carries no Close signed by the holder";
	Micropay__V1__Close *cl = (Micropay__V1__Close *)body;
	*out = cl;
	const MpPoint *pt = cl->point;
	if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN) ||
	    memcmp(cl->channel_id.data, ch->channel_id, MP_ID_LEN))
		return "the Close is for another channel";
	if (cl->hseq != ch->epoch)
		return "the Close is not for the holder's epoch we know";
	if (!pt || pt->seg_seq != ch->seg_seq || pt->index < ch->seg_start || pt->index > ch->n ||
	    !mp_bytes_len_is(pt->w, MP_HASH_LEN))
		return "the Close's point is not in our segment";
	if (pt->index < ch->last)
		return "the Close's final_index is below the last index the holder acknowledged";
	if (!wallet_channel_word(w, ch, pt->index, ours) ||
	    CRYPTO_memcmp(ours, pt->w.data, MP_HASH_LEN))
		return "the Close's w_final does not match our chain";
	return NULL;
}

/* {channel_id, state, epoch, segment, final_index, refund_units, close (base64 of the Signed
 * Close)} of a stored answer; NULL if it cannot be read. */
static json_t *closed_json(const struct wchannel *ch, const uint8_t *resp, size_t len)
{
	Micropay__V1__CloseResp *r = (Micropay__V1__CloseResp *)protobuf_c_message_unpack(
	    &micropay__v1__close_resp__descriptor, NULL, len, resp);
	Micropay__V1__Close *cl = r && r->close ? (Micropay__V1__Close *)protobuf_c_message_unpack(
						      &micropay__v1__close__descriptor, NULL,
						      r->close->body.len, r->close->body.data)
						: NULL;
	json_t *out = NULL;
	size_t slen = 0;
	uint8_t *sbytes = cl && cl->point ? mp_stmt_encode(r->close, &slen) : NULL;
	char *text = sbytes ? mp_b64_encode(sbytes, slen) : NULL;
	if (text) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
		out = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "channel_id", hex, "state",
				wch_state_name(ch->state), "epoch", (json_int_t)cl->hseq, "segment",
				(json_int_t)cl->point->seg_seq, "final_index",
				(json_int_t)cl->point->index, "refund_units",
				(json_int_t)(ch->n - cl->point->index), "close", text);
	}
	free(text);
	free(sbytes);
	if (cl)
		protobuf_c_message_free_unpacked(&cl->base, NULL);
	if (r)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	return out;
}

/* OK or DUPLICATE_OK: the Close checks out; the answer stored, CLOSED. */
static void closed(struct close_op *x, struct pay_op *s, const Micropay__V1__CloseResp *r)
{
	struct wchannel *ch = x->ch;
	struct wallet *w = x->w; /* x is freed with the session once it answered */
	Micropay__V1__Close *cl = NULL;
	const char *bad = check_close(x->w, ch, r->close, &cl);
	uint32_t final_index = cl && cl->point ? cl->point->index : 0;
	if (cl)
		protobuf_c_message_free_unpacked(&cl->base, NULL);
	if (bad) {
		log_err("channel %s: the holder's Close is refused: %s; stays CLOSING", x->hex,
			bad);
		wallet_session_fail(s, "the holder's Close is refused: %s (still CLOSING)", bad);
		return;
	}
	size_t len = protobuf_c_message_get_packed_size(&r->base);
	uint8_t *resp = malloc(len ? len : 1);
	if (resp)
		protobuf_c_message_pack(&r->base, resp);
	if (!resp || !wstore_close_done(x->w->store, ch->channel_id, resp, len) ||
	    !wstore_channel_progress(x->w->store, ch->channel_id, final_index, ch->credit)) {
		free(resp);
		wallet_session_fail(s, "cannot store the Close (still CLOSING; retry)");
		return;
	}
	ch->state = WCH_CLOSED;
	ch->last = final_index;
	log_info("channel %s: CLOSED at index %u (epoch %u); %u units unspent", x->hex, final_index,
		 ch->epoch, ch->n - final_index);
	json_t *out = closed_json(ch, resp, len);
	free(resp);
	if (out)
		wallet_session_reply(s, out);
	else
		wallet_session_fail(s, "CLOSED, but the answer cannot be shown (retry close)");
	wallet_refund_after_close(w, ch); /* the early refund (refund_early.c) */
}

/* A refusal after which the holder has signed nothing for this request. */
static bool signed_nothing(MpCode code)
{
	return code != MP_ST(LIMIT) && code != MP_ST(INTERNAL) && code != MP_ST(CLOSED);
}

static void refused(struct close_op *x, struct pay_op *s, MpCode code, const char *text)
{
	if (signed_nothing(code) && wstore_close_abandon(x->w->store, x->ch->channel_id)) {
		x->ch->state = WCH_ACTIVE;
		log_warn("channel %s: the holder refused the CloseRequest: %s; ACTIVE again",
			 x->hex, text);
		wallet_session_fail(s, "the holder refused the CloseRequest: %s (ACTIVE again)",
				    text);
		return;
	}
	log_warn("channel %s: the holder refused the CloseRequest: %s; stays CLOSING", x->hex,
		 text);
	wallet_session_fail(s, "the holder refused the CloseRequest: %s (still CLOSING; retry)",
			    text);
}

static void on_close_resp(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return; /* the session reports the closed connection */
	char text[400];
	if (env->body_case != MP_BODY(CLOSE_RESP) || !env->close_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		wallet_session_fail(s, "unexpected answer to CloseReq: %s (still CLOSING)", text);
		return;
	}
	const Micropay__V1__CloseResp *r = env->close_resp;
	struct close_op *x = wallet_session_arg(s);
	MpCode code = r->status->code;
	wallet_status_text(r->status, text, sizeof(text));
	if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK))
		closed(x, s, r);
	else
		refused(x, s, code, text);
}

/* ---- signing and sending ---- */

static MpSigned *request_sign(struct close_op *x)
{
	struct wchannel *ch = x->ch;
	Micropay__V1__CloseRequest r = MICROPAY__V1__CLOSE_REQUEST__INIT;
	r.channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->channel_id};
	r.seg_seq = ch->seg_seq;
	r.epoch = ch->epoch; /* of the OpenAck just checked */
	struct mp_key owner = {0};
	if (!wallet_owner_key(x->w, ch, &owner))
		return NULL;
	MpSigned *stmt = mp_stmt_sign(&owner, MP_STMT_CLOSE_REQUEST, &r.base);
	mp_key_free(&owner);
	return stmt;
}

/* The in-flight Pays are resolved: sign and store the CloseRequest (first time) and send it. */
static void on_opened(struct pay_op *s, void *arg)
{
	struct close_op *x = arg;
	struct wchannel *ch = x->ch;
	if (ch->state == WCH_ACTIVE) {
		if (!wallet_session_pays_resolved(s, ch, "closing"))
			return;
		if (!(x->request = request_sign(x)) ||
		    !wstore_close_begin(x->w->store, ch->channel_id, x->request)) {
			wallet_session_fail(s,
					    "cannot sign and store the CloseRequest; nothing sent");
			return;
		}
		ch->state = WCH_CLOSING;
		log_info("channel %s: CLOSING (segment %u, epoch %u, last %u)", x->hex, ch->seg_seq,
			 ch->epoch, ch->last);
	}
	Micropay__V1__CloseReq req = MICROPAY__V1__CLOSE_REQ__INIT;
	req.request = x->request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(CLOSE_REQ);
	env.close_req = &req;
	if (!wallet_session_call(s, &env, on_close_resp, "CloseReq (still CLOSING; retry)"))
		wallet_session_fail(s, "cannot send the CloseReq (still CLOSING; retry)");
}

/* ---- the admin method ---- */

/* The stored state of a CLOSING or CLOSED channel: answered (CLOSED) or x->request taken
 * (CLOSING). False when answered. */
static bool resume(struct mp_admin_req *req, struct close_op *x)
{
	struct wstore_close st;
	if (wstore_close_get(x->w->store, x->ch->channel_id, &st) != 1) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL,
			      "close: the stored close of channel %s "
			      "cannot be read",
			      x->hex);
		return false;
	}
	bool go_on = false;
	json_t *out = st.resp ? closed_json(x->ch, st.resp, st.resp_len) : NULL;
	if (st.resp && out) {
		mp_admin_reply(req, out);
	} else if (st.resp) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "close: the stored Close cannot be read");
	} else {
		x->request = st.request;
		st.request = NULL;
		go_on = true;
	}
	wstore_close_clear(&st);
	return go_on;
}

static const char *refusal(struct wallet *w, const struct wchannel *ch, char *why, size_t len)
{
	if (w->stopping)
		return "walletd is stopping";
	if (ch->busy)
		return "a pay, transfer or close on this channel is in progress";
	switch (ch->state) {
	case WCH_ACTIVE:
	case WCH_CLOSING:
	case WCH_CLOSED:
		break;
	case WCH_TRANSFERRING:
		return "channel is TRANSFERRING: finish the transfer with transfer.send";
	case WCH_TRANSFERRED_OUT:
		return "channel transferred out (its rest belongs to the customer it was given to)";
	case WCH_RELEASED:
		return "channel RELEASED: CLOSED by the broker's ForcedClose (its rest refunded); "
		       "nothing to close";
	case WCH_ISSUING:
	case WCH_FAILED:
		snprintf(why, len, "the channel is %s, not ACTIVE", wch_state_name(ch->state));
		return why;
	}
	if (wallet_id_is_zero(ch->holder))
		return "no merchant holds the channel: nothing to close at a holder";
	if (wallet_channel_claim_refusal(ch))
		return wallet_channel_claim_refusal(ch);
	return NULL;
}

void wallet_admin_close(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t id[MP_ID_LEN];
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL))
		return;
	struct wchannel *ch = wallet_channel_find(w, id);
	char why[200], endpoint[300], err[300];
	const char *refuse =
	    ch ? refusal(w, ch, why, sizeof(why)) : "no such channel in this wallet";
	if (refuse) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "close: %s", refuse);
		return;
	}
	struct close_op *x = calloc(1, sizeof(*x));
	if (!x) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "close: out of memory");
		return;
	}
	x->w = w;
	x->ch = ch;
	mp_hex_encode(id, MP_ID_LEN, x->hex);
	if ((ch->state != WCH_ACTIVE && !resume(req, x)) ||
	    !wallet_session_endpoint(req, params, w, ch, "close", "", endpoint, sizeof(endpoint))) {
		close_op_free(x);
		return;
	}
	if (!wallet_session_open(w, req, "close", ch, endpoint, on_opened, x, close_op_free, err,
				 sizeof(err))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "close: %s", err);
		close_op_free(x);
	}
}
