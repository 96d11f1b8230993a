/* issue and issue.retry (protocol.md section 6, "Issue"): fresh issue_req_id, chain seed, nonce
 * and owner key; the chain's checkpoints and the exact signed IssueRequest are stored before the
 * request leaves, and every retry sends those bytes again. The cert is checked against the
 * request before the channel becomes ACTIVE. */
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "amount.h"
#include "certcheck.h"
#include "ids.h"
#include "issue.h"
#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

struct issue_op {
	struct wallet *w;
	struct mp_admin_req *req; /* NULL for a resend at start-up or for done */
	wallet_issue_fn done;	  /* NULL: the admin request (if any) is answered */
	void *done_arg;
	uint8_t channel_id[MP_ID_LEN];
};

static void channel_hex(const struct wchannel *ch, char hex[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
}

static json_t *time_or_null(uint64_t t)
{
	return t ? json_integer((json_int_t)t) : json_null();
}

static json_t *issue_result(const struct wchannel *ch, const char *broker_status)
{
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(ch, hex);
	return json_pack("{s:s,s:I,s:I,s:o,s:o,s:s,s:s?,s:s?}", "channel_id", hex, "n",
			 (json_int_t)ch->n, "unit_value", (json_int_t)ch->unit_value, "pay_until",
			 time_or_null(ch->pay_until), "redeem_until",
			 time_or_null(ch->redeem_until), "status", wch_state_name(ch->state),
			 "broker_status", broker_status, "detail", ch->detail);
}

/* The channel (ACTIVE, or still ISSUING with why) to whoever asked. */
static void answer_ok(struct issue_op *op, struct wchannel *ch, const char *broker_status,
		      const char *why)
{
	if (op->done)
		op->done(op->done_arg, ch, why);
	else if (op->req)
		mp_admin_reply(op->req, issue_result(ch, broker_status));
}

__attribute__((format(printf, 4, 5))) static void
answer_fail(struct issue_op *op, struct wchannel *ch, int code, const char *fmt, ...)
{
	char text[1000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (op->done)
		op->done(op->done_arg, ch, text);
	else if (op->req)
		mp_admin_fail(op->req, code, "%s", text);
}

/* New state and detail, stored first, then in memory. */
static bool set_state(struct wallet *w, struct wchannel *ch, enum wch_state state,
		      const char *detail)
{
	if (!wstore_channel_set_state(w->store, ch->channel_id, wch_state_name(state), detail))
		return false;
	char *copy = detail ? strdup(detail) : NULL;
	free(ch->detail);
	ch->detail = copy;
	ch->state = state;
	return true;
}

/* The issue did not finish but may on a retry: the channel stays ISSUING. */
static void still_issuing(struct issue_op *op, struct wchannel *ch, const char *broker_status,
			  const char *why)
{
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(ch, hex);
	log_warn("channel %s: issue not finished, stays ISSUING: %s", hex, why);
	if (!set_state(op->w, ch, WCH_ISSUING, why))
		answer_fail(op, ch, MP_ADMIN_INTERNAL, "issue: cannot store the channel state");
	else
		answer_ok(op, ch, broker_status, why);
}

static const char *activate(struct wallet *w, struct wchannel *ch, const MpSigned *cert)
{
	Micropay__V1__IssueRequest *req = (Micropay__V1__IssueRequest *)mp_strict_unpack(
	    &micropay__v1__issue_request__descriptor, ch->request->body.data,
	    ch->request->body.len);
	if (!req)
		return "our stored IssueRequest is unreadable";
	Micropay__V1__ChannelCert *cc = NULL;
	const char *why = wallet_cert_check(cert, w->cfg.broker_pk, req, &cc);
	protobuf_c_message_free_unpacked(&req->base, NULL);
	if (why)
		return why;
	MpSigned *copy = mp_stmt_copy(cert);
	struct wchannel next = *ch;
	next.cert = copy;
	next.issued_at = cc->issued_at;
	next.pay_until = cc->pay_until;
	next.redeem_until = cc->redeem_until;
	protobuf_c_message_free_unpacked(&cc->base, NULL);
	if (!copy || !wstore_channel_activate(w->store, &next)) {
		mp_stmt_free(copy);
		return "cannot store the ChannelCert";
	}
	ch->cert = copy;
	ch->issued_at = next.issued_at;
	ch->pay_until = next.pay_until;
	ch->redeem_until = next.redeem_until;
	ch->state = WCH_ACTIVE;
	free(ch->detail);
	ch->detail = NULL;
	w->stats.channels_issued++;
	return NULL;
}

static void on_issue_reply(void *arg, const MpEnvelope *reply, const char *error)
{
	struct issue_op *op = arg;
	struct wallet *w = op->w;
	struct wchannel *ch = wallet_channel_find(w, op->channel_id);
	char hex[MP_HEX_ID_LEN + 1], text[600];
	channel_hex(ch, hex);
	if (ch->state == WCH_ACTIVE) { /* another exchange for this channel finished first */
		answer_ok(op, ch, NULL, NULL);
	} else if (ch->state == WCH_FAILED) {
		answer_fail(op, ch, MP_ADMIN_FAILED, "issue refused: %s",
			    ch->detail ? ch->detail : "FAILED");
	} else if (!reply) {
		snprintf(text, sizeof(text), "broker unreachable: %s", error);
		still_issuing(op, ch, NULL, text);
	} else if (reply->body_case != MP_BODY(ISSUE_RESP) || !reply->issue_resp->status) {
		wallet_status_text(reply->body_case == MP_BODY(ERROR) ? reply->error : NULL, text,
				   sizeof(text));
		char why[700];
		snprintf(why, sizeof(why), "unexpected answer from the broker: %s", text);
		still_issuing(op, ch, NULL, why);
	} else {
		const Micropay__V1__IssueResp *resp = reply->issue_resp;
		MpCode code = resp->status->code;
		wallet_broker_time_seen(w, resp->broker_time);
		wallet_status_text(resp->status, text, sizeof(text));
		if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
			const char *why = activate(w, ch, resp->channel_cert);
			if (!why) {
				log_info("channel %s: ACTIVE (%s)", hex, mp_code_name(code));
				answer_ok(op, ch, mp_code_name(code), NULL);
			} else {
				char detail[300];
				snprintf(detail, sizeof(detail), "ChannelCert refused: %s", why);
				log_err("channel %s: %s; the channel stays ISSUING", hex, detail);
				set_state(w, ch, WCH_ISSUING, detail);
				answer_fail(op, ch, MP_ADMIN_FAILED, "issue: %s", detail);
			}
		} else if (code == MP_ST(INTERNAL) || code == MP_ST(LIMIT)) {
			/* Not an answer about the request (the database, or busy before it): an
			 * earlier send may have issued it, so it stays ISSUING and is resent. */
			still_issuing(op, ch, mp_code_name(code), text);
		} else {
			log_warn("channel %s: issue refused: %s", hex, text);
			if (set_state(w, ch, WCH_FAILED, text))
				answer_fail(op, ch, MP_ADMIN_FAILED, "issue refused: %s", text);
			else
				answer_fail(op, ch, MP_ADMIN_INTERNAL,
					    "issue refused (%s) and the state cannot be stored",
					    text);
		}
	}
	free(op);
}

/* Send (or resend) the channel's stored request; req or done (or neither) gets the answer. */
static void issue_send(struct wallet *w, struct wchannel *ch, struct mp_admin_req *req,
		       wallet_issue_fn done, void *arg)
{
	struct issue_op *op = calloc(1, sizeof(*op));
	if (!op) {
		struct issue_op oom = {w, req, done, arg, {0}};
		answer_fail(&oom, ch, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	*op = (struct issue_op){w, req, done, arg, {0}};
	memcpy(op->channel_id, ch->channel_id, MP_ID_LEN);
	w->stats.issue_attempts++;
	char err[300];
	if (!wallet_broker_send(w, MP_BODY(ISSUE_REQ), ch->request, on_issue_reply, op, err,
				sizeof(err))) {
		char why[400];
		snprintf(why, sizeof(why), "broker unreachable: %s", err);
		still_issuing(op, ch, NULL, why);
		free(op);
	}
}

void wallet_issue_resume(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		if (ch->state != WCH_ISSUING)
			continue;
		char hex[MP_HEX_ID_LEN + 1];
		channel_hex(ch, hex);
		log_info("channel %s: ISSUING; resending the stored IssueRequest", hex);
		issue_send(w, ch, NULL, NULL, NULL);
	}
}

/* ---- a new channel ---- */

struct gen_arg {
	struct wstore *store;
	const uint8_t *channel_id;
};

static int store_checkpoint(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct gen_arg *g = arg;
	return wstore_checkpoint_put(g->store, g->channel_id, index, w) ? 0 : -1;
}

static MpSigned *sign_request(struct wallet *w, const struct wchannel *ch,
			      const uint8_t owner_pk[MP_PK_LEN], const uint8_t root[MP_HASH_LEN])
{
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->issue_req_id};
	r.account_id = (ProtobufCBinaryData){MP_ID_LEN, w->account_id};
	r.owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)owner_pk};
	r.chain_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, (uint8_t *)ch->nonce};
	r.root = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)root};
	r.n = ch->n;
	r.unit_value = ch->unit_value;
	r.currency = (char *)ch->currency;
	if (!wallet_id_is_zero(ch->holder0)) /* else unbound: no holder0 */
		r.holder0 = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->holder0};
	r.pay_until_days = ch->days;
	return mp_stmt_sign(&w->account_key, MP_STMT_ISSUE_REQUEST, &r.base);
}

/* Secrets, chain, checkpoints and the signed request, durably, in one transaction (with
 * in_tx's writes, if any). */
static const char *create_channel(struct wallet *w, struct wchannel *ch, wallet_issue_tx_fn in_tx,
				  void *arg)
{
	uint8_t chain_seed[MP_SEED_LEN], owner_seed[MP_SK_LEN], root[MP_HASH_LEN];
	struct mp_key owner = {0};
	if (!mp_random_bytes(ch->issue_req_id, MP_ID_LEN) ||
	    !mp_random_bytes(chain_seed, MP_SEED_LEN) ||
	    !mp_random_bytes(ch->nonce, MP_NONCE_LEN) || !mp_key_generate(&owner, owner_seed))
		return "the random generator failed";
	mp_channel_id(w->account_id, ch->issue_req_id, ch->channel_id);
	const char *why = NULL;
	struct gen_arg g = {w->store, ch->channel_id};
	if (!wstore_begin(w->store)) {
		why = "cannot write to the store";
	} else if (mp_chain_generate(w->hasher, chain_seed, ch->nonce, ch->n, ch->interval,
				     store_checkpoint, &g, root) != 0) {
		why = "cannot store the chain's checkpoints";
	} else if (!(ch->request = sign_request(w, ch, owner.pk, root))) {
		why = "cannot sign the IssueRequest";
	} else if (!wstore_channel_insert(w->store, ch, chain_seed, owner_seed) ||
		   (in_tx && !in_tx(arg, ch)) || !wstore_commit(w->store)) {
		why = "cannot store the channel";
	}
	if (why)
		wstore_rollback(w->store);
	OPENSSL_cleanse(chain_seed, sizeof(chain_seed));
	OPENSSL_cleanse(owner_seed, sizeof(owner_seed));
	mp_key_free(&owner);
	return why;
}

static bool issue_params(struct mp_admin_req *req, json_t *params, struct wchannel *ch)
{
	uint64_t n, unit_value, days, escrow;
	/* Without merchant_id the channel is unbound: the first merchant paid binds it. */
	if ((json_object_get(params, "merchant_id") &&
	     !wallet_param_hex(req, params, "merchant_id", ch->holder0, MP_ID_LEN, true, NULL)) ||
	    !mp_admin_param_u64(req, params, "n", &n, true) ||
	    !mp_admin_param_u64(req, params, "unit_value", &unit_value, true) ||
	    !mp_admin_param_u64(req, params, "days", &days, true))
		return false;
	memcpy(ch->holder, ch->holder0, MP_ID_LEN);
	if (n < 1 || n > WALLET_N_MAX) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "n must be 1 .. %u", WALLET_N_MAX);
		return false;
	}
	if (unit_value < 1 || !mp_amount_mul(n, unit_value, &escrow)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
			      "unit_value must be >= 1 and n * unit_value at most 2^63-1");
		return false;
	}
	if (days != 1 && days != 7 && days != 30) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "days must be 1, 7 or 30");
		return false;
	}
	ch->n = (uint32_t)n;
	ch->unit_value = unit_value;
	ch->days = (uint32_t)days;
	return true;
}

/* ch (parameters set, heap) ISSUING: created and stored, then at the end of w->channels; freed
 * and false with *why on failure. */
static bool add_channel(struct wallet *w, struct wchannel *ch, wallet_issue_tx_fn in_tx, void *arg,
			const char **why)
{
	ch->state = WCH_ISSUING;
	ch->interval = w->cfg.checkpoint_interval;
	memcpy(ch->currency, w->cfg.currency, 4);
	if ((*why = create_channel(w, ch, in_tx, arg))) {
		wallet_channel_free(ch);
		return false;
	}
	ch->seg_len = ch->n;
	memcpy(ch->chain_key, ch->channel_id, MP_ID_LEN);
	ch->claim_state = -1;
	wchain_init(&ch->chain, ch->nonce, ch->seg_len, ch->interval);
	struct wchannel **tail = &w->channels;
	while (*tail)
		tail = &(*tail)->next;
	*tail = ch;
	char hex[MP_HEX_ID_LEN + 1];
	channel_hex(ch, hex);
	log_info("channel %s: ISSUING (n %u, unit_value %llu, %u days)", hex, ch->n,
		 (unsigned long long)ch->unit_value, ch->days);
	return true;
}

void wallet_admin_issue(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	if (w->stopping) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE, "issue: walletd is stopping");
		return;
	}
	if (!w->registered) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "issue: the wallet is not registered (call register)");
		return;
	}
	struct wchannel *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	if (!issue_params(req, params, ch)) {
		free(ch);
		return;
	}
	const char *why;
	if (!add_channel(w, ch, NULL, NULL, &why)) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "issue: %s", why);
		return;
	}
	issue_send(w, ch, req, NULL, NULL);
}

struct wchannel *wallet_issue_new(struct wallet *w, const struct wallet_issue_spec *spec,
				  wallet_issue_tx_fn in_tx, void *arg, const char **why)
{
	struct wchannel *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		*why = "out of memory";
		return NULL;
	}
	memcpy(ch->holder0, spec->holder0, MP_ID_LEN);
	memcpy(ch->holder, spec->holder0, MP_ID_LEN);
	ch->n = spec->n;
	ch->unit_value = spec->unit_value;
	ch->days = spec->days;
	return add_channel(w, ch, in_tx, arg, why) ? ch : NULL;
}

void wallet_issue_send(struct wallet *w, struct wchannel *ch, wallet_issue_fn done, void *arg)
{
	issue_send(w, ch, NULL, done, arg);
}

void wallet_admin_issue_retry(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t id[MP_ID_LEN];
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL))
		return;
	struct wchannel *ch = wallet_channel_find(w, id);
	if (!ch) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "issue.retry: no such channel in this wallet");
		return;
	}
	switch (ch->state) {
	case WCH_ACTIVE:
	case WCH_TRANSFERRING:
	case WCH_TRANSFERRED_OUT:
	case WCH_CLOSING:
	case WCH_CLOSED:
	case WCH_RELEASED:
		mp_admin_reply(req, issue_result(ch, NULL));
		return;
	case WCH_FAILED:
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "issue.retry: the broker refused this issue: %s",
			      ch->detail ? ch->detail : "FAILED");
		return;
	case WCH_ISSUING:
		issue_send(w, ch, req, NULL, NULL);
		return;
	}
}
