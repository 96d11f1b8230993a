/* The `issue` scenario (brokerd channels/s) and the `pay` scenario (merchantd payments/s with
 * C connections, W payments in flight on each, a mix of 1-unit and k-unit payments). Each
 * connection pays its own channels (channel i on connection i mod C), in index order, so
 * pipelined payments of one channel arrive in the order they were sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbench_wallet.h"

#define ORDER_REF_LEN 8
#define MAX_LOGGED    5

struct pay_slot {
	unsigned channel;
	uint32_t j;
};

struct pay_run {
	struct bench_wallet *w;
	const struct bench_opts *o;
	struct pay_slot *slots;
	unsigned *rotor; /* per connection: the next of its channels to pay */
	uint64_t sent, units, refusals_logged;
	uint64_t codes[64]; /* answers by status code (those below 64) */
};

/* The next channel of connection ci with units left, round robin; NULL if none. */
static struct bench_channel *pick(struct pay_run *pr, unsigned ci, unsigned *index)
{
	unsigned conns = pr->o->conns, n = pr->w->n_channels;
	unsigned owned = (n + conns - 1 - ci) / conns; /* channels ci, ci + C, ... below n */
	for (unsigned tries = 0; tries < owned; tries++) {
		unsigned i = ci + (pr->rotor[ci] % owned) * conns;
		pr->rotor[ci]++;
		struct bench_channel *ch = &pr->w->channels[i];
		if (ch->open && ch->next_j < ch->n) {
			*index = i;
			return ch;
		}
	}
	return NULL;
}

static bool pay_next(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct pay_run *pr = arg;
	unsigned i;
	struct bench_channel *ch = pick(pr, slot / pr->o->window, &i);
	if (!ch)
		return false;
	uint32_t k = pr->sent % 100 < pr->o->k_percent ? pr->o->k : 1;
	if (k > ch->n - ch->next_j)
		k = ch->n - ch->next_j;
	ch->next_j += k;
	pr->slots[slot] = (struct pay_slot){i, ch->next_j};
	uint8_t ref[ORDER_REF_LEN];
	memcpy(ref, &pr->sent, sizeof(ref));
	pr->sent++;
	pr->units += k;
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->id};
	req.j = ch->next_j;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)wallet_word(pr->w, ch, ch->next_j)};
	req.order_ref = (ProtobufCBinaryData){sizeof(ref), ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	return load_send(l, c, slot, &env);
}

/* A refused payment is not resent: the channel's next payment covers its units. */
static bool pay_again(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	return false;
}

static enum load_outcome pay_answer(void *arg, unsigned slot, const MpEnvelope *env)
{
	struct pay_run *pr = arg;
	const MpStatus *st = env->body_case == MP_BODY(PAY_ACK) ? env->pay_ack->status
			     : env->body_case == MP_BODY(ERROR) ? env->error
								: NULL;
	if (st && (unsigned)st->code < 64)
		pr->codes[st->code]++;
	if (st && env->body_case == MP_BODY(PAY_ACK) &&
	    (st->code == MP_ST(OK) || st->code == MP_ST(UNDERPAID)))
		return LOAD_DONE;
	if (st && st->code == MP_ST(LIMIT))
		return LOAD_RETRY;
	if (pr->refusals_logged++ < MAX_LOGGED)
		fprintf(stderr, "mpbench: pay of channel %u index %u: %s %s\n",
			pr->slots[slot].channel, pr->slots[slot].j,
			st ? mp_code_name(st->code) : "unexpected answer",
			st && st->detail ? st->detail : "");
	return LOAD_FAIL;
}

static const struct load_ops pay_ops = {pay_next, pay_again, pay_answer};

static json_t *codes_json(const struct pay_run *pr)
{
	json_t *o = json_object();
	for (unsigned c = 0; c < 64; c++)
		if (pr->codes[c])
			json_object_set_new(o, mp_code_name((MpCode)c),
					    json_integer((json_int_t)pr->codes[c]));
	return o;
}

static json_int_t counter(json_t *status, const char *name)
{
	return json_integer_value(json_object_get(json_object_get(status, "counters"), name));
}

/* Batches committed and payments in them, from the merchant's status counters. */
static json_t *batch_json(json_t *before, json_t *after)
{
	if (!before || !after)
		return json_null();
	json_int_t batches = counter(after, "batches") - counter(before, "batches");
	json_int_t pays = counter(after, "pays_ok") + counter(after, "pays_underpaid") -
			  counter(before, "pays_ok") - counter(before, "pays_underpaid");
	return json_pack("{s:I, s:f}", "batches", batches, "payments_per_batch",
			 batches ? (double)pays / (double)batches : 0.0);
}

/* Channels with a redeemed point and the units redeemed, from the merchant's channel list. */
static void redeemed(const struct bench_net *n, json_int_t *claims, json_int_t *units)
{
	*claims = *units = 0;
	json_t *list = bench_admin(n->merchant_admin, "channels", NULL);
	size_t i;
	json_t *ch;
	json_array_foreach(json_object_get(list, "channels"), i, ch)
	{
		json_int_t end = json_integer_value(json_object_get(ch, "redeemed_end"));
		*claims += end > 0;
		*units += end;
	}
	json_decref(list);
}

/* The `redeem` scenario: after a pay load, the merchant's admin `redeem` (one round: it
 * answers once the broker settled every claim) timed from the call to its answer; claims and
 * paywords settled per second. The pay load's figures are kept under "pay". */
static json_t *redeem_all(const struct bench_opts *o, const struct bench_net *n, json_t *pay)
{
	if (!n->merchant_admin[0]) {
		fprintf(stderr, "mpbench: redeem needs the merchant's admin socket\n");
		json_decref(pay);
		return NULL;
	}
	if (!o->quiet)
		fprintf(stderr, "mpbench: redeem: asking the merchant to redeem everything\n");
	struct bench_cpu c0, c1;
	json_int_t claims0, units0, claims1, units1;
	redeemed(n, &claims0, &units0);
	cpu_sample(n, &c0);
	double t0 = bench_now();
	json_t *answer = bench_admin(n->merchant_admin, "redeem", NULL);
	double seconds = bench_now() - t0;
	cpu_sample(n, &c1);
	redeemed(n, &claims1, &units1);
	if (!answer) {
		json_decref(pay);
		return NULL;
	}
	json_int_t claims = claims1 - claims0, units = units1 - units0;
	json_t *out = json_pack(
	    "{s:s, s:I, s:f, s:f, s:I, s:f, s:O, s:o, s:o}", "unit", "claims settled", "count",
	    claims, "seconds", seconds, "per_second", seconds > 0 ? (double)claims / seconds : 0.0,
	    "paywords", units, "paywords_per_second", seconds > 0 ? (double)units / seconds : 0.0,
	    "merchant_answer", answer, "cpu_seconds", cpu_delta(n, &c0, &c1), "pay", pay);
	json_decref(answer);
	return out;
}

static bool prepare(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n,
		    struct load_result *issued)
{
	if (!o->quiet)
		fprintf(stderr,
			"mpbench: %u channels of %u units: registering, funding, making "
			"chains\n",
			o->channels, o->units);
	if (!wallet_setup(w, o, n) || !wallet_make_channels(w, o))
		return false;
	if (!wallet_issue(w, o, n, issued)) {
		fprintf(stderr, "mpbench: no channel was issued\n");
		return false;
	}
	return true;
}

/* Channels issued/s at the broker, or (two) at both brokerds of the network, the connections
 * split between them. */
static json_t *issue_load(const struct bench_opts *o, const struct bench_net *n, bool two)
{
	struct bench_wallet w;
	struct load_result r;
	struct bench_cpu c0, c1;
	json_t *out = NULL;
	if (two && !n->broker2[0]) {
		fprintf(stderr,
			"mpbench: issue2 needs a second brokerd b2 (--spawn starts one; with "
			"--net DIR, run `deploy/mpnet broker DIR b2` first)\n");
		return NULL;
	}
	if (two && o->conns < 2) {
		fprintf(stderr, "mpbench: issue2 needs at least 2 connections (-c)\n");
		return NULL;
	}
	if (wallet_setup(&w, o, n) && wallet_make_channels(&w, o)) {
		w.broker2 = two ? n->broker2 : NULL;
		cpu_sample(n, &c0);
		bool ok = wallet_issue(&w, o, n, &r);
		cpu_sample(n, &c1);
		if (ok) {
			out = load_json(&r, "per_second");
			json_object_set_new(out, "unit", json_string("channels issued"));
			json_object_set_new(out, "brokers", json_integer(two ? 2 : 1));
			json_object_set_new(out, "cpu_seconds", cpu_delta(n, &c0, &c1));
		}
	}
	wallet_free(&w);
	return out;
}

json_t *scenario_issue(const struct bench_opts *o, const struct bench_net *n)
{
	return issue_load(o, n, false);
}

json_t *scenario_issue2(const struct bench_opts *o, const struct bench_net *n)
{
	return issue_load(o, n, true);
}

static json_t *pay_load(struct bench_wallet *w, const struct bench_opts *o,
			const struct bench_net *n)
{
	struct pay_run pr = {.w = w, .o = o};
	pr.slots = calloc((size_t)o->conns * o->window, sizeof(*pr.slots));
	pr.rotor = calloc(o->conns, sizeof(*pr.rotor));
	struct load_spec spec = load_spec_for(o, n, "pay", n->merchant, &pay_ops, &pr);
	struct load_result r;
	struct bench_cpu c0, c1;
	json_t *st0 = n->merchant_admin[0] ? bench_admin(n->merchant_admin, "status", NULL) : NULL;
	cpu_sample(n, &c0);
	bool ok = pr.slots && pr.rotor && load_run(&spec, &r);
	cpu_sample(n, &c1);
	json_t *st1 = n->merchant_admin[0] ? bench_admin(n->merchant_admin, "status", NULL) : NULL;
	json_t *out = NULL;
	if (ok) {
		out = load_json(&r, "per_second");
		json_object_set_new(out, "unit", json_string("payments"));
		json_object_set_new(out, "units_paid", json_integer((json_int_t)pr.units));
		json_object_set_new(out, "answers", codes_json(&pr));
		json_object_set_new(out, "cpu_seconds", cpu_delta(n, &c0, &c1));
		json_object_set_new(out, "batches", batch_json(st0, st1));
	}
	json_decref(st0);
	json_decref(st1);
	free(pr.slots);
	free(pr.rotor);
	return out;
}

/* half-peak: the pay load as fast as answered (the peak), then again on the same channels
 * paced at half the peak's rate; the result is the paced run's, with the peak kept under
 * "peak". */
static json_t *half_peak(struct bench_wallet *w, const struct bench_opts *o,
			 const struct bench_net *n, json_t *peak)
{
	struct bench_opts paced = *o;
	paced.rate = json_number_value(json_object_get(peak, "per_second")) / 2;
	if (paced.rate < 1) {
		fprintf(stderr, "mpbench: half-peak: the peak run paid nothing\n");
		json_decref(peak);
		return NULL;
	}
	if (!o->quiet)
		fprintf(stderr, "mpbench: half-peak: peak %.0f/s, now paced at %.0f/s\n",
			paced.rate * 2, paced.rate);
	json_t *out = pay_load(w, &paced, n);
	if (out && json_integer_value(json_object_get(out, "count")) == 0) {
		fprintf(stderr,
			"mpbench: half-peak: the peak run spent every unit of the channels; "
			"raise -u or -n\n");
		json_decref(out);
		out = NULL;
	}
	if (out) {
		json_object_set_new(out, "paced_at_per_second", json_real(paced.rate));
		json_object_set_new(out, "peak", peak);
	} else {
		json_decref(peak);
	}
	return out;
}

enum pay_then { PAY_ONLY, PAY_THEN_REDEEM, PAY_THEN_HALF_PEAK };

/* Issue, open, pay for the duration; then, if asked, the merchant's redemption of it all or
 * a second pay load at half the rate. */
static json_t *pay_session(const struct bench_opts *o, const struct bench_net *n,
			   enum pay_then then)
{
	struct bench_wallet w;
	struct load_result issued, opened;
	json_t *out = NULL;
	pid_t merchant = bench_daemon_pid(n, "merchantd");
	if (prepare(&w, o, n, &issued)) {
		uint64_t rss0 = merchant ? proc_rss_bytes(merchant) : 0;
		bool ok = wallet_open(&w, o, n, &opened);
		uint64_t rss1 = merchant ? proc_rss_bytes(merchant) : 0;
		out = ok ? pay_load(&w, o, n) : NULL;
		if (out) {
			unsigned paid = 0;
			for (unsigned i = 0; i < w.n_channels; i++)
				paid += w.channels[i].next_j > 0;
			json_object_set_new(out, "channels", json_integer(w.opened));
			json_object_set_new(out, "channels_paid", json_integer(paid));
			json_object_set_new(out, "connections", json_integer(o->conns));
			json_object_set_new(out, "window", json_integer(o->window));
			json_object_set_new(
			    out, "mix",
			    json_pack("{s:i, s:i}", "k", o->k, "k_percent", o->k_percent));
			json_object_set_new(out, "merchant_rss_per_channel_bytes",
					    rss0 && rss1 >= rss0
						? json_real((double)(rss1 - rss0) / w.opened)
						: json_null());
		}
		if (out && then == PAY_THEN_REDEEM)
			out = redeem_all(o, n, out);
		if (out && then == PAY_THEN_HALF_PEAK)
			out = half_peak(&w, o, n, out);
	}
	wallet_free(&w);
	return out;
}

json_t *scenario_pay(const struct bench_opts *o, const struct bench_net *n)
{
	return pay_session(o, n, PAY_ONLY);
}

json_t *scenario_redeem(const struct bench_opts *o, const struct bench_net *n)
{
	return pay_session(o, n, PAY_THEN_REDEEM);
}

json_t *scenario_half_peak(const struct bench_opts *o, const struct bench_net *n)
{
	return pay_session(o, n, PAY_THEN_HALF_PEAK);
}
