#include "redeem_lag.h"

#include "merchant.h"
#include "store_redeem.h"

static bool unredeemed(const struct channel *ch)
{
	return ch->durable_last > ch->redeemed_end;
}

void redeem_lag_paid(struct channel *ch, uint64_t journal_at)
{
	if (!unredeemed(ch))
		ch->unredeemed_since = journal_at;
}

void redeem_lag_credited(struct merchant *m, struct channel *ch)
{
	uint64_t at;
	if (unredeemed(ch) && store_first_unredeemed_at(m->store, ch, &at) && at)
		ch->unredeemed_since = at;
}

bool redeem_lag_load(struct store *s, struct table *channels)
{
	TABLE_FOREACH(channels, struct channel, ch)
	{
		if (unredeemed(ch) && !store_first_unredeemed_at(s, ch, &ch->unredeemed_since))
			return false;
	}
	return true;
}

uint64_t redeem_lag_oldest(const struct table *channels)
{
	uint64_t oldest = 0;
	TABLE_FOREACH(channels, struct channel, ch)
	{
		if (unredeemed(ch) && ch->unredeemed_since &&
		    (!oldest || ch->unredeemed_since < oldest))
			oldest = ch->unredeemed_since;
	}
	return oldest;
}
