/* mpctl: the operator CLI for every micropay admin socket.
 *   mpctl -s SOCKET METHOD [key=value ...]
 *   mpctl -s SOCKET WORD WORD... [key=value ...]    (words joined with '.': account fund)
 *   mpctl -s SOCKET METHOD --params '{"key": ...}'
 * Digit-only values travel as JSON integers (unless they have a leading zero or do not fit in
 * 64 bits), true/false as booleans, key:=JSON as that JSON value, anything else as a string. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: mpctl -s SOCKET METHOD [key=value ...]\n"
	    "       mpctl -s SOCKET WORD [WORD ...] [key=value ...]   (words joined with '.')\n"
	    "       mpctl -s SOCKET METHOD --params JSON\n"
	    "\n"
	    "options:\n"
	    "  -s, --socket SOCKET  the daemon's admin socket (e.g. run/brokerd.sock)\n"
	    "  --params JSON        the parameters as one JSON object\n"
	    "  -h, --help           this text\n"
	    "\n"
	    "values: digits are sent as JSON integers (except with a leading zero or above\n"
	    "2^63-1), true/false as booleans, anything else as a string; key:=JSON sends a raw\n"
	    "JSON value. The result is printed as JSON; errors go to stderr with exit status 1.\n"
	    "\n"
	    "examples:\n"
	    "  mpctl -s run/brokerd.sock account.fund account=ab12... amount=1000 fund_id=9f0c...\n"
	    "  mpctl -s run/brokerd.sock account fund account=ab12... amount=1000 fund_id=9f0c...\n"
	    "    (fund_id: 32 hex digits you choose, e.g. openssl rand -hex 16; a retry with the\n"
	    "     same fund_id credits once)\n"
	    "  mpctl -s run/walletd.sock pay channel_id=... endpoint=127.0.0.1:7443 units=5 "
	    "order_ref=0a1b\n");
}

static int fail(const char *fmt, const char *arg)
{
	fputs("mpctl: ", stderr);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

/* Digits only, no leading zero (except "0"), fits in a JSON integer. */
static bool as_integer(const char *s, json_int_t *out)
{
	if (!*s || (s[0] == '0' && s[1]))
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (json_int_t)v;
	return true;
}

static json_t *typed_value(const char *s)
{
	json_int_t i;
	if (as_integer(s, &i))
		return json_integer(i);
	if (!strcmp(s, "true"))
		return json_true();
	if (!strcmp(s, "false"))
		return json_false();
	return json_string(s);
}

/* key=value or key:=JSON into params; false with a message on stderr. */
static bool add_param(json_t *params, const char *arg)
{
	const char *eq = strchr(arg, '=');
	bool raw = eq > arg && eq[-1] == ':';
	size_t klen = (size_t)(eq - arg) - (raw ? 1 : 0);
	if (klen == 0) {
		fail("'%s': expected key=value", arg);
		return false;
	}
	char *key = strndup(arg, klen);
	if (!key) {
		fail("%s", "out of memory");
		return false;
	}
	json_t *value = NULL;
	json_error_t jerr;
	if (json_object_get(params, key))
		fail("parameter '%s' given twice", key);
	else if (raw && !(value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr)))
		fail("'%s': the value after := is not JSON", arg);
	else if (!raw)
		value = typed_value(eq + 1);
	bool ok = value && json_object_set_new(params, key, value) == 0;
	free(key);
	return ok;
}

int main(int argc, char **argv)
{
	const char *socket = NULL, *raw_params = NULL;
	char method[256] = "";
	json_t *params = json_object();
	bool in_params = false;
	int rc = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			json_decref(params);
			return 0;
		}
		if (!strcmp(a, "-s") || !strcmp(a, "--socket") || !strcmp(a, "--params")) {
			if (i + 1 >= argc) {
				json_decref(params);
				return fail("%s needs a value (see --help)", a);
			}
			if (a[2] == 'p')
				raw_params = argv[++i];
			else
				socket = argv[++i];
		} else if (!strncmp(a, "--socket=", 9)) {
			socket = a + 9;
		} else if (!strncmp(a, "--params=", 9)) {
			raw_params = a + 9;
		} else if (a[0] == '-' && a[1]) {
			json_decref(params);
			return fail("unknown option '%s' (see --help)", a);
		} else if (strchr(a, '=')) {
			in_params = true;
			if (!add_param(params, a))
				goto out;
		} else if (in_params) {
			fail("'%s': expected key=value after the first parameter", a);
			goto out;
		} else {
			if (strlen(method) + strlen(a) + 2 > sizeof(method)) {
				fail("method name too long: %s", a);
				goto out;
			}
			if (method[0])
				strcat(method, ".");
			strcat(method, a);
		}
	}
	if (!socket) {
		fail("%s", "no admin socket given (-s SOCKET; see --help)");
		goto out;
	}
	if (!method[0]) {
		fail("%s", "no method given (see --help)");
		goto out;
	}
	if (raw_params) {
		json_error_t jerr;
		json_t *given = json_loads(raw_params, 0, &jerr);
		if (!json_is_object(given)) {
			json_decref(given);
			fail("--params must be a JSON object: %s", jerr.text);
			goto out;
		}
		/* key=value arguments add to (and may not repeat) the object's keys. */
		const char *key;
		json_t *value;
		json_object_foreach(params, key, value)
		{
			if (json_object_get(given, key)) {
				json_decref(given);
				fail("parameter '%s' given twice", key);
				goto out;
			}
		}
		json_object_update(given, params);
		json_decref(params);
		params = given;
	}
	char err[1024];
	json_t *result = mp_admin_call(socket, method, params, err, sizeof(err));
	if (!result) {
		fail("%s", err);
		goto out;
	}
	char *text = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
	json_decref(result);
	if (!text) {
		fail("%s", "cannot print the result");
		goto out;
	}
	puts(text);
	free(text);
	rc = 0;
out:
	json_decref(params);
	return rc;
}
