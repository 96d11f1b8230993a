/* brokerd's paged admin listings (admin_lists.h): one prepared statement each
 * (db_statements.c), read-only. */
#include "admin_lists.h"

#include <stdlib.h>
#include <string.h>

#include "admin_query.h"
#include "broker.h"
#include "db.h"

const struct mp_admin_param admin_ledger_params[] = {
    {"account", MP_ADMIN_T_HEX, true, NULL,
     "the account id, or a merchant id for its available account (32 hex digits)"},
    {"limit", MP_ADMIN_T_UINT, false, "100", "entries per page, 1 .. 1000"},
    {"before", MP_ADMIN_T_UINT, false, "the newest",
     "entries with an entry_id below this (next_before of the previous page)"},
    {NULL},
};

const struct mp_admin_param admin_accounts_params[] = {
    {"kind", MP_ADMIN_T_STRING, false, "every kind",
     "customer, merchant_available, merchant_pending, merchant_bond, escrow, external, "
     "unclaimed or loss_reserve"},
    {"limit", MP_ADMIN_T_UINT, false, "100", "accounts per page, 1 .. 1000"},
    {"after", MP_ADMIN_T_HEX, false, "the first",
     "accounts with an id above this (next_after of the previous page)"},
    {NULL},
};

const struct mp_admin_param admin_channels_params[] = {
    {"state", MP_ADMIN_T_STRING, false, "every state", "OPEN, EXPIRED, CLOSED_EARLY or FINALIZED"},
    {"limit", MP_ADMIN_T_UINT, false, "100", "channels per page, 1 .. 1000"},
    {"after", MP_ADMIN_T_HEX, false, "the first",
     "channels with an id above this (next_after of the previous page)"},
    {NULL},
};

static json_t *hex_col(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *blob = db_is_null(res, row, col) ? NULL : db_get_blob(res, row, col, &len);
	json_t *out = blob ? mp_json_hex(blob, len) : json_null();
	free(blob);
	return out;
}

static json_t *int_col(const PGresult *res, int row, const char *col)
{
	return db_is_null(res, row, col) ? json_null()
					 : json_integer((json_int_t)db_get_i64(res, row, col));
}

/* limit (default ADMIN_LIST_DEFAULT) within 1 .. ADMIN_LIST_MAX; false when answered. */
static bool param_limit(struct mp_admin_req *req, json_t *params, uint32_t *limit)
{
	uint64_t v = ADMIN_LIST_DEFAULT;
	if (!mp_admin_param_u64(req, params, "limit", &v, false))
		return false;
	if (v < 1 || v > ADMIN_LIST_MAX) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "limit",
				    "parameter 'limit' must be 1 .. %d", ADMIN_LIST_MAX);
		return false;
	}
	*limit = (uint32_t)v;
	return true;
}

/* The page's limit travels to the renderer in admin_query's extra bytes. */
static uint32_t extra_limit(const void *extra)
{
	uint32_t limit;
	memcpy(&limit, extra, sizeof(limit));
	return limit;
}

static void render_ledger(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	int rows = PQntuples(res);
	if (rows == 0) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "UNKNOWN_ACCOUNT: no such account or merchant");
		return;
	}
	json_t *entries = json_array();
	for (int i = 0; entries && i < rows && !db_is_null(res, i, "entry_id"); i++) {
		json_t *e = json_pack("{s:I,s:I,s:s,s:o,s:o,s:s,s:o,s:I}", "entry_id",
				      (json_int_t)db_get_i64(res, i, "entry_id"), "txn_id",
				      (json_int_t)db_get_i64(res, i, "txn_id"), "kind",
				      db_get_text(res, i, "kind"), "ref", hex_col(res, i, "ref"),
				      "created_at", int_col(res, i, "created_at"), "direction",
				      db_get_text(res, i, "direction"), "counterparty",
				      hex_col(res, i, "counterparty"), "amount",
				      (json_int_t)db_get_i64(res, i, "amount"));
		if (!e || json_array_append_new(entries, e) != 0) {
			json_decref(entries);
			entries = NULL;
		}
	}
	if (!entries) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	size_t got = json_array_size(entries);
	json_t *next = got == extra_limit(extra)
			   ? json_integer(json_integer_value(
				 json_object_get(json_array_get(entries, got - 1), "entry_id")))
			   : json_null();
	mp_admin_reply(req, json_pack("{s:o,s:s,s:s,s:I,s:o,s:o}", "account",
				      hex_col(res, 0, "account_id"), "kind",
				      db_get_text(res, 0, "account_kind"), "currency",
				      db_get_text(res, 0, "currency"), "balance",
				      (json_int_t)db_get_i64(res, 0, "balance"), "entries", entries,
				      "next_before", next));
}

void admin_account_ledger(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t account[MP_ID_LEN], extra[MP_ID_LEN] = {0};
	uint64_t before = 0;
	uint32_t limit;
	bool paged = json_object_get(params, "before") != NULL;
	if (!mp_admin_param_id(req, params, "account", account, MP_ID_LEN) ||
	    !param_limit(req, params, &limit) ||
	    !mp_admin_param_u64(req, params, "before", &before, false))
		return;
	if (paged && (before == 0 || before > INT64_MAX)) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "before",
				    "parameter 'before' must be 1 .. 2^63-1");
		return;
	}
	memcpy(extra, &limit, sizeof(limit));
	struct db_params p = {0};
	db_param_bytes(&p, account, MP_ID_LEN);
	if (paged)
		db_param_u64(&p, before);
	else
		db_param_text(&p, NULL);
	db_param_u64(&p, limit);
	admin_query(b, req, "account_ledger", &p, render_ledger, extra);
}

/* {KEY: [rows as row_json], next_after: the last row's id, or null on the last page}. */
static void render_page(struct mp_admin_req *req, const PGresult *res, uint32_t limit,
			const char *key, const char *id_col,
			json_t *(*row_json)(const PGresult *res, int row))
{
	int rows = PQntuples(res);
	json_t *list = json_array();
	for (int i = 0; list && i < rows; i++) {
		json_t *item = row_json(res, i);
		if (!item || json_array_append_new(list, item) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	if (!list) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	json_t *next =
	    rows > 0 && (uint32_t)rows == limit ? hex_col(res, rows - 1, id_col) : json_null();
	mp_admin_reply(req, json_pack("{s:o,s:o}", key, list, "next_after", next));
}

static json_t *account_row(const PGresult *res, int i)
{
	return json_pack("{s:o,s:s,s:s,s:I,s:o}", "account", hex_col(res, i, "id"), "kind",
			 db_get_text(res, i, "kind"), "currency", db_get_text(res, i, "currency"),
			 "balance", (json_int_t)db_get_i64(res, i, "balance"), "created_at",
			 int_col(res, i, "created_at"));
}

static void render_accounts(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	render_page(req, res, extra_limit(extra), "accounts", "id", account_row);
}

static json_t *channel_row(const PGresult *res, int i)
{
	return json_pack("{s:o,s:s,s:I,s:I,s:s,s:o,s:o,s:I,s:o,s:o,s:o,s:o}", "channel",
			 hex_col(res, i, "channel_id"), "state", db_get_text(res, i, "state"), "n",
			 (json_int_t)db_get_i64(res, i, "n"), "unit_value",
			 (json_int_t)db_get_i64(res, i, "unit_value"), "currency",
			 db_get_text(res, i, "currency"), "holder0", hex_col(res, i, "holder0"),
			 "account", hex_col(res, i, "account_id"), "escrow_balance",
			 (json_int_t)db_get_i64(res, i, "escrow_balance"), "issued_at",
			 int_col(res, i, "issued_at"), "pay_until", int_col(res, i, "pay_until"),
			 "redeem_until", int_col(res, i, "redeem_until"), "finalize_at",
			 int_col(res, i, "finalize_at"));
}

static void render_channels(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	render_page(req, res, extra_limit(extra), "channels", "channel_id", channel_row);
}

/* filter (text or NULL), after (an id or NULL), limit: the parameters of both listings. */
static bool page_params(struct mp_admin_req *req, json_t *params, const char *filter_key,
			struct db_params *p, uint8_t extra[MP_ID_LEN])
{
	const char *filter;
	uint8_t after[MP_ID_LEN];
	uint32_t limit;
	bool paged = json_object_get(params, "after") != NULL;
	if (!mp_admin_param_str(req, params, filter_key, &filter, false) ||
	    !param_limit(req, params, &limit) ||
	    (paged && !mp_admin_param_id(req, params, "after", after, MP_ID_LEN)))
		return false;
	memset(extra, 0, MP_ID_LEN);
	memcpy(extra, &limit, sizeof(limit));
	db_param_text(p, filter);
	if (paged)
		db_param_bytes(p, after, MP_ID_LEN);
	else
		db_param_text(p, NULL);
	db_param_u64(p, limit);
	return true;
}

void admin_accounts(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct db_params p = {0};
	uint8_t extra[MP_ID_LEN];
	if (page_params(req, params, "kind", &p, extra))
		admin_query(ctx, req, "accounts_list", &p, render_accounts, extra);
}

void admin_channels(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct db_params p = {0};
	uint8_t extra[MP_ID_LEN];
	if (page_params(req, params, "state", &p, extra))
		admin_query(ctx, req, "channels_list", &p, render_channels, extra);
}
