/* Run-time reload, on SIGHUP or the admin method `reload`: the daemon re-reads what may change
 * without a restart (its TLS certificate and key, the CA, the log level) from its configuration
 * file. Connections already open are kept and keep the certificate they were accepted with;
 * new connections get the new one. A reload that fails changes nothing and says why.
 *
 *   SERVING --SIGHUP | admin reload--> RELOADING: RELOADING=1 (with MONOTONIC_USEC)
 *   RELOADING --hook succeeded--> SERVING: READY=1, STATUS= (logged "reloaded")
 *   RELOADING --hook failed--> SERVING with the old settings: READY=1, STATUS= (logged why)
 *
 * The hook runs on the loop thread and reads a few small files: it does not wait on a peer. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct mp_reload;
struct mp_service;

/* Apply the configuration at path again; false with err (nothing changed) on failure. */
typedef bool (*mp_reload_fn)(void *ctx, char *err, size_t errlen);

/* Watch SIGHUP. NULL (logged) on failure. */
struct mp_reload *mp_reload_new(struct event_base *base, struct mp_service *service,
				mp_reload_fn fn, void *ctx);
/* Reload now (the admin method): true, or false with the reason in err. */
bool mp_reload_run(struct mp_reload *r, const char *trigger, char *err, size_t errlen);
/* Reloads done and failed since start. */
void mp_reload_counts(const struct mp_reload *r, unsigned *done, unsigned *failed);
void mp_reload_free(struct mp_reload *r);
