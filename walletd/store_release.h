/* The wallet's forced releases (docs/release.md "The wallet"): table forced_closes keeps, per
 * channel, the broker's ForcedClose once it verified under the broker key, with its epoch and
 * final_index. Asking again overwrites the row (the broker answers the same bytes). A channel
 * with a row is RELEASED (wallet.h). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "util.h"

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_release_migrate(struct wstore *s);
bool wstore_forced_close_put(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			     const MpSigned *forced_close, uint32_t epoch, uint32_t final_index);
/* 1 if the channel has a stored ForcedClose, 0 if not, -1 on error (logged). */
int wstore_forced_close_has(struct wstore *s, const uint8_t channel_id[MP_ID_LEN]);
