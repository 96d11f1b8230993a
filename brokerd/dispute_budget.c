/* A Dispute's word is hashed from the nearest verified point below pay_index, which for an
 * honest dispute may be the segment's start (the merchant never redeemed), up to n hashes. A
 * refused dispute stores nothing, and the hashing is not charged to the merchant's bad-chain
 * budget (the sender is any client), so each connection gets its own: at most
 * MP_DISPUTE_BAD_CHAIN_MAX disputes verifying or answered BAD_CHAIN at once (beyond: LIMIT,
 * nothing hashed), and the connection is closed after its MP_DISPUTE_BAD_CHAIN_MAX-th
 * BAD_CHAIN answer (as a merchant's exhausted bad-chain budget stops its Redeems).
 *
 *   admit --(verifying + bad_chain < MAX)--> verifying --answered--> done
 *     \--(else)--> LIMIT                                  | BAD_CHAIN: bad_chain++
 *                                                         v
 *                                         bad_chain = MAX: closed after the answer */
#include "dispute_budget.h"

#include <stdio.h>

#include "broker_peer.h"
#include "log.h"

bool dispute_budget_admit(struct mp_conn *c, char *detail, size_t detail_len)
{
	struct broker_peer *p = mp_conn_data(c);
	if (!p) {
		snprintf(detail, detail_len, "no connection state; reconnect");
		return false;
	}
	if (p->dispute_verifying + p->dispute_bad_chain >= MP_DISPUTE_BAD_CHAIN_MAX) {
		snprintf(detail, detail_len,
			 "%u disputes being verified and %u answered BAD_CHAIN on this connection "
			 "(at most %u together); retry once answered",
			 p->dispute_verifying, p->dispute_bad_chain, MP_DISPUTE_BAD_CHAIN_MAX);
		return false;
	}
	p->dispute_verifying++;
	return true;
}

void dispute_budget_done(struct mp_conn *c, MpCode code)
{
	struct broker_peer *p = mp_conn_data(c);
	if (!p)
		return; /* closed meanwhile: its state is gone with it */
	if (p->dispute_verifying)
		p->dispute_verifying--;
	if (code != MP_ST(BAD_CHAIN))
		return;
	if (++p->dispute_bad_chain < MP_DISPUTE_BAD_CHAIN_MAX)
		return;
	log_warn("%s: %u disputes answered BAD_CHAIN; closing the connection", mp_conn_peer(c),
		 p->dispute_bad_chain);
	mp_conn_close_after_flush(c, "%u disputes answered BAD_CHAIN", p->dispute_bad_chain);
}
