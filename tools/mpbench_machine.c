/* The machine a run measured (so figures compare across machines) and the /proc readings of
 * the daemons: CPU seconds and resident memory. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "mpbench.h"

#define SYNC_ROUNDS 200

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cpu_model(char *out, size_t len)
{
	snprintf(out, len, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) != 0 || !colon)
			continue;
		snprintf(out, len, "%s", colon + 2);
		out[strcspn(out, "\n")] = '\0';
		break;
	}
	fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* SYNC_ROUNDS times: overwrite one 4 KiB block and fdatasync; the median and p99 in µs. */
static json_t *sync_latency(const char *dir)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/mpbench-sync-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		perror("mpbench: sync test file");
		return json_null();
	}
	unlink(path);
	static const char block[4096];
	double us[SYNC_ROUNDS];
	unsigned done = 0;
	for (; done < SYNC_ROUNDS; done++) {
		double t0 = bench_now();
		if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) ||
		    fdatasync(fd) != 0) {
			perror("mpbench: sync test");
			break;
		}
		us[done] = (bench_now() - t0) * 1e6;
	}
	close(fd);
	if (done == 0)
		return json_null();
	qsort(us, done, sizeof(us[0]), cmp_double);
	return json_pack("{s:s, s:i, s:f, s:f}", "dir", dir, "rounds", (int)done, "p50_us",
			 us[done / 2], "p99_us", us[(done * 99) / 100]);
}

json_t *machine_describe(const char *dir)
{
	char model[256], loadavg[128] = "";
	cpu_model(model, sizeof(model));
	struct utsname u;
	uname(&u);
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(loadavg, sizeof(loadavg), f))
			loadavg[0] = '\0';
		fclose(f);
	}
	double l1 = 0, l5 = 0, l15 = 0;
	sscanf(loadavg, "%lf %lf %lf", &l1, &l5, &l15);
	char kernel[600];
	snprintf(kernel, sizeof(kernel), "%s %s %s", u.sysname, u.release, u.machine);
	return json_pack("{s:s, s:i, s:s, s:s, s:[f,f,f], s:o}", "cpu", model, "cores",
			 (int)sysconf(_SC_NPROCESSORS_ONLN), "kernel", kernel, "host", u.nodename,
			 "load_average", l1, l5, l15, "disk_sync", sync_latency(dir));
}

/* Fields 14 and 15 (utime, stime) of /proc/PID/stat, 16 and 17 (the same of its children
 * already reaped) and 4 (ppid). */
static bool read_stat(pid_t pid, pid_t *ppid, double *cpu, double *reaped)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[got] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long long ut = 0, st = 0;
	long long cut = 0, cst = 0;
	int pp = 0;
	if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
			 &pp, &ut, &st, &cut, &cst) != 5)
		return false;
	double tick = (double)sysconf(_SC_CLK_TCK);
	*ppid = pp;
	*cpu = (double)(ut + st) / tick;
	*reaped = (double)(cut + cst) / tick;
	return true;
}

double proc_cpu_seconds(pid_t pid, bool with_children)
{
	pid_t ppid;
	double total = 0, cpu, reaped;
	if (pid <= 0 || !read_stat(pid, &ppid, &total, &reaped))
		return 0;
	if (with_children)
		total += reaped;
	DIR *d = with_children ? opendir("/proc") : NULL;
	if (!d)
		return total;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t child = (pid_t)atoi(e->d_name);
		if (child > 0 && read_stat(child, &ppid, &cpu, &reaped) && ppid == pid)
			total += cpu;
	}
	closedir(d);
	return total;
}

uint64_t proc_rss_bytes(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	unsigned long long kb = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

void cpu_sample(const struct bench_net *n, struct bench_cpu *out)
{
	for (unsigned i = 0; i < n->n_daemons; i++)
		out->seconds[i] = proc_cpu_seconds(n->daemons[i].pid, n->daemons[i].with_children);
}

json_t *cpu_delta(const struct bench_net *n, const struct bench_cpu *a, const struct bench_cpu *b)
{
	json_t *o = json_object();
	for (unsigned i = 0; i < n->n_daemons; i++)
		json_object_set_new(o, n->daemons[i].name,
				    json_real(b->seconds[i] - a->seconds[i]));
	return o;
}
