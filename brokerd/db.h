/* Asynchronous PostgreSQL on the event loop: a small pool of non-blocking libpq connections,
 * each running one prepared statement at a time. A query's callback runs only after the whole
 * implicit transaction has ended: every result read up to PQgetResult's NULL, none an error.
 * A result row is not a commit (protocol.md section 5).
 *
 * The pool outlives PostgreSQL restarts: a lost connection is re-established on the loop
 * (PQconnectStart/PQconnectPoll, exponential backoff, forever) and its session set up again
 * (timeouts, prepared statements) before it takes work. Requests wait in a bounded queue, each
 * with a deadline; every request is answered exactly once, with a result or an error. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct event_base;
struct db_pool;

/* res is the statement's tuples result on success, NULL on failure. error then says why in
 * words fit for the client's INTERNAL answer (the pool has logged the diagnostics): a database
 * error, a request that waited past its deadline (DB_ERR_TIMED_OUT...), or a connection lost
 * while the request was in flight (DB_ERR_OUTCOME_UNKNOWN: it may have committed; a verbatim
 * retry gets the stored answer). The result and error are freed after the callback returns. A
 * callback never runs inside db_call. */
typedef void (*db_done_fn)(const PGresult *res, const char *error, void *arg);

#define DB_ERR_QUEUE_FULL     "database queue full; retry later"
#define DB_ERR_TIMED_OUT_DOWN "database unavailable: timed out waiting for a connection; retry"
#define DB_ERR_TIMED_OUT_BUSY "database busy: timed out waiting for a connection; retry"
#define DB_ERR_OUTCOME_UNKNOWN                                                                     \
	"database connection lost while the request was in flight: outcome unknown; retry "        \
	"verbatim"
#define DB_ERR_SHUTTING_DOWN "shutting down"
/* A statement cancelled by PostgreSQL (SQLSTATE 57014, query_canceled): brokerd sends no cancel
 * requests, so it is the session's statement_timeout (or an operator's pg_cancel_backend). Its
 * transaction was rolled back: nothing of it is stored. */
#define SQLSTATE_QUERY_CANCELED "57014"
#define DB_ERR_STATEMENT_TIMEOUT                                                                   \
	"database error: statement cancelled by the statement timeout (SQLSTATE 57014)"

static inline bool db_error_is_statement_timeout(const char *error)
{
	return error && strcmp(error, DB_ERR_STATEMENT_TIMEOUT) == 0;
}

struct db_statement {
	const char *name;
	const char *sql;
	int nparams;
};

struct db_pool_config {
	const char *conninfo;
	unsigned size;			/* connections */
	unsigned max_queue;		/* requests waiting for a connection */
	unsigned queue_timeout_ms;	/* a request's longest wait for a connection */
	unsigned statement_timeout_ms;	/* PostgreSQL statement_timeout of every session */
	unsigned idle_in_tx_timeout_ms; /* idle_in_transaction_session_timeout */
};

/* Figures for the metrics. */
struct db_pool_stats {
	unsigned connections;
	unsigned connections_up;
	unsigned queued;
	unsigned max_queue;
	uint64_t reconnect_attempts; /* every connection attempt but a connection's first */
	uint64_t reconnects;	     /* those that ended with the connection ready */
	uint64_t connections_lost;
	uint64_t requests_expired; /* answered DB_ERR_TIMED_OUT_* */
	uint64_t requests_refused; /* refused by db_call: DB_ERR_QUEUE_FULL */
	uint64_t outcome_unknown;  /* answered DB_ERR_OUTCOME_UNKNOWN */
};

/* Checks once, blocking (start-up only), that PostgreSQL answers and every statement of the
 * NULL-terminated table prepares, so a broken set-up fails at start with a clear message; then
 * connects the pool's connections on the loop. NULL on failure (logged). */
struct db_pool *db_pool_open(struct event_base *base, const struct db_pool_config *cfg,
			     const struct db_statement *statements);
/* Answers every pending request DB_ERR_SHUTTING_DOWN and closes the connections. */
void db_pool_close(struct db_pool *pool);
void db_pool_get_stats(const struct db_pool *pool, struct db_pool_stats *out);
/* The pool's figures as Prometheus text lines (prefix micropay_broker_db_), written to out. */
struct mp_metrics;
/* Registers the pool's gauges, counters and round-trip histogram (docs/metrics.md); the pool
 * must outlive every exposition of reg. */
void db_pool_metrics_register(struct db_pool *pool, struct mp_metrics *reg);
/* Before the registry is freed: the pool stops observing round trips. */
void db_pool_metrics_forget(struct db_pool *pool);

/* brokerd's prepared statements (db_statements.c). */
extern const struct db_statement broker_statements[];

/* Parameters for one call: bytea travel in binary, everything else as text. */
#define DB_MAX_PARAMS 32
struct db_params {
	int n;
	const char *values[DB_MAX_PARAMS];
	int lengths[DB_MAX_PARAMS];
	int formats[DB_MAX_PARAMS];
	char text[DB_MAX_PARAMS][32]; /* storage for numbers */
	bool overflow;
};

void db_param_bytes(struct db_params *p, const uint8_t *data, size_t len);
void db_param_text(struct db_params *p, const char *s); /* NULL: SQL NULL */
void db_param_u64(struct db_params *p, uint64_t v);
void db_param_i64(struct db_params *p, int64_t v);

/* Queue a prepared statement; parameters are copied. Returns NULL when queued (done will be
 * called exactly once, later), else why it was refused, in words fit for the client's INTERNAL
 * answer (DB_ERR_QUEUE_FULL, DB_ERR_SHUTTING_DOWN, ...); done is then never called. */
const char *db_call(struct db_pool *pool, const char *statement, const struct db_params *params,
		    db_done_fn done, void *arg);

/* Result helpers (text-format results). */
bool db_get_bytes(const PGresult *res, int row, const char *col, uint8_t *out, size_t len);
/* Variable-length bytea: malloc'd copy, NULL if SQL NULL. */
uint8_t *db_get_blob(const PGresult *res, int row, const char *col, size_t *len);
int64_t db_get_i64(const PGresult *res, int row, const char *col);
bool db_get_bool(const PGresult *res, int row, const char *col);
const char *db_get_text(const PGresult *res, int row, const char *col);
bool db_is_null(const PGresult *res, int row, const char *col);

/* Blocking helpers for start-up only (migrations), on a connection of their own. */
PGconn *db_connect_blocking(const char *conninfo, char *err, size_t errlen);
