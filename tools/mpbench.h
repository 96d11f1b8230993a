/* mpbench: the benchmark tool (issue 9). Shared types of its files:
 *   mpbench.c          flags, the order of scenarios, the run
 *   mpbench_machine.c  the machine (CPU, kernel, disk sync latency, load) and /proc readings
 *   mpbench_net.c      the network driven: --spawn (deploy/mpnet), --net DIR, or flags
 *   mpbench_load.c     C connections with W requests in flight each, latencies, progress
 *   mpbench_hist.c     latency histogram and percentiles
 *   mpbench_wallet.c   account, channels (issue, open), paywords (the `issue` and `pay` loads)
 *   mpbench_simple.c   the ceilings: `chain` (links/s) and `tls` (frames/s)
 *   mpbench_pg.c       `online-baseline`: one PostgreSQL debit transaction per payment
 *   mpbench_custody.c  `handoff` (merchant to merchant) and `transfer` (customer to customer)
 *   mpbench_http.c     `http`: paid requests through merchantd's HTTP 402 gateway
 *   mpbench_report.c   the human table, --json, --csv */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_DAEMONS 8

struct bench_opts {
	const char *spawn_dir; /* --spawn [DIR]: start a private network there */
	bool spawn;
	const char *net_dir;	    /* --net DIR: an mpnet folder already running */
	const char *broker;	    /* --broker HOST:PORT */
	const char *merchant;	    /* --merchant HOST:PORT */
	const char *ca;		    /* --ca FILE */
	const char *cert, *key;	    /* --cert/--key: client certificate (optional) */
	const char *broker_admin;   /* --broker-admin SOCKET: funding and the audit */
	const char *merchant_admin; /* --merchant-admin SOCKET: batch sizes */
	const char *pg;		    /* --pg CONNINFO: the cluster for online-baseline */
	const char *mpnet;	    /* deploy/mpnet for --spawn */
	const char *build;	    /* the build folder the daemons come from (--spawn) */
	const char *sync_dir;	    /* where the fdatasync loop writes */
	unsigned channels, conns, window, units, k, k_percent;
	double duration;
	double rate; /* --rate R: requests/s over all connections (0: as fast as answered) */
	bool json, csv, compare, quiet, keep;
	bool second_merchant; /* a scenario needs merchant m2 (handoff) */
	bool second_broker;   /* a scenario needs brokerd b2 (issue2) */
	bool http;	      /* a scenario needs m1's gateway and mpbench's upstream (http) */
	unsigned sweep[16];   /* --sweep channels=A,B,...: the scenarios once per value */
	unsigned n_sweep;
	const char *scenarios[16];
	unsigned n_scenarios;
};

/* A daemon whose CPU time and memory are read from /proc. */
struct bench_daemon {
	char name[32];
	pid_t pid;
	bool with_children; /* PostgreSQL: the postmaster and its backends */
};

struct bench_upstream;

/* The network, however it was found. */
struct bench_net {
	char dir[512]; /* an mpnet folder, or "" */
	bool spawned;
	char broker[256], merchant[256], ca[512], broker_admin[600], merchant_admin[600];
	char pg[1024];
	char merchant_id[64];
	char merchant2[256], merchant2_id[64], merchant2_admin[600]; /* m2 when there is one */
	char broker2[256]; /* a second brokerd over the same database (b2) when there is one */
	struct bench_daemon daemons[BENCH_MAX_DAEMONS];
	unsigned n_daemons;
	struct bench_upstream *upstream; /* mpbench_http.c: the upstream it runs, or NULL */
	char gateway[64];		 /* m1's gateway host:port, or "" */
};

struct bench_cpu {
	double seconds[BENCH_MAX_DAEMONS];
};

/* ---- mpbench_hist.c ---- */
#define HIST_SUB     32
#define HIST_BUCKETS (40 * HIST_SUB)
struct hist {
	uint64_t count;
	uint64_t buckets[HIST_BUCKETS];
};
void hist_add(struct hist *h, uint64_t us);
/* The value (µs) at quantile q (0..1); 0 when empty. */
double hist_quantile(const struct hist *h, double q);

/* ---- mpbench_machine.c ---- */
double bench_now(void); /* monotonic seconds */
/* Machine facts as a JSON object (CPU model, cores, kernel, load average, disk sync latency
 * measured in dir). */
json_t *machine_describe(const char *dir);
/* CPU seconds (user + system) of pid, and of its children too if asked. */
double proc_cpu_seconds(pid_t pid, bool with_children);
/* Resident set in bytes; 0 if unknown. */
uint64_t proc_rss_bytes(pid_t pid);
void cpu_sample(const struct bench_net *n, struct bench_cpu *out);
/* {daemon: seconds} between two samples. */
json_t *cpu_delta(const struct bench_net *n, const struct bench_cpu *a, const struct bench_cpu *b);

/* ---- mpbench_net.c ---- */
/* Find or start the network; false with a message on stderr. */
bool bench_net_open(struct bench_net *n, const struct bench_opts *o);
void bench_net_close(struct bench_net *n, const struct bench_opts *o);
/* An admin call; NULL with a message on stderr. */
json_t *bench_admin(const char *sock, const char *method, json_t *params);
pid_t bench_daemon_pid(const struct bench_net *n, const char *name);
/* deploy/mpnet kill and start of daemon NAME (its pid read again as `label`); false said. */
bool bench_net_restart(struct bench_net *n, const struct bench_opts *o, const char *name,
		       const char *label);

/* ---- mpbench_http.c ---- */
struct bench_upstream;
/* mpbench's upstream started and m1 restarted with a [gateway] in front of it. */
bool bench_http_gateway(struct bench_net *n, const struct bench_opts *o);
void bench_http_stop(struct bench_net *n);

/* ---- scenarios: each returns its result object, or NULL (failure, said on stderr) ---- */
json_t *scenario_chain(const struct bench_opts *o);
json_t *scenario_tls(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_issue(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_issue2(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_pay(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_redeem(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_half_peak(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_online_baseline(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_handoff(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_transfer(const struct bench_opts *o, const struct bench_net *n);
json_t *scenario_http(const struct bench_opts *o, const struct bench_net *n);

/* ---- mpbench_report.c ---- */
/* Adds "ratios" to every scenario result (against chain, tls and online-baseline when they
 * ran) and prints the run as asked. */
void report_print(const struct bench_opts *o, json_t *run);
