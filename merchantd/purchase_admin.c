/* merchantd's purchases listing (purchase_admin.h). Rows come from the store (committed
 * state); a purchase still current on its channel also shows the chunks sent so far, which
 * live in memory only. */
#include "purchase_admin.h"

#include <string.h>

#include "merchant.h"
#include "purchase_store.h"

#define PURCHASES_DEFAULT 100
#define PURCHASES_MAX	  1000

const struct mp_admin_param admin_purchases_params[] = {
    {"limit", MP_ADMIN_T_UINT, false, "100", "purchases per page, 1 .. 1000"},
    {"before", MP_ADMIN_T_UINT, false, "the newest",
     "purchases older than this (next_before of the previous page)"},
    {NULL},
};

struct page {
	struct merchant *m;
	json_t *list;
	int64_t last_seq;
};

static const char *purchase_state(const struct purchase *p, const struct purchase *current)
{
	if (p->paid == p->item.chunks)
		return "PAID";
	return current ? "OPEN" : "REPLACED";
}

static void add_row(void *arg, const struct purchase_listed *row)
{
	struct page *pg = arg;
	const struct purchase *p = &row->p;
	const struct channel *ch = channel_find(&pg->m->channels, p->channel_id);
	const struct purchase *cur = channel_purchase_with_id(ch, p->id);
	json_t *o =
	    json_pack("{s:I,s:o,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:I}", "seq", (json_int_t)row->seq,
		      "purchase_id", mp_json_hex(p->id, PURCHASE_ID_LEN), "channel_id",
		      mp_json_hex(p->channel_id, MP_ID_LEN), "item", p->item.id, "size",
		      (json_int_t)p->item.size, "chunks", (json_int_t)p->item.chunks, "paid",
		      (json_int_t)p->paid, "total", (json_int_t)p->item.total, "sent",
		      (json_int_t)(cur ? cur->delivered : p->paid), "state", purchase_state(p, cur),
		      "created_at", (json_int_t)row->created_at);
	json_array_append_new(pg->list, o);
	pg->last_seq = row->seq;
}

void admin_purchases(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	uint64_t limit = PURCHASES_DEFAULT, before = 0;
	if (!mp_admin_param_u64(req, params, "limit", &limit, false) ||
	    !mp_admin_param_u64(req, params, "before", &before, false))
		return;
	if (limit < 1 || limit > PURCHASES_MAX) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "limit",
				    "parameter 'limit' must be 1 .. %d", PURCHASES_MAX);
		return;
	}
	struct page pg = {.m = m, .list = json_array()};
	if (!pg.list || before > INT64_MAX ||
	    !purchase_store_list(m->store, (int64_t)before, (unsigned)limit, add_row, &pg)) {
		json_decref(pg.list);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "purchases: cannot read the store");
		return;
	}
	json_t *next = json_array_size(pg.list) == limit ? json_integer(pg.last_seq) : json_null();
	mp_admin_reply(req, json_pack("{s:o,s:o}", "purchases", pg.list, "next_before", next));
}
