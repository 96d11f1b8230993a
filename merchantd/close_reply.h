/* The CloseResp (close.c): status and, for OK and DUPLICATE_OK, the stored Close of a channel
 * with the evidence a wallet hands to the broker in its RefundRequest (the custody chain up to
 * the Close's epoch, its signers' MerchantCerts and the channel's Transfer/Cap pairs). */
#pragma once
#include "merchant.h"

/* ch may be NULL (status only). With ch in state CLOSED and code OK or DUPLICATE_OK the stored
 * Close and its evidence go along; a store that cannot produce them turns the answer INTERNAL. */
void close_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		 const char *detail, const struct channel *ch);
