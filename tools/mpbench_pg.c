/* `online-baseline`: what a user would do without micropay. The same payment load (the same
 * accounts' worth of channels, the same 1-unit/k-unit mix, the same duration) as one
 * PostgreSQL transaction per payment against the broker's own cluster: a debit of the payer's
 * balance, refused below zero, and its ledger row, committed durably (synchronous_commit as
 * the cluster has it). Tables live in a schema of their own ("mpbench"), dropped afterwards.
 *
 * Each of P connections keeps one transaction in flight (like pgbench's clients):
 *   IDLE --send--> BUSY --result, then end of results--> IDLE (count it, send the next)
 *   BUSY --error--> DEAD ; after the duration an IDLE connection sends nothing more. */
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbench_load.h"

#define PG_CLIENTS 8

static const char *const setup_sql =
    "SET client_min_messages = warning;"
    "DROP SCHEMA IF EXISTS mpbench CASCADE; CREATE SCHEMA mpbench;"
    "CREATE TABLE mpbench.account (id integer PRIMARY KEY, balance bigint NOT NULL"
    " CHECK (balance >= 0));"
    "CREATE TABLE mpbench.ledger (id bigserial PRIMARY KEY, account integer NOT NULL,"
    " amount bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());";

static const char *const debit_sql =
    "WITH d AS (UPDATE mpbench.account SET balance = balance - $2"
    " WHERE id = $1 AND balance >= $2 RETURNING id)"
    " INSERT INTO mpbench.ledger (account, amount) SELECT id, -$2 FROM d";

struct pg_client {
	struct pg_run *run;
	PGconn *db;
	struct event *ev;
	double sent_at;
	bool busy, failed;
};

struct pg_run {
	const struct bench_opts *o;
	struct event_base *base;
	struct pg_client clients[PG_CLIENTS];
	struct load_result r;
	uint64_t sent;
	double started, ends_at;
	bool stopping;
	struct event *tick; /* progress lines */
	uint64_t last_done;
};

static bool exec_ok(PGconn *db, const char *sql)
{
	PGresult *res = PQexec(db, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "mpbench: online-baseline: %s\n", PQerrorMessage(db));
	PQclear(res);
	return ok;
}

static bool create_tables(PGconn *db, const struct bench_opts *o)
{
	char fill[256];
	snprintf(fill, sizeof(fill),
		 "INSERT INTO mpbench.account SELECT g, %u FROM generate_series(0, %u) g", o->units,
		 o->channels - 1);
	return exec_ok(db, setup_sql) && exec_ok(db, fill) &&
	       exec_ok(db, "ANALYZE mpbench.account");
}

static bool send_debit(struct pg_client *pc)
{
	struct pg_run *run = pc->run;
	char account[16], amount[16];
	unsigned k = run->sent % 100 < run->o->k_percent ? run->o->k : 1;
	snprintf(account, sizeof(account), "%u", (unsigned)(run->sent % run->o->channels));
	snprintf(amount, sizeof(amount), "%u", k);
	run->sent++;
	const char *values[2] = {account, amount};
	pc->sent_at = bench_now();
	if (!PQsendQueryPrepared(pc->db, "debit", 2, values, NULL, NULL, 0)) {
		fprintf(stderr, "mpbench: online-baseline: %s\n", PQerrorMessage(pc->db));
		return false;
	}
	pc->busy = true;
	return true;
}

static void stop_if_done(struct pg_run *run)
{
	for (unsigned i = 0; i < PG_CLIENTS; i++)
		if (run->clients[i].busy)
			return;
	event_base_loopbreak(run->base);
}

static void on_result(struct pg_client *pc, PGresult *res)
{
	struct pg_run *run = pc->run;
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		/* An account drained to zero debits nothing: a refusal, as it would be. */
		if (strcmp(PQcmdTuples(res), "1") == 0)
			run->r.done++;
		else
			run->r.failed++;
		return;
	}
	run->r.failed++;
	if (!pc->failed)
		fprintf(stderr, "mpbench: online-baseline: %s", PQresultErrorMessage(res));
	pc->failed = true;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct pg_client *pc = arg;
	struct pg_run *run = pc->run;
	if (!PQconsumeInput(pc->db)) {
		fprintf(stderr, "mpbench: online-baseline: %s", PQerrorMessage(pc->db));
		pc->busy = false;
		event_del(pc->ev);
		stop_if_done(run);
		return;
	}
	while (pc->busy && !PQisBusy(pc->db)) {
		PGresult *res = PQgetResult(pc->db);
		if (res) {
			on_result(pc, res);
			PQclear(res);
			continue;
		}
		double now = bench_now();
		hist_add(&run->r.latency, (uint64_t)((now - pc->sent_at) * 1e6));
		run->r.seconds = now - run->started;
		pc->busy = false;
		if (now >= run->ends_at)
			run->stopping = true;
		if (!run->stopping && !pc->failed && send_debit(pc))
			return;
	}
	if (!pc->busy)
		stop_if_done(run);
}

static bool connect_clients(struct pg_run *run, const char *conninfo)
{
	for (unsigned i = 0; i < PG_CLIENTS; i++) {
		struct pg_client *pc = &run->clients[i];
		pc->run = run;
		pc->db = PQconnectdb(conninfo);
		if (PQstatus(pc->db) != CONNECTION_OK) {
			fprintf(stderr, "mpbench: online-baseline: %s", PQerrorMessage(pc->db));
			return false;
		}
		PGresult *res = PQprepare(pc->db, "debit", debit_sql, 2, NULL);
		bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		PQclear(res);
		if (!ok) {
			fprintf(stderr, "mpbench: online-baseline: %s", PQerrorMessage(pc->db));
			return false;
		}
		pc->ev =
		    event_new(run->base, PQsocket(pc->db), EV_READ | EV_PERSIST, on_readable, pc);
		if (!pc->ev || event_add(pc->ev, NULL) != 0)
			return false;
	}
	return true;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pg_run *run = arg;
	fprintf(stderr, "mpbench: online-baseline: %.0f s, %llu done, %llu/s now, %llu failed\n",
		bench_now() - run->started, (unsigned long long)run->r.done,
		(unsigned long long)(run->r.done - run->last_done),
		(unsigned long long)run->r.failed);
	run->last_done = run->r.done;
}

static void run_load(struct pg_run *run)
{
	run->started = bench_now();
	run->ends_at = run->started + run->o->duration;
	struct timeval second = {1, 0};
	run->tick = run->o->quiet ? NULL : event_new(run->base, -1, EV_PERSIST, on_tick, run);
	if (run->tick)
		event_add(run->tick, &second);
	for (unsigned i = 0; i < PG_CLIENTS; i++)
		send_debit(&run->clients[i]);
	event_base_dispatch(run->base);
	if (run->tick)
		event_free(run->tick);
}

static void free_clients(struct pg_run *run)
{
	for (unsigned i = 0; i < PG_CLIENTS; i++) {
		if (run->clients[i].ev)
			event_free(run->clients[i].ev);
		PQfinish(run->clients[i].db);
	}
}

json_t *scenario_online_baseline(const struct bench_opts *o, const struct bench_net *n)
{
	if (!n->pg[0]) {
		fprintf(stderr, "mpbench: online-baseline needs a PostgreSQL conninfo (--pg, or "
				"--net/--spawn)\n");
		return NULL;
	}
	PGconn *db = PQconnectdb(n->pg);
	bool ok = PQstatus(db) == CONNECTION_OK && create_tables(db, o);
	if (!ok && PQstatus(db) != CONNECTION_OK)
		fprintf(stderr, "mpbench: online-baseline: %s", PQerrorMessage(db));
	struct pg_run run = {.o = o};
	struct bench_cpu c0, c1;
	json_t *out = NULL;
	run.base = ok ? event_base_new() : NULL;
	if (run.base && connect_clients(&run, n->pg)) {
		if (!o->quiet)
			fprintf(stderr, "mpbench: online-baseline: %u clients for %.0f s\n",
				PG_CLIENTS, o->duration);
		cpu_sample(n, &c0);
		run_load(&run);
		cpu_sample(n, &c1);
		out = load_json(&run.r, "per_second");
		json_object_set_new(out, "unit", json_string("debit transactions"));
		json_object_set_new(out, "clients", json_integer(PG_CLIENTS));
		json_object_set_new(out, "cpu_seconds", cpu_delta(n, &c0, &c1));
	}
	free_clients(&run);
	if (run.base)
		event_base_free(run.base);
	if (PQstatus(db) == CONNECTION_OK)
		exec_ok(db,
			"SET client_min_messages = warning; DROP SCHEMA IF EXISTS mpbench CASCADE");
	PQfinish(db);
	return out;
}
