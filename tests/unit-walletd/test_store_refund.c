/* walletd's store for refunds (walletd/store_refund.c): the exact signed RefundRequest comes
 * back after reopening; TOO_EARLY answers are recorded; the first refunded answer is kept and
 * never overwritten by a later one. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "stmt.h"
#include "store.h"
#include "../check_run.h"

#define DIR_TEMPLATE "/tmp/mp-test-wrefund-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static char err[512];
static struct mp_clock test_clock; /* offset 0: the wall clock */

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/w.db", dir);
}

static void teardown(void)
{
	char p[sizeof(path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

static struct wstore *reopen(struct wstore *s)
{
	if (s)
		wstore_close(s);
	s = wstore_open(path, &test_clock, err, sizeof(err));
	ck_assert_msg(s != NULL, "%s", err);
	return s;
}

START_TEST(request_and_answers_survive_reopening)
{
	uint8_t id[MP_ID_LEN], body[40], pk[MP_PK_LEN], sig[MP_SIG_LEN];
	memset(id, 7, sizeof(id));
	memset(body, 1, sizeof(body));
	memset(pk, 2, sizeof(pk));
	memset(sig, 3, sizeof(sig));
	MpSigned *req = mp_stmt_from_parts(MP_STMT_REFUND_REQUEST, body, sizeof(body), pk, sig);
	ck_assert_ptr_nonnull(req);
	struct wstore *s = reopen(NULL);
	struct wstore_refund r;
	ck_assert_int_eq(wstore_refund_get(s, id, &r), 0);
	ck_assert(wstore_refund_insert(s, id, req));
	ck_assert(!wstore_refund_insert(s, id, req)); /* one request per channel */

	struct wstore_refund early = {.not_before = 1234};
	snprintf(early.status, sizeof(early.status), "TOO_EARLY");
	ck_assert(wstore_refund_answer(s, id, &early));
	s = reopen(s);
	ck_assert_int_eq(wstore_refund_get(s, id, &r), 1);
	ck_assert(!r.refunded);
	ck_assert_uint_eq(r.not_before, 1234);
	ck_assert_str_eq(r.status, "TOO_EARLY");
	ck_assert(r.request->body.len == sizeof(body) &&
		  memcmp(r.request->body.data, body, sizeof(body)) == 0);
	wstore_refund_clear(&r);

	struct wstore_refund done = {
	    .refunded = true, .amount = 255, .refunded_at = 99, .has_payout = true};
	memset(done.payout, 9, MP_ID_LEN);
	snprintf(done.status, sizeof(done.status), "OK");
	ck_assert(wstore_refund_answer(s, id, &done));
	struct wstore_refund later = {.refunded = true, .amount = 1};
	snprintf(later.status, sizeof(later.status), "DUPLICATE_OK");
	ck_assert(wstore_refund_answer(s, id, &later)); /* ignored: already refunded */
	s = reopen(s);
	ck_assert_int_eq(wstore_refund_get(s, id, &r), 1);
	ck_assert(r.refunded);
	ck_assert_uint_eq(r.amount, 255);
	ck_assert_uint_eq(r.refunded_at, 99);
	ck_assert(r.has_payout && r.payout[0] == 9);
	ck_assert_str_eq(r.status, "OK");
	wstore_refund_clear(&r);
	wstore_close(s);
	mp_stmt_free(req);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("walletd_store_refund");
	TCase *tc = tcase_create("store_refund");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, request_and_answers_survive_reopening);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
