/* register: RegisterAccount{account_pk} (type 19) to the broker; the account_id it answers is
 * stored. Idempotent: a registered wallet answers its stored id, and the broker answers the same
 * id for the same key. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

struct register_op {
	struct wallet *w;
	struct mp_admin_req *req;
};

static json_t *account_json(const struct wallet *w)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(w->account_id, MP_ID_LEN, hex);
	return json_pack("{s:s}", "account_id", hex);
}

static void on_registered(void *arg, const MpEnvelope *reply, const char *error)
{
	struct register_op *op = arg;
	struct wallet *w = op->w;
	struct mp_admin_req *req = op->req;
	free(op);
	if (!reply) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "register: %s", error);
		return;
	}
	char text[512];
	if (reply->body_case != MP_BODY(REGISTER_ACCOUNT_RESP)) {
		wallet_status_text(reply->body_case == MP_BODY(ERROR) ? reply->error : NULL, text,
				   sizeof(text));
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "register: unexpected answer from the broker: %s", text);
		return;
	}
	const Micropay__V1__RegisterAccountResp *resp = reply->register_account_resp;
	MpCode code = resp->status ? resp->status->code : MP_ST(INTERNAL);
	wallet_broker_time_seen(w, resp->broker_time);
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) {
		wallet_status_text(resp->status, text, sizeof(text));
		mp_admin_fail(req, MP_ADMIN_FAILED, "register refused: %s", text);
		return;
	}
	if (!mp_bytes_len_is(resp->account_id, MP_ID_LEN)) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "register: the broker's account_id is not 16 bytes");
		return;
	}
	if (w->registered) { /* two registrations raced: the broker gives one key one id */
		if (memcmp(w->account_id, resp->account_id.data, MP_ID_LEN) != 0)
			mp_admin_fail(
			    req, MP_ADMIN_FAILED,
			    "register: the broker answered another account_id for our key");
		else
			mp_admin_reply(req, account_json(w));
		return;
	}
	if (!wstore_set_account_id(w->store, resp->account_id.data)) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "register: cannot store the account_id");
		return;
	}
	memcpy(w->account_id, resp->account_id.data, MP_ID_LEN);
	w->registered = true;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(w->account_id, MP_ID_LEN, hex);
	log_info("account %s: registered (%s)", hex, mp_code_name(code));
	mp_admin_reply(req, account_json(w));
}

void wallet_admin_register(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	if (w->registered) {
		mp_admin_reply(req, account_json(w));
		return;
	}
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, w->account_key.pk};
	MpSigned *stmt = mp_stmt_sign(&w->account_key, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	struct register_op *op = calloc(1, sizeof(*op));
	char err[256];
	if (!stmt || !op) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "register: cannot sign RegisterAccount");
		free(op);
	} else {
		*op = (struct register_op){w, req};
		if (!wallet_broker_send(w, MP_BODY(REGISTER_ACCOUNT_REQ), stmt, on_registered, op,
					err, sizeof(err))) {
			free(op);
			mp_admin_fail(req, MP_ADMIN_FAILED, "register: %s", err);
		}
	}
	mp_stmt_free(stmt);
}
