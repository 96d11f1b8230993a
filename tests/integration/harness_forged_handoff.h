/* A hostile holder's HandoffResps for the hostile_servers suite: answers a merchantd's
 * HandoffReq with OK and a Handoff that is forged (signed by the wrong key, for another channel,
 * naming another merchant) or replayed (a genuine Handoff read from a merchant's journal), with
 * the custody chain of that one Handoff and the holder's MerchantCert. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

struct forged_holder {
	const struct mp_key *key;      /* signs the Handoff */
	uint8_t channel_id[MP_ID_LEN]; /* the channel it names */
	uint8_t from[MP_ID_LEN];       /* the holder it names as signer */
	uint8_t to[MP_ID_LEN];	       /* the merchant it hands to */
	const struct tchannel *ch;     /* its word at index `at`, its cert's hash */
	uint32_t at;
	const MpSigned *replay;	     /* when set: this Handoff verbatim instead */
	const MpSigned *holder_cert; /* the MerchantCert sent along */
};

/* hostile_answer_fn: to a HandoffReq, OK with the Handoff of arg (a struct forged_holder) for
 * the request's Move (hseq from_epoch + 1, move_hash of the Move); 0 for other requests. */
size_t forged_handoff_answer(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg);

/* Handoff hseq of channel_hex as merchantd NAME stored it in its journal (read while it runs).
 * Fails the test if absent. */
MpSigned *merchant_stored_handoff(const struct net *n, const char *name, const char *channel_hex,
				  uint32_t hseq);
