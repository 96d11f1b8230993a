/* The admin method `purchases` (docs/goods.md): the purchases in merchantd's store, newest
 * first, paged by `before`. */
#pragma once
#include "admin.h"

extern const struct mp_admin_param admin_purchases_params[];
void admin_purchases(struct mp_admin_req *req, json_t *params, void *ctx);
