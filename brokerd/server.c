/* The broker's TLS listener: routes each request to its handler file. */
#include <stdio.h>

#include "broker.h"
#include "log.h"
#include "net.h"
#include "ratelimit.h"
#include "tls.h"
#include "unbound_transfer.h"

static void on_envelope(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct broker *b = arg;
	switch (env->body_case) {
	case MP_BODY(REGISTER_ACCOUNT_REQ):
		if (register_limit_admit(b, c, env))
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
	case MP_BODY(BIND_REQ):
		handle_bind(b, c, env);
		return;
	case MP_BODY(CAP_NOTICE_REQ):
		handle_cap_notice(b, c, env);
		return;
	case MP_BODY(SEGMENT_CLAIM_REQ):
		handle_segment_claim(b, c, env);
		return;
	case MP_BODY(REFUND_REQ):
		handle_refund(b, c, env);
		return;
	case MP_BODY(TRANSFER_REQ):
		handle_unbound_transfer(b, c, env);
		return;
	case MP_BODY(DISPUTE_REQ):
		handle_dispute(b, c, env);
		return;
	case MP_BODY(OPEN_DISPUTES_REQ):
		handle_open_disputes(b, c, env);
		return;
	case MP_BODY(DISPUTE_KEY_REQ):
		handle_dispute_key(b, c, env);
		return;
	case MP_BODY(DISPUTE_STATE_REQ):
		handle_dispute_state(b, c, env);
		return;
	case MP_BODY(RELEASE_REQ):
		handle_release(b, c, env);
		return;
	case MP_BODY(FORCED_CLOSES_REQ):
		handle_forced_closes(b, c, env);
		return;
	default:
		handle_unroutable(b, c, env);
		return;
	}
}

/* One listener serves wallets and merchants; the frame maximum is decided per connection
 * (protocol.md section 11: 1 MiB towards wallets, 16 MiB between merchant and broker). Every
 * connection starts with the wallet maximum, and only a peer whose verified client certificate
 * names a merchant gets [limits] max_frame_merchant once the handshake is done. Wallets never
 * present certificates, so no wallet can send a merchant-sized frame, and merchants need no
 * second port (nor operators a second address to publish). */
static void on_open(struct mp_conn *c, void *arg)
{
	struct broker *b = arg;
	uint8_t mid[MP_ID_LEN];
	if (mp_tls_peer_merchant_id(mp_conn_ssl(c), mid))
		mp_conn_set_max_frame(c, b->cfg.max_frame_merchant);
	broker_peer_open(c);
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	broker_peer_close(c);
}

static const struct mp_conn_ops broker_conn_ops = {
    .on_open = on_open,
    .on_envelope = on_envelope,
    .on_close = on_close,
};

bool broker_listen(struct broker *b, const char *host, uint16_t port)
{
	struct mp_net_opts opts = mp_net_limits_opts(&b->cfg.limits, b->cfg.idle_timeout, "broker");
	if (!register_limit_start(b))
		return false;
	b->listener = mp_listen(b->base, b->tls, host, port, &opts, &broker_conn_ops, b);
	return b->listener != NULL;
}
