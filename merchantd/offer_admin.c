/* merchantd's offers listing (offer_admin.h). Rows come from the store (committed state): an
 * offer's key is never listed. */
#include "offer_admin.h"

#include "merchant.h"
#include "offer_store.h"

#define OFFERS_PAGE_MAX 1000

const struct mp_admin_param admin_offers_params[] = {
    {"limit", MP_ADMIN_T_UINT, false, "100", "offers per page, 1 .. 1000"},
    {"before", MP_ADMIN_T_UINT, false, "the newest",
     "offers older than this (next_before of the previous page)"},
    {NULL},
};

struct listing {
	json_t *rows;
	int64_t oldest;
};

static void add_offer(void *arg, const struct offer_listed *row)
{
	struct listing *l = arg;
	const struct offer *o = row->o;
	json_array_append_new(
	    l->rows,
	    json_pack("{s:I,s:o,s:o,s:s,s:I,s:I,s:I,s:b,s:b,s:I,s:I,s:I}", "seq",
		      (json_int_t)row->seq, "channel_id", mp_json_hex(o->channel_id, MP_ID_LEN),
		      "order_ref", mp_json_hex(o->order_ref, OFFER_REF_LEN), "item", o->item.id,
		      "after_index", (json_int_t)o->after_index, "pay_index",
		      (json_int_t)o->pay_index, "price", (json_int_t)o->price, "paid", o->paid,
		      "paid_by_dispute", o->by_dispute, "deadline", (json_int_t)o->deadline,
		      "seg_seq", (json_int_t)o->seg_seq, "created_at",
		      (json_int_t)row->created_at));
	l->oldest = row->seq;
}

void admin_offers(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	uint64_t limit = 100, before = 0;
	if (!mp_admin_param_u64(req, params, "limit", &limit, false) ||
	    !mp_admin_param_u64(req, params, "before", &before, false))
		return;
	if (limit < 1 || limit > OFFERS_PAGE_MAX || before > INT64_MAX) {
		mp_admin_fail_param(
		    req, MP_ADMIN_BAD_PARAMS, limit < 1 || limit > 1000 ? "limit" : "before",
		    "'limit' must be 1 .. %d and 'before' below 2^63", OFFERS_PAGE_MAX);
		return;
	}
	struct listing l = {.rows = json_array()};
	if (!l.rows ||
	    !offer_store_list(m->store, (int64_t)before, (unsigned)limit, add_offer, &l)) {
		json_decref(l.rows);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "offers: cannot read the store");
		return;
	}
	json_t *next = json_array_size(l.rows) == limit ? json_integer(l.oldest) : json_null();
	mp_admin_reply(req, json_pack("{s:o,s:o}", "offers", l.rows, "next_before", next));
}
