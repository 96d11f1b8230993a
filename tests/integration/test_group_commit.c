/* merchantd's adaptive group commit (merchantd/batch.c, docs/performance.md) under the real
 * daemons. Which trigger handed each batch to the store thread is read from the metric
 * micropay_merchant_batches_submitted_total{trigger}; no timing is asserted.
 *  - default (commit_delay_us = 0): a lone Pay's batch is handed over the moment it is queued
 *    ("idle"), never by the timer, and the Pay is answered once that batch committed;
 *  - Pays arriving while a batch commits (held on the store's write lock from outside) are not
 *    answered before their own commit, and form the next batch, handed over when the committing
 *    one completes ("after_commit");
 *  - commit_delay_us > 0: a lone Pay's batch waits for the timer ("timer"). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_store.h"
#include "../check_run.h"

static struct net net;
static char m1_db[700];

#define IDLE  "micropay_merchant_batches_submitted_total{trigger=\"idle\"}"
#define AFTER "micropay_merchant_batches_submitted_total{trigger=\"after_commit\"}"
#define TIMER "micropay_merchant_batches_submitted_total{trigger=\"timer\"}"

struct triggers {
	int64_t idle, after, timer;
};

static struct triggers triggers_now(void)
{
	return (struct triggers){metric(&net, "m1", IDLE), metric(&net, "m1", AFTER),
				 metric(&net, "m1", TIMER)};
}

static void setup_net(void)
{
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	net_path(&net, "m1/merchant.db", m1_db, sizeof(m1_db));
}

static void teardown_net(void)
{
	net_down(&net);
}

/* The next answer on w is the PayAck of index j, accepted (the benchmark's order_ref names no
 * order: every Pay is credit, UNDERPAID). */
static void expect_accepted(struct wire *w, uint32_t j)
{
	MpEnvelope *e = wire_recv(w);
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck for j=%u", j);
	MpCode code = e->pay_ack->status->code;
	ck_assert_msg(code == MP_ST(OK) || code == MP_ST(UNDERPAID), "j=%u answered %s", j,
		      mp_code_name(code));
	ck_assert_uint_eq(e->pay_ack->last, j);
	micropay__v1__envelope__free_unpacked(e, NULL);
}

START_TEST(a_lone_pay_is_committed_at_once_not_by_the_timer)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	tchannel_opened(&net, "m1", &tw, &ch, 20, &w);
	for (uint32_t j = 1; j <= 3; j++) {
		struct triggers before = triggers_now();
		tchannel_send_pay(&ch, &w, j);
		expect_accepted(&w, j);
		struct triggers after = triggers_now();
		ck_assert_int_eq(after.idle - before.idle, 1);
		ck_assert_int_eq(after.after - before.after, 0);
		ck_assert_int_eq(after.timer - before.timer, 0);
	}
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

START_TEST(pays_arriving_during_a_commit_follow_it_as_one_batch)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	tchannel_opened(&net, "m1", &tw, &ch, 20, &w);
	struct triggers before = triggers_now();
	int64_t batches = metric(&net, "m1", "micropay_merchant_batches_total");
	sqlite3 *lock = store_lock_hold(m1_db);
	tchannel_send_pay(&ch, &w, 1);
	/* Handed over at once, its commit now waits on the lock (the loop still answers). */
	ck_assert_int_eq(metric_wait(&net, "m1", IDLE, before.idle + 1, 5000), before.idle + 1);
	for (uint32_t j = 2; j <= 5; j++)
		tchannel_send_pay(&ch, &w, j);
	MpEnvelope *early = wire_recv_within(&w, 300);
	ck_assert_msg(early == NULL, "a Pay was answered before its batch committed");
	store_lock_release(lock);
	for (uint32_t j = 1; j <= 5; j++)
		expect_accepted(&w, j);
	ck_assert_int_eq(
	    metric_wait(&net, "m1", "micropay_merchant_batches_total", batches + 2, 5000),
	    batches + 2);
	struct triggers after = triggers_now();
	ck_assert_int_eq(after.idle - before.idle, 1);
	ck_assert_int_eq(after.after - before.after, 1); /* Pays 2..5 in one batch */
	ck_assert_int_eq(after.timer - before.timer, 0);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

START_TEST(a_configured_delay_commits_by_the_timer)
{
	net_restart_with(&net, "m1", "merchant", "commit_delay_us = 2000");
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	tchannel_opened(&net, "m1", &tw, &ch, 20, &w);
	struct triggers before = triggers_now();
	tchannel_send_pay(&ch, &w, 1);
	expect_accepted(&w, 1);
	struct triggers after = triggers_now();
	ck_assert_int_eq(after.idle - before.idle, 0);
	ck_assert_int_eq(after.timer - before.timer, 1);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_restart_with(&net, "m1", "merchant", "commit_delay_us = 0");
	net_audit_clean(&net);
}
END_TEST

static Suite *group_commit_suite(void)
{
	Suite *s = suite_create("group_commit");
	TCase *tc = tcase_create("adaptive");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, a_lone_pay_is_committed_at_once_not_by_the_timer);
	tcase_add_test(tc, pays_arriving_during_a_commit_follow_it_as_one_batch);
	tcase_add_test(tc, a_configured_delay_commits_by_the_timer);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(group_commit_suite());
}
