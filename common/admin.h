/* JSON-lines admin socket: {"id":1,"version":1,"method":"status","params":{...}} ->
 * {"id":1,"version":1,"result":{...}} or
 * {"id":1,"version":1,"error":{"code":..,"type":..,"param":..?,"message":..}}.
 * Before a handler runs, the version, the method and the declared parameters are checked
 * (each refusal answered with a typed error). Handlers may answer later (after a database or
 * network call). Besides its daemon's table every socket answers help and log.level
 * (admin_builtin.h).
 *
 * Who may connect: the socket file has mode 0660 and belongs to the daemon's user and to the
 * configured admin group (else the daemon's group), so the file system lets in only those; then
 * each accepted peer's credentials, as the kernel recorded them at connect (SO_PEERCRED for the
 * uid and primary gid, SO_PEERGROUPS for the supplementary groups), must be one of:
 *   - root (uid 0) or the daemon's own effective uid;
 *   - a process holding the daemon's effective gid, as primary or supplementary group;
 *   - a process holding the configured admin group ([admin] group), primary or supplementary.
 * Everyone else is refused at accept with a log line naming pid, uid and gid. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mp_admin;
struct mp_admin_req;

typedef void (*mp_admin_fn)(struct mp_admin_req *req, json_t *params, void *ctx);

/* The admin protocol's version: every request and every answer carries it ("version"); a
 * request of another version (or none) is refused with MP_ADMIN_VERSION before anything else,
 * and the client refuses an answer of another version. Raise it when a change would make an
 * older mpctl or daemon misread a message. */
#define MP_ADMIN_PROTOCOL_VERSION 1

/* What a parameter's JSON value may be (checked before the method runs):
 *   STRING: a string;  UINT: a non-negative integer, or a string of decimal digits;
 *   HEX: a string of hex digits, or a non-negative integer (mpctl sends digit-only values as
 *   integers);  BOOL: true or false;  JSON: any JSON value. */
enum mp_admin_type {
	MP_ADMIN_T_STRING,
	MP_ADMIN_T_UINT,
	MP_ADMIN_T_HEX,
	MP_ADMIN_T_BOOL,
	MP_ADMIN_T_JSON,
};

/* One declared parameter. fallback: what an absent optional parameter means (shown by help;
 * NULL: nothing to say). */
struct mp_admin_param {
	const char *name;
	enum mp_admin_type type;
	bool required;
	const char *fallback;
	const char *help;
};

/* A method: its handler, a one-line description and its parameters (an array ending with
 * {NULL}; NULL: none). A request naming a parameter not declared here, or lacking a required
 * one, or giving one of the wrong type, is refused (MP_ADMIN_BAD_PARAMS naming it) before fn
 * runs. */
struct mp_admin_method {
	const char *name;
	mp_admin_fn fn;
	const char *help;
	const struct mp_admin_param *params;
};

/* A parameter list for a method table: MP_ADMIN_PARAMS({"channel", MP_ADMIN_T_HEX, true,
 * NULL, "the channel id"}, ...). */
#define MP_ADMIN_PARAMS(...) ((const struct mp_admin_param[]){__VA_ARGS__, {0}})

enum mp_admin_error {
	MP_ADMIN_PARSE = -32700,
	MP_ADMIN_BAD_REQUEST = -32600,
	MP_ADMIN_NO_METHOD = -32601,
	MP_ADMIN_BAD_PARAMS = -32602,
	MP_ADMIN_INTERNAL = -32603,
	MP_ADMIN_VERSION = -32001, /* the request's protocol version is not this daemon's */
	MP_ADMIN_REFUSED = -32002, /* the caller's credentials are not admitted */
	MP_ADMIN_FAILED = -1,	   /* the operation itself failed; message says why */
	MP_ADMIN_UNAVAILABLE = -2,
};

/* The error's type as it appears in answers ("error": {"code", "type", "message"}). */
const char *mp_admin_error_name(int code);

/* methods ends with {NULL}. The table must outlive the admin socket. group: the admin group
 * (a group name or a numeric gid), or NULL for none. NULL (logged) on failure. */
struct mp_admin *mp_admin_open(struct event_base *base, const char *path, const char *group,
			       const struct mp_admin_method *methods, void *ctx);
void mp_admin_close(struct mp_admin *a);

/* A request made inside the daemon (no client): the method runs as for a client, and its one
 * answer, {"result": ...} or {"error": {...}} (still owned by the caller of answer), goes to
 * answer(arg, msg) instead of a socket; progress lines are dropped. NULL when out of memory. */
typedef void (*mp_admin_local_fn)(void *arg, json_t *msg);
struct mp_admin_req *mp_admin_req_local(const char *method, mp_admin_local_fn answer, void *arg);

/* Answer a request (steals result). Each request is answered exactly once. */
void mp_admin_reply(struct mp_admin_req *req, json_t *result);
/* A long method's progress before its answer: {"id", "version", "progress": progress} (steals
 * progress; its "line" is what mpctl prints), sent only if the request asked for progress
 * lines with "progress": true at its top level (clients that did not ask never see one). */
void mp_admin_progress(struct mp_admin_req *req, json_t *progress);
void mp_admin_fail(struct mp_admin_req *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *mp_admin_method_name(const struct mp_admin_req *req);
/* Like mp_admin_fail, naming the parameter at fault ("param" in the answer). */
void mp_admin_fail_param(struct mp_admin_req *req, int code, const char *param, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));

/* Bytes as a lower-case hex JSON string. */
json_t *mp_json_hex(const uint8_t *data, size_t len);

/* Parameter helpers: on failure they answer BAD_PARAMS and return false. */
bool mp_admin_param_str(struct mp_admin_req *req, json_t *params, const char *key, const char **out,
			bool required);
bool mp_admin_param_u64(struct mp_admin_req *req, json_t *params, const char *key, uint64_t *out,
			bool required);
bool mp_admin_param_id(struct mp_admin_req *req, json_t *params, const char *key, uint8_t *out,
		       size_t len);

/* Client side (mpctl, tests). */
enum mp_admin_outcome {
	MP_CALL_OK,	  /* the result */
	MP_CALL_FAILED,	  /* the daemon answered an error (error holds it) */
	MP_CALL_DOWN,	  /* no socket, nobody listening */
	MP_CALL_REFUSED,  /* the caller is not admitted (credentials or file permissions) */
	MP_CALL_TIMEOUT,  /* no answer before the deadline */
	MP_CALL_PROTOCOL, /* an answer of another version, unparsable, or none */
};

struct mp_admin_answer {
	enum mp_admin_outcome outcome;
	json_t *result;	    /* MP_CALL_OK: owned by the caller */
	json_t *error;	    /* MP_CALL_FAILED, MP_CALL_REFUSED when the daemon said so: owned */
	char message[1024]; /* every outcome but OK: one line saying what happened */
};

/* One call with a deadline of timeout_ms on connecting, sending and answering (0: none). */
void mp_admin_call_timed(const char *path, const char *method, json_t *params, int timeout_ms,
			 struct mp_admin_answer *out);
/* The same, asking for progress lines: each is given to fn (borrowed) and starts the deadline
 * of timeout_ms again, so a long method that keeps reporting is waited for. */
typedef void (*mp_admin_progress_fn)(void *arg, json_t *progress);
void mp_admin_call_progress(const char *path, const char *method, json_t *params, int timeout_ms,
			    mp_admin_progress_fn fn, void *arg, struct mp_admin_answer *out);
void mp_admin_answer_free(struct mp_admin_answer *a);

/* One blocking call (tests; a deadline of 10 minutes). NULL with err filled on any failure; a
 * daemon error comes back as NULL with "error CODE TYPE: message" in err. */
json_t *mp_admin_call(const char *path, const char *method, json_t *params, char *err,
		      size_t errlen);
