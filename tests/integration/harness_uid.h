/* Another local user at a daemon's admin socket: a forked child drops to uid `uid` with primary
 * gid `gid` and supplementary `groups` (the caller must be root) and calls `status`. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define UID_NOBODY 65534u

/* True if the daemon answered; the test fails if the child could not drop its privileges. */
bool admin_status_as(const char *sock, uid_t uid, gid_t gid, const gid_t *groups, size_t n);
