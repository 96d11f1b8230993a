/* What every daemon's main does the same way: options, logging, signals it ignores. */
#pragma once
#include <stdbool.h>

struct mp_daemon_opts {
	const char *config; /* -c CONFIG */
	bool test_clock;    /* --test-clock: clock.advance may move this daemon's time (clock.h) */
};

/* Parse "-c CONFIG [-v] [--test-clock]", initialise logging as `name` and ignore SIGPIPE.
 * False after printing the usage (exit with status 2 then). */
bool mp_daemon_init(int argc, char **argv, const char *name, struct mp_daemon_opts *out);
