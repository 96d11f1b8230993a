/* Early close, holder side (protocol.md sections 4-6 "Close", 10; docs/close.md): the owner of
 * the channel's current segment, on any connection, sends a CloseRequest for our epoch; we sign
 * a Close at the pay path's in-memory point (pending payments included), mark the channel
 * CLOSED in memory at once (every later Pay, Transfer and HandoffReq gets CLOSED) and answer
 * once the Close is durable. A Close ends our epoch for good: we redeem up to final_index from
 * the epoch row it writes, and hold the channel no more.
 *
 * A CloseReq, serialised on the channel with Pay, HandoffReq and TransferReq (one loop thread;
 * a Handoff, Cap or Close waiting for its commit makes it LIMIT), takes the first case that
 * applies:
 *   no CloseRequest, or a body naming no channel -> MALFORMED
 *   channel unknown here                         -> UNKNOWN_CHANNEL
 *   its Close, Cap or Handoff being signed (SIGNING, chan_sign.h) -> LIMIT (retry)
 *   its seg_seq names no segment we know         -> HANDED_OFF if we handed the channel off,
 *                                                   else STALE_SEGMENT "unknown segment"
 *   not signed by the owner key of its segment (type, key, signature, then the strict parse,
 *   field lengths, channel_id)                   -> BAD_SIG / MALFORMED (nothing revealed)
 *   a Handoff, Cap or Close of the channel waiting for its commit, or its record not durable
 *                                                -> LIMIT (retry)
 *   CLOSED: the request is for the segment and epoch our Close ended -> DUPLICATE_OK with the
 *     stored Close (the same bytes, never re-signed); otherwise CLOSED
 *   handed off -> HANDED_OFF;  not held (a takeover in progress) -> NOT_HOLDER
 *   seg_seq below the current segment (transferred) -> STALE_SEGMENT
 *   epoch != our epoch                           -> NOT_HOLDER
 *   an unpaid offer holds the channel (offer_blocks, offer.h) -> CONFLICT naming it
 *   the group commit full                        -> LIMIT (retry)
 *   otherwise: build Close{channel_id, hseq, (seg_seq, last, w_last)} at the pay path's point
 *   and sign it on the worker pool (chan_sign.h; queue full -> LIMIT, nothing changed); once
 *   signed (the group commit full by then -> LIMIT, the signature dropped): state CLOSED in
 *   memory, queue it after the channel's pending Pays (Close, epoch end, state CLOSED in one
 *   transaction) and answer (close_acknowledge) only once that batch committed.
 *
 *   HELD --valid CloseRequest--> SIGNING (every request of the channel: LIMIT) --signed-->
 *        CLOSE_PENDING --commit--> CLOSED: CloseResp sent
 *   CLOSED --the same CloseRequest--> DUPLICATE_OK with the stored Close
 * A crash between the commit and the answer loses nothing: the restart loads the channel CLOSED
 * with its Close, and the wallet's retry gets those bytes. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "chan_sign.h"
#include "close_reply.h"
#include "fault.h"
#include "log.h"
#include "restore.h"
#include "merchant.h"
#include "offer.h"
#include "segments.h"
#include "stmt.h"

static void refuse(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		   const char *detail, const char *hex)
{
	m->stats.close_refusals++;
	log_info("%s: close of channel %s refused: %s (%s)", mp_conn_peer(c), hex,
		 mp_code_name(code), detail);
	close_reply(m, c, request_id, code, detail, NULL);
}

/* The channel and segment a CloseRequest names, read from its body only to know which owner
 * key to expect; *named false if it names none. */
static struct channel *request_channel(struct merchant *m, const MpSigned *r, uint32_t *seg,
				       bool *named)
{
	*named = false;
	if (!r || r->type != MP_STMT_CLOSE_REQUEST)
		return NULL;
	Micropay__V1__CloseRequest *b = (Micropay__V1__CloseRequest *)mp_strict_unpack(
	    &micropay__v1__close_request__descriptor, r->body.data, r->body.len);
	struct channel *ch = NULL;
	*named = b && mp_bytes_len_is(b->channel_id, MP_ID_LEN);
	if (*named)
		ch = channel_find(&m->channels, b->channel_id.data);
	if (b) {
		*seg = b->seg_seq;
		micropay__v1__close_request__free_unpacked(b, NULL);
	}
	return ch;
}

/* The entry's write for the Close signed at the channel's point (bytes copied into ch->close). */
static struct custody_write *close_write(struct merchant *m, struct channel *ch, const MpSigned *s)
{
	struct custody_write *cw = calloc(1, sizeof(*cw));
	if (!cw)
		return NULL;
	if (!chan_sign_custody_write(cw, m, ch, ch->hseq, s) ||
	    !(ch->close = malloc(cw->handoff.len))) {
		custody_write_free(cw);
		return NULL;
	}
	memcpy(ch->close, cw->handoff.data, cw->handoff.len);
	ch->close_len = cw->handoff.len;
	return cw;
}

/* Back from the worker (chan_sign.h): CLOSED in memory, queued after the channel's pending
 * Pays; the answer once durable. */
static void on_close_signed(struct merchant *m, struct channel *ch, struct mp_conn *c,
			    uint64_t request_id, const MpSigned *s, void *ctx)
{
	(void)ctx;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (ch)
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
	bool room = s && batch_has_room(m);
	struct custody_write *cw = room ? close_write(m, ch, s) : NULL;
	if (!cw) {
		if (s && !room)
			m->stats.store_busy++;
		if (mp_conn_is_open(c))
			refuse(m, c, request_id, room || !s ? MP_ST(INTERNAL) : MP_ST(LIMIT),
			       room || !s ? "cannot sign the Close" : "merchant busy; retry", hex);
		return;
	}
	ch->state = CHANNEL_CLOSED;
	ch->close_pending = true;
	struct batch_entry e = {
	    .kind = ENTRY_CLOSE, .ch = ch, .conn = c, .request_id = request_id, .custody = cw};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
	log_info("channel %s: Close of epoch %u at index %u (segment %u) signed; sent once durable",
		 hex, cw->closed_hseq, cw->end_index, cw->end_seg);
}

/* Build the Close at the pay path's point and sign it on the pool (SIGNING until it is back). */
static void close_channel(struct merchant *m, struct mp_conn *c, uint64_t request_id,
			  struct channel *ch, const char *hex)
{
	if (!batch_has_room(m)) {
		m->stats.store_busy++;
		refuse(m, c, request_id, MP_ST(LIMIT), "merchant busy; retry", hex);
		return;
	}
	Micropay__V1__Close cl = MICROPAY__V1__CLOSE__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->id};
	cl.hseq = ch->hseq;
	pt.seg_seq = ch->seg_seq;
	pt.index = ch->last;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, ch->w_last};
	cl.point = &pt;
	if (!chan_sign_submit(m, ch, c, request_id, MP_STMT_CLOSE, &cl.base, on_close_signed, NULL))
		refuse(m, c, request_id, MP_ST(LIMIT), "merchant busy: signing queue full; retry",
		       hex);
}

void close_acknowledge(struct merchant *m, struct batch_entry *e)
{
	m->stats.closes_signed++;
	if (m->fault == MP_FAULT_CLOSE_AFTER_COMMIT) { /* test-only: crash before the answer */
		log_warn("MP_FAULT=close_after_commit: Close of epoch %u committed; exiting before "
			 "sending it",
			 e->custody->closed_hseq);
		_exit(MP_FAULT_EXIT);
	}
	if (mp_conn_is_open(e->conn))
		close_reply(m, e->conn, e->request_id, MP_ST(OK), NULL, e->ch);
}

bool channel_closed_by_broker(const struct channel *ch)
{
	MpSigned *s = ch->close ? mp_stmt_decode(ch->close, ch->close_len) : NULL;
	bool forced = s && s->type == MP_STMT_FORCED_CLOSE;
	mp_stmt_free(s);
	return forced;
}

static MpCode check(const struct channel *ch, const Micropay__V1__CloseRequest *r,
		    const char **detail)
{
	if (!mp_bytes_len_is(r->channel_id, MP_ID_LEN) ||
	    memcmp(r->channel_id.data, ch->id, MP_ID_LEN))
		return *detail = "another channel", MP_ST(MALFORMED);
	if (ch->handoff_pending || ch->cap_pending || ch->close_pending || !ch->recorded)
		return *detail = "the channel's record is being committed; retry", MP_ST(LIMIT);
	if (ch->state == CHANNEL_CLOSED && channel_closed_by_broker(ch))
		return *detail = "closed by the broker's ForcedClose", MP_ST(CLOSED);
	if (ch->state == CHANNEL_CLOSED) {
		bool same = r->seg_seq == ch->seg_seq && r->epoch == ch->hseq;
		return *detail = same ? "the stored Close" : "closed: the Close ended the channel",
		       same ? MP_ST(DUPLICATE_OK) : MP_ST(CLOSED);
	}
	if (ch->state == CHANNEL_HANDED_OFF)
		return *detail = "handed off to another merchant: close there", MP_ST(HANDED_OFF);
	if (ch->state != CHANNEL_HELD)
		return *detail = "this merchant does not hold the channel", MP_ST(NOT_HOLDER);
	if (restore_unconfirmed(ch))
		return *detail = RESTORE_DETAIL, MP_ST(NOT_HOLDER);
	if (r->seg_seq != ch->seg_seq)
		return *detail = "segment transferred: the Cap ended it", MP_ST(STALE_SEGMENT);
	if (r->epoch != ch->hseq)
		return *detail = "epoch is not this merchant's epoch", MP_ST(NOT_HOLDER);
	return MP_ST(OK);
}

static void serve(struct merchant *m, struct mp_conn *c, uint64_t request_id, struct channel *ch,
		  const MpSigned *request, uint32_t seg, const char *hex)
{
	const uint8_t *owner = channel_segment_owner(ch, seg);
	if (!owner) { /* nothing is revealed for a request we cannot verify */
		bool gone = ch->state == CHANNEL_HANDED_OFF;
		refuse(m, c, request_id, gone ? MP_ST(HANDED_OFF) : MP_ST(STALE_SEGMENT),
		       gone ? "handed off (the request's segment is unknown here)"
			    : "unknown segment",
		       hex);
		return;
	}
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(request, MP_STMT_CLOSE_REQUEST, owner,
				   &micropay__v1__close_request__descriptor, &body);
	const char *detail = "CloseRequest not signed by the owner of its segment";
	if (code == MP_ST(OK))
		code = check(ch, (const Micropay__V1__CloseRequest *)body, &detail);
	char held[512];
	if (code == MP_ST(OK) && offer_blocks(ch, "close", held, sizeof(held))) {
		code = MP_ST(CONFLICT);
		detail = held;
	}
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
	if (code == MP_ST(DUPLICATE_OK)) {
		log_info("%s: channel %s: the CloseRequest again: the stored Close",
			 mp_conn_peer(c), hex);
		close_reply(m, c, request_id, code, detail, ch);
	} else if (code != MP_ST(OK)) {
		refuse(m, c, request_id, code, detail, hex);
	} else {
		close_channel(m, c, request_id, ch, hex);
	}
}

void handle_close(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const MpSigned *request = env->close_req->request;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	uint32_t seg = 0;
	bool named;
	struct channel *ch = request_channel(m, request, &seg, &named);
	if (!ch || ch->state == CHANNEL_UNKNOWN) {
		refuse(m, c, env->request_id, named ? MP_ST(UNKNOWN_CHANNEL) : MP_ST(MALFORMED),
		       named ? "unknown channel" : "no readable CloseRequest", hex);
		return;
	}
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	const char *busy = channel_busy(ch);
	if (busy) {
		refuse(m, c, env->request_id, MP_ST(LIMIT), busy, hex);
		return;
	}
	serve(m, c, env->request_id, ch, request, seg, hex);
}
