/* The clock guard's probe for walletd (common/clock_guard.h): the broker's time, asked with
 * RegisterAccount for our own key. The broker answers a registered key DUPLICATE_OK with the
 * same account id and its broker_time, and stores nothing new, so the probe changes nothing.
 * An unregistered wallet does not probe (its registration is the operator's decision); it
 * learns the broker's time from `register` and `issue`. One probe at a time:
 *
 *   IDLE --guard asks, registered, not stopping--> SENT --answer or failure--> IDLE */
#include "log.h"
#include "stmt.h"
#include "wallet.h"

static void on_probe_answer(void *arg, const MpEnvelope *reply, const char *error)
{
	struct wallet *w = arg;
	w->clock_probing = false;
	if (!reply) {
		log_warn("clock: cannot ask the broker its time: %s", error);
		return;
	}
	if (reply->body_case != MP_BODY(REGISTER_ACCOUNT_RESP)) {
		log_warn("clock: unexpected answer from the broker to RegisterAccount");
		return;
	}
	wallet_broker_time_seen(w, reply->register_account_resp->broker_time);
}

void wallet_clock_probe(void *arg)
{
	struct wallet *w = arg;
	if (w->clock_probing || w->stopping || !w->registered)
		return;
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, w->account_key.pk};
	MpSigned *stmt = mp_stmt_sign(&w->account_key, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	char err[256] = "cannot sign RegisterAccount";
	w->clock_probing = stmt && wallet_broker_send(w, MP_BODY(REGISTER_ACCOUNT_REQ), stmt,
						      on_probe_answer, w, err, sizeof(err));
	if (!w->clock_probing)
		log_warn("clock: cannot ask the broker its time: %s", err);
	mp_stmt_free(stmt);
}
