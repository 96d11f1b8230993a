/* Replies to requests answered asynchronously (after a database round trip). */
#include <stdlib.h>

#include "broker.h"
#include "log.h"
#include "util.h"

struct broker_call *broker_call_new(struct broker *b, struct mp_conn *conn, const MpEnvelope *req)
{
	struct broker_call *call = calloc(1, sizeof(*call));
	if (!call)
		return NULL;
	call->b = b;
	call->conn = conn;
	call->request_id = req->request_id;
	mp_conn_ref(conn);
	return call;
}

void broker_call_free(struct broker_call *call)
{
	mp_conn_unref(call->conn);
	free(call);
}

void broker_call_reply(struct broker_call *call, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = call->request_id;
	if (!mp_conn_is_open(call->conn))
		log_info("%s: connection gone before the answer to request %llu",
			 mp_conn_peer(call->conn), (unsigned long long)call->request_id);
	else if (mp_conn_send(call->conn, env) != 0) /* never leave a request unanswered */
		mp_conn_close(call->conn, "cannot send the answer to request %llu",
			      (unsigned long long)call->request_id);
	broker_call_free(call);
}

MpStatus *broker_status(MpStatus *st, MpCode code, const char *detail)
{
	micropay__v1__status__init(st);
	st->code = code;
	st->detail = (char *)(detail ? detail : "");
	return st;
}
