#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin_builtin.h"
#include "admin_request.h"
#include "log.h"
#include "peercred.h"
#include "util.h"

#define ADMIN_MAX_LINE (1u << 20)

struct mp_admin {
	struct evconnlistener *evl;
	const struct mp_admin_method *methods;
	void *ctx;
	char *path;
	struct mp_peer_policy policy;
	struct admin_conn *conns; /* open connections: mp_admin_close closes them */
};

struct admin_conn {
	struct bufferevent *bev;
	struct mp_admin *admin;
	unsigned refs;
	bool closed;
	struct admin_conn *prev, *next; /* the admin socket's open connections */
};

struct mp_admin_req {
	struct admin_conn *conn; /* NULL: a local request (mp_admin_req_local) */
	json_t *id;
	const char *method;
	bool progress; /* the client asked for progress lines */
	mp_admin_local_fn local;
	void *local_arg;
};

struct mp_admin_req *mp_admin_req_local(const char *method, mp_admin_local_fn answer, void *arg)
{
	struct mp_admin_req *req = calloc(1, sizeof(*req));
	if (req)
		*req = (struct mp_admin_req){.method = method, .local = answer, .local_arg = arg};
	return req;
}

/* Out of line: GCC cannot follow the reference count and warns of a use after free. */
__attribute__((noinline)) static void conn_unref(struct admin_conn *c)
{
	if (--c->refs == 0)
		free(c);
}

static void conn_close(struct admin_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->admin->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	conn_unref(c);
}

static void send_json(struct admin_conn *c, json_t *msg)
{
	if (c->closed)
		return;
	char *text = json_dumps(msg, JSON_COMPACT);
	if (!text) {
		log_err("admin: cannot encode a reply; closing the connection");
		conn_close(c);
		return;
	}
	if (evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\n", text) < 0) {
		log_err("admin: cannot queue a reply (out of memory); closing the connection");
		conn_close(c);
	}
	free(text);
}

static void finish(struct mp_admin_req *req, json_t *msg)
{
	if (req->local) {
		req->local(req->local_arg, msg);
		json_decref(msg);
		free(req);
		return;
	}
	json_object_set(msg, "id", req->id ? req->id : json_null());
	json_object_set_new(msg, "version", json_integer(MP_ADMIN_PROTOCOL_VERSION));
	send_json(req->conn, msg);
	json_decref(msg);
	json_decref(req->id);
	conn_unref(req->conn);
	free(req);
}

void mp_admin_progress(struct mp_admin_req *req, json_t *progress)
{
	if (req->progress && progress) {
		json_t *msg = json_pack("{s:O,s:i,s:O}", "id", req->id ? req->id : json_null(),
					"version", MP_ADMIN_PROTOCOL_VERSION, "progress", progress);
		if (msg)
			send_json(req->conn, msg);
		json_decref(msg);
	}
	json_decref(progress);
}

void mp_admin_reply(struct mp_admin_req *req, json_t *result)
{
	if (!result)
		result = json_object();
	finish(req, json_pack("{s:o}", "result", result));
}

static json_t *error_json(int code, const char *param, const char *msg)
{
	return json_pack("{s:i,s:s,s:s?,s:s}", "code", code, "type", mp_admin_error_name(code),
			 "param", param, "message", msg);
}

static void fail_v(struct mp_admin_req *req, int code, const char *param, const char *fmt,
		   va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_info("admin %s: failed: %s", req->method, msg);
	finish(req, json_pack("{s:o}", "error", error_json(code, param, msg)));
}

void mp_admin_fail(struct mp_admin_req *req, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(req, code, NULL, fmt, ap);
	va_end(ap);
}

void mp_admin_fail_param(struct mp_admin_req *req, int code, const char *param, const char *fmt,
			 ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(req, code, param, fmt, ap);
	va_end(ap);
}

const char *mp_admin_error_name(int code)
{
	switch (code) {
	case MP_ADMIN_PARSE:
		return "PARSE";
	case MP_ADMIN_BAD_REQUEST:
		return "BAD_REQUEST";
	case MP_ADMIN_NO_METHOD:
		return "NO_METHOD";
	case MP_ADMIN_BAD_PARAMS:
		return "BAD_PARAMS";
	case MP_ADMIN_INTERNAL:
		return "INTERNAL";
	case MP_ADMIN_VERSION:
		return "VERSION";
	case MP_ADMIN_REFUSED:
		return "REFUSED";
	case MP_ADMIN_FAILED:
		return "FAILED";
	case MP_ADMIN_UNAVAILABLE:
		return "UNAVAILABLE";
	}
	return "ERROR";
}

const struct mp_admin_method *mp_admin_daemon_methods(const struct mp_admin *a)
{
	return a->methods;
}

const char *mp_admin_method_name(const struct mp_admin_req *req)
{
	return req->method;
}

/* An answer sent before any method runs (no request object yet). */
static void reply_early_error(struct admin_conn *c, json_t *id, int code, const char *param,
			      const char *msg)
{
	log_info("admin: request refused: %s", msg);
	json_t *out = json_pack("{s:O?,s:i,s:o}", "id", id, "version", MP_ADMIN_PROTOCOL_VERSION,
				"error", error_json(code, param, msg));
	send_json(c, out);
	json_decref(out);
}

/* The request line is checked (admin_request.h) before its method runs; a refusal is answered
 * at once. */
static void dispatch(struct admin_conn *c, const char *line)
{
	struct mp_admin_request r;
	struct mp_admin_refusal why;
	if (!mp_admin_request_parse(line, c->admin->methods, &r, &why)) {
		reply_early_error(c, why.id, why.code, why.param[0] ? why.param : NULL,
				  why.message);
		mp_admin_request_free(&r);
		return;
	}
	struct mp_admin_req *req = calloc(1, sizeof(*req));
	if (!req) {
		reply_early_error(c, r.id, MP_ADMIN_INTERNAL, NULL, "out of memory");
		mp_admin_request_free(&r);
		return;
	}
	req->conn = c;
	c->refs++;
	req->id = json_incref(r.id);
	req->method = r.method->name;
	req->progress = r.progress;
	r.method->fn(req, r.params, r.builtin ? (void *)c->admin : c->admin->ctx);
	mp_admin_request_free(&r);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct admin_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	c->refs++;
	while (!c->closed) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		if (!line) {
			if (evbuffer_get_length(in) > ADMIN_MAX_LINE) {
				log_warn("admin: request line above %u bytes; closing",
					 ADMIN_MAX_LINE);
				conn_close(c);
			}
			break;
		}
		if (len > 0)
			dispatch(c, line);
		free(line);
	}
	conn_unref(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(arg);
}

/* Tell a refused peer why (one line, never blocking: a fresh socket's buffer is empty), then
 * close. mp_peer_allowed logged it. */
static void refuse_peer(evutil_socket_t fd)
{
	char line[256];
	int len = snprintf(line, sizeof(line),
			   "{\"id\":null,\"version\":%d,\"error\":{\"code\":%d,\"type\":\"%s\","
			   "\"message\":\"caller refused: not root, not the daemon's user, not a "
			   "member of its group or of the admin group\"}}\n",
			   MP_ADMIN_PROTOCOL_VERSION, MP_ADMIN_REFUSED,
			   mp_admin_error_name(MP_ADMIN_REFUSED));
	if (len > 0 && (size_t)len < sizeof(line) &&
	    send(fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) != len)
		log_info("admin: could not tell the refused peer: %s", strerror(errno));
	evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct mp_admin *a = arg;
	if (!mp_peer_allowed(fd, &a->policy)) {
		refuse_peer(fd);
		return;
	}
	struct admin_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev =
	    c ? bufferevent_socket_new(evconnlistener_get_base(evl), fd, BEV_OPT_CLOSE_ON_FREE)
	      : NULL;
	if (!bev) {
		log_err("admin: out of memory accepting a connection");
		free(c);
		evutil_closesocket(fd);
		return;
	}
	*c = (struct admin_conn){bev, a, 1, false, NULL, a->conns};
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	bufferevent_setcb(bev, on_read, NULL, on_event, c);
	if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0) {
		log_err("admin: cannot watch a new connection; dropping it");
		conn_close(c);
	}
}

/* Mode 0660, and the admin group's if one is configured: the file system admits its members
 * (SO_PEERCRED alone cannot let in a group the socket file keeps out). */
static bool socket_permissions(const char *path, const struct mp_peer_policy *policy)
{
	if (chmod(path, 0660) != 0) {
		log_err("admin: chmod 0660 %s: %s", path, strerror(errno));
		return false;
	}
	if (policy->has_group && chown(path, (uid_t)-1, policy->group) != 0) {
		log_err("admin: cannot give %s to the admin group %u: %s (the daemon must be root "
			"or a member of that group)",
			path, (unsigned)policy->group, strerror(errno));
		return false;
	}
	return true;
}

struct mp_admin *mp_admin_open(struct event_base *base, const char *path, const char *group,
			       const struct mp_admin_method *methods, void *ctx)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	gid_t gid = 0;
	char err[256];
	if (group && !mp_group_resolve(group, &gid, err, sizeof(err))) {
		log_err("admin: %s", err);
		return NULL;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_err("admin: socket path too long: %s", path);
		return NULL;
	}
	strcpy(sun.sun_path, path);
	if (unlink(path) != 0 && errno != ENOENT) {
		log_err("admin: cannot remove stale socket %s: %s", path, strerror(errno));
		return NULL;
	}
	struct mp_admin *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->methods = methods;
	a->ctx = ctx;
	a->path = strdup(path);
	a->policy = mp_peer_policy_self(group ? &gid : NULL);
	mode_t old = umask(0117);
	a->evl = evconnlistener_new_bind(base, on_accept, a, LEV_OPT_CLOSE_ON_FREE, 16,
					 (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (!a->evl || !a->path) {
		log_err("admin: cannot listen on %s: %s", path, strerror(errno));
		free(a->path);
		free(a);
		return NULL;
	}
	if (!socket_permissions(path, &a->policy)) {
		mp_admin_close(a);
		return NULL;
	}
	log_info("admin: listening on %s%s%s", path, group ? ", admin group " : "",
		 group ? group : "");
	return a;
}

void mp_admin_close(struct mp_admin *a)
{
	if (!a)
		return;
	evconnlistener_free(a->evl);
	/* Requests still being answered hold their connection: it is freed with the last. */
	while (a->conns)
		conn_close(a->conns);
	unlink(a->path);
	free(a->path);
	free(a);
}

json_t *mp_json_hex(const uint8_t *data, size_t len)
{
	char *hex = malloc(2 * len + 1);
	if (!hex)
		return NULL;
	mp_hex_encode(data, len, hex);
	json_t *out = json_string(hex);
	free(hex);
	return out;
}

bool mp_admin_param_str(struct mp_admin_req *req, json_t *params, const char *key, const char **out,
			bool required)
{
	json_t *v = json_object_get(params, key);
	if (!v && !required) {
		*out = NULL;
		return true;
	}
	if (!json_is_string(v)) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, key,
				    "parameter '%s' must be a string", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

bool mp_admin_param_u64(struct mp_admin_req *req, json_t *params, const char *key, uint64_t *out,
			bool required)
{
	json_t *v = json_object_get(params, key);
	if (!v && !required)
		return true;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return true;
	}
	if (json_is_string(v)) { /* "123": large amounts travel as strings */
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		unsigned long long x = strtoull(s, &end, 10);
		if (*s >= '0' && *s <= '9' && !*end && !errno) {
			*out = x;
			return true;
		}
	}
	mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, key,
			    "parameter '%s' must be a non-negative integer", key);
	return false;
}

bool mp_admin_param_id(struct mp_admin_req *req, json_t *params, const char *key, uint8_t *out,
		       size_t len)
{
	json_t *v = json_object_get(params, key);
	char digits[32];
	const char *hex = json_string_value(v);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		/* mpctl sends digit-only values as integers: take the digits back. */
		snprintf(digits, sizeof(digits), "%lld", (long long)json_integer_value(v));
		hex = digits;
	}
	if (!hex || strlen(hex) != 2 * len || !mp_hex_decode(hex, out, len)) {
		mp_admin_fail_param(req, MP_ADMIN_BAD_PARAMS, key,
				    "parameter '%s' must be %zu hex digits", key, 2 * len);
		return false;
	}
	return true;
}
