/* Receipts at the wallet (docs/receipts.md): fetching one from a merchant (receipt.c) and
 * checking and showing them off-line (receipt_admin.c). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "sig.h"
#include "util.h"

struct wallet;
struct wchannel;
struct mp_admin_req;

/* The Receipt checked against the MerchantCert under broker_pk: its fields and both statements
 * (base64 of the Signed bytes) as JSON; NULL and *why when it does not verify. */
json_t *wallet_receipt_json(const MpSigned *receipt, const MpSigned *merchant_cert,
			    const uint8_t broker_pk[MP_PK_LEN], const char **why);

void wallet_admin_receipt(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_receipt_verify(struct mp_admin_req *req, json_t *params, void *ctx);
void wallet_admin_receipts(struct mp_admin_req *req, json_t *params, void *ctx);

/* pay receipt=true: once the Pays are acknowledged, ask target at endpoint for the Receipt at
 * index (the last Pay's j, for order_ref, which the Receipt must name) and answer req with
 * pay_answer (taken) plus "receipt", or plus "receipt_error" (the payment stands either way). False
 * (nothing taken, nothing answered) if the request could not even start. */
bool wallet_receipt_after_pay(struct wallet *w, struct mp_admin_req *req, json_t *pay_answer,
			      struct wchannel *ch, uint32_t index, const uint8_t target[MP_ID_LEN],
			      const char *endpoint, const uint8_t *order_ref, size_t order_ref_len);
