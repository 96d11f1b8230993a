#include "peercred.h"

#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define GROUPS_ON_STACK 64

struct mp_peer_policy mp_peer_policy_self(const gid_t *group)
{
	struct mp_peer_policy p = {geteuid(), getegid(), group != NULL, group ? *group : 0};
	return p;
}

/* Does the peer hold gid among its supplementary groups? The kernel's list, captured at
 * connect(); a list too long for the stack is read into the heap. */
static bool peer_holds(int fd, gid_t gid, bool *readable)
{
	gid_t local[GROUPS_ON_STACK];
	gid_t *groups = local;
	socklen_t len = sizeof(local);
	*readable = true;
	int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	if (rc != 0 && errno == ERANGE && len > sizeof(local) && (groups = malloc(len)) != NULL)
		rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	bool found = false;
	if (rc != 0) {
		log_warn("admin: SO_PEERGROUPS failed: %s; supplementary groups not considered",
			 strerror(errno));
		*readable = false;
	}
	for (size_t i = 0; rc == 0 && i < len / sizeof(gid_t) && !found; i++)
		found = groups[i] == gid;
	if (groups != local)
		free(groups);
	return found;
}

static bool holds(int fd, const struct ucred *cred, gid_t gid)
{
	bool readable;
	return cred->gid == gid || peer_holds(fd, gid, &readable);
}

bool mp_peer_allowed(int fd, const struct mp_peer_policy *policy)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		log_warn("admin: SO_PEERCRED failed: %s; refusing the peer", strerror(errno));
		return false;
	}
	if (cred.uid == 0 || cred.uid == policy->uid || holds(fd, &cred, policy->gid) ||
	    (policy->has_group && holds(fd, &cred, policy->group)))
		return true;
	char admin_group[32] = "none configured";
	if (policy->has_group)
		snprintf(admin_group, sizeof(admin_group), "%u", (unsigned)policy->group);
	log_warn("admin: refusing peer pid %d uid %u gid %u: not root, not uid %u, holds neither "
		 "gid %u nor the admin group (%s)",
		 (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid, (unsigned)policy->uid,
		 (unsigned)policy->gid, admin_group);
	return false;
}

bool mp_group_resolve(const char *group, gid_t *out, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(group, &end, 10);
	if (group[0] >= '0' && group[0] <= '9' && !*end && !errno && v < UINT32_MAX) {
		*out = (gid_t)v;
		return true;
	}
	char buf[4096];
	struct group gr, *found = NULL;
	int rc = getgrnam_r(group, &gr, buf, sizeof(buf), &found);
	if (rc != 0 || !found) {
		snprintf(err, errlen, "admin group '%s': %s", group,
			 rc ? strerror(rc) : "no such group");
		return false;
	}
	*out = found->gr_gid;
	return true;
}
