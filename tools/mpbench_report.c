/* Printing a run: a human table (default), JSON (--json: the whole run object) or CSV (--csv:
 * one line per scenario). Every rate is also given as a ratio to the ceilings (chain, tls) and
 * to the on-line debit (online-baseline) measured in the same invocation. */
#include <stdio.h>
#include <string.h>

#include "mpbench.h"

static const char *const references[] = {"chain", "tls", "online-baseline"};
#define N_REFERENCES (sizeof(references) / sizeof(references[0]))

static double rate_of(json_t *result)
{
	return json_number_value(json_object_get(result, "per_second"));
}

/* CPU µs per counted operation of each daemon (what one payment, issue or frame costs). */
static void add_cpu_per_op(json_t *r)
{
	json_t *cpu = json_object_get(r, "cpu_seconds");
	double count = (double)json_integer_value(json_object_get(r, "count"));
	if (!cpu || count <= 0)
		return;
	json_t *per = json_object();
	const char *d;
	json_t *v;
	json_object_foreach(cpu, d, v)
	    json_object_set_new(per, d, json_real(json_number_value(v) * 1e6 / count));
	json_object_set_new(r, "cpu_us_per_op", per);
}

static void add_ratios(json_t *results)
{
	const char *name;
	json_t *r;
	json_object_foreach(results, name, r)
	{
		json_t *ratios = json_object();
		for (size_t i = 0; i < N_REFERENCES; i++) {
			json_t *ref = json_object_get(results, references[i]);
			if (ref && rate_of(ref) > 0 && strcmp(name, references[i]) != 0)
				json_object_set_new(ratios, references[i],
						    json_real(rate_of(r) / rate_of(ref)));
		}
		json_object_set_new(r, "ratios", ratios);
		add_cpu_per_op(r);
	}
}

static double latency(json_t *r, const char *q)
{
	return json_number_value(json_object_get(json_object_get(r, "latency_us"), q));
}

static double cpu_of(json_t *r, const char *daemon)
{
	return json_number_value(json_object_get(json_object_get(r, "cpu_seconds"), daemon));
}

static double ratio(json_t *r, const char *ref)
{
	return json_number_value(json_object_get(json_object_get(r, "ratios"), ref));
}

static void print_machine(json_t *m)
{
	json_t *load = json_object_get(m, "load_average");
	json_t *sync = json_object_get(m, "disk_sync");
	printf("machine: %s, %d cores, %s\n", json_string_value(json_object_get(m, "cpu")),
	       (int)json_integer_value(json_object_get(m, "cores")),
	       json_string_value(json_object_get(m, "kernel")));
	printf("load average at start: %.2f %.2f %.2f; disk sync (4 KiB + fdatasync): p50 %.0f "
	       "us, p99 %.0f us\n",
	       json_number_value(json_array_get(load, 0)),
	       json_number_value(json_array_get(load, 1)),
	       json_number_value(json_array_get(load, 2)),
	       json_number_value(json_object_get(sync, "p50_us")),
	       json_number_value(json_object_get(sync, "p99_us")));
}

static void print_ratio(json_t *r, const char *ref)
{
	double x = ratio(r, ref);
	if (x > 0)
		printf(" %9.3gx", x);
	else
		printf(" %10s", "-");
}

static void print_results(json_t *results)
{
	printf("\n%-16s %-20s %10s %12s %9s %9s %9s %10s %10s %10s\n", "scenario", "unit", "count",
	       "per second", "p50 ms", "p99 ms", "p999 ms", "vs chain", "vs tls", "vs online");
	const char *name;
	json_t *r;
	json_object_foreach(results, name, r)
	{
		printf("%-16s %-20s %10lld %12.0f", name,
		       json_string_value(json_object_get(r, "unit")),
		       (long long)json_integer_value(json_object_get(r, "count")), rate_of(r));
		if (json_object_get(r, "latency_us"))
			printf(" %9.3f %9.3f %9.3f", latency(r, "p50") / 1000,
			       latency(r, "p99") / 1000, latency(r, "p999") / 1000);
		else
			printf(" %9s %9s %9s", "-", "-", "-");
		for (size_t i = 0; i < N_REFERENCES; i++)
			print_ratio(r, references[i]);
		printf("\n");
	}
	printf("\nCPU seconds during each run (µs per operation):\n");
	json_object_foreach(results, name, r)
	{
		json_t *cpu = json_object_get(r, "cpu_seconds");
		const char *d;
		json_t *v;
		if (!cpu || json_object_size(cpu) == 0)
			continue;
		printf("  %-16s", name);
		json_t *per = json_object_get(r, "cpu_us_per_op");
		json_object_foreach(cpu, d, v) printf(" %s %.2f (%.1f)", d, json_number_value(v),
						      json_number_value(json_object_get(per, d)));
		printf("\n");
	}
	json_t *pay = json_object_get(results, "pay");
	if (pay) {
		json_t *b = json_object_get(pay, "batches");
		printf(
		    "\npay: %lld channels, %lld connections, window %lld; merchantd memory per "
		    "channel %.0f B; %.1f payments per batch; %lld failed, %lld retried (LIMIT)\n",
		    (long long)json_integer_value(json_object_get(pay, "channels")),
		    (long long)json_integer_value(json_object_get(pay, "connections")),
		    (long long)json_integer_value(json_object_get(pay, "window")),
		    json_number_value(json_object_get(pay, "merchant_rss_per_channel_bytes")),
		    json_number_value(json_object_get(b, "payments_per_batch")),
		    (long long)json_integer_value(json_object_get(pay, "failed")),
		    (long long)json_integer_value(json_object_get(pay, "retried")));
	}
}

static void print_table(json_t *run)
{
	print_machine(json_object_get(run, "machine"));
	json_t *results = json_object_get(run, "results");
	if (results)
		print_results(results);
	size_t i;
	json_t *point;
	json_array_foreach(json_object_get(run, "sweep"), i, point)
	{
		printf("\n== %lld channels ==\n",
		       (long long)json_integer_value(json_object_get(point, "channels")));
		print_results(json_object_get(point, "results"));
	}
	json_t *audit = json_object_get(run, "audit");
	if (audit)
		printf("broker audit afterwards: %s (%.2f s)\n",
		       json_is_true(json_object_get(audit, "ok")) ? "clean" : "NOT CLEAN",
		       json_number_value(json_object_get(audit, "seconds")));
}

/* One CSV line per scenario of results; channels is the sweep point's (or -n). */
static void print_csv_lines(json_t *results, unsigned channels, double load1, double sync)
{
	const char *name;
	json_t *r;
	json_object_foreach(results, name, r)
	{
		printf(
		    "%s,%s,%lld,%.3f,%.1f,%.0f,%.0f,%.0f,%lld,%lld,%.4g,%.4g,%.4g,%.3f,%.3f,%.3f,"
		    "%.2f,%.0f,%u\n",
		    name, json_string_value(json_object_get(r, "unit")),
		    (long long)json_integer_value(json_object_get(r, "count")),
		    json_number_value(json_object_get(r, "seconds")), rate_of(r), latency(r, "p50"),
		    latency(r, "p99"), latency(r, "p999"),
		    (long long)json_integer_value(json_object_get(r, "failed")),
		    (long long)json_integer_value(json_object_get(r, "retried")), ratio(r, "chain"),
		    ratio(r, "tls"), ratio(r, "online-baseline"), cpu_of(r, "merchantd"),
		    cpu_of(r, "brokerd"), cpu_of(r, "postgres"), load1, sync, channels);
	}
}

static void print_csv(const struct bench_opts *o, json_t *run)
{
	json_t *m = json_object_get(run, "machine");
	double load1 = json_number_value(json_array_get(json_object_get(m, "load_average"), 0));
	double sync = json_number_value(json_object_get(json_object_get(m, "disk_sync"), "p50_us"));
	printf("scenario,unit,count,seconds,per_second,p50_us,p99_us,p999_us,failed,retried,"
	       "vs_chain,vs_tls,vs_online,cpu_merchantd,cpu_brokerd,cpu_postgres,load1,"
	       "disk_sync_p50_us,channels\n");
	json_t *results = json_object_get(run, "results");
	if (results)
		print_csv_lines(results, o->channels, load1, sync);
	size_t i;
	json_t *point;
	json_array_foreach(json_object_get(run, "sweep"), i, point) print_csv_lines(
	    json_object_get(point, "results"),
	    (unsigned)json_integer_value(json_object_get(point, "channels")), load1, sync);
}

void report_print(const struct bench_opts *o, json_t *run)
{
	json_t *results = json_object_get(run, "results");
	if (results)
		add_ratios(results);
	size_t i;
	json_t *point;
	json_array_foreach(json_object_get(run, "sweep"), i, point)
	    add_ratios(json_object_get(point, "results"));
	if (o->json) {
		json_dumpf(run, stdout,
			   JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		printf("\n");
	} else if (o->csv) {
		print_csv(o, run);
	} else {
		print_table(run);
	}
	fflush(stdout);
}
