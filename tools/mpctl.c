/* mpctl: the operator CLI for every micropay admin socket.
 *   mpctl [options] -s SOCKET METHOD [key=value ...]
 *   mpctl [options] -s SOCKET WORD WORD... [key=value ...]  (words joined with '.': account fund)
 *   mpctl [options] -s SOCKET METHOD --params '{"key": ...}'
 *   mpctl -s SOCKET help [METHOD]      mpctl -s SOCKET METHOD --help
 * Digit-only values travel as JSON integers (unless they have a leading zero or do not fit in
 * 64 bits), true/false as booleans, key:=JSON as that JSON value, anything else as a string.
 * Help comes from the daemon (its `help` method), never from a copy here.
 *
 * Exit status: 0 done; 1 the method failed (the daemon's typed error on stderr); 2 usage;
 * 3 daemon down (no socket, nobody listening); 4 caller refused (credentials or file
 * permissions); 5 timeout; 6 protocol (an answer of another version, unparsable, or none). */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "mpctl_human.h"

enum mpctl_exit {
	EXIT_DONE = 0,
	EXIT_METHOD_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_DAEMON_DOWN = 3,
	EXIT_CALLER_REFUSED = 4,
	EXIT_TIMEOUT = 5,
	EXIT_PROTOCOL = 6,
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: mpctl [options] -s SOCKET METHOD [key=value ...]\n"
	    "       mpctl [options] -s SOCKET WORD [WORD ...] [key=value ...]  (words joined with "
	    "'.')\n"
	    "       mpctl [options] -s SOCKET METHOD --params JSON\n"
	    "       mpctl -s SOCKET help [METHOD]    the daemon's methods and their parameters\n"
	    "       mpctl -s SOCKET METHOD --help    one method\n"
	    "\n"
	    "options:\n"
	    "  -s, --socket SOCKET  the daemon's admin socket (e.g. run/broker/admin.sock)\n"
	    "  --params JSON        the parameters as one JSON object\n"
	    "  --human              print tables (arrays of objects) and key: value lines\n"
	    "                       instead of JSON\n"
	    "  --json               print help as the daemon's JSON\n"
	    "  --timeout SECONDS    give up connecting or waiting for the answer after this\n"
	    "                       long (default 30)\n"
	    "  -h, --help           this text; after a METHOD, that method's help\n"
	    "\n"
	    "values: digits are sent as JSON integers (except with a leading zero or above\n"
	    "2^63-1), true/false as booleans, anything else as a string; key:=JSON sends a raw\n"
	    "JSON value. The result is printed as JSON on stdout; errors go to stderr.\n"
	    "\n"
	    "exit status:\n"
	    "  0  done\n"
	    "  1  the method failed (the daemon's typed error is printed)\n"
	    "  2  usage error\n"
	    "  3  daemon down: no socket, or nobody listening on it\n"
	    "  4  caller refused: not root, not the daemon's user, not in its group or the\n"
	    "     admin group\n"
	    "  5  timeout: no connection or no answer within --timeout\n"
	    "  6  protocol: an answer of another admin protocol version (an mpctl of another\n"
	    "     build), unparsable, or none\n"
	    "\n"
	    "examples:\n"
	    "  mpctl -s run/broker/admin.sock help\n"
	    "  mpctl -s run/broker/admin.sock account.ledger --help\n"
	    "  mpctl -s run/broker/admin.sock account.fund account=ab12... amount=1000 "
	    "fund_id=9f0c...\n"
	    "    (fund_id: 32 hex digits you choose, e.g. openssl rand -hex 16; a retry with the\n"
	    "     same fund_id credits once)\n"
	    "  mpctl --human -s run/m1/admin.sock channels\n"
	    "  mpctl -s run/w1/admin.sock log.level level=debug\n");
}

static void complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void complain(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mpctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
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
		complain("'%s': expected key=value", arg);
		return false;
	}
	char *key = strndup(arg, klen);
	if (!key) {
		complain("out of memory");
		return false;
	}
	json_t *value = NULL;
	json_error_t jerr;
	if (json_object_get(params, key))
		complain("parameter '%s' given twice", key);
	else if (raw && !(value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr)))
		complain("'%s': the value after := is not JSON", arg);
	else if (!raw)
		value = typed_value(eq + 1);
	bool ok = value && json_object_set_new(params, key, value) == 0;
	free(key);
	return ok;
}

struct options {
	const char *socket, *raw_params;
	char method[256];
	json_t *params;
	bool human, json, help;
	int timeout_ms;
};

/* SECONDS (decimal, 0.001 .. 86400) into ms. */
static bool parse_timeout(const char *text, int *ms)
{
	char *end;
	errno = 0;
	double s = strtod(text, &end);
	if (errno || end == text || *end || !(s >= 0.001 && s <= 86400)) {
		complain("--timeout '%s': expected seconds, 0.001 .. 86400", text);
		return false;
	}
	*ms = (int)(s * 1000 + 0.5);
	return true;
}

static bool add_word(struct options *o, const char *word)
{
	if (strlen(o->method) + strlen(word) + 2 > sizeof(o->method)) {
		complain("method name too long: %s", word);
		return false;
	}
	if (o->method[0])
		strcat(o->method, ".");
	strcat(o->method, word);
	return true;
}

/* An option taking a value: --name VALUE or --name=VALUE. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
	size_t len = strlen(name);
	if (!strncmp(argv[*i], name, len) && argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (strcmp(argv[*i], name) != 0)
		return NULL;
	if (*i + 1 >= argc) {
		complain("%s needs a value (see --help)", name);
		return "";
	}
	return argv[++*i];
}

static bool parse_args(int argc, char **argv, struct options *o)
{
	bool in_params = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			o->help = true;
		else if (!strcmp(a, "--human"))
			o->human = true;
		else if (!strcmp(a, "--json"))
			o->json = true;
		else if ((v = option_value(argc, argv, &i, "--timeout"))) {
			if (!*v || !parse_timeout(v, &o->timeout_ms))
				return false;
		} else if ((v = option_value(argc, argv, &i, "--socket")) ||
			   (v = option_value(argc, argv, &i, "-s"))) {
			if (!*v)
				return false;
			o->socket = v;
		} else if ((v = option_value(argc, argv, &i, "--params"))) {
			if (!*v)
				return false;
			o->raw_params = v;
		} else if (a[0] == '-' && a[1]) {
			complain("unknown option '%s' (see --help)", a);
			return false;
		} else if (strchr(a, '=')) {
			in_params = true;
			if (!add_param(o->params, a))
				return false;
		} else if (in_params) {
			complain("'%s': expected key=value after the first parameter", a);
			return false;
		} else if (!add_word(o, a)) {
			return false;
		}
	}
	return true;
}

/* --params JSON merged with the key=value arguments (which may not repeat its keys). */
static bool merge_raw_params(struct options *o)
{
	json_error_t jerr;
	json_t *given = json_loads(o->raw_params, 0, &jerr);
	if (!json_is_object(given)) {
		json_decref(given);
		complain("--params must be a JSON object: %s", jerr.text);
		return false;
	}
	const char *key;
	json_t *value;
	json_object_foreach(o->params, key, value)
	{
		if (json_object_get(given, key)) {
			json_decref(given);
			complain("parameter '%s' given twice", key);
			return false;
		}
	}
	json_object_update(given, o->params);
	json_decref(o->params);
	o->params = given;
	return true;
}

/* METHOD --help and help WORD...: ask the daemon's help for that method. */
static void as_help_request(struct options *o)
{
	const char *topic = NULL;
	if (o->help)
		topic = o->method;
	else if (!strncmp(o->method, "help.", 5))
		topic = o->method + 5;
	if (!topic)
		return;
	json_object_clear(o->params);
	json_object_set_new(o->params, "method", json_string(topic));
	memmove(o->method, "help", 5);
	o->help = true;
}

static int exit_code(enum mp_admin_outcome outcome)
{
	switch (outcome) {
	case MP_CALL_OK:
		return EXIT_DONE;
	case MP_CALL_FAILED:
		return EXIT_METHOD_FAILED;
	case MP_CALL_DOWN:
		return EXIT_DAEMON_DOWN;
	case MP_CALL_REFUSED:
		return EXIT_CALLER_REFUSED;
	case MP_CALL_TIMEOUT:
		return EXIT_TIMEOUT;
	case MP_CALL_PROTOCOL:
		return EXIT_PROTOCOL;
	}
	return EXIT_PROTOCOL;
}

static int print_result(const struct options *o, const json_t *result)
{
	if (!strcmp(o->method, "help") && !o->json) {
		mpctl_print_help(stdout, result);
		return EXIT_DONE;
	}
	if (o->human) {
		mpctl_print_human(stdout, result);
		return EXIT_DONE;
	}
	char *text = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (!text) {
		complain("cannot print the result");
		return EXIT_PROTOCOL;
	}
	puts(text);
	free(text);
	return EXIT_DONE;
}

static int run(struct options *o)
{
	if (o->help && !o->method[0]) {
		usage(stdout);
		return EXIT_DONE;
	}
	if (!o->socket) {
		complain("no admin socket given (-s SOCKET; see --help)");
		return EXIT_USAGE;
	}
	if (!o->method[0]) {
		complain("no method given (see --help)");
		return EXIT_USAGE;
	}
	if (o->raw_params && !merge_raw_params(o))
		return EXIT_USAGE;
	as_help_request(o);
	struct mp_admin_answer a;
	mp_admin_call_timed(o->socket, o->method, o->params, o->timeout_ms, &a);
	int rc = exit_code(a.outcome);
	if (a.outcome == MP_CALL_OK)
		rc = print_result(o, a.result);
	else
		complain("%s%s%s", o->method, a.outcome == MP_CALL_FAILED ? " failed: " : ": ",
			 a.message);
	mp_admin_answer_free(&a);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = {.params = json_object(), .timeout_ms = 30000};
	int rc = EXIT_USAGE;
	if (!o.params)
		complain("out of memory");
	else if (parse_args(argc, argv, &o))
		rc = run(&o);
	json_decref(o.params);
	return rc;
}
