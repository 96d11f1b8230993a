/* Handoff, holder side (protocol.md sections 4-6, "Handoff"): another merchant M2, over mutual
 * TLS, presents the wallet's Move; we sign Handoff h+1 at the channel's in-memory point
 * (pending payments included) and answer it with the full custody chain once it is durable.
 *
 * A HandoffReq, serialised on the channel (one loop thread; a Handoff waiting for its commit
 * blocks further requests on that channel with LIMIT), takes the first case that applies:
 *   peer without a merchant certificate   -> MALFORMED, nothing else (no statement leaves)
 *   channel unknown here                  -> UNKNOWN_CHANNEL
 *   its Close, Cap or Handoff being signed (SIGNING, chan_sign.h) -> LIMIT (retry)
 *   Move for a segment we do not know      -> HANDED_OFF without a statement if we handed the
 *                                             channel off, else STALE_SEGMENT "unknown segment"
 *   Move not signed by the owner of its segment (the cert's for 0, Transfer s's to_owner_pk
 *   for s)                                 -> BAD_SIG / MALFORMED (checked before anything is
 *                                            revealed: HANDED_OFF answers need a valid Move)
 *   a Handoff, Cap or Close of the channel waiting for its commit -> LIMIT (retry)
 *   closed (close.c)                       -> CLOSED carrying the Close as evidence
 *   our latest custody event is a Handoff we signed naming the peer, and the Move is for the
 *   epoch it ended                         -> DUPLICATE_OK with the stored bytes
 *   not the holder (handed off)            -> HANDED_OFF with the latest Handoff we signed and
 *                                             the MerchantCert of the merchant it names (kept
 *                                             from its HandoffReq.requester_cert)
 *   Move for another merchant than the peer, or self-handoff -> MALFORMED
 *   Move for an earlier segment            -> STALE_SEGMENT carrying the Cap that ended it
 *   Move for another epoch                 -> NOT_HOLDER
 *   (a channel issued without holder0 is handed off like any other: Handoff 1 links to the
 *   broker's Bind, which every answer carries in HandoffResp.bind)
 *   MAX_HANDOFFS reached                   -> LIMIT;  exhausted (last = n) -> OUT_OF_RANGE;
 *   past pay_until - δ_xfer                -> EXPIRED
 *   an unpaid offer holds the channel (offer_blocks, offer.h) -> CONFLICT naming it
 *   requester_cert present but not the broker's MerchantCert of the peer -> MALFORMED
 *   otherwise: build Handoff h+1 at (seg_seq, last, w_last) of the pay path (the current
 *   segment; segments_head = its head), sign it on the worker pool (chan_sign.h: SIGNING;
 *   queue full, or the group commit full once signed -> LIMIT, nothing changed); once signed
 *   answer with the channel's pairs too, mark the channel HANDED_OFF in memory at once (every
 *   later Pay gets HANDED_OFF), queue it in the group commit after the channel's pending Pays
 *   (custody row, closed epoch, channel state in one transaction), and send it only after that
 *   batch commits (handoff_acknowledge).
 *
 *   HELD --valid Move--> SIGNING --signed--> HANDOFF_PENDING --commit--> HANDED_OFF
 *   HANDED_OFF --Handoff naming us--> HELD
 *
 * Idempotency is by (channel, to_mid, epoch): a retry is recognised by the stored Handoff's
 * to_mid and hseq, never by a nonce; the stored bytes are returned, never a re-signed one. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "chan_sign.h"
#include "custody_reply.h"
#include "custody_store.h"
#include "fault.h"
#include "log.h"
#include "restore.h"
#include "merchant.h"
#include "offer.h"
#include "proto_limits.h"
#include "segments.h"
#include "stmt.h"
#include "tls.h"

#define DELTA_XFER 3600 /* protocol.md section 8: Handoffs below pay_until - δ_xfer */

/* Answer with status and, for OK, DUPLICATE_OK and HANDED_OFF, the Handoff hseq of the channel
 * with the stored chain up to it, its signers' certs and the channel's Transfer/Cap pairs; for
 * HANDED_OFF also the MerchantCert of the merchant that Handoff names, when we have it. */
static void reply_handoff(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
			  const char *detail, const struct channel *ch, uint32_t hseq,
			  const MpSigned *evidence)
{
	Micropay__V1__HandoffResp resp = MICROPAY__V1__HANDOFF_RESP__INIT;
	MpStatus st;
	if (ch && hseq > 0 && !handoff_resp_load(m, ch, hseq, code == MP_ST(HANDED_OFF), &resp)) {
		log_err("%s: handoff: the stored custody chain (hseq %u) is unreadable",
			mp_conn_peer(c), hseq);
		code = MP_ST(INTERNAL);
		detail = "stored custody chain unreadable";
	}
	resp.status = merchant_status(&st, code, detail);
	st.evidence = (MpSigned *)evidence;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_RESP);
	env.handoff_resp = &resp;
	merchant_send(c, request_id, &env);
	handoff_resp_clear(&resp);
}

static void refuse_evidence(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
			    const char *detail, const char *hex, const MpSigned *evidence)
{
	m->stats.handoff_refusals++;
	log_info("%s: handoff of channel %s refused: %s (%s)", mp_conn_peer(c), hex,
		 mp_code_name(code), detail);
	reply_handoff(m, c, request_id, code, detail, NULL, 0, evidence);
}

static void refuse(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		   const char *detail, const char *hex)
{
	refuse_evidence(m, c, request_id, code, detail, hex, NULL);
}

/* The channel and segment named by a Move, read from its body only to know which owner key to
 * expect (the owner of that segment). */
static struct channel *move_channel(struct merchant *m, const MpSigned *move, uint32_t *seg_seq)
{
	if (!move || move->type != MP_STMT_MOVE)
		return NULL;
	Micropay__V1__Move *mv = (Micropay__V1__Move *)mp_strict_unpack(
	    &micropay__v1__move__descriptor, move->body.data, move->body.len);
	struct channel *ch = NULL;
	if (mv && mp_bytes_len_is(mv->channel_id, MP_ID_LEN))
		ch = channel_find(&m->channels, mv->channel_id.data);
	if (mv) {
		*seg_seq = mv->seg_seq;
		micropay__v1__move__free_unpacked(mv, NULL);
	}
	return ch;
}

/* The stored Handoff we signed that ended our latest epoch: it names to_mid and ends hseq. */
static bool stored_handoff_names(struct merchant *m, const struct channel *ch,
				 const uint8_t to_mid[MP_ID_LEN])
{
	Micropay__V1__Handoff *h = custody_store_handoff_body(m->store, ch->id, ch->hseq + 1);
	bool names = h && mp_bytes_len_is(h->to_mid, MP_ID_LEN) &&
		     !memcmp(h->to_mid.data, to_mid, MP_ID_LEN);
	if (h)
		micropay__v1__handoff__free_unpacked(h, NULL);
	return names;
}

/* Checks of a verified Move against our state; OK or the refusal. */
static MpCode check_move(const struct merchant *m, const struct channel *ch,
			 const Micropay__V1__Move *mv, const uint8_t peer[MP_ID_LEN],
			 const char **detail)
{
	if (!mp_bytes_len_is(mv->to_mid, MP_ID_LEN) || memcmp(mv->to_mid.data, peer, MP_ID_LEN)) {
		*detail = "Move.to_mid is not the requesting merchant";
		return MP_ST(MALFORMED);
	}
	if (!memcmp(peer, m->mid, MP_ID_LEN)) {
		*detail = "self-handoff";
		return MP_ST(MALFORMED);
	}
	if (mv->seg_seq != ch->seg_seq) { /* an earlier one: serve() adds its Cap */
		*detail = "Move is for a segment that was transferred";
		return MP_ST(STALE_SEGMENT);
	}
	if (mv->from_epoch != ch->hseq) {
		*detail = "Move.from_epoch is not this merchant's epoch";
		return MP_ST(NOT_HOLDER);
	}
	if (ch->unbound && !ch->bind) { /* never held without it (open.c, takeover.c) */
		*detail = "the channel's Bind is missing here";
		return MP_ST(INTERNAL);
	}
	if (ch->hseq + 1 > MP_MAX_HANDOFFS) {
		*detail = "MAX_HANDOFFS reached";
		return MP_ST(LIMIT);
	}
	if (ch->last >= ch->n) {
		*detail = "channel exhausted";
		return MP_ST(OUT_OF_RANGE);
	}
	if (mp_clock_now(&m->clock) + DELTA_XFER >= ch->pay_until) {
		*detail = "past pay_until - δ_xfer";
		return MP_ST(EXPIRED);
	}
	return MP_ST(OK);
}

/* The hash of custody event h of the channel: for 0 the cert, or the broker's Bind for a cert
 * without holder0 (Handoff 1 links to it: common/custody.h, bind_hash); else our stored
 * Handoff h. */
static bool event_hash(struct merchant *m, const struct channel *ch, uint32_t h,
		       uint8_t out[MP_HASH_LEN])
{
	uint8_t *bytes = ch->unbound ? ch->bind : ch->cert;
	size_t len = ch->unbound ? ch->bind_len : ch->cert_len;
	if (!bytes)
		return false;
	struct custody_blob b = {0};
	if (h > 0) {
		if (!custody_store_get(m->store, ch->id, h, &b))
			return false;
		bytes = b.data;
		len = b.len;
	}
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (s)
		mp_stmt_hash(s, out);
	mp_stmt_free(s);
	free(b.data);
	return s != NULL;
}

/* Handoff h+1 at the pay path's point, to be signed on the pool. */
struct handoff_body {
	Micropay__V1__Handoff h;
	MpPoint pt;
	uint8_t prev[MP_HASH_LEN], move_hash[MP_HASH_LEN];
};

static bool build_handoff(struct merchant *m, struct channel *ch, const MpSigned *move,
			  const uint8_t to_mid[MP_ID_LEN], struct handoff_body *hb)
{
	if (!event_hash(m, ch, ch->hseq, hb->prev))
		return false;
	mp_stmt_hash(move, hb->move_hash);
	Micropay__V1__Handoff *h = &hb->h;
	micropay__v1__handoff__init(h);
	micropay__v1__point__init(&hb->pt);
	h->channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->id};
	h->hseq = ch->hseq + 1;
	h->from_mid = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
	h->to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to_mid};
	hb->pt.seg_seq = ch->seg_seq;
	hb->pt.index = ch->last;
	hb->pt.w = (ProtobufCBinaryData){MP_HASH_LEN, ch->w_last};
	h->point = &hb->pt;
	h->segments_head = (ProtobufCBinaryData){MP_HASH_LEN, ch->seg_head};
	h->prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, hb->prev};
	h->move_hash = (ProtobufCBinaryData){MP_HASH_LEN, hb->move_hash};
	return true;
}

/* HandoffReq.requester_cert: absent, or the broker's MerchantCert of the peer; kept with the
 * Handoff (one certs row of cw) so that HANDED_OFF answers can say where the peer is. */
static bool take_requester_cert(struct merchant *m, struct custody_write *cw, const MpSigned *cert,
				const uint8_t peer[MP_ID_LEN])
{
	if (!cert)
		return true;
	ProtobufCMessage *body = NULL;
	if (mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, m->broker_pk,
			 &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return false;
	Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)body;
	bool ok = mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
		  !memcmp(mc->merchant_id.data, peer, MP_ID_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	if (!ok || !(cw->certs = calloc(1, sizeof(*cw->certs))))
		return false;
	memcpy(cw->certs[0].mid, peer, MP_ID_LEN);
	cw->certs[0].data = mp_stmt_encode(cert, &cw->certs[0].len);
	cw->n_certs = 1;
	return cw->certs[0].data != NULL;
}

/* Back from the worker (chan_sign.h): HANDED_OFF in memory, queued after the channel's
 * pending Pays; the answer once durable. ctx: the custody write (the requester's cert). */
static void on_handoff_signed(struct merchant *m, struct channel *ch, struct mp_conn *c,
			      uint64_t request_id, const MpSigned *s, void *ctx)
{
	struct custody_write *cw = ctx;
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (ch)
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
	bool room = s && batch_has_room(m);
	if (!room || !chan_sign_custody_write(cw, m, ch, ch->hseq + 1, s)) {
		custody_write_free(cw); /* signed but never stored nor sent */
		if (s && !room)
			m->stats.store_busy++;
		if (mp_conn_is_open(c))
			refuse(m, c, request_id, room || !s ? MP_ST(INTERNAL) : MP_ST(LIMIT),
			       room || !s ? "cannot sign the Handoff" : "merchant busy; retry",
			       hex);
		return;
	}
	ch->state = CHANNEL_HANDED_OFF;
	ch->handoff_pending = true;
	struct batch_entry e = {
	    .kind = ENTRY_HANDOFF, .ch = ch, .conn = c, .request_id = request_id, .custody = cw};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
	log_info("channel %s: Handoff %u to m-%s at index %u signed; sent once durable", hex,
		 cw->handoff.hseq, mp_conn_is_open(c) ? mp_conn_peer(c) : "?", cw->end_index);
}

/* Build Handoff h+1 and sign it on the pool (SIGNING until it is back). */
static void hand_off(struct merchant *m, struct mp_conn *c, uint64_t request_id, struct channel *ch,
		     const MpSigned *move, const MpSigned *requester_cert,
		     const uint8_t peer[MP_ID_LEN], const char *hex)
{
	if (!batch_has_room(m)) {
		m->stats.store_busy++;
		refuse(m, c, request_id, MP_ST(LIMIT), "merchant busy; retry", hex);
		return;
	}
	struct handoff_body hb;
	struct custody_write *cw = calloc(1, sizeof(*cw));
	if (!cw || !build_handoff(m, ch, move, peer, &hb)) {
		free(cw);
		refuse(m, c, request_id, MP_ST(INTERNAL), "cannot sign the Handoff", hex);
		return;
	}
	if (!take_requester_cert(m, cw, requester_cert, peer)) {
		custody_write_free(cw);
		refuse(m, c, request_id, MP_ST(MALFORMED),
		       "requester_cert is not the broker's MerchantCert of the requester", hex);
		return;
	}
	if (!chan_sign_submit(m, ch, c, request_id, MP_STMT_HANDOFF, &hb.h.base, on_handoff_signed,
			      cw)) {
		custody_write_free(cw);
		refuse(m, c, request_id, MP_ST(LIMIT), "merchant busy: signing queue full; retry",
		       hex);
	}
}

void handoff_acknowledge(struct merchant *m, struct batch_entry *e)
{
	m->stats.handoffs_signed++;
	if (m->fault == MP_FAULT_HANDOFF_AFTER_COMMIT) { /* test-only: crash before the answer */
		log_warn("MP_FAULT=handoff_after_commit: Handoff %u committed; exiting before "
			 "sending it",
			 e->custody->handoff.hseq);
		_exit(MP_FAULT_EXIT);
	}
	if (mp_conn_is_open(e->conn))
		reply_handoff(m, e->conn, e->request_id, MP_ST(OK), NULL, e->ch,
			      e->custody->handoff.hseq, NULL);
}

/* The Move verified under the owner key of its segment; then the cases of the header, in order. */
static void serve(struct merchant *m, struct mp_conn *c, uint64_t request_id, struct channel *ch,
		  const Micropay__V1__HandoffReq *req, const Micropay__V1__Move *mv,
		  const uint8_t peer[MP_ID_LEN], const char *hex)
{
	if (ch->handoff_pending || ch->cap_pending || ch->close_pending || !ch->recorded) {
		refuse(m, c, request_id, MP_ST(LIMIT),
		       "the channel's record is being committed; "
		       "retry",
		       hex);
		return;
	}
	if (ch->state == CHANNEL_CLOSED) { /* protocol.md section 6: CLOSED with the Close */
		MpSigned *close = mp_stmt_decode(ch->close, ch->close_len);
		refuse_evidence(m, c, request_id, close ? MP_ST(CLOSED) : MP_ST(INTERNAL),
				close ? "closed by its owner: the Close"
				      : "stored Close unreadable",
				hex, close);
		mp_stmt_free(close);
		return;
	}
	if (ch->state == CHANNEL_HANDED_OFF) {
		bool same = mv->from_epoch == ch->hseq && stored_handoff_names(m, ch, peer);
		reply_handoff(m, c, request_id, same ? MP_ST(DUPLICATE_OK) : MP_ST(HANDED_OFF),
			      same ? "the stored Handoff" : "handed off: the latest Handoff", ch,
			      ch->hseq + 1, NULL);
		return;
	}
	if (ch->state != CHANNEL_HELD) {
		refuse(m, c, request_id, MP_ST(NOT_HOLDER),
		       "this merchant does not hold the "
		       "channel",
		       hex);
		return;
	}
	if (restore_unconfirmed(ch)) {
		refuse(m, c, request_id, MP_ST(NOT_HOLDER), RESTORE_DETAIL, hex);
		return;
	}
	const char *detail = NULL;
	MpCode code = check_move(m, ch, mv, peer, &detail);
	if (code == MP_ST(STALE_SEGMENT)) { /* mv->seg_seq < ch->seg_seq: the Cap that ended it */
		const struct segment_row *ended = &ch->segs[mv->seg_seq];
		MpSigned *cap = mp_stmt_decode(ended->cap, ended->cap_len);
		refuse_evidence(m, c, request_id, code, detail, hex, cap);
		mp_stmt_free(cap);
		return;
	}
	char held[512];
	if (code == MP_ST(OK) && offer_blocks(ch, "handoff", held, sizeof(held))) {
		code = MP_ST(CONFLICT);
		detail = held;
	}
	if (code != MP_ST(OK)) {
		refuse(m, c, request_id, code, detail, hex);
		return;
	}
	hand_off(m, c, request_id, ch, req->move, req->requester_cert, peer, hex);
}

void handle_handoff(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const MpSigned *move = env->handoff_req->move;
	uint8_t peer[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1] = "?";
	if (!mp_tls_peer_merchant_id(mp_conn_ssl(c), peer)) {
		refuse(m, c, env->request_id, MP_ST(MALFORMED),
		       "a HandoffReq needs mutual TLS with a merchant certificate", hex);
		return;
	}
	char why[200];
	if (!mp_clock_guard_serving(m->clock_guard, why, sizeof(why))) {
		refuse(m, c, env->request_id, MP_ST(INTERNAL), why, hex);
		return;
	}
	uint32_t seg_seq = 0;
	struct channel *ch = move_channel(m, move, &seg_seq);
	if (!ch) {
		refuse(m, c, env->request_id, move ? MP_ST(UNKNOWN_CHANNEL) : MP_ST(MALFORMED),
		       move ? "unknown channel" : "no Move", hex);
		return;
	}
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	const char *busy = channel_busy(ch);
	if (busy) {
		refuse(m, c, env->request_id, MP_ST(LIMIT), busy, hex);
		return;
	}
	const uint8_t *owner = channel_segment_owner(ch, seg_seq);
	if (!owner) { /* nothing is revealed for a Move we cannot verify */
		bool gone = ch->state == CHANNEL_HANDED_OFF;
		refuse(m, c, env->request_id, gone ? MP_ST(HANDED_OFF) : MP_ST(STALE_SEGMENT),
		       gone ? "handed off (the Move's segment is unknown here)" : "unknown segment",
		       hex);
		return;
	}
	ProtobufCMessage *body = NULL;
	MpCode code =
	    mp_stmt_open(move, MP_STMT_MOVE, owner, &micropay__v1__move__descriptor, &body);
	if (code != MP_ST(OK)) {
		refuse(m, c, env->request_id, code, "Move not signed by the channel's owner", hex);
		return;
	}
	serve(m, c, env->request_id, ch, env->handoff_req, (Micropay__V1__Move *)body, peer, hex);
	protobuf_c_message_free_unpacked(body, NULL);
}
