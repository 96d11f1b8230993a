#include "cap_outbox.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_link.h"
#include "log.h"
#include "metrics.h"
#include "merchant.h"
#include "segment_store.h"
#include "store.h"
#include "store_thread.h"
#include "transfer_reply.h"

#define POLL_US		  200000
#define T_NOTIFY	  3600 /* protocol.md section 11: a Cap reaches the broker within 1 h */
#define MAX_BACKOFF_SHIFT 20

enum outbox_state { OB_IDLE, OB_NEXT, OB_WAITING, OB_SENDING, OB_MARKING, OB_BACKOFF };

struct cap_outbox {
	struct merchant *m;
	enum outbox_state state;
	struct event *timer;
	int64_t cursor;	   /* rowid of the last row handled in this sweep */
	bool sweep_failed; /* a row of this sweep got no acknowledgement */
	bool stopping;
	unsigned polls, failures;
	/* the row in flight */
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq;
	int64_t rowid;
	/* counts */
	int64_t pending, conflicts;
	uint64_t sent, delivered, refused, unanswered;
};

struct mark_job {
	struct st_job job;
	struct cap_outbox *ob;
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq;
	enum cap_outbox_state state;
	char detail[200];
	bool ok;
};

static void next(struct cap_outbox *ob);

static void row_hex(const struct cap_outbox *ob, char hex[MP_HEX_ID_LEN + 1])
{
	mp_hex_encode(ob->channel_id, MP_ID_LEN, hex);
}

static void arm(struct cap_outbox *ob, enum outbox_state state, uint64_t us)
{
	ob->state = state;
	struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
	if (evtimer_add(ob->timer, &tv) != 0) {
		log_err("cap outbox: cannot arm its timer; the next Cap or restart resends");
		ob->state = OB_IDLE;
	}
}

static void backoff(struct cap_outbox *ob, const char *why)
{
	if (ob->failures < MAX_BACKOFF_SHIFT)
		ob->failures++;
	uint64_t delay = (uint64_t)1 << (ob->failures - 1);
	uint64_t cap =
	    ob->m->cfg.redeem_retry_max < T_NOTIFY ? ob->m->cfg.redeem_retry_max : T_NOTIFY;
	if (delay > cap)
		delay = cap ? cap : 1;
	log_warn("cap outbox: %s; %lld notices pending, retrying in %llu s", why,
		 (long long)ob->pending, (unsigned long long)delay);
	ob->cursor = 0;
	ob->polls = 0;
	ob->sweep_failed = false;
	arm(ob, OB_BACKOFF, delay * 1000000);
}

/* ---- MARKING ---- */

static void run_mark(struct store *s, struct st_job *job)
{
	struct mark_job *mj = job->arg;
	mj->ok = cap_outbox_mark(s, mj->channel_id, mj->seg_seq, mj->state, mj->detail);
}

static void mark_done(struct st_job *job)
{
	struct mark_job *mj = job->arg;
	struct cap_outbox *ob = mj->ob;
	if (mj->ok) {
		ob->pending--;
		ob->conflicts += mj->state == CAP_OUTBOX_CONFLICT;
	} else {
		ob->sweep_failed = true; /* logged by the store; the row stays pending */
	}
	free(mj);
	if (!ob->stopping)
		next(ob);
}

static void mark(struct cap_outbox *ob, enum cap_outbox_state state, const char *detail)
{
	struct mark_job *mj = calloc(1, sizeof(*mj));
	if (!mj) {
		backoff(ob, "out of memory recording an answer");
		return;
	}
	mj->ob = ob;
	memcpy(mj->channel_id, ob->channel_id, MP_ID_LEN);
	mj->seg_seq = ob->seg_seq;
	mj->state = state;
	snprintf(mj->detail, sizeof(mj->detail), "%s", detail ? detail : "");
	mj->job = (struct st_job){.run = run_mark, .done = mark_done, .arg = mj};
	ob->state = OB_MARKING;
	store_thread_submit(ob->m->store_thread, &mj->job);
}

/* ---- SENDING ---- */

static void on_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct cap_outbox *ob = arg;
	char hex[MP_HEX_ID_LEN + 1];
	row_hex(ob, hex);
	if (ob->stopping)
		return;
	if (!env) {
		ob->unanswered++;
		backoff(ob, "no answer from the broker (connection lost or late)");
		return;
	}
	const Micropay__V1__CapNoticeResp *r =
	    env->body_case == MP_BODY(CAP_NOTICE_RESP) ? env->cap_notice_resp : NULL;
	const MpStatus *st = r ? r->status : env->body_case == MP_BODY(ERROR) ? env->error : NULL;
	MpCode code = st ? st->code : MP_ST(INTERNAL);
	const char *detail = st && st->detail ? st->detail : "not a CapNoticeResp";
	if (r && (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK))) {
		ob->delivered++;
		ob->failures = 0;
		log_info("cap outbox: channel %s segment %u: the broker recorded the Cap (%s)", hex,
			 ob->seg_seq, mp_code_name(code));
		mark(ob, CAP_OUTBOX_DELIVERED, mp_code_name(code));
	} else if (r && code == MP_ST(CONFLICT)) {
		ob->refused++;
		log_err("cap outbox: channel %s segment %u: the broker holds another Cap for "
			"this segment (CONFLICT: %s); kept for the operator",
			hex, ob->seg_seq, detail);
		mark(ob, CAP_OUTBOX_CONFLICT, detail);
	} else if (r && code == MP_ST(CLOSED)) {
		ob->refused++;
		log_err(
		    "cap outbox: channel %s segment %u: the broker refuses the Cap: the channel "
		    "was closed early (CLOSED: %s); kept for the operator",
		    hex, ob->seg_seq, detail);
		mark(ob, CAP_OUTBOX_CONFLICT, detail);
	} else {
		ob->refused++;
		ob->sweep_failed = true;
		log_warn("cap outbox: channel %s segment %u: the broker answered %s %s; retried "
			 "later",
			 hex, ob->seg_seq, mp_code_name(code), detail);
		next(ob);
	}
}

/* The notice of the row in flight; false if it cannot be built or sent (the row stays). */
static bool send_row(struct cap_outbox *ob, struct broker_link *link)
{
	struct channel *ch = channel_find(&ob->m->channels, ob->channel_id);
	struct transfer_evidence ev;
	if (!ch || ob->seg_seq < 1 || ob->seg_seq > ch->seg_seq ||
	    !transfer_evidence_load(ob->m, ch, ob->seg_seq, &ev))
		return false;
	Micropay__V1__CapNoticeReq req = MICROPAY__V1__CAP_NOTICE_REQ__INIT;
	req.transfer = ev.transfer;
	req.cap = ev.cap;
	req.custody = ev.custody;
	req.n_custody = ev.n_custody;
	req.segments = ev.segments;
	req.n_segments = ev.n_segments;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(CAP_NOTICE_REQ);
	env.cap_notice_req = &req;
	bool sent = broker_link_call(link, &env, on_answer, ob) == 0;
	transfer_evidence_free(&ev);
	return sent;
}

/* ---- NEXT ---- */

/* The next pending row after the cursor, sent; rows whose notice cannot be built are skipped
 * (logged; the sweep counts as failed, so they are tried again after the backoff). */
static void next(struct cap_outbox *ob)
{
	char hex[MP_HEX_ID_LEN + 1];
	for (;;) {
		if (!cap_outbox_next(ob->m->store, ob->cursor, ob->channel_id, &ob->seg_seq,
				     &ob->rowid)) {
			ob->cursor = 0;
			if (ob->sweep_failed)
				backoff(ob, "a Cap notice was not acknowledged");
			else
				ob->state = OB_IDLE;
			return;
		}
		struct broker_link *link = redeemer_link(ob->m->redeemer);
		if (!broker_link_is_up(link)) {
			broker_link_want(link);
			if (++ob->polls * (uint64_t)POLL_US >
			    ob->m->cfg.broker_connect_timeout * 1000000ull)
				backoff(ob, "the broker cannot be reached");
			else
				arm(ob, OB_WAITING, POLL_US);
			return;
		}
		ob->polls = 0;
		ob->cursor = ob->rowid;
		if (send_row(ob, link)) {
			ob->sent++;
			ob->state = OB_SENDING;
			return;
		}
		row_hex(ob, hex);
		log_err("cap outbox: channel %s segment %u: the notice cannot be built or sent",
			hex, ob->seg_seq);
		ob->sweep_failed = true;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct cap_outbox *ob = arg;
	if (!ob->stopping)
		next(ob);
}

void cap_outbox_kick(struct merchant *m)
{
	struct cap_outbox *ob = m->cap_outbox;
	if (!ob || ob->stopping)
		return;
	ob->pending++;
	/* A sweep under way reaches the new row (rows are read in order as it goes). */
	if (ob->state == OB_IDLE || ob->state == OB_BACKOFF) {
		evtimer_del(ob->timer); /* a new Cap goes at once */
		next(ob);
	}
}

bool cap_outbox_start(struct merchant *m)
{
	struct cap_outbox *ob = calloc(1, sizeof(*ob));
	if (!ob)
		return false;
	m->cap_outbox = ob;
	ob->m = m;
	ob->pending = cap_outbox_count(m->store, CAP_OUTBOX_PENDING);
	ob->conflicts = cap_outbox_count(m->store, CAP_OUTBOX_CONFLICT);
	ob->timer = evtimer_new(m->base, on_timer, ob);
	if (ob->pending < 0 || ob->conflicts < 0 || !ob->timer)
		return false;
	if (ob->pending > 0)
		log_info("cap outbox: %lld Cap notices to send", (long long)ob->pending);
	arm(ob, OB_BACKOFF, 0); /* the first sweep, once the loop runs */
	return true;
}

void cap_outbox_stop(struct merchant *m)
{
	if (m->cap_outbox) {
		m->cap_outbox->stopping = true;
		evtimer_del(m->cap_outbox->timer);
	}
}

void cap_outbox_free(struct merchant *m)
{
	struct cap_outbox *ob = m->cap_outbox;
	if (!ob)
		return;
	if (ob->timer)
		event_free(ob->timer);
	free(ob);
	m->cap_outbox = NULL;
}

int64_t cap_outbox_pending(const struct merchant *m)
{
	return m->cap_outbox ? m->cap_outbox->pending : 0;
}

int64_t cap_outbox_conflicts(const struct merchant *m)
{
	return m->cap_outbox ? m->cap_outbox->conflicts : 0;
}

void cap_outbox_metrics_register(struct merchant *m, struct mp_metrics *reg)
{
	struct cap_outbox *ob = m->cap_outbox;
	mp_metrics_i64(reg, MP_METRIC_GAUGE, "micropay_merchant_cap_outbox_pending",
		       "Caps not yet acknowledged by the broker.", NULL, &ob->pending);
	mp_metrics_i64(reg, MP_METRIC_GAUGE, "micropay_merchant_cap_outbox_conflicts",
		       "Caps the broker refused as conflicting.", NULL, &ob->conflicts);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_cap_notices_sent_total",
		       "CapNotices sent to the broker.", NULL, &ob->sent);
	const char *help = "CapNotice answers, by result.";
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_cap_notices_total", help,
		       (const char *[]){"result", "recorded", NULL}, &ob->delivered);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_cap_notices_total", help,
		       (const char *[]){"result", "refused", NULL}, &ob->refused);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_merchant_cap_notices_total", help,
		       (const char *[]){"result", "unanswered", NULL}, &ob->unanswered);
}
