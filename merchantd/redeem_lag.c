#include "redeem_lag.h"

#include "log.h"
#include "merchant.h"
#include "store_redeem.h"

static bool unredeemed(const struct channel *ch)
{
	return ch->durable_last > ch->redeemed_end;
}

void redeem_lag_paid(struct channel *ch, uint32_t j, uint64_t journal_at)
{
	if (!unredeemed(ch) || !ch->unredeemed_since)
		ch->unredeemed_since = journal_at;
	if (ch->claim_top && ch->durable_last <= ch->claim_top && j > ch->claim_top)
		ch->next_since = journal_at;
}

void redeem_lag_claimed(struct channel *ch)
{
	ch->claim_top = ch->durable_last;
	ch->next_since = 0;
}

void redeem_lag_credited(struct channel *ch)
{
	if (unredeemed(ch) && ch->claim_top && ch->redeemed_end == ch->claim_top && ch->next_since)
		ch->unredeemed_since = ch->next_since;
	if (ch->claim_top && ch->redeemed_end >= ch->claim_top) {
		ch->claim_top = 0;
		ch->next_since = 0;
	}
}

void redeem_lag_load(struct store *s, struct table *channels)
{
	if (!store_load_unredeemed_since(s, channels))
		log_err("store: the redemption lag of some channels is unknown: it reads as old as "
			"can be until they are credited");
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
