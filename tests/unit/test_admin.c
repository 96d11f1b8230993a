/* The admin socket's progress lines (common/admin.c, common/admin_client.c) with a real libevent
 * loop in a child process and the blocking client in the test: lines sent in one burst before
 * the answer are each given to the client's callback and the answer still read; a method that
 * reports every 0.6 s and answers after 2.4 s is waited for by a client whose deadline is
 * 1.5 s, because each progress line starts the deadline again; a client that did not ask for
 * progress lines gets the answer alone; a method that never answers still times out. */
#include <check.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "../check_run.h"

static char sock[64];
static pid_t child;

struct slow {
	struct mp_admin_req *req;
	struct event *timer;
	int sent;
};

static void burst(struct mp_admin_req *req, json_t *params, void *ctx)
{
	for (int i = 1; i <= 3; i++)
		mp_admin_progress(req, json_pack("{s:s,s:i}", "line", "step", "i", i));
	mp_admin_reply(req, json_pack("{s:i}", "n", 3));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct slow *s = arg;
	if (s->sent == 4) {
		mp_admin_reply(s->req, json_pack("{s:i}", "n", s->sent));
		event_free(s->timer);
		free(s);
		return;
	}
	mp_admin_progress(s->req, json_pack("{s:i}", "i", ++s->sent));
	struct timeval tv = {0, 600000};
	evtimer_add(s->timer, &tv);
}

static void slow(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct slow *s = calloc(1, sizeof(*s));
	s->req = req;
	s->timer = evtimer_new(ctx, on_tick, s);
	struct timeval tv = {0, 600000};
	evtimer_add(s->timer, &tv);
}

static void never(struct mp_admin_req *req, json_t *params, void *ctx)
{
	/* never answered: the client's deadline ends it (the request leaks with the child) */
}

static const struct mp_admin_method methods[] = {
    {"burst", burst, "three progress lines, then the answer", NULL},
    {"slow", slow, "a progress line every 0.6 s, the answer after 2.4 s", NULL},
    {"never", never, "no answer", NULL},
    {NULL},
};

static void serve(void)
{
	struct event_base *base = event_base_new();
	if (!base || !mp_admin_open(base, sock, NULL, methods, base))
		_exit(2);
	event_base_dispatch(base);
	_exit(0);
}

/* Whether the child's admin socket takes a connection: the file appears at bind(), before
 * listen(), and a connect between the two is refused (seen under valgrind). */
static bool socket_accepts(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static void setup(void)
{
	snprintf(sock, sizeof(sock), "/tmp/mp-test-admin-%d.sock", (int)getpid());
	unlink(sock);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		serve();
	for (int i = 0; i < 3000 && !socket_accepts(); i++) /* 30 s: slow under valgrind */
		usleep(10000);
	ck_assert_msg(socket_accepts(), "the admin socket takes no connection");
}

static void teardown(void)
{
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	unlink(sock);
}

struct seen {
	int lines;
	int last_i;
};

static void count(void *arg, json_t *progress)
{
	struct seen *s = arg;
	s->lines++;
	s->last_i = (int)json_integer_value(json_object_get(progress, "i"));
}

START_TEST(progress_lines_before_the_answer)
{
	struct seen seen = {0};
	struct mp_admin_answer a;
	mp_admin_call_progress(sock, "burst", NULL, 5000, count, &seen, &a);
	ck_assert_msg(a.outcome == MP_CALL_OK, "%s", a.message);
	ck_assert_int_eq(seen.lines, 3);
	ck_assert_int_eq(seen.last_i, 3);
	ck_assert_int_eq(json_integer_value(json_object_get(a.result, "n")), 3);
	mp_admin_answer_free(&a);
}
END_TEST

START_TEST(progress_starts_the_deadline_again)
{
	struct seen seen = {0};
	struct mp_admin_answer a;
	mp_admin_call_progress(sock, "slow", NULL, 1500, count, &seen, &a);
	ck_assert_msg(a.outcome == MP_CALL_OK, "%s", a.message);
	ck_assert_int_eq(seen.lines, 4);
	ck_assert_int_eq(json_integer_value(json_object_get(a.result, "n")), 4);
	mp_admin_answer_free(&a);
}
END_TEST

START_TEST(no_progress_lines_unless_asked)
{
	struct mp_admin_answer a;
	mp_admin_call_timed(sock, "burst", NULL, 5000, &a);
	ck_assert_msg(a.outcome == MP_CALL_OK, "%s", a.message);
	ck_assert_int_eq(json_integer_value(json_object_get(a.result, "n")), 3);
	mp_admin_answer_free(&a);
}
END_TEST

START_TEST(silence_still_times_out)
{
	struct seen seen = {0};
	struct mp_admin_answer a;
	mp_admin_call_progress(sock, "never", NULL, 300, count, &seen, &a);
	ck_assert_int_eq(a.outcome, MP_CALL_TIMEOUT);
	ck_assert_int_eq(seen.lines, 0);
	mp_admin_answer_free(&a);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("progress");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, progress_lines_before_the_answer);
	tcase_add_test(tc, progress_starts_the_deadline_again);
	tcase_add_test(tc, no_progress_lines_unless_asked);
	tcase_add_test(tc, silence_still_times_out);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
