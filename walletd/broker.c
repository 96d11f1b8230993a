/* One-shot requests to the broker: a fresh TLS connection whose certificate must name "broker"
 * (protocol.md section 3), one request, one answer, close. The whole exchange (connect,
 * handshake, request, answer) has one deadline of [wallet] idle_timeout: a broker that answers
 * nothing, trickles its answer or sends frames answering no request (each byte resets the
 * connection's idle timeout) cannot hold a call, and what waits on it, for ever.
 *
 *   CONNECTING --handshake, CN broker--> SENT --answer--> done (closed)
 *        \--CN not broker / closed / deadline--> failed (closed; the caller keeps its stored
 *            request for a verbatim retry) */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "frame.h"
#include "log.h"
#include "stmt.h"
#include "tls.h"
#include "wallet.h"

struct broker_req {
	struct wallet_op op; /* first: the wallet's list of exchanges in progress */
	struct wallet *w;
	int body;
	MpSigned *stmt;
	ProtobufCMessage *packed; /* SEGMENT_CLAIM_REQ, DISPUTE_REQ: the request, unpacked */
	wallet_broker_fn fn;
	void *arg;
	bool done;
	struct event *deadline; /* the whole exchange's ([wallet] idle_timeout) */
};

void wallet_status_text(const MpStatus *st, char *out, size_t len)
{
	if (!st)
		snprintf(out, len, "no status in the answer");
	else if (st->detail && st->detail[0])
		snprintf(out, len, "%s: %s", mp_code_name(st->code), st->detail);
	else
		snprintf(out, len, "%s", mp_code_name(st->code));
}

static void request_free(struct broker_req *r)
{
	mp_stmt_free(r->stmt);
	if (r->deadline)
		event_free(r->deadline);
	if (r->packed)
		protobuf_c_message_free_unpacked(r->packed, NULL);
	free(r);
}

static void finish(struct broker_req *r, const MpEnvelope *reply, const char *error)
{
	if (r->done)
		return;
	r->done = true;
	r->fn(r->arg, reply, error);
}

static void on_reply(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct broker_req *r = arg;
	if (!env)
		return; /* the connection closed: on_close reports why */
	finish(r, env, NULL);
	mp_conn_close(c, "exchange complete");
}

static void on_open(struct mp_conn *c, void *arg)
{
	struct broker_req *r = arg;
	if (!mp_tls_peer_is_broker(mp_conn_ssl(c))) {
		char cn[128] = "none";
		mp_tls_peer_cn(mp_conn_ssl(c), cn, sizeof(cn));
		log_warn("broker %s: certificate CN '%s' is not 'broker'; sending nothing",
			 mp_conn_peer(c), cn);
		char why[256];
		snprintf(
		    why, sizeof(why),
		    "the server at %s presented certificate CN '%s', not 'broker'; nothing sent",
		    mp_conn_peer(c), cn);
		finish(r, NULL, why);
		mp_conn_close(c, "not the broker");
		return;
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__RegisterAccountReq reg = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	Micropay__V1__IssueReq issue = MICROPAY__V1__ISSUE_REQ__INIT;
	Micropay__V1__TransferReq transfer = MICROPAY__V1__TRANSFER_REQ__INIT;
	Micropay__V1__RefundReq refund = MICROPAY__V1__REFUND_REQ__INIT;
	Micropay__V1__ReleaseReq release = MICROPAY__V1__RELEASE_REQ__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = r->body;
	if (r->body == MP_BODY(SEGMENT_CLAIM_REQ)) {
		env.segment_claim_req = (Micropay__V1__SegmentClaimReq *)r->packed;
	} else if (r->body == MP_BODY(DISPUTE_REQ)) {
		env.dispute_req = (Micropay__V1__DisputeReq *)r->packed;
	} else if (r->body == MP_BODY(TRANSFER_REQ)) { /* an unbound channel's Transfer */
		transfer.transfer = r->stmt;
		env.transfer_req = &transfer;
	} else if (r->body == MP_BODY(REFUND_REQ)) {
		refund.stmt = r->stmt;
		env.refund_req = &refund;
	} else if (r->body == MP_BODY(RELEASE_REQ)) {
		release.stmt = r->stmt;
		env.release_req = &release;
	} else if (r->body == MP_BODY(REGISTER_ACCOUNT_REQ)) {
		reg.stmt = r->stmt;
		env.register_account_req = &reg;
	} else {
		issue.stmt = r->stmt;
		env.issue_req = &issue;
	}
	if (mp_conn_call(c, &env, on_reply, r) != 0) {
		finish(r, NULL, "cannot send the request to the broker");
		mp_conn_close(c, "send failed");
	}
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct broker_req *r = arg;
	char why[600];
	snprintf(why, sizeof(why), "broker %s: %s", mp_conn_peer(c), reason);
	finish(r, NULL, why);
	wallet_op_remove(r->w, &r->op);
	request_free(r);
}

static const struct mp_conn_ops broker_ops = {
    .on_open = on_open,
    .on_close = on_close,
};

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct broker_req *r = arg;
	char why[300];
	snprintf(why, sizeof(why), "no answer from the broker within %u s (idle_timeout)",
		 r->w->cfg.idle_timeout);
	log_warn("broker %s: %s; closing", mp_conn_peer(r->op.conn), why);
	finish(r, NULL, why);
	mp_conn_close(r->op.conn, "no answer in time");
}

/* Connect for r (whose request is set); false (r freed, err filled) if that cannot start. */
static bool broker_connect(struct wallet *w, struct broker_req *r, char *err, size_t errlen)
{
	struct timeval tv = {(time_t)w->cfg.idle_timeout, 0};
	if (!(r->deadline = evtimer_new(w->base, on_deadline, r)) ||
	    evtimer_add(r->deadline, &tv) != 0) {
		snprintf(err, errlen, "cannot arm the deadline of a broker call");
		request_free(r);
		return false;
	}
	struct mp_net_opts opts = {.max_frame = MP_FRAME_MAX_WALLET,
				   .idle_timeout_s = w->cfg.idle_timeout,
				   .name = "broker"};
	r->op.conn = mp_connect(w->base, w->dns, w->tls, w->cfg.broker_host, w->cfg.broker_port,
				&opts, &broker_ops, r);
	if (!r->op.conn) {
		snprintf(err, errlen, "cannot connect to the broker at %s", w->cfg.broker);
		request_free(r);
		return false;
	}
	wallet_op_add(w, &r->op);
	return true;
}

bool wallet_broker_send(struct wallet *w, int body, const MpSigned *stmt, wallet_broker_fn fn,
			void *arg, char *err, size_t errlen)
{
	if (w->stopping) {
		snprintf(err, errlen, "walletd is stopping");
		return false;
	}
	struct broker_req *r = calloc(1, sizeof(*r));
	if (!r || !(r->stmt = mp_stmt_copy(stmt))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	r->w = w;
	r->body = body;
	r->fn = fn;
	r->arg = arg;
	return broker_connect(w, r, err, errlen);
}

static bool send_packed(struct wallet *w, int body, const ProtobufCMessageDescriptor *desc,
			const uint8_t *request, size_t len, wallet_broker_fn fn, void *arg,
			char *err, size_t errlen)
{
	if (w->stopping) {
		snprintf(err, errlen, "walletd is stopping");
		return false;
	}
	struct broker_req *r = calloc(1, sizeof(*r));
	if (r)
		r->packed = mp_strict_unpack(desc, request, len);
	if (!r || !r->packed) {
		free(r);
		snprintf(err, errlen, "the stored %s is unreadable", desc->short_name);
		return false;
	}
	r->w = w;
	r->body = body;
	r->fn = fn;
	r->arg = arg;
	return broker_connect(w, r, err, errlen);
}

bool wallet_broker_send_claim(struct wallet *w, const uint8_t *request, size_t len,
			      wallet_broker_fn fn, void *arg, char *err, size_t errlen)
{
	return send_packed(w, MP_BODY(SEGMENT_CLAIM_REQ),
			   &micropay__v1__segment_claim_req__descriptor, request, len, fn, arg, err,
			   errlen);
}

bool wallet_broker_send_dispute(struct wallet *w, const uint8_t *request, size_t len,
				wallet_broker_fn fn, void *arg, char *err, size_t errlen)
{
	return send_packed(w, MP_BODY(DISPUTE_REQ), &micropay__v1__dispute_req__descriptor, request,
			   len, fn, arg, err, errlen);
}
