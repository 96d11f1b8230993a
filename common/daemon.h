/* What every daemon's main does the same way: options, logging, signals it ignores. */
#pragma once
#include <stdbool.h>

/* Parse "-c CONFIG [-v]", initialise logging as `name` and ignore SIGPIPE. Returns the config
 * path, or NULL after printing the usage (exit with status 2 then). */
const char *mp_daemon_init(int argc, char **argv, const char *name);
