#include "daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

enum {
	OPT_TEST_CLOCK = 256,
	OPT_CHECK_CONFIG,
	OPT_PRINT_CONFIG,
	OPT_PRINT_REFERENCE,
	OPT_RESTORED
};

/* --restored exists for merchantd only (merchantd/restore.h). */
static bool takes_restored(const char *name)
{
	return strcmp(name, "merchantd") == 0;
}

static void usage(FILE *out, const char *name)
{
	fprintf(
	    out,
	    "usage: %s -c CONFIG [-v] [--test-clock] [--check-config]%s\n"
	    "       %s --help | --print-config | --print-config-reference\n\n"
	    "  -c CONFIG                  the INI configuration file\n"
	    "  -v                         log at debug level\n"
	    "  --test-clock               admin clock.advance may move this daemon's protocol "
	    "time\n"
	    "                             (tests only)\n"
	    "  --check-config             load and validate CONFIG (syntax, known keys, ranges,\n"
	    "                             required keys, relations between keys), then exit 0, or "
	    "1\n"
	    "                             with file:line; the files it names are not opened\n"
	    "  --print-config             an example configuration with every key and its default\n"
	    "  --print-config-reference   every key as a Markdown table (docs/config.md)\n"
	    "%s"
	    "  -h, --help                 this text and every configuration key\n\n",
	    name, takes_restored(name) ? " [--restored]" : "", name,
	    takes_restored(name) ? "  --restored                 the store was restored from a "
				   "backup: the channels it\n"
				   "                             holds now are not served as held "
				   "until the operator\n"
				   "                             confirms each (admin "
				   "restore.confirm); recorded in the\n"
				   "                             store, so give it once, at the "
				   "first start after the\n"
				   "                             restore\n"
				 : "");
}

/* Answers the options that only print; false when `opt` is not one of them. */
static bool print_option(int opt, const char *name, mp_config_doc_fn doc, bool *printed_ok)
{
	switch (opt) {
	case 'h':
		usage(stdout, name);
		*printed_ok = doc(stdout, MP_CFG_DOC_TEXT);
		return true;
	case OPT_PRINT_CONFIG:
		*printed_ok = doc(stdout, MP_CFG_DOC_INI);
		return true;
	case OPT_PRINT_REFERENCE:
		*printed_ok = doc(stdout, MP_CFG_DOC_MARKDOWN);
		return true;
	default:
		return false;
	}
}

enum mp_daemon_start mp_daemon_init(int argc, char **argv, const char *name, mp_config_doc_fn doc,
				    struct mp_daemon_opts *out)
{
	static const struct option longopts[] = {
	    {"test-clock", no_argument, NULL, OPT_TEST_CLOCK},
	    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
	    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
	    {"print-config-reference", no_argument, NULL, OPT_PRINT_REFERENCE},
	    {"help", no_argument, NULL, 'h'},
	    {"restored", no_argument, NULL, OPT_RESTORED},
	    {NULL, 0, NULL, 0},
	};
	enum mp_log_level level = MP_LOG_INFO;
	bool ok = true, printed_ok = false;
	int opt;
	*out = (struct mp_daemon_opts){0};
	while (ok && (opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		if (print_option(opt, name, doc, &printed_ok))
			return printed_ok ? MP_DAEMON_EXIT_OK : MP_DAEMON_EXIT_USAGE;
		if (opt == 'c')
			out->config = optarg;
		else if (opt == 'v')
			level = MP_LOG_DEBUG, out->verbose = true;
		else if (opt == OPT_TEST_CLOCK)
			out->test_clock = true;
		else if (opt == OPT_CHECK_CONFIG)
			out->check_config = true;
		else if (opt == OPT_RESTORED && takes_restored(name))
			out->restored = true;
		else
			ok = false;
	}
	if (!ok || !out->config || optind != argc) {
		usage(stderr, name);
		return MP_DAEMON_EXIT_USAGE;
	}
	mp_log_init(name, level);
	signal(SIGPIPE, SIG_IGN);
	return MP_DAEMON_RUN;
}

int mp_daemon_config_ok(const char *name, const char *path)
{
	printf("%s: %s: configuration OK\n", name, path);
	return 0;
}
