/* The admin methods every daemon answers the same way: `reload` (what SIGHUP does) and
 * `shutdown` (what SIGTERM does). Each daemon's method table names its own handler, which
 * passes its reload and drain handles here. */
#pragma once

struct mp_admin_req;
struct mp_drain;
struct mp_reload;

/* Answer {"stopping": true}, then start the graceful drain. */
void mp_admin_answer_shutdown(struct mp_admin_req *req, struct mp_drain *drain);
/* Reload now: {"reloaded": true, "log_level": ...}, or FAILED with why (nothing changed). */
void mp_admin_answer_reload(struct mp_admin_req *req, struct mp_reload *reload);
