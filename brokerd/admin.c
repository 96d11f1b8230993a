/* brokerd's admin socket: status, metrics, accounts and their ledger entries, funding, channels
 * and their segments, audit, conflicts, shutdown. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "admin_lists.h"
#include "admin_money.h"
#include "admin_query.h"
#include "clock.h"
#include "amount.h"
#include "broker.h"
#include "channel_segments.h"
#include "channel_settlement.h"
#include "conflicts.h"
#include "db.h"
#include "drain.h"
#include "admin_service.h"
#include "reload.h"
#include "log.h"
#include "metrics_admin.h"
#include "sweep.h"
#include "util.h"
#include "workers.h"

static json_t *blob_json(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *blob = db_get_blob(res, row, col, &len);
	json_t *out = blob ? mp_json_hex(blob, len) : json_null();
	free(blob);
	return out;
}

static void admin_status(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	const struct broker_stats *s = &b->stats;
	mp_admin_reply(
	    req, json_pack("{s:s,s:s,s:o,s:o,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
			   "daemon", "brokerd", "currency", b->cfg.currency, "broker_pk",
			   mp_json_hex(b->key.pk, MP_PK_LEN), "broker_key_id",
			   mp_json_hex(b->key_id, MP_KEY_ID_LEN), "time",
			   (json_int_t)mp_clock_now(&b->clock), "uptime",
			   (json_int_t)(mp_monotonic_s() - b->started_mono), "counters",
			   "accounts_registered", (json_int_t)s->accounts_registered,
			   "merchants_registered", (json_int_t)s->merchants_registered,
			   "merchant_certs_renewed", (json_int_t)s->merchant_certs_renewed,
			   "channels_issued", (json_int_t)s->channels_issued, "issue_duplicates",
			   (json_int_t)s->issue_duplicates, "redeems", (json_int_t)s->redeems,
			   "claims_credited", (json_int_t)s->claims_credited, "requests_refused",
			   (json_int_t)s->requests_refused));
}

static void admin_metrics(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	mp_admin_metrics_reply(req, b->metrics);
}

static void on_admin_done(const PGresult *res, const char *error, void *arg);

struct admin_query {
	struct mp_admin_req *req;
	void (*render)(struct mp_admin_req *req, const PGresult *res, void *extra);
	uint8_t extra[MP_ID_LEN];
};

void admin_query(struct broker *b, struct mp_admin_req *req, const char *statement,
		 const struct db_params *p,
		 void (*render)(struct mp_admin_req *, const PGresult *, void *),
		 const uint8_t *extra)
{
	struct admin_query *q = calloc(1, sizeof(*q));
	if (!q) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	q->req = req;
	q->render = render;
	if (extra)
		memcpy(q->extra, extra, MP_ID_LEN);
	const char *refused = db_call(b->db, statement, p, on_admin_done, q);
	if (refused) {
		free(q);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "%s", refused);
	}
}

static void on_admin_done(const PGresult *res, const char *error, void *arg)
{
	struct admin_query *q = arg;
	if (!res)
		mp_admin_fail(q->req, MP_ADMIN_FAILED, "%s", error ? error : "no result");
	else
		q->render(q->req, res, q->extra);
	free(q);
}

static void render_merchant_created(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	mp_admin_reply(req, json_pack("{s:s,s:o}", "kind", "merchant", "merchant_id",
				      mp_json_hex(extra, MP_ID_LEN)));
}

static void admin_account_create(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	const char *kind;
	uint64_t bond = 0;
	if (!mp_admin_param_str(req, params, "kind", &kind, true) ||
	    !mp_admin_param_u64(req, params, "bond", &bond, false))
		return;
	if (strcmp(kind, "merchant") != 0) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
			      "kind must be 'merchant' (customers register from their wallet)");
		return;
	}
	if (bond != 0) {
		mp_admin_fail(
		    req, MP_ADMIN_BAD_PARAMS,
		    "a bond is money: create the merchant, fund its available account and "
		    "post the bond with bond.post");
		return;
	}
	uint8_t mid[MP_ID_LEN], avail[MP_ID_LEN], pending[MP_ID_LEN];
	if (!mp_random_bytes(mid, MP_ID_LEN) || !mp_random_bytes(avail, MP_ID_LEN) ||
	    !mp_random_bytes(pending, MP_ID_LEN)) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "random generator failed");
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, mid, MP_ID_LEN);
	db_param_bytes(&p, avail, MP_ID_LEN);
	db_param_bytes(&p, pending, MP_ID_LEN);
	db_param_text(&p, b->cfg.currency);
	db_param_u64(&p, bond);
	admin_query(b, req, "create_merchant", &p, render_merchant_created, mid);
}

static void render_funded(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) {
		const char *detail = db_get_text(res, 0, "detail");
		mp_admin_fail(req, MP_ADMIN_FAILED, "%s: %s", mp_code_name(code),
			      detail ? detail : "");
		return;
	}
	mp_admin_reply(req, json_pack("{s:s,s:o,s:I}", "status", mp_code_name(code), "fund_id",
				      mp_json_hex(extra, MP_ID_LEN), "balance",
				      (json_int_t)db_get_i64(res, 0, "balance")));
}

static void admin_account_fund(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t account[MP_ID_LEN], fund_id[MP_ID_LEN];
	uint64_t amount;
	/* fund_id is chosen by the caller and reused on retry, so that a funding whose answer
	 * was lost credits once: there is no default (one made up here would credit twice). */
	if (!json_object_get(params, "fund_id")) {
		mp_admin_fail(
		    req, MP_ADMIN_BAD_PARAMS,
		    "parameter 'fund_id' is required: 32 hex digits chosen by the caller "
		    "(e.g. openssl rand -hex 16), the same on every retry of this funding");
		return;
	}
	if (!mp_admin_param_id(req, params, "account", account, MP_ID_LEN) ||
	    !mp_admin_param_u64(req, params, "amount", &amount, true) ||
	    !mp_admin_param_id(req, params, "fund_id", fund_id, MP_ID_LEN))
		return;
	if (amount == 0 || !mp_amount_valid(amount)) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "amount must be 1 .. 2^63-1");
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, fund_id, MP_ID_LEN);
	db_param_bytes(&p, account, MP_ID_LEN);
	db_param_u64(&p, amount);
	admin_query(b, req, "fund", &p, render_funded, fund_id);
}

static void render_account(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	int rows = PQntuples(res);
	if (rows == 0) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "UNKNOWN_ACCOUNT: no such account or merchant");
		return;
	}
	json_t *out = json_pack(
	    "{s:o,s:o,s:s,s:s,s:I}", "account", mp_json_hex(extra, MP_ID_LEN), "account_id",
	    blob_json(res, 0, "account_id"), "kind", db_get_text(res, 0, "kind"), "currency",
	    db_get_text(res, 0, "currency"), "balance", (json_int_t)db_get_i64(res, 0, "balance"));
	json_t *related = json_array();
	for (int i = 0; i < rows; i++) {
		if (db_is_null(res, i, "related_account"))
			continue;
		json_array_append_new(related,
				      json_pack("{s:o,s:s,s:I}", "account",
						blob_json(res, i, "related_account"), "kind",
						db_get_text(res, i, "related_kind"), "balance",
						(json_int_t)db_get_i64(res, i, "related_balance")));
	}
	json_object_set_new(out, "related", related);
	mp_admin_reply(req, out);
}

static void admin_account_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t account[MP_ID_LEN];
	if (!mp_admin_param_id(req, params, "account", account, MP_ID_LEN))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, account, MP_ID_LEN);
	admin_query(b, req, "account_show", &p, render_account, account);
}

static void render_channel(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	if (PQntuples(res) == 0 || db_is_null(res, 0, "state")) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "UNKNOWN_CHANNEL: no such channel");
		return;
	}
	json_error_t jerr;
	const char *epochs_text = db_get_text(res, 0, "epochs");
	json_t *epochs = epochs_text ? json_loads(epochs_text, 0, &jerr) : NULL;
	mp_admin_reply(
	    req, json_pack("{s:o,s:s,s:I,s:I,s:s,s:o,s:I,s:I,s:I,s:o}", "channel",
			   mp_json_hex(extra, MP_ID_LEN), "state", db_get_text(res, 0, "state"),
			   "n", (json_int_t)db_get_i64(res, 0, "n"), "unit_value",
			   (json_int_t)db_get_i64(res, 0, "unit_value"), "currency",
			   db_get_text(res, 0, "currency"), "holder0", blob_json(res, 0, "holder0"),
			   "escrow_balance", (json_int_t)db_get_i64(res, 0, "escrow_balance"),
			   "pay_until", (json_int_t)db_get_i64(res, 0, "pay_until"), "redeem_until",
			   (json_int_t)db_get_i64(res, 0, "redeem_until"), "epochs",
			   epochs ? epochs : json_array()));
}

static void admin_channel_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t channel[MP_ID_LEN];
	if (!mp_admin_param_id(req, params, "channel", channel, MP_ID_LEN))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, channel, MP_ID_LEN);
	admin_query(b, req, "channel_show", &p, render_channel, channel);
}

static void admin_channel_segments(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t channel[MP_ID_LEN];
	if (!mp_admin_param_id(req, params, "channel", channel, MP_ID_LEN))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, channel, MP_ID_LEN);
	admin_query(b, req, "channel_segments", &p, channel_segments_render, channel);
}

static void admin_channel_settlement(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	uint8_t channel[MP_ID_LEN];
	if (!mp_admin_param_id(req, params, "channel", channel, MP_ID_LEN))
		return;
	struct db_params p = {0};
	db_param_bytes(&p, channel, MP_ID_LEN);
	admin_query(b, req, "channel_settlement", &p, channel_settlement_render, channel);
}

static void admin_sweep_run(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	sweep_run_admin(b->sweep, req);
}

/* A PostgreSQL text[] in text form ({a,b,...}; the audit's ids need no quoting) as a JSON
 * array of strings. */
static json_t *text_array_json(const char *text)
{
	json_t *out = json_array();
	if (!out || !text || text[0] != '{')
		return out;
	const char *p = text + 1;
	while (*p && *p != '}') {
		size_t len = strcspn(p, ",}");
		json_array_append_new(out, json_stringn(p, len));
		p += len;
		if (*p == ',')
			p++;
	}
	return out;
}

/* {ok, checks: [{check, ok, detail, offenders: [ids]}]}: every invariant, violated or not. */
static void render_audit(struct mp_admin_req *req, const PGresult *res, void *extra)
{
	bool all_ok = true;
	json_t *checks = json_array();
	for (int i = 0; i < PQntuples(res); i++) {
		bool ok = db_get_bool(res, i, "ok");
		const char *detail = db_get_text(res, i, "detail");
		all_ok = all_ok && ok;
		json_array_append_new(checks,
				      json_pack("{s:s,s:b,s:s,s:o}", "check",
						db_get_text(res, i, "check_name"), "ok", ok,
						"detail", detail ? detail : "", "offenders",
						text_array_json(db_get_text(res, i, "offenders"))));
	}
	if (!all_ok)
		log_warn("audit: invariants violated (see the audit answer)");
	mp_admin_reply(req, json_pack("{s:b,s:o}", "ok", all_ok, "checks", checks));
}

static void admin_audit(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	struct db_params p = {0};
	admin_query(b, req, "audit", &p, render_audit, NULL);
}

static void admin_conflicts(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	struct db_params p = {0};
	admin_query(b, req, "conflicts", &p, conflicts_render, NULL);
}

static void admin_shutdown(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	mp_admin_answer_shutdown(req, b->drain);
}

/* What SIGHUP does: the TLS certificate, key and CA and the log level from the configuration
 * file (brokerd/service.c). */
static void admin_reload(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	mp_admin_answer_reload(req, b->reload);
}

static void admin_clock_advance(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	mp_clock_admin_advance(req, params, &b->clock);
}

static void admin_clock_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct broker *b = ctx;
	mp_clock_admin_show(req, &b->clock);
}

#define ID_PARAM(name, what)                                                                       \
	{                                                                                          \
		name, MP_ADMIN_T_HEX, true, NULL, what " (32 hex digits)"                          \
	}
#define OP_ID(name)                                                                                \
	{                                                                                          \
		name, MP_ADMIN_T_HEX, true, NULL,                                                  \
		    "32 hex digits chosen by the caller (e.g. openssl rand -hex 16), the same on " \
		    "every "                                                                       \
		    "retry"                                                                        \
	}
#define AMOUNT                                                                                     \
	{                                                                                          \
		"amount", MP_ADMIN_T_UINT, true, NULL, "1 .. 2^63-1 minor units"                   \
	}

static const struct mp_admin_method broker_methods[] = {
    {"status", admin_status, "daemon status and counters", NULL},
    {"metrics", admin_metrics, "Prometheus text", NULL},
    {"account.create", admin_account_create, "create a merchant account",
     MP_ADMIN_PARAMS(
	 {"kind", MP_ADMIN_T_STRING, true, NULL, "merchant (customers register from their wallet)"},
	 {"bond", MP_ADMIN_T_UINT, false, "0",
	  "must be 0: a bond is money (fund the merchant, then bond.post)"})},
    {"account.fund", admin_account_fund, "external -> a customer or merchant available account",
     MP_ADMIN_PARAMS(ID_PARAM("account", "a customer's or a merchant's available account id"),
		     AMOUNT, OP_ID("fund_id"))},
    {"account.show", admin_account_show, "an account with its balance and related accounts",
     MP_ADMIN_PARAMS(ID_PARAM("account", "an account id, or a merchant id"))},
    {"account.ledger", admin_account_ledger,
     "the ledger entries of an account, newest first, paged", admin_ledger_params},
    {"accounts", admin_accounts, "accounts by id, paged", admin_accounts_params},
    {"account.payout", admin_account_payout, "customer or merchant available -> external",
     MP_ADMIN_PARAMS(ID_PARAM("account", "the account id or merchant id"), AMOUNT,
		     OP_ID("payout_id"))},
    {"payouts", admin_payouts, "payouts, oldest first",
     MP_ADMIN_PARAMS({"account", MP_ADMIN_T_HEX, false, "every account",
		      "only this account's (32 hex digits)"})},
    {"bond.post", admin_bond_post, "a merchant's available -> its bond",
     MP_ADMIN_PARAMS(ID_PARAM("merchant", "the merchant id"), AMOUNT, OP_ID("op_id"))},
    {"bond.release", admin_bond_release, "a merchant's bond -> its available",
     MP_ADMIN_PARAMS(ID_PARAM("merchant", "the merchant id"), AMOUNT, OP_ID("op_id"))},
    {"loss_reserve.fund", admin_loss_reserve_fund, "external -> the loss reserve",
     MP_ADMIN_PARAMS(AMOUNT, OP_ID("fund_id"))},
    {"channels", admin_channels, "channels by id, paged", admin_channels_params},
    {"channel.show", admin_channel_show, "a channel, its escrow and its epochs",
     MP_ADMIN_PARAMS(ID_PARAM("channel", "the channel id"))},
    {"channel.segments", admin_channel_segments,
     "a channel's segments (owner, payout account, the Caps that end them)",
     MP_ADMIN_PARAMS(ID_PARAM("channel", "the channel id"))},
    {"channel.settlement", admin_channel_settlement,
     "a channel's lifecycle state, deadlines, finalisation and refund",
     MP_ADMIN_PARAMS(ID_PARAM("channel", "the channel id"))},
    {"sweep.run", admin_sweep_run,
     "run a settlement sweep now; answers when it is done {time, expired, finalized, failures}",
     NULL},
    {"audit", admin_audit, "ledger and escrow invariants", NULL},
    {"conflicts", admin_conflicts, "recorded custody conflicts (evidence, liable signer)", NULL},
    {"clock.show", admin_clock_show, "protocol time: {test_clock, offset, now}", NULL},
    {"clock.advance", admin_clock_advance, "move the test clock forward (--test-clock only)",
     MP_ADMIN_PARAMS({"seconds", MP_ADMIN_T_UINT, true, NULL, "seconds to add"})},
    {"reload", admin_reload, "re-read the TLS certificate, key, CA and log level (as SIGHUP)",
     NULL},
    {"shutdown", admin_shutdown, "stop gracefully: answer what is in flight, then exit", NULL},
    {NULL, NULL, NULL, NULL},
};

bool broker_admin_open(struct broker *b)
{
	b->admin =
	    mp_admin_open(b->base, b->cfg.admin_socket, b->cfg.admin_group, broker_methods, b);
	return b->admin != NULL;
}
