/* Restore mode (docs/operator-guide.md "Backups and restores"; protocol.md section 5: a store
 * restored from a backup holds nothing and must not act as holder for channels it does not
 * have). A restored store may be older than what this merchant signed: a Handoff, Cap or Close
 * signed after the backup is gone from it, so the channels it records as HELD may have been
 * handed on. Started with --restored, merchantd marks every channel it holds at that moment;
 * the mark is durable (restore_store.h), so later starts keep it without the flag.
 *
 *   HELD --start with --restored--> UNCONFIRMED: Open, Pay, HandoffReq, Transfer and
 *        CloseRequest answered NOT_HOLDER (RESTORE_DETAIL); redemption of the epoch it has
 *        recorded goes on (the broker credits each index once: what it credited before the
 *        restore answers DUPLICATE_OK)
 *   UNCONFIRMED --admin restore.confirm (the operator found no later custody event at the
 *        broker or with another merchant)--> HELD, served again */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "admin.h"

struct merchant;
struct channel;

#define RESTORE_DETAIL                                                                             \
	"custody unconfirmed: this merchant's store was restored from a backup and may have "      \
	"handed the channel on since (the operator confirms it with restore.confirm)"

/* Start-up, after the channels are loaded and before anything is served: with `restored`,
 * mark the channels held now; then flag every channel still unconfirmed. */
bool restore_start(struct merchant *m, bool restored);
/* True while the channel may not be served as held. */
bool restore_unconfirmed(const struct channel *ch);
/* {restored_at (null: never), unconfirmed} for status. */
json_t *restore_status_json(const struct merchant *m);
/* Admin restore.confirm {channel}. */
void restore_admin_confirm(struct mp_admin_req *req, json_t *params, void *ctx);
