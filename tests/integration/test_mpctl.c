/* mpctl against real daemons (the real binary, run as a child process): help and METHOD --help
 * from the daemon, --human tables, --timeout against a socket that never answers, every exit
 * status (method failed, usage, daemon down, caller refused, timeout, protocol), the admin
 * protocol version in both directions, unknown/missing/mistyped parameters refused before the
 * method runs, lists that are arrays with zero, one or more elements, log.level at run time. */
#include <check.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "harness.h"
#include "harness_ledger.h"
#include "../check_run.h"

#define NOBODY 65534u

static struct net net;
static char m1_hex[64], bsock[700], msock[700], wsock[700];

/* ---- running mpctl ---- */

struct run {
	int status; /* exit status */
	char out[65536], err[4096];
	double seconds;
};

static void slurp(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t got = f ? fread(buf, 1, len - 1, f) : 0;
	buf[got] = '\0';
	if (f)
		fclose(f);
}

/* mpctl with the space-separated args (none contains a space), as uid `as` unless it is -1. */
static void mpctl_as(struct run *r, long as, const char *fmt, ...)
{
	char args[2048], outp[700], errp[700], bin[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(outp, sizeof(outp), "%s/mpctl.out", net.dir);
	snprintf(errp, sizeof(errp), "%s/mpctl.err", net.dir);
	snprintf(bin, sizeof(bin), "%s/tools/mpctl", getenv("MP_BUILD") ?: "build");
	if (as >= 0) {
		/* Another uid may not reach the build tree (a clone under /root, a mode 0700
		 * temporary folder): it runs a copy of mpctl in the test network's folder, which
		 * the test opens to others. */
		char copy[700], cmd[2200];
		snprintf(copy, sizeof(copy), "%s/mpctl-other-uid", net.dir);
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", bin, copy, copy);
		ck_assert_msg(system(cmd) == 0, "cannot copy mpctl for another uid: %s", cmd);
		snprintf(bin, sizeof(bin), "%s", copy);
	}
	char *argv[64] = {bin};
	int argc = 1;
	for (char *tok = strtok(args, " "); tok && argc < 63; tok = strtok(NULL, " "))
		argv[argc++] = tok;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(100);
		if (as >= 0 &&
		    (setgroups(0, NULL) != 0 || setgid((gid_t)as) != 0 || setuid((uid_t)as) != 0))
			_exit(101);
		execv(bin, argv);
		_exit(102);
	}
	int status;
	ck_assert(waitpid(pid, &status, 0) == pid);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(WIFEXITED(status), "mpctl did not exit (status %#x)", status);
	r->status = WEXITSTATUS(status);
	ck_assert_msg(r->status < 100, "cannot run mpctl (%d)", r->status);
	slurp(outp, r->out, sizeof(r->out));
	slurp(errp, r->err, sizeof(r->err));
}

#define mpctl(r, ...) mpctl_as(r, -1, __VA_ARGS__)

/* mpctl that must succeed with JSON on stdout; the parsed answer. */
static json_t *mpctl_json(const char *fmt, const char *sock, const char *rest)
{
	struct run r;
	mpctl(&r, fmt, sock, rest);
	ck_assert_msg(r.status == 0, "mpctl %s %s: exit %d: %s", sock, rest, r.status, r.err);
	json_error_t jerr;
	json_t *j = json_loads(r.out, 0, &jerr);
	ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, r.out);
	return j;
}

static json_t *call(const char *sock, const char *rest)
{
	return mpctl_json("-s %s %s", sock, rest);
}

static void expect_exit(const struct run *r, int status, const char *in_stderr)
{
	ck_assert_msg(r->status == status, "exit %d, expected %d; stderr: %s", r->status, status,
		      r->err);
	ck_assert_msg(strstr(r->err, in_stderr) != NULL, "stderr lacks '%s': %s", in_stderr,
		      r->err);
}

/* ---- raw admin requests (another version than mpctl's) ---- */

static json_t *raw_request(const char *sock, const char *line)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert(fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	ck_assert(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
	char buf[8192];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		if (memchr(buf, '\n', len))
			break;
	}
	close(fd);
	buf[len] = '\0';
	json_error_t jerr;
	json_t *j = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
	ck_assert_msg(j != NULL, "unparsable answer: %s", buf);
	return j;
}

static void expect_error(json_t *answer, const char *type, const char *param)
{
	json_t *e = json_object_get(answer, "error");
	char *text = json_dumps(answer, JSON_COMPACT);
	ck_assert_msg(json_is_object(e), "not an error: %s", text);
	ck_assert_msg(!strcmp(json_string_value(json_object_get(e, "type")) ?: "", type),
		      "expected %s: %s", type, text);
	if (param)
		ck_assert_msg(!strcmp(json_string_value(json_object_get(e, "param")) ?: "", param),
			      "expected param %s: %s", param, text);
	ck_assert_int_eq(json_integer_value(json_object_get(answer, "version")),
			 MP_ADMIN_PROTOCOL_VERSION);
	free(text);
}

/* A Unix socket the test listens on; `serve` (a reply line, or NULL: never answer) is sent by
 * a child to the first connection after reading its request. Returns the child's pid. */
static pid_t fake_daemon(const char *path, const char *serve)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 &&
		  listen(fd, 4) == 0);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int c = accept(fd, NULL, NULL);
		char buf[4096];
		if (c >= 0 && read(c, buf, sizeof(buf)) > 0 && serve)
			(void)!write(c, serve, strlen(serve));
		pause(); /* hold the connection open until killed */
		_exit(0);
	}
	close(fd);
	return pid;
}

static void stop_child(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- fixture ---- */

static void setup_net(void)
{
	net_up(&net);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
	snprintf(bsock, sizeof(bsock), "%s/broker/admin.sock", net.dir);
	snprintf(msock, sizeof(msock), "%s/m1/admin.sock", net.dir);
	snprintf(wsock, sizeof(wsock), "%s/w1/admin.sock", net.dir);
}

static void teardown_net(void)
{
	net_down(&net);
}

/* ---- help ---- */

static json_t *find_named(json_t *list, const char *name)
{
	size_t i;
	json_t *item;
	json_array_foreach(list, i,
			   item) if (!strcmp(json_string_value(json_object_get(item, "name")) ?: "",
					     name)) return item;
	return NULL;
}

/* Every method of every daemon: a description and an array of parameters, each with a type,
 * required, a description; the methods the issue lists are there. */
START_TEST(help_lists_each_daemons_methods_with_their_parameters)
{
	static const char *const expected[][12] = {
	    {"status", "metrics", "accounts", "account.show", "account.ledger", "channels",
	     "channel.show", "audit", "conflicts", "payouts", "shutdown", "log.level"},
	    {"status", "metrics", "channels", "orders", "order.show", "redeem", "shutdown",
	     "log.level", "help"},
	    {"status", "metrics", "channels", "balance", "pay", "refund", "shutdown", "log.level",
	     "help"},
	};
	const char *socks[] = {bsock, msock, wsock};
	for (int d = 0; d < 3; d++) {
		json_t *h = mpctl_json("-s %s help --json%s", socks[d], "");
		ck_assert_int_eq(json_integer_value(json_object_get(h, "version")),
				 MP_ADMIN_PROTOCOL_VERSION);
		json_t *methods = json_object_get(h, "methods");
		ck_assert(json_is_array(methods) && json_array_size(methods) >= 8);
		size_t i, j;
		json_t *m, *p;
		json_array_foreach(methods, i, m)
		{
			ck_assert(json_is_string(json_object_get(m, "description")));
			json_t *params = json_object_get(m, "params");
			ck_assert_msg(json_is_array(params), "%s: params not an array",
				      json_string_value(json_object_get(m, "name")));
			json_array_foreach(params, j, p)
			{
				ck_assert(json_is_string(json_object_get(p, "name")));
				ck_assert(json_is_string(json_object_get(p, "type")));
				ck_assert(json_is_boolean(json_object_get(p, "required")));
				ck_assert(json_is_string(json_object_get(p, "description")));
			}
		}
		for (int k = 0; k < 12 && expected[d][k]; k++)
			ck_assert_msg(find_named(methods, expected[d][k]), "daemon %d lacks %s", d,
				      expected[d][k]);
		json_decref(h);
	}
	/* The broker's ledger method as declared. */
	json_t *h = call(bsock, "help --json");
	json_t *params =
	    json_object_get(find_named(json_object_get(h, "methods"), "account.ledger"), "params");
	ck_assert(json_is_true(json_object_get(find_named(params, "account"), "required")));
	ck_assert(json_is_false(json_object_get(find_named(params, "limit"), "required")));
	ck_assert_str_eq(json_string_value(json_object_get(find_named(params, "limit"), "default")),
			 "100");
	ck_assert(find_named(params, "before") != NULL);
	json_decref(h);
	/* The text listing. */
	struct run r;
	mpctl(&r, "-s %s help", bsock);
	expect_exit(&r, 0, "");
	ck_assert_msg(strstr(r.out, "account.ledger account=... [limit=...] [before=...]") &&
			  strstr(r.out, "log.level [level=...]"),
		      "%s", r.out);
}
END_TEST

START_TEST(method_help_is_asked_from_the_daemon)
{
	struct run r;
	mpctl(&r, "-s %s pay --help", wsock);
	expect_exit(&r, 0, "");
	ck_assert_msg(strstr(r.out, "pay channel_id=... endpoint=... units=... order_ref=... "
				    "[merchant_id=...]") &&
			  strstr(r.out, "order_ref") && !strstr(r.out, "\nbalance"),
		      "%s", r.out);
	/* The same through `help WORD`, and as JSON. */
	mpctl(&r, "-s %s help account ledger", bsock);
	expect_exit(&r, 0, "");
	ck_assert_msg(strstr(r.out, "account.ledger") && strstr(r.out, "before"), "%s", r.out);
	json_t *h = mpctl_json("-s %s order.create --help --json%s", msock, "");
	ck_assert_int_eq(json_array_size(json_object_get(h, "methods")), 1);
	json_decref(h);
	/* A method the daemon does not have: its refusal, not a local text. */
	mpctl(&r, "-s %s account.ledger --help", msock);
	expect_exit(&r, 1, "NO_METHOD");
	/* mpctl --help alone: the local usage, with the exit statuses. */
	mpctl(&r, "--help");
	expect_exit(&r, 0, "");
	ck_assert(strstr(r.out, "exit status") && strstr(r.out, "caller refused"));
}
END_TEST

/* docs/operations.md holds the reference deploy/admin-reference generates from these daemons'
 * help, verbatim: a method or parameter added without regenerating it fails here. */
START_TEST(operations_doc_holds_the_daemons_own_reference)
{
	char cmd[2400], generated[700], doc[700];
	const char *src = getenv("MP_SOURCE_ROOT") ?: ".";
	snprintf(generated, sizeof(generated), "%s/admin-reference.md", net.dir);
	snprintf(doc, sizeof(doc), "%s/docs/operations.md", src);
	snprintf(cmd, sizeof(cmd), "'%s/deploy/admin-reference' '%s' >'%s'", src, net.dir,
		 generated);
	ck_assert_msg(system(cmd) == 0, "deploy/admin-reference failed");
	static char want[65536], have[262144];
	slurp(generated, want, sizeof(want));
	slurp(doc, have, sizeof(have));
	ck_assert(strlen(want) > 1000 && strlen(want) < sizeof(want) - 1);
	ck_assert_msg(strstr(have, want) != NULL,
		      "docs/operations.md's admin method reference is stale: regenerate it with "
		      "deploy/admin-reference DIR (a network from deploy/mpnet up) and paste it "
		      "between the admin-reference markers; generated: %s",
		      generated);
}
END_TEST

/* ---- output ---- */

/* The column `name` starts at the same offset in the header and in every row below it. */
static void columns_aligned(const char *text, const char *header_start, const char *name)
{
	const char *h = strstr(text, header_start);
	ck_assert_msg(h != NULL, "no table header '%s' in: %s", header_start, text);
	const char *eol = strchr(h, '\n');
	const char *col = strstr(h, name);
	ck_assert(eol && col && col < eol);
	size_t offset = (size_t)(col - h), rows = 0;
	for (const char *line = eol + 1; *line == ' ' && line[1] == ' '; rows++) {
		const char *end = strchr(line, '\n');
		ck_assert(end && (size_t)(end - line) > offset);
		ck_assert_msg(line[offset - 1] == ' ' && line[offset] != ' ',
			      "column %s misaligned in: %s", name, text);
		line = end + 1;
	}
	ck_assert_msg(rows >= 1, "no rows under '%s': %s", header_start, text);
}

START_TEST(human_prints_tables_and_key_value_lines)
{
	struct run r;
	mpctl(&r, "--human -s %s accounts", bsock);
	expect_exit(&r, 0, "");
	ck_assert_msg(strstr(r.out, "accounts:\n"), "%s", r.out);
	columns_aligned(r.out, "  account ", "kind");
	columns_aligned(r.out, "  account ", "balance");
	ck_assert(strstr(r.out, "next_after:") != NULL);
	mpctl(&r, "--human -s %s status", msock);
	expect_exit(&r, 0, "");
	ck_assert_msg(strstr(r.out, "daemon:") && strstr(r.out, "merchantd") &&
			  strstr(r.out, "counters:\n  opens:"),
		      "%s", r.out);
	ck_assert(r.out[0] != '{');
	/* An empty list says so; JSON (the default) keeps it an array. */
	mpctl(&r, "--human -s %s conflicts", bsock);
	ck_assert_msg(strstr(r.out, "conflicts: (none)"), "%s", r.out);
	mpctl(&r, "-s %s conflicts", bsock);
	ck_assert_msg(strstr(r.out, "\"conflicts\": []"), "%s", r.out);
}
END_TEST

/* ---- exit statuses ---- */

START_TEST(timeout_on_a_daemon_that_does_not_answer)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/silent.sock", net.dir);
	pid_t child = fake_daemon(path, NULL);
	struct run r;
	mpctl(&r, "--timeout 1 -s %s status", path);
	stop_child(child);
	expect_exit(&r, 5, "no answer within 1000 ms");
	ck_assert_msg(r.seconds >= 0.9 && r.seconds < 5, "took %.2f s", r.seconds);
	mpctl(&r, "--timeout 0 -s %s status", path);
	expect_exit(&r, 2, "--timeout");
	/* A daemon that accepts nothing: its backlog fills, the connect itself times out. */
	snprintf(path, sizeof(path), "%s/stuck.sock", net.dir);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	ck_assert(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0), fill[16], filled = 0;
	ck_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) == 0 &&
		  listen(lfd, 0) == 0);
	while (filled < 16) {
		fill[filled] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ck_assert(fill[filled] >= 0);
		if (connect(fill[filled], (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			close(fill[filled]);
			break;
		}
		filled++;
	}
	ck_assert_msg(filled < 16, "the backlog never filled");
	mpctl(&r, "--timeout 1 -s %s status", path);
	expect_exit(&r, 5, "not accepting connections within 1000 ms");
	ck_assert_msg(r.seconds >= 0.9 && r.seconds < 5, "took %.2f s", r.seconds);
	while (filled > 0)
		close(fill[--filled]);
	close(lfd);
}
END_TEST

START_TEST(daemon_down_is_exit_3)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/none.sock", net.dir);
	struct run r;
	mpctl(&r, "-s %s status", path);
	expect_exit(&r, 3, "is the daemon running?");
	/* A socket file nobody listens on (a daemon that died). */
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dead[700];
	snprintf(dead, sizeof(dead), "%s/dead.sock", net.dir);
	ck_assert(strlen(dead) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, dead, strlen(dead) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	close(fd);
	mpctl(&r, "-s %s status", dead);
	expect_exit(&r, 3, "Connection refused");
}
END_TEST

START_TEST(failed_method_and_usage_exit_statuses)
{
	struct run r;
	mpctl(&r, "-s %s account.show account=00000000000000000000000000000001", bsock);
	expect_exit(&r, 1, "error -1 FAILED: UNKNOWN_ACCOUNT");
	ck_assert_str_eq(r.out, "");
	mpctl(&r, "-s %s no.such.method", bsock);
	expect_exit(&r, 1, "NO_METHOD");
	mpctl(&r, "status");
	expect_exit(&r, 2, "no admin socket");
	mpctl(&r, "-s %s", bsock);
	expect_exit(&r, 2, "no method");
	mpctl(&r, "--bogus -s %s status", bsock);
	expect_exit(&r, 2, "unknown option");
}
END_TEST

START_TEST(refused_caller_is_exit_4_and_logged)
{
	if (geteuid() != 0) {
		fprintf(stderr,
			"refused caller test needs root (to run mpctl as nobody): skipped\n");
		return;
	}
	char dir[700];
	ck_assert(chmod(net.dir, 0711) == 0);
	snprintf(dir, sizeof(dir), "%s/broker", net.dir);
	ck_assert(chmod(dir, 0711) == 0);
	/* The socket file keeps nobody out: the kernel refuses the connect. */
	struct run r;
	mpctl_as(&r, NOBODY, "-s %s status", bsock);
	expect_exit(&r, 4, "permission denied");
	/* Past the file system, the daemon's credential check refuses and says so. */
	ck_assert(chmod(bsock, 0666) == 0);
	mpctl_as(&r, NOBODY, "-s %s status", bsock);
	ck_assert(chmod(bsock, 0660) == 0);
	expect_exit(&r, 4, "caller refused");
	ck_assert_msg(strstr(r.err, "REFUSED"), "%s", r.err);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "grep -q 'refusing peer pid .* uid %u gid %u' '%s/broker/log'",
		 NOBODY, NOBODY, net.dir);
	ck_assert_msg(system(cmd) == 0, "the broker did not log the refused caller");
	/* Root is still let in. */
	json_decref(call(bsock, "status"));
}
END_TEST

/* ---- protocol version ---- */

START_TEST(daemon_refuses_a_request_of_another_version)
{
	const char *socks[] = {bsock, msock, wsock};
	for (int d = 0; d < 3; d++) {
		json_t *a =
		    raw_request(socks[d], "{\"id\":7,\"version\":2,\"method\":\"status\"}\n");
		expect_error(a, "VERSION", NULL);
		ck_assert_int_eq(json_integer_value(json_object_get(a, "id")), 7);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(json_object_get(a, "error"), "code")),
		    MP_ADMIN_VERSION);
		ck_assert(strstr(
		    json_string_value(json_object_get(json_object_get(a, "error"), "message")),
		    "version 2 is not supported"));
		json_decref(a);
		a = raw_request(socks[d], "{\"id\":8,\"method\":\"status\"}\n");
		expect_error(a, "VERSION", NULL);
		json_decref(a);
		/* The same request with the version is answered, with the version. */
		a = raw_request(socks[d], "{\"id\":9,\"version\":1,\"method\":\"status\"}\n");
		ck_assert(json_is_object(json_object_get(a, "result")));
		ck_assert_int_eq(json_integer_value(json_object_get(a, "version")), 1);
		json_decref(a);
	}
	/* A version-2 shutdown does not run: the daemon still answers. */
	json_decref(raw_request(msock, "{\"id\":1,\"version\":2,\"method\":\"shutdown\"}\n"));
	json_decref(call(msock, "status"));
}
END_TEST

START_TEST(mpctl_refuses_an_answer_of_another_version)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/future.sock", net.dir);
	pid_t child = fake_daemon(path, "{\"id\":1,\"version\":2,\"result\":{\"daemon\":\"x\"}}\n");
	struct run r;
	mpctl(&r, "--timeout 10 -s %s status", path);
	stop_child(child);
	expect_exit(&r, 6, "admin protocol version 2");
	ck_assert_str_eq(r.out, "");
	/* An answer without a version (an older daemon) is refused as well. */
	child = fake_daemon(path, "{\"id\":1,\"result\":{}}\n");
	mpctl(&r, "--timeout 10 -s %s status", path);
	stop_child(child);
	expect_exit(&r, 6, "this mpctl speaks version 1");
}
END_TEST

/* ---- parameters ---- */

START_TEST(unknown_missing_and_mistyped_parameters_are_refused_before_the_method_runs)
{
	char avail[64];
	uint8_t id[MP_ID_LEN];
	char fund_id[MP_HEX_ID_LEN + 1];
	ck_assert(mp_random_bytes(id, MP_ID_LEN));
	mp_hex_encode(id, MP_ID_LEN, fund_id);
	json_t *acc = mpctl_json("-s %s account.show account=%s", bsock, m1_hex);
	snprintf(avail, sizeof(avail), "%s", json_str(acc, "account_id"));
	int64_t before = json_int(acc, "balance");
	json_decref(acc);
	/* Unknown: a typo'd parameter of a money method moves nothing. */
	struct run r;
	char args[512];
	snprintf(args, sizeof(args), "account.fund account=%s amount=5 fund_id=%s amuont=6", avail,
		 fund_id);
	mpctl(&r, "-s %s %s", bsock, args);
	expect_exit(&r, 1, "BAD_PARAMS: unknown parameter 'amuont' for account.fund");
	ck_assert_int_eq(net_balance(&net, avail), before);
	/* Missing, mistyped: named. */
	mpctl(&r, "-s %s order.create", msock);
	expect_exit(&r, 1, "missing required parameter 'price' of order.create");
	mpctl(&r, "-s %s order.create price=cheap", msock);
	expect_exit(&r, 1, "parameter 'price' of order.create must be of type uint");
	mpctl(&r, "-s %s status verbose=true", wsock);
	expect_exit(&r, 1, "unknown parameter 'verbose' for status");
	/* The typed error names the parameter in its own field. */
	json_t *a = raw_request(msock, "{\"id\":1,\"version\":1,\"method\":\"order.create\","
				       "\"params\":{\"price\":3,\"colour\":\"red\"}}\n");
	expect_error(a, "BAD_PARAMS", "colour");
	json_decref(a);
	a = raw_request(msock, "{\"id\":1,\"version\":1,\"method\":\"order.create\"}\n");
	expect_error(a, "BAD_PARAMS", "price");
	json_decref(a);
	/* The funding with its right parameters goes through once. */
	snprintf(args, sizeof(args), "account.fund account=%s amount=5 fund_id=%s", avail, fund_id);
	json_decref(call(bsock, args));
	ck_assert_int_eq(net_balance(&net, avail), before + 5);
}
END_TEST

/* ---- shapes ---- */

static size_t list_len(json_t *answer, const char *key)
{
	json_t *v = json_object_get(answer, key);
	char *text = json_dumps(answer, JSON_COMPACT);
	ck_assert_msg(json_is_array(v), "'%s' is not an array: %s", key, text);
	free(text);
	return json_array_size(v);
}

START_TEST(lists_are_arrays_with_zero_one_or_more_elements)
{
	/* Zero. */
	json_t *a = call(bsock, "accounts kind=customer");
	ck_assert_int_eq(list_len(a, "accounts"), 0);
	ck_assert(json_is_null(json_object_get(a, "next_after")));
	json_decref(a);
	a = call(bsock, "channels");
	ck_assert_int_eq(list_len(a, "channels"), 0);
	json_decref(a);
	a = call(bsock, "payouts");
	ck_assert_int_eq(list_len(a, "payouts"), 0);
	json_decref(a);
	a = call(bsock, "conflicts");
	ck_assert_int_eq(list_len(a, "conflicts"), 0);
	json_decref(a);
	a = call(msock, "channels");
	ck_assert_int_eq(list_len(a, "channels"), 0);
	json_decref(a);
	a = call(wsock, "channels");
	ck_assert_int_eq(list_len(a, "channels"), 0);
	ck_assert_int_eq(list_len(a, "offers"), 0);
	json_decref(a);
	a = call(wsock, "balance");
	ck_assert_int_eq(list_len(a, "channels"), 0);
	json_decref(a);
	/* One: a registered customer, one funding, one order. */
	json_t *reg = call(wsock, "register");
	char customer[64], args[256];
	snprintf(customer, sizeof(customer), "%s", json_str(reg, "account_id"));
	json_decref(reg);
	snprintf(args, sizeof(args), "account.ledger account=%s", customer);
	a = call(bsock, args);
	ck_assert_int_eq(list_len(a, "entries"), 0);
	ck_assert(json_is_null(json_object_get(a, "next_before")));
	json_decref(a);
	a = call(bsock, "accounts kind=customer");
	ck_assert_int_eq(list_len(a, "accounts"), 1);
	json_decref(a);
	net_fund(&net, customer, 10);
	a = call(bsock, args);
	ck_assert_int_eq(list_len(a, "entries"), 1);
	json_t *e = json_array_get(json_object_get(a, "entries"), 0);
	ck_assert_str_eq(json_str(e, "direction"), "in");
	ck_assert_str_eq(json_str(e, "kind"), "fund");
	ck_assert_int_eq(json_int(e, "amount"), 10);
	ck_assert_int_eq(json_int(a, "balance"), 10);
	json_decref(a);
	a = call(bsock, "audit");
	ck_assert(list_len(a, "checks") > 10);
	ck_assert_int_eq(list_len(json_array_get(json_object_get(a, "checks"), 0), "offenders"), 0);
	json_decref(a);
	char ref[64];
	net_new_order(&net, "m1", 3, ref, sizeof(ref));
	a = call(msock, "orders");
	ck_assert_int_ge(list_len(a, "orders"), 1);
	json_decref(a);
	/* More, paged: three fundings, pages of two. */
	net_fund(&net, customer, 20);
	net_fund(&net, customer, 30);
	snprintf(args, sizeof(args), "account.ledger account=%s limit=2", customer);
	a = call(bsock, args);
	ck_assert_int_eq(list_len(a, "entries"), 2);
	ck_assert_int_eq(json_int(json_array_get(json_object_get(a, "entries"), 0), "amount"), 30);
	int64_t next = json_int(a, "next_before");
	json_decref(a);
	snprintf(args, sizeof(args), "account.ledger account=%s limit=2 before=%lld", customer,
		 (long long)next);
	a = call(bsock, args);
	ck_assert_int_eq(list_len(a, "entries"), 1);
	ck_assert_int_eq(json_int(json_array_get(json_object_get(a, "entries"), 0), "amount"), 10);
	ck_assert(json_is_null(json_object_get(a, "next_before")));
	json_decref(a);
	/* Bounded pages. */
	struct run r;
	mpctl(&r, "-s %s account.ledger account=%s limit=1001", bsock, customer);
	expect_exit(&r, 1, "parameter 'limit' must be 1 .. 1000");
	mpctl(&r, "-s %s orders limit=0", msock);
	expect_exit(&r, 1, "parameter 'limit' must be 1 .. 1000");
	/* Orders page by reference. */
	net_new_order(&net, "m1", 4, ref, sizeof(ref));
	a = call(msock, "orders limit=1");
	ck_assert_int_eq(list_len(a, "orders"), 1);
	char after[64];
	snprintf(after, sizeof(after), "%s", json_str(a, "next_after"));
	json_decref(a);
	snprintf(args, sizeof(args), "orders after=%s", after);
	a = call(msock, args);
	ck_assert_int_ge(list_len(a, "orders"), 1);
	ck_assert_str_ne(json_str(json_array_get(json_object_get(a, "orders"), 0), "order_ref"),
			 after);
	json_decref(a);
}
END_TEST

/* ---- log level ---- */

static int log_count(const char *daemon, const char *needle)
{
	char cmd[1200], out[32] = "";
	snprintf(cmd, sizeof(cmd), "grep -c '%s' '%s/%s/log'", needle, net.dir, daemon);
	FILE *p = popen(cmd, "r");
	ck_assert(p != NULL);
	ck_assert(fgets(out, sizeof(out), p) != NULL || 1);
	pclose(p);
	return atoi(out);
}

START_TEST(log_level_is_shown_and_set_at_run_time)
{
	static const char *const daemons[] = {"broker", "m1", "w1"};
	const char *socks[] = {bsock, msock, wsock};
	for (int d = 0; d < 3; d++) {
		json_t *a = call(socks[d], "log.level");
		ck_assert_str_eq(json_str(a, "level"), "info");
		json_decref(a);
		a = call(socks[d], "log.level level=error");
		ck_assert_str_eq(json_str(a, "level"), "error");
		ck_assert_str_eq(json_str(a, "previous"), "info");
		json_decref(a);
		/* An unknown method is logged at info: not now. */
		struct run r;
		mpctl(&r, "-s %s probe.quiet", socks[d]);
		expect_exit(&r, 1, "NO_METHOD");
		a = call(socks[d], "log.level level=info");
		ck_assert_str_eq(json_str(a, "previous"), "error");
		json_decref(a);
		mpctl(&r, "-s %s probe.loud", socks[d]);
		ck_assert_int_eq(log_count(daemons[d], "probe.quiet"), 0);
		ck_assert_int_eq(log_count(daemons[d], "probe.loud"), 1);
		ck_assert_int_eq(log_count(daemons[d], "log level set to info (was error)"), 1);
		mpctl(&r, "-s %s log.level level=loud", socks[d]);
		expect_exit(&r, 1, "parameter 'level' must be error, warn, info or debug");
	}
	net_audit_clean(&net);
}
END_TEST

static Suite *mpctl_suite(void)
{
	Suite *s = suite_create("mpctl");
	TCase *tc = tcase_create("mpctl");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, help_lists_each_daemons_methods_with_their_parameters);
	tcase_add_test(tc, method_help_is_asked_from_the_daemon);
	tcase_add_test(tc, operations_doc_holds_the_daemons_own_reference);
	tcase_add_test(tc, human_prints_tables_and_key_value_lines);
	tcase_add_test(tc, timeout_on_a_daemon_that_does_not_answer);
	tcase_add_test(tc, daemon_down_is_exit_3);
	tcase_add_test(tc, failed_method_and_usage_exit_statuses);
	tcase_add_test(tc, refused_caller_is_exit_4_and_logged);
	tcase_add_test(tc, daemon_refuses_a_request_of_another_version);
	tcase_add_test(tc, mpctl_refuses_an_answer_of_another_version);
	tcase_add_test(tc,
		       unknown_missing_and_mistyped_parameters_are_refused_before_the_method_runs);
	tcase_add_test(tc, lists_are_arrays_with_zero_one_or_more_elements);
	tcase_add_test(tc, log_level_is_shown_and_set_at_run_time);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(mpctl_suite());
}
