/* One thread, one poll loop: accept, connect to the cluster, copy bytes both ways. A link is
 * (client fd, server fd); either side closing closes both. A cut link has lost its client: the
 * server side is drained (its transaction ends as it would) until the server closes it. */
#include "pg_proxy.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PROXY_MAX_LINKS 32

/* The server's first messages are scanned (type byte, be32 length) until BackendKeyData ('K'),
 * whose first field is the backend's pid: a loss is then asked for by pid, so that traffic of
 * another session (a merchant registering, a redeem round) can never take it. */
struct pid_scan {
	uint8_t hdr[5];
	unsigned have; /* bytes of hdr (then of the pid) read */
	uint32_t left; /* body bytes of the current message still to skip */
	bool in_key;   /* reading a BackendKeyData body */
	uint8_t pid[4];
};

struct link {
	int client, server; /* -1: free; client -1 alone: cut */
	bool muted;	    /* the server's bytes are dropped, the client left waiting */
	int backend_pid;    /* 0 until the server told it */
	struct pid_scan scan;
};

struct pg_proxy {
	pthread_t thread;
	int listen_fd;
	char server_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct link links[PROXY_MAX_LINKS];
	atomic_bool stop;
	atomic_bool lose_next;
	atomic_int lose_pid;	  /* of the backend whose next answer is lost */
	atomic_bool close_client; /* of that next answer's link */
	atomic_bool lost;
};

static bool unix_address(struct sockaddr_un *sun, const char *path)
{
	*sun = (struct sockaddr_un){.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun->sun_path))
		return false;
	strcpy(sun->sun_path, path);
	return true;
}

static void link_close(struct link *l)
{
	if (l->client >= 0)
		close(l->client);
	if (l->server >= 0)
		close(l->server);
	*l = (struct link){.client = -1, .server = -1};
}

static void accept_link(struct pg_proxy *p)
{
	int client = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC); /* no daemon inherits it */
	if (client < 0)
		return;
	struct sockaddr_un sun;
	int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!unix_address(&sun, p->server_path) ||
	    connect(server, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(client); /* the cluster is down: so is the proxy's answer */
		close(server);
		return;
	}
	for (int i = 0; i < PROXY_MAX_LINKS; i++) {
		if (p->links[i].server < 0) {
			p->links[i] = (struct link){.client = client, .server = server};
			return;
		}
	}
	close(client);
	close(server);
}

static void scan_byte(struct link *l, uint8_t b)
{
	struct pid_scan *s = &l->scan;
	if (s->in_key) {
		s->pid[s->have++] = b;
		if (s->have == 4)
			l->backend_pid =
			    (int)((uint32_t)s->pid[0] << 24 | (uint32_t)s->pid[1] << 16 |
				  (uint32_t)s->pid[2] << 8 | s->pid[3]);
		return;
	}
	if (s->left) {
		s->left--;
		return;
	}
	s->hdr[s->have++] = b;
	if (s->have < 5)
		return;
	uint32_t len = (uint32_t)s->hdr[1] << 24 | (uint32_t)s->hdr[2] << 16 |
		       (uint32_t)s->hdr[3] << 8 | s->hdr[4];
	s->have = 0;
	s->in_key = s->hdr[0] == 'K';
	s->left = len >= 4 ? len - 4 : 0;
}

static void scan_for_pid(struct link *l, const char *buf, ssize_t n)
{
	for (ssize_t i = 0; i < n && !l->backend_pid; i++)
		scan_byte(l, (uint8_t)buf[i]);
}

static bool copy(struct link *l, int from, int to)
{
	char buf[65536];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return false;
	if (from == l->server)
		scan_for_pid(l, buf, n);
	for (ssize_t done = 0; done < n;) {
		ssize_t w = write(to, buf + done, (size_t)(n - done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		done += w;
	}
	return true;
}

/* Server bytes on a link while a loss is asked for: the client loses them, and the link too or
 * every later answer on it. */
static bool lose_here(struct pg_proxy *p, struct link *l)
{
	bool expected = true;
	if (l->backend_pid != atomic_load(&p->lose_pid) ||
	    !atomic_compare_exchange_strong(&p->lose_next, &expected, false))
		return false;
	if (atomic_load(&p->close_client)) {
		close(l->client);
		l->client = -1;
	} else {
		l->muted = true;
	}
	atomic_store(&p->lost, true);
	return true;
}

static void drain(struct link *l)
{
	char buf[65536];
	if (read(l->server, buf, sizeof(buf)) <= 0)
		link_close(l);
}

static void serve_link(struct pg_proxy *p, struct link *l, short client_ev, short server_ev)
{
	bool server_ready = server_ev & (POLLIN | POLLHUP | POLLERR);
	bool client_ready = client_ev & (POLLIN | POLLHUP | POLLERR);
	if (l->client >= 0 && client_ready && !copy(l, l->client, l->server)) {
		link_close(l);
		return;
	}
	if (!server_ready)
		return;
	if (l->client < 0 || l->muted || lose_here(p, l))
		drain(l);
	else if (!copy(l, l->server, l->client))
		link_close(l);
}

static void *proxy_run(void *arg)
{
	struct pg_proxy *p = arg;
	while (!atomic_load(&p->stop)) {
		struct pollfd fds[1 + 2 * PROXY_MAX_LINKS];
		fds[0] = (struct pollfd){p->listen_fd, POLLIN, 0};
		for (int i = 0; i < PROXY_MAX_LINKS; i++) {
			fds[1 + 2 * i] = (struct pollfd){p->links[i].client, POLLIN, 0};
			fds[2 + 2 * i] = (struct pollfd){p->links[i].server, POLLIN, 0};
		}
		if (poll(fds, 1 + 2 * PROXY_MAX_LINKS, 100) <= 0)
			continue;
		if (fds[0].revents & POLLIN)
			accept_link(p);
		for (int i = 0; i < PROXY_MAX_LINKS; i++)
			if (p->links[i].server >= 0 && fds[2 + 2 * i].fd >= 0)
				serve_link(p, &p->links[i], fds[1 + 2 * i].revents,
					   fds[2 + 2 * i].revents);
	}
	return NULL;
}

struct pg_proxy *pg_proxy_start(const struct net *n)
{
	struct pg_proxy *p = calloc(1, sizeof(*p));
	ck_assert(p != NULL);
	for (int i = 0; i < PROXY_MAX_LINKS; i++)
		p->links[i] = (struct link){.client = -1, .server = -1};
	char dir[700], path[800];
	snprintf(dir, sizeof(dir), "%s/pgproxy", n->dir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/.s.PGSQL.5432", dir);
	unlink(path);
	int len = snprintf(NULL, 0, "%s/pg/.s.PGSQL.5432", n->dir);
	ck_assert_msg(len > 0 && (size_t)len < sizeof(p->server_path), "socket path too long");
	memcpy(p->server_path, n->dir, strlen(n->dir));
	strcpy(p->server_path + strlen(n->dir), "/pg/.s.PGSQL.5432");
	struct sockaddr_un sun;
	ck_assert_msg(unix_address(&sun, path), "socket path too long: %s", path);
	p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_msg(bind(p->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 &&
			  listen(p->listen_fd, 16) == 0,
		      "proxy cannot listen on %s: %s", path, strerror(errno));
	ck_assert_int_eq(pthread_create(&p->thread, NULL, proxy_run, p), 0);
	return p;
}

void pg_proxy_conninfo(const struct net *n, char *out, size_t len)
{
	snprintf(out, len, "host=%s/pgproxy user=micropay dbname=postgres", n->dir);
}

void pg_proxy_lose_next_answer(struct pg_proxy *p, int backend_pid, bool close_client)
{
	atomic_store(&p->lose_pid, backend_pid);
	atomic_store(&p->lost, false);
	atomic_store(&p->close_client, close_client);
	atomic_store(&p->lose_next, true);
}

bool pg_proxy_answer_lost(struct pg_proxy *p)
{
	return atomic_load(&p->lost);
}

void pg_proxy_stop(struct pg_proxy *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->thread, NULL);
	for (int i = 0; i < PROXY_MAX_LINKS; i++)
		link_close(&p->links[i]);
	close(p->listen_fd);
	free(p);
}
