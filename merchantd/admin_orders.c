/* merchantd's orders listing (admin_orders.h). Orders live in a hash table: a page is the
 * `limit` smallest references above `after`, found by sorting the candidates. */
#include "admin_orders.h"

#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "util.h"

#define ORDERS_DEFAULT 100
#define ORDERS_MAX     1000

const struct mp_admin_param admin_orders_params[] = {
    {"limit", MP_ADMIN_T_UINT, false, "100", "orders per page, 1 .. 1000"},
    {"after", MP_ADMIN_T_HEX, false, "the first",
     "orders with a reference above this (next_after of the previous page)"},
    {NULL},
};

struct ref {
	uint8_t bytes[MP_ORDER_REF_MAX];
	size_t len;
};

static int ref_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

static int order_cmp(const void *a, const void *b)
{
	const struct order *x = *(const struct order *const *)a;
	const struct order *y = *(const struct order *const *)b;
	return ref_cmp(x->ref, x->ref_len, y->ref, y->ref_len);
}

static bool page_params(struct mp_admin_req *req, json_t *params, uint64_t *limit,
			struct ref *after)
{
	*limit = ORDERS_DEFAULT;
	const char *hex = NULL;
	if (!mp_admin_param_u64(req, params, "limit", limit, false))
		return false;
	if (*limit < 1 || *limit > ORDERS_MAX) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "limit",
				    "parameter 'limit' must be 1 .. %d", ORDERS_MAX);
		return false;
	}
	json_t *v = json_object_get(params, "after");
	hex = json_string_value(v);
	after->len = hex ? strlen(hex) / 2 : 0;
	if (v && (!hex || strlen(hex) % 2 || after->len < 1 || after->len > MP_ORDER_REF_MAX ||
		  !mp_hex_decode(hex, after->bytes, after->len))) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "after",
				    "parameter 'after' must be an order reference (2 .. %d hex "
				    "digits)",
				    2 * MP_ORDER_REF_MAX);
		return false;
	}
	return true;
}

static json_t *order_json(const struct order *o)
{
	return json_pack("{s:o,s:I,s:b}", "order_ref", mp_json_hex(o->ref, o->ref_len), "price",
			 (json_int_t)o->price, "paid", o->paid_durable);
}

void admin_orders(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct merchant *m = ctx;
	uint64_t limit;
	struct ref after;
	if (!page_params(req, params, &limit, &after))
		return;
	struct order **found = malloc((m->orders.count ? m->orders.count : 1) * sizeof(*found));
	json_t *list = json_array();
	if (!found || !list) {
		free(found);
		json_decref(list);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "orders: out of memory");
		return;
	}
	size_t n = 0;
	TABLE_FOREACH(&m->orders, struct order, o)
	{
		if (o->recorded && n < m->orders.count &&
		    (!after.len || ref_cmp(o->ref, o->ref_len, after.bytes, after.len) > 0))
			found[n++] = o;
	}
	qsort(found, n, sizeof(*found), order_cmp);
	size_t shown = n < limit ? n : (size_t)limit;
	for (size_t i = 0; i < shown; i++)
		json_array_append_new(list, order_json(found[i]));
	json_t *next =
	    shown < n ? mp_json_hex(found[shown - 1]->ref, found[shown - 1]->ref_len) : json_null();
	free(found);
	mp_admin_reply(req, json_pack("{s:o,s:o}", "orders", list, "next_after", next));
}
