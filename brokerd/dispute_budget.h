/* The hashing a connection may make brokerd do for Disputes (docs/disputes.md "Hashing
 * budget"). */
#ifndef MP_DISPUTE_BUDGET_H
#define MP_DISPUTE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

#include "net.h"
#include "proto.h"

/* BAD_CHAIN answers after which a connection is closed; also the most disputes it may have
 * being verified plus answered BAD_CHAIN at once. */
#define MP_DISPUTE_BAD_CHAIN_MAX 3

/* Before a dispute's evidence is verified: true (counted as verifying) or false with the
 * refusal's detail in detail (LIMIT). */
bool dispute_budget_admit(struct mp_conn *c, char *detail, size_t detail_len);
/* Once an admitted dispute is answered with code: no longer verifying; a BAD_CHAIN counted
 * and, at MP_DISPUTE_BAD_CHAIN_MAX, the connection closed once its answers are sent. */
void dispute_budget_done(struct mp_conn *c, MpCode code);

#endif
