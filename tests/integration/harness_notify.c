#include "harness_notify.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void notify_open(struct notify_sock *ns, const struct net *n, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int len = snprintf(ns->path, sizeof(ns->path), "%s/notify-%s.sock", n->dir, name);
	ck_assert_msg(len > 0 && (size_t)len < sizeof(sa.sun_path), "notify path too long");
	unlink(ns->path);
	memcpy(sa.sun_path, ns->path, (size_t)len + 1);
	ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(ns->fd, 0);
	ck_assert_msg(bind(ns->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s",
		      ns->path, strerror(errno));
}

void notify_close(struct notify_sock *ns)
{
	if (ns->fd >= 0)
		close(ns->fd);
	unlink(ns->path);
	ns->fd = -1;
}

bool notify_wait(struct notify_sock *ns, const char *want, int ms, char *out, size_t len)
{
	long long deadline = now_ms() + ms;
	out[0] = '\0';
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return false;
		struct pollfd p = {ns->fd, POLLIN, 0};
		int rc = poll(&p, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return false;
		ssize_t got = recv(ns->fd, out, len - 1, 0);
		if (got < 0)
			return false;
		out[got] = '\0';
		if (strstr(out, want))
			return true;
	}
}

static void exec_daemon(const struct net *n, const char *name, const struct notify_sock *ns,
			const char *const *env, const char *binary)
{
	char bin[1024], config[700], log[700];
	snprintf(bin, sizeof(bin), "%s/%s/%s", net_build_root(), binary, binary);
	snprintf(config, sizeof(config), "%s/%s/config.ini", n->dir, name);
	snprintf(log, sizeof(log), "%s/%s/log", n->dir, name);
	setsid();
	if (close_range(3, ~0U, 0) != 0)
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	int in = open("/dev/null", O_RDONLY);
	if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(126);
	setenv("NOTIFY_SOCKET", ns->path, 1);
	for (size_t i = 0; env && env[i]; i++)
		putenv((char *)env[i]);
	execl(bin, bin, "-c", config, (char *)NULL);
	_exit(127);
}

pid_t net_start_notified(const struct net *n, const char *name, const struct notify_sock *ns,
			 const char *const *env)
{
	char binary[64], pidfile[700];
	net_read(n, name, "binary", binary, sizeof(binary));
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		exec_daemon(n, name, ns, env, binary);
	snprintf(pidfile, sizeof(pidfile), "%s/%s/pid", n->dir, name);
	FILE *f = fopen(pidfile, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%d\n", (int)pid);
	fclose(f);
	return pid;
}

int net_child_exit(pid_t pid, int ms)
{
	long long deadline = now_ms() + ms;
	int status;
	while (now_ms() < deadline) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (got < 0 && errno != EINTR)
			return -1;
		usleep(20 * 1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}
