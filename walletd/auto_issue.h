/* Channels the wallet issues by itself within [wallet] auto_issue_budget, shared by `buy`
 * (buy_budget.c, docs/goods.md "Buying with a budget") and `http` (http_issue.c,
 * docs/gateway.md "A channel issued by itself"): the sizing rule, what is left of the budget,
 * and the channel an earlier call left ISSUING. Each such channel has a row in table
 * auto_issues (store_budget.h), written in the transaction that stores the channel. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "issue.h"
#include "util.h"

struct wallet;
struct wchannel;

/* The rule: unit_value u = max([wallet] auto_issue_unit_value, ceil(P / MAX_JUMP)) for the price
 * P; n = ceil(P / u) + 1 (one unit more: the opening unit of key release, and at most one unit
 * of rounding when buying chunk by chunk), at least ceil([wallet] auto_issue_channel / u). The
 * channel bound to target. NULL (*spec, *escrow = n * u set), or why not. */
const char *auto_issue_size(const struct wallet *w, uint64_t price, const uint8_t target[MP_ID_LEN],
			    struct wallet_issue_spec *spec, uint64_t *escrow);
/* What is left of [wallet] auto_issue_budget after the escrow of every auto-issued channel the
 * broker did not refuse (*committed); false (logged) on a store error. */
bool auto_issue_left(struct wallet *w, uint64_t *left, uint64_t *committed);
/* An ISSUING channel auto-issued for target (an earlier call cut before the broker answered:
 * a lost connection, a crash; or on its way now: busy), the idle one first; NULL if none. */
struct wchannel *auto_issue_pending(struct wallet *w, const uint8_t target[MP_ID_LEN]);
