/* JSON-lines admin socket: {"id":1,"method":"status","params":{...}} ->
 * {"id":1,"result":{...}} or {"id":1,"error":{"code":..,"message":..}}.
 * Handlers may answer later (after a database or network call).
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

struct mp_admin_method {
	const char *name;
	mp_admin_fn fn;
	const char *help;
};

enum mp_admin_error {
	MP_ADMIN_PARSE = -32700,
	MP_ADMIN_BAD_REQUEST = -32600,
	MP_ADMIN_NO_METHOD = -32601,
	MP_ADMIN_BAD_PARAMS = -32602,
	MP_ADMIN_INTERNAL = -32603,
	MP_ADMIN_FAILED = -1, /* the operation itself failed; message says why */
	MP_ADMIN_UNAVAILABLE = -2,
};

/* methods ends with {NULL}. The table must outlive the admin socket. group: the admin group
 * (a group name or a numeric gid), or NULL for none. NULL (logged) on failure. */
struct mp_admin *mp_admin_open(struct event_base *base, const char *path, const char *group,
			       const struct mp_admin_method *methods, void *ctx);
void mp_admin_close(struct mp_admin *a);

/* Answer a request (steals result). Each request is answered exactly once. */
void mp_admin_reply(struct mp_admin_req *req, json_t *result);
void mp_admin_fail(struct mp_admin_req *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *mp_admin_method_name(const struct mp_admin_req *req);

/* Bytes as a lower-case hex JSON string. */
json_t *mp_json_hex(const uint8_t *data, size_t len);

/* Parameter helpers: on failure they answer BAD_PARAMS and return false. */
bool mp_admin_param_str(struct mp_admin_req *req, json_t *params, const char *key, const char **out,
			bool required);
bool mp_admin_param_u64(struct mp_admin_req *req, json_t *params, const char *key, uint64_t *out,
			bool required);
bool mp_admin_param_id(struct mp_admin_req *req, json_t *params, const char *key, uint8_t *out,
		       size_t len);

/* Client side (mpctl, tests): one blocking call. NULL with err filled on any failure; a
 * daemon error comes back as NULL with "code: message" in err. */
json_t *mp_admin_call(const char *path, const char *method, json_t *params, char *err,
		      size_t errlen);
