/* RegisterAccount costs the peer nothing and the broker a database row: admit it within
 * [limits] register_rate per minute per peer address (bursts of register_burst, ratelimit.c);
 * above that answer LIMIT with the limit in the detail, log it and count it. */
#include <stdio.h>

#include "broker.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

bool register_limit_start(struct broker *b)
{
	b->register_limit.buckets = ratelimit_new(b->cfg.register_rate, b->cfg.register_burst);
	if (!b->register_limit.buckets)
		log_err("RegisterAccount rate limit: cannot create its table");
	return b->register_limit.buckets != NULL;
}

void register_limit_stop(struct broker *b)
{
	ratelimit_free(b->register_limit.buckets);
	b->register_limit.buckets = NULL;
}

/* A peer over the limit keeps sending: one log line a second says how many were refused. */
static void log_refusal(struct broker *b, struct mp_conn *c)
{
	struct register_limit *rl = &b->register_limit;
	uint64_t now = mp_monotonic_s();
	if (now == rl->logged_at) {
		rl->unlogged++;
		return;
	}
	log_warn("%s: RegisterAccount refused: LIMIT, more than %u per minute (bursts of %u) from "
		 "this address (register_rate); %llu more refused since the last such line",
		 mp_conn_peer(c), b->cfg.register_rate, b->cfg.register_burst,
		 (unsigned long long)rl->unlogged);
	rl->logged_at = now;
	rl->unlogged = 0;
}

bool register_limit_admit(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct register_limit *rl = &b->register_limit;
	if (ratelimit_take(rl->buckets, mp_conn_peer_addr(c), ratelimit_now_ms()))
		return true;
	rl->refused++;
	log_refusal(b, c);
	char detail[128];
	snprintf(detail, sizeof(detail),
		 "RegisterAccount rate per address: at most %u per minute, bursts of %u",
		 b->cfg.register_rate, b->cfg.register_burst);
	Micropay__V1__RegisterAccountResp resp = MICROPAY__V1__REGISTER_ACCOUNT_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, MP_ST(LIMIT), detail);
	resp.broker_time = mp_clock_now(&b->clock);
	MpEnvelope out = MICROPAY__V1__ENVELOPE__INIT;
	out.version = MP_PROTOCOL_VERSION;
	out.request_id = env->request_id;
	out.body_case = MP_BODY(REGISTER_ACCOUNT_RESP);
	out.register_account_resp = &resp;
	mp_conn_send(c, &out);
	return false;
}
