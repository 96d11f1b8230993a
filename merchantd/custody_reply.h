/* Statements a merchant sends with an answer, read from its store: decoded copies of stored
 * bytes, a channel's Handoffs and the MerchantCerts of their signers (handoff.c, transfer.c,
 * cap_outbox.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "custody_store.h"
#include "merchant.h"

/* Append stored statement bytes, decoded, to *arr; false on a bad row or out of memory. */
bool stmt_push(MpSigned ***arr, size_t *n, const uint8_t *data, size_t len);
void stmts_free(MpSigned **arr, size_t n);
/* The MerchantCert of every signer of chain (ours from meta, others from peer_certs), each once,
 * appended to *certs. */
bool certs_push(struct merchant *m, const struct custody_blob *chain, size_t n, MpSigned ***certs,
		size_t *n_certs);
/* The MerchantCert of the merchant the last Handoff of chain names (to_mid), appended to *certs
 * unless it signed one of chain (then certs_push has it) or we do not have it (a requester that
 * sent no HandoffReq.requester_cert). False only on an unreadable Handoff. */
bool certs_push_named(struct merchant *m, const struct custody_blob *chain, size_t n,
		      MpSigned ***certs, size_t *n_certs);
/* The channel's stored Handoffs 1..upto (exactly those: false if one is missing) into *custody,
 * and the MerchantCerts of the signers of every stored Handoff and ours into *certs. */
bool custody_reply_load(struct merchant *m, const uint8_t channel_id[MP_ID_LEN], uint32_t upto,
			MpSigned ***custody, size_t *n_custody, MpSigned ***certs, size_t *n_certs);

/* The body of an answer about Handoff hseq >= 1 of ch that we signed or received: custody = the
 * stored Handoffs 1..hseq (handoff = the last), the MerchantCerts of their signers (with
 * `named`: also of the merchant Handoff hseq names, when we have it), the channel's pairs and,
 * for a cert without holder0, the Bind. False (logged, resp left empty) if the store cannot
 * give it. Free with handoff_resp_clear. */
bool handoff_resp_load(struct merchant *m, const struct channel *ch, uint32_t hseq, bool named,
		       Micropay__V1__HandoffResp *resp);
void handoff_resp_clear(Micropay__V1__HandoffResp *resp);
