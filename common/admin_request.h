/* One admin request line, checked before any method runs (admin.c dispatches what passes).
 * Checked in this order, the first refusal being the answer: a JSON object (duplicate keys
 * refused) -> "version" equal to MP_ADMIN_PROTOCOL_VERSION -> "method" a string and "params"
 * absent or an object -> the method known (the daemon's table, then the builtins) -> the
 * declared parameters (admin_params.h). Pure: no I/O, no logging; fuzzed by
 * tests/fuzz/fuzz_admin_request.c. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "admin.h"

struct mp_admin_request {
	json_t *msg;	/* the whole request (owned) */
	json_t *id;	/* borrowed from msg; may be NULL */
	json_t *params; /* owned: the request's params, or an empty object */
	const struct mp_admin_method *method;
	bool builtin;  /* the method is one of mp_admin_builtins */
	bool progress; /* "progress": true: the client reads progress lines (mp_admin_progress) */
};

struct mp_admin_refusal {
	int code;	/* enum mp_admin_error */
	json_t *id;	/* the request's id when it had one (borrowed from msg; may be NULL) */
	char param[64]; /* the parameter at fault, or "" */
	char message[512];
};

/* Parse and check line (NUL-terminated) against table and the builtins. True with *req filled
 * (free with mp_admin_request_free); false with *why filled and *req holding only what the
 * refusal borrows (free it likewise). */
bool mp_admin_request_parse(const char *line, const struct mp_admin_method *table,
			    struct mp_admin_request *req, struct mp_admin_refusal *why);
void mp_admin_request_free(struct mp_admin_request *req);
