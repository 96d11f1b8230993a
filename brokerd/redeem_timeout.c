/* A database step of a Redeem that failed (protocol.md section 6, "Redemption"). A statement
 * that ran past brokerd's statement timeout ([db] statement_timeout_ms) was cancelled and rolled
 * back: nothing of that step is stored. Its cost grows with the Redeem's claims, so the answer
 * is LIMIT with a detail that does not say "retry later": the merchant abandons that Redeem and
 * claims its channels again in smaller Redeems with new redeem_ids (merchantd/redeemer.c),
 * instead of resending the same too-large bytes for ever. Any other failure is INTERNAL: the
 * merchant resends the same bytes (a Redeem that did commit is then replayed). */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "redeem.h"
#include "util.h"

void redeem_reply_db_error(struct redeem *rd, const char *step, const char *error,
			   const char *fallback)
{
	if (!db_error_is_statement_timeout(error)) {
		redeem_reply(rd, MP_ST(INTERNAL), error ? error : fallback, NULL, 0, NULL);
		return;
	}
	char hex[MP_HEX_ID_LEN + 1], detail[160];
	mp_hex_encode(rd->peer_mid, MP_ID_LEN, hex);
	size_t claims = rd->r ? rd->r->n_claims : 0;
	log_warn("redeem from merchant %s: %s of %zu claims ran past the statement timeout; "
		 "answered LIMIT (split it)",
		 hex, step, claims);
	rd->call->b->stats.redeem_timeouts++;
	snprintf(detail, sizeof(detail),
		 "Redeem of %zu claims ran past the broker's statement timeout: split it", claims);
	redeem_reply(rd, MP_ST(LIMIT), detail, NULL, 0, NULL);
}
