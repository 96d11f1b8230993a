/* transfer.send's shared parts (transfer_send.c: through the holder; transfer_unbound.c: through
 * the broker for a channel no merchant holds yet). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "proto.h"
#include "session.h"
#include "wallet.h"

#define DELTA_XFER 3600 /* protocol.md section 11: a Transfer is valid before pay_until - 1 h */

struct send_op {
	struct wallet *w;
	struct wchannel *ch;
	char hex[MP_HEX_ID_LEN + 1];
	uint8_t *offer_bytes; /* exactly as given, stored with the Transfer */
	size_t offer_len;
	Micropay__V1__TransferOffer *offer;
	MpSigned *transfer; /* the stored Transfer once signed */
	uint32_t declared_last;
	struct mp_admin_req *req; /* through the broker: answered when it answers */
	char endpoint[300];	  /* the `endpoint` parameter, or empty */
	unsigned redirects;	  /* transfer_moved.c: HANDED_OFF redirects followed so far */
	uint64_t started;	  /* ... mp_monotonic_s() of the transfer.send call */
};

void send_op_free(void *arg);
/* Transfer{s = seg_seq + 1, holder_epoch = epoch, declared_last = last, the offer's segment}
 * signed by the current segment's owner key; NULL if the key cannot be had. */
MpSigned *transfer_sign(struct send_op *x);
/* {"bundle", "seg_seq"} to the session s, else to req. */
void transfer_reply_bundle(struct mp_admin_req *req, struct pay_op *s, const uint8_t *bundle,
			   size_t len, uint32_t seg_seq);
/* transfer_unbound.c: the channel has no holder: the TransferReq goes to the broker. Owns x. */
void transfer_send_unbound(struct mp_admin_req *req, struct send_op *x);
/* transfer_send.c: TRANSFERRING at the holder at `endpoint` (the stored Transfer, or one signed
 * and stored after the Open if the channel is ACTIVE). Owns x; req is answered. */
void transfer_send_at_holder(struct mp_admin_req *req, struct send_op *x, const char *endpoint);
/* transfer_moved.c (docs/transfer.md "Bound while TRANSFERRING"): the merchant we sent the
 * Transfer to handed the channel on and answered HANDED_OFF with r->redirect: step one epoch
 * (walletd/redirect.c) and go on at the new holder; else the session fails (still
 * TRANSFERRING, nothing changed). */
void transfer_follow(struct pay_op *s, struct send_op *x, const Micropay__V1__TransferResp *r);
/* TRANSFERRING, open at the holder: x->transfer is what goes to it, the stored Transfer or, when
 * the stored one can no longer be capped by anyone, one re-signed for the holder's epoch and
 * stored in its place. False: the session failed (answered). */
bool transfer_current(struct pay_op *s, struct send_op *x);
