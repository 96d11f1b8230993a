/* What a holder sends about one of a channel's Transfer/Cap pairs (docs/transfer.md): the
 * TransferResp to wallet A (transfer.c) and the CapNoticeReq to the broker (cap_outbox.c) carry
 * the same evidence, read from the channel's pairs in memory and the store. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merchant.h"

struct transfer_evidence {
	MpSigned *transfer, *cap;
	MpSigned **custody; /* Handoffs 1..cap.hseq */
	size_t n_custody;
	MpSigned **certs; /* MerchantCerts of the custody's signers and ours */
	size_t n_certs;
	MpSigned **segments; /* pairs 1..s-1 */
	size_t n_segments;
};

/* The evidence of pair s (1 <= s <= ch->seg_seq) of ch; false (logged) if the store cannot
 * give it. */
bool transfer_evidence_load(struct merchant *m, const struct channel *ch, uint32_t s,
			    struct transfer_evidence *ev);
void transfer_evidence_free(struct transfer_evidence *ev);

/* A TransferResp: status only (s = 0), or with pair s of ch and its evidence (OK,
 * DUPLICATE_OK; CONFLICT carries the stored Transfer and Cap, the Cap also as evidence). */
void transfer_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		    const char *detail, const struct channel *ch, uint32_t s);
