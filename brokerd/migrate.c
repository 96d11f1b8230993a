#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

static bool exec_ok(PGconn *pg, const char *sql, char *err, size_t errlen, const char *what)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

static int current_version(PGconn *pg, char *err, size_t errlen)
{
	if (!exec_ok(pg,
		     "CREATE TABLE IF NOT EXISTS schema_version ("
		     " version integer PRIMARY KEY, name text NOT NULL,"
		     " applied_at timestamptz NOT NULL DEFAULT now())",
		     err, errlen, "creating schema_version"))
		return -1;
	PGresult *r = PQexec(pg, "SELECT coalesce(max(version), 0) FROM schema_version");
	int v = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		v = atoi(PQgetvalue(r, 0, 0));
	else
		snprintf(err, errlen, "reading schema_version: %s", PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

static bool apply(PGconn *pg, const struct migration *m, char *err, size_t errlen)
{
	if (!exec_ok(pg, "BEGIN", err, errlen, m->name))
		return false;
	char record[160];
	snprintf(record, sizeof(record),
		 "INSERT INTO schema_version(version, name) VALUES (%d, '%s')", m->version,
		 m->name);
	if (!exec_ok(pg, m->sql, err, errlen, m->name) ||
	    !exec_ok(pg, record, err, errlen, m->name) ||
	    !exec_ok(pg, "COMMIT", err, errlen, m->name)) {
		PQclear(PQexec(pg, "ROLLBACK"));
		return false;
	}
	log_info("db: applied migration %s", m->name);
	return true;
}

bool migrate(PGconn *pg, char *err, size_t errlen)
{
	/* One broker at a time migrates; the others wait for the lock. */
	if (!exec_ok(pg, "SELECT pg_advisory_lock(7400001)", err, errlen, "migration lock"))
		return false;
	int have = current_version(pg, err, errlen);
	bool ok = have >= 0;
	int newest = 0;
	for (const struct migration *m = migrations; m->name; m++)
		newest = m->version;
	if (ok && have > newest) {
		snprintf(
		    err, errlen,
		    "database schema version %d is newer than this brokerd knows (%d): refusing "
		    "to start; run a newer brokerd",
		    have, newest);
		ok = false;
	}
	for (const struct migration *m = migrations; ok && m->name; m++)
		if (m->version > have)
			ok = apply(pg, m, err, errlen);
	PQclear(PQexec(pg, "SELECT pg_advisory_unlock(7400001)"));
	return ok;
}
