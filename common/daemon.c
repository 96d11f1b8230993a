#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "log.h"

bool mp_daemon_init(int argc, char **argv, const char *name, struct mp_daemon_opts *out)
{
	static const struct option longopts[] = {
	    {"test-clock", no_argument, NULL, 'T'},
	    {NULL, 0, NULL, 0},
	};
	enum mp_log_level level = MP_LOG_INFO;
	bool ok = true;
	int opt;
	*out = (struct mp_daemon_opts){0};
	while (ok && (opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		if (opt == 'c')
			out->config = optarg;
		else if (opt == 'v')
			level = MP_LOG_DEBUG;
		else if (opt == 'T')
			out->test_clock = true;
		else
			ok = false;
	}
	if (!ok || !out->config || optind != argc) {
		fprintf(stderr, "usage: %s -c CONFIG [-v] [--test-clock]\n", name);
		return false;
	}
	mp_log_init(name, level);
	signal(SIGPIPE, SIG_IGN);
	return true;
}
