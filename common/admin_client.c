/* Blocking client of the admin socket, for mpctl and the tests: one request, one answer, every
 * step under one deadline.
 *
 *   connect (non-blocking, poll) -> send the request line -> read a line -> check its version
 *   -> result | error;  a progress line (asked for by mp_admin_call_progress) -> given to the
 *   caller, the deadline starts again -> read the next line
 *
 * Outcomes (admin.h): DOWN when no socket or nobody listens, REFUSED when the file system or
 * the daemon's credential check refuses the caller, TIMEOUT when the deadline passes,
 * PROTOCOL for an answer of another version or none, FAILED for an error answer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"

#define ANSWER_MAX (64u << 20) /* an answer longer than this is not one */

struct call {
	int fd;
	int64_t deadline_ms; /* monotonic; 0: none */
	struct mp_admin_answer *out;
	char *buf; /* lines read: bytes after the last line taken wait here */
	size_t len, cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(struct call *c, enum mp_admin_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct call *c, enum mp_admin_outcome outcome, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->out->message, sizeof(c->out->message), fmt, ap);
	va_end(ap);
	c->out->outcome = outcome;
}

/* Wait for events on the socket until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_for(struct call *c, short events)
{
	for (;;) {
		int timeout = -1;
		if (c->deadline_ms) {
			int64_t left = c->deadline_ms - now_ms();
			if (left <= 0)
				return 0;
			timeout = left > 3600000 ? 3600000 : (int)left;
		}
		struct pollfd p = {c->fd, events, 0};
		int n = poll(&p, 1, timeout);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static bool connect_unix(struct call *c, const char *path, int timeout_ms)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		say(c, MP_CALL_DOWN, "%s: socket path too long", path);
		return false;
	}
	strcpy(sun.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		say(c, MP_CALL_DOWN, "cannot create a socket: %s", strerror(errno));
		return false;
	}
	int err;
	/* A Unix socket whose daemon's backlog is full refuses with EAGAIN (nothing is in
	 * progress): try again every 10 ms until the deadline. */
	for (;;) {
		if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return true;
		err = errno;
		if (err == EINTR)
			continue;
		if (err != EAGAIN)
			break;
		if (c->deadline_ms && now_ms() >= c->deadline_ms) {
			say(c, MP_CALL_TIMEOUT, "%s: not accepting connections within %d ms", path,
			    timeout_ms);
			return false;
		}
		poll(NULL, 0, 10);
	}
	if (err == EACCES || err == EPERM)
		say(c, MP_CALL_REFUSED,
		    "%s: permission denied (not the daemon's user, not in its group or admin "
		    "group)",
		    path);
	else
		say(c, MP_CALL_DOWN, "cannot connect to %s (is the daemon running?): %s", path,
		    strerror(err));
	return false;
}

static bool send_all(struct call *c, const char *buf, size_t len, int timeout_ms)
{
	while (len) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			int ready = wait_for(c, POLLOUT);
			if (ready == 0) {
				say(c, MP_CALL_TIMEOUT, "the daemon took no request within %d ms",
				    timeout_ms);
				return false;
			}
			if (ready > 0)
				continue;
		}
		/* A refused caller finds the socket closed: its answer may still be readable. */
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return true;
		say(c, MP_CALL_PROTOCOL, "cannot send the request: %s",
		    n < 0 ? strerror(errno) : "nothing sent");
		return false;
	}
	return true;
}

/* The next line, malloc'd; NULL with the outcome said. Bytes read past it stay in c->buf. */
static char *take_line(struct call *c)
{
	char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
	if (!nl)
		return NULL;
	size_t n = (size_t)(nl - c->buf);
	char *line = malloc(n + 1);
	if (!line)
		return NULL;
	memcpy(line, c->buf, n);
	line[n] = '\0';
	c->len -= n + 1;
	memmove(c->buf, nl + 1, c->len);
	return line;
}

static char *read_line(struct call *c, int timeout_ms)
{
	for (;;) {
		char *line = take_line(c);
		if (line)
			return line;
		if (c->len + 1 >= c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 4096;
			char *bigger = cap <= ANSWER_MAX ? realloc(c->buf, cap) : NULL;
			if (!bigger)
				break;
			c->buf = bigger;
			c->cap = cap;
		}
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			int ready = wait_for(c, POLLIN);
			if (ready == 0) {
				say(c, MP_CALL_TIMEOUT, "no answer within %d ms", timeout_ms);
				return NULL;
			}
			if (ready > 0)
				continue;
		}
		if (n <= 0) {
			say(c, MP_CALL_PROTOCOL,
			    "the daemon closed the connection without an answer");
			return NULL;
		}
		c->len += (size_t)n;
	}
	say(c, MP_CALL_PROTOCOL, "answer too long or out of memory");
	return NULL;
}

/* A progress line (version checked like an answer): given to fn; true. */
static bool take_progress(const char *line, mp_admin_progress_fn fn, void *arg)
{
	json_t *msg = fn ? json_loads(line, 0, NULL) : NULL;
	json_t *progress = json_object_get(msg, "progress");
	json_t *version = json_object_get(msg, "version");
	bool is = json_is_object(progress) && json_is_integer(version) &&
		  json_integer_value(version) == MP_ADMIN_PROTOCOL_VERSION;
	if (is)
		fn(arg, progress);
	json_decref(msg);
	return is;
}

static void take_answer(struct call *c, const char *line)
{
	json_error_t jerr;
	json_t *reply = json_loads(line, 0, &jerr);
	if (!json_is_object(reply)) {
		say(c, MP_CALL_PROTOCOL, "unparsable answer: %s",
		    reply ? "not an object" : jerr.text);
		json_decref(reply);
		return;
	}
	json_t *version = json_object_get(reply, "version");
	json_t *error = json_object_get(reply, "error");
	json_t *result = json_object_get(reply, "result");
	if (!json_is_integer(version) || json_integer_value(version) != MP_ADMIN_PROTOCOL_VERSION) {
		say(c, MP_CALL_PROTOCOL,
		    "the daemon answered in admin protocol version %lld; this mpctl speaks version "
		    "%d (use the mpctl of the daemon's build)",
		    json_is_integer(version) ? (long long)json_integer_value(version) : -1LL,
		    MP_ADMIN_PROTOCOL_VERSION);
	} else if (json_is_object(error)) {
		long long code = (long long)json_integer_value(json_object_get(error, "code"));
		say(c, code == MP_ADMIN_REFUSED ? MP_CALL_REFUSED : MP_CALL_FAILED,
		    "error %lld %s: %s", code,
		    json_string_value(json_object_get(error, "type")) ?: "ERROR",
		    json_string_value(json_object_get(error, "message")) ?: "(no message)");
		c->out->error = json_incref(error);
	} else if (result) {
		c->out->outcome = MP_CALL_OK;
		c->out->result = json_incref(result);
	} else {
		say(c, MP_CALL_PROTOCOL, "the answer has neither result nor error");
	}
	json_decref(reply);
}

void mp_admin_call_progress(const char *path, const char *method, json_t *params, int timeout_ms,
			    mp_admin_progress_fn fn, void *arg, struct mp_admin_answer *out)
{
	*out = (struct mp_admin_answer){0};
	struct call c = {-1, timeout_ms > 0 ? now_ms() + timeout_ms : 0, out, NULL, 0, 0};
	if (!connect_unix(&c, path, timeout_ms))
		goto done;
	json_t *req =
	    json_pack("{s:i,s:i,s:s,s:o}", "id", 1, "version", MP_ADMIN_PROTOCOL_VERSION, "method",
		      method, "params", params ? json_incref(params) : json_object());
	if (req && fn)
		json_object_set_new(req, "progress", json_true());
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text) {
		say(&c, MP_CALL_PROTOCOL, "cannot encode the request");
		goto done;
	}
	size_t len = strlen(text);
	text[len] = '\n'; /* json_dumps' terminator: the line is sent without it */
	bool sent = send_all(&c, text, len + 1, timeout_ms);
	free(text);
	char *line;
	while (sent && (line = read_line(&c, timeout_ms))) {
		bool progress = take_progress(line, fn, arg);
		if (!progress)
			take_answer(&c, line);
		free(line);
		if (!progress)
			break;
		if (timeout_ms > 0)
			c.deadline_ms = now_ms() + timeout_ms;
	}
done:
	free(c.buf);
	if (c.fd >= 0)
		close(c.fd);
}

void mp_admin_call_timed(const char *path, const char *method, json_t *params, int timeout_ms,
			 struct mp_admin_answer *out)
{
	mp_admin_call_progress(path, method, params, timeout_ms, NULL, NULL, out);
}

void mp_admin_answer_free(struct mp_admin_answer *a)
{
	json_decref(a->result);
	json_decref(a->error);
	a->result = a->error = NULL;
}

json_t *mp_admin_call(const char *path, const char *method, json_t *params, char *err,
		      size_t errlen)
{
	struct mp_admin_answer a;
	mp_admin_call_timed(path, method, params, 600000, &a);
	if (a.outcome != MP_CALL_OK)
		snprintf(err, errlen, "%s", a.message);
	json_t *result = a.result;
	a.result = NULL;
	mp_admin_answer_free(&a);
	return result;
}
