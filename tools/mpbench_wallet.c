/* The benchmark's wallet (state diagram in mpbench_wallet.h). Registration, issue and open go
 * through the load engine, so the `issue` figure is the broker's, measured like the others. */
#include "mpbench_wallet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "stmt.h"

/* ---- registration ---- */

struct register_run {
	struct bench_wallet *w;
	bool sent, registered;
};

static bool register_next(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct register_run *rr = arg;
	if (rr->sent)
		return false;
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, rr->w->account.pk};
	MpSigned *s = mp_stmt_sign(&rr->w->account, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	if (!s)
		return false;
	Micropay__V1__RegisterAccountReq req = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &req;
	rr->sent = load_send(l, c, slot, &env);
	mp_stmt_free(s);
	return rr->sent;
}

static bool never_again(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	return false;
}

static enum load_outcome register_answer(void *arg, unsigned slot, const MpEnvelope *env)
{
	struct register_run *rr = arg;
	const Micropay__V1__RegisterAccountResp *r = env->register_account_resp;
	if (env->body_case != MP_BODY(REGISTER_ACCOUNT_RESP) || !r->status ||
	    r->status->code != MP_ST(OK) || !mp_bytes_len_is(r->account_id, MP_ID_LEN)) {
		fprintf(stderr, "mpbench: account registration refused (%s)\n",
			env->body_case == MP_BODY(REGISTER_ACCOUNT_RESP) && r->status
			    ? mp_code_name(r->status->code)
			    : "unexpected answer");
		return LOAD_FAIL;
	}
	memcpy(rr->w->account_id, r->account_id.data, MP_ID_LEN);
	rr->registered = true;
	return LOAD_DONE;
}

static const struct load_ops register_ops = {register_next, never_again, register_answer};

static bool fund(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n)
{
	uint8_t fund_id[MP_ID_LEN];
	char account[MP_HEX_ID_LEN + 1], fund_hex[MP_HEX_ID_LEN + 1];
	if (!mp_random_bytes(fund_id, MP_ID_LEN))
		return false;
	mp_hex_encode(w->account_id, MP_ID_LEN, account);
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	/* Units of value 1, every channel in full, twice over for any fee. */
	json_int_t amount = (json_int_t)o->channels * o->units * 2 + 1000;
	json_t *params =
	    json_pack("{s:s, s:I, s:s}", "account", account, "amount", amount, "fund_id", fund_hex);
	json_t *r = bench_admin(n->broker_admin, "account.fund", params);
	json_decref(params);
	json_decref(r);
	return r != NULL;
}

bool wallet_setup(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n)
{
	uint8_t seed[MP_SK_LEN];
	*w = (struct bench_wallet){0};
	w->hasher = mp_hasher_new();
	if (!w->hasher || !mp_key_generate(&w->account, seed) ||
	    !mp_hex_decode(n->merchant_id, w->merchant_id, MP_ID_LEN)) {
		fprintf(stderr, "mpbench: wallet keys (merchant id '%s')\n", n->merchant_id);
		return false;
	}
	if (!n->broker_admin[0]) {
		fprintf(stderr, "mpbench: funding the benchmark's account needs the broker's admin "
				"socket (--broker-admin, --net or --spawn)\n");
		return false;
	}
	struct register_run rr = {.w = w};
	struct load_spec spec = load_spec_for(o, n, "register", n->broker, &register_ops, &rr);
	spec.conns = spec.window = 1;
	spec.duration = 0;
	spec.quiet = true;
	struct load_result r;
	if (!load_run(&spec, &r) || !rr.registered)
		return false;
	return fund(w, o, n);
}

/* ---- chains ---- */

static int keep_checkpoint(void *arg, uint32_t index, const uint8_t word[MP_HASH_LEN])
{
	struct bench_channel *ch = arg;
	uint32_t slot = index == ch->n && index % CHAIN_CHECKPOINT ? index / CHAIN_CHECKPOINT + 1
								   : index / CHAIN_CHECKPOINT;
	memcpy(ch->checkpoints + (size_t)slot * MP_HASH_LEN, word, MP_HASH_LEN);
	return 0;
}

static bool make_channel(struct bench_wallet *w, struct bench_channel *ch, uint32_t n)
{
	uint8_t seed[MP_SEED_LEN], req_id[MP_ID_LEN], root[MP_HASH_LEN];
	struct mp_key owner;
	ch->n = n;
	ch->checkpoints = calloc(n / CHAIN_CHECKPOINT + 2, MP_HASH_LEN);
	if (!ch->checkpoints || !mp_random_bytes(seed, sizeof(seed)) ||
	    !mp_random_bytes(ch->nonce, sizeof(ch->nonce)) ||
	    !mp_random_bytes(req_id, sizeof(req_id)) || !mp_key_generate(&owner, ch->owner_seed))
		return false;
	mp_chain_generate(w->hasher, seed, ch->nonce, n, CHAIN_CHECKPOINT, keep_checkpoint, ch,
			  root);
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){MP_ID_LEN, req_id};
	r.account_id = (ProtobufCBinaryData){MP_ID_LEN, w->account_id};
	r.owner_pk = (ProtobufCBinaryData){MP_PK_LEN, owner.pk};
	r.chain_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, ch->nonce};
	r.root = (ProtobufCBinaryData){MP_HASH_LEN, root};
	r.n = n;
	r.unit_value = 1;
	r.currency = "EUR";
	r.holder0 = (ProtobufCBinaryData){MP_ID_LEN, w->merchant_id};
	r.pay_until_days = 1;
	ch->request = mp_stmt_sign(&w->account, MP_STMT_ISSUE_REQUEST, &r.base);
	mp_key_free(&owner);
	return ch->request != NULL;
}

bool wallet_make_channels(struct bench_wallet *w, const struct bench_opts *o)
{
	w->channels = calloc(o->channels, sizeof(*w->channels));
	if (!w->channels)
		return false;
	w->n_channels = o->channels;
	for (unsigned i = 0; i < o->channels; i++)
		if (!make_channel(w, &w->channels[i], o->units)) {
			fprintf(stderr, "mpbench: cannot make channel %u\n", i);
			return false;
		}
	return true;
}

/* Index j >= the kept base: walk down from the checkpoint above it once per
 * CHAIN_CHECKPOINT indices (one hash per unit overall, like a wallet). */
const uint8_t *wallet_word(struct bench_wallet *w, struct bench_channel *ch, uint32_t j)
{
	uint32_t base = j / CHAIN_CHECKPOINT * CHAIN_CHECKPOINT;
	if (!ch->have_words || ch->base != base) {
		uint32_t hi = base + CHAIN_CHECKPOINT < ch->n ? base + CHAIN_CHECKPOINT : ch->n;
		uint32_t slot = hi == ch->n && hi % CHAIN_CHECKPOINT ? hi / CHAIN_CHECKPOINT + 1
								     : hi / CHAIN_CHECKPOINT;
		memcpy(ch->words[hi - base], ch->checkpoints + (size_t)slot * MP_HASH_LEN,
		       MP_HASH_LEN);
		for (uint32_t k = hi; k > base; k--)
			mp_chain_link(w->hasher, ch->nonce, k, ch->words[k - base],
				      ch->words[k - 1 - base]);
		ch->base = base;
		ch->have_words = true;
	}
	return ch->words[j - base];
}

/* ---- issue and open ---- */

struct channel_run {
	struct bench_wallet *w;
	unsigned next;	   /* the next channel to send */
	unsigned *in_slot; /* the channel each slot's request is about */
	bool opening;
};

/* Send slot's request again: its channel's IssueReq, or its OpenReq when opening. */
static bool channel_again(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct channel_run *cr = arg;
	struct bench_channel *ch = &cr->w->channels[cr->in_slot[slot]];
	Micropay__V1__IssueReq issue = MICROPAY__V1__ISSUE_REQ__INIT;
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	if (cr->opening) {
		open.cert = ch->cert;
		env.body_case = MP_BODY(OPEN_REQ);
		env.open_req = &open;
	} else {
		issue.stmt = ch->request;
		env.body_case = MP_BODY(ISSUE_REQ);
		env.issue_req = &issue;
	}
	return load_send(l, c, slot, &env);
}

static bool channel_next(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	struct channel_run *cr = arg;
	while (cr->next < cr->w->n_channels) {
		unsigned i = cr->next++;
		if (cr->opening && !cr->w->channels[i].cert)
			continue; /* its issue failed */
		cr->in_slot[slot] = i;
		return channel_again(arg, l, c, slot);
	}
	return false;
}

static bool keep_cert(struct bench_channel *ch, const MpSigned *cert)
{
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, cert->body.data, cert->body.len);
	if (!cc || !mp_bytes_len_is(cc->channel_id, MP_ID_LEN)) {
		if (cc)
			micropay__v1__channel_cert__free_unpacked(cc, NULL);
		return false;
	}
	memcpy(ch->id, cc->channel_id.data, MP_ID_LEN);
	ch->pay_until = cc->pay_until;
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
	ch->cert = mp_stmt_copy(cert);
	return ch->cert != NULL;
}

static enum load_outcome judge(MpStatus *st, const char *what, unsigned i)
{
	if (st && st->code == MP_ST(LIMIT))
		return LOAD_RETRY;
	fprintf(stderr, "mpbench: %s of channel %u: %s %s\n", what, i,
		st ? mp_code_name(st->code) : "unexpected answer",
		st && st->detail ? st->detail : "");
	return LOAD_FAIL;
}

static enum load_outcome channel_answer(void *arg, unsigned slot, const MpEnvelope *env)
{
	struct channel_run *cr = arg;
	unsigned i = cr->in_slot[slot];
	struct bench_channel *ch = &cr->w->channels[i];
	MpStatus *st = env->body_case == MP_BODY(ERROR) ? env->error : NULL;
	if (cr->opening && env->body_case == MP_BODY(OPEN_ACK)) {
		st = env->open_ack->status;
		if (st && st->code == MP_ST(OK)) {
			if (!cr->w->holder_cert && env->open_ack->holder_cert)
				cr->w->holder_cert = mp_stmt_copy(env->open_ack->holder_cert);
			ch->open = true;
			cr->w->opened++;
			return LOAD_DONE;
		}
	}
	if (!cr->opening && env->body_case == MP_BODY(ISSUE_RESP)) {
		st = env->issue_resp->status;
		if (st && st->code == MP_ST(OK) && env->issue_resp->channel_cert &&
		    keep_cert(ch, env->issue_resp->channel_cert)) {
			cr->w->issued++;
			return LOAD_DONE;
		}
	}
	return judge(st, cr->opening ? "open" : "issue", i);
}

static const struct load_ops channel_ops = {channel_next, channel_again, channel_answer};

static bool channel_load(struct bench_wallet *w, const struct bench_opts *o,
			 const struct bench_net *n, bool opening, struct load_result *r)
{
	struct channel_run cr = {.w = w, .opening = opening};
	cr.in_slot = calloc((size_t)o->conns * o->window, sizeof(*cr.in_slot));
	if (!cr.in_slot)
		return false;
	struct load_spec spec = load_spec_for(o, n, opening ? "open" : "issue",
					      opening ? n->merchant : n->broker, &channel_ops, &cr);
	spec.duration = 0; /* until every channel is done */
	if (!opening)
		spec.endpoint2 = w->broker2;
	bool ok = load_run(&spec, r);
	free(cr.in_slot);
	return ok;
}

bool wallet_issue(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n,
		  struct load_result *r)
{
	return channel_load(w, o, n, false, r) && w->issued > 0;
}

bool wallet_open(struct bench_wallet *w, const struct bench_opts *o, const struct bench_net *n,
		 struct load_result *r)
{
	return channel_load(w, o, n, true, r) && w->opened > 0;
}

void wallet_free(struct bench_wallet *w)
{
	for (unsigned i = 0; i < w->n_channels; i++) {
		free(w->channels[i].checkpoints);
		mp_stmt_free(w->channels[i].request);
		mp_stmt_free(w->channels[i].cert);
		OPENSSL_cleanse(w->channels[i].owner_seed, MP_SK_LEN);
	}
	mp_stmt_free(w->holder_cert);
	free(w->channels);
	if (w->hasher)
		mp_hasher_free(w->hasher);
	mp_key_free(&w->account);
}
