/* The custody scenarios: `handoff` (a channel moved from merchant m1 to merchant m2) and
 * `transfer` (a channel's unspent rest given to another customer at its holder m1). Both time
 * the merchants' side of the operation, the one a busy merchant serves many times:
 *
 *   register, fund, make chains --> issue every channel (broker) --> open each at m1
 *     handoff:  OpenReq{cert, holder_hint m1, Move m1->m2, m1's MerchantCert} to m2
 *               --> m2 asks m1 (HandoffReq), m1 signs the Handoff and journals it
 *               --> m2 verifies and journals it --> OpenAck OK with the Handoff   [timed]
 *     transfer: new owner's chains made first (n hashes per channel, untimed)
 *               TransferReq{Transfer seg 1 signed by segment 0's owner} to m1
 *               --> m1 signs the Cap, switches the channel to segment 1, commits
 *               --> TransferResp OK with the Cap                                   [timed]
 *
 * Each channel is handed off (or transferred) once: the count is the number of channels, the
 * rate that count over the time from the first request to the last answer. A request answered
 * LIMIT (the merchant is busy) is sent again. The broker learns of the transfers afterwards from
 * m1's outbox (CapNotice); the run's audit covers that too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbench_wallet.h"
#include "stmt.h"

#define DELTA_XFER 3600 /* a Transfer is valid before pay_until - 1 h (docs/transfer.md) */

struct custody_run {
	struct bench_wallet *w;
	bool transfer; /* else handoff */
	uint8_t to_mid[MP_ID_LEN];
	struct mp_key new_owner;
	uint8_t (*new_roots)[MP_HASH_LEN];
	uint8_t (*new_nonces)[MP_NONCE_LEN];
	MpSigned **stmts; /* per channel: its Move or Transfer, signed before the timed part */
	unsigned next;
	unsigned *in_slot;
	uint64_t refusals_logged;
};

static MpSigned *sign_move(const struct custody_run *cr, const struct bench_channel *ch)
{
	struct mp_key owner;
	if (!mp_key_from_seed(&owner, ch->owner_seed))
		return NULL;
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->id};
	mv.seg_seq = 0;
	mv.from_epoch = 0; /* held by holder0 since the issue */
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)cr->to_mid};
	MpSigned *s = mp_stmt_sign(&owner, MP_STMT_MOVE, &mv.base);
	mp_key_free(&owner);
	return s;
}

static MpSigned *sign_transfer(const struct custody_run *cr, const struct bench_channel *ch,
			       unsigned i)
{
	struct mp_key owner;
	if (!mp_key_from_seed(&owner, ch->owner_seed))
		return NULL;
	uint8_t head[MP_HASH_LEN];
	mp_stmt_hash(ch->cert, head); /* segment 0's head is its ChannelCert */
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->id};
	t.new_seg_seq = 1;
	t.holder_epoch = 0;
	t.declared_last = 0; /* nothing paid on it */
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)cr->new_owner.pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, cr->new_nonces[i]};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, cr->new_roots[i]};
	t.new_len = ch->n; /* the Cap is at 0: the new chain covers (0, n] */
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, head};
	t.valid_until = ch->pay_until - DELTA_XFER;
	MpSigned *s = mp_stmt_sign(&owner, MP_STMT_TRANSFER, &t.base);
	mp_key_free(&owner);
	return s;
}

/* Send slot's request (again): the statement signed beforehand, so the load thread only
 * sends, as for the other scenarios. */
static bool custody_again(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct custody_run *cr = arg;
	unsigned i = cr->in_slot[slot];
	struct bench_channel *ch = &cr->w->channels[i];
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	Micropay__V1__TransferReq treq = MICROPAY__V1__TRANSFER_REQ__INIT;
	MpSigned *stmt = cr->stmts[i];
	if (cr->transfer) {
		treq.transfer = stmt;
		env.body_case = MP_BODY(TRANSFER_REQ);
		env.transfer_req = &treq;
	} else {
		open.cert = ch->cert;
		open.holder_hint = (ProtobufCBinaryData){MP_ID_LEN, cr->w->merchant_id};
		open.move = stmt;
		open.holder_cert = cr->w->holder_cert;
		env.body_case = MP_BODY(OPEN_REQ);
		env.open_req = &open;
	}
	return load_send(l, c, slot, &env);
}

static bool custody_next(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct custody_run *cr = arg;
	while (cr->next < cr->w->n_channels) {
		unsigned i = cr->next++;
		if (!cr->w->channels[i].open || !cr->stmts[i])
			continue; /* its issue or open failed */
		cr->in_slot[slot] = i;
		return custody_again(arg, l, c, slot);
	}
	return false;
}

static enum load_outcome custody_answer(void *arg, unsigned slot, const MpEnvelope *env)
{
	struct custody_run *cr = arg;
	const MpStatus *st = env->body_case == MP_BODY(ERROR) ? env->error : NULL;
	bool done = false;
	if (!cr->transfer && env->body_case == MP_BODY(OPEN_ACK)) {
		st = env->open_ack->status;
		done = st && st->code == MP_ST(OK) && env->open_ack->custody_event;
	}
	if (cr->transfer && env->body_case == MP_BODY(TRANSFER_RESP)) {
		st = env->transfer_resp->status;
		done = st && (st->code == MP_ST(OK) || st->code == MP_ST(DUPLICATE_OK)) &&
		       env->transfer_resp->cap;
	}
	if (done)
		return LOAD_DONE;
	if (st && st->code == MP_ST(LIMIT))
		return LOAD_RETRY;
	if (cr->refusals_logged++ < 5)
		fprintf(stderr, "mpbench: %s of channel %u: %s %s\n",
			cr->transfer ? "transfer" : "handoff", cr->in_slot[slot],
			st ? mp_code_name(st->code) : "unexpected answer",
			st && st->detail ? st->detail : "");
	return LOAD_FAIL;
}

static const struct load_ops custody_ops = {custody_next, custody_again, custody_answer};

/* The new owner's key and, per channel, a fresh nonce and the root of an n-word chain. */
static bool make_new_chains(struct custody_run *cr)
{
	struct bench_wallet *w = cr->w;
	uint8_t seed[MP_SK_LEN], chain_seed[MP_SEED_LEN];
	cr->new_roots = calloc(w->n_channels, sizeof(*cr->new_roots));
	cr->new_nonces = calloc(w->n_channels, sizeof(*cr->new_nonces));
	if (!cr->new_roots || !cr->new_nonces || !mp_key_generate(&cr->new_owner, seed))
		return false;
	for (unsigned i = 0; i < w->n_channels; i++) {
		if (!mp_random_bytes(chain_seed, sizeof(chain_seed)) ||
		    !mp_random_bytes(cr->new_nonces[i], MP_NONCE_LEN))
			return false;
		mp_chain_generate(w->hasher, chain_seed, cr->new_nonces[i], w->channels[i].n,
				  w->channels[i].n, NULL, NULL, cr->new_roots[i]);
	}
	return true;
}

/* Every open channel's Move (to m2) or Transfer (to the new owner), signed by its owner. */
static bool sign_all(struct custody_run *cr)
{
	struct bench_wallet *w = cr->w;
	cr->stmts = calloc(w->n_channels, sizeof(*cr->stmts));
	if (!cr->stmts)
		return false;
	for (unsigned i = 0; i < w->n_channels; i++) {
		struct bench_channel *ch = &w->channels[i];
		if (!ch->open)
			continue;
		cr->stmts[i] = cr->transfer ? sign_transfer(cr, ch, i) : sign_move(cr, ch);
		if (!cr->stmts[i]) {
			fprintf(stderr, "mpbench: cannot sign for channel %u\n", i);
			return false;
		}
	}
	return true;
}

static json_t *custody_load(struct custody_run *cr, const struct bench_opts *o,
			    const struct bench_net *n, const char *endpoint)
{
	cr->in_slot = calloc((size_t)o->conns * o->window, sizeof(*cr->in_slot));
	if (!cr->in_slot)
		return NULL;
	const char *name = cr->transfer ? "transfer" : "handoff";
	struct load_spec spec = load_spec_for(o, n, name, endpoint, &custody_ops, cr);
	spec.duration = 0; /* until every channel is done */
	struct load_result r;
	struct bench_cpu c0, c1;
	cpu_sample(n, &c0);
	bool ok = load_run(&spec, &r);
	cpu_sample(n, &c1);
	free(cr->in_slot);
	if (!ok)
		return NULL;
	json_t *out = load_json(&r, "per_second");
	json_object_set_new(out, "unit",
			    json_string(cr->transfer ? "transfers capped" : "handoffs"));
	json_object_set_new(out, "channels", json_integer(cr->w->opened));
	json_object_set_new(out, "cpu_seconds", cpu_delta(n, &c0, &c1));
	return out;
}

static json_t *custody_session(const struct bench_opts *o, const struct bench_net *n, bool transfer)
{
	if (!transfer && (!n->merchant2[0] || !n->merchant2_id[0])) {
		fprintf(stderr, "mpbench: handoff needs a second merchant m2 (--spawn starts one; "
				"with --net DIR, run `deploy/mpnet merchant DIR m2` first)\n");
		return NULL;
	}
	struct bench_wallet w;
	struct load_result issued, opened;
	struct custody_run cr = {.w = &w, .transfer = transfer};
	json_t *out = NULL;
	if (!o->quiet)
		fprintf(stderr, "mpbench: %s: %u channels: registering, issuing, opening at m1\n",
			transfer ? "transfer" : "handoff", o->channels);
	bool ok = wallet_setup(&w, o, n) && wallet_make_channels(&w, o) &&
		  wallet_issue(&w, o, n, &issued) && wallet_open(&w, o, n, &opened);
	if (ok && !transfer)
		ok = w.holder_cert && mp_hex_decode(n->merchant2_id, cr.to_mid, MP_ID_LEN);
	if (ok && transfer)
		ok = make_new_chains(&cr);
	ok = ok && sign_all(&cr);
	if (ok)
		out = custody_load(&cr, o, n, transfer ? n->merchant : n->merchant2);
	else
		fprintf(stderr, "mpbench: %s: preparing the channels failed\n",
			transfer ? "transfer" : "handoff");
	for (unsigned i = 0; cr.stmts && i < w.n_channels; i++)
		mp_stmt_free(cr.stmts[i]);
	free(cr.stmts);
	free(cr.new_roots);
	free(cr.new_nonces);
	mp_key_free(&cr.new_owner);
	wallet_free(&w);
	return out;
}

json_t *scenario_handoff(const struct bench_opts *o, const struct bench_net *n)
{
	return custody_session(o, n, false);
}

json_t *scenario_transfer(const struct bench_opts *o, const struct bench_net *n)
{
	return custody_session(o, n, true);
}
