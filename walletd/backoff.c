/* Retry timers with exponential backoff (the early refund's and the SegmentClaim's): the next
 * try after 1, 2, 4, ... seconds, at most a maximum; a timer already pending is left alone. */
#include <event2/event.h>

#include "wallet.h"

bool wallet_backoff_arm(struct wallet *w, struct event **timer, event_callback_fn cb, void *arg,
			unsigned *backoff, unsigned max)
{
	if (!*timer)
		*timer = event_new(w->base, -1, 0, cb, arg);
	if (!*timer)
		return false;
	if (event_pending(*timer, EV_TIMEOUT, NULL))
		return true;
	*backoff = *backoff ? 2 * *backoff : 1;
	if (*backoff > max)
		*backoff = max;
	struct timeval tv = {.tv_sec = *backoff};
	return event_add(*timer, &tv) == 0;
}
