/* What every daemon's main does the same way: options, logging, signals it ignores. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "config_doc.h"

struct mp_daemon_opts {
	const char *config; /* -c CONFIG */
	bool test_clock;    /* --test-clock: clock.advance may move this daemon's time (clock.h) */
	bool check_config;  /* --check-config: load and validate CONFIG, then exit */
	bool verbose;	    /* -v: log at debug level from the start, whatever [service] says */
	bool restored;	    /* --restored (merchantd): the store was restored from a backup */
};

/* What main does after mp_daemon_init. */
enum mp_daemon_start {
	MP_DAEMON_RUN,	      /* run (or, with check_config, only load the configuration) */
	MP_DAEMON_EXIT_OK,    /* --help or --print-config answered: exit 0 */
	MP_DAEMON_EXIT_USAGE, /* bad options, usage printed: exit 2 */
};

/* The daemon's description of its configuration keys (e.g. broker_config_doc). */
typedef bool (*mp_config_doc_fn)(FILE *out, enum mp_cfg_doc_format format);

/* Parse "-c CONFIG [-v] [--test-clock] [--check-config]" (and "--restored" for merchantd), or
 * answer "--help",
 * "--print-config" (an example configuration) and "--print-config-reference" (the keys as
 * Markdown) from `doc`; initialise logging as `name` and ignore SIGPIPE. */
enum mp_daemon_start mp_daemon_init(int argc, char **argv, const char *name, mp_config_doc_fn doc,
				    struct mp_daemon_opts *out);

/* The end of --check-config: one line on stdout, exit status 0. */
int mp_daemon_config_ok(const char *name, const char *path);
