/* brokerd's admin methods for money out: payouts, merchant bonds and the loss reserve. Each is
 * one SQL function (brokerd/sql/0013-payouts-bonds.sql) that decides under row locks and
 * writes its ledger rows in the same transaction; the caller's id (payout_id, op_id, fund_id)
 * makes a retry answer the stored result instead of moving money twice. */
#include "admin_money.h"

#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "admin_query.h"
#include "amount.h"
#include "broker.h"
#include "db.h"
#include "proto.h"

static json_t *hex_col(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *blob = db_get_blob(res, row, col, &len);
	json_t *out = blob ? mp_json_hex(blob, len) : json_null();
	free(blob);
	return out;
}

/* The caller-chosen id `key` of a money operation: required (a default would not be the same
 * on a retry, so a lost answer would move money twice). */
static bool param_op_id(struct mp_admin_req *req, json_t *params, const char *key,
			uint8_t out[MP_ID_LEN])
{
	if (!json_object_get(params, key)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
			      "parameter '%s' is required: 32 hex digits chosen by the caller "
			      "(e.g. openssl rand -hex 16), the same on every retry",
			      key);
		return false;
	}
	return mp_admin_param_id(req, params, key, out, MP_ID_LEN);
}

static bool param_amount(struct mp_admin_req *req, json_t *params, uint64_t *amount)
{
	if (!mp_admin_param_u64(req, params, "amount", amount, true))
		return false;
	if (*amount == 0 || !mp_amount_valid(*amount)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "amount must be 1 .. 2^63-1");
		return false;
	}
	return true;
}

/* OK and DUPLICATE_OK answer; any other status fails with its name and the SQL's detail. */
static bool status_ok(struct mp_admin_req *req, const PGresult *res, MpCode *code)
{
	*code = (MpCode)db_get_i64(res, 0, "status");
	if (*code == MP_ST(OK) || *code == MP_ST(DUPLICATE_OK))
		return true;
	const char *detail = db_get_text(res, 0, "detail");
	mp_admin_fail(req, MP_ADMIN_FAILED, "%s: %s", mp_code_name(*code), detail ? detail : "");
	return false;
}

static void render_payout(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	if (code == MP_ST(CONFLICT)) {
		char hex[2 * MP_ID_LEN + 1];
		size_t len = 0;
		uint8_t *acc = db_get_blob(res, 0, "account_id", &len);
		mp_hex_encode(acc, len == MP_ID_LEN ? len : 0, hex);
		mp_admin_fail(
		    req, MP_ADMIN_FAILED,
		    "CONFLICT: payout_id already used: stored payout of %lld from account "
		    "%s",
		    (long long)db_get_i64(res, 0, "amount"), hex);
		free(acc);
		return;
	}
	if (!status_ok(req, res, &code))
		return;
	mp_admin_reply(req, json_pack("{s:s,s:b,s:o,s:o,s:I,s:I,s:I}", "status", mp_code_name(code),
				      "duplicate", code == MP_ST(DUPLICATE_OK), "payout_id",
				      mp_json_hex(extra, MP_ID_LEN), "account",
				      hex_col(res, 0, "account_id"), "amount",
				      (json_int_t)db_get_i64(res, 0, "amount"), "balance",
				      (json_int_t)db_get_i64(res, 0, "balance"), "created_at",
				      (json_int_t)db_get_i64(res, 0, "created_at")));
}

void admin_account_payout(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t account[MP_ID_LEN], payout_id[MP_ID_LEN];
	uint64_t amount;
	if (!param_op_id(req, params, "payout_id", payout_id) ||
	    !mp_admin_param_id(req, params, "account", account, MP_ID_LEN) ||
	    !param_amount(req, params, &amount))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, payout_id, MP_ID_LEN);
	db_param_bytes(&p, account, MP_ID_LEN);
	db_param_u64(&p, amount);
	admin_query(b, req, "payout", &p, render_payout, payout_id);
}

static void render_payouts(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	json_t *list = json_array();
	for (int i = 0; list && i < PQntuples(res); i++) {
		json_t *item = json_pack(
		    "{s:o,s:o,s:s,s:I,s:I}", "payout_id", hex_col(res, i, "payout_id"), "account",
		    hex_col(res, i, "account_id"), "kind", db_get_text(res, i, "kind"), "amount",
		    (json_int_t)db_get_i64(res, i, "amount"), "created_at",
		    (json_int_t)db_get_i64(res, i, "created_at"));
		if (!item || json_array_append_new(list, item) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	if (!list) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o}", "payouts", list));
}

void admin_payouts(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t account[MP_ID_LEN];
	bool filter = params && json_object_get(params, "account");
	if (filter && !mp_admin_param_id(req, params, "account", account, MP_ID_LEN))
		return;
	struct db_params p = {0};
	if (filter)
		db_param_bytes(&p, account, MP_ID_LEN);
	else
		db_param_text(&p, NULL);
	admin_query(b, req, "payouts_list", &p, render_payouts, NULL);
}

static void render_bond(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	MpCode code;
	if (!status_ok(req, res, &code))
		return;
	mp_admin_reply(req, json_pack("{s:s,s:b,s:o,s:I,s:I}", "status", mp_code_name(code),
				      "duplicate", code == MP_ST(DUPLICATE_OK), "op_id",
				      mp_json_hex(extra, MP_ID_LEN), "bond",
				      (json_int_t)db_get_i64(res, 0, "bond"), "available",
				      (json_int_t)db_get_i64(res, 0, "available")));
}

static void bond_move(struct mp_admin_req *req, json_t *params, struct broker *b,
		      const char *direction)
{
	uint8_t merchant[MP_ID_LEN], op_id[MP_ID_LEN];
	uint64_t amount;
	if (!param_op_id(req, params, "op_id", op_id) ||
	    !mp_admin_param_id(req, params, "merchant", merchant, MP_ID_LEN) ||
	    !param_amount(req, params, &amount))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, op_id, MP_ID_LEN);
	db_param_bytes(&p, merchant, MP_ID_LEN);
	db_param_u64(&p, amount);
	db_param_text(&p, direction);
	admin_query(b, req, "bond_move", &p, render_bond, op_id);
}

void admin_bond_post(struct mp_admin_req *req, json_t *params, void *ctx)
{
	bond_move(req, params, ctx, "post");
}

void admin_bond_release(struct mp_admin_req *req, json_t *params, void *ctx)
{
	bond_move(req, params, ctx, "release");
}

static void render_reserve(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	MpCode code;
	if (!status_ok(req, res, &code))
		return;
	mp_admin_reply(req, json_pack("{s:s,s:o,s:I}", "status", mp_code_name(code), "fund_id",
				      mp_json_hex(extra, MP_ID_LEN), "balance",
				      (json_int_t)db_get_i64(res, 0, "balance")));
}

void admin_loss_reserve_fund(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t fund_id[MP_ID_LEN];
	uint64_t amount;
	if (!param_op_id(req, params, "fund_id", fund_id) || !param_amount(req, params, &amount))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, fund_id, MP_ID_LEN);
	db_param_text(&p, b->cfg.currency);
	db_param_u64(&p, amount);
	admin_query(b, req, "loss_reserve_fund", &p, render_reserve, fund_id);
}
