/* The admin method `offers` (docs/goods.md "Key release"): the offers in merchantd's store,
 * newest first, paged by `before`. */
#pragma once
#include "admin.h"

extern const struct mp_admin_param admin_offers_params[];
void admin_offers(struct mp_admin_req *req, json_t *params, void *ctx);
