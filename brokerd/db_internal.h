/* Shared between the pool (db.c: queue, deadlines, dispatch) and its connections (db_conn.c:
 * connect, session set-up, one query at a time). Not for the handlers: they use db.h. */
#pragma once
#include <event2/event.h>

#include "db.h"

#define DB_BACKOFF_MIN_MS     100u
#define DB_BACKOFF_MAX_MS     5000u
#define DB_CONNECT_TIMEOUT_MS 10000u /* one attempt: connect, settings, prepares */
#define DB_INFLIGHT_GRACE_MS  5000u  /* past statement_timeout, the connection is presumed dead */
#define DB_EXPIRY_TICK_MS     100u   /* requests expiring this close are answered together */
#define DB_DIAG_LEN	      512

struct db_query {
	char *statement;
	int n;
	char *values[DB_MAX_PARAMS];
	int lengths[DB_MAX_PARAMS];
	int formats[DB_MAX_PARAMS];
	db_done_fn done;
	void *arg;
	uint64_t deadline_ms; /* monotonic: answered DB_ERR_TIMED_OUT_* if still queued then */
	struct db_query *next;
};

enum db_conn_state { DB_DOWN, DB_CONNECTING, DB_SETUP, DB_IDLE, DB_BUSY };

struct db_conn {
	struct db_pool *pool;
	unsigned index;
	enum db_conn_state state;
	PGconn *pg;
	struct event *io; /* the socket, for what libpq waits on */
	int io_fd;	  /* what io is assigned to, -1: nothing */
	short io_what;
	struct event *timer; /* DOWN: the next attempt; otherwise the current step's deadline */
	unsigned setup_step; /* 0: session settings, k >= 1: statement k-1 */
	struct db_query *current;
	PGresult *result;	   /* the first tuples result of the current command */
	bool failed;		   /* the current command had an error result */
	char diag[DB_DIAG_LEN];	   /* its full message, for the log */
	char primary[DB_DIAG_LEN]; /* its primary message, for the client */
	char sqlstate[6];	   /* its SQLSTATE, "" if it had none */
	unsigned backoff_ms;	   /* wait before the next attempt */
	unsigned failed_attempts;  /* since the connection was last ready */
	bool attempted;		   /* made its first attempt: later ones are reconnects */
	bool reconnecting;	   /* the current attempt is a reconnect */
	uint64_t down_since_ms;
	uint64_t sent_us; /* mp_metrics_now_us() when the query in flight was sent */
};

struct db_pool {
	struct event_base *base;
	struct db_pool_config cfg;
	char *conninfo;
	const struct db_statement *statements;
	struct db_conn *conns;
	unsigned opened; /* conns initialised */
	struct db_query *head, *tail;
	struct event *queue_timer; /* at the head's deadline */
	struct event *kick;	   /* dispatch queued requests on the next loop turn */
	bool closing;
	uint64_t refused_logged_at; /* the last "queue full" log line */
	uint64_t refused_unlogged;  /* refusals since */
	struct db_pool_stats stats;
	struct mp_histogram *rtt; /* round trips (db_pool_metrics_register); NULL before */
};

uint64_t db_now_ms(void);

/* db.c */
/* Give queued requests to idle connections. */
void db_pool_dispatch(struct db_pool *pool);
/* Call the query's callback once, then free it. */
void db_query_answer(struct db_query *q, const PGresult *res, const char *error);

/* db_conn.c */
bool db_conn_init(struct db_conn *c, struct db_pool *pool, unsigned index);
/* The first connection attempt, now. */
void db_conn_start(struct db_conn *c);
/* Run q on c, which is DB_IDLE. False if c turned out dead before anything was sent: q is not
 * taken (c is then DB_DOWN). Once taken, q is answered exactly once. */
bool db_conn_run(struct db_conn *c, struct db_query *q);
/* Close; a request in flight is answered DB_ERR_SHUTTING_DOWN. */
void db_conn_free(struct db_conn *c);
