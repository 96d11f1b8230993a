/* mpbench: how fast micropay is on this machine, next to its ceilings (a hash chain link, a
 * TLS frame) and to what it replaces (one PostgreSQL debit per payment). A tool users run, not
 * a test (docs/performance.md).
 *
 *   parse flags --> machine facts --> find or spawn the network --> each scenario in order
 *     --> broker audit --> report (table, --json or --csv) --> down if spawned
 *
 * Exit status: 0 every scenario ran and the audit (where the broker's admin socket is known)
 * is clean; 1 a scenario failed or the audit is not clean; 2 usage. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mpbench.h"

#ifndef MPBENCH_SOURCE_ROOT
#define MPBENCH_SOURCE_ROOT "."
#endif
#ifndef MPBENCH_BUILD_ROOT
#define MPBENCH_BUILD_ROOT "build"
#endif

static const char *const built[] = {"chain",	 "tls",	   "pay",     "online-baseline",
				    "issue",	 "redeem", "handoff", "transfer",
				    "half-peak", "issue2", "http"};
#define N_BUILT (sizeof(built) / sizeof(built[0]))

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: mpbench [options] [SCENARIO ...]\n"
	    "scenarios (default: all, in this order): chain tls pay online-baseline issue redeem\n"
	    "handoff transfer half-peak issue2 http\n"
	    "  chain            chain links/s with the project's hash code (the ceiling)\n"
	    "  tls              frames/s echoed by brokerd with no work (an Envelope without a "
	    "body)\n"
	    "  pay              merchantd payments/s, latency percentiles\n"
	    "  online-baseline  the same load as one PostgreSQL debit transaction per payment\n"
	    "  issue            brokerd channels issued/s\n"
	    "  redeem           a pay load, then claims and paywords settled/s by the broker\n"
	    "  handoff          channels moved from merchant m1 to m2 per second (m2 is started\n"
	    "                   with --spawn; with --net it must exist)\n"
	    "  transfer         channels given to another customer at their holder per second\n"
	    "  half-peak        pay latency at half of the peak: a pay load as fast as answered,\n"
	    "                   then one paced at half its rate (--rate paces every scenario)\n"
	    "  issue2           channels issued/s by two brokerd processes over one database\n"
	    "                   (half the connections each; --spawn starts the second, b2)\n"
	    "  http             paid HTTP requests/s through merchantd's HTTP 402 gateway, with\n"
	    "                   the same upstream direct and through a free route (needs --spawn\n"
	    "                   or --net: m1 is restarted with a [gateway] section)\n"
	    "the network:\n"
	    "  --spawn[=DIR]         start a private network (deploy/mpnet) and stop it after\n"
	    "  --keep                with --spawn: leave it running\n"
	    "  --net DIR             an mpnet folder already running\n"
	    "  --broker HOST:PORT    --merchant HOST:PORT   --ca FILE   [--cert FILE --key FILE]\n"
	    "  --broker-admin SOCK   (funding and the audit)   --merchant-admin SOCK (batches)\n"
	    "  --pg CONNINFO         the cluster for online-baseline\n"
	    "  --mpnet FILE          the launcher (default %s/deploy/mpnet)\n"
	    "  --build DIR           the daemons' build (default %s)\n"
	    "the load:\n"
	    "  -d, --duration SEC    each timed scenario (default 10)\n"
	    "  -n, --channels N      channels issued and paid (default 1000)\n"
	    "  -u, --units N         units per channel (default 2000)\n"
	    "  -c, --conns C         connections (default 4)\n"
	    "  -w, --window W        requests in flight per connection (default 64)\n"
	    "  -k, --k-units K       the size of a k-unit payment (default 10)\n"
	    "  -p, --k-percent P     percent of payments that are k-unit (default 10)\n"
	    "  --rate R              pace each load at R requests/s over all connections\n"
	    "  --sweep channels=A,B,...  the scenarios once for each number of channels (the\n"
	    "                        merchant keeps the channels of earlier points)\n"
	    "output:\n"
	    "  --compare             also run chain, tls and online-baseline (for the ratios)\n"
	    "  --json | --csv        for machines (the table is the default)\n"
	    "  -q, --quiet           no progress lines on stderr\n"
	    "  --sync-dir DIR        where the disk sync latency is measured (default: the "
	    "network's folder, else .)\n",
	    MPBENCH_SOURCE_ROOT, MPBENCH_BUILD_ROOT);
}

enum long_only {
	OPT_SPAWN = 256,
	OPT_KEEP,
	OPT_NET,
	OPT_BROKER,
	OPT_MERCHANT,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_BROKER_ADMIN,
	OPT_MERCHANT_ADMIN,
	OPT_PG,
	OPT_MPNET,
	OPT_BUILD,
	OPT_COMPARE,
	OPT_JSON,
	OPT_CSV,
	OPT_SYNC_DIR,
	OPT_SWEEP,
	OPT_RATE,
};

static const struct option long_opts[] = {
    {"spawn", optional_argument, NULL, OPT_SPAWN},
    {"keep", no_argument, NULL, OPT_KEEP},
    {"net", required_argument, NULL, OPT_NET},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"merchant", required_argument, NULL, OPT_MERCHANT},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"broker-admin", required_argument, NULL, OPT_BROKER_ADMIN},
    {"merchant-admin", required_argument, NULL, OPT_MERCHANT_ADMIN},
    {"pg", required_argument, NULL, OPT_PG},
    {"mpnet", required_argument, NULL, OPT_MPNET},
    {"build", required_argument, NULL, OPT_BUILD},
    {"compare", no_argument, NULL, OPT_COMPARE},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", no_argument, NULL, OPT_CSV},
    {"sync-dir", required_argument, NULL, OPT_SYNC_DIR},
    {"sweep", required_argument, NULL, OPT_SWEEP},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, 'd'},
    {"channels", required_argument, NULL, 'n'},
    {"units", required_argument, NULL, 'u'},
    {"conns", required_argument, NULL, 'c'},
    {"window", required_argument, NULL, 'w'},
    {"k-units", required_argument, NULL, 'k'},
    {"k-percent", required_argument, NULL, 'p'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static bool number(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/* "channels=A,B,..." (at most 16 values, each a valid -n). */
static bool sweep_values(struct bench_opts *o, const char *arg)
{
	static const char prefix[] = "channels=";
	if (strncmp(arg, prefix, sizeof(prefix) - 1) != 0)
		return false;
	char list[256];
	snprintf(list, sizeof(list), "%s", arg + sizeof(prefix) - 1);
	o->n_sweep = 0;
	for (char *save = NULL, *v = strtok_r(list, ",", &save); v; v = strtok_r(NULL, ",", &save))
		if (o->n_sweep == 16 || !number(v, 1, 10000000, &o->sweep[o->n_sweep++]))
			return false;
	return o->n_sweep > 0;
}

static bool long_flag(struct bench_opts *o, int c, const char *arg)
{
	switch (c) {
	case OPT_SPAWN:
		o->spawn = true;
		o->spawn_dir = arg;
		return true;
	case OPT_KEEP:
		o->keep = true;
		return true;
	case OPT_NET:
		o->net_dir = arg;
		return true;
	case OPT_BROKER:
		o->broker = arg;
		return true;
	case OPT_MERCHANT:
		o->merchant = arg;
		return true;
	case OPT_CA:
		o->ca = arg;
		return true;
	case OPT_CERT:
		o->cert = arg;
		return true;
	case OPT_KEY:
		o->key = arg;
		return true;
	case OPT_BROKER_ADMIN:
		o->broker_admin = arg;
		return true;
	case OPT_MERCHANT_ADMIN:
		o->merchant_admin = arg;
		return true;
	case OPT_PG:
		o->pg = arg;
		return true;
	case OPT_MPNET:
		o->mpnet = arg;
		return true;
	case OPT_BUILD:
		o->build = arg;
		return true;
	case OPT_COMPARE:
		o->compare = true;
		return true;
	case OPT_JSON:
		o->json = true;
		return true;
	case OPT_CSV:
		o->csv = true;
		return true;
	case OPT_SYNC_DIR:
		o->sync_dir = arg;
		return true;
	case OPT_SWEEP:
		return sweep_values(o, arg);
	case OPT_RATE: {
		unsigned rate;
		if (!number(arg, 1, 100000000, &rate))
			return false;
		o->rate = rate;
		return true;
	}
	}
	return false;
}

static bool short_flag(struct bench_opts *o, int c, const char *arg)
{
	unsigned secs;
	switch (c) {
	case 'd':
		if (!number(arg, 1, 86400, &secs))
			return false;
		o->duration = secs;
		return true;
	case 'n':
		return number(arg, 1, 10000000, &o->channels);
	case 'u':
		return number(arg, 1, 1u << 24, &o->units);
	case 'c':
		return number(arg, 1, 4096, &o->conns);
	case 'w':
		return number(arg, 1, 4096, &o->window);
	case 'k':
		return number(arg, 1, 4096, &o->k);
	case 'p':
		return number(arg, 0, 100, &o->k_percent);
	case 'q':
		o->quiet = true;
		return true;
	}
	return long_flag(o, c, arg);
}

static bool known(const char *name)
{
	for (size_t i = 0; i < N_BUILT; i++)
		if (strcmp(name, built[i]) == 0)
			return true;
	return false;
}

static bool asked(const struct bench_opts *o, const char *name)
{
	for (unsigned i = 0; i < o->n_scenarios; i++)
		if (strcmp(o->scenarios[i], name) == 0)
			return true;
	return false;
}

static int parse(struct bench_opts *o, int argc, char **argv)
{
	*o = (struct bench_opts){.channels = 1000,
				 .units = 2000,
				 .conns = 4,
				 .window = 64,
				 .k = 10,
				 .k_percent = 10,
				 .duration = 10,
				 .mpnet = MPBENCH_SOURCE_ROOT "/deploy/mpnet",
				 .build = MPBENCH_BUILD_ROOT};
	int c;
	while ((c = getopt_long(argc, argv, "d:n:u:c:w:k:p:qh", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (!short_flag(o, c, optarg)) {
			usage(stderr);
			return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (!known(argv[i]) || o->n_scenarios == 16) {
			fprintf(stderr,
				"mpbench: unknown scenario '%s' (built: chain tls pay "
				"online-baseline issue redeem handoff transfer half-peak issue2 "
				"http)\n",
				argv[i]);
			return 2;
		}
		o->scenarios[o->n_scenarios++] = argv[i];
	}
	bool all = o->n_scenarios == 0;
	for (size_t i = 0; i < N_BUILT; i++) {
		bool reference = i < 2 || strcmp(built[i], "online-baseline") == 0;
		if ((all || (o->compare && reference)) && !asked(o, built[i]))
			o->scenarios[o->n_scenarios++] = built[i];
	}
	o->second_merchant = asked(o, "handoff");
	o->second_broker = asked(o, "issue2");
	o->http = asked(o, "http");
	return 0;
}

static json_t *run_one(const char *name, const struct bench_opts *o, const struct bench_net *n)
{
	if (!o->quiet)
		fprintf(stderr, "mpbench: running %s\n", name);
	if (strcmp(name, "chain") == 0)
		return scenario_chain(o);
	if (strcmp(name, "http") == 0)
		return scenario_http(o, n);
	if (strcmp(name, "tls") == 0)
		return scenario_tls(o, n);
	if (strcmp(name, "pay") == 0)
		return scenario_pay(o, n);
	if (strcmp(name, "online-baseline") == 0)
		return scenario_online_baseline(o, n);
	if (strcmp(name, "redeem") == 0)
		return scenario_redeem(o, n);
	if (strcmp(name, "handoff") == 0)
		return scenario_handoff(o, n);
	if (strcmp(name, "transfer") == 0)
		return scenario_transfer(o, n);
	if (strcmp(name, "issue2") == 0)
		return scenario_issue2(o, n);
	if (strcmp(name, "half-peak") == 0)
		return scenario_half_peak(o, n);
	return scenario_issue(o, n);
}

static json_t *options_json(const struct bench_opts *o, const struct bench_net *n)
{
	return json_pack("{s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:s, s:s}", "duration_s",
			 o->duration, "channels", o->channels, "units", o->units, "conns", o->conns,
			 "window", o->window, "k", o->k, "k_percent", o->k_percent, "spawned",
			 n->spawned, "broker", n->broker, "merchant", n->merchant);
}

/* Every scenario in order into results; false if any failed. */
static bool run_scenarios(const struct bench_opts *o, const struct bench_net *n, json_t *results)
{
	bool ok = true;
	for (unsigned i = 0; i < o->n_scenarios; i++) {
		json_t *r = run_one(o->scenarios[i], o, n);
		if (!r) {
			fprintf(stderr, "mpbench: %s failed\n", o->scenarios[i]);
			ok = false;
			continue;
		}
		json_object_set_new(results, o->scenarios[i], r);
	}
	return ok;
}

/* The scenarios once per --sweep value, each point {"channels": N, "results": {...}}. */
static bool run_sweep(const struct bench_opts *o, const struct bench_net *n, json_t *points)
{
	bool ok = true;
	for (unsigned i = 0; i < o->n_sweep; i++) {
		struct bench_opts point = *o;
		point.channels = o->sweep[i];
		if (!o->quiet)
			fprintf(stderr, "mpbench: sweep point %u of %u: %u channels\n", i + 1,
				o->n_sweep, point.channels);
		json_t *results = json_object();
		json_array_append_new(points, json_pack("{s:i, s:o}", "channels", point.channels,
							"results", results));
		ok = run_scenarios(&point, n, results) && ok;
	}
	return ok;
}

/* Every scenario in order (or every sweep point), then the audit; false if any failed. */
static bool run_all(const struct bench_opts *o, const struct bench_net *n, json_t *run)
{
	bool ok;
	if (o->n_sweep) {
		json_t *points = json_array();
		json_object_set_new(run, "sweep", points);
		ok = run_sweep(o, n, points);
	} else {
		json_t *results = json_object();
		json_object_set_new(run, "results", results);
		ok = run_scenarios(o, n, results);
	}
	if (n->broker_admin[0]) {
		double t0 = bench_now();
		json_t *audit = bench_admin(n->broker_admin, "audit", NULL);
		double seconds = bench_now() - t0;
		ok = ok && json_is_true(json_object_get(audit, "ok"));
		if (!audit)
			audit = json_pack("{s:b, s:s}", "ok", 0, "error",
					  "the audit call failed (stderr says why)");
		json_object_set_new(audit, "seconds", json_real(seconds));
		json_object_set_new(run, "audit", audit);
	}
	return ok;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	int rc = parse(&o, argc, argv);
	if (rc != 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	mp_log_init("mpbench", MP_LOG_WARN);
	struct bench_net n;
	json_t *run = json_object();
	json_object_set_new(run, "mpbench", json_string("1"));
	bool ok = bench_net_open(&n, &o);
	const char *sync_dir = o.sync_dir ? o.sync_dir : n.dir[0] ? n.dir : ".";
	json_object_set_new(run, "machine", machine_describe(sync_dir));
	json_object_set_new(run, "options", options_json(&o, &n));
	if (ok)
		ok = run_all(&o, &n, run);
	report_print(&o, run);
	bench_net_close(&n, &o);
	json_decref(run);
	return ok ? 0 : 1;
}
