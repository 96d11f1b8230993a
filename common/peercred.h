/* Who may use an admin socket: the peer's credentials as the kernel recorded them when it
 * connected (SO_PEERCRED: pid, uid, primary gid; SO_PEERGROUPS: supplementary groups). Nothing
 * here asks the user database, so nothing blocks the event loop. See admin.h for the rule. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct mp_peer_policy {
	uid_t uid;	/* the daemon's effective uid */
	gid_t gid;	/* the daemon's effective gid */
	bool has_group; /* an admin group is configured */
	gid_t group;	/* ... this one */
};

/* The policy of this process, with the optional admin group. */
struct mp_peer_policy mp_peer_policy_self(const gid_t *group);

/* True if the peer on the connected Unix socket fd may connect; a refusal or an unreadable
 * credential is logged with what the kernel reported. */
bool mp_peer_allowed(int fd, const struct mp_peer_policy *policy);

/* A group name, or a decimal gid (it need not have a name), into a gid. Start-up only: a name
 * is looked up in the group database, which may block. */
bool mp_group_resolve(const char *group, gid_t *out, char *err, size_t errlen);
