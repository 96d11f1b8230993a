/* The admin method `budget` (docs/goods.md "Buying with a budget"): [wallet] auto_issue_budget,
 * what the channels `buy` and `http` issued by themselves commit of it, and those channels. */
#include <jansson.h>

#include "admin.h"
#include "store_budget.h"
#include "wallet.h"

static void add_row(void *arg, const struct wbudget_row *r)
{
	json_t *o = json_pack(
	    "{s:o,s:o,s:I,s:s,s:s?,s:I}", "channel_id", mp_json_hex(r->channel_id, MP_ID_LEN),
	    "merchant_id", mp_json_hex(r->merchant_id, MP_ID_LEN), "escrow", (json_int_t)r->amount,
	    "item", r->item, "state", r->state, "created_at", (json_int_t)r->created_at);
	if (o)
		json_array_append_new(arg, o);
}

void wallet_admin_budget(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	const struct wallet_config *c = &w->cfg;
	uint64_t committed;
	json_t *rows = json_array();
	if (!rows || !wstore_budget_committed(w->store, &committed) ||
	    !wstore_budget_each(w->store, add_row, rows)) {
		json_decref(rows);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "budget: cannot read the store");
		return;
	}
	uint64_t cap = c->auto_issue_budget, left = committed < cap ? cap - committed : 0;
	mp_admin_reply(req, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "budget", (json_int_t)cap,
				      "committed", (json_int_t)committed, "left", (json_int_t)left,
				      "least_channel", (json_int_t)c->auto_issue_channel,
				      "least_unit_value", (json_int_t)c->auto_issue_unit_value,
				      "days", (json_int_t)c->auto_issue_days, "channels", rows));
}
