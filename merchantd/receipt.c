/* ReceiptReq (docs/receipts.md): a signed Receipt for a payment this merchant durably accepted.
 *
 *   ReceiptReq --lengths, index >= 1--(else MALFORMED)-->
 *   journal row at (channel, seg_seq, index), committed rows only (receipt_store.h)
 *        --not there, but pending in a batch------> TOO_EARLY (retry once it is committed)
 *        --not there-------------------------------> UNKNOWN_CHANNEL / OUT_OF_RANGE
 *        --w is not the journalled word-------------> BAD_CHAIN
 *        --no MerchantCert of ours yet--------------> INTERNAL
 *        v
 *   SIGNING [worker pool, common/sign_job.h]: Receipt{channel, seg_seq, index, the journalled
 *        order_ref, our merchant_id, the journalled acceptance time}
 *        --(queue full)--> LIMIT busy;  --(signing failed, pool stopped)--> INTERNAL
 *        v
 *   ReceiptResp{OK, receipt, our MerchantCert}
 *
 * Nothing is stored: every field comes from the journal and Ed25519 is deterministic, so the
 * same request gets the same Receipt byte for byte for as long as the journal row is kept
 * (until compaction folds it, at least t_dedupe after it was accepted). */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "chan_sign.h"
#include "log.h"
#include "merchant.h"
#include "receipt.h"
#include "receipt_store.h"
#include "sign_job.h"
#include "stmt.h"

struct receipt_job {
	struct merchant *m;
	struct mp_conn *conn; /* referenced until answered */
	uint64_t request_id;
	char hex[MP_HEX_ID_LEN + 1];
	uint32_t index;
	uint8_t *cert; /* our MerchantCert's bytes */
	size_t cert_len;
};

static void reply_receipt(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
			  MpSigned *receipt, MpSigned *cert)
{
	Micropay__V1__ReceiptResp resp = MICROPAY__V1__RECEIPT_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	resp.receipt = receipt;
	resp.merchant_cert = cert;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(RECEIPT_RESP);
	env.receipt_resp = &resp;
	merchant_send(c, request_id, &env);
}

static void refuse(struct merchant *m, struct mp_conn *c, const MpEnvelope *env, MpCode code,
		   const char *detail)
{
	m->stats.receipt_refusals++;
	const Micropay__V1__ReceiptReq *r = env->receipt_req;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (mp_bytes_len_is(r->channel_id, MP_ID_LEN))
		mp_hex_encode(r->channel_id.data, MP_ID_LEN, hex);
	log_info("%s: receipt for channel %s index %u refused: %s: %s", mp_conn_peer(c), hex,
		 r->index, mp_code_name(code), detail);
	reply_receipt(c, env->request_id, code, detail, NULL, NULL);
}

static void job_free(struct receipt_job *j)
{
	mp_conn_unref(j->conn);
	free(j->cert);
	free(j);
}

static void on_signed(void *arg, MpSigned *receipt)
{
	struct receipt_job *j = arg;
	MpSigned *cert = receipt ? mp_stmt_decode(j->cert, j->cert_len) : NULL;
	if (!receipt || !cert)
		log_err("channel %s: the receipt for index %u could not be signed", j->hex,
			j->index);
	if (receipt)
		merchant_count_worker_signature(j->m);
	if (mp_conn_is_open(j->conn)) {
		if (receipt && cert) {
			j->m->stats.receipts_signed++;
			reply_receipt(j->conn, j->request_id, MP_ST(OK), "", receipt, cert);
		} else {
			j->m->stats.receipt_refusals++;
			reply_receipt(j->conn, j->request_id, MP_ST(INTERNAL),
				      "the receipt could not be signed; retry", NULL, NULL);
		}
	}
	mp_stmt_free(receipt);
	mp_stmt_free(cert);
	job_free(j);
}

/* Why there is no journalled payment at the requested point (the code, *detail). */
static MpCode not_found(struct merchant *m, const Micropay__V1__ReceiptReq *r, const char **detail)
{
	const struct channel *ch = channel_find(&m->channels, r->channel_id.data);
	if (!ch) {
		*detail = "unknown channel";
		return MP_ST(UNKNOWN_CHANNEL);
	}
	if (batch_find(m, ch, r->seg_seq, r->index)) {
		*detail = "the payment is not committed yet; retry";
		return MP_ST(TOO_EARLY);
	}
	*detail = "no payment accepted at this index (or its journal row was compacted)";
	return MP_ST(OUT_OF_RANGE);
}

/* Sign the Receipt for p on the worker pool; false if the pool is full (nothing taken). */
static bool submit(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		   const struct journalled_pay *p, uint8_t *cert, size_t cert_len)
{
	const Micropay__V1__ReceiptReq *r = env->receipt_req;
	struct mp_receipt rc = {.seg_seq = r->seg_seq,
				.index = r->index,
				.order_ref_len = p->order_ref_len,
				.time = p->at};
	memcpy(rc.channel_id, r->channel_id.data, MP_ID_LEN);
	memcpy(rc.order_ref, p->order_ref, p->order_ref_len);
	memcpy(rc.merchant_id, m->mid, MP_ID_LEN);
	Micropay__V1__Receipt body;
	mp_receipt_body(&rc, &body);
	struct receipt_job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	*j = (struct receipt_job){.m = m,
				  .conn = c,
				  .request_id = env->request_id,
				  .index = r->index,
				  .cert = cert,
				  .cert_len = cert_len};
	mp_hex_encode(rc.channel_id, MP_ID_LEN, j->hex);
	mp_conn_ref(c);
	if (mp_sign_job_submit(m->workers, &m->key, MP_STMT_RECEIPT, &body.base, on_signed, j))
		return true;
	j->cert = NULL; /* the caller still owns it */
	job_free(j);
	return false;
}

void handle_receipt(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__ReceiptReq *r = env->receipt_req;
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN) || !mp_bytes_len_is(r->w, MP_HASH_LEN) ||
	    r->index < 1) {
		refuse(m, c, env, MP_ST(MALFORMED), "field lengths or index 0");
		return;
	}
	const struct channel *ch = channel_find(&m->channels, r->channel_id.data);
	if (ch && ch->signing) {
		refuse(m, c, env, MP_ST(LIMIT), CHAN_SIGNING_DETAIL);
		return;
	}
	struct journalled_pay p;
	const char *detail = NULL;
	if (!receipt_store_find(m->store, r->channel_id.data, ch ? ch->journal_head : 0, r->seg_seq,
				r->index, &p)) {
		MpCode code = not_found(m, r, &detail);
		refuse(m, c, env, code, detail);
		return;
	}
	if (CRYPTO_memcmp(p.w, r->w.data, MP_HASH_LEN)) {
		refuse(m, c, env, MP_ST(BAD_CHAIN),
		       "w is not the word of the payment at this index");
		return;
	}
	uint8_t *cert = NULL;
	size_t cert_len = 0;
	if (!merchant_own_cert(m, &cert, &cert_len)) {
		refuse(m, c, env, MP_ST(INTERNAL), "this merchant has no MerchantCert yet; retry");
		return;
	}
	if (!submit(m, c, env, &p, cert, cert_len)) {
		free(cert);
		refuse(m, c, env, MP_ST(LIMIT), "merchant busy: signing queue full; retry");
	}
}
