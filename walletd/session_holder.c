/* What every exchange at the holder other than paying shares (session.h): finding the holder's
 * endpoint, and refusing to go on while in-flight Pays are unresolved. Used by close.c and
 * transfer_send.c. */
#include <stdio.h>

#include "admin.h"
#include "session.h"
#include "stmt.h"
#include "wallet.h"

bool wallet_holder_endpoint(const struct wallet *w, const struct wchannel *ch, char *out,
			    size_t len)
{
	ProtobufCMessage *body = NULL;
	if (!ch->holder_cert ||
	    mp_stmt_open(ch->holder_cert, MP_STMT_MERCHANT_CERT, w->cfg.broker_pk,
			 &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return false;
	snprintf(out, len, "%s", ((Micropay__V1__MerchantCert *)body)->endpoint);
	protobuf_c_message_free_unpacked(body, NULL);
	return true;
}

bool wallet_session_endpoint(struct mp_admin_req *req, json_t *params, const struct wallet *w,
			     const struct wchannel *ch, const char *verb, const char *hint,
			     char *out, size_t len)
{
	const char *given = NULL;
	if (!mp_admin_param_str(req, params, "endpoint", &given, false))
		return false;
	if (given) {
		snprintf(out, len, "%s", given);
		return true;
	}
	if (wallet_holder_endpoint(w, ch, out, len))
		return true;
	mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
		      "%s: the holder's endpoint is not known yet: give endpoint=HOST:PORT%s", verb,
		      hint);
	return false;
}

bool wallet_session_pays_resolved(struct pay_op *s, const struct wchannel *ch, const char *doing)
{
	if (ch->inflight == 0 && ch->sent <= ch->last)
		return true;
	wallet_session_fail(s, "in-flight Pays up to %u are not resolved; not %s", ch->sent, doing);
	return false;
}
