/* brokerd's admin socket: run one prepared statement and render its result as the answer. */
#pragma once
#include <libpq-fe.h>
#include <stdint.h>

struct broker;
struct db_params;
struct mp_admin_req;

/* Call `statement` with p on the pool; render(req, result, extra) answers (extra: a copy of
 * the MP_ID_LEN bytes given, or zeros). A failed call answers MP_ADMIN_FAILED with the error. */
void admin_query(struct broker *b, struct mp_admin_req *req, const char *statement,
		 const struct db_params *p,
		 void (*render)(struct mp_admin_req *, const PGresult *, void *),
		 const uint8_t *extra);
