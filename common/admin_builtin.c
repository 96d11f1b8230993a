/* help and log.level, answered by every admin socket (admin_builtin.h). */
#include "admin_builtin.h"

#include <string.h>

#include "admin_params.h"
#include "log.h"

/* Append the JSON description of every method of table to list; false when out of memory. */
static bool describe_all(json_t *list, const struct mp_admin_method *table)
{
	for (const struct mp_admin_method *m = table; m->name; m++)
		if (json_array_append_new(list, mp_admin_method_json(m)) != 0)
			return false;
	return true;
}

static const struct mp_admin_method *lookup(const struct mp_admin *a, const char *name)
{
	for (const struct mp_admin_method *m = mp_admin_daemon_methods(a); m->name; m++)
		if (!strcmp(m->name, name))
			return m;
	for (const struct mp_admin_method *m = mp_admin_builtins; m->name; m++)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

/* {version, methods: [{name, description, params: [...]}]}: every method, or the one named. */
static void admin_help(struct mp_admin_req *req, json_t *params, void *ctx)
{
	const struct mp_admin *a = ctx;
	const char *name = json_string_value(json_object_get(params, "method"));
	json_t *list = json_array();
	bool ok = list != NULL;
	if (name) {
		const struct mp_admin_method *m = lookup(a, name);
		if (!m) {
			json_decref(list);
			mp_admin_fail_param(req, MP_ADMIN_NO_METHOD, "method",
					    "unknown method '%.64s' (see: help)", name);
			return;
		}
		ok = ok && json_array_append_new(list, mp_admin_method_json(m)) == 0;
	} else {
		ok = ok && describe_all(list, mp_admin_daemon_methods(a)) &&
		     describe_all(list, mp_admin_builtins);
	}
	if (!ok) {
		json_decref(list);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "help: out of memory");
		return;
	}
	mp_admin_reply(
	    req, json_pack("{s:i,s:o}", "version", MP_ADMIN_PROTOCOL_VERSION, "methods", list));
}

/* {level, previous}: shows the log level, or sets it when `level` is given. */
static void admin_log_level(struct mp_admin_req *req, json_t *params, void *ctx)
{
	(void)ctx;
	const char *name = json_string_value(json_object_get(params, "level"));
	enum mp_log_level before = mp_log_level(), after = before;
	if (name && !mp_log_level_parse(name, &after)) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, "level",
				    "parameter 'level' must be error, warn, info or debug, not "
				    "'%.32s'",
				    name);
		return;
	}
	if (after != before) {
		/* Logged at warn under whichever level shows it. */
		if (after < MP_LOG_WARN)
			log_warn("log level set to %s (was %s) on the admin socket",
				 mp_log_level_name(after), mp_log_level_name(before));
		mp_log_set_level(after);
		if (after >= MP_LOG_WARN)
			log_warn("log level set to %s (was %s) on the admin socket",
				 mp_log_level_name(after), mp_log_level_name(before));
	}
	mp_admin_reply(req, json_pack("{s:s,s:s}", "level", mp_log_level_name(after), "previous",
				      mp_log_level_name(before)));
}

const struct mp_admin_method mp_admin_builtins[] = {
    {"help", admin_help, "the methods of this daemon with their parameters",
     MP_ADMIN_PARAMS(
	 {"method", MP_ADMIN_T_STRING, false, "every method", "describe this method only"})},
    {"log.level", admin_log_level, "show the log level, or set it at run time",
     MP_ADMIN_PARAMS(
	 {"level", MP_ADMIN_T_STRING, false, "unchanged", "error, warn, info or debug"})},
    {NULL, NULL, NULL, NULL},
};
