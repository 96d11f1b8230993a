/* http: no channel of the wallet can pay the gateway's merchant (none held there, or each is
 * exhausted, busy, past its last payment time): issue one by itself within [wallet]
 * auto_issue_budget (docs/gateway.md "A channel issued by itself"), as `buy` does
 * (auto_issue.h: the same rule, the same budget, the same table auto_issues).
 *
 *   PLAN --auto_issue_budget 0 / another currency / not registered / clock not serving-->
 *        refused: nothing issued, nothing paid (the reason, and how to issue one by hand)
 *   PLAN --an ISSUING channel auto-issued for this merchant (an earlier call cut before the
 *        broker answered)--> its stored IssueRequest resent (the same bytes: never issued
 *        twice); busy (on its way now) --> refused, try again; once ACTIVE, too small for this
 *        price (it was sized for another) --> a new one planned as below
 *   PLAN --else: sized for the price (auto_issue_size; at least auto_issue_channel), its
 *        escrow within what is left of the budget (else refused)--> the channel and its
 *        auto_issues row stored in one transaction --> ISSUING
 *   ISSUING --ACTIVE--> paid with it as any chosen channel (http_use_channel: a session at the
 *        merchant opens it, then the header pays)
 *   ISSUING --refused by the broker (FAILED, nothing escrowed, the budget not charged) / not
 *        finished (stays ISSUING; the next call resumes it)--> refused with the reason */
#include <stdio.h>
#include <string.h>

#include "auto_issue.h"
#include "clock_guard.h"
#include "http_internal.h"
#include "log.h"
#include "store_budget.h"
#include "wallet.h"

struct http_issue_tx {
	struct http_op *o;
	uint64_t escrow;
};

static bool record(void *arg, const struct wchannel *ch)
{
	struct http_issue_tx *t = arg;
	char item[300];
	snprintf(item, sizeof(item), "http://%s:%u", t->o->host, t->o->port);
	return wstore_budget_add(t->o->w->store, ch->channel_id, t->o->want.merchant, t->escrow,
				 item);
}

static void issue_new(struct http_op *o);

static void on_issued(void *arg, struct wchannel *ch, const char *err)
{
	struct http_op *o = arg;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	ch->busy = false;
	if (err) {
		http_op_fail(o, "channel %s, issued for this request, %s: %s; nothing paid", hex,
			     ch->state == WCH_FAILED ? "was refused by the broker (nothing "
						       "escrowed, the budget not charged)"
						     : "is still ISSUING (the next request to this "
						       "merchant, or issue.retry, finishes it)",
			     err);
		return;
	}
	const char *why = http_unpayable(o, ch, false);
	if (why && o->resumed) { /* issued for an earlier, smaller price: one for this one */
		log_info("http: channel %s, resumed, is %s for %llu: issuing another", hex, why,
			 (unsigned long long)o->want.price);
		o->resumed = false;
		issue_new(o);
		return;
	}
	if (why) {
		http_op_fail(o, "channel %s, issued for this request, is %s; nothing paid", hex,
			     why);
		return;
	}
	log_info("http: channel %s issued for %s:%u (n %u x unit_value %llu); paying with it", hex,
		 o->host, o->port, ch->n, (unsigned long long)ch->unit_value);
	o->issued = true;
	http_use_channel(o, ch);
}

/* Why no channel may be issued for o now, or NULL. */
static const char *not_allowed(struct http_op *o, char *why, size_t len)
{
	struct wallet *w = o->w;
	if (w->cfg.auto_issue_budget == 0)
		return "[wallet] auto_issue_budget is 0 (walletd issues no channel by itself)";
	if (strcmp(o->want.currency, w->cfg.currency))
		return "the gateway prices in another currency than this wallet's";
	if (!w->registered)
		return "the wallet is not registered (call register)";
	if (!mp_clock_guard_serving(w->clock_guard, why, len))
		return why;
	return NULL;
}

/* A new channel for the price within the budget; NULL with the call answered. */
static struct wchannel *new_channel(struct http_op *o)
{
	struct wallet_issue_spec spec;
	struct http_issue_tx t = {.o = o};
	uint64_t left = 0, committed = 0;
	const char *why = auto_issue_size(o->w, o->want.price, o->want.merchant, &spec, &t.escrow);
	if (why) {
		http_op_fail(o, "no channel can pay, and none can be issued: %s", why);
		return NULL;
	}
	if (!auto_issue_left(o->w, &left, &committed)) {
		http_op_fail(o, "cannot read the auto-issue budget from the store");
		return NULL;
	}
	if (t.escrow > left) {
		http_op_fail(o,
			     "over budget: no channel of this wallet can pay %llu %s at this "
			     "merchant, and a new one escrows %llu (n %u x unit_value %llu), above "
			     "the %llu left of [wallet] auto_issue_budget %llu; nothing issued, "
			     "nothing paid",
			     (unsigned long long)o->want.price, o->want.currency,
			     (unsigned long long)t.escrow, spec.n,
			     (unsigned long long)spec.unit_value, (unsigned long long)left,
			     (unsigned long long)o->w->cfg.auto_issue_budget);
		return NULL;
	}
	struct wchannel *ch = wallet_issue_new(o->w, &spec, record, &t, &why);
	if (!ch)
		http_op_fail(o, "cannot issue a channel: %s", why);
	return ch;
}

void http_issue(struct http_op *o)
{
	char why[200], mid[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o->want.merchant, MP_ID_LEN, mid);
	const char *bad = not_allowed(o, why, sizeof(why));
	if (bad) {
		http_op_fail(o,
			     "no ACTIVE channel of this wallet at merchant %s can pay %llu %s now, "
			     "and none is issued: %s; issue one (issue merchant_id=%s ...)",
			     mid, (unsigned long long)o->want.price, o->want.currency, bad, mid);
		return;
	}
	struct wchannel *ch = auto_issue_pending(o->w, o->want.merchant);
	if (ch && ch->busy) {
		http_op_fail(o,
			     "a channel issued for an earlier request to merchant %s is being "
			     "issued now: nothing paid; try again once it is ACTIVE",
			     mid);
		return;
	}
	if (!ch) {
		issue_new(o);
		return;
	}
	o->resumed = true;
	ch->busy = true; /* no other call resumes or pays with it meanwhile */
	wallet_issue_send(o->w, ch, on_issued, o);
}

static void issue_new(struct http_op *o)
{
	struct wchannel *ch = new_channel(o);
	if (!ch)
		return;
	ch->busy = true;
	wallet_issue_send(o->w, ch, on_issued, o);
}
