/* Group commit, pipelined: one batch commits on the store thread while the loop keeps reading,
 * verifying and queueing into the next. Entries are answered only once their own batch has
 * committed; a batch that cannot commit stops the daemon (on the store thread, before anything
 * of it is answered): nothing unjournalled was acknowledged, so a restart from the store loses
 * nothing a wallet was told.
 *
 * The two batches take turns. With commit_delay_us = 0 (the default) the commit is adaptive:
 * a batch is handed over the moment the store thread has none, so a lone Pay waits for its own
 * commit only, and under load the entries arriving during one commit form the next batch. With
 * commit_delay_us > 0 a batch first waits that long for company (the timer):
 *
 *   EMPTY --first entry, delay 0: due at once--> FILLING
 *   EMPTY --first entry, delay > 0: timer (commit_delay_us) armed--> FILLING
 *   FILLING --timer | commit_max entries | batch_flush | an Open or order.create--> due
 *   due, no batch committing --> COMMITTING (submitted; the other batch becomes the filling one;
 *        counted by trigger: "idle" from batch_add/batch_flush, "timer")
 *   due, a batch committing --> stays FILLING until that commit completes, then COMMITTING
 *        (trigger "after_commit"); once full, new entries are refused (LIMIT, "store busy")
 *        rather than queued without bound
 *   COMMITTING --committed: durable view advanced, entries answered--> EMPTY
 *   COMMITTING --failed--> the daemon stops (fail-stop, logged)
 *
 * So at most one batch commits and one fills: memory is bounded by 2 * commit_max entries. */
#include "batch.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "journal_sync.h"
#include "log.h"
#include "metrics.h"
#include "offer.h"
#include "purchase.h"
#include "redeem_lag.h"
#include "segments.h"
#include "store.h"
#include "store_thread.h"

struct batch {
	struct batch_entry *entries;
	size_t count;
	uint64_t submitted_us; /* when handed to the store thread (loop clock) */
	uint64_t seq;
	struct st_job job;
	struct batch_pipe *pipe;
};

struct batch_pipe {
	struct merchant *m;
	struct batch b[2];
	struct batch *filling;
	struct batch *committing; /* NULL while the store thread has no batch */
	size_t cap;
	struct event *timer;
	bool timer_armed;
	bool due; /* commit the filling batch as soon as the store thread is free */
	uint64_t next_seq;
};

static void submit(struct batch_pipe *p, enum batch_trigger trigger);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct batch_pipe *p = arg;
	p->timer_armed = false;
	p->due = true;
	submit(p, BATCH_TIMER);
}

/* Store thread. */
static void run_commit(struct store *s, struct st_job *job)
{
	struct batch *b = job->arg;
	if (!store_commit_batch(s, b->entries, b->count)) {
		log_err("store %s: batch %llu of %zu entries did not commit: stopping so that "
			"nothing unjournalled is acknowledged",
			store_path(s), (unsigned long long)b->seq, b->count);
		abort();
	}
}

/* Loop: advance the durable view with one committed entry. */
static void make_durable(struct merchant *m, struct batch_entry *e)
{
	struct channel *ch = e->ch;
	switch (e->kind) {
	case ENTRY_PAY:
		redeem_lag_paid(ch, e->j, e->journal_at);
		ch->durable_last = e->j;
		memcpy(ch->durable_w, e->w, MP_HASH_LEN);
		ch->durable_credit = e->credit;
		memcpy(ch->durable_order_ref, e->order_ref, e->order_ref_len);
		ch->durable_order_ref_len = e->order_ref_len;
		ch->durable_code = e->code;
		ch->durable_price = e->price;
		ch->journal_head = e->journal_seq;
		if (e->order)
			e->order->paid_durable = true;
		if (e->pays_purchase &&
		    purchase_is_ref(ch->purchase, e->purchase_id, PURCHASE_ID_LEN))
			ch->purchase->paid_durable = e->purchase_paid;
		if (e->pays_offer && offer_is_ref(ch->offer, e->offer_ref, OFFER_REF_LEN))
			ch->offer->paid_durable = true;
		return;
	case ENTRY_OFFER:
		if (ch->offer &&
		    !memcmp(ch->offer->order_ref, e->offer_row->order_ref, OFFER_REF_LEN))
			ch->offer->recorded = true;
		return;
	case ENTRY_OFFER_CANCEL:
		if (ch && offer_is_ref(ch->offer, e->offer_row->order_ref, OFFER_REF_LEN))
			ch->offer->cancel_durable = true;
		return;
	case ENTRY_PURCHASE:
		if (channel_purchase_with_id(ch, e->purchase_row->id))
			ch->purchase->recorded = true;
		return;
	case ENTRY_OPEN:
		if (e->insert) {
			ch->recorded = true;
			m->channels_recorded++;
		}
		return;
	case ENTRY_ORDER:
		e->order->recorded = true;
		return;
	case ENTRY_HANDOFF:
		ch->handoff_pending = false;
		return;
	case ENTRY_CLOSE:
		ch->close_pending = false;
		return;
	case ENTRY_CAP: /* the channel row is at the new segment's base point */
		ch->cap_pending = false;
		ch->durable_seg = e->seg->seg_seq;
		ch->durable_last = e->seg->start;
		memcpy(ch->durable_w, e->seg->root, MP_HASH_LEN);
		ch->durable_credit = 0;
		ch->durable_order_ref_len = 0;
		ch->durable_code = MP_ST(OK);
		ch->durable_price = 0;
		return;
	case ENTRY_TAKEOVER:
		if (e->custody->insert) {
			ch->recorded = true;
			m->channels_recorded++;
		}
		return;
	case ENTRY_RETRY:
		return;
	}
}

/* Counted on the loop, after the answer went out: the latency runs from the Pay's frame to
 * here, group commit included. */
static void count_pay(struct merchant *m, const struct batch_entry *e)
{
	if (e->kind == ENTRY_RETRY)
		m->stats.pays_duplicate++;
	else if (e->code == MP_ST(OK))
		m->stats.pays_ok++;
	else
		m->stats.pays_underpaid++;
	merchant_count_pay_answer(m, e->kind == ENTRY_PAY ? e->code : MP_ST(DUPLICATE_OK));
	if (m->hot.pay_latency)
		mp_histogram_observe(m->hot.pay_latency,
				     (double)(mp_metrics_now_us() - e->read_us) / 1e6);
}

static void acknowledge(struct merchant *m, struct batch_entry *e)
{
	switch (e->kind) {
	case ENTRY_PAY:
	case ENTRY_RETRY: /* a PAY without a connection came from a dispute (pay_from_dispute) */
		if (e->http)
			gateway_paid(m, e);
		else if (e->conn && mp_conn_is_open(e->conn))
			reply_pay(e->conn, e->request_id,
				  e->kind == ENTRY_PAY ? e->code : MP_ST(DUPLICATE_OK),
				  e->kind == ENTRY_PAY ? NULL : mp_code_name(e->code), e->j,
				  e->credit, e->price);
		count_pay(m, e);
		break;
	case ENTRY_OPEN:
		if (mp_conn_is_open(e->conn))
			open_acknowledge(m, e->conn, e->request_id, e->ch);
		break;
	case ENTRY_ORDER:
		order_acknowledge(m, e->req, e->order);
		return;
	case ENTRY_HANDOFF:
		handoff_acknowledge(m, e);
		break;
	case ENTRY_TAKEOVER:
		takeover_acknowledge(m, e);
		break;
	case ENTRY_CAP:
		transfer_acknowledge(m, e);
		break;
	case ENTRY_CLOSE:
		close_acknowledge(m, e);
		break;
	case ENTRY_PURCHASE:
		purchase_acknowledge(m, e);
		break;
	case ENTRY_OFFER:
		offer_acknowledge(m, e);
		break;
	case ENTRY_OFFER_CANCEL:
		offer_cancel_acknowledge(m, e);
		break;
	}
	offer_free(e->offer_row);
	e->offer_row = NULL;
	purchase_free(e->purchase_row);
	e->purchase_row = NULL;
	custody_write_free(e->custody);
	e->custody = NULL;
	segment_rows_free(e->seg, e->seg ? 1 : 0);
	e->seg = NULL;
	if (e->conn)
		mp_conn_unref(e->conn);
}

/* Loop: the batch committed. */
static void on_committed(struct st_job *job)
{
	struct batch *b = job->arg;
	struct batch_pipe *p = b->pipe;
	struct merchant *m = p->m;
	m->stats.batches++;
	if (m->hot.batch_entries) { /* measured on the loop: no value crosses threads */
		mp_histogram_observe(m->hot.batch_entries, (double)b->count);
		mp_histogram_observe(m->hot.batch_seconds,
				     (double)(mp_metrics_now_us() - b->submitted_us) / 1e6);
	}
	bool paid = false;
	for (size_t i = 0; i < b->count; i++) {
		make_durable(m, &b->entries[i]);
		paid = paid || b->entries[i].kind == ENTRY_PAY;
	}
	if (paid)
		journal_sync_note(m);
	for (size_t i = 0; i < b->count; i++)
		acknowledge(m, &b->entries[i]);
	b->count = 0;
	p->committing = NULL;
	submit(p, BATCH_AFTER_COMMIT);
}

/* Hand the filling batch to the store thread if it is due, not empty, and the thread is free;
 * count what triggered it. */
static void submit(struct batch_pipe *p, enum batch_trigger trigger)
{
	struct batch *b = p->filling;
	if (!p->due || p->committing || b->count == 0)
		return;
	if (p->timer_armed) {
		evtimer_del(p->timer);
		p->timer_armed = false;
	}
	p->due = false;
	b->seq = ++p->next_seq;
	p->committing = b;
	p->filling = b == &p->b[0] ? &p->b[1] : &p->b[0];
	p->m->stats.batches_by_trigger[trigger]++;
	b->submitted_us = mp_metrics_now_us();
	b->job = (struct st_job){.run = run_commit, .done = on_committed, .arg = b};
	store_thread_submit(p->m->store_thread, &b->job);
}

bool batch_init(struct merchant *m)
{
	struct batch_pipe *p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	m->batch = p;
	p->m = m;
	p->cap = m->cfg.commit_max;
	for (int i = 0; i < 2; i++) {
		p->b[i].pipe = p;
		p->b[i].entries = calloc(p->cap, sizeof(*p->b[i].entries));
		if (!p->b[i].entries)
			return false;
	}
	p->filling = &p->b[0];
	p->timer = evtimer_new(m->base, on_timer, p);
	return p->timer != NULL;
}

void batch_drain(struct merchant *m)
{
	struct batch_pipe *p = m->batch;
	while (p->committing || p->filling->count) {
		p->due = true;
		submit(p, BATCH_IDLE);
		store_thread_sync(m->store_thread); /* on_committed submits the filling batch */
	}
}

bool batch_is_idle(const struct merchant *m)
{
	return !m->batch->committing && m->batch->filling->count == 0;
}

void batch_free(struct merchant *m)
{
	struct batch_pipe *p = m->batch;
	if (!p)
		return;
	if (p->timer)
		event_free(p->timer);
	free(p->b[0].entries);
	free(p->b[1].entries);
	free(p);
	m->batch = NULL;
}

bool batch_has_room(const struct merchant *m)
{
	return m->batch->filling->count < m->batch->cap;
}

static const struct batch_entry *find_in(const struct batch *b, const struct channel *ch,
					 uint32_t seg_seq, uint32_t j)
{
	for (size_t i = b->count; i-- > 0;) {
		const struct batch_entry *e = &b->entries[i];
		if (e->kind == ENTRY_PAY && e->ch == ch && e->seg_seq == seg_seq && e->j == j)
			return e;
	}
	return NULL;
}

const struct batch_entry *batch_find(const struct merchant *m, const struct channel *ch,
				     uint32_t seg_seq, uint32_t j)
{
	const struct batch_pipe *p = m->batch;
	const struct batch_entry *e = find_in(p->filling, ch, seg_seq, j);
	if (!e && p->committing)
		e = find_in(p->committing, ch, seg_seq, j);
	return e;
}

void batch_add(struct merchant *m, const struct batch_entry *e)
{
	struct batch_pipe *p = m->batch;
	struct batch *b = p->filling;
	b->entries[b->count++] = *e;
	if (e->conn)
		mp_conn_ref(e->conn);
	/* An Open, order.create, Handoff, takeover, Cap or Close waits for nothing else: commit it
	 * now; so does everything when the commit is adaptive (commit_delay_us = 0). */
	if (b->count >= p->cap || e->kind == ENTRY_OPEN || e->kind == ENTRY_ORDER ||
	    e->kind == ENTRY_HANDOFF || e->kind == ENTRY_TAKEOVER || e->kind == ENTRY_CAP ||
	    e->kind == ENTRY_CLOSE || e->kind == ENTRY_PURCHASE || e->kind == ENTRY_OFFER ||
	    e->kind == ENTRY_OFFER_CANCEL || m->cfg.commit_delay_us == 0)
		p->due = true;
	if (!p->due && !p->timer_armed) {
		uint32_t us = m->cfg.commit_delay_us;
		struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
		p->timer_armed = evtimer_add(p->timer, &tv) == 0;
		if (!p->timer_armed) { /* no timer: nothing would commit this entry; do it now */
			log_err("store: cannot arm the group commit timer; committing at once");
			p->due = true;
		}
	}
	submit(p, BATCH_IDLE);
}

void batch_flush(struct merchant *m)
{
	m->batch->due = true;
	submit(m->batch, BATCH_IDLE);
}
