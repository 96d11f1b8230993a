/* Asynchronous PostgreSQL on the event loop: a small pool of non-blocking libpq connections,
 * each running one prepared statement at a time. A query's callback runs only after the whole
 * implicit transaction has ended: every result read up to PQgetResult's NULL, none an error.
 * A result row is not a commit (PROTOCOL.md section 5). */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct db_pool;

/* res is the statement's tuples result on success, NULL on failure (error says why). The
 * result is freed after the callback returns. */
typedef void (*db_done_fn)(const PGresult *res, const char *error, void *arg);

struct db_statement {
	const char *name;
	const char *sql;
	int nparams;
};

/* Connect size connections and prepare the statements (NULL-terminated table) on each. */
struct db_pool *db_pool_open(struct event_base *base, const char *conninfo, unsigned size,
			     const struct db_statement *statements);
void db_pool_close(struct db_pool *pool);
unsigned db_pool_queued(const struct db_pool *pool);

/* brokerd's prepared statements (db_statements.c). */
extern const struct db_statement broker_statements[];

/* Parameters for one call: bytea travel in binary, everything else as text. */
#define DB_MAX_PARAMS 24
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

/* Queue a prepared statement; parameters are copied. Returns -1 if it could not be queued. */
int db_call(struct db_pool *pool, const char *statement, const struct db_params *params,
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
