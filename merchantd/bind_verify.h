/* The check of an Open's Transfer/Cap pairs for a channel issued without holder0 that no
 * merchant holds yet (bind.c; docs/transfer.md "Unbound channels"), on a worker thread, before
 * the broker is asked for the Bind. The channel was transferred through the broker: every Cap
 * is the broker's (epoch 0, index 0), verified with mp_custody_verify_all (common/custody.c)
 * with issued_unbound and the broker key from our configuration, no Handoffs and no merchant
 * key (no merchant held the channel, so a merchant's Cap cannot verify). The wallet's Move must
 * be the consent of the last verified segment's owner: signed by that key, for that segment,
 * this channel, epoch 0 and us. That segment is the one we adopt once the broker binds the
 * channel to us (the broker checks the Move under its own record of the current segment's
 * owner, so a list older than the broker's binds nothing). Everything here is a copy. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "segments.h"

struct bind_check {
	/* in */
	uint8_t *cert; /* the channel's ChannelCert bytes (verified at Open) */
	size_t cert_len;
	MpSigned **segments; /* OpenReq.segments: Transfer 1, Cap 1, ... */
	size_t n_segments;
	MpSigned *move; /* OpenReq.move */
	uint8_t broker_pk[MP_PK_LEN];
	uint8_t mid[MP_ID_LEN]; /* us */
	uint64_t t_grace;
	/* out */
	MpCode code;
	char detail[256];
	struct segment_row *rows; /* the verified pairs 1..n_rows (malloc'd) */
	size_t n_rows;
};

/* A check of the Open's pairs and Move (copied); NULL on out of memory. */
struct bind_check *bind_check_new(const uint8_t *cert, size_t cert_len, MpSigned *const *segments,
				  size_t n_segments, const MpSigned *move,
				  const uint8_t broker_pk[MP_PK_LEN], const uint8_t mid[MP_ID_LEN],
				  uint64_t t_grace);
/* Worker thread. */
void bind_check_run(struct bind_check *bc, const atomic_bool *stop);
void bind_check_free(struct bind_check *bc);
