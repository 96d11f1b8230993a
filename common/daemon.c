#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "log.h"

const char *mp_daemon_init(int argc, char **argv, const char *name)
{
	const char *config = NULL;
	enum mp_log_level level = MP_LOG_INFO;
	int opt;
	while ((opt = getopt(argc, argv, "c:vh")) != -1) {
		if (opt == 'c') {
			config = optarg;
		} else if (opt == 'v') {
			level = MP_LOG_DEBUG;
		} else {
			config = NULL;
			break;
		}
	}
	if (!config || optind != argc) {
		fprintf(stderr, "usage: %s -c CONFIG [-v]\n", name);
		return NULL;
	}
	mp_log_init(name, level);
	signal(SIGPIPE, SIG_IGN);
	return config;
}
