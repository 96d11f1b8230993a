/* The admin socket's request check (common/admin_request.h): one line of JSON against a method
 * table declaring a parameter of every type, and the builtins. A request that passes names a
 * declared method, and every parameter it carries is declared, of its type. */
#include <stdlib.h>
#include <string.h>

#include "admin_request.h"
#include "fuzz.h"

static void no_op(struct mp_admin_req *req, json_t *params, void *ctx)
{
}

static const struct mp_admin_method table[] = {
    {"status", no_op, "no parameters", NULL},
    {"account.show", no_op, "every parameter type",
     MP_ADMIN_PARAMS({"account", MP_ADMIN_T_HEX, true, NULL, "an id"},
		     {"amount", MP_ADMIN_T_UINT, false, "0", "units"},
		     {"note", MP_ADMIN_T_STRING, false, NULL, "text"},
		     {"dry_run", MP_ADMIN_T_BOOL, false, "false", "flag"},
		     {"extra", MP_ADMIN_T_JSON, false, NULL, "any JSON"})},
    {0},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static bool declared(const struct mp_admin_method *m, const char *name)
{
	for (const struct mp_admin_param *p = m->params; p && p->name; p++)
		if (!strcmp(p->name, name))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	struct mp_admin_request r;
	struct mp_admin_refusal why;
	if (mp_admin_request_parse(line, table, &r, &why)) {
		if (!r.method || !json_is_object(r.params))
			abort();
		const char *key;
		json_t *value;
		json_object_foreach(r.params, key, value)
		{
			if (!declared(r.method, key))
				abort(); /* an undeclared parameter passed the check */
		}
	} else if (why.message[0] == '\0') {
		abort(); /* a refusal must say why */
	}
	mp_admin_request_free(&r);
	free(line);
	return 0;
}
