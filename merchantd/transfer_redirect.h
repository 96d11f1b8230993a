/* A TransferReq at a merchant that handed the channel on (docs/transfer.md, "Bound while
 * TRANSFERRING"): the redirect wallet A follows to the current holder. */
#pragma once
#include <stdint.h>

#include "merchant.h"

/* ch is HANDED_OFF here and transfer names segment s, which we did not cap (transfer.c).
 * Answers HANDED_OFF: with TransferResp.redirect when the Transfer verifies under the owner
 * key of our last segment, else without a statement (LIMIT while our Handoff is committed). */
void transfer_redirect(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		       const struct channel *ch, const MpSigned *transfer, uint32_t s,
		       const char *hex);
