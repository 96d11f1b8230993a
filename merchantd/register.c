/* RegisterMerchant -> MerchantCert, at start-up (to confirm a stored cert) and for renewal
 * (merchant_cert.c decides when). A new or renewed cert is stored on the store thread and used
 * only once durable:
 *
 *   SENT --no answer, refused--> done(false) (the redeemer asks again later)
 *   SENT --CONFLICT--> the daemon stops (merchant_cert_conflict)
 *   SENT --the cert we hold--> done(true)
 *   SENT --a new cert--> STORING --durable: adopted--> done(true); --not--> done(false)
 *
 * The request is signed with the merchant key; the broker answers
 * the same statement with its stored cert, renewed when due, so a lost answer is simply asked
 * again (the redeemer retries on its timer). */
#include "register.h"

#include <stdlib.h>

#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "stmt.h"
#include "store_writes.h"

struct registration {
	struct merchant *m;
	register_done_fn done;
	void *arg;
	uint64_t valid_until, received_at; /* a new cert, being stored */
};

static void finish(struct registration *reg, bool ok)
{
	register_done_fn done = reg->done;
	void *done_arg = reg->arg;
	free(reg);
	done(done_arg, ok);
}

/* Loop: the new cert is durable (or not): only now is it ours to use. */
static void on_cert_stored(void *arg, bool ok)
{
	struct registration *reg = arg;
	struct merchant *m = reg->m;
	if (ok) {
		uint64_t before = m->cert_valid_until;
		merchant_cert_adopt(m, reg->valid_until, reg->received_at);
		m->cert_confirmed = true;
		if (before == 0)
			log_info("registered with the broker; MerchantCert valid until %llu",
				 (unsigned long long)m->cert_valid_until);
		else
			log_info("MerchantCert renewed: valid until %llu (was %llu)",
				 (unsigned long long)m->cert_valid_until,
				 (unsigned long long)before);
	} else {
		log_err("store: cannot record the MerchantCert valid until %llu; will retry",
			(unsigned long long)reg->valid_until);
	}
	finish(reg, ok);
}

enum answer { ANSWER_REFUSED, ANSWER_CONFIRMED, ANSWER_STORING };

/* The answer: a cert (the same: confirmed; new or renewed: stored first), CONFLICT (stop: no
 * retry can succeed, see merchant_cert.c), or a refusal or no answer (the redeemer asks again
 * later). */
static enum answer registered(struct registration *reg, const MpEnvelope *env)
{
	struct merchant *m = reg->m;
	const Micropay__V1__RegisterMerchantResp *resp =
	    env && env->body_case == MP_BODY(REGISTER_MERCHANT_RESP) ? env->register_merchant_resp
								     : NULL;
	MpCode code = resp && resp->status ? resp->status->code : MP_ST(MALFORMED);
	const char *detail = resp && resp->status ? resp->status->detail : "";
	if (resp)
		merchant_broker_time_seen(m, resp->broker_time);
	if (!env) {
		log_warn("registration with the broker: no answer; will retry");
		return ANSWER_REFUSED;
	}
	if (code == MP_ST(CONFLICT)) {
		merchant_cert_conflict(m, resp->merchant_cert, detail);
		return ANSWER_REFUSED;
	}
	if ((code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) || !resp->merchant_cert ||
	    !merchant_cert_check(m, resp->merchant_cert, &reg->valid_until)) {
		log_err("registration with the broker refused: %s %s; will retry",
			mp_code_name(code), detail);
		return ANSWER_REFUSED;
	}
	if (reg->valid_until == m->cert_valid_until) {
		m->cert_confirmed = true;
		return ANSWER_CONFIRMED;
	}
	size_t len;
	uint8_t *bytes = mp_stmt_encode(resp->merchant_cert, &len);
	reg->received_at = mp_clock_now(&reg->m->clock);
	bool queued =
	    bytes && store_write_cert(m, bytes, len, reg->received_at, on_cert_stored, reg);
	free(bytes);
	if (!queued)
		log_err("store: cannot queue the MerchantCert valid until %llu; will retry",
			(unsigned long long)reg->valid_until);
	return queued ? ANSWER_STORING : ANSWER_REFUSED;
}

static void on_registered(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct registration *reg = arg;
	switch (registered(reg, env)) {
	case ANSWER_REFUSED:
		finish(reg, false);
		return;
	case ANSWER_CONFIRMED:
		finish(reg, true);
		return;
	case ANSWER_STORING:
		return; /* on_cert_stored finishes */
	}
}

bool merchant_register_sign(struct merchant *m)
{
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, m->key.pk};
	rm.endpoint = m->cfg.endpoint;
	m->registration = mp_stmt_sign(&m->key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	if (!m->registration)
		log_err("cannot sign our RegisterMerchant");
	return m->registration != NULL;
}

bool merchant_register(struct merchant *m, struct broker_link *l, register_done_fn done, void *arg)
{
	struct registration *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return false;
	*reg = (struct registration){.m = m, .done = done, .arg = arg};
	Micropay__V1__RegisterMerchantReq req = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	req.stmt = m->registration;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &req;
	bool sent = m->registration && broker_link_call(l, &env, on_registered, reg) == 0;
	if (!sent)
		free(reg);
	return sent;
}
