/* Customer-to-customer transfer, holder side (protocol.md sections 4-6; docs/transfer.md, "The
 * holder: TransferReq"): wallet A, on the connection where it opened the channel, sends the
 * Transfer it signed with the current segment's owner key; we end that segment with a Cap
 * signed at the pay path's in-memory point (pending payments included), switch to B's segment
 * at once, and answer once the pair is durable.
 *
 * A TransferReq, serialised on the channel with Pay and HandoffReq (one loop thread; a Handoff
 * or Cap waiting for its commit makes it LIMIT), takes the first case that applies:
 *   no Transfer, or a body naming no channel      -> MALFORMED
 *   channel unknown here                         -> UNKNOWN_CHANNEL
 *   its Close, Cap or Handoff being signed (SIGNING, chan_sign.h) -> LIMIT (retry)
 *   handed off, unless it names a segment we capped before the Handoff -> HANDED_OFF, with a
 *   redirect for a Transfer the owner signed (transfer_redirect.c);  closed (close.c) ->
 *   CLOSED unless it names a segment we capped before the Close;  not held (a takeover in
 *   progress) -> NOT_HOLDER
 *   new_seg_seq in 1..current (a segment we already capped): verified under the owner key of
 *   segment new_seg_seq - 1 (BAD_SIG / MALFORMED); while that Cap waits for its commit -> LIMIT;
 *   the same stmt_hash as the stored Transfer -> DUPLICATE_OK with the stored Cap (never
 *   re-signed); another -> CONFLICT carrying the stored Transfer and Cap
 *   signed by the current segment's owner key (type, key, signature, then the strict parse,
 *   field lengths)                               -> BAD_SIG / MALFORMED
 *   channel_id -> MALFORMED;  holder_epoch != our epoch -> NOT_HOLDER;
 *   new_seg_seq != current + 1 -> MALFORMED;  prev_seg_hash != the current segment's head ->
 *   MALFORMED;  new_seg_seq >= MAX_SEGMENTS -> LIMIT
 *   clock >= pay_until - δ_xfer or >= valid_until -> EXPIRED;  exhausted (last = n) ->
 *   OUT_OF_RANGE;  in-memory last > declared_last -> STALE_INDEX;  last + new_len < n ->
 *   OUT_OF_RANGE;  a Handoff or Cap of the channel waiting for its commit, its record not
 *   durable yet, or the group commit full -> LIMIT (retry)
 *   an unpaid offer holds the channel (offer_blocks, offer.h) -> CONFLICT naming it
 *   otherwise: build Cap{channel_id, new_seg_seq, transfer_hash, hseq, (current segment, last,
 *   w_last)} and sign it on the worker pool (chan_sign.h: SIGNING, every request of the
 *   channel LIMIT meanwhile; queue full, or the group commit full once signed -> LIMIT,
 *   nothing changed); once signed switch in memory to segment s (base point (cap_index,
 *   new_root), owner to_owner_pk, no credit), queue the pair, the channel row in segment s and
 *   a Cap outbox row in the group commit after the channel's pending Pays, and answer
 *   (transfer_acknowledge) only once that batch has committed; then the outbox notifies the
 *   broker (cap_outbox.c).
 *
 *   HELD(seg s-1) --valid Transfer--> SIGNING --signed--> CAP_PENDING
 *   CAP_PENDING --commit--> HELD(seg s): TransferResp sent, outbox row --> CapNoticeReq
 * While CAP_PENDING, Pays of segment s are taken (they queue behind the Cap), Pays of s-1 get
 * STALE_SEGMENT (the Cap is sent as evidence only once durable), Handoffs and Transfers LIMIT. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "cap_outbox.h"
#include "chan_sign.h"
#include "log.h"
#include "restore.h"
#include "merchant.h"
#include "offer.h"
#include "proto_limits.h"
#include "segments.h"
#include "stmt.h"
#include "transfer_redirect.h"
#include "transfer_reply.h"

#define DELTA_XFER 3600 /* protocol.md section 8: Transfer and Cap below pay_until - δ_xfer */

static void refuse(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		   const char *detail, const char *hex)
{
	m->stats.transfer_refusals++;
	log_info("%s: transfer of channel %s refused: %s (%s)", mp_conn_peer(c), hex,
		 mp_code_name(code), detail);
	transfer_reply(m, c, request_id, code, detail, NULL, 0);
}

/* The channel and segment a Transfer names, read from its body only to know which owner key
 * to expect; *named false if it names none (no Transfer, unreadable body). */
static struct channel *transfer_channel(struct merchant *m, const MpSigned *t, uint32_t *seg,
					bool *named)
{
	*named = false;
	if (!t || t->type != MP_STMT_TRANSFER)
		return NULL;
	Micropay__V1__Transfer *b = (Micropay__V1__Transfer *)mp_strict_unpack(
	    &micropay__v1__transfer__descriptor, t->body.data, t->body.len);
	struct channel *ch = NULL;
	*named = b && mp_bytes_len_is(b->channel_id, MP_ID_LEN);
	if (*named)
		ch = channel_find(&m->channels, b->channel_id.data);
	if (b) {
		*seg = b->new_seg_seq;
		micropay__v1__transfer__free_unpacked(b, NULL);
	}
	return ch;
}

/* A Transfer for a segment we capped: the stored pair, or the conflict. */
static void answer_capped(struct merchant *m, struct mp_conn *c, uint64_t request_id,
			  struct channel *ch, const MpSigned *t, uint32_t s, const char *hex)
{
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(t, MP_STMT_TRANSFER, channel_segment_owner(ch, s - 1),
				   &micropay__v1__transfer__descriptor, &body);
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
	if (code != MP_ST(OK)) {
		refuse(m, c, request_id, code, "Transfer not signed by its segment's owner", hex);
		return;
	}
	if (ch->cap_pending && s == ch->seg_seq) {
		refuse(m, c, request_id, MP_ST(LIMIT), "the Cap is being committed; retry", hex);
		return;
	}
	uint8_t hash[MP_HASH_LEN];
	mp_stmt_hash(t, hash);
	bool same = !memcmp(hash, ch->segs[s - 1].transfer_hash, MP_HASH_LEN);
	if (!same) {
		m->stats.transfer_refusals++;
		log_warn("%s: channel %s: another Transfer for segment %u, which is capped",
			 mp_conn_peer(c), hex, s);
	}
	transfer_reply(m, c, request_id, same ? MP_ST(DUPLICATE_OK) : MP_ST(CONFLICT),
		       same ? "the stored Cap" : "segment already capped: the stored pair", ch, s);
}

static bool lengths_ok(const Micropay__V1__Transfer *t)
{
	return mp_bytes_len_is(t->channel_id, MP_ID_LEN) &&
	       mp_bytes_len_is(t->to_owner_pk, MP_PK_LEN) &&
	       mp_bytes_len_is(t->new_nonce, MP_NONCE_LEN) &&
	       mp_bytes_len_is(t->new_root, MP_HASH_LEN) &&
	       mp_bytes_len_is(t->prev_seg_hash, MP_HASH_LEN);
}

/* The checks of a verified Transfer against the channel, in the order of the header. */
static MpCode check(const struct merchant *m, const struct channel *ch,
		    const Micropay__V1__Transfer *t, const char **detail)
{
	uint64_t now = mp_clock_now(&m->clock);
	if (!lengths_ok(t))
		return *detail = "field lengths", MP_ST(MALFORMED);
	if (memcmp(t->channel_id.data, ch->id, MP_ID_LEN))
		return *detail = "another channel", MP_ST(MALFORMED);
	if (t->holder_epoch != ch->hseq)
		return *detail = "holder_epoch is not this merchant's epoch", MP_ST(NOT_HOLDER);
	if (t->new_seg_seq != ch->seg_seq + 1)
		return *detail = "new_seg_seq is not the current segment + 1", MP_ST(MALFORMED);
	if (memcmp(t->prev_seg_hash.data, ch->seg_head, MP_HASH_LEN))
		return *detail = "prev_seg_hash is not the current segment's head",
		       MP_ST(MALFORMED);
	if (t->new_seg_seq >= MP_MAX_SEGMENTS)
		return *detail = "MAX_SEGMENTS reached", MP_ST(LIMIT);
	if (now + DELTA_XFER >= ch->pay_until || now >= t->valid_until)
		return *detail = "past pay_until - δ_xfer or the Transfer's valid_until",
		       MP_ST(EXPIRED);
	if (ch->last >= ch->n)
		return *detail = "channel exhausted", MP_ST(OUT_OF_RANGE);
	if (ch->last > t->declared_last)
		return *detail = "payments above declared_last were accepted", MP_ST(STALE_INDEX);
	if ((uint64_t)ch->last + t->new_len < ch->n)
		return *detail = "new_len too short to reach n", MP_ST(OUT_OF_RANGE);
	if (ch->handoff_pending || ch->cap_pending || ch->close_pending || !ch->recorded ||
	    !batch_has_room(m))
		return *detail = "the channel or the store is busy; retry", MP_ST(LIMIT);
	return MP_ST(OK);
}

/* Back from the worker (chan_sign.h) with the Cap signed at the point it was built at:
 * CAP_PENDING, the pay path moves to segment s now; the pair is queued. ctx: the Transfer's
 * bytes (freed here). */
static void on_cap_signed(struct merchant *m, struct channel *ch, struct mp_conn *c,
			  uint64_t request_id, const MpSigned *s, void *ctx)
{
	struct mp_bytes_copy *t = ctx;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (ch)
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
	MpSigned *transfer = s ? mp_stmt_decode(t->data, t->len) : NULL;
	free(t->data);
	free(t);
	bool room = s && batch_has_room(m);
	struct segment_row *row = room && transfer ? calloc(1, sizeof(*row)) : NULL;
	bool ok = row && segment_row_from(row, transfer, s) && channel_push_segment(ch, row);
	mp_stmt_free(transfer);
	if (!ok) {
		if (row)
			segment_row_clear(row);
		free(row);
		if (s && !room)
			m->stats.store_busy++;
		if (mp_conn_is_open(c))
			refuse(m, c, request_id, room || !s ? MP_ST(INTERNAL) : MP_ST(LIMIT),
			       room || !s ? "cannot sign the Cap" : "merchant busy; retry", hex);
		return;
	}
	memcpy(ch->w_last, row->root, MP_HASH_LEN); /* last = cap_index stays */
	ch->credit = 0;
	ch->last_order_ref_len = 0;
	ch->cap_pending = true;
	struct batch_entry e = {
	    .kind = ENTRY_CAP, .ch = ch, .conn = c, .request_id = request_id, .seg = row};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
	log_info("channel %s: Cap %u at index %u signed (epoch %u); segment %u from there, sent "
		 "once durable",
		 hex, row->seg_seq, row->start, row->hseq, row->seg_seq);
}

/* Build the Cap at the pay path's point and sign it on the pool (SIGNING until it is back). */
static void cap(struct merchant *m, struct mp_conn *c, uint64_t request_id, struct channel *ch,
		const MpSigned *transfer, const char *hex)
{
	uint8_t transfer_hash[MP_HASH_LEN];
	mp_stmt_hash(transfer, transfer_hash);
	Micropay__V1__Cap cap = MICROPAY__V1__CAP__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	cap.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->id};
	cap.new_seg_seq = ch->seg_seq + 1;
	cap.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, transfer_hash};
	cap.hseq = ch->hseq;
	pt.seg_seq = ch->seg_seq;
	pt.index = ch->last;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)ch->w_last};
	cap.point = &pt;
	struct mp_bytes_copy *t = calloc(1, sizeof(*t));
	if (!t || !(t->data = mp_stmt_encode(transfer, &t->len))) {
		free(t);
		refuse(m, c, request_id, MP_ST(INTERNAL), "cannot sign the Cap", hex);
		return;
	}
	if (!chan_sign_submit(m, ch, c, request_id, MP_STMT_CAP, &cap.base, on_cap_signed, t)) {
		free(t->data);
		free(t);
		refuse(m, c, request_id, MP_ST(LIMIT), "merchant busy: signing queue full; retry",
		       hex);
	}
}

void transfer_acknowledge(struct merchant *m, struct batch_entry *e)
{
	m->stats.caps_signed++;
	if (m->fault == MP_FAULT_CAP_AFTER_COMMIT) { /* test-only: crash before the answer */
		log_warn("MP_FAULT=cap_after_commit: Cap %u committed; exiting before sending it",
			 e->seg->seg_seq);
		_exit(MP_FAULT_EXIT);
	}
	if (mp_conn_is_open(e->conn))
		transfer_reply(m, e->conn, e->request_id, MP_ST(OK), NULL, e->ch, e->seg->seg_seq);
	cap_outbox_kick(m);
}

static void serve(struct merchant *m, struct mp_conn *c, uint64_t request_id, struct channel *ch,
		  const MpSigned *transfer, uint32_t s, const char *hex)
{
	bool capped = s >= 1 && s <= ch->seg_seq;
	if (ch->state == CHANNEL_HANDED_OFF && !capped) {
		transfer_redirect(m, c, request_id, ch, transfer, s, hex);
		return;
	}
	if (ch->state == CHANNEL_CLOSED && !capped) {
		refuse(m, c, request_id, MP_ST(CLOSED), "closed by its owner: no transfer", hex);
		return;
	}
	if (ch->state != CHANNEL_HELD && ch->state != CHANNEL_CLOSED &&
	    ch->state != CHANNEL_HANDED_OFF) {
		refuse(m, c, request_id, MP_ST(NOT_HOLDER),
		       "this merchant does not hold the channel", hex);
		return;
	}
	if (capped) {
		answer_capped(m, c, request_id, ch, transfer, s, hex);
		return;
	}
	if (restore_unconfirmed(ch)) {
		refuse(m, c, request_id, MP_ST(NOT_HOLDER), RESTORE_DETAIL, hex);
		return;
	}
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(transfer, MP_STMT_TRANSFER, ch->owner_pk,
				   &micropay__v1__transfer__descriptor, &body);
	const char *detail = "Transfer not signed by the current segment's owner";
	if (code == MP_ST(OK))
		code = check(m, ch, (const Micropay__V1__Transfer *)body, &detail);
	char held[512];
	if (code == MP_ST(OK) && offer_blocks(ch, "transfer", held, sizeof(held))) {
		code = MP_ST(CONFLICT);
		detail = held;
	}
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
	if (code != MP_ST(OK)) {
		refuse(m, c, request_id, code, detail, hex);
		return;
	}
	cap(m, c, request_id, ch, transfer, hex);
}

void handle_transfer(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const MpSigned *transfer = env->transfer_req->transfer;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	uint32_t s = 0;
	bool named;
	struct channel *ch = transfer_channel(m, transfer, &s, &named);
	if (!ch) {
		refuse(m, c, env->request_id, named ? MP_ST(UNKNOWN_CHANNEL) : MP_ST(MALFORMED),
		       named ? "unknown channel" : "no readable Transfer", hex);
		return;
	}
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	const char *busy = channel_busy(ch);
	if (busy) {
		refuse(m, c, env->request_id, MP_ST(LIMIT), busy, hex);
		return;
	}
	char why[200];
	if (!mp_clock_guard_serving(m->clock_guard, why, sizeof(why))) {
		refuse(m, c, env->request_id, MP_ST(INTERNAL), why, hex);
		return;
	}
	serve(m, c, env->request_id, ch, transfer, s, hex);
}
