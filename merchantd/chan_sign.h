/* A channel's statement (Close, Cap, Handoff) signed on the worker pool (common/sign_job.h),
 * never on the event loop: with the key in a PKCS#11 token a signature takes about 1.8 ms,
 * which on the loop would stall every connection (docs/keys.md, "Threads and the token").
 *
 *   HELD --request valid, checks passed, group commit has room-->
 *   body built on the loop at the pay path's point (the job owns a copy of its bytes)
 *        --chan_sign_submit: queue full--> false: the caller answers LIMIT, nothing changed
 *        v
 *   SIGNING (ch->signing): every request for the channel (Pay, Open, HandoffReq, TransferReq,
 *   CloseReq, ReceiptReq) is answered LIMIT and changes nothing, so the point cannot move
 *        v  worker: Ed25519 under m->key
 *   loop: SIGNING cleared, then the flow's done(m, ch, conn, request_id, stmt, ctx):
 *        stmt NULL (signing failed, pool stopped at shutdown) -> the flow answers INTERNAL
 *        the channel's point moved meanwhile (never expected) -> logged, stmt NULL as well
 *        otherwise the flow's own: state in memory, the entry queued in the group commit, the
 *        answer sent once durable (journal before send, as before the pool).
 *
 * The connection is referenced while the job is out: if it closes meanwhile only the answer
 * is lost (done sees mp_conn_is_open false). The channel is found again by id on the loop. */
#pragma once
#include "batch.h"
#include "merchant.h"
#include "stmt.h"

/* ch: the channel (found again by id; NULL only if it is gone). stmt: the signed statement
 * (freed after done returns: copy what is kept), or NULL. ctx: the flow's, now done's. */
typedef void (*chan_signed_fn)(struct merchant *m, struct channel *ch, struct mp_conn *c,
			       uint64_t request_id, const MpSigned *stmt, void *ctx);

/* Sign body (serialised now) for ch on the pool and mark ch SIGNING. False when the queue is
 * full or memory is short: nothing changed, ctx still the caller's. */
bool chan_sign_submit(struct merchant *m, struct channel *ch, struct mp_conn *c,
		      uint64_t request_id, enum mp_stmt_type type, const ProtobufCMessage *body,
		      chan_signed_fn done, void *ctx);

/* The custody write of s, signed at ch's point as hseq (a Close: the epoch it ends; a
 * Handoff: the next one): the statement's bytes and the closed epoch's end at that point.
 * False when memory is short (cw then holds what was set: custody_write_free it). */
bool chan_sign_custody_write(struct custody_write *cw, const struct merchant *m,
			     const struct channel *ch, uint32_t hseq, const MpSigned *s);

/* A signature made on the pool (the counter of micropay_merchant_signatures_total). */
static inline void merchant_count_worker_signature(struct merchant *m)
{
	m->stats.signatures_worker++;
}

/* The detail of the LIMIT answered to a request for a channel in SIGNING. */
#define CHAN_SIGNING_DETAIL "the channel's statement is being signed; retry"

/* A copy of a statement's bytes a flow keeps in its ctx while the job is out. */
struct mp_bytes_copy {
	uint8_t *data;
	size_t len;
};
