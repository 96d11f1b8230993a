/* One connection of the pool, driven by the event loop; libpq never blocks it.
 *
 *              timer                 PQconnectPoll OK          last statement prepared
 *     DOWN ------------> CONNECTING ----------------> SETUP --------------------------> IDLE
 *      ^                     |                          |                              |  ^
 *      |                     |                          |                   query taken|  |NULL
 *      |                     v                          v                              v  |result
 *      +------------- failure or deadline (logged; backoff 100 ms doubling to 5 s) --- BUSY
 *
 * - DOWN waits out the backoff; reaching IDLE resets it. Attempts go on forever.
 * - CONNECTING and SETUP share one deadline (DB_CONNECT_TIMEOUT_MS). SETUP sends, one command
 *   at a time, the session settings (statement_timeout, idle_in_transaction_session_timeout)
 *   and then PQsendPrepare of every statement: a connection takes work only once all are done.
 * - BUSY runs one query; its deadline is statement_timeout + DB_INFLIGHT_GRACE_MS (the server
 *   cancels at statement_timeout; silence past that means the link is dead). A query whose
 *   connection is lost in BUSY may have committed: it is answered DB_ERR_OUTCOME_UNKNOWN.
 * - IDLE watches the socket so that a server going away is noticed before the next query. */
#include <stdio.h>
#include <string.h>

#include "db_internal.h"
#include "log.h"
#include "metrics.h"

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* libpq messages span lines; a log line must not: whitespace runs become one space. */
static void copy_message(char *out, size_t len, const char *msg)
{
	size_t n = 0;
	bool space = true; /* drops leading whitespace */
	for (const char *p = msg && msg[0] ? msg : "no message"; *p && n + 1 < len; p++) {
		bool ws = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
		if (!ws)
			out[n++] = *p;
		else if (!space)
			out[n++] = ' ';
		space = ws;
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

static void on_notice(void *arg, const char *message)
{
	struct db_conn *c = arg;
	char text[DB_DIAG_LEN];
	copy_message(text, sizeof(text), message);
	log_info("db: connection %u: server says: %s", c->index, text);
}

static void set_timer(struct db_conn *c, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

static void unwatch(struct db_conn *c)
{
	if (c->io_fd >= 0)
		event_del(c->io);
	c->io_fd = -1;
	c->io_what = 0;
}

static void fail(struct db_conn *c, const char *why);

/* Watch libpq's socket for `what`. False if there is no socket (the session then failed). */
static bool watch(struct db_conn *c, short what)
{
	int fd = PQsocket(c->pg);
	if (fd < 0) {
		fail(c, "libpq has no socket");
		return false;
	}
	if (fd == c->io_fd && what == c->io_what)
		return true;
	unwatch(c);
	event_assign(c->io, c->pool->base, fd, what | EV_PERSIST, on_io, c);
	event_add(c->io, NULL);
	c->io_fd = fd;
	c->io_what = what;
	return true;
}

/* Close the session; schedule the next attempt. Returns the query that was in flight. */
static struct db_query *close_session(struct db_conn *c)
{
	struct db_query *q = c->current;
	c->current = NULL;
	PQclear(c->result);
	c->result = NULL;
	unwatch(c);
	PQfinish(c->pg);
	c->pg = NULL;
	c->state = DB_DOWN;
	set_timer(c, c->backoff_ms);
	c->backoff_ms =
	    c->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : c->backoff_ms * 2;
	return q;
}

/* The session failed (why: a libpq or server message). A session that was ready is lost; one
 * being opened is a failed attempt. */
static void fail(struct db_conn *c, const char *why)
{
	char text[DB_DIAG_LEN];
	copy_message(text, sizeof(text), why);
	struct db_pool *pool = c->pool;
	bool was_up = c->state == DB_IDLE || c->state == DB_BUSY;
	if (was_up) {
		pool->stats.connections_up--;
		pool->stats.connections_lost++;
		c->down_since_ms = db_now_ms();
		c->backoff_ms = DB_BACKOFF_MIN_MS;
	} else {
		c->failed_attempts++;
	}
	unsigned wait_ms = c->backoff_ms;
	struct db_query *q = close_session(c);
	if (was_up)
		log_warn("db: connection %u lost (%s)%s%s; reconnecting in %u ms", c->index, text,
			 q ? " while running " : "", q ? q->statement : "", wait_ms);
	else
		log_warn("db: connection %u: attempt %u failed: %s; next attempt in %u ms",
			 c->index, c->failed_attempts, text, wait_ms);
	if (!q)
		return;
	pool->stats.outcome_unknown++;
	log_warn("db: %s on connection %u: outcome unknown, answered so; a verbatim retry is safe",
		 q->statement, c->index);
	db_query_answer(q, NULL, DB_ERR_OUTCOME_UNKNOWN);
}

static void fail_with_pq_error(struct db_conn *c, const char *what)
{
	char why[DB_DIAG_LEN];
	snprintf(why, sizeof(why), "%s: %s", what, c->pg ? PQerrorMessage(c->pg) : "out of memory");
	fail(c, why);
}

/* Send what libpq holds; watch for writability while it cannot. False if the session failed. */
static bool flush(struct db_conn *c)
{
	int pending = PQflush(c->pg);
	if (pending < 0) {
		fail_with_pq_error(c, "sending");
		return false;
	}
	return watch(c, pending ? EV_READ | EV_WRITE : EV_READ);
}

static void attempt(struct db_conn *c)
{
	static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *const values[] = {c->pool->conninfo, "brokerd", NULL};
	c->reconnecting = c->attempted;
	if (c->attempted)
		c->pool->stats.reconnect_attempts++;
	c->attempted = true;
	c->state = DB_CONNECTING;
	c->pg = PQconnectStartParams(keys, values, 1);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		fail_with_pq_error(c, "connecting");
		return;
	}
	PQsetNoticeProcessor(c->pg, on_notice, c);
	set_timer(c, DB_CONNECT_TIMEOUT_MS);
	watch(c, EV_WRITE); /* as if PQconnectPoll had answered PGRES_POLLING_WRITING */
}

static void ready(struct db_conn *c)
{
	struct db_pool *pool = c->pool;
	evtimer_del(c->timer);
	c->state = DB_IDLE;
	pool->stats.connections_up++;
	if (c->reconnecting) {
		pool->stats.reconnects++;
		log_info("db: connection %u back after %u failed attempts (down %.1f s)", c->index,
			 c->failed_attempts, (double)(db_now_ms() - c->down_since_ms) / 1000.0);
	} else {
		log_info("db: connection %u ready", c->index);
	}
	c->failed_attempts = 0;
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	db_pool_dispatch(pool);
}

/* SETUP: send the next command, or become IDLE after the last. */
static void setup_next(struct db_conn *c)
{
	const struct db_pool *pool = c->pool;
	c->failed = false;
	int sent;
	if (c->setup_step == 0) {
		char sql[160];
		snprintf(sql, sizeof(sql),
			 "SET statement_timeout = %u; SET idle_in_transaction_session_timeout = %u",
			 pool->cfg.statement_timeout_ms, pool->cfg.idle_in_tx_timeout_ms);
		sent = PQsendQuery(c->pg, sql);
	} else {
		const struct db_statement *st = &pool->statements[c->setup_step - 1];
		if (!st->name) {
			ready(c);
			return;
		}
		sent = PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL);
	}
	if (!sent) {
		fail_with_pq_error(c, "setting up the session");
		return;
	}
	flush(c);
}

static void connected(struct db_conn *c)
{
	if (PQsetnonblocking(c->pg, 1) != 0) {
		fail_with_pq_error(c, "non-blocking mode");
		return;
	}
	c->state = DB_SETUP;
	c->setup_step = 0;
	setup_next(c);
}

/* While connecting, libpq may close its socket and open another under the same number (next
 * address, SSL fallback): the watch is renewed at every step. */
static void poll_connect(struct db_conn *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->pg);
	unwatch(c);
	switch (st) {
	case PGRES_POLLING_READING:
	case PGRES_POLLING_ACTIVE: /* unused by libpq */
		watch(c, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		watch(c, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		connected(c);
		return;
	case PGRES_POLLING_FAILED:
		fail_with_pq_error(c, "connecting");
		return;
	}
}

static void keep_result(struct db_conn *c, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !c->failed) {
		const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		char msg[DB_DIAG_LEN - 64];
		copy_message(msg, sizeof(msg), PQresultErrorMessage(r));
		snprintf(c->diag, sizeof(c->diag), "%s (SQLSTATE %s)", msg, state ? state : "none");
		copy_message(c->primary, sizeof(c->primary), primary ? primary : PQresStatus(st));
		snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
		c->failed = true;
	}
	if (st == PGRES_TUPLES_OK && !c->result)
		c->result = r;
	else
		PQclear(r);
}

/* BUSY: every result of the query has been read; answer it. */
static void query_done(struct db_conn *c)
{
	struct db_query *q = c->current;
	PGresult *res = c->result;
	c->current = NULL;
	c->result = NULL;
	c->state = DB_IDLE;
	evtimer_del(c->timer);
	if (c->pool->rtt) /* the loop thread: libpq runs on it */
		mp_histogram_observe(c->pool->rtt,
				     (double)(mp_metrics_now_us() - c->sent_us) / 1e6);
	if (!c->failed && (!res || PQresultStatus(res) != PGRES_TUPLES_OK)) {
		snprintf(c->diag, sizeof(c->diag), "no result rows");
		snprintf(c->primary, sizeof(c->primary), "no result rows");
		c->sqlstate[0] = '\0';
		c->failed = true;
	}
	if (c->failed) {
		char detail[DB_DIAG_LEN + 32];
		log_warn("db: %s on connection %u failed: %s", q->statement, c->index, c->diag);
		snprintf(detail, sizeof(detail), "database error: %s", c->primary);
		/* Told apart by its SQLSTATE, not its message, which follows the server's lc_messages */
		bool timed_out = strcmp(c->sqlstate, SQLSTATE_QUERY_CANCELED) == 0;
		db_query_answer(q, NULL, timed_out ? DB_ERR_STATEMENT_TIMEOUT : detail);
	} else {
		db_query_answer(q, res, NULL);
	}
	PQclear(res);
	db_pool_dispatch(c->pool);
}

/* The command in flight (SETUP or BUSY) has ended: PQgetResult returned NULL. */
static void command_done(struct db_conn *c)
{
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		fail(c, c->failed ? c->diag : PQerrorMessage(c->pg));
		return;
	}
	if (c->state == DB_BUSY) {
		query_done(c);
		return;
	}
	if (c->failed) {
		char why[DB_DIAG_LEN + 32];
		snprintf(why, sizeof(why), "session set-up step %u: %s", c->setup_step, c->diag);
		fail(c, why);
		return;
	}
	c->setup_step++;
	setup_next(c);
}

/* Read what has arrived. */
static void receive(struct db_conn *c)
{
	if (!PQconsumeInput(c->pg)) {
		fail_with_pq_error(c, "reading");
		return;
	}
	while ((c->state == DB_SETUP || c->state == DB_BUSY) && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			command_done(c);
			return; /* a callback may have started the next command */
		}
		keep_result(c, r);
	}
	for (PGnotify *n; c->pg && (n = PQnotifies(c->pg));)
		PQfreemem(n);
	if (c->pg && PQstatus(c->pg) == CONNECTION_BAD)
		fail_with_pq_error(c, "connection");
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	switch (c->state) {
	case DB_DOWN:
		return;
	case DB_CONNECTING:
		poll_connect(c);
		return;
	case DB_SETUP:
	case DB_IDLE:
	case DB_BUSY:
		if ((what & EV_WRITE) && !flush(c))
			return;
		if (what & EV_READ)
			receive(c);
		return;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	switch (c->state) {
	case DB_DOWN:
		attempt(c);
		return;
	case DB_CONNECTING:
	case DB_SETUP:
		fail(c, "no session within the connect deadline");
		return;
	case DB_BUSY:
		fail(c, "no answer within statement_timeout and its grace: presumed dead");
		return;
	case DB_IDLE:
		return;
	}
}

bool db_conn_run(struct db_conn *c, struct db_query *q)
{
	if (PQstatus(c->pg) != CONNECTION_OK) { /* nothing sent: q stays with the caller */
		fail_with_pq_error(c, "connection");
		return false;
	}
	c->current = q;
	c->result = NULL;
	c->failed = false;
	c->state = DB_BUSY;
	c->sent_us = mp_metrics_now_us();
	if (!PQsendQueryPrepared(c->pg, q->statement, q->n, (const char *const *)q->values,
				 q->lengths, q->formats, 0)) {
		fail_with_pq_error(c, "sending the query");
		return true;
	}
	set_timer(c, c->pool->cfg.statement_timeout_ms + DB_INFLIGHT_GRACE_MS);
	flush(c);
	return true;
}

bool db_conn_init(struct db_conn *c, struct db_pool *pool, unsigned index)
{
	*c = (struct db_conn){.pool = pool, .index = index, .state = DB_DOWN, .io_fd = -1};
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	c->io = event_new(pool->base, -1, 0, on_io, c);
	c->timer = evtimer_new(pool->base, on_timer, c);
	return c->io && c->timer;
}

void db_conn_start(struct db_conn *c)
{
	c->down_since_ms = db_now_ms();
	attempt(c);
}

void db_conn_free(struct db_conn *c)
{
	unwatch(c);
	if (c->timer)
		event_free(c->timer);
	if (c->io)
		event_free(c->io);
	struct db_query *q = c->current;
	c->current = NULL;
	PQclear(c->result);
	PQfinish(c->pg);
	if (q)
		db_query_answer(q, NULL, DB_ERR_SHUTTING_DOWN);
	*c = (struct db_conn){.io_fd = -1};
}
