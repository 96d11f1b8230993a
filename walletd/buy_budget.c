/* buy within a budget (docs/goods.md "Buying with a budget"): when no channel of the wallet can
 * pay the item at merchant_id (none ACTIVE and free there or at another merchant, or each has
 * less than max_price left), `buy` issues one at the broker for that merchant, within
 * [wallet] auto_issue_budget, and buys on it.
 *
 *   PLAN --no max_price / over the budget / not registered--> refused, nothing issued
 *   PLAN --an ISSUING channel issued for an earlier buy at this merchant (cut before the broker
 *     answered: a lost connection, a crash)--> ISSUING: its stored request resent (the broker
 *     answers DUPLICATE_OK with the same cert), so a buy cut anywhere never issues twice
 *   PLAN --such a channel whose issue is on its way now (the earlier buy still running, e.g. its
 *     caller gave up waiting)--> refused, nothing issued: try again once it has ended
 *   PLAN --else: sized by the rule (auto_issue_size)--> the channel and its auto_issues row
 *     stored in one transaction --> ISSUING
 *   ISSUING --cert checked, ACTIVE--> OPEN at the merchant (buy_open: buy.c, buy_key.c; by
 *     key on a channel never paid, one opening unit first)
 *   ISSUING --refused by the broker (FAILED: nothing escrowed, its escrow no longer counted
 *     against the budget) / not finished (stays ISSUING; the next buy at this merchant or
 *     issue.retry resumes it)--> answered with the reason
 *
 * The escrow committed is the sum of the auto_issues rows whose channel is not FAILED, read
 * from the store on every plan, so a restart keeps it. */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "amount.h"
#include "auto_issue.h"
#include "buy.h"
#include "log.h"
#include "store.h"
#include "store_budget.h"
#include "wallet.h"

bool buy_budget_fits(const struct buy_op *x, const struct wchannel *ch)
{
	if (!x->has_max)
		return true;
	uint32_t spent = wallet_channel_spent(ch);
	uint64_t left = ch->n > spent ? ch->n - spent : 0, value, need = x->max_price;
	if (!mp_amount_mul(left, ch->unit_value, &value))
		return true; /* more than any price */
	/* By key the Offer's units are new units, and a channel never paid needs one more. */
	if (x->by_key && spent <= ch->seg_start && !mp_amount_add(need, ch->unit_value, &need))
		return false;
	if (x->by_key)
		return value >= need;
	return value >= need || value + ch->credit >= need; /* both sums below 2^64 */
}

/* The rule of auto_issue_size for the price max_price. NULL, or why not. */
static const char *size_channel(const struct wallet *w, struct buy_op *x)
{
	return auto_issue_size(w, x->max_price, x->target, &x->spec, &x->escrow);
}

/* The per-call `budget` and the store's committed sum: false (answered) if the escrow does not
 * fit. */
static bool within_budget(struct wallet *w, struct mp_admin_req *req, json_t *params,
			  const struct buy_op *x)
{
	uint64_t cap = w->cfg.auto_issue_budget, given, committed, left;
	if (!mp_admin_param_u64(req, params, "budget", &given, false))
		return false;
	if (json_object_get(params, "budget") && given > cap) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "budget",
				    "buy: budget %llu is above [wallet] auto_issue_budget %llu",
				    (unsigned long long)given, (unsigned long long)cap);
		return false;
	}
	if (!auto_issue_left(w, &left, &committed)) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "buy: cannot read the budget from the store");
		return false;
	}
	if (json_object_get(params, "budget") && given < left)
		left = given;
	if (x->escrow <= left)
		return true;
	mp_admin_fail_param(req, MP_ADMIN_FAILED, "budget",
			    "buy: over budget: no channel of this wallet can pay the item at that "
			    "merchant, and a new one for max_price %llu escrows %llu (n %u x "
			    "unit_value %llu), above the %llu this buy may commit ([wallet] "
			    "auto_issue_budget %llu, %llu committed); nothing issued, nothing paid",
			    (unsigned long long)x->max_price, (unsigned long long)x->escrow,
			    x->spec.n, (unsigned long long)x->spec.unit_value,
			    (unsigned long long)left, (unsigned long long)cap,
			    (unsigned long long)committed);
	return false;
}

bool buy_budget_plan(struct wallet *w, struct mp_admin_req *req, json_t *params, struct buy_op *x)
{
	char why[200];
	const char *bad = NULL;
	if (!w->registered)
		bad = "the wallet is not registered (call register)";
	else if (!x->has_max)
		bad = "no channel of this wallet can pay at that merchant: give max_price=N (the "
		      "most the item may cost) to let the wallet issue one within [wallet] "
		      "auto_issue_budget";
	else if (!mp_clock_guard_serving(w->clock_guard, why, sizeof(why)))
		bad = why;
	if (bad) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: %s", bad);
		return false;
	}
	if ((x->ch = auto_issue_pending(w, x->target))) { /* its escrow is counted already */
		if (x->ch->busy) {
			char hex[MP_HEX_ID_LEN + 1];
			mp_hex_encode(x->ch->channel_id, MP_ID_LEN, hex);
			mp_admin_fail(
			    req, MP_ADMIN_FAILED,
			    "buy: channel %s, issued for an earlier buy at that merchant, is "
			    "being issued now: nothing issued, nothing paid; buy again once "
			    "that buy has ended",
			    hex);
			x->ch = NULL;
			return false;
		}
		if (buy_budget_fits(x, x->ch))
			return true;
		mp_admin_fail(
		    req, MP_ADMIN_FAILED,
		    "buy: the channel issued for an earlier buy at that merchant is still "
		    "ISSUING and too small for max_price %llu: finish it first "
		    "(issue.retry)",
		    (unsigned long long)x->max_price);
		return false;
	}
	if ((bad = size_channel(w, x))) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "max_price", "buy: %s", bad);
		return false;
	}
	return within_budget(w, req, params, x);
}

bool buy_budget_needs_unit(struct wallet *w, const struct wchannel *ch)
{
	return ch->seg_seq == 0 && wallet_channel_spent(ch) == 0 &&
	       wstore_budget_has(w->store, ch->channel_id) == 1;
}

static void progress_line(struct buy_op *x, const char *line)
{
	log_info("buy %s", line);
	mp_admin_progress(x->req, json_pack("{s:s}", "line", line));
}

static void on_issued(void *arg, struct wchannel *ch, const char *err)
{
	struct buy_op *x = arg;
	char hex[MP_HEX_ID_LEN + 1], line[BUY_ITEM_MAX + 200];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	ch->busy = false;
	if (err) {
		mp_admin_fail(
		    x->req, MP_ADMIN_FAILED,
		    "buy: the channel %s issued for this buy %s: %s; nothing paid", hex,
		    ch->state == WCH_FAILED
			? "was refused by the broker (nothing escrowed, the budget "
			  "not charged)"
			: "is still ISSUING (the next buy at this merchant, or issue.retry, "
			  "finishes its issue)",
		    err);
		buy_op_free(x);
		return;
	}
	snprintf(line, sizeof(line), "%s: channel %s ACTIVE; buying on it", x->item, hex);
	progress_line(x, line);
	buy_open(x->w, x->req, x, x->endpoint);
}

struct budget_tx {
	struct wallet *w;
	const struct buy_op *x;
};

static bool record(void *arg, const struct wchannel *ch)
{
	struct budget_tx *t = arg;
	return wstore_budget_add(t->w->store, ch->channel_id, t->x->target, t->x->escrow,
				 t->x->item);
}

void buy_budget_issue(struct wallet *w, struct mp_admin_req *req, struct buy_op *x,
		      const char *endpoint)
{
	x->w = w;
	x->req = req;
	x->issued = true;
	snprintf(x->endpoint, sizeof(x->endpoint), "%s", endpoint);
	const char *why = NULL;
	bool resumed = x->ch != NULL;
	struct budget_tx t = {w, x};
	if (!resumed && !(x->ch = wallet_issue_new(w, &x->spec, record, &t, &why))) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "buy: cannot issue a channel: %s", why);
		buy_op_free(x);
		return;
	}
	char hex[MP_HEX_ID_LEN + 1], line[BUY_ITEM_MAX + 300];
	mp_hex_encode(x->ch->channel_id, MP_ID_LEN, hex);
	if (resumed)
		snprintf(line, sizeof(line),
			 "%s: no channel fits; resuming the issue of channel %s (ISSUING, issued "
			 "for an earlier buy at this merchant)",
			 x->item, hex);
	else
		snprintf(line, sizeof(line),
			 "%s: no channel fits; issuing channel %s (n %u x unit_value %llu = %llu "
			 "escrowed, within [wallet] auto_issue_budget)",
			 x->item, hex, x->spec.n, (unsigned long long)x->spec.unit_value,
			 (unsigned long long)x->escrow);
	progress_line(x, line);
	x->ch->busy = true; /* no other buy resumes it meanwhile */
	wallet_issue_send(w, x->ch, on_issued, x);
}
