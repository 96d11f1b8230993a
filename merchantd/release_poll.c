/* The ForcedClose poll (release_poll.h).
 *
 *   IDLE --timer (release_poll s)--> link up? --no--> broker_link_want, IDLE (next tick asks)
 *      | yes
 *      v
 *   ASKING: ForcedClosesReq{merchant_id, paged, after: our cursor} --(no answer / refused)-->
 *      | logged, IDLE
 *      | the answer's next_after is our cursor from then on (in memory: from 0 after a
 *      | restart, ForcedCloses already applied are skipped); more (a full page) --> ASKING
 *      | again at once; the walk's last page, and a channel of the walk was busy (a Handoff,
 *      | Cap or Close being written) --> the cursor back to 0: the next poll walks again
 *      | from the start (a busy channel never holds back the ForcedCloses after it)
 *      v
 *   each ForcedClose: channel_id peeked; a channel we hold in that epoch (HELD or EXPIRED,
 *      | nothing of its record pending) --else--> skipped (already CLOSED, handed off, unknown)
 *      v
 *   verified under the broker key, epoch = ours --(refused)--> logged, counted, skipped
 *      v
 *   CLOSED in memory at once (no more Pays), then WRITING on the store thread: the closes row
 *      (the ForcedClose's bytes, its epoch and final_index) and the channel row's state, in one
 *      transaction --> IDLE when every write is done (a failed one: back to its state before,
 *      HELD or EXPIRED; the cursor back to 0, so the next poll applies it again)
 *
 *   the answer's pending_releases > 0 (PENDING releases name us as the holder): logged,
 *      counted, a redemption round started at once (pending_releases below)
 *
 * Applying a ForcedClose again changes nothing (the channel is CLOSED: skipped). */
#include "release_poll.h"

#include <event2/event.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "pb_peek.h"
#include "stmt.h"
#include "store.h"
#include "store_thread.h"
#include "util.h"

struct release_poll {
	struct merchant *m;
	struct event *timer;
	bool asking, stopping;
	unsigned writing; /* store writes in flight */
	uint64_t after;	  /* the broker's cursor after the last ForcedClose listed (0 at start) */
	bool revisit; /* a ForcedClose of this walk could not be applied yet: walk again from 0 */
	bool rewind;  /* a ForcedClose's store write failed: the cursor back to 0 */
};

struct fc_write {
	struct st_job job;
	struct release_poll *p;
	uint8_t channel_id[MP_ID_LEN];
	uint32_t epoch, final_index;
	enum channel_state was; /* the channel's state before: restored if the write fails */
	uint8_t *bytes;
	size_t len;
	bool ok;
};

/* ---- WRITING (store thread) ---- */

static bool step_done(struct store *s, const char *sql, sqlite3_stmt *st, int rcs)
{
	bool ok = rcs == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

static bool put_close(struct store *s, const struct fc_write *w)
{
	const char *sql = "INSERT OR REPLACE INTO closes (channel_id, hseq, final_index, stmt) "
			  "VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return step_done(s, sql, st, SQLITE_ERROR);
	int rcs = sqlite3_bind_blob(st, 1, w->channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, w->epoch) | sqlite3_bind_int64(st, 3, w->final_index) |
		  sqlite3_bind_blob(st, 4, w->bytes, (int)w->len, SQLITE_STATIC);
	return step_done(s, sql, st, rcs);
}

static bool set_closed(struct store *s, const struct fc_write *w)
{
	const char *sql = "UPDATE channels SET state = ? WHERE channel_id = ?";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return step_done(s, sql, st, SQLITE_ERROR);
	int rcs = sqlite3_bind_int(st, 1, CHANNEL_CLOSED) |
		  sqlite3_bind_blob(st, 2, w->channel_id, MP_ID_LEN, SQLITE_STATIC);
	return step_done(s, sql, st, rcs);
}

static void run_write(struct store *s, struct st_job *job)
{
	struct fc_write *w = job->arg;
	sqlite3 *db = store_db(s);
	bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	ok = ok && put_close(s, w) && set_closed(s, w);
	ok = ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	w->ok = ok;
}

static void write_done(struct st_job *job)
{
	struct fc_write *w = job->arg;
	struct release_poll *p = w->p;
	struct channel *ch = channel_find(&p->m->channels, w->channel_id);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(w->channel_id, MP_ID_LEN, hex);
	p->writing--;
	if (w->ok && ch) {
		free(ch->close);
		ch->close = w->bytes;
		ch->close_len = w->len;
		w->bytes = NULL;
		ch->close_pending = false;
		p->m->stats.forced_closes_applied++;
		log_warn("channel %s: the broker's ForcedClose of epoch %u at index %u applied: "
			 "CLOSED",
			 hex, w->epoch, w->final_index);
	} else if (ch) {
		ch->state = w->was;
		p->after = 0; /* the next polls list it again */
		p->rewind = true;
		ch->close_pending = false;
		log_err("channel %s: storing the ForcedClose failed; the next poll tries again",
			hex);
	}
	free(w->bytes);
	free(w);
}

/* ---- each ForcedClose ---- */

static struct channel *held_channel(struct release_poll *p, const MpSigned *s)
{
	const uint8_t *v;
	size_t len = 0;
	if (!s || !mp_pb_peek_bytes(s->body.data, s->body.len, 1, &v, &len) || len != MP_ID_LEN)
		return NULL;
	struct channel *ch = channel_find(&p->m->channels, v);
	if (!ch || (ch->state != CHANNEL_HELD && ch->state != CHANNEL_EXPIRED))
		return NULL;
	if (ch->handoff_pending || ch->cap_pending || ch->close_pending || !ch->recorded ||
	    channel_busy(ch)) {	   /* signing, or held by a paid HTTP request (gateway.h) */
		p->revisit = true; /* busy now: the next walk starts from the beginning */
		return NULL;
	}
	return ch;
}

static bool open_forced(struct release_poll *p, const MpSigned *s, const struct channel *ch,
			struct fc_write *w)
{
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(s, MP_STMT_FORCED_CLOSE, p->m->broker_pk,
				   &micropay__v1__forced_close__descriptor, &body);
	if (code != MP_ST(OK))
		return false;
	const Micropay__V1__ForcedClose *fc = (const Micropay__V1__ForcedClose *)body;
	bool ok = mp_bytes_len_is(fc->channel_id, MP_ID_LEN) &&
		  !memcmp(fc->channel_id.data, ch->id, MP_ID_LEN) && fc->point &&
		  fc->epoch == ch->hseq;
	if (ok) {
		memcpy(w->channel_id, ch->id, MP_ID_LEN);
		w->epoch = fc->epoch;
		w->final_index = fc->point->index;
	}
	protobuf_c_message_free_unpacked(body, NULL);
	return ok;
}

static void apply(struct release_poll *p, const MpSigned *s)
{
	struct channel *ch = held_channel(p, s);
	if (!ch)
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	struct fc_write *w = calloc(1, sizeof(*w));
	if (!w || !open_forced(p, s, ch, w) || !(w->bytes = mp_stmt_encode(s, &w->len))) {
		if (w)
			p->m->stats.forced_closes_refused++;
		log_err("channel %s: a ForcedClose refused (not the broker's, or not of our "
			"epoch %u) or out of memory",
			hex, ch->hseq);
		free(w);
		return;
	}
	w->was = ch->state;
	ch->state = CHANNEL_CLOSED; /* no Pay from now on */
	ch->close_pending = true;
	w->p = p;
	w->job = (struct st_job){.run = run_write, .done = write_done, .arg = w};
	p->writing++;
	store_thread_submit(p->m->store_thread, &w->job);
}

/* ---- PENDING releases ---- */

/* The broker asks us, as the holder, for a Handoff or Close of channels whose owners asked for
 * a release. We cannot close on our own (a Close goes to the broker with the owner's refund
 * request), so we redeem at once: the ForcedClose, if it comes, is then at our highest
 * accepted point, and our Redeem's custody carries the Handoffs we signed (a release whose
 * holder handed off ends DONE). */
static void pending_releases(struct release_poll *p, uint32_t n, uint64_t first_at)
{
	log_warn(
	    "release poll: the broker holds %u PENDING release(s) naming us as the holder, the "
	    "first due at %llu: redeeming now",
	    n, (unsigned long long)first_at);
	p->m->stats.release_redeems++;
	redeemer_run(p->m->redeemer, NULL, NULL);
}

/* ---- ASKING ---- */

static void ask(struct release_poll *p);

static void on_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	(void)c;
	struct release_poll *p = arg;
	p->asking = false;
	if (p->stopping)
		return;
	if (!env || env->body_case != MP_BODY(FORCED_CLOSES_RESP) ||
	    !env->forced_closes_resp->status) {
		log_warn("release poll: no answer from the broker; next poll");
		return;
	}
	const Micropay__V1__ForcedClosesResp *r = env->forced_closes_resp;
	if (r->status->code != MP_ST(OK)) {
		log_warn("release poll: %s: %s", mp_code_name(r->status->code),
			 r->status->detail ? r->status->detail : "");
		return;
	}
	for (size_t i = 0; i < r->n_forced_closes; i++)
		apply(p, r->forced_closes[i]);
	if (r->pending_releases)
		pending_releases(p, r->pending_releases, r->first_release_at);
	if (p->rewind) { /* an answer in flight when a write failed: from the start again */
		p->rewind = false;
		p->after = 0;
		return;
	}
	if (r->next_after > p->after)
		p->after = r->next_after;
	if (r->more) { /* a full page: the next one at once */
		ask(p);
		return;
	}
	if (p->revisit) { /* the walk is over: the one that skipped a busy channel starts again */
		p->revisit = false;
		p->after = 0;
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	ask(arg);
}

static void ask(struct release_poll *p)
{
	struct broker_link *l = redeemer_link(p->m->redeemer);
	if (p->asking || p->stopping || !l)
		return;
	if (!broker_link_is_up(l)) {
		broker_link_want(l);
		return;
	}
	Micropay__V1__ForcedClosesReq req = MICROPAY__V1__FORCED_CLOSES_REQ__INIT;
	req.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, p->m->mid};
	req.paged = true;
	req.after = p->after;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(FORCED_CLOSES_REQ);
	env.forced_closes_req = &req;
	if (broker_link_call(l, &env, on_answer, p) == 0)
		p->asking = true;
}

struct release_poll *release_poll_start(struct merchant *m, uint32_t interval_s)
{
	struct release_poll *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->m = m;
	p->timer = event_new(m->base, -1, EV_PERSIST, on_tick, p);
	struct timeval tv = {.tv_sec = interval_s};
	if (!p->timer || event_add(p->timer, &tv) != 0) {
		log_err("release poll: cannot start its timer");
		release_poll_free(p);
		return NULL;
	}
	return p;
}

void release_poll_stop(struct release_poll *p)
{
	if (!p)
		return;
	p->stopping = true;
	if (p->timer)
		event_del(p->timer);
}

void release_poll_free(struct release_poll *p)
{
	if (!p)
		return;
	if (p->timer)
		event_free(p->timer);
	free(p);
}
