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
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "mpctl_args.h"
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
	    "       mpctl [options] -s WALLET_SOCKET http [GET|POST|...] URL [max_price=N ...]\n"
	    "                            fetch URL, paying its HTTP 402 gateway (docs/gateway.md)\n"
	    "       mpctl -s SOCKET help [METHOD]    the daemon's methods and their parameters\n"
	    "       mpctl -s SOCKET METHOD --help    one method\n"
	    "\n"
	    "options:\n"
	    "  -s, --socket SOCKET  the daemon's admin socket (e.g. run/broker/admin.sock)\n"
	    "  --params JSON        the parameters as one JSON object\n"
	    "  --human              print tables (arrays of objects) and key: value lines\n"
	    "                       instead of JSON\n"
	    "  --json               print help as the daemon's JSON\n"
	    "  --field KEY          print only the result's top-level field KEY: a string as\n"
	    "                       it is, anything else as compact JSON (for scripts; exit 1\n"
	    "                       when the result has no such field)\n"
	    "  --timeout SECONDS    give up connecting or waiting for the answer after this\n"
	    "                       long (default 30); each progress line of a long method\n"
	    "                       (printed to stderr) starts it again\n"
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

/* --field KEY: one top-level field, a string unquoted (as scripts want it). */
static int print_field(const struct mpctl_options *o, const json_t *result)
{
	const json_t *v = json_is_object(result) ? json_object_get(result, o->field) : NULL;
	if (!v) {
		mpctl_complain(o, "the result of %s has no field '%s'", o->method, o->field);
		return EXIT_METHOD_FAILED;
	}
	if (json_is_string(v)) {
		puts(json_string_value(v));
		return EXIT_DONE;
	}
	char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text) {
		mpctl_complain(o, "cannot print the field '%s'", o->field);
		return EXIT_PROTOCOL;
	}
	puts(text);
	free(text);
	return EXIT_DONE;
}

static int print_result(const struct mpctl_options *o, const json_t *result)
{
	if (!strcmp(o->method, "help") && !o->json) {
		mpctl_print_help(stdout, result);
		return EXIT_DONE;
	}
	if (o->field)
		return print_field(o, result);
	if (o->human) {
		mpctl_print_human(stdout, result);
		return EXIT_DONE;
	}
	char *text = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (!text) {
		mpctl_complain(o, "cannot print the result");
		return EXIT_PROTOCOL;
	}
	puts(text);
	free(text);
	return EXIT_DONE;
}

/* A long method's progress line, to stderr: its "line", else the whole object. */
static void print_progress(void *arg, json_t *progress)
{
	const struct mpctl_options *o = arg;
	const char *line = json_string_value(json_object_get(progress, "line"));
	char *text = line ? NULL : json_dumps(progress, JSON_COMPACT);
	fprintf(o->errors, "%s: %s\n", o->method, line ? line : text ? text : "(progress)");
	fflush(o->errors);
	free(text);
}

static int run(struct mpctl_options *o)
{
	if (o->help && !o->method[0]) {
		usage(stdout);
		return EXIT_DONE;
	}
	if (!o->socket) {
		mpctl_complain(o, "no admin socket given (-s SOCKET; see --help)");
		return EXIT_USAGE;
	}
	if (!o->method[0]) {
		mpctl_complain(o, "no method given (see --help)");
		return EXIT_USAGE;
	}
	if (o->raw_params && !mpctl_merge_raw_params(o))
		return EXIT_USAGE;
	mpctl_as_help_request(o);
	struct mp_admin_answer a;
	mp_admin_call_progress(o->socket, o->method, o->params, o->timeout_ms, print_progress, o,
			       &a);
	int rc = exit_code(a.outcome);
	if (a.outcome == MP_CALL_OK)
		rc = print_result(o, a.result);
	else
		mpctl_complain(o, "%s%s%s", o->method,
			       a.outcome == MP_CALL_FAILED ? " failed: " : ": ", a.message);
	mp_admin_answer_free(&a);
	return rc;
}

int main(int argc, char **argv)
{
	struct mpctl_options o = {.params = json_object(), .timeout_ms = 30000, .errors = stderr};
	int rc = EXIT_USAGE;
	if (!o.params)
		mpctl_complain(&o, "out of memory");
	else if (mpctl_parse_args(argc, argv, &o))
		rc = run(&o);
	json_decref(o.params);
	return rc;
}
