/* mpctl's command line: options, the method (words joined with '.'), key=value and key:=JSON
 * parameters, --params JSON, and help requests (tools/mpctl.c documents the syntax). Pure
 * apart from messages on o->errors; fuzzed by tests/fuzz/fuzz_mpctl_args.c. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

struct mpctl_options {
	const char *socket, *raw_params;
	const char *field; /* --field KEY: print only this top-level field of the result */
	char method[256];
	json_t *params; /* an object, created by the caller */
	bool human, json, help;
	int timeout_ms;
	FILE *errors; /* where usage errors are said (stderr) */
};

/* "mpctl: " and the message on o->errors. */
void mpctl_complain(const struct mpctl_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* argv[1..argc-1] into o; false (said on stderr) on a usage error. */
bool mpctl_parse_args(int argc, char **argv, struct mpctl_options *o);
/* --params JSON merged with the key=value arguments (which may not repeat its keys). */
bool mpctl_merge_raw_params(struct mpctl_options *o);
/* METHOD --help and help WORD...: turn o into a call of the daemon's help for that method. */
void mpctl_as_help_request(struct mpctl_options *o);
