#include "conflicts.h"

#include <jansson.h>
#include <stdlib.h>

#include "admin.h"
#include "db.h"

static json_t *hex_or_null(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *blob = db_get_blob(res, row, col, &len);
	json_t *out = blob ? mp_json_hex(blob, len) : json_null();
	free(blob);
	return out;
}

static json_t *int_or_null(const PGresult *res, int row, const char *col)
{
	return db_is_null(res, row, col) ? json_null() : json_integer(db_get_i64(res, row, col));
}

static json_t *conflict_json(const PGresult *res, int i)
{
	const char *kind = db_get_text(res, i, "kind");
	const char *detail = db_get_text(res, i, "detail");
	return json_pack(
	    "{s:I,s:s,s:o,s:I,s:o,s:o,s:o,s:s,s:o,s:o,s:I}", "id",
	    (json_int_t)db_get_i64(res, i, "conflict_id"), "kind", kind ? kind : "", "channel",
	    hex_or_null(res, i, "channel_id"), "hseq", (json_int_t)db_get_i64(res, i, "hseq"),
	    "liable", hex_or_null(res, i, "liable_mid"), "claimant",
	    hex_or_null(res, i, "claimant_mid"), "claim_index", int_or_null(res, i, "claim_index"),
	    "detail", detail ? detail : "", "stmt_a", hex_or_null(res, i, "stmt_a"), "stmt_b",
	    hex_or_null(res, i, "stmt_b"), "created_at",
	    (json_int_t)db_get_i64(res, i, "created_at"));
}

void conflicts_render(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	json_t *list = json_array();
	for (int i = 0; list && i < PQntuples(res); i++) {
		json_t *item = conflict_json(res, i);
		if (!item || json_array_append_new(list, item) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	if (!list) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o}", "conflicts", list));
}
