/* A Redeem whose own evidence carries both a Cap of epoch g-1 and its signer's own Handoff g
 * inconsistent with it (protocol.md section 7: the Handoff's segments_head must include the
 * Cap's Transfer and its at_index be at or above the cap index) fails verification at that
 * Handoff; the pair is still evidence against the signer, recorded as `cap_after_handoff`
 * like when the two arrive separately (docs/custody.md "Conflicts"). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "custody.h"
#include "proto.h"

/* The verification of a claim's evidence failed with rule at Handoff g (handoff, the
 * statement, its signature verified), after the Transfer/Cap pairs stmts (Transfer 1, Cap 1,
 * ...; n_stmts of them) whose Cap was signed in an epoch up to g-1 verified into caps. The
 * index k of the pair (caps[k], stmts[2k+1]) whose Cap was signed in epoch g-1 by signer and
 * that the Handoff is inconsistent with; -1 if there is none. */
int custody_inconsistent_cap(enum mp_custody_rule rule, const MpSigned *handoff, uint32_t g,
			     const uint8_t signer[MP_ID_LEN], const struct mp_custody_cap *caps,
			     MpSigned *const *stmts, size_t n_stmts);
