/* A Close in a claim's custody evidence (protocol.md sections 4 and 6 "Redemption"; docs/close.md):
 * merchantd's custody record for a channel it closed ends with the Close it signed. The custody
 * list of a claim is Handoffs 1..H, optionally followed by that one Close. A Close ends the
 * latest epoch of the chain: it is valid iff it is signed by the merchant of custody event H
 * (key from its MerchantCert valid until the channel's redeem_until + T_grace), names the
 * channel and hseq H, and its point lies in a segment of the evidence, at or above event H's
 * index within that segment, with w_final verifying there. Its final_index then ends epoch H
 * for the claim (claims above it are refused like claims above the claimant's own Handoff). */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "custody.h"
#include "custody_verify.h"

/* The number of Handoffs in the claim's custody list; *close the trailing Close, or NULL. */
size_t close_split(const Micropay__V1__Claim *cl, const MpSigned **close);

struct close_check {
	const struct custody_chan *ch;
	const struct mp_custody_event *events; /* 0..n_handoffs, verified */
	size_t n_handoffs;
	const struct mp_custody_segment *segments; /* verified, segment 0 first */
	size_t n_segments;
	mp_custody_key_fn key;
	void *key_arg;
	struct mp_hasher *h;
	const atomic_bool *stop;
};

/* OK with *final_index, or the refusal (BAD_SIG, MALFORMED, OUT_OF_RANGE, BAD_CHAIN,
 * NOT_HOLDER; INTERNAL if stopped) with detail. */
MpCode close_verify(const struct close_check *cc, const MpSigned *close, uint32_t *final_index,
		    char *detail, size_t len);
