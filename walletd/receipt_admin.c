/* receipt.verify and receipts: off-line, no network. receipt.verify checks a Receipt (base64 of
 * its Signed bytes) against a MerchantCert under the broker key (the wallet's own, or
 * broker_pk): the cert signed by that key, the Receipt signed by the cert's merchant key and
 * naming that merchant; a receipt that fails any check is refused with the reason. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "receipt.h"
#include "wallet_receipt.h"
#include "stmt.h"
#include "store_receipt.h"
#include "wallet.h"

#define RECEIPT_B64_MAX 4096 /* a Signed Receipt or MerchantCert is a few hundred bytes */

static json_t *b64_json(const MpSigned *s)
{
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(s, &len);
	char *text = bytes ? mp_b64_encode(bytes, len) : NULL;
	json_t *out = text ? json_string(text) : json_null();
	free(bytes);
	free(text);
	return out;
}

json_t *wallet_receipt_json(const MpSigned *receipt, const MpSigned *merchant_cert,
			    const uint8_t broker_pk[MP_PK_LEN], const char **why)
{
	struct mp_receipt r;
	*why = mp_receipt_verify(receipt, merchant_cert, broker_pk, &r);
	if (*why)
		return NULL;
	return json_pack("{s:o,s:I,s:I,s:o,s:o,s:I,s:o,s:I,s:o,s:o}", "channel_id",
			 mp_json_hex(r.channel_id, MP_ID_LEN), "seg_seq", (json_int_t)r.seg_seq,
			 "index", (json_int_t)r.index, "order_ref",
			 mp_json_hex(r.order_ref, r.order_ref_len), "merchant_id",
			 mp_json_hex(r.merchant_id, MP_ID_LEN), "time", (json_int_t)r.time,
			 "merchant_pk", mp_json_hex(r.merchant_pk, MP_PK_LEN), "cert_valid_until",
			 (json_int_t)r.cert_valid_until, "receipt", b64_json(receipt),
			 "merchant_cert", b64_json(merchant_cert));
}

/* The base64 Signed in params[key]; NULL (answered) if absent or not a statement. */
static MpSigned *signed_param(struct mp_admin_req *req, json_t *params, const char *key)
{
	const char *text;
	if (!mp_admin_param_str(req, params, key, &text, true))
		return NULL;
	size_t len = 0;
	uint8_t *bytes = mp_b64_decode(text, RECEIPT_B64_MAX, &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	if (!s)
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, key,
				    "receipt.verify: %s is not base64 of a signed statement", key);
	return s;
}

void wallet_admin_receipt_verify(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t broker_pk[MP_PK_LEN];
	memcpy(broker_pk, w->cfg.broker_pk, MP_PK_LEN);
	if (json_object_get(params, "broker_pk") &&
	    !wallet_param_hex(req, params, "broker_pk", broker_pk, MP_PK_LEN, true, NULL))
		return;
	MpSigned *receipt = signed_param(req, params, "receipt");
	MpSigned *cert = receipt ? signed_param(req, params, "merchant_cert") : NULL;
	if (receipt && cert) {
		const char *why = NULL;
		json_t *out = wallet_receipt_json(receipt, cert, broker_pk, &why);
		if (out)
			mp_admin_reply(req, out);
		else
			mp_admin_fail(req, MP_ADMIN_FAILED, "receipt.verify: refused: %s", why);
	}
	mp_stmt_free(receipt);
	mp_stmt_free(cert);
}

struct listing {
	const struct wallet *w;
	json_t *list;
};

static void list_one(void *arg, const MpSigned *receipt, const MpSigned *cert)
{
	struct listing *l = arg;
	const char *why = NULL;
	json_t *one = wallet_receipt_json(receipt, cert, l->w->cfg.broker_pk, &why);
	json_array_append_new(l->list, one ? one : json_pack("{s:s}", "invalid", why));
}

void wallet_admin_receipts(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t id[MP_ID_LEN];
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL))
		return;
	struct listing l = {.w = w, .list = json_array()};
	if (!wallet_channel_find(w, id)) {
		json_decref(l.list);
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "receipts: no such channel in this wallet");
		return;
	}
	if (!wstore_receipt_each(w->store, id, list_one, &l)) {
		json_decref(l.list);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "receipts: cannot read the store");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o}", "receipts", l.list));
}
