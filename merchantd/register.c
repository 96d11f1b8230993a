/* RegisterMerchant -> MerchantCert, at start-up (to confirm a stored cert) and for renewal
 * (merchant_cert.c decides when). The request is signed with the merchant key; the broker answers
 * the same statement with its stored cert, renewed when due, so a lost answer is simply asked
 * again (the redeemer retries on its timer). */
#include "register.h"

#include <stdlib.h>

#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "stmt.h"

struct registration {
	struct merchant *m;
	register_done_fn done;
	void *arg;
};

/* The answer: a cert (new, renewed or the same: confirmed), CONFLICT (stop: no retry can
 * succeed, see merchant_cert.c), or a refusal or no answer (the redeemer asks again later). */
static bool registered(struct merchant *m, const MpEnvelope *env)
{
	const Micropay__V1__RegisterMerchantResp *resp =
	    env && env->body_case == MP_BODY(REGISTER_MERCHANT_RESP) ? env->register_merchant_resp
								     : NULL;
	MpCode code = resp && resp->status ? resp->status->code : MP_ST(MALFORMED);
	const char *detail = resp && resp->status ? resp->status->detail : "";
	if (!env) {
		log_warn("registration with the broker: no answer; will retry");
		return false;
	}
	if (code == MP_ST(CONFLICT)) {
		merchant_cert_conflict(m, resp->merchant_cert, detail);
		return false;
	}
	uint64_t before = m->cert_valid_until;
	if ((code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) || !resp->merchant_cert ||
	    !merchant_accept_cert(m, resp->merchant_cert, true)) {
		log_err("registration with the broker refused: %s %s; will retry",
			mp_code_name(code), detail);
		return false;
	}
	m->cert_confirmed = true;
	if (before == 0)
		log_info("registered with the broker; MerchantCert valid until %llu",
			 (unsigned long long)m->cert_valid_until);
	else if (before != m->cert_valid_until)
		log_info("MerchantCert renewed: valid until %llu (was %llu)",
			 (unsigned long long)m->cert_valid_until, (unsigned long long)before);
	return true;
}

static void on_registered(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct registration *reg = arg;
	bool ok = registered(reg->m, env);
	register_done_fn done = reg->done;
	void *done_arg = reg->arg;
	free(reg);
	done(done_arg, ok);
}

bool merchant_register(struct merchant *m, struct broker_link *l, register_done_fn done, void *arg)
{
	struct registration *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return false;
	*reg = (struct registration){m, done, arg};
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, m->key.pk};
	rm.endpoint = m->cfg.endpoint;
	MpSigned *s = mp_stmt_sign(&m->key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	Micropay__V1__RegisterMerchantReq req = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &req;
	bool sent = s && broker_link_call(l, &env, on_registered, reg) == 0;
	mp_stmt_free(s);
	if (!sent)
		free(reg);
	return sent;
}
