#include "harness_uid.h"

#include <check.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"

bool admin_status_as(const char *sock, uid_t uid, gid_t gid, const gid_t *groups, size_t n)
{
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		signal(SIGPIPE, SIG_IGN); /* a refused peer finds the socket closed */
		if (setgroups(n, groups) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
			_exit(2);
		char err[256];
		json_t *r = mp_admin_call(sock, "status", NULL, err, sizeof(err));
		_exit(r ? 0 : 1);
	}
	int status;
	ck_assert(waitpid(pid, &status, 0) == pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 2,
		      "the client child failed (status %#x: 2 = cannot drop privileges)", status);
	return WEXITSTATUS(status) == 0;
}
