/* The admin method `channel.settlement` (channel_settlement.h). */
#include <jansson.h>

#include "admin.h"
#include "channel_settlement.h"
#include "db.h"
#include "util.h"

static json_t *int_or_null(const PGresult *res, const char *col)
{
	return db_is_null(res, 0, col) ? json_null() : json_integer(db_get_i64(res, 0, col));
}

static json_t *jsonb_or_null(const PGresult *res, const char *col)
{
	json_error_t jerr;
	const char *text = db_is_null(res, 0, col) ? NULL : db_get_text(res, 0, col);
	json_t *v = text ? json_loads(text, 0, &jerr) : NULL;
	return v ? v : json_null();
}

void channel_settlement_render(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	if (PQntuples(res) == 0 || db_is_null(res, 0, "state")) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "UNKNOWN_CHANNEL: no such channel");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "channel",
				      mp_json_hex(extra, MP_ID_LEN), "state",
				      db_get_text(res, 0, "state"), "pay_until",
				      int_or_null(res, "pay_until"), "redeem_until",
				      int_or_null(res, "redeem_until"), "finalize_at",
				      int_or_null(res, "finalize_at"), "expired_at",
				      int_or_null(res, "expired_at"), "close_index",
				      int_or_null(res, "close_index"), "early_refund",
				      int_or_null(res, "early_refund"), "finalization",
				      jsonb_or_null(res, "finalization"), "refund_request",
				      jsonb_or_null(res, "refund_request")));
}
