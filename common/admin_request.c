#include "admin_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin_builtin.h"
#include "admin_params.h"

static const struct mp_admin_method *find_method(const struct mp_admin_method *table,
						 const char *name)
{
	for (const struct mp_admin_method *m = table; m && m->name; m++)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

static bool refuse(struct mp_admin_refusal *why, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool refuse(struct mp_admin_refusal *why, int code, const char *param, const char *fmt, ...)
{
	why->code = code;
	snprintf(why->param, sizeof(why->param), "%s", param ? param : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why->message, sizeof(why->message), fmt, ap);
	va_end(ap);
	return false;
}

static bool version_accepted(json_t *msg, struct mp_admin_refusal *why)
{
	json_t *v = json_object_get(msg, "version");
	if (json_is_integer(v) && json_integer_value(v) == MP_ADMIN_PROTOCOL_VERSION)
		return true;
	if (json_is_integer(v))
		return refuse(why, MP_ADMIN_VERSION, NULL,
			      "admin protocol version %lld is not supported: this daemon speaks "
			      "version %d (use the mpctl of the daemon's build)",
			      (long long)json_integer_value(v), MP_ADMIN_PROTOCOL_VERSION);
	return refuse(why, MP_ADMIN_VERSION, NULL,
		      "the request carries no admin protocol version: this daemon speaks version "
		      "%d (use the mpctl of the daemon's build)",
		      MP_ADMIN_PROTOCOL_VERSION);
}

bool mp_admin_request_parse(const char *line, const struct mp_admin_method *table,
			    struct mp_admin_request *req, struct mp_admin_refusal *why)
{
	*req = (struct mp_admin_request){0};
	*why = (struct mp_admin_refusal){0};
	json_error_t jerr;
	req->msg = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	if (!req->msg)
		return refuse(why, MP_ADMIN_PARSE, NULL, "%s", jerr.text);
	if (!json_is_object(req->msg))
		return refuse(why, MP_ADMIN_PARSE, NULL, "expected an object");
	req->id = why->id = json_object_get(req->msg, "id");
	req->progress = json_is_true(json_object_get(req->msg, "progress"));
	if (!version_accepted(req->msg, why))
		return false;
	const char *method = json_string_value(json_object_get(req->msg, "method"));
	json_t *params = json_object_get(req->msg, "params");
	if (!method || (params && !json_is_object(params)))
		return refuse(
		    why, MP_ADMIN_BAD_REQUEST, NULL,
		    "expected {\"version\": int, \"method\": string, \"params\": object}");
	req->method = find_method(table, method);
	if (!req->method && (req->method = find_method(mp_admin_builtins, method)))
		req->builtin = true;
	if (!req->method)
		return refuse(why, MP_ADMIN_NO_METHOD, NULL, "unknown method '%.64s' (see: help)",
			      method);
	req->params = params ? json_incref(params) : json_object();
	if (!req->params)
		return refuse(why, MP_ADMIN_INTERNAL, NULL, "out of memory");
	struct mp_admin_param_error perr;
	if (!mp_admin_check_params(req->method, req->params, &perr))
		return refuse(why, MP_ADMIN_BAD_PARAMS, perr.param, "%s", perr.message);
	return true;
}

void mp_admin_request_free(struct mp_admin_request *req)
{
	json_decref(req->params);
	json_decref(req->msg);
	*req = (struct mp_admin_request){0};
}
