/* The rule, the budget and the pending channel of auto-issued channels (auto_issue.h). */
#include "auto_issue.h"

#include <string.h>

#include "amount.h"
#include "store_budget.h"
#include "wallet.h"

/* protocol.md section 11: MAX_JUMP, the default of every holder's max_jump. A price of at most
 * MAX_JUMP units is paid by key release in one Pay. */
#define AUTO_ISSUE_MAX_JUMP 4096

const char *auto_issue_size(const struct wallet *w, uint64_t price, const uint8_t target[MP_ID_LEN],
			    struct wallet_issue_spec *spec, uint64_t *escrow)
{
	const struct wallet_config *c = &w->cfg;
	uint64_t u = (price + AUTO_ISSUE_MAX_JUMP - 1) / AUTO_ISSUE_MAX_JUMP;
	if (u < c->auto_issue_unit_value)
		u = c->auto_issue_unit_value;
	uint64_t n = price / u + (price % u != 0) + 1,
		 least = c->auto_issue_channel / u + (c->auto_issue_channel % u != 0);
	if (n < least)
		n = least;
	if (n > WALLET_N_MAX || !mp_amount_mul(n, u, escrow))
		return "a channel for that price would have more than N_MAX units";
	*spec = (struct wallet_issue_spec){
	    .n = (uint32_t)n, .unit_value = u, .days = c->auto_issue_days};
	memcpy(spec->holder0, target, MP_ID_LEN);
	return NULL;
}

bool auto_issue_left(struct wallet *w, uint64_t *left, uint64_t *committed)
{
	uint64_t cap = w->cfg.auto_issue_budget;
	if (!wstore_budget_committed(w->store, committed))
		return false;
	*left = *committed < cap ? cap - *committed : 0;
	return true;
}

struct wchannel *auto_issue_pending(struct wallet *w, const uint8_t target[MP_ID_LEN])
{
	struct wchannel *busy = NULL;
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		if (ch->state != WCH_ISSUING || memcmp(ch->holder0, target, MP_ID_LEN) ||
		    wstore_budget_has(w->store, ch->channel_id) != 1)
			continue;
		if (!ch->busy)
			return ch;
		busy = ch;
	}
	return busy;
}
