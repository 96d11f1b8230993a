/* Following a HANDED_OFF answer (docs/custody.md, "Following a redirect"): the holder a wallet
 * named in its Open had already handed the channel to another merchant and answered our
 * HandoffReq with HANDED_OFF and the latest Handoff it signed. We hold nothing new: we check the
 * evidence (the whole custody chain verifies, its last Handoff is the one in the answer, signed
 * by the merchant we asked, above the Move's epoch and above every hseq we recorded, naming
 * another merchant whose MerchantCert came with it) and pass it to the wallet in
 * OpenAck.redirect with status HANDED_OFF, so that it can sign a Move from the new epoch and open
 * here again with the new holder as its hint. Nothing is stored. */
#pragma once
#include <stdint.h>

#include "custody.h"
#include "merchant.h"
#include "takeover_verify.h"

/* Worker thread: the verdict on a verified chain's last event (events[tc->n_chain]) for a
 * HANDED_OFF answer; tc->code OK with tc->hseq and tc->new_holder, or the refusal. */
void takeover_redirect_conclude(struct takeover_check *tc, const struct mp_custody_event *events);

/* Loop: answer the wallet's Open with HANDED_OFF carrying the verified evidence of tc. */
void takeover_redirect_reply(struct merchant *m, struct mp_conn *wallet, uint64_t request_id,
			     const struct takeover_check *tc, const char *holder_hex);
