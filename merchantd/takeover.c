/* Handoff, successor side (protocol.md section 6, "Handoff"): a wallet opens here with a Move
 * for a channel we do not hold. We ask the holder it names for a Handoff over mutual TLS,
 * verify the returned custody chain off the loop, store it durably and only then acknowledge
 * the Open; the wallet then pays strictly after at_index.
 *
 * The Move is checked against the owner key of the segment it names: the cert's for segment 0,
 * ours for a segment we know, else Transfer s's to_owner_pk among the Open's segments (evidence
 * only: whom to ask); a Move for a segment we know was transferred is STALE_SEGMENT. The
 * holder's answer carries the channel's Transfer/Cap pairs: they are verified with the Handoffs
 * (mp_custody_verify_all), must extend the pairs we hold, and the last one's segment becomes the
 * channel's current segment (the Move must be signed by its owner, the Handoff point into it).
 * For a channel issued without holder0 the holder also sends the broker's Bind (event 0): it is
 * verified with the chain, stored with the channel and passed on in our own Handoffs.
 *
 *   START --Move, hint and holder's MerchantCert check out--> CONNECTING (to the cert's endpoint,
 *         with our merchant certificate; the peer's must name the hinted holder)
 *   CONNECTING --handshake--> ASKING (HandoffReq carrying the wallet's Move)
 *   ASKING --LIMIT (the holder is committing another Handoff or is busy)--> ASKING again
 *         after TAKEOVER_RETRY_MS, at most TAKEOVER_RETRIES times (then DONE with LIMIT)
 *   ASKING --OK / DUPLICATE_OK with a chain--> VERIFYING (worker: common/custody.c)
 *   ASKING --HANDED_OFF with the holder's latest Handoff and chain--> VERIFYING the redirect
 *         --evidence checks out (takeover_redirect.c)--> DONE: the Open answered HANDED_OFF with
 *         OpenAck.redirect, nothing stored (the wallet signs a Move from the new epoch and opens
 *         again naming the new holder)
 *   VERIFYING --valid, hseq above the highest recorded--> COMMITTING (group commit: custody
 *         rows, signers' certs, Transfer/Cap pairs, the channel row in the new epoch and segment)
 *   COMMITTING --durable--> HELD: OpenAck (takeover_acknowledge)
 *   any state --deadline (handoff_timeout), connection lost, a refusal, a chain that does not
 *         verify--> DONE: the Open answered with a clear error, nothing stored
 * One takeover per channel at a time (ch->fetching); another Open meanwhile gets LIMIT. The
 * struct lives until it is DONE and neither the holder's connection nor a worker job refers
 * to it. */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "channel_cert.h"
#include "custody_store.h"
#include "log.h"
#include "segments.h"
#include "merchant.h"
#include "stmt.h"
#include "takeover_redirect.h"
#include "takeover_verify.h"
#include "tls.h"
#include "workers.h"

/* Asking again after a LIMIT (a Handoff of the channel being committed at the holder lasts one
 * group commit): every TAKEOVER_RETRY_MS, at most TAKEOVER_RETRIES times (a lasting LIMIT such
 * as MAX_HANDOFFS is then passed on), within handoff_timeout. */
#define TAKEOVER_RETRY_MS 50
#define TAKEOVER_RETRIES  20

struct takeover {
	struct merchant *m;
	struct mp_conn *wallet; /* referenced until answered */
	uint64_t request_id;
	struct channel *ch; /* in the table; state UNKNOWN if it is new here */
	MpSigned *move;
	uint32_t from_epoch, move_seg;
	uint8_t holder[MP_ID_LEN];
	char holder_hex[MP_HEX_ID_LEN + 1], hex[MP_HEX_ID_LEN + 1], endpoint[256];
	struct mp_conn *conn; /* to the holder */
	struct event *deadline;
	struct event *retry; /* asking again after the holder's LIMIT */
	unsigned retries;
	struct takeover *next; /* m->takeovers */
	bool done, job_running;
	unsigned busy; /* a function of this file is running on it: not freed under it */
};

static void maybe_free(struct takeover *t)
{
	if (!t->done || t->conn || t->job_running || t->busy)
		return;
	for (struct takeover **pp = &t->m->takeovers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	if (t->deadline)
		event_free(t->deadline);
	if (t->retry)
		event_free(t->retry);
	mp_stmt_free(t->move);
	free(t);
}

/* End the takeover: answer the Open (unless done with an OpenAck already), close the holder's
 * connection. */
__attribute__((format(printf, 3, 4))) static void finish(struct takeover *t, MpCode code,
							 const char *fmt, ...)
{
	if (t->done)
		return;
	char detail[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	t->done = true;
	t->busy++;
	if (t->ch)
		t->ch->fetching = false;
	if (code != MP_ST(OK)) {
		t->m->stats.handoff_refusals++;
		log_warn("channel %s: takeover from m-%s refused: %s %s", t->hex, t->holder_hex,
			 mp_code_name(code), detail);
		if (mp_conn_is_open(t->wallet))
			reply_open(t->wallet, t->request_id, code, detail, t->m, NULL);
	}
	mp_conn_unref(t->wallet);
	t->wallet = NULL;
	if (t->deadline)
		evtimer_del(t->deadline);
	if (t->retry)
		evtimer_del(t->retry);
	if (t->conn)
		mp_conn_close(t->conn, "takeover of channel %s ended", t->hex);
	t->busy--;
	maybe_free(t);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct takeover *t = arg;
	finish(t, MP_ST(INTERNAL), "the holder m-%s at %s did not hand the channel off within %u s",
	       t->holder_hex, t->endpoint, t->m->cfg.handoff_timeout);
}

/* ---- VERIFYING ---- */

struct verify_job {
	struct takeover *t;
	struct takeover_check *tc;
};

static void verify_work(void *arg, const atomic_bool *stop)
{
	struct verify_job *j = arg;
	takeover_check_run(j->tc, stop);
}

/* A cert without holder0: the verified Bind becomes the channel's (kept with it to pass it on
 * in our own Handoffs and stored with the row); a Bind we hold already is the same one (the
 * broker signs one Bind per channel). */
static bool take_bind(struct channel *ch, const struct takeover_check *tc)
{
	if (!tc->bound || ch->bind)
		return true;
	ch->bind = mp_stmt_encode(tc->bind, &ch->bind_len);
	if (ch->bind)
		memcpy(ch->holder0, tc->bind_mid, MP_ID_LEN);
	return ch->bind != NULL;
}

static void commit_takeover(struct takeover *t, struct takeover_check *tc)
{
	struct merchant *m = t->m;
	struct channel *ch = t->ch;
	if (!batch_has_room(m)) {
		m->stats.store_busy++;
		finish(t, MP_ST(LIMIT), "merchant busy; retry");
		return;
	}
	struct custody_write *cw = calloc(1, sizeof(*cw));
	if (!cw) {
		finish(t, MP_ST(INTERNAL), "out of memory");
		return;
	}
	cw->chain = tc->chain_rows;
	cw->n_chain = tc->n_chain_rows;
	cw->certs = tc->cert_rows;
	cw->n_certs = tc->n_cert_rows;
	tc->chain_rows = tc->cert_rows = NULL;
	tc->n_chain_rows = tc->n_cert_rows = 0;
	cw->segs = tc->seg_rows;
	cw->n_segs = tc->n_seg_rows;
	tc->seg_rows = NULL;
	tc->n_seg_rows = 0;
	if (!take_bind(ch, tc)) {
		custody_write_free(cw);
		finish(t, MP_ST(INTERNAL), "out of memory");
		return;
	}
	cw->insert = !ch->recorded;
	cw->hseq = tc->hseq;
	cw->at_index = tc->at_index;
	memcpy(cw->w_at, tc->w_at, MP_HASH_LEN);
	struct batch_entry e = {.kind = ENTRY_TAKEOVER,
				.ch = ch,
				.conn = t->wallet,
				.request_id = t->request_id,
				.custody = cw};
	memcpy(e.channel_id, ch->id, MP_ID_LEN);
	struct channel_row *r = &e.row;
	memcpy(r->id, ch->id, MP_ID_LEN);
	r->cert = ch->cert;
	r->cert_len = ch->cert_len;
	r->seg_seq = tc->seg_seq;
	r->seg_start = tc->seg_start;
	r->redeem_until = ch->redeem_until;
	r->bind =
	    ch->bind; /* stored with the channel (bind_store_put) for a cert without holder0 */
	r->bind_len = ch->bind_len;
	/* The pay path's view moves now: the wallet pays only after the OpenAck, which waits
	 * for this commit, and any Pay in between is refused until then (state below). */
	batch_add(m, &e);
	t->done = true; /* ch->fetching until takeover_acknowledge, which sends the OpenAck */
	mp_conn_unref(t->wallet);
	t->wallet = NULL;
	evtimer_del(t->deadline);
	if (t->retry)
		evtimer_del(t->retry);
	if (t->conn)
		mp_conn_close(t->conn, "handoff of channel %s received", t->hex);
	log_info("channel %s: Handoff %u from m-%s verified (at index %u); recording it", t->hex,
		 tc->hseq, t->holder_hex, tc->at_index);
}

/* The pairs we hold of the channel are the verified chain's first ones (a holder cannot make
 * us forget a segment), and it has no fewer. */
static bool same_pairs(const struct channel *ch, const struct takeover_check *tc)
{
	if (tc->n_seg_rows < ch->seg_seq)
		return false;
	for (uint32_t i = 0; i < ch->seg_seq; i++)
		if (memcmp(ch->segs[i].transfer_hash, tc->seg_rows[i].transfer_hash, MP_HASH_LEN) ||
		    ch->segs[i].cap_len != tc->seg_rows[i].cap_len ||
		    memcmp(ch->segs[i].cap, tc->seg_rows[i].cap, ch->segs[i].cap_len))
			return false;
	return true;
}

static void verify_done(void *arg, enum mp_job_outcome outcome)
{
	struct verify_job *j = arg;
	struct takeover *t = j->t;
	if (t->done) {
		/* deadline passed meanwhile; the Open was answered */
	} else if (outcome != MP_JOB_DONE) {
		finish(t, MP_ST(INTERNAL), "shutting down");
	} else if (j->tc->code != MP_ST(OK)) {
		finish(t, j->tc->code, "the holder's %s was refused: %s",
		       j->tc->redirect ? "HANDED_OFF evidence" : "custody chain", j->tc->detail);
	} else if (custody_store_max_hseq(t->m->store, t->ch->id) >= j->tc->hseq ||
		   t->ch->state == CHANNEL_HELD) {
		finish(t, MP_ST(STALE_INDEX), "a Handoff at or above hseq %u is already recorded",
		       j->tc->hseq);
	} else if (j->tc->redirect) {
		if (mp_conn_is_open(t->wallet))
			takeover_redirect_reply(t->m, t->wallet, t->request_id, j->tc,
						t->holder_hex);
		finish(t, MP_ST(OK), "redirected"); /* answered; nothing stored */
	} else if (!same_pairs(t->ch, j->tc)) {
		finish(t, MP_ST(CONFLICT), "the holder's Transfer/Cap pairs differ from ours");
	} else {
		commit_takeover(t, j->tc);
	}
	takeover_check_free(j->tc);
	free(j);
	t->job_running = false;
	maybe_free(t);
}

static MpSigned **copy_all(MpSigned *const *src, size_t n)
{
	MpSigned **out = calloc(n + 1, sizeof(*out));
	for (size_t i = 0; out && i < n; i++) {
		if (!(out[i] = mp_stmt_copy(src[i]))) {
			for (size_t k = 0; k < i; k++)
				mp_stmt_free(out[k]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static struct takeover_check *check_of(struct takeover *t, const Micropay__V1__HandoffResp *r)
{
	struct merchant *m = t->m;
	struct takeover_check *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	tc->cert = malloc(t->ch->cert_len);
	tc->chain = copy_all(r->custody, r->n_custody);
	tc->certs = copy_all(r->merchant_certs, r->n_merchant_certs);
	tc->handoff = r->handoff ? mp_stmt_copy(r->handoff) : NULL;
	tc->segments = copy_all(r->segments, r->n_segments);
	tc->move = mp_stmt_copy(t->move);
	tc->bind = r->bind ? mp_stmt_copy(r->bind) : NULL;
	if (!tc->cert || !tc->chain || !tc->certs || !tc->segments || !tc->move ||
	    (r->bind && !tc->bind)) {
		takeover_check_free(tc);
		return NULL;
	}
	tc->n_chain = r->n_custody;
	tc->n_certs = r->n_merchant_certs;
	tc->n_segments = r->n_segments;
	tc->move_seg = t->move_seg;
	memcpy(tc->cert, t->ch->cert, t->ch->cert_len);
	tc->cert_len = t->ch->cert_len;
	memcpy(tc->broker_pk, m->broker_pk, MP_PK_LEN);
	tc->t_grace = m->cfg.t_grace;
	memcpy(tc->mid, m->mid, MP_ID_LEN);
	mp_stmt_hash(t->move, tc->move_hash);
	tc->from_epoch = t->from_epoch;
	tc->highest = custody_store_max_hseq(m->store, t->ch->id);
	return tc;
}

/* ---- ASKING ---- */

static void on_handoff_resp(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct takeover *t = arg;
	if (!env || t->done)
		return; /* on_close reports a lost connection */
	const Micropay__V1__HandoffResp *r =
	    env->body_case == MP_BODY(HANDOFF_RESP) ? env->handoff_resp : NULL;
	MpCode code = r && r->status ? r->status->code : MP_ST(MALFORMED);
	const char *detail = r && r->status ? r->status->detail : "not a HandoffResp";
	if (code == MP_ST(LIMIT)) { /* e.g. another Handoff of the channel is being committed */
		struct timeval tv = {0, TAKEOVER_RETRY_MS * 1000};
		if (++t->retries > TAKEOVER_RETRIES || evtimer_add(t->retry, &tv) != 0)
			finish(t, code, "the holder m-%s refused the handoff: %s", t->holder_hex,
			       detail);
		return;
	}
	bool redirect = code == MP_ST(HANDED_OFF) && r->handoff && r->n_custody > 0;
	if (code == MP_ST(HANDED_OFF) && !redirect) {
		finish(t, MP_ST(HANDED_OFF),
		       "m-%s no longer holds the channel and sent no Handoff as evidence: %s",
		       t->holder_hex, detail);
		return;
	}
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK) && !redirect) {
		finish(t, code, "the holder m-%s refused the handoff: %s", t->holder_hex, detail);
		return;
	}
	struct verify_job *j = calloc(1, sizeof(*j));
	if (j)
		j->tc = check_of(t, r);
	if (!j || !j->tc) {
		free(j);
		finish(t, MP_ST(INTERNAL), "out of memory");
		return;
	}
	j->tc->redirect = redirect;
	memcpy(j->tc->asked, t->holder, MP_ID_LEN);
	j->t = t;
	if (!mp_workers_submit(t->m->workers, verify_work, verify_done, j)) {
		takeover_check_free(j->tc);
		free(j);
		finish(t, MP_ST(LIMIT), "merchant busy verifying custody chains; retry");
		return;
	}
	t->job_running = true;
}

/* The HandoffReq: the wallet's Move and our own MerchantCert (kept by the holder to tell later
 * requesters where we are, docs/custody.md). */
static void ask(struct takeover *t)
{
	uint8_t *own = NULL;
	size_t own_len = 0;
	Micropay__V1__HandoffReq req = MICROPAY__V1__HANDOFF_REQ__INIT;
	req.move = t->move;
	if (merchant_own_cert(t->m, &own, &own_len))
		req.requester_cert = mp_stmt_decode(own, own_len);
	free(own);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(HANDOFF_REQ);
	env.handoff_req = &req;
	if (!t->conn || mp_conn_call(t->conn, &env, on_handoff_resp, t) != 0)
		finish(t, MP_ST(INTERNAL), "cannot send the HandoffReq to m-%s", t->holder_hex);
	mp_stmt_free(req.requester_cert);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct takeover *t = arg;
	if (!t->done)
		ask(t);
}

static void on_holder_open(struct mp_conn *c, void *arg)
{
	struct takeover *t = arg;
	if (t->done)
		return;
	if (!mp_tls_peer_is_merchant(mp_conn_ssl(c), t->holder)) {
		finish(t, MP_ST(NOT_HOLDER), "the server at %s is not m-%s", t->endpoint,
		       t->holder_hex);
		return;
	}
	ask(t);
}

static void on_holder_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct takeover *t = arg;
	mp_conn_unref(t->conn);
	t->conn = NULL;
	if (t->done)
		maybe_free(t);
	else
		finish(t, MP_ST(INTERNAL), "the holder m-%s at %s could not be reached: %s",
		       t->holder_hex, t->endpoint, reason);
}

static const struct mp_conn_ops holder_ops = {
    .on_open = on_holder_open,
    .on_close = on_holder_close,
};

/* ---- START ---- */

/* The segment a Move names, read from its body only to know which owner key to expect. */
static bool move_segment(const MpSigned *move, uint32_t *seg_seq)
{
	if (!move || move->type != MP_STMT_MOVE)
		return false;
	Micropay__V1__Move *mv = (Micropay__V1__Move *)mp_strict_unpack(
	    &micropay__v1__move__descriptor, move->body.data, move->body.len);
	if (!mv)
		return false;
	*seg_seq = mv->seg_seq;
	micropay__v1__move__free_unpacked(mv, NULL);
	return true;
}

/* The owner key of segment k as far as we can tell before asking: the cert's for 0, ours if we
 * know segment k, else to_owner_pk of Transfer k among the wallet's OpenReq.segments. That is
 * evidence only (whom to ask): the Move is checked again against the chain the holder returns
 * (takeover_verify.c). */
static bool move_owner(const struct channel *ch, const Micropay__V1__OpenReq *req,
		       const Micropay__V1__ChannelCert *cc, uint32_t k, uint8_t pk[MP_PK_LEN])
{
	const uint8_t *known = k == 0 ? cc->owner_pk.data
			       : ch   ? channel_segment_owner(ch, k)
				      : NULL;
	if (known) {
		memcpy(pk, known, MP_PK_LEN);
		return true;
	}
	for (size_t i = 0; i < req->n_segments; i++) {
		const MpSigned *s = req->segments[i];
		if (!s || s->type != MP_STMT_TRANSFER)
			continue;
		Micropay__V1__Transfer *tr = (Micropay__V1__Transfer *)mp_strict_unpack(
		    &micropay__v1__transfer__descriptor, s->body.data, s->body.len);
		bool found =
		    tr && tr->new_seg_seq == k && mp_bytes_len_is(tr->to_owner_pk, MP_PK_LEN);
		if (found)
			memcpy(pk, tr->to_owner_pk.data, MP_PK_LEN);
		if (tr)
			micropay__v1__transfer__free_unpacked(tr, NULL);
		if (found)
			return true;
	}
	return false;
}

/* The Move (owner key of its segment, this channel, us) and the holder's MerchantCert (broker
 * key, the hinted merchant, not us); OK or the refusal. */
static MpCode check_request(struct takeover *t, const Micropay__V1__OpenReq *req,
			    const Micropay__V1__ChannelCert *cc, const struct channel *ch,
			    const char **detail)
{
	struct merchant *m = t->m;
	ProtobufCMessage *body = NULL;
	uint8_t owner[MP_PK_LEN];
	uint32_t k = 0;
	*detail = "Move for a segment whose owner neither we nor the Open's segments name";
	if (!move_segment(req->move, &k) || !move_owner(ch, req, cc, k, owner))
		return req->move ? MP_ST(STALE_SEGMENT) : MP_ST(MALFORMED);
	*detail = "Move not signed by the owner of its segment";
	MpCode code =
	    mp_stmt_open(req->move, MP_STMT_MOVE, owner, &micropay__v1__move__descriptor, &body);
	if (code != MP_ST(OK))
		return code;
	Micropay__V1__Move *mv = (Micropay__V1__Move *)body;
	bool ok = mp_bytes_len_is(mv->channel_id, MP_ID_LEN) &&
		  !memcmp(mv->channel_id.data, cc->channel_id.data, MP_ID_LEN) &&
		  mp_bytes_len_is(mv->to_mid, MP_ID_LEN) &&
		  !memcmp(mv->to_mid.data, m->mid, MP_ID_LEN);
	t->from_epoch = mv->from_epoch;
	t->move_seg = mv->seg_seq;
	protobuf_c_message_free_unpacked(body, NULL);
	if (!ok) {
		*detail = "the Move is not for this channel and this merchant";
		return MP_ST(MALFORMED);
	}
	if (ch && k < ch->seg_seq) {
		*detail = "the Move is for a segment that was transferred";
		return MP_ST(STALE_SEGMENT);
	}
	*detail = "holder_cert is not a MerchantCert of holder_hint";
	if (!req->holder_cert || !mp_bytes_len_is(req->holder_hint, MP_ID_LEN) ||
	    mp_stmt_open(req->holder_cert, MP_STMT_MERCHANT_CERT, m->broker_pk,
			 &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return MP_ST(MALFORMED);
	Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)body;
	ok = mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
	     !memcmp(mc->merchant_id.data, req->holder_hint.data, MP_ID_LEN) &&
	     memcmp(mc->merchant_id.data, m->mid, MP_ID_LEN) &&
	     strlen(mc->endpoint) < sizeof(t->endpoint);
	if (ok) {
		memcpy(t->holder, mc->merchant_id.data, MP_ID_LEN);
		snprintf(t->endpoint, sizeof(t->endpoint), "%s", mc->endpoint);
	}
	protobuf_c_message_free_unpacked(body, NULL);
	return ok ? MP_ST(OK) : MP_ST(MALFORMED);
}

/* A channel new here: in the table (state UNKNOWN, not recorded) while we ask. */
static struct channel *new_channel(struct merchant *m, const MpSigned *cert,
				   const Micropay__V1__ChannelCert *cc)
{
	struct channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	memcpy(ch->id, cc->channel_id.data, MP_ID_LEN);
	size_t len;
	uint8_t *bytes = mp_stmt_encode(cert, &len);
	bool ok = bytes && channel_from_cert(ch, bytes, len);
	free(bytes);
	if (!ok) {
		free(ch->cert);
		free(ch);
		return NULL;
	}
	ch->state = CHANNEL_UNKNOWN;
	channel_insert(&m->channels, ch);
	return ch;
}

static bool connect_holder(struct takeover *t)
{
	struct merchant *m = t->m;
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(t->endpoint, host, sizeof(host), &port))
		return false;
	t->deadline = evtimer_new(m->base, on_deadline, t);
	t->retry = evtimer_new(m->base, on_retry, t);
	struct timeval tv = {m->cfg.handoff_timeout, 0};
	if (!t->deadline || !t->retry || evtimer_add(t->deadline, &tv) != 0)
		return false;
	struct mp_net_opts opts = {.max_frame = MP_FRAME_MAX_WALLET,
				   .idle_timeout_s = m->cfg.handoff_timeout,
				   .name = "holder"};
	t->conn = mp_connect(m->base, m->dns, m->client_tls, host, port, &opts, &holder_ops, t);
	if (!t->conn)
		return false;
	mp_conn_ref(t->conn);
	return true;
}

static void start(struct takeover *t, const MpEnvelope *env, const Micropay__V1__ChannelCert *cc,
		  struct channel *ch)
{
	struct merchant *m = t->m;
	const char *detail = NULL;
	MpCode code = check_request(t, env->open_req, cc, ch, &detail);
	if (code != MP_ST(OK)) {
		finish(t, code, "%s", detail);
		return;
	}
	mp_hex_encode(t->holder, MP_ID_LEN, t->holder_hex);
	if (!ch && !(ch = new_channel(m, env->open_req->cert, cc))) {
		finish(t, MP_ST(INTERNAL), "cannot record the channel");
		return;
	}
	t->ch = ch;
	ch->fetching = true;
	if (!(t->move = mp_stmt_copy(env->open_req->move)) || !connect_holder(t)) {
		finish(t, MP_ST(INTERNAL), "cannot connect to the holder m-%s at %s", t->holder_hex,
		       t->endpoint);
		return;
	}
	log_info("channel %s: asking m-%s at %s for a Handoff (Move from epoch %u)", t->hex,
		 t->holder_hex, t->endpoint, t->from_epoch);
}

void takeover_start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		    const Micropay__V1__ChannelCert *cc, struct channel *ch)
{
	if (ch && (ch->fetching || ch->handoff_pending)) {
		reply_open(c, env->request_id, MP_ST(LIMIT),
			   "a handoff of this channel is in progress; retry", m, NULL);
		return;
	}
	struct takeover *t = calloc(1, sizeof(*t));
	if (!t) {
		reply_open(c, env->request_id, MP_ST(INTERNAL), "out of memory", m, NULL);
		return;
	}
	t->m = m;
	t->next = m->takeovers;
	m->takeovers = t;
	t->wallet = c;
	mp_conn_ref(c);
	t->request_id = env->request_id;
	mp_hex_encode(cc->channel_id.data, MP_ID_LEN, t->hex);
	start(t, env, cc, ch);
}

/* The channel's segments from the verified chain: the pairs we did not have are appended (the
 * ones we have are the same statements: the chain verified against our segment heads). */
static bool take_segments(struct channel *ch, const struct custody_write *cw)
{
	for (size_t i = ch->seg_seq; i < cw->n_segs; i++)
		if (!channel_push_segment(ch, &cw->segs[i]))
			return false;
	return ch->seg_seq == cw->n_segs;
}

/* The new epoch is durable: the pay path takes it over, then the OpenAck. */
void takeover_acknowledge(struct merchant *m, struct batch_entry *e)
{
	struct channel *ch = e->ch;
	const struct custody_write *cw = e->custody;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	if (!take_segments(ch, cw)) {
		/* Durable but not in memory: refuse to serve the channel until a restart loads it
		 */
		log_err("channel %s: cannot take the verified segments in memory (out of memory or "
			"a pair differs); the channel is served again after a restart",
			hex);
		ch->fetching = false;
		ch->state = CHANNEL_UNKNOWN;
		if (mp_conn_is_open(e->conn))
			reply_open(e->conn, e->request_id, MP_ST(INTERNAL), "out of memory", m,
				   NULL);
		return;
	}
	ch->durable_seg = ch->seg_seq;
	ch->state = CHANNEL_HELD;
	ch->hseq = cw->hseq;
	ch->last = ch->durable_last = cw->at_index;
	memcpy(ch->w_last, cw->w_at, MP_HASH_LEN);
	memcpy(ch->durable_w, cw->w_at, MP_HASH_LEN);
	ch->credit = ch->durable_credit = 0;
	ch->last_order_ref_len = ch->durable_order_ref_len = 0;
	ch->durable_code = MP_ST(OK);
	ch->durable_price = 0;
	ch->redeemed_end = cw->at_index;
	ch->fetching = false;
	m->stats.handoffs_taken++;
	log_info("channel %s: held (epoch %u, segment %u, from index %u)", hex, cw->hseq,
		 ch->seg_seq, cw->at_index);
	if (mp_conn_is_open(e->conn))
		open_acknowledge(m, e->conn, e->request_id, ch);
}

void takeover_stop_all(struct merchant *m)
{
	struct takeover *t = m->takeovers;
	while (t) {
		struct takeover *next = t->next;
		t->busy++;
		finish(t, MP_ST(INTERNAL), "merchantd is shutting down");
		t->busy--;
		maybe_free(t);
		t = next;
	}
}
