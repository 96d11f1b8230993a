/* merchantd's admin listing of orders (durable ones: order.create answered). */
#pragma once
#include <jansson.h>

#include "admin.h"

extern const struct mp_admin_param admin_orders_params[];

/* {orders: [{order_ref, price, paid}], next_after}: by reference (bytes, then length), at most
 * `limit` (1 .. 1000, default 100) after `after`; next_after the last one's reference when more
 * may follow, else null. `paid`: the Pay that paid it is durable. */
void admin_orders(struct mp_admin_req *req, json_t *params, void *ctx);
