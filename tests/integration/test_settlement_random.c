/* A randomized run of the whole money cycle against the real daemons (issue 7): one network
 * with --test-clock (brokerd, merchants m1..m3, wallets w1..w3) and many interleaved operations
 * chosen by a seeded PRNG: issue (bound or not), pay at the holder, pay at another merchant
 * (a handoff), transfer to another customer, redeem, close, refund, payout, and clock advances
 * that cross pay_until and redeem_until + T_grace, each followed by the broker's sweep.
 *
 * The test keeps its own record of what every daemon acknowledged (the model below): per
 * channel its epochs (merchant, start, last acknowledged index, index redeemed in time), its
 * owner, its state. After EVERY step it calls the broker's audit; every answer is compared
 * with the model (the last index of a pay, a Close's final_index, a refund's amount, a
 * payout's balance). At the end everything is redeemed, the clock passes every channel's
 * finalize_at and the sweep finalises them; then for every channel
 *   escrow = merchant credit + early refund + refund + unclaimed,
 * each equal to what the model predicts, and each merchant's credit (pending + available +
 * paid out) is exactly the units the model saw acknowledged for it and redeemed in time.
 *
 * A close is followed at once by the early refund (docs/close.md): the wallet sends it on its
 * own, the test asks for it too (the same bytes: OK or DUPLICATE_OK) and expects
 * (n - max(final_index, spent)) * unit_value, the channel CLOSED_EARLY; finalisation then pays
 * only what is left ((n - spent) * unit_value - early refund, 0 when every unit up to the Close
 * was redeemed), never a second refund.
 *
 * Seeds: by default the fixed DEFAULT_SEEDS, one after the other on one network (each seed's
 * channels all finalised before the next begins). Each seed is printed; MP_RANDOM_SEED=<seed>
 * runs that one seed alone, MP_RANDOM_RUNS=<k> runs k seeds drawn from the time instead (a
 * longer run), MP_RANDOM_STEPS=<n> changes each run's length (default 90). */
#include <check.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_model.h"
#include "harness_redeem.h"
#include "harness_settle.h"
#include "../check_run.h"

#define N_MERCHANTS  3
#define N_WALLETS    3
#define MAX_CHANNELS 32
#define WALLET_FUNDS 1000000
/* Pays, transfers and closes only while the broker's time is this far before pay_until (the
 * protocol's δ_xfer is 1 h; walletd refuses a transfer 60 s before that). */
#define PAY_MARGIN (3 * 3600)

static const uint64_t DEFAULT_SEEDS[] = {11, 29, 53};

static struct net net;
static struct tmerchant tm[N_MERCHANTS + 1]; /* 1.. */
static char ep[N_MERCHANTS + 1][128], account[N_WALLETS + 1][64];

static struct rng rng;
static struct model md;
static uint64_t paid_out[N_MERCHANTS + 1];
static int64_t issued_by[N_WALLETS + 1]; /* escrow of the channels each wallet issued */
static unsigned n_payouts;
/* Balances when the current seed's run began (earlier runs on the same network). */
static int64_t wallet_base[N_WALLETS + 1], merchant_base[N_MERCHANTS + 1];

/* ---- the network ---- */
static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* the test sweeps after each advance */
	setenv("MP_DEADLINE_CHECK", "3600", 1); /* merchants redeem when the test says */
	setenv("MP_REFUND_CHECK", "0", 1);
	net_up(&net);
	for (int m = 2; m <= N_MERCHANTS; m++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", m);
		ck_assert_int_eq(net_cmd(&net, "merchant", name), 0);
	}
	for (int w = 2; w <= N_WALLETS; w++) {
		char name[8];
		snprintf(name, sizeof(name), "w%d", w);
		ck_assert_int_eq(net_cmd(&net, "wallet", name), 0);
	}
	unsetenv("MP_TEST_CLOCK");
	unsetenv("MP_SWEEP_INTERVAL");
	unsetenv("MP_DEADLINE_CHECK");
	unsetenv("MP_REFUND_CHECK");
	for (int m = 1; m <= N_MERCHANTS; m++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", m);
		tmerchant_load(&tm[m], &net, name);
		net_read(&net, name, "endpoint", ep[m], sizeof(ep[m]));
	}
	for (int w = 1; w <= N_WALLETS; w++) {
		char name[8];
		snprintf(name, sizeof(name), "w%d", w);
		json_t *r = admin_ok(&net, name, "register", NULL);
		snprintf(account[w], sizeof(account[w]), "%s", json_str(r, "account_id"));
		json_decref(r);
		net_fund(&net, account[w], WALLET_FUNDS);
	}
}

static void teardown_net(void)
{
	for (int m = 1; m <= N_MERCHANTS; m++)
		tmerchant_free(&tm[m]);
	net_down(&net);
}

static const char *wname(int w)
{
	static char names[N_WALLETS + 1][8];
	snprintf(names[w], sizeof(names[w]), "w%d", w);
	return names[w];
}

static const char *mname(int m)
{
	return tm[m].name;
}

/* A channel the model can pay with now (ACTIVE, unspent, well before pay_until). */
static struct mchannel *pick_payable(uint64_t now)
{
	int cand[MAX_CHANNELS], k = 0;
	for (int i = 0; i < md.n_chans; i++)
		if (md.chans[i].state == CH_ACTIVE && md.chans[i].last < md.chans[i].n &&
		    now + PAY_MARGIN < md.chans[i].pay_until)
			cand[k++] = i;
	return k ? &md.chans[cand[rng_range(&rng, 0, (uint64_t)k - 1)]] : NULL;
}

/* ---- the operations; each returns false when it did not apply ---- */
static bool op_issue(uint64_t now)
{
	(void)now;
	if (md.n_chans == MAX_CHANNELS)
		return false;
	struct mchannel *c = &md.chans[md.n_chans];
	memset(c, 0, sizeof(*c));
	c->owner = (int)rng_range(&rng, 1, N_WALLETS);
	c->n = (unsigned)rng_range(&rng, 15, 60);
	c->unit = rng_range(&rng, 1, 3);
	bool unbound = rng_range(&rng, 0, 3) == 0;
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	char params[300], holder[120] = "";
	if (!unbound)
		snprintf(holder, sizeof(holder), "\"merchant_id\":\"%s\",", tm[m].mid_hex);
	snprintf(params, sizeof(params), "{%s\"n\":%u,\"unit_value\":%" PRIu64 ",\"days\":1}",
		 holder, c->n, c->unit);
	json_t *r = admin_ok(&net, wname(c->owner), "issue", params);
	snprintf(c->id, sizeof(c->id), "%s", json_str(r, "channel_id"));
	json_decref(r);
	json_t *s = settle_channel(&net, c->id);
	ck_assert_str_eq(json_str(s, "state"), "OPEN");
	c->pay_until = (uint64_t)json_int(s, "pay_until");
	c->finalize_at = (uint64_t)json_int(s, "finalize_at");
	json_decref(s);
	if (!unbound)
		model_new_epoch(c, m);
	issued_by[c->owner] += (int64_t)(c->n * c->unit);
	md.n_chans++;
	fprintf(stderr, "  issue %s by w%d: n %u unit %" PRIu64 " holder %s\n", c->id, c->owner,
		c->n, c->unit, unbound ? "none" : mname(m));
	return true;
}

/* Pay k units of c at merchant m (a handoff, or the Bind, when m is not the holder). */
static void pay(struct mchannel *c, int m, unsigned k)
{
	char params[600], order[64], err[512];
	net_new_order(&net, mname(m), k * c->unit, order, sizeof(order));
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\","
		 "\"units\":%u,\"order_ref\":\"%s\"}",
		 c->id, tm[m].mid_hex, ep[m], k, order);
	json_t *r = admin(&net, wname(c->owner), "pay", params, err, sizeof(err));
	ck_assert_msg(r != NULL, "w%d: pay %u of %s at %s refused: %s", c->owner, k, c->id,
		      mname(m), err);
	ck_assert_str_eq(json_str(r, "status"), "OK");
	ck_assert_int_eq(json_int(r, "last"), c->last + k);
	json_decref(r);
	if (c->holder != m)
		model_new_epoch(c, m);
	c->holder_cert_known = true;
	c->last += k;
	model_epoch(c)->end = c->last;
	fprintf(stderr, "  pay %u of %s by w%d at %s: last %u\n", k, c->id, c->owner, mname(m),
		c->last);
}

static unsigned pick_units(const struct mchannel *c)
{
	unsigned left = c->n - c->last;
	return (unsigned)rng_range(&rng, 1, left < 8 ? left : 8);
}

static bool op_pay_at_holder(uint64_t now)
{
	struct mchannel *c = pick_payable(now);
	if (!c || !c->holder)
		return false;
	pay(c, c->holder, pick_units(c));
	return true;
}

static bool op_pay_elsewhere(uint64_t now)
{
	struct mchannel *c = pick_payable(now);
	if (!c)
		return false;
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	if (m == c->holder)
		m = m % N_MERCHANTS + 1;
	if (c->holder && !c->holder_cert_known) {
		/* walletd needs the holder's MerchantCert for the holder hint of a Move: it has
		 * it once it paid there (docs/custody.md). */
		pay(c, c->holder, 1);
		if (c->last == c->n)
			return true;
	}
	pay(c, m, pick_units(c));
	return true;
}

static bool op_transfer(uint64_t now)
{
	struct mchannel *c = pick_payable(now);
	if (!c || (!c->holder && c->last > 0))
		return false;
	int to = (int)rng_range(&rng, 1, N_WALLETS);
	if (to == c->owner)
		to = to % N_WALLETS + 1;
	char params[8192];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	json_t *r = admin_ok(&net, wname(to), "transfer.offer", params);
	char hold[200] = "";
	if (c->holder)
		snprintf(hold, sizeof(hold), ",\"endpoint\":\"%s\"", ep[c->holder]);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"%s}", c->id,
		 json_str(r, "offer"), hold);
	json_decref(r);
	r = admin_ok(&net, wname(c->owner), "transfer.send", params);
	ck_assert_int_lt(strlen(json_str(r, "bundle")) + 20, sizeof(params));
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", json_str(r, "bundle"));
	json_decref(r);
	r = admin_ok(&net, wname(to), "transfer.accept", params);
	ck_assert_str_eq(json_str(r, "channel_id"), c->id);
	ck_assert_int_eq(json_int(r, "spendable"), c->n - c->last);
	ck_assert(json_is_true(json_object_get(r, "broker_ack")));
	json_decref(r);
	fprintf(stderr, "  transfer %s from w%d to w%d at %u\n", c->id, c->owner, to, c->last);
	c->owner = to;
	c->holder_cert_known = c->holder != 0;
	return true;
}

/* The early refund of a closed channel, asked for by hand (the wallet sends the same stored
 * request on its own): OK or DUPLICATE_OK with the model's amount, to the owner's account, the
 * broker's channel CLOSED_EARLY at the Close's index (FINALIZED later). */
static void check_early_refund(const struct mchannel *c)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	json_t *r = admin_ok(&net, wname(c->owner), "refund", params);
	const char *st = json_str(r, "broker_status");
	ck_assert_msg(strcmp(st, "OK") == 0 || strcmp(st, "DUPLICATE_OK") == 0,
		      "early refund of %s: %s", c->id, st);
	ck_assert_msg(json_int(r, "refund") == (int64_t)c->early_refund,
		      "early refund of %s: %lld, model %llu", c->id,
		      (long long)json_int(r, "refund"), (unsigned long long)c->early_refund);
	ck_assert_str_eq(json_str(r, "payout_account"), account[c->owner]);
	fprintf(stderr, "  early refund %s by w%d: %s %" PRIu64 "\n", c->id, c->owner, st,
		c->early_refund);
	json_decref(r);
	json_t *s = settle_channel(&net, c->id);
	ck_assert_str_eq(json_str(s, "state"), c->finalized ? "FINALIZED" : "CLOSED_EARLY");
	ck_assert_int_eq(json_int(s, "close_index"), c->close_index);
	ck_assert_int_eq(json_int(s, "early_refund"), (int64_t)c->early_refund);
	json_decref(s);
}

static bool op_close(uint64_t now)
{
	struct mchannel *c = pick_payable(now);
	if (!c || !c->holder)
		return false;
	char params[300];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"endpoint\":\"%s\"}", c->id,
		 ep[c->holder]);
	json_t *r = admin_ok(&net, wname(c->owner), "close", params);
	ck_assert_str_eq(json_str(r, "state"), "CLOSED");
	ck_assert_int_eq(json_int(r, "final_index"), c->last);
	ck_assert_int_eq(json_int(r, "refund_units"), c->n - c->last);
	json_decref(r);
	unsigned spent = c->last;
	for (int k = 0; k < c->n_epochs; k++)
		if (c->epochs[k].redeemed > spent)
			spent = c->epochs[k].redeemed;
	c->state = CH_CLOSED;
	c->close_index = c->last;
	c->early_refund = (uint64_t)(c->n - spent) * c->unit;
	fprintf(stderr, "  close %s by w%d at %s: final_index %u\n", c->id, c->owner,
		mname(c->holder), c->last);
	check_early_refund(c);
	return true;
}

/* merchantd redeems every epoch it holds; the model: each of m's epochs of a channel not yet
 * finalised is credited to its acknowledged end. */
static void redeem_at(int m)
{
	json_decref(admin_ok(&net, mname(m), "redeem", NULL));
	model_redeemed(&md, m);
}

static bool op_redeem(uint64_t now)
{
	(void)now;
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	redeem_at(m);
	fprintf(stderr, "  redeem at %s\n", mname(m));
	return true;
}

/* The current owner asks for the refund: TOO_EARLY before finalisation, else the amount the
 * model expects (OK the first time, DUPLICATE_OK after). */
static bool op_refund(uint64_t now)
{
	(void)now;
	if (md.n_chans == 0)
		return false;
	struct mchannel *c = &md.chans[rng_range(&rng, 0, (uint64_t)md.n_chans - 1)];
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	if (c->state == CH_CLOSED) {
		/* The early refund again: the stored answer, before and after finalisation. */
		check_early_refund(c);
		return true;
	}
	json_t *r = admin_ok(&net, wname(c->owner), "refund", params);
	const char *st = json_str(r, "broker_status");
	if (!c->finalized) {
		ck_assert_msg(strcmp(st, "TOO_EARLY") == 0, "refund of %s before finalisation: %s",
			      c->id, st);
		ck_assert_int_eq(json_int(r, "not_before"), (int64_t)c->finalize_at);
	} else {
		ck_assert_msg(strcmp(st, "OK") == 0 || strcmp(st, "DUPLICATE_OK") == 0,
			      "refund of finalised %s: %s", c->id, st);
		ck_assert_int_eq(json_int(r, "refund"), (int64_t)model_expect(c).refund);
		ck_assert_str_eq(json_str(r, "payout_account"), account[c->owner]);
	}
	fprintf(stderr, "  refund %s by w%d: %s\n", c->id, c->owner, st);
	json_decref(r);
	return true;
}

static json_t *payout(int m, uint64_t amount, const char *id, char *err, size_t len)
{
	char params[300];
	snprintf(params, sizeof(params),
		 "{\"account\":\"%s\",\"amount\":%" PRIu64 ",\"payout_id\":\"%s\"}", tm[m].mid_hex,
		 amount, id);
	return admin(&net, "broker", "account.payout", params, err, len);
}

/* A merchant's available balance paid out in part (and the payout retried: DUPLICATE_OK), or
 * more than it has: INSUFFICIENT_FUNDS, nothing moves. */
static bool op_payout(uint64_t now)
{
	(void)now;
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	int64_t avail = net_balance(&net, tm[m].mid_hex);
	char id[MP_HEX_ID_LEN + 1], err[512];
	snprintf(id, sizeof(id), "%016" PRIx64 "%016x", rng_next(&rng), ++n_payouts);
	if (avail == 0) {
		ck_assert_ptr_null(payout(m, 1, id, err, sizeof(err)));
		ck_assert_msg(strstr(err, "INSUFFICIENT_FUNDS"), "%s", err);
		ck_assert_int_eq(net_balance(&net, tm[m].mid_hex), 0);
		fprintf(stderr, "  payout at %s: nothing available\n", mname(m));
		return true;
	}
	uint64_t amount = rng_range(&rng, 1, (uint64_t)avail);
	for (int again = 0; again < 2; again++) {
		json_t *r = payout(m, amount, id, err, sizeof(err));
		ck_assert_msg(r != NULL, "payout %" PRIu64 " of %s: %s", amount, mname(m), err);
		ck_assert_str_eq(json_str(r, "status"), again ? "DUPLICATE_OK" : "OK");
		json_decref(r);
	}
	paid_out[m] += amount;
	ck_assert_int_eq(net_balance(&net, tm[m].mid_hex), avail - (int64_t)amount);
	fprintf(stderr, "  payout %" PRIu64 " of %s\n", amount, mname(m));
	return true;
}

/* Move the clock by dt (most of the time every merchant redeems first, as merchantd does on its
 * own before redeem_until), sweep, and check every channel the sweep finalised. */
static void advance(uint64_t dt, bool redeem_first)
{
	if (redeem_first)
		for (int m = 1; m <= N_MERCHANTS; m++)
			redeem_at(m);
	net_clock_advance(&net, dt);
	uint64_t now = settle_broker_now(&net);
	json_t *r = settle_sweep(&net);
	ck_assert_int_eq(json_int(r, "failures"), 0);
	json_decref(r);
	fprintf(stderr, "  advance %" PRIu64 " s%s: now %" PRIu64 "\n", dt,
		redeem_first ? " (redeemed first)" : "", now);
	for (int i = 0; i < md.n_chans; i++)
		if (!md.chans[i].finalized && md.chans[i].finalize_at <= now)
			model_check_finalized(&net, &md.chans[i], account[md.chans[i].owner]);
}

static bool op_advance(uint64_t now)
{
	(void)now;
	advance(rng_range(&rng, 1800, 20 * 3600), rng_range(&rng, 0, 3) != 0);
	return true;
}

struct op {
	const char *name;
	bool (*run)(uint64_t now);
	unsigned weight;
};

static const struct op ops[] = {
    {"issue", op_issue, 10},	  {"pay", op_pay_at_holder, 24}, {"handoff", op_pay_elsewhere, 10},
    {"transfer", op_transfer, 7}, {"redeem", op_redeem, 8},	 {"close", op_close, 4},
    {"refund", op_refund, 6},	  {"payout", op_payout, 5},	 {"advance", op_advance, 9},
};

static const struct op *pick_op(void)
{
	return &ops[rng_weighted(&rng, ops, sizeof(ops) / sizeof(ops[0]), sizeof(ops[0]),
				 offsetof(struct op, weight))];
}

/* The end: every merchant redeems, the clock passes every finalize_at, the sweep finalises
 * what is left; then every channel, merchant and customer is checked against the model. */
static void finish_and_check(void)
{
	uint64_t last = 0;
	for (int i = 0; i < md.n_chans; i++)
		if (md.chans[i].finalize_at > last)
			last = md.chans[i].finalize_at;
	uint64_t now = settle_broker_now(&net);
	advance(last > now ? last - now : 1, true);
	net_audit_clean(&net);
	for (int i = 0; i < md.n_chans; i++) {
		ck_assert_msg(md.chans[i].finalized, "%s not finalised", md.chans[i].id);
		json_t *s = settle_channel(&net, md.chans[i].id);
		ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
		json_t *f = json_object_get(s, "finalization");
		ck_assert_int_eq(json_int(f, "credited") + json_int(s, "early_refund") +
				     json_int(f, "refund") + json_int(f, "unclaimed"),
				 (int64_t)(md.chans[i].n * md.chans[i].unit));
		json_decref(s);
	}
	for (int m = 1; m <= N_MERCHANTS; m++) {
		int64_t credit = net_pending(&net, tm[m].mid_hex) +
				 net_balance(&net, tm[m].mid_hex) + (int64_t)paid_out[m];
		fprintf(stderr,
			"%s: credit %lld (paid out %" PRIu64 "), acknowledged %" PRIu64
			", redeemed in time %" PRIu64 "\n",
			mname(m), (long long)credit, paid_out[m], model_acknowledged(&md, m),
			model_credit(&md, m));
		ck_assert_int_eq(net_pending(&net, tm[m].mid_hex), 0);
		ck_assert_int_eq(credit - merchant_base[m], (int64_t)model_credit(&md, m));
	}
	for (int w = 1; w <= N_WALLETS; w++) {
		int64_t refunds = 0;
		for (int i = 0; i < md.n_chans; i++)
			if (md.chans[i].owner == w)
				refunds += (int64_t)(model_expect(&md.chans[i]).refund +
						     md.chans[i].early_refund);
		ck_assert_int_eq(net_balance(&net, account[w]),
				 wallet_base[w] - issued_by[w] + refunds);
	}
}

/* A fresh model for the next run on the same network: every channel of the runs before is
 * finalised, so nothing is pending; the balances now are the run's base. */
static void model_reset(void)
{
	memset(&md, 0, sizeof(md));
	for (int w = 1; w <= N_WALLETS; w++) {
		issued_by[w] = 0;
		wallet_base[w] = net_balance(&net, account[w]);
	}
	for (int m = 1; m <= N_MERCHANTS; m++) {
		paid_out[m] = 0;
		ck_assert_int_eq(net_pending(&net, tm[m].mid_hex), 0);
		merchant_base[m] = net_balance(&net, tm[m].mid_hex);
	}
}

/* One run of `steps` operations chosen by the PRNG from `seed`, then the end checks. */
static void run_seed(uint64_t seed, unsigned steps)
{
	fprintf(stderr,
		"settlement_random: seed %" PRIu64 " (MP_RANDOM_SEED=%" PRIu64
		" reproduces it), %u steps\n",
		seed, seed, steps);
	model_reset();
	rng.state = seed;
	uint64_t t0 = now_ms();
	op_issue(0);
	for (unsigned i = 0; i < steps; i++) {
		uint64_t now = settle_broker_now(&net);
		const struct op *op = pick_op();
		fprintf(stderr, "step %u (%.1f s): %s\n", i, (now_ms() - t0) / 1000.0, op->name);
		if (!op->run(now))
			fprintf(stderr, "  (nothing to do)\n");
		net_audit_clean(&net);
	}
	finish_and_check();
	fprintf(stderr, "settlement_random: seed %" PRIu64 ": %d channels, all checks passed\n",
		seed, md.n_chans);
}

START_TEST(random_interleaving)
{
	const char *seed_env = getenv("MP_RANDOM_SEED");
	const char *runs_env = getenv("MP_RANDOM_RUNS");
	const char *steps_env = getenv("MP_RANDOM_STEPS");
	unsigned steps = steps_env ? (unsigned)atoi(steps_env) : 90;
	if (seed_env) {
		run_seed(strtoull(seed_env, NULL, 0), steps);
	} else if (runs_env) {
		uint64_t base = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		for (int k = 0; k < atoi(runs_env); k++)
			run_seed(base + (uint64_t)k, steps);
	} else {
		for (size_t k = 0; k < sizeof(DEFAULT_SEEDS) / sizeof(DEFAULT_SEEDS[0]); k++)
			run_seed(DEFAULT_SEEDS[k], steps);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("settlement_random");
	TCase *tc = tcase_create("random");
	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, random_interleaving);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
