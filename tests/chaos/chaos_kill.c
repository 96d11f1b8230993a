#include "chaos_kill.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_pg.h"

static const char *const NAMES[V_COUNT] = {"broker", "m1", "m2", "w1", "w2", "pg"};

const char *chaos_victim_name(enum chaos_victim v)
{
	return NAMES[v];
}

/* The first line of a pid file as a pid; 0 when there is none. */
static pid_t read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long pid = 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* State letter and parent of a process from /proc/PID/stat; false if it is gone. */
static bool proc_stat(pid_t pid, char *state, pid_t *parent)
{
	char path[64], stat[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t len = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[len] = '\0';
	const char *paren = strrchr(stat, ')');
	int ppid = 0;
	if (!paren || sscanf(paren + 1, " %c %d", state, &ppid) != 2)
		return false;
	*parent = (pid_t)ppid;
	return true;
}

/* The process exists and is not a zombie. */
static bool alive(pid_t pid)
{
	char state;
	pid_t parent;
	return proc_stat(pid, &state, &parent) && state != 'Z' && state != 'X';
}

static void wait_gone(pid_t pid)
{
	for (int i = 0; i < 400 && alive(pid); i++)
		usleep(10000);
}

/* The postmaster stopped first (it forks no new backend then), every child of it killed, then
 * the postmaster itself: nothing of the cluster survives to hold its shared memory. */
static void kill_postgres(const struct net *n)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/pg/data/postmaster.pid", n->dir);
	pid_t pm = read_pid(path);
	if (pm <= 0 || kill(pm, SIGSTOP) != 0)
		return;
	pid_t children[256];
	int k = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) && k < 256) {
		pid_t pid = (pid_t)atol(e->d_name), parent;
		char state;
		if (pid > 0 && proc_stat(pid, &state, &parent) && parent == pm)
			children[k++] = pid;
	}
	if (d)
		closedir(d);
	for (int i = 0; i < k; i++)
		kill(children[i], SIGKILL);
	kill(pm, SIGKILL);
	for (int i = 0; i < k; i++)
		wait_gone(children[i]);
	wait_gone(pm);
}

static void kill_daemon(const struct net *n, const char *name)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/pid", n->dir, name);
	pid_t pid = read_pid(path);
	if (pid > 0 && kill(pid, SIGKILL) == 0)
		wait_gone(pid);
}

/* pg-cluster start (crash recovery) until the cluster answers: a first start may still see
 * the killed postmaster's pid in use. */
static void pg_restart(const struct net *n)
{
	const char *src = getenv("MP_SOURCE_ROOT") ? getenv("MP_SOURCE_ROOT") : ".";
	char line[2048];
	snprintf(line, sizeof(line), "'%s/deploy/pg-cluster' start '%s/pg' >>'%s/mpnet.log' 2>&1",
		 src, n->dir, n->dir);
	for (int tries = 0; tries < 60; tries++) {
		if (run_without_our_fds(line) == 0) {
			PGconn *pg = pg_connect(n);
			bool up = PQstatus(pg) == CONNECTION_OK;
			PQfinish(pg);
			if (up)
				return;
		}
		usleep(500000);
	}
	ck_abort_msg("PostgreSQL does not come back after SIGKILL (log: %s/pg/postgres.log)",
		     n->dir);
}

static void *killer_main(void *arg)
{
	struct chaos_killer *k = arg;
	usleep(k->delay_ms * 1000);
	if (k->victim == V_PG)
		kill_postgres(k->net);
	else
		kill_daemon(k->net, NAMES[k->victim]);
	k->kills[k->victim]++;
	if (__atomic_load_n(&k->busy, __ATOMIC_ACQUIRE)) {
		k->inside++;
		k->inside_by[k->victim]++;
	}
	__atomic_store_n(&k->killed, true, __ATOMIC_RELEASE);
	return NULL;
}

void chaos_busy(struct chaos_killer *k, bool busy)
{
	__atomic_store_n(&k->busy, busy, __ATOMIC_RELEASE);
}

void chaos_arm(struct chaos_killer *k, enum chaos_victim v, unsigned delay_ms)
{
	ck_assert(!k->armed);
	k->victim = v;
	k->delay_ms = delay_ms;
	k->killed = false;
	ck_assert_int_eq(pthread_create(&k->thread, NULL, killer_main, k), 0);
	k->armed = true;
}

void chaos_revive(struct chaos_killer *k)
{
	if (!k->armed)
		return;
	pthread_join(k->thread, NULL);
	k->armed = false;
	if (k->victim == V_PG) {
		pg_restart(k->net);
	} else {
		ck_assert_msg(net_cmd(k->net, "start", NAMES[k->victim]) == 0,
			      "%s did not start again after SIGKILL (log: %s/%s/log)",
			      NAMES[k->victim], k->net->dir, NAMES[k->victim]);
	}
	k->restarts[k->victim]++;
}
