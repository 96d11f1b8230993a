/* A Receipt in a gateway's X-Payment-Response, checked and stored (http_receipt.c). */
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "gateway_header.h"
#include "util.h"

struct wallet;

/* What was paid: the Receipt must say exactly this. */
struct http_receipt_want {
	uint8_t merchant[MP_ID_LEN];
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, j;
	uint8_t ref[GW_REF_LEN];
};

/* paid gets "receipt" (the checked, stored receipt: wallet_receipt_json's object) or
 * "receipt_error" (why not: none sent, the merchant's reason, or a failed check). The payment
 * stands either way; `receipt` over TLS can ask for it again. */
void http_receipt_add(struct wallet *w, const struct gw_response *resp,
		      const struct http_receipt_want *want, json_t *paid);
