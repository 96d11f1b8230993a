/* Graceful stop, on SIGTERM, SIGINT or the admin method `shutdown`: STOPPING=1, stop taking new
 * work, answer everything already in flight (merchantd: commit the open pay batch, so that
 * every acknowledged payment is durable), then end the event loop; the daemon exits 0. A stop
 * that is not done after [service] drain_timeout seconds ends the loop anyway, logging what was
 * left.
 *
 *   SERVING --SIGTERM | SIGINT | admin shutdown--> DRAINING: STOPPING=1, hooks->begin
 *   DRAINING --hooks->idle true (checked every 50 ms)--> DONE
 *   DRAINING --drain_timeout--> DONE (logged: what hooks->idle says is left)
 *   DRAINING --another signal--> DRAINING (logged; the deadline still holds)
 *   DONE: the loop ends after a short grace (answers just queued on the admin socket leave)
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct mp_drain;

struct mp_drain_hooks {
	/* Stop accepting and let what is in flight finish (e.g. mp_listener_drain). */
	void (*begin)(void *ctx);
	/* True once nothing is in flight; else a short description of what is, in left. */
	bool (*idle)(void *ctx, char *left, size_t len);
};

/* Watch SIGTERM and SIGINT. NULL (logged) on failure. */
struct mp_drain *mp_drain_new(struct event_base *base, const struct mp_drain_hooks *hooks,
			      void *ctx, unsigned timeout_s);
/* Start the graceful stop (does nothing once started). */
void mp_drain_start(struct mp_drain *d, const char *why);
bool mp_drain_active(const struct mp_drain *d);
/* True when the drain ended by its deadline with work left. */
bool mp_drain_timed_out(const struct mp_drain *d);
void mp_drain_free(struct mp_drain *d);
