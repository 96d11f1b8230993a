/* A paid gateway request that asked for a Receipt (X-Payment "receipt": true; docs/gateway.md
 * "Receipts"): the same Receipt a ReceiptReq gets (receipt.c, docs/receipts.md), in the
 * X-Payment-Response of the answer.
 *
 *   COMMITTING --the Pay committed (gateway_paid)-->
 *   the journal row at (channel, seg, j) read back (committed rows only), our MerchantCert
 *        --either missing, the gateway stopping, the signing queue full--> relayed now, charged,
 *          with receipt_error (the payment stands; a ReceiptReq over TLS gets the receipt later)
 *        v
 *   SIGNING [worker pool]: Receipt{channel, seg, j, the request's ref (order_ref), our
 *        merchant_id, the journalled acceptance time}
 *        --signed--> relayed with receipt and merchant_cert;  --failed--> with receipt_error
 *
 * Every field comes from the journal, so the Receipt is byte for byte the one a later ReceiptReq
 * for the same payment gets. The client is not read meanwhile (mp_http_defer), so the request
 * stays valid until the answer is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "chan_sign.h"
#include "gateway_internal.h"
#include "log.h"
#include "receipt.h"
#include "receipt_store.h"
#include "sign_job.h"

struct gw_receipt_job {
	struct gw_call *c;
	uint8_t *cert;
	size_t cert_len;
};

static void relay_paid(struct gw_call *c)
{
	gw_relay(c, c->answer, 200, NULL, true);
	gw_call_free(c);
}

static void set_error(struct gw_call *c, const char *why)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->pay.channel_id, MP_ID_LEN, hex);
	log_warn("gateway: channel %s j=%u paid, receipt not given: %s", hex, c->pay.j, why);
	snprintf(c->receipt_error, sizeof(c->receipt_error), "%s", why);
}

/* The statements in base64 into c; false when memory runs out. */
static bool take_statements(struct gw_call *c, const MpSigned *receipt, const uint8_t *cert,
			    size_t cert_len)
{
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(receipt, &len);
	c->receipt_b64 = bytes ? mp_b64_encode(bytes, len) : NULL;
	c->cert_b64 = mp_b64_encode(cert, cert_len);
	free(bytes);
	return c->receipt_b64 && c->cert_b64;
}

static void on_signed(void *arg, MpSigned *receipt)
{
	struct gw_receipt_job *job = arg;
	struct gw_call *c = job->c;
	if (receipt)
		merchant_count_worker_signature(c->g->m);
	if (!receipt)
		set_error(c, "the receipt could not be signed (the merchant is stopping, or the "
			     "signature failed); ask for it with a ReceiptReq");
	else if (!take_statements(c, receipt, job->cert, job->cert_len))
		set_error(c, "out of memory; ask for the receipt with a ReceiptReq");
	else
		c->g->m->stats.receipts_signed++;
	mp_stmt_free(receipt);
	free(job->cert);
	free(job);
	relay_paid(c);
}

/* The Receipt's signing started (c answered by on_signed), or why not. */
static const char *start(struct gw_call *c)
{
	struct merchant *m = c->g->m;
	if (c->g->stopped || !m->workers)
		return "the merchant is stopping; ask for the receipt with a ReceiptReq";
	struct journalled_pay p;
	const struct channel *ch = channel_find(&m->channels, c->pay.channel_id);
	if (!receipt_store_find(m->store, c->pay.channel_id, ch ? ch->journal_head : 0,
				c->pay.seg_seq, c->pay.j, &p))
		return "the payment's journal row cannot be read; ask with a ReceiptReq";
	struct gw_receipt_job *job = calloc(1, sizeof(*job));
	if (!job)
		return "out of memory; ask for the receipt with a ReceiptReq";
	job->c = c;
	if (!merchant_own_cert(m, &job->cert, &job->cert_len)) {
		free(job);
		return "this merchant has no MerchantCert yet; ask with a ReceiptReq later";
	}
	struct mp_receipt rc = {.seg_seq = c->pay.seg_seq,
				.index = c->pay.j,
				.order_ref_len = p.order_ref_len,
				.time = p.at};
	memcpy(rc.channel_id, c->pay.channel_id, MP_ID_LEN);
	memcpy(rc.order_ref, p.order_ref, p.order_ref_len);
	memcpy(rc.merchant_id, m->mid, MP_ID_LEN);
	Micropay__V1__Receipt body;
	mp_receipt_body(&rc, &body);
	c->state = CALL_SIGNING;
	if (mp_sign_job_submit(m->workers, &m->key, MP_STMT_RECEIPT, &body.base, on_signed, job))
		return NULL;
	c->state = CALL_COMMITTING;
	free(job->cert);
	free(job);
	return "merchant busy: signing queue full; ask for the receipt with a ReceiptReq";
}

void gateway_paid(struct merchant *m, struct batch_entry *e)
{
	struct gw_call *c = e->http;
	const char *why = c->pay.receipt ? start(c) : "";
	if (!why)
		return;
	if (*why)
		set_error(c, why);
	relay_paid(c);
}
