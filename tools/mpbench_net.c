/* The network a run drives: started privately with --spawn (deploy/mpnet, the launcher the
 * tests use), an mpnet folder already running (--net DIR), or endpoints and sockets given as
 * flags. From a folder every detail is read from the files mpnet writes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "mpbench.h"

static bool read_line(const char *dir, const char *rel, char *out, size_t len)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool got = fgets(out, (int)len, f) != NULL;
	fclose(f);
	if (got)
		out[strcspn(out, "\n")] = '\0';
	return got && out[0];
}

/* The value of "key = value" in an ini file ("" if absent). */
static void ini_value(const char *path, const char *key, char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[1200];
	size_t klen = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) != 0 || !strchr(line, '='))
			continue;
		char *v = strchr(line, '=') + 1;
		while (*v == ' ')
			v++;
		snprintf(out, len, "%s", v);
		out[strcspn(out, "\n")] = '\0';
		break;
	}
	fclose(f);
}

static void add_daemon(struct bench_net *n, const char *name, pid_t pid, bool children)
{
	if (pid <= 0 || n->n_daemons == BENCH_MAX_DAEMONS)
		return;
	struct bench_daemon *d = &n->daemons[n->n_daemons++];
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->pid = pid;
	d->with_children = children;
}

static pid_t pid_in(const char *dir, const char *rel)
{
	char line[64];
	return read_line(dir, rel, line, sizeof(line)) ? (pid_t)atol(line) : 0;
}

static bool from_folder(struct bench_net *n, const char *dir)
{
	if (dir != n->dir)
		snprintf(n->dir, sizeof(n->dir), "%s", dir);
	if (!read_line(dir, "broker/endpoint", n->broker, sizeof(n->broker)) ||
	    !read_line(dir, "m1/endpoint", n->merchant, sizeof(n->merchant)) ||
	    !read_line(dir, "m1/merchant_id", n->merchant_id, sizeof(n->merchant_id))) {
		fprintf(stderr,
			"mpbench: %s is not a running mpnet folder (broker/endpoint, "
			"m1/endpoint)\n",
			dir);
		return false;
	}
	snprintf(n->ca, sizeof(n->ca), "%s/tls/ca.crt", dir);
	snprintf(n->broker_admin, sizeof(n->broker_admin), "%s/broker/admin.sock", dir);
	snprintf(n->merchant_admin, sizeof(n->merchant_admin), "%s/m1/admin.sock", dir);
	char ini[700];
	snprintf(ini, sizeof(ini), "%s/broker/config.ini", dir);
	ini_value(ini, "conninfo", n->pg, sizeof(n->pg));
	add_daemon(n, "merchantd", pid_in(dir, "m1/pid"), false);
	if (read_line(dir, "m2/endpoint", n->merchant2, sizeof(n->merchant2)) &&
	    read_line(dir, "m2/merchant_id", n->merchant2_id, sizeof(n->merchant2_id))) {
		snprintf(n->merchant2_admin, sizeof(n->merchant2_admin), "%s/m2/admin.sock", dir);
		add_daemon(n, "merchantd2", pid_in(dir, "m2/pid"), false);
	}
	add_daemon(n, "brokerd", pid_in(dir, "broker/pid"), false);
	if (read_line(dir, "b2/endpoint", n->broker2, sizeof(n->broker2)))
		add_daemon(n, "brokerd2", pid_in(dir, "b2/pid"), false);
	add_daemon(n, "postgres", pid_in(dir, "pg/data/postmaster.pid"), true);
	return true;
}

/* deploy/mpnet CMD DIR ARG, its output in DIR/mpnet.log; its exit status, -1 if none. */
static int run(const struct bench_opts *o, const char *cmd, const char *dir, const char *arg)
{
	char window[32];
	snprintf(window, sizeof(window), "%u", o->window > 64 ? o->window : 64);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setenv("MP_BUILD", o->build, 1);
		setenv("MP_MAX_IN_FLIGHT", window, 1);
		/* mpnet's own output would mix with ours: it goes to DIR/mpnet.log. */
		char log[700];
		snprintf(log, sizeof(log), "%s/mpnet.log", dir);
		FILE *f = freopen(log, "a", stdout);
		if (!f || dup2(fileno(stdout), 2) < 0)
			_exit(126);
		execl(o->mpnet, o->mpnet, cmd, dir, arg, (char *)NULL);
		_exit(127);
	}
	int rc;
	while (waitpid(pid, &rc, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool spawn(struct bench_net *n, const struct bench_opts *o)
{
	if (o->spawn_dir) {
		snprintf(n->dir, sizeof(n->dir), "%s", o->spawn_dir);
		if (mkdir(n->dir, 0700) != 0 && errno != EEXIST) {
			fprintf(stderr, "mpbench: cannot create %s: %s\n", n->dir, strerror(errno));
			return false;
		}
	} else {
		const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		snprintf(n->dir, sizeof(n->dir), "%s/mpbench-XXXXXX", tmp);
		if (!mkdtemp(n->dir)) {
			perror("mpbench: mkdtemp");
			return false;
		}
	}
	if (!o->quiet)
		fprintf(stderr, "mpbench: starting a private network in %s (%s)\n", n->dir,
			o->mpnet);
	n->spawned = true;
	if (run(o, "up", n->dir, "--no-wallet") != 0) {
		fprintf(stderr, "mpbench: %s up %s failed (see %s/mpnet.log)\n", o->mpnet, n->dir,
			n->dir);
		return false;
	}
	if (o->second_broker && run(o, "broker", n->dir, "b2") != 0) {
		fprintf(stderr, "mpbench: %s broker %s b2 failed (see %s/mpnet.log)\n", o->mpnet,
			n->dir, n->dir);
		return false;
	}
	if (o->second_merchant && run(o, "merchant", n->dir, "m2") != 0) {
		fprintf(stderr, "mpbench: %s merchant %s m2 failed (see %s/mpnet.log)\n", o->mpnet,
			n->dir, n->dir);
		return false;
	}
	return from_folder(n, n->dir);
}

static void copy_flag(char *out, size_t len, const char *flag)
{
	if (flag)
		snprintf(out, len, "%s", flag);
}

bool bench_net_open(struct bench_net *n, const struct bench_opts *o)
{
	*n = (struct bench_net){0};
	bool ok = true;
	if (o->spawn)
		ok = spawn(n, o);
	else if (o->net_dir)
		ok = from_folder(n, o->net_dir);
	if (!ok)
		return false;
	copy_flag(n->broker, sizeof(n->broker), o->broker);
	copy_flag(n->merchant, sizeof(n->merchant), o->merchant);
	copy_flag(n->ca, sizeof(n->ca), o->ca);
	copy_flag(n->broker_admin, sizeof(n->broker_admin), o->broker_admin);
	copy_flag(n->merchant_admin, sizeof(n->merchant_admin), o->merchant_admin);
	copy_flag(n->pg, sizeof(n->pg), o->pg);
	return !o->http || bench_http_gateway(n, o);
}

bool bench_net_restart(struct bench_net *n, const struct bench_opts *o, const char *name,
		       const char *label)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "%s/pid", name);
	if (run(o, "kill", n->dir, name) != 0 || run(o, "start", n->dir, name) != 0) {
		fprintf(stderr, "mpbench: restarting %s in %s failed (see %s/mpnet.log)\n", name,
			n->dir, n->dir);
		return false;
	}
	for (unsigned i = 0; i < n->n_daemons; i++)
		if (strcmp(n->daemons[i].name, label) == 0)
			n->daemons[i].pid = pid_in(n->dir, rel);
	return true;
}

void bench_net_close(struct bench_net *n, const struct bench_opts *o)
{
	bench_http_stop(n);
	if (!n->spawned)
		return;
	if (o->keep) {
		if (!o->quiet)
			fprintf(stderr, "mpbench: the network stays up in %s (%s down %s)\n",
				n->dir, o->mpnet, n->dir);
		return;
	}
	if (run(o, "down", n->dir, NULL) != 0)
		fprintf(stderr, "mpbench: %s down %s failed\n", o->mpnet, n->dir);
	if (!o->spawn_dir) {
		char line[1200];
		snprintf(line, sizeof(line), "rm -rf '%s'", n->dir);
		if (system(line) != 0)
			fprintf(stderr, "mpbench: could not remove %s\n", n->dir);
	}
}

json_t *bench_admin(const char *sock, const char *method, json_t *params)
{
	char err[1024];
	json_t *out = mp_admin_call(sock, method, params, err, sizeof(err));
	if (!out)
		fprintf(stderr, "mpbench: %s on %s: %s\n", method, sock, err);
	return out;
}

pid_t bench_daemon_pid(const struct bench_net *n, const char *name)
{
	for (unsigned i = 0; i < n->n_daemons; i++)
		if (strcmp(n->daemons[i].name, name) == 0)
			return n->daemons[i].pid;
	return 0;
}
