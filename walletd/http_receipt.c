/* The Receipt a gateway sent with a paid answer (http receipt=true; docs/gateway.md
 * "Receipts"), checked as receipt.c checks one asked for over TLS: the MerchantCert under our
 * broker key naming the merchant we paid, the Receipt under that cert's key, for exactly the
 * channel, segment, index and request reference paid. Stored (table receipts) only then. */
#include <stdlib.h>
#include <string.h>

#include "http_receipt.h"
#include "log.h"
#include "receipt.h"
#include "stmt.h"
#include "store_receipt.h"
#include "wallet.h"
#include "wallet_receipt.h"

static const char *check_fields(const struct http_receipt_want *want, const struct mp_receipt *rc)
{
	if (memcmp(rc->merchant_id, want->merchant, MP_ID_LEN))
		return "the MerchantCert is of another merchant than the one paid";
	if (memcmp(rc->channel_id, want->channel_id, MP_ID_LEN) || rc->seg_seq != want->seg_seq ||
	    rc->index != want->j)
		return "the Receipt is for another payment than this one";
	if (rc->order_ref_len != GW_REF_LEN || memcmp(rc->order_ref, want->ref, GW_REF_LEN))
		return "the Receipt names another request than this one";
	return NULL;
}

/* The receipt object, or NULL with *why (the statements are not stored then). */
static json_t *take(struct wallet *w, const struct gw_response *resp,
		    const struct http_receipt_want *want, const char **why)
{
	MpSigned *receipt = mp_stmt_decode(resp->receipt, resp->receipt_len);
	MpSigned *cert = mp_stmt_decode(resp->merchant_cert, resp->merchant_cert_len);
	struct mp_receipt rc;
	json_t *out = NULL;
	*why = !receipt || !cert ? "the receipt or the MerchantCert does not parse" : NULL;
	if (!*why)
		*why = mp_receipt_verify(receipt, cert, w->cfg.broker_pk, &rc);
	if (!*why)
		*why = check_fields(want, &rc);
	if (!*why && !wstore_receipt_put(w->store, want->channel_id, want->seg_seq, want->j,
					 want->merchant, receipt, cert))
		*why = "cannot store the receipt";
	if (!*why)
		out = wallet_receipt_json(receipt, cert, w->cfg.broker_pk, why);
	mp_stmt_free(receipt);
	mp_stmt_free(cert);
	return out;
}

void http_receipt_add(struct wallet *w, const struct gw_response *resp,
		      const struct http_receipt_want *want, json_t *paid)
{
	char msg[300];
	const char *why = resp->receipt_error[0] ? resp->receipt_error : "none in the answer";
	json_t *receipt = NULL;
	if (resp->receipt && resp->merchant_cert) {
		receipt = take(w, resp, want, &why);
		if (!receipt) {
			snprintf(msg, sizeof(msg),
				 "the gateway's receipt does not verify: %s; not stored", why);
			why = msg;
		}
	}
	if (receipt) {
		json_object_set_new(paid, "receipt", receipt);
		return;
	}
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(want->channel_id, MP_ID_LEN, hex);
	log_warn("channel %s: HTTP payment j=%u: no receipt: %s", hex, want->j, why);
	json_object_set_new(paid, "receipt_error", json_string(why));
}
