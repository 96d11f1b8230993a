/* Identifiers derived by every party the same way (protocol.md section 2). */
#pragma once
#include <stdint.h>

#include "util.h"

/* channel_id = SHA256("MPAY1-CID" || account_id || issue_req_id)[0..16]: a retried issue can
 * only produce the same channel. */
void mp_channel_id(const uint8_t account_id[MP_ID_LEN], const uint8_t issue_req_id[MP_ID_LEN],
		   uint8_t out[MP_ID_LEN]);
