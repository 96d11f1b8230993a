#include "db.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct db_query {
	char *statement;
	int n;
	char *values[DB_MAX_PARAMS];
	int lengths[DB_MAX_PARAMS];
	int formats[DB_MAX_PARAMS];
	db_done_fn done;
	void *arg;
	struct db_query *next;
};

struct db_conn {
	struct db_pool *pool;
	PGconn *pg;
	struct event *ev;
	struct db_query *current;
	PGresult *result;
	char error[512];
	unsigned index;
};

struct db_pool {
	struct event_base *base;
	char *conninfo;
	const struct db_statement *statements;
	unsigned size;
	struct db_conn *conns;
	struct db_query *head, *tail;
	unsigned queued;
};

static void query_free(struct db_query *q)
{
	for (int i = 0; i < q->n; i++)
		free(q->values[i]);
	free(q->statement);
	free(q);
}

static void pump(struct db_pool *pool);

static bool prepare_all(PGconn *pg, const struct db_statement *st, char *err, size_t errlen)
{
	for (; st->name; st++) {
		PGresult *r = PQprepare(pg, st->name, st->sql, st->nparams, NULL);
		bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			snprintf(err, errlen, "preparing %s: %s", st->name,
				 PQresultErrorMessage(r));
		PQclear(r);
		if (!ok)
			return false;
	}
	return true;
}

PGconn *db_connect_blocking(const char *conninfo, char *err, size_t errlen)
{
	PGconn *pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static void finish_query(struct db_conn *c)
{
	struct db_query *q = c->current;
	PGresult *res = c->result;
	c->current = NULL;
	c->result = NULL;
	if (!c->error[0] && (!res || PQresultStatus(res) != PGRES_TUPLES_OK))
		snprintf(c->error, sizeof(c->error), "%s: no result rows", q->statement);
	if (c->error[0]) {
		log_warn("db: %s failed: %s", q->statement, c->error);
		q->done(NULL, c->error, q->arg);
	} else {
		q->done(res, NULL, q->arg);
	}
	PQclear(res);
	query_free(q);
}

static void reconnect(struct db_conn *c)
{
	log_warn("db: connection %u lost (%s); reconnecting", c->index, PQerrorMessage(c->pg));
	PQreset(c->pg);
	char err[512];
	if (PQstatus(c->pg) != CONNECTION_OK ||
	    !prepare_all(c->pg, c->pool->statements, err, sizeof(err)))
		log_err("db: connection %u could not be re-established", c->index);
	PQsetnonblocking(c->pg, 1);
	event_del(c->ev);
	event_assign(c->ev, c->pool->base, PQsocket(c->pg), EV_READ | EV_PERSIST,
		     event_get_callback(c->ev), c);
	event_add(c->ev, NULL);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (what & EV_WRITE) {
		if (PQflush(c->pg) == 0) {
			event_del(c->ev);
			event_assign(c->ev, c->pool->base, fd, EV_READ | EV_PERSIST, on_socket, c);
			event_add(c->ev, NULL);
		}
	}
	if (!(what & EV_READ))
		return;
	if (!PQconsumeInput(c->pg)) {
		if (c->current) {
			snprintf(c->error, sizeof(c->error), "connection lost: %s",
				 PQerrorMessage(c->pg));
			finish_query(c);
		}
		reconnect(c);
		pump(c->pool);
		return;
	}
	while (c->current && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			finish_query(c);
			break;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !c->error[0])
			snprintf(c->error, sizeof(c->error), "%s", PQresultErrorMessage(r));
		if (st == PGRES_TUPLES_OK && !c->result)
			c->result = r;
		else
			PQclear(r);
	}
	pump(c->pool);
}

static bool start_query(struct db_conn *c, struct db_query *q)
{
	c->current = q;
	c->result = NULL;
	c->error[0] = '\0';
	if (!PQsendQueryPrepared(c->pg, q->statement, q->n, (const char *const *)q->values,
				 q->lengths, q->formats, 0)) {
		snprintf(c->error, sizeof(c->error), "send: %s", PQerrorMessage(c->pg));
		finish_query(c);
		return false;
	}
	if (PQflush(c->pg) == 1) {
		event_del(c->ev);
		event_assign(c->ev, c->pool->base, PQsocket(c->pg), EV_READ | EV_WRITE | EV_PERSIST,
			     on_socket, c);
		event_add(c->ev, NULL);
	}
	return true;
}

static void pump(struct db_pool *pool)
{
	for (unsigned i = 0; i < pool->size && pool->head; i++) {
		struct db_conn *c = &pool->conns[i];
		if (c->current || PQstatus(c->pg) != CONNECTION_OK)
			continue;
		struct db_query *q = pool->head;
		pool->head = q->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		start_query(c, q);
	}
}

struct db_pool *db_pool_open(struct event_base *base, const char *conninfo, unsigned size,
			     const struct db_statement *statements)
{
	struct db_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->base = base;
	pool->conninfo = strdup(conninfo);
	pool->statements = statements;
	pool->conns = calloc(size, sizeof(*pool->conns));
	if (!pool->conninfo || !pool->conns) {
		db_pool_close(pool);
		return NULL;
	}
	for (unsigned i = 0; i < size; i++) {
		struct db_conn *c = &pool->conns[i];
		char err[512];
		c->pool = pool;
		c->index = i;
		c->pg = db_connect_blocking(conninfo, err, sizeof(err));
		if (!c->pg || !prepare_all(c->pg, statements, err, sizeof(err))) {
			log_err("db: connection %u: %s", i, err);
			pool->size = i + 1;
			db_pool_close(pool);
			return NULL;
		}
		PQsetnonblocking(c->pg, 1);
		c->ev = event_new(base, PQsocket(c->pg), EV_READ | EV_PERSIST, on_socket, c);
		event_add(c->ev, NULL);
		pool->size = i + 1;
	}
	log_info("db: %u connections ready", size);
	return pool;
}

void db_pool_close(struct db_pool *pool)
{
	if (!pool)
		return;
	for (unsigned i = 0; i < pool->size; i++) {
		struct db_conn *c = &pool->conns[i];
		if (c->ev)
			event_free(c->ev);
		if (c->current) {
			snprintf(c->error, sizeof(c->error), "shutting down");
			finish_query(c);
		}
		if (c->pg)
			PQfinish(c->pg);
	}
	while (pool->head) {
		struct db_query *q = pool->head;
		pool->head = q->next;
		q->done(NULL, "shutting down", q->arg);
		query_free(q);
	}
	free(pool->conns);
	free(pool->conninfo);
	free(pool);
}

unsigned db_pool_queued(const struct db_pool *pool)
{
	return pool->queued;
}

static void add_param(struct db_params *p, const char *value, int len, int format)
{
	if (p->n >= DB_MAX_PARAMS) {
		p->overflow = true;
		return;
	}
	p->values[p->n] = value;
	p->lengths[p->n] = len;
	p->formats[p->n] = format;
	p->n++;
}

void db_param_bytes(struct db_params *p, const uint8_t *data, size_t len)
{
	add_param(p, data ? (const char *)data : "", (int)len, 1);
}

void db_param_text(struct db_params *p, const char *s)
{
	add_param(p, s, s ? (int)strlen(s) : 0, 0);
}

void db_param_u64(struct db_params *p, uint64_t v)
{
	if (p->n < DB_MAX_PARAMS)
		snprintf(p->text[p->n], sizeof(p->text[0]), "%" PRIu64, v);
	add_param(p, p->n < DB_MAX_PARAMS ? p->text[p->n] : NULL, 0, 0);
}

void db_param_i64(struct db_params *p, int64_t v)
{
	if (p->n < DB_MAX_PARAMS)
		snprintf(p->text[p->n], sizeof(p->text[0]), "%" PRId64, v);
	add_param(p, p->n < DB_MAX_PARAMS ? p->text[p->n] : NULL, 0, 0);
}

int db_call(struct db_pool *pool, const char *statement, const struct db_params *params,
	    db_done_fn done, void *arg)
{
	if (params->overflow) {
		log_err("db: %s: too many parameters", statement);
		return -1;
	}
	struct db_query *q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	q->statement = strdup(statement);
	q->n = params->n;
	q->done = done;
	q->arg = arg;
	bool ok = q->statement != NULL;
	for (int i = 0; ok && i < q->n; i++) {
		const char *v = params->values[i];
		q->formats[i] = params->formats[i];
		if (!v)
			continue;
		int len = q->formats[i] ? params->lengths[i] : (int)strlen(v);
		q->lengths[i] = len;
		q->values[i] = malloc((size_t)len + 1);
		ok = q->values[i] != NULL;
		if (ok) {
			memcpy(q->values[i], v, (size_t)len);
			q->values[i][len] = '\0';
		}
	}
	if (!ok) {
		query_free(q);
		return -1;
	}
	if (pool->tail)
		pool->tail->next = q;
	else
		pool->head = q;
	pool->tail = q;
	pool->queued++;
	pump(pool);
	return 0;
}

static int column(const PGresult *res, const char *col)
{
	int c = PQfnumber(res, col);
	if (c < 0)
		log_err("db: result has no column '%s'", col);
	return c;
}

bool db_is_null(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	return c < 0 || PQgetisnull(res, row, c);
}

uint8_t *db_get_blob(const PGresult *res, int row, const char *col, size_t *len)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return NULL;
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, c), &n);
	if (!raw)
		return NULL;
	uint8_t *out = malloc(n ? n : 1);
	if (out && n)
		memcpy(out, raw, n);
	PQfreemem(raw);
	*len = n;
	return out;
}

bool db_get_bytes(const PGresult *res, int row, const char *col, uint8_t *out, size_t len)
{
	size_t n = 0;
	uint8_t *blob = db_get_blob(res, row, col, &n);
	bool ok = blob && n == len;
	if (ok)
		memcpy(out, blob, len);
	free(blob);
	return ok;
}

int64_t db_get_i64(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return 0;
	return strtoll(PQgetvalue(res, row, c), NULL, 10);
}

bool db_get_bool(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	return c >= 0 && !PQgetisnull(res, row, c) && PQgetvalue(res, row, c)[0] == 't';
}

const char *db_get_text(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return NULL;
	return PQgetvalue(res, row, c);
}
