/* The wallet-facing TLS listener: routes Open, Pay, HandoffReq, TransferReq, CloseReq,
 * ReceiptReq, ChunkReq, OfferReq and KeyReq. */
#include <stdlib.h>

#include "log.h"
#include "merchant.h"

MpStatus *merchant_status(MpStatus *st, MpCode code, const char *detail)
{
	micropay__v1__status__init(st);
	st->code = code;
	st->detail = (char *)(detail ? detail : "");
	return st;
}

void merchant_send(struct mp_conn *c, uint64_t request_id, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = request_id;
	if (mp_conn_send(c, env) != 0) /* never leave a request unanswered */
		mp_conn_close(c, "cannot send the answer to request %llu",
			      (unsigned long long)request_id);
}

static void on_open(struct mp_conn *c, void *arg)
{
	mp_conn_set_data(c, merchant_peer_new());
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	free(mp_conn_data(c));
	mp_conn_set_data(c, NULL);
}

static void on_envelope(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct merchant *m = arg;
	switch (env->body_case) {
	case MP_BODY(PAY_REQ):
		handle_pay(m, c, env);
		return;
	case MP_BODY(OPEN_REQ):
		handle_open(m, c, env);
		return;
	case MP_BODY(HANDOFF_REQ):
		handle_handoff(m, c, env);
		return;
	case MP_BODY(TRANSFER_REQ):
		handle_transfer(m, c, env);
		return;
	case MP_BODY(CLOSE_REQ):
		handle_close(m, c, env);
		return;
	case MP_BODY(RECEIPT_REQ):
		handle_receipt(m, c, env);
		return;
	case MP_BODY(CHUNK_REQ):
		handle_chunk(m, c, env);
		return;
	case MP_BODY(OFFER_REQ):
		handle_offer(m, c, env);
		return;
	case MP_BODY(KEY_REQ):
		handle_key(m, c, env);
		return;
	case MP_BODY(OFFER_CANCEL_REQ):
		handle_offer_cancel(m, c, env);
		return;
	default: {
		MpStatus st;
		MpEnvelope out = MICROPAY__V1__ENVELOPE__INIT;
		out.body_case = MP_BODY(ERROR);
		out.error = merchant_status(&st, MP_ST(MALFORMED), "not a merchant request");
		log_info("%s: request kind %d is not served here", mp_conn_peer(c),
			 (int)env->body_case);
		merchant_send(c, env->request_id, &out);
		return;
	}
	}
}

static const struct mp_conn_ops wallet_ops = {
    .on_open = on_open,
    .on_envelope = on_envelope,
    .on_close = on_close,
};

bool merchant_listen(struct merchant *m)
{
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(m->cfg.listen, host, sizeof(host), &port)) {
		log_err("config: [merchant] listen must be host:port, not '%s'", m->cfg.listen);
		return false;
	}
	struct mp_net_opts opts = mp_net_limits_opts(&m->cfg.limits, m->cfg.idle_timeout, "wallet");
	m->listener = mp_listen(m->base, m->server_tls, host, port, &opts, &wallet_ops, m);
	return m->listener != NULL;
}
