/* The check of a custody chain a holder returned (takeover.c), on a worker thread: the
 * Handoffs and the channel's Transfer/Cap pairs together with mp_custody_verify_all
 * (common/custody.c), the signers' keys from MerchantCerts verified under the broker key (valid
 * until at least redeem_until + T_grace), and that its last Handoff is the one we asked for: it
 * names us, carries our Move's hash, ends the Move's epoch, is above the highest hseq we
 * recorded and points into the last verified segment, whose owner key signed our Move. For a
 * cert without holder0, event 0 is the broker's Bind the holder sent (HandoffResp.bind): type 4
 * under the broker key, parsed strictly, for this channel; its merchant is holder0 and Handoff
 * 1 links to its hash (mp_custody_channel.bound, bind_hash). That
 * segment becomes the channel's current one. For a HANDED_OFF answer (tc->redirect) the chain
 * is verified the same way and its last Handoff judged by takeover_redirect.c instead. Everything
 * here is a copy: the loop may change its state meanwhile. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "proto.h"
#include "segments.h"

struct takeover_check {
	/* in */
	uint8_t *cert; /* the channel's ChannelCert bytes (verified at Open) */
	size_t cert_len;
	MpSigned **chain; /* Handoffs 1..h as the holder sent them */
	size_t n_chain;
	MpSigned *handoff;   /* the Handoff the response names */
	MpSigned **segments; /* Transfer 1, Cap 1, ... as the holder sent them */
	size_t n_segments;
	MpSigned *move; /* the wallet's Move we presented */
	MpSigned *bind; /* HandoffResp.bind: event 0 of a cert without holder0, else NULL */
	uint32_t move_seg;
	MpSigned **certs; /* MerchantCerts of the signers */
	size_t n_certs;
	uint8_t broker_pk[MP_PK_LEN];
	uint64_t t_grace;
	uint8_t mid[MP_ID_LEN];
	uint8_t move_hash[MP_HASH_LEN];
	uint32_t from_epoch;
	uint32_t highest;	  /* the highest hseq we recorded for the channel */
	bool redirect;		  /* a HANDED_OFF answer: takeover_redirect_conclude decides */
	uint8_t asked[MP_ID_LEN]; /* the merchant we asked (the HANDED_OFF answer's signer) */
	/* out */
	MpCode code;
	char detail[256];
	uint32_t hseq, at_index;
	uint8_t w_at[MP_HASH_LEN];
	uint32_t seg_seq, seg_start; /* the current segment: the last verified one */
	bool bound;		     /* the cert has no holder0: `bind` verified, naming bind_mid */
	uint8_t bind_mid[MP_ID_LEN];
	uint8_t new_holder[MP_ID_LEN]; /* redirect: the merchant the last Handoff names */
	struct segment_row *seg_rows;  /* the verified pairs 1..seg_seq (malloc'd) */
	size_t n_seg_rows;
	struct custody_blob *chain_rows, *cert_rows; /* what to store (malloc'd) */
	size_t n_chain_rows, n_cert_rows;
};

/* Worker thread. */
void takeover_check_run(struct takeover_check *tc, const atomic_bool *stop);
void takeover_check_free(struct takeover_check *tc);
