/* Restore mode: the marks at start-up and the operator's confirmation (restore.h).
 *
 * restore.confirm: CHECKED (the channel is known here and unconfirmed, else a clear error)
 *   --store thread: confirmed_at written--> the channel's flag cleared, answered;
 *   a write that fails leaves the mark and answers the failure. */
#include "restore.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "restore_store.h"
#include "store_thread.h"

bool restore_unconfirmed(const struct channel *ch)
{
	return ch->custody_unconfirmed;
}

static void flag_unconfirmed(void *arg, const uint8_t channel_id[MP_ID_LEN])
{
	struct merchant *m = arg;
	struct channel *ch = channel_find(&m->channels, channel_id);
	if (!ch || ch->custody_unconfirmed)
		return; /* a mark outlives nothing: channel rows are kept past their deadlines */
	ch->custody_unconfirmed = true;
	m->restore.unconfirmed++;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(channel_id, MP_ID_LEN, hex);
	log_warn("channel %s: custody unconfirmed since the store was restored: not served as "
		 "held until restore.confirm",
		 hex);
}

bool restore_start(struct merchant *m, bool restored)
{
	uint64_t now = mp_clock_now(&m->clock);
	if (restored && !restore_store_mark(m->store, now)) {
		log_err("store %s: --restored: the held channels could not be marked; not starting",
			m->cfg.store);
		return false;
	}
	if (!restore_store_load(m->store, &m->restore.restored_at, flag_unconfirmed, m))
		return false;
	if (restored || m->restore.unconfirmed)
		log_warn("restore mode: store restored at %llu; %llu channel(s) with custody "
			 "unconfirmed",
			 (unsigned long long)m->restore.restored_at,
			 (unsigned long long)m->restore.unconfirmed);
	return true;
}

json_t *restore_status_json(const struct merchant *m)
{
	return json_pack("{s:o,s:I}", "restored_at",
			 m->restore.restored_at ? json_integer((json_int_t)m->restore.restored_at)
						: json_null(),
			 "unconfirmed", (json_int_t)m->restore.unconfirmed);
}

struct confirm_job {
	struct st_job job; /* first */
	struct merchant *m;
	struct mp_admin_req *req;
	uint8_t channel_id[MP_ID_LEN];
	uint64_t now;
	bool ok, changed;
};

static void confirm_run(struct store *s, struct st_job *job)
{
	struct confirm_job *c = (struct confirm_job *)job;
	c->ok = restore_store_confirm(s, c->channel_id, c->now, &c->changed);
}

static void confirm_done(struct st_job *job)
{
	struct confirm_job *c = (struct confirm_job *)job;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->channel_id, MP_ID_LEN, hex);
	struct channel *ch = channel_find(&c->m->channels, c->channel_id);
	if (!c->ok) {
		mp_admin_fail(c->req, MP_ADMIN_FAILED,
			      "channel %s: the confirmation could not be stored (see the log); "
			      "custody stays unconfirmed",
			      hex);
	} else {
		if (ch && ch->custody_unconfirmed) {
			ch->custody_unconfirmed = false;
			c->m->restore.unconfirmed--;
		}
		log_info("channel %s: custody confirmed by the operator after the restore", hex);
		mp_admin_reply(c->req,
			       json_pack("{s:s,s:b,s:I}", "channel_id", hex, "confirmed", true,
					 "unconfirmed", (json_int_t)c->m->restore.unconfirmed));
	}
	free(c);
}

void restore_admin_confirm(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	uint8_t id[MP_ID_LEN];
	if (!mp_admin_param_id(req, params, "channel", id, MP_ID_LEN))
		return;
	struct channel *ch = channel_find(&m->channels, id);
	if (!ch || !ch->custody_unconfirmed) {
		mp_admin_fail_param(req, MP_ADMIN_FAILED, "channel",
				    ch ? "this channel's custody is not unconfirmed (nothing to "
					 "confirm)"
				       : "unknown channel");
		return;
	}
	struct confirm_job *c = calloc(1, sizeof(*c));
	if (!c) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	*c = (struct confirm_job){.job = {.run = confirm_run, .done = confirm_done},
				  .m = m,
				  .req = req,
				  .now = mp_clock_now(&m->clock)};
	memcpy(c->channel_id, id, MP_ID_LEN);
	store_thread_submit(m->store_thread, &c->job);
}
