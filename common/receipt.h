/* Receipts (protocol.md statement 14, docs/receipts.md): a merchant's signed statement that it
 * accepted the payment at (channel_id, seg_seq, index) for order_ref, at its journalled time.
 * Anyone holding the merchant's MerchantCert and the broker's public key checks one off-line:
 *
 *   MerchantCert --broker key (type 2, broker_key_id)--> merchant_id, merchant_pk
 *   Receipt --merchant_pk (type 14)--> fields; Receipt.merchant_id = the cert's merchant_id
 *
 * Neither the type nor the key is taken from the statements themselves (protocol.md section 2). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "sig.h"
#include "util.h"

#define MP_RECEIPT_ORDER_REF_MAX 32

struct mp_receipt {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, index;
	uint8_t order_ref[MP_RECEIPT_ORDER_REF_MAX];
	size_t order_ref_len;
	uint8_t merchant_id[MP_ID_LEN];
	uint64_t time;
	uint8_t merchant_pk[MP_PK_LEN]; /* the signer, from the MerchantCert */
	uint64_t cert_valid_until;
};

/* The Receipt's body for r's fields (pointers into r: r must outlive it). */
void mp_receipt_body(const struct mp_receipt *r, Micropay__V1__Receipt *body);

/* NULL if receipt is the Receipt of the merchant that merchant_cert certifies, the cert being
 * signed by broker_pk (its fields in *out); else why not, naming the first check that failed. */
const char *mp_receipt_verify(const MpSigned *receipt, const MpSigned *merchant_cert,
			      const uint8_t broker_pk[MP_PK_LEN], struct mp_receipt *out);
