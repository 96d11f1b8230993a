/* systemd's side of Type=notify, for integration tests: a fake NOTIFY_SOCKET (an AF_UNIX
 * datagram socket the test binds and reads) and a daemon of the network started as the test's
 * own child with it, so that the test reads its notifications (READY=1, STATUS=, RELOADING=1,
 * STOPPING=1, WATCHDOG=1) and its exit status. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

struct notify_sock {
	int fd;
	char path[108];
};

/* Bind DIR/notify-NAME.sock; fails the test if impossible. */
void notify_open(struct notify_sock *ns, const struct net *n, const char *name);
void notify_close(struct notify_sock *ns);
/* The next notification containing want (e.g. "READY=1") within ms, into out; the ones before
 * it are skipped. False on timeout (out then holds the last one read, or ""). */
bool notify_wait(struct notify_sock *ns, const char *want, int ms, char *out, size_t len);

/* Start the stopped daemon NAME of the network (its binary and config.ini from DIR/NAME) as a
 * child of the test with NOTIFY_SOCKET set to ns and the "KEY=VALUE" entries of env (NULL or
 * NULL-terminated); its output goes to DIR/NAME/log, its pid to DIR/NAME/pid (so that
 * `mpnet kill` and `mpnet down` stop it). Fails the test if it cannot start. */
pid_t net_start_notified(const struct net *n, const char *name, const struct notify_sock *ns,
			 const char *const *env);
/* The child's exit status within ms; -1 if it did not exit (then it is killed) or was killed
 * by a signal. */
int net_child_exit(pid_t pid, int ms);
