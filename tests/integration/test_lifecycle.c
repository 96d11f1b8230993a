/* brokerd and the harness from outside, around the life of connections: daemons the harness
 * starts hold none of the test's descriptors; a flood of requests the broker does not serve is
 * answered one by one but logged within limits (each connection's first reason kept); brokerd
 * stops with clients connected in every state and releases them all (under ASan: no leak
 * report), then serves again. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "harness_net.h"
#include "../check_run.h"

#define FLOOD 3000

static struct net net;
static char ca[700], broker_ep[128];

static void setup_net(void)
{
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
}

static void teardown_net(void)
{
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* Lines of DAEMON's log containing needle. */
static int log_count(const char *daemon, const char *needle)
{
	char path[700], line[4096];
	snprintf(path, sizeof(path), "%s/%s/log", net.dir, daemon);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Does process pid hold a descriptor on path? */
static bool holds(const char *pid, const char *path)
{
	char cmd[1600];
	snprintf(cmd, sizeof(cmd),
		 "for f in /proc/%s/fd/*; do readlink \"$f\"; done | grep -qxF '%s'", pid, path);
	return system(cmd) == 0;
}

/* A daemon started by the harness (through mpnet) inherited the test's sockets and files: a
 * test closing its end then saw no EOF, and a daemon kept a test's listening port. */
START_TEST(daemons_inherit_no_test_descriptors)
{
	char path[700];
	net_path(&net, "test-private-file", path, sizeof(path));
	int fd = open(path, O_CREAT | O_RDWR, 0600); /* no O_CLOEXEC, as a careless test does */
	ck_assert_int_ge(fd, 0);
	int sock = tcp_open(broker_ep);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	char pid[32];
	net_read(&net, "m2", "pid", pid, sizeof(pid));
	pid[strcspn(pid, "\n")] = '\0';
	ck_assert_msg(!holds(pid, path), "merchantd %s holds the test's file %s", pid, path);
	char sock_link[64];
	snprintf(sock_link, sizeof(sock_link), "/proc/self/fd/%d", sock);
	char target[128] = "";
	ck_assert(readlink(sock_link, target, sizeof(target) - 1) > 0);
	ck_assert_msg(!holds(pid, target), "merchantd %s holds the test's socket %s", pid, target);
	close(sock);
	close(fd);
	ck_assert_int_eq(net_cmd(&net, "kill", "m2"), 0);
}
END_TEST

static void send_unroutable(struct wire *w, size_t n, uint64_t first_id)
{
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	MpEnvelope *env = calloc(n, sizeof(*env)), **envs = calloc(n, sizeof(*envs));
	ck_assert(env && envs);
	for (size_t i = 0; i < n; i++) {
		micropay__v1__envelope__init(&env[i]);
		env[i].body_case = MP_BODY(OPEN_REQ);
		env[i].open_req = &open;
		envs[i] = &env[i];
	}
	ck_assert(wire_send_pipelined(w, envs, n, first_id));
	free(envs);
	free(env);
	for (size_t i = 0; i < n; i++) {
		MpEnvelope *r = wire_recv_within(w, 10000);
		ck_assert_msg(r != NULL, "answer %zu of %zu missing", i + 1, n);
		ck_assert_int_eq(r->body_case, MP_BODY(ERROR));
		ck_assert_int_eq(r->error->code, MP_ST(MALFORMED));
		ck_assert_str_eq(r->error->detail, "not a broker request");
		micropay__v1__envelope__free_unpacked(r, NULL);
	}
}

/* 60,000 log lines were seen from one peer's flood of requests the broker does not serve. */
START_TEST(unroutable_flood_answered_but_logged_within_limits)
{
	const char *needle = "is not served by the broker";
	int lines_before = log_count("broker", needle);
	int64_t counted_before =
	    metric(&net, "broker", "micropay_broker_unroutable_requests_total");
	ck_assert_int_ge(counted_before, 0);
	struct wire a, b;
	ck_assert(wire_connect(&a, broker_ep, ca, NULL, NULL));
	send_unroutable(&a, FLOOD, 1000);
	/* The first of the connection, with its reason, and at most a periodic line or two. */
	ck_assert(
	    log_has(&net, "broker", "request 1000 of kind 20 is not served by the broker", 0));
	int flood_lines = log_count("broker", needle) - lines_before;
	ck_assert_msg(flood_lines >= 1 && flood_lines <= 3, "%d log lines for %d requests",
		      flood_lines, FLOOD);
	/* Another connection's first reason is not lost to the flood's limit. */
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	send_unroutable(&b, 1, 77777);
	ck_assert(
	    log_has(&net, "broker", "request 77777 of kind 20 is not served by the broker", 2000));
	ck_assert_int_eq(metric(&net, "broker", "micropay_broker_unroutable_requests_total"),
			 counted_before + FLOOD + 1);
	/* The flooding connection's total, once it ends. */
	wire_close(&a);
	wire_close(&b);
	char total[128];
	snprintf(total, sizeof(total), "%d requests not served by the broker on this connection",
		 FLOOD);
	ck_assert(log_has(&net, "broker", total, 5000));
	ck_assert(honest_request_answered(broker_ep, ca));
	audit_clean();
}
END_TEST

/* A connection to the admin socket that says nothing. */
static int admin_idle(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	net_path(&net, "broker/admin.sock", sa.sun_path, sizeof(sa.sun_path));
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* brokerd stopped with clients connected: LeakSanitizer reported every accepted connection.
 * Clients in every state: TCP without a handshake, TLS idle, half a frame sent, answers
 * unread, m1 (a merchant) connected, an idle admin connection (admin connections were not
 * released). */
START_TEST(broker_stops_with_clients_connected_and_releases_them)
{
	int raw = tcp_open(broker_ep);
	struct wire idle, partial, unread;
	ck_assert(wire_connect(&idle, broker_ep, ca, NULL, NULL));
	ck_assert(wire_connect(&partial, broker_ep, ca, NULL, NULL));
	ck_assert(wire_connect(&unread, broker_ep, ca, NULL, NULL));
	static const uint8_t half[] = {0, 0, 0, 100, 1, 2, 3};
	ck_assert(wire_write_all(&partial, half, sizeof(half)));
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &open;
	MpEnvelope *envs[8] = {&env, &env, &env, &env, &env, &env, &env, &env};
	ck_assert(wire_send_pipelined(&unread, envs, 8, 1));
	int admin_fd = admin_idle();
	ck_assert(metric_wait(&net, "broker", "micropay_broker_connections{listener=\"broker\"}", 5,
			      5000) >= 5);

	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	ck_assert_msg(!log_has(&net, "broker", "Sanitizer", 3000),
		      "brokerd reported a sanitizer error on stopping (log in %s/broker/log)",
		      net.dir);
	ck_assert(tcp_closed_within(raw, 2000));
	ck_assert(wire_closed_within(&idle, 2000));
	close(raw);
	close(admin_fd);
	wire_close(&idle);
	wire_close(&partial);
	wire_close(&unread);

	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	ck_assert(honest_request_answered(broker_ep, ca));
	audit_clean();
}
END_TEST

static Suite *lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("lifecycle");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, daemons_inherit_no_test_descriptors);
	tcase_add_test(tc, unroutable_flood_answered_but_logged_within_limits);
	tcase_add_test(tc, broker_stops_with_clients_connected_and_releases_them);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(lifecycle_suite());
}
