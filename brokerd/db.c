/* The pool: a bounded FIFO of requests, each with a deadline, handed to idle connections
 * (db_conn.c). A request's life:
 *
 *   db_call --(queue full / closing)--> refused, done never called
 *      |
 *      v        connection idle                  results read / connection lost
 *   QUEUED ----------------------> IN FLIGHT --------------------------------------> answered
 *      |                                            (row, database error, or OUTCOME_UNKNOWN)
 *      +--(queue_timeout_ms passed)--> answered DB_ERR_TIMED_OUT_*
 *
 * Queued requests share one timeout, so deadlines grow along the queue and one timer, at the
 * head's deadline, is enough. */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_internal.h"
#include "log.h"
#include "metrics.h"

uint64_t db_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void query_free(struct db_query *q)
{
	for (int i = 0; i < q->n; i++)
		free(q->values[i]);
	free(q->statement);
	free(q);
}

void db_query_answer(struct db_query *q, const PGresult *res, const char *error)
{
	q->done(res, error, q->arg);
	query_free(q);
}

static struct db_query *queue_pop(struct db_pool *pool)
{
	struct db_query *q = pool->head;
	pool->head = q->next;
	if (!pool->head)
		pool->tail = NULL;
	q->next = NULL;
	pool->stats.queued--;
	return q;
}

static void queue_push_front(struct db_pool *pool, struct db_query *q)
{
	q->next = pool->head;
	pool->head = q;
	if (!pool->tail)
		pool->tail = q;
	pool->stats.queued++;
}

/* Fires at the head's deadline, rounded up to DB_EXPIRY_TICK_MS so that requests that expire
 * close together are answered (and logged) together. */
static void arm_queue_timer(struct db_pool *pool)
{
	if (!pool->head)
		return;
	uint64_t now = db_now_ms();
	uint64_t at = (pool->head->deadline_ms + DB_EXPIRY_TICK_MS - 1) / DB_EXPIRY_TICK_MS *
		      DB_EXPIRY_TICK_MS;
	uint64_t wait = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
	evtimer_add(pool->queue_timer, &tv);
}

/* Answer every request whose deadline has passed. */
static void on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
	struct db_pool *pool = arg;
	uint64_t now = db_now_ms();
	bool none_up = pool->stats.connections_up == 0;
	unsigned expired = 0;
	char first[64] = "";
	while (pool->head && pool->head->deadline_ms <= now) {
		struct db_query *q = queue_pop(pool);
		if (!expired++)
			snprintf(first, sizeof(first), "%s", q->statement);
		pool->stats.requests_expired++;
		db_query_answer(q, NULL, none_up ? DB_ERR_TIMED_OUT_DOWN : DB_ERR_TIMED_OUT_BUSY);
	}
	if (expired) /* one line per batch: an outage must not flood the log */
		log_warn("db: %u requests (first: %s) waited %u ms for a connection (%u of %u up): "
			 "answered timed out",
			 expired, first, pool->cfg.queue_timeout_ms, pool->stats.connections_up,
			 pool->cfg.size);
	arm_queue_timer(pool);
}

void db_pool_dispatch(struct db_pool *pool)
{
	for (unsigned i = 0; i < pool->opened && pool->head && !pool->closing; i++) {
		struct db_conn *c = &pool->conns[i];
		if (c->state != DB_IDLE)
			continue;
		struct db_query *q = queue_pop(pool);
		if (!db_conn_run(c, q))
			queue_push_front(pool, q);
	}
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	db_pool_dispatch(arg);
}

static struct db_query *query_new(const char *statement, const struct db_params *params,
				  db_done_fn done, void *arg)
{
	struct db_query *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
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
		return NULL;
	}
	return q;
}

/* At most one line a second: a full queue must not flood the log. */
static void log_refusal(struct db_pool *pool, const char *statement)
{
	pool->stats.requests_refused++;
	pool->refused_unlogged++;
	uint64_t now = db_now_ms();
	if (pool->refused_logged_at && now - pool->refused_logged_at < 1000)
		return;
	log_warn("db: queue full (%u waiting, %u of %u connections up): refused %s and %llu "
		 "more since the last such line",
		 pool->stats.queued, pool->stats.connections_up, pool->cfg.size, statement,
		 (unsigned long long)pool->refused_unlogged - 1);
	pool->refused_logged_at = now;
	pool->refused_unlogged = 0;
}

const char *db_call(struct db_pool *pool, const char *statement, const struct db_params *params,
		    db_done_fn done, void *arg)
{
	if (pool->closing)
		return DB_ERR_SHUTTING_DOWN;
	if (params->overflow) {
		log_err("db: %s: too many parameters", statement);
		return "internal error: too many parameters";
	}
	if (pool->stats.queued >= pool->cfg.max_queue) {
		log_refusal(pool, statement);
		return DB_ERR_QUEUE_FULL;
	}
	struct db_query *q = query_new(statement, params, done, arg);
	if (!q) {
		log_err("db: %s: out of memory", statement);
		return "out of memory";
	}
	q->deadline_ms = db_now_ms() + pool->cfg.queue_timeout_ms;
	bool was_empty = !pool->head;
	if (pool->tail)
		pool->tail->next = q;
	else
		pool->head = q;
	pool->tail = q;
	pool->stats.queued++;
	if (was_empty)
		arm_queue_timer(pool);
	event_active(pool->kick, EV_TIMEOUT, 1);
	return NULL;
}

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

/* Start-up only: PostgreSQL answers and every statement prepares. */
static bool check_blocking(const char *conninfo, const struct db_statement *statements)
{
	char err[512];
	PGconn *pg = db_connect_blocking(conninfo, err, sizeof(err));
	bool ok = pg && prepare_all(pg, statements, err, sizeof(err));
	if (!ok)
		log_err("db: %s", err);
	PQfinish(pg);
	return ok;
}

struct db_pool *db_pool_open(struct event_base *base, const struct db_pool_config *cfg,
			     const struct db_statement *statements)
{
	if (!check_blocking(cfg->conninfo, statements))
		return NULL;
	struct db_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->base = base;
	pool->cfg = *cfg;
	pool->conninfo = strdup(cfg->conninfo);
	pool->cfg.conninfo = pool->conninfo;
	pool->statements = statements;
	pool->stats.connections = cfg->size;
	pool->stats.max_queue = cfg->max_queue;
	pool->conns = calloc(cfg->size, sizeof(*pool->conns));
	pool->queue_timer = evtimer_new(base, on_queue_timer, pool);
	pool->kick = event_new(base, -1, 0, on_kick, pool);
	bool ok = pool->conninfo && pool->conns && pool->queue_timer && pool->kick;
	for (unsigned i = 0; ok && i < cfg->size; i++) {
		ok = db_conn_init(&pool->conns[i], pool, i);
		pool->opened = i + 1;
	}
	if (!ok) {
		log_err("db: out of memory opening the pool");
		db_pool_close(pool);
		return NULL;
	}
	for (unsigned i = 0; i < cfg->size; i++)
		db_conn_start(&pool->conns[i]);
	log_info("db: pool of %u connections opening (queue %u, wait %u ms, statement_timeout %u "
		 "ms, idle_in_transaction_session_timeout %u ms)",
		 cfg->size, cfg->max_queue, cfg->queue_timeout_ms, cfg->statement_timeout_ms,
		 cfg->idle_in_tx_timeout_ms);
	return pool;
}

void db_pool_close(struct db_pool *pool)
{
	if (!pool)
		return;
	pool->closing = true;
	for (unsigned i = 0; i < pool->opened; i++)
		db_conn_free(&pool->conns[i]);
	while (pool->head)
		db_query_answer(queue_pop(pool), NULL, DB_ERR_SHUTTING_DOWN);
	if (pool->queue_timer)
		event_free(pool->queue_timer);
	if (pool->kick)
		event_free(pool->kick);
	free(pool->conns);
	free(pool->conninfo);
	free(pool);
}

void db_pool_get_stats(const struct db_pool *pool, struct db_pool_stats *out)
{
	*out = pool->stats;
}

static const double db_rtt_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				       0.05,   0.1,   0.25,   0.5,   1,	   2.5};

void db_pool_metrics_forget(struct db_pool *pool)
{
	if (pool)
		pool->rtt = NULL;
}

void db_pool_metrics_register(struct db_pool *pool, struct mp_metrics *reg)
{
	struct db_pool_stats *s = &pool->stats;
	mp_metrics_u32(reg, MP_METRIC_GAUGE, "micropay_broker_db_connections",
		       "Connections the pool keeps ([db] pool).", NULL, &s->connections);
	mp_metrics_u32(reg, MP_METRIC_GAUGE, "micropay_broker_db_connections_up",
		       "Pool connections with a ready session.", NULL, &s->connections_up);
	mp_metrics_u32(reg, MP_METRIC_GAUGE, "micropay_broker_db_queue",
		       "Requests waiting for a pool connection.", NULL, &s->queued);
	mp_metrics_u32(reg, MP_METRIC_GAUGE, "micropay_broker_db_queue_max",
		       "The most requests that may wait ([db] max_queue).", NULL, &s->max_queue);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_reconnect_attempts_total",
		       "Connection attempts after a connection's first (the pool's retries).", NULL,
		       &s->reconnect_attempts);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_reconnects_total",
		       "Reconnection attempts that ended with a ready session.", NULL,
		       &s->reconnects);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_connections_lost_total",
		       "Ready connections lost.", NULL, &s->connections_lost);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_requests_expired_total",
		       "Requests answered timed out while queued.", NULL, &s->requests_expired);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_requests_refused_total",
		       "Requests refused: the queue was full.", NULL, &s->requests_refused);
	mp_metrics_u64(reg, MP_METRIC_COUNTER, "micropay_broker_db_outcome_unknown_total",
		       "Requests whose connection died in flight (answered outcome unknown; the "
		       "caller may retry verbatim).",
		       NULL, &s->outcome_unknown);
	pool->rtt = mp_metrics_histogram(
	    reg, "micropay_broker_db_round_trip_seconds",
	    "Time from sending a statement to its last result, per request that got an answer.",
	    NULL, db_rtt_bounds, sizeof(db_rtt_bounds) / sizeof(db_rtt_bounds[0]));
}
