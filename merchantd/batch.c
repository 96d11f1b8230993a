/* Group commit: accepted payments wait in the open batch until one SQLite transaction makes
 * them durable (after commit_delay_us or commit_max payments, whichever first); only then are
 * they acknowledged. A batch that cannot commit stops the daemon: nothing unjournalled was
 * acknowledged, so a restart from the store loses nothing a wallet was told. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "store.h"

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct merchant *m = arg;
	m->batch.timer_armed = false;
	batch_flush(m);
}

bool batch_init(struct merchant *m)
{
	struct pay_batch *b = &m->batch;
	b->cap = m->cfg.commit_max ? m->cfg.commit_max : 256;
	b->entries = calloc(b->cap, sizeof(*b->entries));
	b->timer = evtimer_new(m->base, on_timer, m);
	return b->entries && b->timer;
}

void batch_free(struct merchant *m)
{
	batch_flush(m);
	if (m->batch.timer)
		event_free(m->batch.timer);
	free(m->batch.entries);
}

const struct pay_entry *batch_find(const struct merchant *m, const struct channel *ch, uint32_t j)
{
	for (size_t i = m->batch.count; i-- > 0;) {
		const struct pay_entry *e = &m->batch.entries[i];
		if (e->ch == ch && e->j == j && e->fresh)
			return e;
	}
	return NULL;
}

void batch_add(struct merchant *m, const struct pay_entry *e)
{
	struct pay_batch *b = &m->batch;
	b->entries[b->count++] = *e;
	mp_conn_ref(e->conn);
	if (e->fresh)
		e->ch->dirty = true;
	if (b->count >= b->cap) {
		batch_flush(m);
		return;
	}
	if (!b->timer_armed) {
		struct timeval tv = {0, (suseconds_t)m->cfg.commit_delay_us};
		evtimer_add(b->timer, &tv);
		b->timer_armed = true;
	}
}

static void acknowledge(struct merchant *m, struct pay_entry *e)
{
	MpCode code = e->fresh ? e->code : MP_ST(DUPLICATE_OK);
	const char *detail = e->fresh ? NULL : mp_code_name(e->code);
	if (mp_conn_is_open(e->conn))
		reply_pay(e->conn, e->request_id, code, detail, e->j, e->credit, e->price);
	if (!e->fresh)
		m->stats.pays_duplicate++;
	else if (e->code == MP_ST(OK))
		m->stats.pays_ok++;
	else
		m->stats.pays_underpaid++;
	mp_conn_unref(e->conn);
}

void batch_flush(struct merchant *m)
{
	struct pay_batch *b = &m->batch;
	if (b->timer_armed) {
		evtimer_del(b->timer);
		b->timer_armed = false;
	}
	if (b->count == 0)
		return;
	if (!store_commit_batch(m->store, b->entries, b->count)) {
		log_err("pay batch of %zu payments did not commit: stopping so that nothing "
			"unjournalled is acknowledged",
			b->count);
		abort();
	}
	m->stats.batches++;
	for (size_t i = 0; i < b->count; i++) {
		struct pay_entry *e = &b->entries[i];
		if (e->fresh) {
			e->ch->durable_last = e->j;
			memcpy(e->ch->durable_w, e->w, MP_HASH_LEN);
		}
		acknowledge(m, e);
	}
	b->count = 0;
}
