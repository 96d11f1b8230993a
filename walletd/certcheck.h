/* The wallet checks the broker's ChannelCert against its own IssueRequest before using it
 * (protocol.md section 6, "Issue": "The wallet checks that the cert matches its request"). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "sig.h"
#include "util.h"

#define WALLET_DAY  86400ULL
#define WALLET_HOUR 3600ULL

/* Open cert under type 1 and broker_pk, then require: broker_key_id = mp_key_id(broker_pk),
 * channel_id derived from the request, owner_pk, chain_nonce, root, n, unit_value, currency and
 * holder0 equal to the request, issued_at on the hour, pay_until = issued_at + pay_until_days
 * days, redeem_until after pay_until. Returns NULL and the parsed cert in *out (free with
 * protobuf_c_message_free_unpacked), or a message naming the first mismatch (*out NULL). */
const char *wallet_cert_check(const MpSigned *cert, const uint8_t broker_pk[MP_PK_LEN],
			      const Micropay__V1__IssueRequest *req,
			      Micropay__V1__ChannelCert **out);
