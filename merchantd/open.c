/* Open: check a ChannelCert off-line against the broker key from our own configuration, apply
 * the holder rule from our own durable record, and prove holding in the OpenAck
 * (protocol.md section 6, "Open and pay").
 *
 * The OpenAck gives the channel's durable point and credit, never the pay path's: an
 * application or wallet told of a pending Pay could lose it to a crash. Why that is consistent
 * with what a wallet does with its in-flight Pays (resent verbatim before any new Pay; one with
 * j <= OpenAck.last that gets STALE_INDEX counts as accepted):
 *  - a Pay j pending in a batch when the Open arrives: OpenAck.last < j. The wallet resends it;
 *    step 3 sees j <= the pay path's last and finds it pending, so the retry joins the filling
 *    batch and gets DUPLICATE_OK after the original's commit (pay.c, answer_retry). If the
 *    merchant crashes first, nothing of j was durable: after the restart last < j again and
 *    the resent Pay is simply accepted (OK/UNDERPAID). Either way the wallet ends with j
 *    accepted exactly once, never a false refusal;
 *  - j <= OpenAck.last: durable, so a STALE_INDEX the wallet reads as "accepted" is true (and an
 *    identical retry gets DUPLICATE_OK from the channel row or the journal);
 *  - the wallet's first new Pay comes after its in-flight ones were answered, so it builds on
 *    the last they moved it to, which the pay path already had.
 * Showing the pay path's last instead would let a wallet count a pending Pay as accepted
 * (STALE_INDEX with j <= last) and then lose it to a crash.
 *
 * A channel seen for the first time is recorded through the group commit (batch.h) and its
 * OpenAck sent once that record is durable; an Open of a channel whose record is still pending
 * waits for the same commit. Both can be refused LIMIT while the store is behind. */
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "chan_sign.h"
#include "channel_cert.h"
#include "custody_store.h"
#include "log.h"
#include "offer.h"
#include "restore.h"
#include "merchant.h"
#include "segments.h"
#include "stmt.h"
#include "store.h"

/* The OpenAck proves holding: for an epoch h > 0 it carries the Handoff naming us; it always
 * carries our MerchantCert, which the wallet passes to the next merchant as its holder hint. */
static void reply_open_full(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
			    struct merchant *m, const struct channel *ch, const MpSigned *evidence)
{
	Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
	MpStatus st;
	MpPoint point = MICROPAY__V1__POINT__INIT;
	struct custody_blob event = {0};
	uint8_t *own = NULL;
	size_t own_len = 0;
	ack.status = merchant_status(&st, code, detail);
	st.evidence = (MpSigned *)evidence;
	if (ch) {
		ack.hseq = ch->hseq;
		point.seg_seq = ch->durable_seg; /* the current segment, once its Cap is durable */
		point.index = ch->durable_last;
		point.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)ch->durable_w};
		ack.point = &point;
		ack.credit = ch->durable_credit;
		ack.last_order_ref = (ProtobufCBinaryData){ch->durable_order_ref_len,
							   (uint8_t *)ch->durable_order_ref};
		ack.max_jump = m->cfg.max_jump;
		if (ch->hseq > 0 && custody_store_get(m->store, ch->id, ch->hseq, &event))
			ack.custody_event = mp_stmt_decode(event.data, event.len);
		else if (ch->hseq == 0 && ch->bind) /* event 0 of an unbound cert: our Bind */
			ack.custody_event = mp_stmt_decode(ch->bind, ch->bind_len);
		if (merchant_own_cert(m, &own, &own_len))
			ack.holder_cert = mp_stmt_decode(own, own_len);
		const struct offer *held = offer_holding(ch);
		if (held && held->recorded && ch->durable_last == held->after_index)
			ack.held_by_offer = mp_stmt_decode(held->signed_offer, held->signed_len);
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_ACK);
	env.open_ack = &ack;
	merchant_send(c, request_id, &env);
	mp_stmt_free(ack.custody_event);
	mp_stmt_free(ack.holder_cert);
	mp_stmt_free(ack.held_by_offer);
	free(event.data);
	free(own);
}

void reply_open(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
		struct merchant *m, const struct channel *ch)
{
	reply_open_full(c, request_id, code, detail, m, ch, NULL);
}

void reply_open_evidence(struct mp_conn *c, uint64_t request_id, MpCode code, const char *detail,
			 struct merchant *m, const MpSigned *evidence)
{
	reply_open_full(c, request_id, code, detail, m, NULL, evidence);
}

/* Policy checks of a verified cert; OK or the refusal with its detail. */
static MpCode check_cert(const struct merchant *m, const Micropay__V1__ChannelCert *cc,
			 const char **detail)
{
	uint64_t now = mp_clock_now(&m->clock);
	*detail = NULL;
	if (!mp_bytes_len_is(cc->broker_key_id, MP_KEY_ID_LEN) ||
	    memcmp(cc->broker_key_id.data, m->broker_key_id, MP_KEY_ID_LEN) != 0 ||
	    !mp_bytes_len_is(cc->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(cc->owner_pk, MP_PK_LEN) ||
	    !mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) ||
	    !mp_bytes_len_is(cc->root, MP_HASH_LEN)) {
		*detail = "cert fields";
		return MP_ST(MALFORMED);
	}
	if (cc->n < 1 || cc->unit_value < 1 || cc->unit_value > INT64_MAX ||
	    cc->redeem_until < cc->pay_until) {
		*detail = "cert bounds";
		return MP_ST(MALFORMED);
	}
	if (strcmp(cc->currency, m->cfg.currency) != 0) {
		*detail = "currency not accepted here";
		return MP_ST(MALFORMED);
	}
	if (now + m->cfg.pay_margin >= cc->pay_until) {
		*detail = "channel no longer payable";
		return MP_ST(EXPIRED);
	}
	if (cc->pay_until > now + m->cfg.max_pay_window ||
	    cc->redeem_until + m->cfg.t_grace > m->cert_valid_until) {
		*detail = "channel outlives this merchant's policy or MerchantCert";
		return MP_ST(OUT_OF_RANGE);
	}
	if (cc->holder0.len != 0 && !mp_bytes_len_is(cc->holder0, MP_ID_LEN)) {
		*detail = "cert holder0 length";
		return MP_ST(MALFORMED);
	}
	return MP_ST(OK);
}

void open_acknowledge(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		      const struct channel *ch)
{
	m->stats.opens++;
	reply_open(c, request_id, MP_ST(OK), NULL, m, ch);
}

/* An unbound cert's channel takes holder0 from our Bind (kept with the channel, stored with
 * its row). */
static bool take_bind(struct channel *ch, const uint8_t mid[MP_ID_LEN], const MpSigned *bind)
{
	if (!bind)
		return !ch->unbound; /* an unbound cert is never held without its Bind */
	ch->bind = mp_stmt_encode(bind, &ch->bind_len);
	memcpy(ch->holder0, mid, MP_ID_LEN);
	return ch->bind != NULL;
}

/* The pairs of a channel transferred through the broker before its Bind (bind_verify.c
 * verified them): in memory, the last one current at its base point (cap_index, new root), and
 * copies for the channel's record in the batch entry. */
static bool take_segments(struct channel *ch, const struct segment_row *rows, size_t n_rows,
			  struct batch_entry *e)
{
	if (n_rows == 0)
		return true;
	struct custody_write *cw = calloc(1, sizeof(*cw));
	if (cw)
		cw->segs = calloc(n_rows, sizeof(*cw->segs));
	bool ok = cw && cw->segs;
	for (size_t i = 0; ok && i < n_rows; i++) {
		ok = channel_push_segment(ch, &rows[i]) && segment_row_copy(&cw->segs[i], &rows[i]);
		cw->n_segs += ok ? 1 : 0;
	}
	e->custody = cw;
	if (!ok)
		return false;
	ch->last = ch->durable_last = ch->seg_start;
	ch->durable_seg = ch->seg_seq;
	return true;
}

/* A channel held from now on (holder0 or the Bind is us): in memory at once, so that Pays can
 * follow, and its record in the filling batch, ahead of any Pay on it. */
static struct channel *adopt_channel(struct merchant *m, const MpSigned *cert,
				     const Micropay__V1__ChannelCert *cc, const MpSigned *bind,
				     const struct segment_row *rows, size_t n_rows,
				     struct batch_entry *e)
{
	struct channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	memcpy(ch->id, cc->channel_id.data, MP_ID_LEN);
	size_t len;
	uint8_t *bytes = mp_stmt_encode(cert, &len);
	bool ok = bytes && channel_from_cert(ch, bytes, len) && take_bind(ch, m->mid, bind) &&
		  take_segments(ch, rows, n_rows, e);
	free(bytes);
	if (!ok) {
		custody_write_free(e->custody);
		e->custody = NULL;
		channel_free(ch);
		return NULL;
	}
	ch->state = CHANNEL_HELD;
	memcpy(ch->w_last, ch->root, MP_HASH_LEN); /* the current segment's base point */
	memcpy(ch->durable_w, ch->root, MP_HASH_LEN);
	channel_insert(&m->channels, ch);
	e->insert = true;
	struct channel_row *r = &e->row;
	memcpy(r->id, ch->id, MP_ID_LEN);
	r->cert = ch->cert;
	r->cert_len = ch->cert_len;
	r->bind = ch->bind;
	r->bind_len = ch->bind_len;
	r->state = ch->state;
	r->hseq = ch->hseq;
	r->seg_seq = ch->seg_seq;
	r->seg_start = ch->seg_start;
	memcpy(r->w_last, ch->w_last, MP_HASH_LEN);
	r->redeem_until = ch->redeem_until;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	log_info("channel %s: held (epoch 0, segment %u from index %u, n %u, unit %llu)", hex,
		 ch->seg_seq, ch->seg_start, ch->n, (unsigned long long)ch->unit_value);
	return ch;
}

/* A verified Open of a channel we hold (or will): answer now from the durable record, or once
 * the record is durable. */
void open_hold(struct merchant *m, struct mp_conn *c, uint64_t request_id, const MpSigned *cert,
	       const Micropay__V1__ChannelCert *cc, const MpSigned *bind,
	       const struct segment_row *rows, size_t n_rows)
{
	struct channel *ch = channel_find(&m->channels, cc->channel_id.data);
	if (ch && ch->recorded) {
		open_acknowledge(m, c, request_id, ch);
		return;
	}
	if (!batch_has_room(m)) {
		m->stats.store_busy++;
		log_info("%s: open refused: the store is behind", mp_conn_peer(c));
		reply_open(c, request_id, MP_ST(LIMIT), "merchant busy; retry", m, NULL);
		return;
	}
	struct batch_entry e = {.kind = ENTRY_OPEN, .conn = c, .request_id = request_id};
	if (!ch && !(ch = adopt_channel(m, cert, cc, bind, rows, n_rows, &e))) {
		log_err("%s: open: cannot hold the channel (out of memory or unreadable cert)",
			mp_conn_peer(c));
		reply_open(c, request_id, MP_ST(INTERNAL), "cannot record the channel", m, NULL);
		return;
	}
	e.ch = ch;
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	batch_add(m, &e);
}

/* The wallet names another merchant as the holder of a channel without holder0 (it paid
 * there, so a Bind exists): ask that merchant for a Handoff (takeover.c verifies the Bind it
 * sends with the chain) instead of asking the broker for a Bind. */
static bool hints_another(const struct merchant *m, const Micropay__V1__OpenReq *req)
{
	return req->holder_cert && mp_bytes_len_is(req->holder_hint, MP_ID_LEN) &&
	       memcmp(req->holder_hint.data, m->mid, MP_ID_LEN) != 0;
}

/* A channel we closed (close.c): CLOSED, carrying the Close once it is durable. */
static void open_closed(struct merchant *m, struct mp_conn *c, uint64_t request_id,
			const struct channel *ch)
{
	MpSigned *close = ch->close_pending ? NULL : mp_stmt_decode(ch->close, ch->close_len);
	reply_open_evidence(c, request_id, MP_ST(CLOSED),
			    channel_closed_by_broker(ch) ? "closed by the broker's ForcedClose"
			    : close			 ? "closed by its owner: the Close"
							 : "closed by its owner",
			    m, close);
	mp_stmt_free(close);
}

/* The holder rule (protocol.md section 6): we hold the channel iff our own durable record says
 * so (holder0 in the cert for a channel new here, or the channel row in state HELD, which only
 * a Handoff naming us that we received from its signer can put there). A Move only makes us
 * ask the holder (takeover.c). */
static void open_verified(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
			  const Micropay__V1__ChannelCert *cc)
{
	struct channel *ch = channel_find(&m->channels, cc->channel_id.data);
	bool unbound = cc->holder0.len == 0;
	bool holder0 = !unbound && !memcmp(cc->holder0.data, m->mid, MP_ID_LEN);
	if (ch && ch->signing) { /* chan_sign.h: nothing of the channel changes meanwhile */
		reply_open(c, env->request_id, MP_ST(LIMIT), CHAN_SIGNING_DETAIL, m, NULL);
	} else if (ch && ch->state == CHANNEL_HELD && restore_unconfirmed(ch)) {
		reply_open(c, env->request_id, MP_ST(NOT_HOLDER), RESTORE_DETAIL, m, NULL);
	} else if ((ch && ch->state == CHANNEL_HELD) || (!ch && holder0)) {
		open_hold(m, c, env->request_id, env->open_req->cert, cc, NULL, NULL, 0);
	} else if (!ch && unbound && env->open_req->move && !hints_another(m, env->open_req)) {
		bind_start(m, c, env,
			   cc); /* bind.c: the broker binds it to us, or names the holder */
	} else if (!ch && unbound && !env->open_req->move) {
		reply_open(c, env->request_id, MP_ST(NOT_HOLDER),
			   "channel not bound yet: open with a Move to bind it here", m, NULL);
	} else if (ch && ch->state == CHANNEL_CLOSED) {
		open_closed(m, c, env->request_id, ch);
	} else if (env->open_req->move) {
		takeover_start(m, c, env, cc, ch);
	} else if (ch && ch->state == CHANNEL_HANDED_OFF) {
		reply_open(c, env->request_id, MP_ST(HANDED_OFF),
			   "handed off to another merchant: pay there", m, NULL);
	} else {
		reply_open(c, env->request_id, MP_ST(NOT_HOLDER),
			   "this merchant is not the holder (open with a Move to move it here)", m,
			   NULL);
	}
}

void handle_open(struct merchant *m, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__OpenReq *req = env->open_req;
	char why[200];
	if (!mp_clock_guard_serving(m->clock_guard, why, sizeof(why))) {
		reply_open(c, env->request_id, MP_ST(INTERNAL), why, m, NULL);
		return;
	}
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(req->cert, MP_STMT_CHANNEL_CERT, m->broker_pk,
				   &micropay__v1__channel_cert__descriptor, &body);
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)body;
	const char *detail = "ChannelCert refused";
	if (code == MP_ST(OK))
		code = check_cert(m, cc, &detail);
	if (code == MP_ST(OK)) {
		open_verified(m, c, env, cc);
	} else {
		log_info("%s: open refused: %s (%s)", mp_conn_peer(c), mp_code_name(code), detail);
		reply_open(c, env->request_id, code, detail, m, NULL);
	}
	if (cc)
		micropay__v1__channel_cert__free_unpacked(cc, NULL);
}
