#include "channel_segments.h"

#include <jansson.h>
#include <stdlib.h>

#include "admin.h"
#include "db.h"
#include "util.h"

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

static json_t *segment_json(const PGresult *res, int i)
{
	return json_pack(
	    "{s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b}", "seg_seq",
	    (json_int_t)db_get_i64(res, i, "seg_seq"), "start",
	    (json_int_t)db_get_i64(res, i, "seg_start"), "len",
	    (json_int_t)db_get_i64(res, i, "len"), "owner_pk", hex_or_null(res, i, "owner_pk"),
	    "payout_account", hex_or_null(res, i, "payout_account"), "cap_index",
	    int_or_null(res, i, "cap_index"), "cap_hseq", int_or_null(res, i, "cap_hseq"), "holder",
	    hex_or_null(res, i, "holder"), "noticed", int_or_null(res, i, "noticed_at"), "claimed",
	    int_or_null(res, i, "claimed_at"), "voided", db_get_bool(res, i, "voided"));
}

void channel_segments_render(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	if (PQntuples(res) == 0) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "UNKNOWN_CHANNEL: no such channel");
		return;
	}
	json_t *list = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(list, segment_json(res, i));
	mp_admin_reply(req, json_pack("{s:o,s:o}", "channel", mp_json_hex(extra, MP_ID_LEN),
				      "segments", list));
}
