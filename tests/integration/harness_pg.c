#include "harness_pg.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Run a shell command without the test's open descriptors: a server it starts must not hold
 * the test's connections open. Returns the exit status, -1 if it did not exit. */
static int run_shell(const char *line)
{
	pid_t pid = fork();
	if (pid == 0) {
		close_range(3, ~0U, 0);
		execl("/bin/sh", "sh", "-c", line, (char *)NULL);
		_exit(127);
	}
	int status;
	pid_t done;
	do
		done = waitpid(pid, &status, 0);
	while (done < 0 && errno == EINTR);
	return done == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void pg_cluster(const struct net *n, const char *cmd)
{
	const char *src = getenv("MP_SOURCE_ROOT") ? getenv("MP_SOURCE_ROOT") : ".";
	char line[2048];
	snprintf(line, sizeof(line), "'%s/deploy/pg-cluster' %s '%s/pg' >>'%s/mpnet.log' 2>&1", src,
		 cmd, n->dir, n->dir);
	ck_assert_msg(run_shell(line) == 0, "pg-cluster %s failed (log: %s/pg/postgres.log)", cmd,
		      n->dir);
}

static bool pg_answers(const struct net *n)
{
	PGconn *pg = pg_connect(n);
	bool up = PQstatus(pg) == CONNECTION_OK;
	PQfinish(pg);
	return up;
}

void pg_stop(const struct net *n)
{
	pg_cluster(n, "stop");
	ck_assert_msg(!pg_answers(n), "PostgreSQL still answers after pg-cluster stop");
}

void pg_start(const struct net *n)
{
	pg_cluster(n, "start");
	ck_assert_msg(pg_answers(n), "PostgreSQL does not answer after pg-cluster start");
}

PGconn *pg_connect(const struct net *n)
{
	char conninfo[700];
	snprintf(conninfo, sizeof(conninfo), "host=%s/pg user=micropay dbname=postgres", n->dir);
	return PQconnectdb(conninfo);
}

PGresult *pg_exec_ok(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
		      PQresultErrorMessage(r));
	return r;
}

void broker_reconfigure_db(const struct net *n, const char *lines)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/broker/config.ini", n->dir);
	FILE *f = fopen(path, "a");
	ck_assert_msg(f != NULL, "cannot append to %s", path);
	fprintf(f, "[db]\n%s\n", lines);
	fclose(f);
	/* m1 first: brokerd stopped with a live connection reports it leaked at exit. */
	ck_assert_int_eq(net_cmd(n, "kill", "m1"), 0);
	ck_assert_int_eq(net_cmd(n, "kill", "broker"), 0);
	ck_assert_msg(net_cmd(n, "start", "broker") == 0,
		      "brokerd did not start again (%s/broker/log)", n->dir);
	ck_assert_msg(net_cmd(n, "start", "m1") == 0,
		      "merchantd m1 did not start again (%s/m1/log)", n->dir);
}

long broker_pid(const struct net *n)
{
	char pid[32];
	net_read(n, "broker", "pid", pid, sizeof(pid));
	return strtol(pid, NULL, 10);
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
