/* Bad input on every listening port: garbage bytes, an oversized length, plaintext to a TLS
 * port, a client that connects and sends nothing, garbage on the admin sockets. Each time the
 * daemon drops that connection with a logged reason and the next honest client is served. */
#include <arpa/inet.h>
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "net.h"
#include "../check_run.h"

static struct net net;
static char ca[700];

static void setup_net(void)
{
	setenv("MP_IDLE_TIMEOUT", "2", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
}

static void teardown_net(void)
{
	net_down(&net);
}

static int tcp_connect(const char *endpoint)
{
	char host[64];
	uint16_t port;
	ck_assert(mp_split_endpoint(endpoint, host, sizeof(host), &port));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* The peer closes within `seconds`: read returns 0 or an error. */
static bool closed_within(int fd, int seconds)
{
	struct pollfd p = {fd, POLLIN, 0};
	char buf[4096];
	for (int waited = 0; waited < seconds * 10; waited++) {
		if (poll(&p, 1, 100) == 1) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				return true;
		}
	}
	return false;
}

static bool log_mentions(const char *daemon, const char *needle)
{
	char path[700], line[2048];
	snprintf(path, sizeof(path), "%s/%s/log", net.dir, daemon);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* An honest client is served: a TLS handshake and an answered request. */
static void honest_client_served(const char *endpoint)
{
	struct wire w;
	ck_assert_msg(wire_connect(&w, endpoint, ca, NULL, NULL), "honest client not served");
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT; /* answered by merchant or broker */
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	MpEnvelope *resp = wire_call(&w, &env);
	ck_assert_msg(resp != NULL, "no answer to an honest request");
	micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&w);
}

static void each_tls_port(void (*attack)(const char *endpoint, const char *daemon))
{
	char ep[128];
	net_read(&net, "broker", "endpoint", ep, sizeof(ep));
	attack(ep, "broker");
	honest_client_served(ep);
	net_read(&net, "m1", "endpoint", ep, sizeof(ep));
	attack(ep, "m1");
	honest_client_served(ep);
}

static void plaintext(const char *endpoint, const char *daemon)
{
	int fd = tcp_connect(endpoint);
	const char req[] = "GET / HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ck_assert(closed_within(fd, 5));
	close(fd);
	usleep(100000);
	ck_assert_msg(log_mentions(daemon, "closing connection: TLS error"), "%s logged no reason",
		      daemon);
}

static void silent(const char *endpoint, const char *daemon)
{
	int fd = tcp_connect(endpoint);
	ck_assert_msg(closed_within(fd, 6), "%s kept a silent client", daemon);
	close(fd);
	usleep(100000);
	ck_assert(log_mentions(daemon, "TLS handshake timed out"));
}

/* Inside TLS: raw bytes that are not a frame. */
static void garbage_frame(const char *endpoint, const char *daemon)
{
	struct wire w;
	ck_assert(wire_connect(&w, endpoint, ca, NULL, NULL));
	ck_assert(wire_write(&w, "\x00\x00\x00\x05\xff\xff\xff\xff\xff", 9));
	ck_assert(closed_within(w.fd, 5));
	wire_close(&w);
	usleep(100000);
	ck_assert(log_mentions(daemon, "unparsable envelope"));
}

static void oversized(const char *endpoint, const char *daemon)
{
	struct wire w;
	ck_assert(wire_connect(&w, endpoint, ca, NULL, NULL));
	ck_assert(wire_write(&w, "\x7f\xff\xff\xff", 4)); /* 2 GiB announced */
	ck_assert(closed_within(w.fd, 5));
	wire_close(&w);
	usleep(100000);
	ck_assert(log_mentions(daemon, "frame length above the maximum"));
}

static void zero_length(const char *endpoint, const char *daemon)
{
	struct wire w;
	ck_assert(wire_connect(&w, endpoint, ca, NULL, NULL));
	ck_assert(wire_write(&w, "\x00\x00\x00\x00", 4));
	ck_assert(closed_within(w.fd, 5));
	wire_close(&w);
	usleep(100000);
	ck_assert(log_mentions(daemon, "zero-length frame"));
}

START_TEST(plaintext_to_tls_port)
{
	each_tls_port(plaintext);
}
END_TEST

START_TEST(client_that_sends_nothing)
{
	each_tls_port(silent);
}
END_TEST

START_TEST(garbage_inside_tls)
{
	each_tls_port(garbage_frame);
}
END_TEST

START_TEST(oversized_length)
{
	each_tls_port(oversized);
}
END_TEST

START_TEST(zero_length_frame)
{
	each_tls_port(zero_length);
}
END_TEST

static void admin_garbage(const char *daemon)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/admin.sock", net.dir, daemon);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	ck_assert(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(write(fd, "{not json\n", 10), 10);
	char buf[512] = {0};
	ck_assert(read(fd, buf, sizeof(buf) - 1) > 0);
	ck_assert_msg(strstr(buf, "\"error\"") != NULL, "no error reply: %s", buf);
	close(fd);
	json_decref(admin_ok(&net, daemon, "status", NULL));
}

START_TEST(garbage_on_admin_sockets)
{
	admin_garbage("broker");
	admin_garbage("m1");
	admin_garbage("w1");
}
END_TEST

/* Run a daemon with a config; return its exit status and first stderr line. */
static int run_daemon(const char *binary, const char *config, char *out, size_t len)
{
	char cmd[1600];
	snprintf(cmd, sizeof(cmd), "timeout 10 '%s/%s/%s' -c '%s' 2>&1", getenv("MP_BUILD"), binary,
		 binary, config);
	FILE *p = popen(cmd, "r");
	ck_assert(p != NULL);
	size_t got = fread(out, 1, len - 1, p);
	out[got] = '\0';
	int rc = pclose(p);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert(f != NULL);
	fputs(text, f);
	fclose(f);
}

START_TEST(bad_configs_are_refused_with_file_and_line)
{
	char path[700], out[4096], expect[800];
	net_path(&net, "bad.ini", path, sizeof(path));
	write_file(path, "[broker]\nlisten = 127.0.0.1:1\nlisen = typo\n");
	ck_assert_int_eq(run_daemon("brokerd", path, out, sizeof(out)), 1);
	snprintf(expect, sizeof(expect), "%s:3: unknown key 'lisen' in section [broker]", path);
	ck_assert_msg(strstr(out, expect) != NULL, "got: %s", out);
	write_file(path, "[merchant]\nmax_jump = many\n");
	ck_assert_int_eq(run_daemon("merchantd", path, out, sizeof(out)), 1);
	snprintf(expect, sizeof(expect), "%s:2: bad value 'many' for [merchant] max_jump", path);
	ck_assert_msg(strstr(out, expect) != NULL, "got: %s", out);
	ck_assert_int_eq(run_daemon("walletd", "/nonexistent/wallet.ini", out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "/nonexistent/wallet.ini") && strstr(out, "No such file"),
		      "got: %s", out);
}
END_TEST

/* brokerd refuses a database whose schema is newer than it knows. */
START_TEST(newer_schema_is_refused)
{
	char conninfo[512], cmd[3000], config[700], out[4096];
	char path[700];
	net_path(&net, "broker/config.ini", path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "sed -n 's/^conninfo = //p' '%s'", path);
	FILE *p = popen(cmd, "r");
	ck_assert(p && fgets(conninfo, sizeof(conninfo), p));
	pclose(p);
	conninfo[strcspn(conninfo, "\n")] = '\0';
	snprintf(cmd, sizeof(cmd),
		 "psql -q '%s' -c \"INSERT INTO schema_version (version, name) VALUES (9999, "
		 "'9999-future.sql')\" >/dev/null",
		 conninfo);
	ck_assert_int_eq(system(cmd), 0);
	/* A second broker on the same database, another port and socket. */
	net_path(&net, "broker2.ini", config, sizeof(config));
	snprintf(cmd, sizeof(cmd),
		 "sed -e 's/^listen = .*/listen = 127.0.0.1:0/' -e 's|^socket = .*|socket = "
		 "%s/b2.sock|' "
		 "'%s' > '%s'",
		 net.dir, path, config);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(run_daemon("brokerd", config, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "newer than this brokerd") != NULL, "got: %s", out);
	snprintf(cmd, sizeof(cmd),
		 "psql -q '%s' -c 'DELETE FROM schema_version WHERE version = 9999' >/dev/null",
		 conninfo);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("badinput");
	TCase *tc = tcase_create("ports");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, plaintext_to_tls_port);
	tcase_add_test(tc, client_that_sends_nothing);
	tcase_add_test(tc, garbage_inside_tls);
	tcase_add_test(tc, oversized_length);
	tcase_add_test(tc, zero_length_frame);
	tcase_add_test(tc, garbage_on_admin_sockets);
	tcase_add_test(tc, bad_configs_are_refused_with_file_and_line);
	tcase_add_test(tc, newer_schema_is_refused);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
