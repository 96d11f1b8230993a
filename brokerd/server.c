/* The broker's TLS listener: routes each request to its handler file. */
#include "broker.h"
#include "log.h"
#include "net.h"

static void reply_unroutable(struct mp_conn *c, const MpEnvelope *env, const char *why)
{
	MpStatus st;
	MpEnvelope out = MICROPAY__V1__ENVELOPE__INIT;
	out.version = MP_PROTOCOL_VERSION;
	out.request_id = env->request_id;
	out.body_case = MP_BODY(ERROR);
	out.error = broker_status(&st, MP_ST(MALFORMED), why);
	mp_conn_send(c, &out);
}

static void on_envelope(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct broker *b = arg;
	switch (env->body_case) {
	case MP_BODY(REGISTER_ACCOUNT_REQ):
		handle_register_account(b, c, env);
		return;
	case MP_BODY(REGISTER_MERCHANT_REQ):
		handle_register_merchant(b, c, env);
		return;
	case MP_BODY(ISSUE_REQ):
		handle_issue(b, c, env);
		return;
	case MP_BODY(REDEEM_REQ):
		handle_redeem(b, c, env);
		return;
	default:
		log_info("%s: request %llu of kind %d is not served by the broker", mp_conn_peer(c),
			 (unsigned long long)env->request_id, (int)env->body_case);
		reply_unroutable(c, env, "not a broker request");
		return;
	}
}

static const struct mp_conn_ops broker_conn_ops = {
    .on_envelope = on_envelope,
};

bool broker_listen(struct broker *b, const char *host, uint16_t port)
{
	struct mp_net_opts opts = {b->cfg.max_frame, b->cfg.idle_timeout, "broker"};
	b->listener = mp_listen(b->base, b->tls, host, port, &opts, &broker_conn_ops, b);
	return b->listener != NULL;
}
