/* Declared admin parameters: checking a request against its method's declaration before the
 * method runs, and describing methods as JSON (the `help` method). */
#include "admin_params.h"

#include <stdio.h>
#include <string.h>

static const char *type_name(enum mp_admin_type t)
{
	switch (t) {
	case MP_ADMIN_T_STRING:
		return "string";
	case MP_ADMIN_T_UINT:
		return "uint";
	case MP_ADMIN_T_HEX:
		return "hex";
	case MP_ADMIN_T_BOOL:
		return "bool";
	case MP_ADMIN_T_JSON:
		return "json";
	}
	return "?";
}

static bool all_digits(const char *s, const char *digits)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr(digits, *s))
			return false;
	return true;
}

static bool type_fits(enum mp_admin_type t, const json_t *v)
{
	switch (t) {
	case MP_ADMIN_T_STRING:
		return json_is_string(v);
	case MP_ADMIN_T_UINT:
		return (json_is_integer(v) && json_integer_value(v) >= 0) ||
		       (json_is_string(v) && all_digits(json_string_value(v), "0123456789"));
	case MP_ADMIN_T_HEX:
		return (json_is_integer(v) && json_integer_value(v) >= 0) ||
		       (json_is_string(v) &&
			all_digits(json_string_value(v), "0123456789abcdefABCDEF"));
	case MP_ADMIN_T_BOOL:
		return json_is_boolean(v);
	case MP_ADMIN_T_JSON:
		return true;
	}
	return false;
}

static const struct mp_admin_param *find_param(const struct mp_admin_method *m, const char *name)
{
	for (const struct mp_admin_param *p = m->params; p && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

bool mp_admin_check_params(const struct mp_admin_method *m, json_t *params,
			   struct mp_admin_param_error *err)
{
	const char *key;
	json_t *value;
	json_object_foreach(params, key, value)
	{
		const struct mp_admin_param *p = find_param(m, key);
		if (!p) {
			snprintf(err->param, sizeof(err->param), "%.63s", key);
			snprintf(err->message, sizeof(err->message),
				 "unknown parameter '%.63s' for %s (see: help method=%s)", key,
				 m->name, m->name);
			return false;
		}
		if (!type_fits(p->type, value)) {
			snprintf(err->param, sizeof(err->param), "%s", p->name);
			snprintf(err->message, sizeof(err->message),
				 "parameter '%s' of %s must be of type %s: %s", p->name, m->name,
				 type_name(p->type), p->help);
			return false;
		}
	}
	for (const struct mp_admin_param *p = m->params; p && p->name; p++) {
		if (p->required && !json_object_get(params, p->name)) {
			snprintf(err->param, sizeof(err->param), "%s", p->name);
			snprintf(err->message, sizeof(err->message),
				 "missing required parameter '%s' of %s: %s", p->name, m->name,
				 p->help);
			return false;
		}
	}
	return true;
}

static json_t *param_json(const struct mp_admin_param *p)
{
	return json_pack("{s:s,s:s,s:b,s:s?,s:s}", "name", p->name, "type", type_name(p->type),
			 "required", p->required, "default", p->fallback, "description", p->help);
}

json_t *mp_admin_method_json(const struct mp_admin_method *m)
{
	json_t *params = json_array();
	for (const struct mp_admin_param *p = m->params; params && p && p->name; p++) {
		if (json_array_append_new(params, param_json(p)) != 0) {
			json_decref(params);
			params = NULL;
		}
	}
	if (!params)
		return NULL;
	return json_pack("{s:s,s:s,s:o}", "name", m->name, "description", m->help, "params",
			 params);
}
