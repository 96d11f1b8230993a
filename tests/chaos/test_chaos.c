/* Crash consistency (issue 10): load on a real network (brokerd, merchants m1 and m2, wallets
 * w1 and w2, PostgreSQL; --test-clock) while a random one of them is killed with SIGKILL at a
 * random moment and restarted, cycle after cycle.
 *
 * Each cycle arms the killer (chaos_kill.h: a victim and a delay of 0..KILL_WINDOW_MS; or, in a
 * targeted cycle, one of the operation's parties when its core request leaves, after a fraction
 * of its usual duration: see struct cycle) and runs one load operation chosen by the seeded PRNG:
 * issue (walletd), pay at the holder, pay at the other merchant (a handoff), transfer to the other
 * wallet, redeem, close (with its early refund), refund, payout, and an IssueReq sent by a raw wire
 * client (then replayed later). An operation whose call fails (the daemon it talks to, or one
 * behind it, died) waits for the killer, brings the victim back and sends the same request again
 * until it is answered (at most RETRY_MS). Every answer is recorded in the model (harness_model.h):
 * what each wallet was told a merchant acknowledged, what each redeem and close said.
 *
 *   per cycle: ARM killer --> OPERATION (retried through the crash) --> REVIVE victim -->
 *              RECORD and REPLAY (chaos_replay.h): the Handoff, Close or Cap the operation
 *              acknowledged, asked for again at once, the same bytes; after a redeem the
 *              merchant's credit is exactly the model's -->
 *              CHECK: no custody conflict; the audit is clean; every merchant still has every
 *              payment it acknowledged (its durable `last` for the channel >= the acknowledged
 *              index)
 *   at the end: every merchant redeems; the clock passes every finalize_at; the sweep
 *              finalises every channel with the model's figures (credit + early refund +
 *              refund + unclaimed = escrow); each merchant's credit (pending + available +
 *              paid out) is exactly what it acknowledged (nothing forgotten, nothing twice);
 *              every channel any wallet knows (also one issued by a retry) is finalised with
 *              its escrow accounted for; every IssueReq of the wire client answered again with
 *              the same ChannelCert bytes, and (before redemption) every Transfer sent again to
 *              whoever capped it answered DUPLICATE_OK with the same Cap bytes its wallet got
 *              in the bundle, every HandoffReq and CloseRequest sent again to its signer
 *              answered as the protocol says for the signer's state (the same bytes while the
 *              statement is its latest); no custody conflict; the audit is clean.
 *
 * Which operations run and which daemon dies follow from the seed alone, and so does a random
 * kill's delay (a targeted kill's is a seeded fraction of a measured duration); where a kill
 * lands inside an operation depends on timing too. The seed is printed first:
 * MP_CHAOS_SEED=<seed> runs it again (default DEFAULT_SEED; 0: one drawn from the time),
 * MP_CHAOS_CYCLES=<k> (default 30) bounds the kills, MP_CHAOS_SECONDS=<s> (default 300) the load
 * phase's time, MP_CHAOS_TARGETED=<per cent> (default 50) the share of targeted cycles. */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chaos_kill.h"
#include "chaos_replay.h"
#include "harness.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_model.h"
#include "harness_peer.h"
#include "harness_pg.h"
#include "harness_settle.h"
#include "../check_run.h"

#define N_MERCHANTS	2
#define N_WALLETS	2
#define WALLET_FUNDS	10000000
#define MERCHANT_FUNDS	100000
#define KILL_WINDOW_MS	600
#define RETRY_MS	120000
#define MAX_WIRE	256
#define PAY_MARGIN	(3 * 3600)
#define DEFAULT_SEED	11
#define MAX_CAPPED	256
#define TARGETED_PCT	50  /* default share of targeted cycles (MP_CHAOS_TARGETED) */
#define FIRST_OP_MS	200 /* the first guess of an operation's duration */
#define TARGET_PERMILLE 800 /* a targeted kill: within the first 80% of the usual duration */

static struct net net;
static struct tmerchant tm[N_MERCHANTS + 1]; /* 1.. */
/* account[0]: the raw wire client's account; 1..: walletd w1, w2. */
static char ep[N_MERCHANTS + 1][128], account[N_WALLETS + 1][64], broker_ep[128], ca[600];
static struct rng rng;
static struct model md;
static struct chaos_killer killer;
static uint64_t paid_out[N_MERCHANTS + 1];
static int64_t merchant_base[N_MERCHANTS + 1];
static struct chaos_replays rp;
static struct chaos_peers peers;

struct stats {
	unsigned ops, pays, units, handoffs, transfers, closes, redeems, refunds, payouts, issues;
	unsigned retries, replays, orphans, cap_replays, targeted, targeted_inside, credit_checks;
};
static struct stats st;

/* The raw wire client: its IssueReqs and the ChannelCert bytes first answered. */
struct wire_issue {
	struct tchannel ch;
	uint8_t cert[1024];
	size_t cert_len;
};
static struct twallet tw;
static struct wire_issue wiss[MAX_WIRE];
static int n_wiss;

/* Every transfer's Transfer and the Cap its wallet got in the bundle, with who capped it
 * (merchant m, or 0: the broker, for a channel no merchant held). */
struct capped {
	int capper;
	uint8_t *transfer, *cap;
	size_t transfer_len, cap_len;
};
static struct capped caps[MAX_CAPPED];
static int n_caps;

static const char *wname(int w)
{
	static const char *const names[] = {"wire", "w1", "w2"};
	return names[w];
}

static const char *mname(int m)
{
	return tm[m].name;
}

/* ---- calls that survive crashes ---- */

/* Bring back a killed daemon (waiting for an armed kill first) and pause a little before the
 * next try (longer each time: a restarted merchant registers with the broker again). */
static void after_failure(unsigned tries, const char *what, const char *err)
{
	st.retries++;
	fprintf(stderr, "  %s failed (try %u): %s\n", what, tries, err);
	chaos_revive(&killer);
	usleep((useconds_t)(tries < 10 ? tries : 10) * 200000);
}

/* The admin call, sent again after each failure until answered; *failed counts failures. */
static json_t *call(const char *daemon, const char *method, const char *params, unsigned *failed)
{
	char err[1024], what[128];
	uint64_t t0 = now_ms();
	snprintf(what, sizeof(what), "%s %s", daemon, method);
	for (unsigned tries = 1;; tries++) {
		json_t *r = admin(&net, daemon, method, params, err, sizeof(err));
		if (r) {
			if (failed)
				*failed = tries - 1;
			return r;
		}
		ck_assert_msg(now_ms() - t0 < RETRY_MS, "%s %s: still failing after %u tries: %s",
			      what, params ? params : "", tries, err);
		after_failure(tries, what, err);
	}
}

static json_t *settlement(const char *channel_hex)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel\":\"%s\"}", channel_hex);
	return call("broker", "channel.settlement", params, NULL);
}

/* The IssueReq of w sent (again) over a fresh connection until answered; the status, the
 * ChannelCert's bytes into cert. */
static MpCode wire_issue_send(struct wire_issue *w, uint8_t *cert, size_t *cert_len)
{
	uint64_t t0 = now_ms();
	for (unsigned tries = 1;; tries++) {
		struct wire b;
		MpEnvelope *resp = NULL;
		if (wire_connect(&b, broker_ep, ca, NULL, NULL)) {
			Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
			req.stmt = w->ch.request;
			MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
			env.body_case = MP_BODY(ISSUE_REQ);
			env.issue_req = &req;
			resp = wire_call(&b, &env);
			wire_close(&b);
		}
		bool answered = resp != NULL;
		if (resp && resp->body_case == MP_BODY(ISSUE_RESP)) {
			MpCode code = resp->issue_resp->status->code;
			*cert_len = 0;
			MpSigned *c = resp->issue_resp->channel_cert;
			if (c) {
				ck_assert_uint_le(micropay__v1__signed__get_packed_size(c), 1024);
				*cert_len = micropay__v1__signed__pack(c, cert);
				mp_stmt_free(w->ch.cert);
				w->ch.cert = mp_stmt_copy(c);
			}
			micropay__v1__envelope__free_unpacked(resp, NULL);
			if (code != MP_ST(INTERNAL) && code != MP_ST(LIMIT))
				return code;
		} else if (resp) {
			micropay__v1__envelope__free_unpacked(resp, NULL);
		}
		ck_assert_msg(now_ms() - t0 < RETRY_MS, "wire IssueReq unanswered after %u tries",
			      tries);
		after_failure(tries, "wire IssueReq", answered ? "INTERNAL or LIMIT" : "no answer");
	}
}

/* ---- targeted kills ---- */

/* A cycle's kill: random (any victim, 0..KILL_WINDOW_MS after the cycle starts) or targeted
 * (one of the parties of the operation, armed when its core request leaves, after a drawn
 * fraction of that operation's usual duration: the kill lands inside it). What an operation
 * left to record once its victim runs again is kept here too.
 *
 *   targeted: OPERATION starts --core request (in_flight)--> ARM(party, fraction * usual
 *             duration) --> the request, retried through the crash --> REVIVE --> RECORD and
 *             REPLAY what it acknowledged --> CHECK
 *   an operation that reaches no core request (nothing to do): ARM(any victim, 0) after it */
enum op_kind {
	OP_ISSUE,
	OP_PAY,
	OP_HANDOFF,
	OP_TRANSFER,
	OP_REDEEM,
	OP_CLOSE,
	OP_REFUND,
	OP_PAYOUT,
	OP_WIRE_ISSUE,
	OP_WIRE_REPLAY,
	OP_COUNT
};

struct cycle {
	bool targeted, armed;
	uint64_t victim_draw; /* which party */
	unsigned permille;    /* how far into the operation's usual duration */
	uint64_t t_core;      /* when the core request left (0: not yet) */
	/* recorded after the revive */
	struct mchannel *handoff; /* Handoff hseq from signer to successor asked by wallet */
	uint32_t hseq;
	int signer, successor, wallet;
	struct mchannel *closed; /* closed at close_holder; close_b64 the wallet's answer */
	int close_holder;
	char close_b64[1024];
	int cap;      /* index in caps, -1: none */
	int redeemer; /* merchant whose credit to check, 0: none */
};
static struct cycle cyc;
static unsigned op_ms[OP_COUNT]; /* per operation: its usual duration from the core request on */

static enum chaos_victim merchant_victim(int m)
{
	return (enum chaos_victim)(V_M1 + m - 1);
}

static enum chaos_victim wallet_victim(int w)
{
	return (enum chaos_victim)(V_W1 + w - 1);
}

/* The operation's core request leaves now; parties[0..n) are the processes it involves. */
static void in_flight(const enum chaos_victim *parties, size_t n, enum op_kind op)
{
	if (cyc.t_core)
		return;
	cyc.t_core = now_ms();
	if (!cyc.targeted)
		return;
	unsigned usual = op_ms[op] ? op_ms[op] : FIRST_OP_MS;
	enum chaos_victim v = parties[cyc.victim_draw % n];
	unsigned delay = (unsigned)((uint64_t)usual * cyc.permille / 1000);
	fprintf(stderr, "  kill %s after %u ms (usual %u ms)\n", chaos_victim_name(v), delay,
		usual);
	chaos_arm(&killer, v, delay);
	cyc.armed = true;
}

/* ---- the operations; each returns false when it did not apply ---- */

static struct mchannel *add_channel(int owner, const char *id, unsigned n, uint64_t unit, int m)
{
	ck_assert_int_lt(md.n_chans, MODEL_MAX_CHANNELS);
	struct mchannel *c = &md.chans[md.n_chans++];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->owner = owner;
	c->n = n;
	c->unit = unit;
	json_t *s = settlement(c->id);
	ck_assert_str_eq(json_str(s, "state"), "OPEN");
	c->pay_until = (uint64_t)json_int(s, "pay_until");
	c->finalize_at = (uint64_t)json_int(s, "finalize_at");
	json_decref(s);
	if (m)
		model_new_epoch(c, m);
	return c;
}

/* walletd answers an issue whose outcome it does not know yet (the broker or its database died
 * with the request in flight) with the channel still ISSUING: issue.retry sends the stored
 * IssueRequest again until the broker's answer makes it ACTIVE. Returns the last answer. */
static json_t *issued(int w, json_t *r)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", json_str(r, "channel_id"));
	uint64_t t0 = now_ms();
	for (unsigned tries = 1; strcmp(json_str(r, "status"), "ACTIVE") != 0; tries++) {
		ck_assert_msg(strcmp(json_str(r, "status"), "ISSUING") == 0, "issue %s: %s", params,
			      json_str(r, "status"));
		ck_assert_msg(now_ms() - t0 < RETRY_MS, "issue %s still ISSUING", params);
		const char *detail = json_string_value(json_object_get(r, "detail"));
		after_failure(tries, "issue (ISSUING)", detail ? detail : "");
		json_decref(r);
		r = call(wname(w), "issue.retry", params, NULL);
	}
	return r;
}

static bool op_issue(void)
{
	if (md.n_chans >= MODEL_MAX_CHANNELS - 1)
		return false;
	int w = (int)rng_range(&rng, 1, N_WALLETS), m = (int)rng_range(&rng, 1, N_MERCHANTS);
	unsigned n = (unsigned)rng_range(&rng, 20, 80);
	uint64_t unit = rng_range(&rng, 1, 3);
	bool unbound = rng_range(&rng, 0, 3) == 0;
	char params[300], holder[120] = "";
	if (!unbound)
		snprintf(holder, sizeof(holder), "\"merchant_id\":\"%s\",", tm[m].mid_hex);
	snprintf(params, sizeof(params), "{%s\"n\":%u,\"unit_value\":%" PRIu64 ",\"days\":1}",
		 holder, n, unit);
	in_flight((enum chaos_victim[]){wallet_victim(w), V_BROKER, V_PG}, 3, OP_ISSUE);
	json_t *r = call(wname(w), "issue", params, NULL);
	r = issued(w, r);
	struct mchannel *c = add_channel(w, json_str(r, "channel_id"), n, unit, unbound ? 0 : m);
	json_decref(r);
	st.issues++;
	fprintf(stderr, "  issue %s by w%d: n %u unit %" PRIu64 " holder %s\n", c->id, w, n, unit,
		unbound ? "none" : mname(m));
	return true;
}

static bool op_wire_issue(void)
{
	if (n_wiss == MAX_WIRE || md.n_chans >= MODEL_MAX_CHANNELS - 1)
		return false;
	struct wire_issue *w = &wiss[n_wiss];
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	unsigned n = (unsigned)rng_range(&rng, 5, 40);
	tchannel_make(&w->ch, &tw, n, 2, tm[m].mid);
	in_flight((enum chaos_victim[]){V_BROKER, V_PG}, 2, OP_WIRE_ISSUE);
	MpCode code = wire_issue_send(w, w->cert, &w->cert_len);
	ck_assert_msg(code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK), "wire issue: %s",
		      mp_code_name(code));
	ck_assert_uint_gt(w->cert_len, 0);
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(&w->ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	add_channel(0, hex, n, 2, m);
	n_wiss++;
	st.issues++;
	fprintf(stderr, "  wire issue %s: %s\n", hex, mp_code_name(code));
	return true;
}

/* An IssueReq answered before, sent again: the same ChannelCert, byte for byte. */
static void wire_replay(struct wire_issue *w)
{
	uint8_t cert[1024];
	size_t len;
	MpCode code = wire_issue_send(w, cert, &len);
	ck_assert_msg(code == MP_ST(DUPLICATE_OK), "replayed IssueReq: %s", mp_code_name(code));
	ck_assert_msg(len == w->cert_len && memcmp(cert, w->cert, len) == 0,
		      "replayed IssueReq: another ChannelCert (%zu bytes, first %zu)", len,
		      w->cert_len);
	st.replays++;
}

static bool op_wire_replay(void)
{
	if (n_wiss == 0)
		return false;
	in_flight((enum chaos_victim[]){V_BROKER, V_PG}, 2, OP_WIRE_REPLAY);
	wire_replay(&wiss[rng_range(&rng, 0, (uint64_t)n_wiss - 1)]);
	fprintf(stderr, "  wire replay: the same ChannelCert\n");
	return true;
}

/* A walletd channel the model can pay with now (ACTIVE, unspent, well before pay_until). */
static struct mchannel *pick_payable(void)
{
	int cand[MODEL_MAX_CHANNELS], k = 0;
	uint64_t now = (uint64_t)time(NULL);
	for (int i = 0; i < md.n_chans; i++) {
		const struct mchannel *c = &md.chans[i];
		if (c->owner && c->state == CH_ACTIVE && c->last + 1 < c->n &&
		    now + PAY_MARGIN < c->pay_until)
			cand[k++] = i;
	}
	return k ? &md.chans[cand[rng_range(&rng, 0, (uint64_t)k - 1)]] : NULL;
}

/* Pay k units of c at merchant m (a handoff, or the Bind, when m is not the holder). A pay
 * retried after a crash resends its in-flight Pays and then pays k again: the wallet was told
 * at least k more were acknowledged. */
static void pay(struct mchannel *c, int m, unsigned k, bool target)
{
	char params[600], order[64];
	snprintf(params, sizeof(params), "{\"price\":%" PRIu64 "}", k * c->unit);
	json_t *r = call(mname(m), "order.create", params, NULL);
	snprintf(order, sizeof(order), "%s", json_str(r, "order_ref"));
	json_decref(r);
	snprintf(params, sizeof(params),
		 "{\"channel_id\":\"%s\",\"merchant_id\":\"%s\",\"endpoint\":\"%s\","
		 "\"units\":%u,\"order_ref\":\"%s\"}",
		 c->id, tm[m].mid_hex, ep[m], k, order);
	enum chaos_victim parties[4] = {wallet_victim(c->owner), merchant_victim(m)};
	size_t n = 2;
	if (!c->holder) { /* the Bind */
		parties[n++] = V_BROKER;
		parties[n++] = V_PG;
	} else if (c->holder != m) { /* the Handoff */
		parties[n++] = merchant_victim(c->holder);
	}
	if (target)
		in_flight(parties, n, c->holder == m ? OP_PAY : OP_HANDOFF);
	unsigned failed;
	r = call(wname(c->owner), "pay", params, &failed);
	unsigned last = (unsigned)json_int(r, "last");
	json_decref(r);
	if (failed == 0)
		ck_assert_int_eq(last, c->last + k);
	else
		ck_assert_msg(last >= c->last + k && last <= c->n,
			      "%s: last %u after a retried pay", c->id, last);
	if (c->holder && c->holder != m) {
		cyc.handoff = c;
		cyc.hseq = (uint32_t)c->n_epochs;
		cyc.signer = c->holder;
		cyc.successor = m;
		cyc.wallet = c->owner;
		st.handoffs++;
	}
	if (c->holder != m)
		model_new_epoch(c, m);
	c->holder_cert_known = true;
	st.units += last - c->last;
	c->last = last;
	model_epoch(c)->end = last;
	st.pays++;
	fprintf(stderr, "  pay %u of %s by w%d at %s: last %u\n", k, c->id, c->owner, mname(m),
		last);
}

static unsigned pick_units(const struct mchannel *c)
{
	unsigned left = (c->n - c->last) / 2;
	return (unsigned)rng_range(&rng, 1, left < 6 ? (left ? left : 1) : 6);
}

static bool op_pay_at_holder(void)
{
	struct mchannel *c = pick_payable();
	if (!c || !c->holder)
		return false;
	pay(c, c->holder, pick_units(c), true);
	return true;
}

static bool op_pay_elsewhere(void)
{
	struct mchannel *c = pick_payable();
	if (!c)
		return false;
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	if (m == c->holder)
		m = m % N_MERCHANTS + 1;
	if (c->holder && !c->holder_cert_known)
		pay(c, c->holder, 1, false); /* walletd needs the holder's MerchantCert */
	if (c->n - c->last >= 2)
		pay(c, m, pick_units(c), true);
	return true;
}

/* The bundle's new pair (its last two segments: Transfer s, Cap s), kept for the replays. */
static void keep_capped(const char *bundle_b64, int capper)
{
	if (n_caps == MAX_CAPPED)
		return;
	size_t len;
	uint8_t *bytes = tmp_b64_decode(bundle_b64, &len);
	Micropay__V1__TransferBundle *b = micropay__v1__transfer_bundle__unpack(NULL, len, bytes);
	ck_assert_msg(b && b->n_segments >= 2 && b->n_segments % 2 == 0, "a bundle without pairs");
	struct capped *k = &caps[n_caps++];
	k->capper = capper;
	k->transfer = mp_stmt_encode(b->segments[b->n_segments - 2], &k->transfer_len);
	k->cap = mp_stmt_encode(b->segments[b->n_segments - 1], &k->cap_len);
	ck_assert(k->transfer && k->cap);
	micropay__v1__transfer_bundle__free_unpacked(b, NULL);
	free(bytes);
}

/* The Transfer sent again to whoever capped it: DUPLICATE_OK with the same Cap, byte for
 * byte (protocol.md section 5: a resent request gets the stored statement). */
static void cap_replay(const struct capped *k)
{
	MpSigned *t = mp_stmt_decode(k->transfer, k->transfer_len);
	ck_assert_ptr_nonnull(t);
	MpEnvelope *e = twallet_transfer_call(k->capper ? ep[k->capper] : broker_ep, ca, t);
	const Micropay__V1__TransferResp *r = e->transfer_resp;
	ck_assert_msg(r->status->code == MP_ST(DUPLICATE_OK), "replayed Transfer at %s: %s %s",
		      k->capper ? mname(k->capper) : "the broker", mp_code_name(r->status->code),
		      r->status->detail ? r->status->detail : "");
	size_t len = 0;
	uint8_t *cap = r->cap ? mp_stmt_encode(r->cap, &len) : NULL;
	ck_assert_msg(cap && len == k->cap_len && memcmp(cap, k->cap, len) == 0,
		      "replayed Transfer at %s: another Cap (%zu bytes, first %zu)",
		      k->capper ? mname(k->capper) : "the broker", len, k->cap_len);
	free(cap);
	micropay__v1__envelope__free_unpacked(e, NULL);
	mp_stmt_free(t);
	st.cap_replays++;
}

static bool op_transfer(void)
{
	struct mchannel *c = pick_payable();
	if (!c || (!c->holder && c->last > 0))
		return false;
	int to = c->owner % N_WALLETS + 1;
	char params[8192], hold[200] = "";
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	json_t *r = call(wname(to), "transfer.offer", params, NULL);
	if (c->holder)
		snprintf(hold, sizeof(hold), ",\"endpoint\":\"%s\"", ep[c->holder]);
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"offer\":\"%s\"%s}", c->id,
		 json_str(r, "offer"), hold);
	json_decref(r);
	in_flight((enum chaos_victim[]){wallet_victim(c->owner),
					c->holder ? merchant_victim(c->holder) : V_BROKER,
					wallet_victim(to), V_BROKER},
		  4, OP_TRANSFER);
	r = call(wname(c->owner), "transfer.send", params, NULL);
	cyc.cap = n_caps < MAX_CAPPED ? n_caps : -1;
	keep_capped(json_str(r, "bundle"), c->holder);
	ck_assert_int_lt(strlen(json_str(r, "bundle")) + 20, sizeof(params));
	snprintf(params, sizeof(params), "{\"bundle\":\"%s\"}", json_str(r, "bundle"));
	json_decref(r);
	r = call(wname(to), "transfer.accept", params, NULL);
	/* The transfer is complete once the broker acknowledged the SegmentClaim (it records the
	 * new segment's payout account then): walletd resends the stored claim on every
	 * transfer.accept (and at start-up), so a claim a kill of brokerd or PostgreSQL cut is
	 * sent again here until acknowledged. */
	uint64_t t0 = now_ms();
	for (unsigned tries = 1; !json_is_true(json_object_get(r, "broker_ack")); tries++) {
		ck_assert_msg(now_ms() - t0 < RETRY_MS, "%s: SegmentClaim unacknowledged", c->id);
		after_failure(tries, "SegmentClaim", json_str(r, "broker_status"));
		json_decref(r);
		r = call(wname(to), "transfer.accept", params, NULL);
	}
	ck_assert_str_eq(json_str(r, "channel_id"), c->id);
	ck_assert_int_eq(json_int(r, "spendable"), c->n - c->last);
	json_decref(r);
	fprintf(stderr, "  transfer %s from w%d to w%d at %u\n", c->id, c->owner, to, c->last);
	c->owner = to;
	c->holder_cert_known = c->holder != 0;
	st.transfers++;
	return true;
}

/* walletd's refund, asked again while the broker answers INTERNAL (its database died with the
 * request in flight: the outcome is unknown, the same request is to be sent again). */
static json_t *refund_call(const struct mchannel *c, const char *params)
{
	uint64_t t0 = now_ms();
	for (unsigned tries = 1;; tries++) {
		json_t *r = call(wname(c->owner), "refund", params, NULL);
		if (strcmp(json_str(r, "broker_status"), "INTERNAL") != 0)
			return r;
		json_decref(r);
		ck_assert_msg(now_ms() - t0 < RETRY_MS, "refund of %s: INTERNAL for %u tries",
			      c->id, tries);
		after_failure(tries, "refund", "the broker answered INTERNAL");
	}
}

/* The early refund of a closed channel asked for by its owner (walletd sends it on its own
 * too): OK or DUPLICATE_OK with the model's amount. */
static void check_early_refund(const struct mchannel *c)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	json_t *r = refund_call(c, params);
	const char *s = json_str(r, "broker_status");
	ck_assert_msg(strcmp(s, "OK") == 0 || strcmp(s, "DUPLICATE_OK") == 0,
		      "early refund of %s: %s", c->id, s);
	ck_assert_msg(json_int(r, "refund") == (int64_t)c->early_refund,
		      "early refund of %s: %lld, model %llu", c->id,
		      (long long)json_int(r, "refund"), (unsigned long long)c->early_refund);
	json_decref(r);
	st.refunds++;
}

static bool op_close(void)
{
	struct mchannel *c = pick_payable();
	if (!c || !c->holder)
		return false;
	char params[300];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\",\"endpoint\":\"%s\"}", c->id,
		 ep[c->holder]);
	in_flight((enum chaos_victim[]){wallet_victim(c->owner), merchant_victim(c->holder),
					V_BROKER, V_PG},
		  4, OP_CLOSE);
	json_t *r = call(wname(c->owner), "close", params, NULL);
	ck_assert_str_eq(json_str(r, "state"), "CLOSED");
	ck_assert_int_eq(json_int(r, "final_index"), c->last);
	ck_assert_int_lt(strlen(json_str(r, "close")), sizeof(cyc.close_b64));
	snprintf(cyc.close_b64, sizeof(cyc.close_b64), "%s", json_str(r, "close"));
	cyc.closed = c;
	cyc.close_holder = c->holder;
	json_decref(r);
	unsigned spent = c->last;
	for (int k = 0; k < c->n_epochs; k++)
		if (c->epochs[k].redeemed > spent)
			spent = c->epochs[k].redeemed;
	c->state = CH_CLOSED;
	c->close_index = c->last;
	c->early_refund = (uint64_t)(c->n - spent) * c->unit;
	check_early_refund(c);
	st.closes++;
	fprintf(stderr, "  close %s by w%d at %s: final_index %u\n", c->id, c->owner,
		mname(c->holder), c->last);
	return true;
}

static void redeem_at(int m)
{
	in_flight((enum chaos_victim[]){merchant_victim(m), V_BROKER, V_PG}, 3, OP_REDEEM);
	json_decref(call(mname(m), "redeem", NULL, NULL));
	model_redeemed(&md, m);
	st.redeems++;
}

static bool op_redeem(void)
{
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	redeem_at(m);
	cyc.redeemer = m;
	fprintf(stderr, "  redeem at %s\n", mname(m));
	return true;
}

/* Before finalisation: TOO_EARLY for an open channel, the stored early refund of a closed one. */
static bool op_refund(void)
{
	struct mchannel *c = pick_payable();
	if (!c)
		return false;
	char params[128];
	snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", c->id);
	in_flight((enum chaos_victim[]){wallet_victim(c->owner), V_BROKER, V_PG}, 3, OP_REFUND);
	json_t *r = refund_call(c, params);
	ck_assert_str_eq(json_str(r, "broker_status"), "TOO_EARLY");
	json_decref(r);
	st.refunds++;
	fprintf(stderr, "  refund %s: TOO_EARLY\n", c->id);
	return true;
}

static int64_t available(int m)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", tm[m].mid_hex);
	json_t *r = call("broker", "account.show", params, NULL);
	int64_t b = json_int(r, "balance");
	json_decref(r);
	return b;
}

/* Part of a merchant's available balance paid out; a retry of the same payout_id through a
 * crash is answered DUPLICATE_OK and moves nothing more. */
static bool op_payout(void)
{
	int m = (int)rng_range(&rng, 1, N_MERCHANTS);
	int64_t avail = available(m);
	if (avail == 0)
		return false;
	uint64_t amount = rng_range(&rng, 1, (uint64_t)avail);
	char params[300];
	snprintf(params, sizeof(params),
		 "{\"account\":\"%s\",\"amount\":%" PRIu64 ",\"payout_id\":\"%016" PRIx64
		 "%016" PRIx64 "\"}",
		 tm[m].mid_hex, amount, rng_next(&rng), (uint64_t)st.payouts);
	unsigned failed;
	in_flight((enum chaos_victim[]){V_BROKER, V_PG}, 2, OP_PAYOUT);
	json_t *r = call("broker", "account.payout", params, &failed);
	const char *s = json_str(r, "status");
	ck_assert_msg(strcmp(s, "OK") == 0 || (failed && strcmp(s, "DUPLICATE_OK") == 0),
		      "payout at %s: %s after %u failures", mname(m), s, failed);
	json_decref(r);
	r = call("broker", "account.payout", params, NULL);
	ck_assert_str_eq(json_str(r, "status"), "DUPLICATE_OK");
	json_decref(r);
	paid_out[m] += amount;
	ck_assert_int_eq(available(m), avail - (int64_t)amount);
	st.payouts++;
	fprintf(stderr, "  payout %" PRIu64 " of %s\n", amount, mname(m));
	return true;
}

struct op {
	const char *name;
	bool (*run)(void);
	unsigned weight;
};

static const struct op ops[OP_COUNT] = {
    [OP_ISSUE] = {"issue", op_issue, 8},
    [OP_PAY] = {"pay", op_pay_at_holder, 26},
    [OP_HANDOFF] = {"handoff", op_pay_elsewhere, 10},
    [OP_TRANSFER] = {"transfer", op_transfer, 6},
    [OP_REDEEM] = {"redeem", op_redeem, 8},
    [OP_CLOSE] = {"close", op_close, 3},
    [OP_REFUND] = {"refund", op_refund, 4},
    [OP_PAYOUT] = {"payout", op_payout, 5},
    [OP_WIRE_ISSUE] = {"wire issue", op_wire_issue, 3},
    [OP_WIRE_REPLAY] = {"wire replay", op_wire_replay, 3},
};

static enum op_kind pick_op(void)
{
	return (enum op_kind)rng_weighted(&rng, ops, OP_COUNT, sizeof(ops[0]),
					  offsetof(struct op, weight));
}

/* ---- the checks ---- */

static struct mchannel *model_find(const char *hex)
{
	for (int i = 0; i < md.n_chans; i++)
		if (strcmp(md.chans[i].id, hex) == 0)
			return &md.chans[i];
	return NULL;
}

/* Merchant m's durable `last` of every channel it has recorded (hex id -> last). */
static json_t *merchant_channels(int m)
{
	return call(mname(m), "channels", NULL, NULL);
}

/* Every payment a wallet was told merchant m acknowledged is in m's durable state. */
static void check_acknowledged(int m)
{
	json_t *r = merchant_channels(m);
	json_t *list = json_object_get(r, "channels");
	for (int i = 0; i < md.n_chans; i++) {
		const struct mchannel *c = &md.chans[i];
		unsigned acked = 0;
		for (int k = 0; k < c->n_epochs; k++)
			if (c->epochs[k].merchant == m && c->epochs[k].end > acked)
				acked = c->epochs[k].end;
		if (acked == 0)
			continue;
		int64_t durable = -1;
		size_t j;
		json_t *e;
		json_array_foreach(list, j, e)
		{
			if (strcmp(json_str(e, "channel_id"), c->id) == 0)
				durable = json_int(e, "last");
		}
		ck_assert_msg(durable >= (int64_t)acked,
			      "%s forgot %s: durable last %lld, acknowledged %u", mname(m), c->id,
			      (long long)durable, acked);
	}
	json_decref(r);
}

/* Merchant m's credit at the broker so far: pending + available + paid out, less what it had
 * before the run. */
static int64_t merchant_credit(int m)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", tm[m].mid_hex);
	json_t *r = call("broker", "account.show", params, NULL);
	int64_t credit = json_int(r, "balance") + (int64_t)paid_out[m] - merchant_base[m];
	json_t *related = json_object_get(r, "related"), *e;
	size_t i;
	json_array_foreach(related, i, e)
	{
		if (strcmp(json_str(e, "kind"), "merchant_pending") == 0)
			credit += json_int(e, "balance");
	}
	json_decref(r);
	return credit;
}

/* The signer's answer to a Handoff's request sent again, from the model: the same Handoff while
 * it is the signer's latest custody event; in the chain of a later one it signed after holding
 * the channel again; no statement while it holds the channel again. */
static enum replay_expect handoff_expect(const struct mchannel *c, uint32_t hseq, int signer)
{
	int last = -1;
	for (int k = 0; k < c->n_epochs; k++)
		if (c->epochs[k].merchant == signer)
			last = k;
	if (last == (int)hseq - 1)
		return EXPECT_SAME;
	return last < c->n_epochs - 1 ? EXPECT_IN_CHAIN : EXPECT_NO_STATEMENT;
}

/* What the cycle's operation acknowledged, recorded now that its victim runs again, and asked
 * for again at once: the Handoff, the Close, the Cap, each the same bytes; after a redeem the
 * merchant's credit is exactly what the model says it acknowledged and redeemed (nothing
 * credited twice through the crash). */
static void record_and_replay(void)
{
	if (cyc.handoff) {
		const struct handoff_rec *h =
		    chaos_handoff_record(&rp, &peers, cyc.handoff->id, cyc.hseq, cyc.signer,
					 cyc.successor, wname(cyc.wallet));
		if (h)
			chaos_handoff_replay(&rp, &peers, h, EXPECT_SAME, false);
	}
	if (cyc.closed) {
		const struct close_rec *c =
		    chaos_close_record(&rp, &peers, cyc.closed->id, cyc.close_holder, cyc.close_b64,
				       wname(cyc.closed->owner));
		if (c)
			chaos_close_replay(&rp, &peers, c);
	}
	if (cyc.cap >= 0 && cyc.cap < n_caps)
		cap_replay(&caps[cyc.cap]);
	if (cyc.redeemer) {
		int64_t credit = merchant_credit(cyc.redeemer);
		ck_assert_msg(credit == (int64_t)model_credit(&md, cyc.redeemer),
			      "%s after its redeem: credit %lld, model %llu", mname(cyc.redeemer),
			      (long long)credit,
			      (unsigned long long)model_credit(&md, cyc.redeemer));
		st.credit_checks++;
	}
}

/* No honest party signed two statements for one slot through the crashes: the broker recorded
 * no custody conflict. */
static void check_no_conflicts(void)
{
	json_t *r = call("broker", "conflicts", NULL, NULL);
	json_t *list = json_object_get(r, "conflicts");
	ck_assert_msg(json_array_size(list) == 0, "conflicts: %s", json_dumps(r, JSON_COMPACT));
	json_decref(r);
}

static void check_cycle(void)
{
	for (int m = 1; m <= N_MERCHANTS; m++)
		check_acknowledged(m);
	check_no_conflicts();
	json_t *r = call("broker", "audit", NULL, NULL);
	ck_assert_msg(json_is_true(json_object_get(r, "ok")), "audit: %s",
		      json_dumps(r, JSON_COMPACT));
	json_decref(r);
}

/* Channels of a wallet the model does not know: an issue whose admin answer a crash of walletd
 * lost (the test issued another). Before finalisation each still ISSUING is retried until the
 * broker has it; after, each must be finalised with nothing credited (never paid with) and its
 * escrow refunded. */
static void orphans(int w, bool finalized)
{
	json_t *r = admin_ok(&net, wname(w), "channels", NULL);
	json_t *list = json_object_get(r, "channels"), *e;
	size_t i;
	json_array_foreach(list, i, e)
	{
		const char *id = json_str(e, "channel_id");
		if (model_find(id) || strcmp(json_str(e, "state"), "FAILED") == 0)
			continue; /* FAILED: the broker refused it, nothing was taken */
		if (!finalized) {
			char params[128];
			snprintf(params, sizeof(params), "{\"channel_id\":\"%s\"}", id);
			if (strcmp(json_str(e, "state"), "ISSUING") == 0)
				json_decref(issued(w, call(wname(w), "issue.retry", params, NULL)));
			continue;
		}
		json_t *s = settle_channel(&net, id);
		ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
		json_t *f = json_object_get(s, "finalization");
		ck_assert_int_eq(json_int(f, "credited"), 0);
		ck_assert_int_eq(json_int(f, "refund"),
				 json_int(e, "n") * json_int(e, "unit_value"));
		json_decref(s);
		st.orphans++;
	}
	json_decref(r);
}

/* Every Handoff and Close recorded, asked for again (before redemption and finalisation). */
static void replay_all(void)
{
	for (int i = 0; i < rp.n_handoffs; i++) {
		const struct handoff_rec *h = &rp.handoffs[i];
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(h->id, MP_ID_LEN, hex);
		const struct mchannel *c = model_find(hex);
		ck_assert_ptr_nonnull(c);
		chaos_handoff_replay(&rp, &peers, h, handoff_expect(c, h->hseq, h->signer),
				     c->state == CH_CLOSED);
	}
	for (int i = 0; i < rp.n_closes; i++)
		chaos_close_replay(&rp, &peers, &rp.closes[i]);
}

static void finish_and_check(void)
{
	memset(&cyc, 0, sizeof(cyc));
	cyc.cap = -1;
	for (int i = 0; i < n_caps; i++)
		cap_replay(&caps[i]); /* before redemption and finalisation, while every capper
					 holds its records */
	replay_all();
	for (int m = 1; m <= N_MERCHANTS; m++) {
		check_acknowledged(m);
		redeem_at(m);
	}
	for (int w = 1; w <= N_WALLETS; w++)
		orphans(w, false);
	uint64_t last = 0;
	for (int i = 0; i < md.n_chans; i++)
		if (md.chans[i].finalize_at > last)
			last = md.chans[i].finalize_at;
	settle_advance_to(&net, last + 1);
	json_t *r = settle_sweep(&net);
	ck_assert_int_eq(json_int(r, "failures"), 0);
	json_decref(r);
	for (int i = 0; i < md.n_chans; i++)
		model_check_finalized(&net, &md.chans[i], account[md.chans[i].owner]);
	for (int m = 1; m <= N_MERCHANTS; m++) {
		int64_t credit = net_pending(&net, tm[m].mid_hex) +
				 net_balance(&net, tm[m].mid_hex) + (int64_t)paid_out[m];
		fprintf(stderr,
			"%s: credit %lld (paid out %" PRIu64 "), acknowledged %" PRIu64 "\n",
			mname(m), (long long)(credit - merchant_base[m]), paid_out[m],
			model_acknowledged(&md, m));
		ck_assert_int_eq(net_pending(&net, tm[m].mid_hex), 0);
		ck_assert_int_eq(credit - merchant_base[m], (int64_t)model_credit(&md, m));
		ck_assert_int_eq(model_credit(&md, m), model_acknowledged(&md, m));
	}
	for (int w = 1; w <= N_WALLETS; w++)
		orphans(w, true);
	for (int i = 0; i < n_wiss; i++)
		wire_replay(&wiss[i]);
	check_no_conflicts();
	net_audit_clean(&net);
}

/* ---- the network ---- */

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	setenv("MP_SWEEP_INTERVAL", "3600", 1); /* the test sweeps at the end */
	setenv("MP_DEADLINE_CHECK", "3600", 1); /* merchants redeem when the test says */
	setenv("MP_REFUND_CHECK", "0", 1);
	setenv("MP_BROKER_TIMEOUT", "5", 1);
	net_up(&net);
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&net, "wallet", "w2"), 0);
	unsetenv("MP_TEST_CLOCK");
	for (int m = 1; m <= N_MERCHANTS; m++) {
		tmerchant_load(&tm[m], &net, m == 1 ? "m1" : "m2");
		net_read(&net, mname(m), "endpoint", ep[m], sizeof(ep[m]));
		net_merchant_fund(&net, tm[m].mid_hex, MERCHANT_FUNDS); /* something to pay out */
		merchant_base[m] = net_balance(&net, tm[m].mid_hex);
	}
	for (int w = 1; w <= N_WALLETS; w++) {
		json_t *r = admin_ok(&net, wname(w), "register", NULL);
		snprintf(account[w], sizeof(account[w]), "%s", json_str(r, "account_id"));
		json_decref(r);
		net_fund(&net, account[w], WALLET_FUNDS);
	}
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(&tw, &b);
	wire_close(&b);
	mp_hex_encode(tw.account_id, MP_ID_LEN, account[0]);
	net_fund(&net, account[0], WALLET_FUNDS);
	killer.net = &net;
	peers = (struct chaos_peers){.net = &net, .tm = tm, .ep = ep, .ca = ca};
}

static void teardown_net(void)
{
	chaos_revive(&killer);
	for (int m = 1; m <= N_MERCHANTS; m++)
		tmerchant_free(&tm[m]);
	for (int i = 0; i < n_wiss; i++)
		tchannel_free(&wiss[i].ch);
	chaos_replays_free(&rp);
	net_down(&net);
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 0) : dflt;
}

static void report(uint64_t seed, unsigned cycles, uint64_t ms)
{
	unsigned kills = 0;
	for (int v = 0; v < V_COUNT; v++)
		kills += killer.kills[v];
	fprintf(stderr,
		"chaos: seed %" PRIu64 ": %u cycles, %u kills (broker %u, m1 %u, m2 %u, w1 %u, "
		"w2 %u, postgres %u) in %.1f s; %u operations: %u pays (%u units, %u handoffs), "
		"%u issues, %u transfers, %u closes, %u redeems, %u refunds, %u payouts, %u "
		"certificate replays, %u Cap replays, %u Handoff replays (%u recorded, %u "
		"superseded), %u Close replays (%u recorded), %u credit checks after a redeem; "
		"%u targeted cycles (%u kills inside); %u kills inside an operation (broker %u, m1 "
		"%u, m2 %u, w1 %u, "
		"w2 %u, postgres %u); %u retries; %u wallet store reads; %d channels (+%u orphans "
		"from retried issues)\n",
		seed, cycles, kills, killer.kills[V_BROKER], killer.kills[V_M1], killer.kills[V_M2],
		killer.kills[V_W1], killer.kills[V_W2], killer.kills[V_PG], ms / 1000.0, st.ops,
		st.pays, st.units, st.handoffs, st.issues, st.transfers, st.closes, st.redeems,
		st.refunds, st.payouts, st.replays, st.cap_replays, rp.handoff_replays,
		rp.n_handoffs, rp.superseded, rp.close_replays, rp.n_closes, st.credit_checks,
		st.targeted, st.targeted_inside, killer.inside, killer.inside_by[V_BROKER],
		killer.inside_by[V_M1], killer.inside_by[V_M2], killer.inside_by[V_W1],
		killer.inside_by[V_W2], killer.inside_by[V_PG], st.retries, rp.wallet_reads,
		md.n_chans, st.orphans);
}

START_TEST(kill_anything_anytime)
{
	uint64_t seed =
	    getenv("MP_CHAOS_SEED") ? strtoull(getenv("MP_CHAOS_SEED"), NULL, 0) : DEFAULT_SEED;
	if (seed == 0)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	unsigned cycles = env_uint("MP_CHAOS_CYCLES", 30);
	unsigned targeted = env_uint("MP_CHAOS_TARGETED", TARGETED_PCT);
	uint64_t limit_ms = (uint64_t)env_uint("MP_CHAOS_SECONDS", 300) * 1000;
	fprintf(stderr,
		"chaos: seed %" PRIu64 " (MP_CHAOS_SEED=%" PRIu64 " reproduces it), %u cycles, "
		"%u%% targeted\n",
		seed, seed, cycles, targeted);
	rng.state = seed;
	uint64_t t0 = now_ms();
	cyc.cap = -1;
	op_issue();
	unsigned i;
	for (i = 0; i < cycles && now_ms() - t0 < limit_ms; i++) {
		enum chaos_victim v = (enum chaos_victim)rng_range(&rng, 0, V_COUNT - 1);
		unsigned delay = (unsigned)rng_range(&rng, 0, KILL_WINDOW_MS);
		memset(&cyc, 0, sizeof(cyc));
		cyc.cap = -1;
		cyc.targeted = rng_range(&rng, 0, 99) < targeted;
		cyc.victim_draw = rng_next(&rng);
		cyc.permille = (unsigned)rng_range(&rng, 0, TARGET_PERMILLE);
		enum op_kind op = pick_op();
		if (cyc.targeted) {
			fprintf(stderr, "cycle %u (%.1f s): %s, targeted kill at %u/1000\n", i,
				(now_ms() - t0) / 1000.0, ops[op].name, cyc.permille);
			st.targeted++;
		} else {
			fprintf(stderr, "cycle %u (%.1f s): %s, kill %s after %u ms\n", i,
				(now_ms() - t0) / 1000.0, ops[op].name, chaos_victim_name(v),
				delay);
			chaos_arm(&killer, v, delay);
		}
		unsigned retries = st.retries, inside = killer.inside;
		chaos_busy(&killer, true);
		if (!ops[op].run())
			fprintf(stderr, "  (nothing to do)\n");
		chaos_busy(&killer, false);
		if (cyc.t_core && st.retries == retries) /* its usual duration, undisturbed */
			op_ms[op] = (3 * (op_ms[op] ? op_ms[op] : FIRST_OP_MS) +
				     (unsigned)(now_ms() - cyc.t_core)) /
				    4;
		if (cyc.targeted && !cyc.armed) /* no core request: a kill all the same */
			chaos_arm(&killer, v, 0);
		st.ops++;
		chaos_revive(&killer);
		if (killer.inside > inside)
			fprintf(stderr, "  (the kill landed inside the operation)\n");
		if (cyc.targeted && killer.inside > inside)
			st.targeted_inside++;
		record_and_replay();
		check_cycle();
		if (i % 50 == 49)
			report(seed, i + 1, now_ms() - t0);
	}
	finish_and_check();
	report(seed, i, now_ms() - t0);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* a write to a daemon the killer just killed fails; it does not
				     kill the test */
	Suite *s = suite_create("chaos");
	TCase *tc = tcase_create("chaos");
	tcase_set_timeout(tc, 36000);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, kill_anything_anytime);
	suite_add_tcase(s, tc);
	return mp_check_run(s);
}
