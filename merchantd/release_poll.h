/* ForcedCloses delivered to the holder (protocol.md section 6 "Release"; docs/release.md
 * "Delivery"): every [merchant] release_poll seconds merchantd asks the broker on its
 * mutual-TLS link for the ForcedCloses of epochs it held (ForcedClosesReq). Each is verified
 * under the broker key and, for a channel we hold in that epoch, makes it CLOSED at that point
 * in the store (table closes, the same state a Close we signed leaves), so Pay, Handoff and
 * Close on it are refused from then on and redemption claims nothing more of it. */
#pragma once
#include <stdint.h>

struct merchant;
struct release_poll;

/* Polls every interval_s seconds (the first after one interval). NULL on failure (logged). */
struct release_poll *release_poll_start(struct merchant *m, uint32_t interval_s);
/* Before the store thread stops: no new poll; a write in flight completes without effect. */
void release_poll_stop(struct release_poll *p);
void release_poll_free(struct release_poll *p);
