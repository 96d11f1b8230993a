/* TransferReq at the broker: a channel issued without holder0 and not bound yet is transferred
 * through the broker, which signs the Cap (docs/transfer.md "Unbound channels"). */
#pragma once
#include "broker.h"

void handle_unbound_transfer(struct broker *b, struct mp_conn *c, const MpEnvelope *env);
