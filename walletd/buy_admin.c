/* The admin method `buy` (buy.c does the buying): its parameters, the channel (given, or the
 * best one of this wallet held by merchant_id, else another merchant's), OUT.part created, the
 * session opened at merchant_id (the channel handed off to it when another merchant holds it)
 * or at the holder. Every refusal here happens before anything is sent. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "buy.h"
#include "buy_file.h"
#include "session.h"
#include "wallet.h"

/* Units this channel can still pay. */
static uint32_t units_left(const struct wchannel *ch)
{
	uint32_t spent = wallet_channel_spent(ch);
	return ch->n > spent ? ch->n - spent : 0;
}

static bool payable(const struct wallet *w, const struct wchannel *ch)
{
	return ch->state == WCH_ACTIVE && !wallet_channel_claim_refusal(ch) && !ch->busy &&
	       units_left(ch) > 0 && mp_clock_now(&w->clock) + WALLET_PAY_MARGIN < ch->pay_until;
}

/* The ACTIVE, idle, payable channel with the most units left, held by mid (held_by) or by
 * another merchant than mid (!held_by, bound); NULL if none. */
static struct wchannel *best_channel(struct wallet *w, const uint8_t mid[MP_ID_LEN], bool held_by)
{
	struct wchannel *best = NULL;
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		bool at_mid = !memcmp(ch->holder, mid, MP_ID_LEN);
		if (at_mid == held_by && !wallet_id_is_zero(ch->holder) && payable(w, ch) &&
		    (!best || units_left(ch) > units_left(best)))
			best = ch;
	}
	return best;
}

/* An ACTIVE channel held by mid that could pay the item but is busy (a pay or buy on it). */
static bool busy_fit(const struct wallet *w, const struct buy_op *x)
{
	for (const struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (ch->state == WCH_ACTIVE && ch->busy &&
		    !memcmp(ch->holder, x->target, MP_ID_LEN) && buy_budget_fits(x, ch))
			return true;
	return false;
}

/* merchant_id alone: its channel with the most units left, else another merchant's. With
 * [wallet] auto_issue_budget, only a channel that can pay the item, else NULL and *issue
 * (unless one that could is busy: the buy waits for it rather than spend the budget). */
static struct wchannel *pick(struct wallet *w, struct buy_op *x, bool *issue)
{
	struct wchannel *at = best_channel(w, x->target, true);
	struct wchannel *other = best_channel(w, x->target, false);
	if (!w->cfg.auto_issue_budget)
		return at ? at : other;
	if (at && buy_budget_fits(x, at))
		return at;
	if (other && buy_budget_fits(x, other))
		return other;
	*issue = !busy_fit(w, x);
	return NULL;
}

/* The channel and the merchant to buy at (x->target): channel_id (at its holder, or at
 * merchant_id through a handoff), or merchant_id alone (pick). NULL (answered) if none fits,
 * or (not answered) with *issue when buy_budget.c is to issue one. */
static struct wchannel *buy_channel(struct wallet *w, struct mp_admin_req *req, json_t *params,
				    struct buy_op *x, bool *issue)
{
	uint8_t id[MP_ID_LEN];
	bool by_channel = json_object_get(params, "channel_id") != NULL;
	bool by_merchant = json_object_get(params, "merchant_id") != NULL;
	if (!by_channel && !by_merchant) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "buy: give channel_id or merchant_id");
		return NULL;
	}
	if ((by_channel &&
	     !wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL)) ||
	    (by_merchant &&
	     !wallet_param_hex(req, params, "merchant_id", x->target, MP_ID_LEN, true, NULL)))
		return NULL;
	struct wchannel *ch = by_channel ? wallet_channel_find(w, id) : pick(w, x, issue);
	if (*issue)
		return NULL;
	if (ch && !by_merchant)
		memcpy(x->target, ch->holder, MP_ID_LEN);
	char why[200];
	if (!ch && by_channel)
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: no such channel in this wallet");
	else if (!ch)
		mp_admin_fail(
		    req, MP_ADMIN_FAILED,
		    "buy: no ACTIVE channel of this wallet is free to pay, at that merchant "
		    "or another (issue one, or wait for the one in use)");
	else if (!mp_clock_guard_serving(w->clock_guard, why, sizeof(why)))
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: %s", why);
	else if (wallet_id_is_zero(ch->holder))
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "buy: the channel is not bound to a merchant yet: pay once first");
	else if (wallet_channel_claim_refusal(ch))
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: %s", wallet_channel_claim_refusal(ch));
	else if (!payable(w, ch))
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "buy: the channel is %s%s and cannot pay (%u units left)",
			      wch_state_name(ch->state), ch->busy ? ", busy" : "", units_left(ch));
	else
		return ch;
	return NULL;
}

/* item, out, overwrite, max_price into x; false (answered) on a bad value. */
static bool buy_params(struct mp_admin_req *req, json_t *params, struct buy_op *x)
{
	const char *item, *out;
	if (!mp_admin_param_str(req, params, "item", &item, true) ||
	    !mp_admin_param_str(req, params, "out", &out, true) ||
	    !mp_admin_param_u64(req, params, "max_price", &x->max_price, false))
		return false;
	x->has_max = json_object_get(params, "max_price") != NULL;
	const char *delivery = "chunks";
	if (!mp_admin_param_str(req, params, "delivery", &delivery, false))
		return false;
	if (!delivery)
		delivery = "chunks";
	x->by_key = !strcmp(delivery, "key");
	x->overwrite = json_is_true(json_object_get(params, "overwrite"));
	struct stat st;
	const char *bad = NULL;
	if (!x->by_key && strcmp(delivery, "chunks"))
		bad = "delivery must be chunks (the default) or key";
	else if (!item[0] || strlen(item) > BUY_ITEM_MAX)
		bad = "item must be 1 .. 128 characters";
	else if (out[0] != '/')
		bad = "out must be an absolute path";
	else if (strlen(out) + sizeof(".part") > sizeof(x->out))
		bad = "out is too long";
	else if (!x->overwrite && lstat(out, &st) == 0)
		bad = "out exists (give overwrite=true to replace it)";
	if (bad) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "buy: %s", bad);
		return false;
	}
	snprintf(x->item, sizeof(x->item), "%s", item);
	snprintf(x->out, sizeof(x->out), "%s", out);
	return true;
}

/* The endpoint parameter, else the MerchantCert endpoint of the merchant bought at, known from
 * a channel of the wallet it holds. False (answered) if none. */
static bool buy_endpoint(struct wallet *w, struct mp_admin_req *req, json_t *params,
			 const uint8_t target[MP_ID_LEN], char *out, size_t len)
{
	const char *given = NULL;
	if (!mp_admin_param_str(req, params, "endpoint", &given, false))
		return false;
	if (given) {
		snprintf(out, len, "%s", given);
		return true;
	}
	for (const struct wchannel *o = w->channels; o; o = o->next)
		if (!memcmp(o->holder, target, MP_ID_LEN) && wallet_holder_endpoint(w, o, out, len))
			return true;
	mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
		      "buy: the merchant's endpoint is not known yet: give endpoint=HOST:PORT");
	return false;
}

void buy_open(struct wallet *w, struct mp_admin_req *req, struct buy_op *x, const char *endpoint)
{
	char err[4400];
	x->opening_unit = x->by_key && buy_budget_needs_unit(w, x->ch);
	if (!wallet_session_open_at(w, req, "buy", x->ch, x->target, endpoint, buy_on_opened, x,
				    buy_op_free, err, sizeof(err))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: %s", err);
		buy_op_free(x);
	}
}

void wallet_admin_buy(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	char endpoint[300], err[4400];
	bool issue = false;
	if (w->stopping) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: walletd is stopping");
		return;
	}
	struct buy_op *x = calloc(1, sizeof(*x));
	if (!x) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "buy: out of memory");
		return;
	}
	if (!buy_params(req, params, x) ||
	    (!(x->ch = buy_channel(w, req, params, x, &issue)) && !issue) ||
	    (issue && !buy_budget_plan(w, req, params, x)) ||
	    !buy_endpoint(w, req, params, x->target, endpoint, sizeof(endpoint))) {
		free(x);
		return;
	}
	if (!(x->file = buy_file_open(w->workers, x->out, err, sizeof(err)))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "buy: %s", err);
		free(x);
		return;
	}
	if (issue)
		buy_budget_issue(w, req, x, endpoint);
	else
		buy_open(w, req, x, endpoint);
}
