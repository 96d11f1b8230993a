/* Restore mode's durable part (restore.h): table restored_channels holds, per channel that was
 * held when merchantd started with --restored, the epoch it held and whether the operator has
 * confirmed its custody since; meta key "restored_at" the time of the latest such start. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

bool restore_store_migrate(struct store *s);
/* One transaction: every channel in state HELD is marked unconfirmed (again, if it was
 * confirmed after an earlier restore), restored_at := now. False (logged): nothing changed. */
bool restore_store_mark(struct store *s, uint64_t now);
/* restored_at (0: never restored) and each channel still unconfirmed. */
typedef void (*restore_each_fn)(void *arg, const uint8_t channel_id[MP_ID_LEN]);
bool restore_store_load(struct store *s, uint64_t *restored_at, restore_each_fn each, void *arg);
/* Confirm the channel's custody; *changed is false when it was not unconfirmed. */
bool restore_store_confirm(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint64_t now,
			   bool *changed);
