/* receipt: ask a merchant for the Receipt of a payment it acknowledged (docs/receipts.md).
 *
 *   params --index in (seg_start, last], the channel has a cert--(else BAD_PARAMS: nothing is
 *        sent; a word above last is an unspent payword and never leaves)-->
 *   CONNECTING --certificate CN names the merchant--(else FAILED, nothing sent)-->
 *   ASKING: ReceiptReq{channel, seg_seq, index, w_index}, answer awaited at most idle_timeout
 *        --refused (TOO_EARLY, OUT_OF_RANGE, ...)--> FAILED with the merchant's reason
 *        --OK: the MerchantCert under our broker key, the Receipt under its key, and the
 *          Receipt's fields = what we asked (else FAILED, nothing stored)-->
 *   STORED (table receipts) --> answered with the fields and both statements in base64
 *   any --timeout, lost connection--> FAILED */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "frame.h"
#include "log.h"
#include "receipt.h"
#include "session.h"
#include "stmt.h"
#include "store_receipt.h"
#include "tls.h"
#include "wallet.h"
#include "wallet_receipt.h"

struct receipt_op {
	struct wallet_op op; /* first: the wallet's list of exchanges in progress */
	struct wallet *w;
	struct mp_admin_req *req;
	struct event *timer;
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, index;
	uint8_t w_index[MP_HASH_LEN];
	uint8_t target[MP_ID_LEN];
	char target_hex[MP_HEX_ID_LEN + 1];
	char endpoint[300];
	json_t *after_pay; /* pay receipt=true: the pay's answer, completed with the receipt */
	uint8_t order_ref[MP_RECEIPT_ORDER_REF_MAX]; /* pay receipt=true: the order paid */
	size_t order_ref_len;			     /* 0: not known (receipt) */
	bool done;
};

/* Answer the admin request: the receipt (steals it), or the pay's answer with it. */
static void answer(struct receipt_op *r, json_t *receipt)
{
	r->done = true;
	if (!r->after_pay) {
		mp_admin_reply(r->req, receipt);
		return;
	}
	json_object_set_new(r->after_pay, "receipt", receipt);
	mp_admin_reply(r->req, r->after_pay);
	r->after_pay = NULL;
}

__attribute__((format(printf, 2, 3))) static void receipt_fail(struct receipt_op *r,
							       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!r->done) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(r->channel_id, MP_ID_LEN, hex);
		log_warn("channel %s: receipt for index %u at m-%s (%s): %s", hex, r->index,
			 r->target_hex, r->endpoint, msg);
		r->done = true;
		if (r->after_pay) { /* the payment itself went through: say so, and why no receipt
				     */
			json_object_set_new(r->after_pay, "receipt_error", json_string(msg));
			mp_admin_reply(r->req, r->after_pay);
			r->after_pay = NULL;
		} else {
			mp_admin_fail(r->req, MP_ADMIN_FAILED, "receipt: %s", msg);
		}
	}
	if (r->op.conn)
		mp_conn_close(r->op.conn, "receipt: %s", msg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct receipt_op *r = arg;
	receipt_fail(r, "no answer from m-%s within %u s (idle_timeout)", r->target_hex,
		     r->w->cfg.idle_timeout);
}

/* The Receipt is for exactly what we asked, from the merchant we asked. */
static const char *check_fields(const struct receipt_op *r, const struct mp_receipt *rc)
{
	if (memcmp(rc->merchant_id, r->target, MP_ID_LEN))
		return "the MerchantCert is of another merchant than the one asked";
	if (memcmp(rc->channel_id, r->channel_id, MP_ID_LEN) || rc->seg_seq != r->seg_seq ||
	    rc->index != r->index)
		return "the Receipt is for another payment than the one asked";
	if (r->order_ref_len && (rc->order_ref_len != r->order_ref_len ||
				 memcmp(rc->order_ref, r->order_ref, r->order_ref_len)))
		return "the Receipt names another order_ref than the one paid";
	return NULL;
}

static void take_receipt(struct receipt_op *r, const Micropay__V1__ReceiptResp *resp)
{
	struct mp_receipt rc;
	const char *bad =
	    mp_receipt_verify(resp->receipt, resp->merchant_cert, r->w->cfg.broker_pk, &rc);
	if (!bad)
		bad = check_fields(r, &rc);
	if (bad) {
		receipt_fail(r, "the merchant's receipt does not verify: %s; not stored", bad);
		return;
	}
	if (!wstore_receipt_put(r->w->store, r->channel_id, r->seg_seq, r->index, r->target,
				resp->receipt, resp->merchant_cert)) {
		receipt_fail(r, "cannot store the receipt");
		return;
	}
	const char *why = NULL;
	json_t *out =
	    wallet_receipt_json(resp->receipt, resp->merchant_cert, r->w->cfg.broker_pk, &why);
	answer(r, out);
	mp_conn_close(r->op.conn, "receipt received");
}

static void on_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct receipt_op *r = arg;
	if (!env)
		return; /* on_close reports why */
	evtimer_del(r->timer);
	char text[400];
	if (env->body_case != MP_BODY(RECEIPT_RESP) || !env->receipt_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		receipt_fail(r, "unexpected answer to ReceiptReq: %s", text);
		return;
	}
	const Micropay__V1__ReceiptResp *resp = env->receipt_resp;
	if (resp->status->code != MP_ST(OK)) {
		wallet_status_text(resp->status, text, sizeof(text));
		receipt_fail(r, "refused by m-%s: %s", r->target_hex, text);
		return;
	}
	take_receipt(r, resp);
}

static void on_open(struct mp_conn *c, void *arg)
{
	struct receipt_op *r = arg;
	if (!mp_tls_peer_is_merchant(mp_conn_ssl(c), r->target)) {
		char cn[128] = "none";
		mp_tls_peer_cn(mp_conn_ssl(c), cn, sizeof(cn));
		receipt_fail(r,
			     "the server at %s presented certificate CN '%s', not m-%s; nothing "
			     "sent",
			     r->endpoint, cn, r->target_hex);
		return;
	}
	Micropay__V1__ReceiptReq rq = MICROPAY__V1__RECEIPT_REQ__INIT;
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, r->channel_id};
	rq.seg_seq = r->seg_seq;
	rq.index = r->index;
	rq.w = (ProtobufCBinaryData){MP_HASH_LEN, r->w_index};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(RECEIPT_REQ);
	env.receipt_req = &rq;
	struct timeval tv = {(time_t)r->w->cfg.idle_timeout, 0};
	if (mp_conn_call(c, &env, on_answer, r) != 0 || evtimer_add(r->timer, &tv) != 0)
		receipt_fail(r, "cannot send the ReceiptReq");
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct receipt_op *r = arg;
	r->op.conn = NULL;
	receipt_fail(r, "connection to %s closed: %s", r->endpoint, reason);
	wallet_op_remove(r->w, &r->op);
	event_free(r->timer);
	json_decref(r->after_pay);
	OPENSSL_cleanse(r->w_index, sizeof(r->w_index));
	free(r);
}

static const struct mp_conn_ops receipt_ops = {
    .on_open = on_open,
    .on_close = on_close,
};

/* Why index cannot be asked for (NULL: it can): only acknowledged points of the current
 * segment, whose words we can compute. */
static const char *index_refusal(const struct wchannel *ch, uint64_t index, char *why, size_t len)
{
	if (!ch->cert)
		return "the channel has no cert yet";
	if (index <= ch->seg_start || index > ch->last) {
		snprintf(why, len,
			 "index %llu is not an acknowledged payment of the current segment "
			 "(%u, %u]; no payword is sent for it",
			 (unsigned long long)index, ch->seg_start, ch->last);
		return why;
	}
	return NULL;
}

/* merchant_id (default: the holder) and its endpoint (default: the holder's, from its cert). */
static bool target_params(struct receipt_op *r, json_t *params, const struct wchannel *ch)
{
	memcpy(r->target, ch->holder, MP_ID_LEN);
	if (json_object_get(params, "merchant_id") &&
	    !wallet_param_hex(r->req, params, "merchant_id", r->target, MP_ID_LEN, true, NULL))
		return false;
	mp_hex_encode(r->target, MP_ID_LEN, r->target_hex);
	bool holder = !memcmp(r->target, ch->holder, MP_ID_LEN);
	const char *given = NULL;
	if (!mp_admin_param_str(r->req, params, "endpoint", &given, false))
		return false;
	if (given)
		snprintf(r->endpoint, sizeof(r->endpoint), "%s", given);
	else if (!holder || !wallet_holder_endpoint(r->w, ch, r->endpoint, sizeof(r->endpoint))) {
		mp_admin_fail(r->req, MP_ADMIN_BAD_PARAMS,
			      "receipt: the merchant's endpoint is not known: give endpoint");
		return false;
	}
	return true;
}

/* Channel, index (default: the last acknowledged), merchant and endpoint; false (answered). */
static bool receipt_params(struct receipt_op *r, json_t *params)
{
	uint64_t index = 0;
	if (!wallet_param_hex(r->req, params, "channel_id", r->channel_id, MP_ID_LEN, true, NULL) ||
	    !mp_admin_param_u64(r->req, params, "index", &index, false))
		return false;
	struct wchannel *ch = wallet_channel_find(r->w, r->channel_id);
	char why[200];
	const char *bad = ch ? NULL : "no such channel in this wallet";
	if (ch && !json_object_get(params, "index"))
		index = ch->last;
	if (!bad)
		bad = index_refusal(ch, index, why, sizeof(why));
	if (bad) {
		mp_admin_fail(r->req, MP_ADMIN_BAD_PARAMS, "receipt: %s", bad);
		return false;
	}
	r->seg_seq = ch->seg_seq;
	r->index = (uint32_t)index;
	if (!wallet_channel_word(r->w, ch, r->index, r->w_index)) {
		mp_admin_fail(r->req, MP_ADMIN_INTERNAL, "receipt: cannot compute the word at %u",
			      r->index);
		return false;
	}
	return target_params(r, params, ch);
}

/* False (nothing answered) if the connection could not even start. */
static bool receipt_connect(struct receipt_op *r)
{
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(r->endpoint, host, sizeof(host), &port))
		return false;
	struct mp_net_opts opts = {.max_frame = MP_FRAME_MAX_WALLET,
				   .idle_timeout_s = r->w->cfg.idle_timeout,
				   .name = "merchant"};
	r->op.conn =
	    mp_connect(r->w->base, r->w->dns, r->w->tls, host, port, &opts, &receipt_ops, r);
	if (!r->op.conn) {
		mp_admin_fail(r->req, MP_ADMIN_FAILED, "receipt: cannot connect to %s",
			      r->endpoint);
		return false;
	}
	wallet_op_add(r->w, &r->op);
	return true;
}

void wallet_admin_receipt(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	if (w->stopping) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "receipt: walletd is stopping");
		return;
	}
	struct receipt_op *r = calloc(1, sizeof(*r));
	if (!r) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	r->w = w;
	r->req = req;
	bool started = false;
	if (receipt_params(r, params)) {
		started = (r->timer = evtimer_new(w->base, on_timeout, r)) && receipt_connect(r);
		if (!started)
			mp_admin_fail(req, MP_ADMIN_FAILED, "receipt: cannot connect to %s",
				      r->endpoint);
	}
	if (started)
		return;
	if (r->timer)
		event_free(r->timer);
	OPENSSL_cleanse(r->w_index, sizeof(r->w_index));
	free(r);
}

bool wallet_receipt_after_pay(struct wallet *w, struct mp_admin_req *req, json_t *pay_answer,
			      struct wchannel *ch, uint32_t index, const uint8_t target[MP_ID_LEN],
			      const char *endpoint, const uint8_t *order_ref, size_t order_ref_len)
{
	if (order_ref_len < 1 || order_ref_len > MP_RECEIPT_ORDER_REF_MAX)
		return false;
	struct receipt_op *r = calloc(1, sizeof(*r));
	if (!r)
		return false;
	*r = (struct receipt_op){.w = w, .req = req, .seg_seq = ch->seg_seq, .index = index};
	memcpy(r->channel_id, ch->channel_id, MP_ID_LEN);
	memcpy(r->target, target, MP_ID_LEN);
	mp_hex_encode(target, MP_ID_LEN, r->target_hex);
	snprintf(r->endpoint, sizeof(r->endpoint), "%s", endpoint);
	memcpy(r->order_ref, order_ref, order_ref_len);
	r->order_ref_len = order_ref_len;
	if (wallet_channel_word(w, ch, index, r->w_index) &&
	    (r->timer = evtimer_new(w->base, on_timeout, r)) && receipt_connect(r)) {
		r->after_pay = pay_answer;
		return true;
	}
	if (r->timer)
		event_free(r->timer);
	OPENSSL_cleanse(r->w_index, sizeof(r->w_index));
	free(r);
	return false;
}
