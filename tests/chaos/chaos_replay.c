#include "chaos_replay.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_peer.h"
#include "harness_pg.h"
#include "harness_store.h"

#define REPLAY_RETRY_MS 60000

/* ---- reading the parties' stores ---- */

static void store_file(const struct net *n, const char *daemon, const char *file, char *path,
		       size_t len)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "%s/%s", daemon, file);
	net_path(n, rel, path, len);
}

/* One blob of channel id's row that sql selects from walletd `wallet`'s store (walletd locks it
 * exclusively: it is stopped with SIGTERM for the read and started again); NULL if none. */
static uint8_t *wallet_blob(struct chaos_replays *r, const struct chaos_peers *p,
			    const char *wallet, const char *sql, const uint8_t id[MP_ID_LEN],
			    size_t *len)
{
	char path[700];
	store_file(p->net, wallet, "wallet.db", path, sizeof(path));
	ck_assert_int_eq(net_cmd(p->net, "kill", wallet), 0);
	uint8_t *blob = store_row_blob(path, sql, id, MP_ID_LEN, 0, 0, len);
	ck_assert_msg(net_cmd(p->net, "start", wallet) == 0, "%s did not start again", wallet);
	r->wallet_reads++;
	return blob;
}

/* The owner key of segment seg_seq of channel id: walletd `wallet`'s key of the channel's
 * current segment, read once and kept for the next Moves of that segment. */
static const struct mp_key *owner_key(struct chaos_replays *r, const struct chaos_peers *p,
				      const uint8_t id[MP_ID_LEN], uint32_t seg_seq,
				      const char *wallet)
{
	for (int i = 0; i < r->n_keys; i++)
		if (r->keys[i].seg_seq == seg_seq && memcmp(r->keys[i].id, id, MP_ID_LEN) == 0)
			return &r->keys[i].key;
	if (r->n_keys == REPLAY_MAX)
		return NULL;
	size_t len = 0;
	uint8_t *seed = wallet_blob(
	    r, p, wallet, "SELECT owner_seed FROM channels WHERE channel_id = ?1", id, &len);
	ck_assert_msg(seed && len == MP_SK_LEN, "%s: no plain owner key for the channel", wallet);
	struct owner_key *k = &r->keys[r->n_keys];
	memcpy(k->id, id, MP_ID_LEN);
	k->seg_seq = seg_seq;
	ck_assert(mp_key_from_seed(&k->key, seed));
	free(seed);
	r->n_keys++;
	return &k->key;
}

/* ---- sending a request again ---- */

static const MpStatus *resp_status(const MpEnvelope *e)
{
	if (e && e->body_case == MP_BODY(HANDOFF_RESP))
		return e->handoff_resp->status;
	if (e && e->body_case == MP_BODY(CLOSE_RESP))
		return e->close_resp->status;
	return NULL;
}

/* env sent to endpoint (as merchant `as`, or without a client certificate) over a fresh
 * connection until an answer does not say "retry" (no answer, LIMIT, INTERNAL). */
static MpEnvelope *resend(const char *endpoint, const char *ca, const struct tmerchant *as,
			  MpEnvelope *env, const char *what)
{
	uint64_t t0 = now_ms();
	for (unsigned tries = 1;; tries++) {
		struct wire w;
		MpEnvelope *resp = NULL;
		if (wire_connect(&w, endpoint, ca, as ? as->cert : NULL, as ? as->tls_key : NULL)) {
			resp = wire_call(&w, env);
			wire_close(&w);
		}
		const MpStatus *st = resp_status(resp);
		if (st && st->code != MP_ST(LIMIT) && st->code != MP_ST(INTERNAL))
			return resp;
		fprintf(stderr, "  %s at %s: %s (try %u)\n", what, endpoint,
			st ? mp_code_name(st->code) : "no answer", tries);
		if (resp)
			micropay__v1__envelope__free_unpacked(resp, NULL);
		ck_assert_msg(now_ms() - t0 < REPLAY_RETRY_MS,
			      "%s at %s: unanswered after %u tries", what, endpoint, tries);
		usleep(200000);
	}
}

/* A HandoffReq carrying the Move stmt (as merchant `as`), or a CloseReq carrying the
 * CloseRequest stmt (as = NULL: without a client certificate), sent to endpoint over a fresh
 * connection until an answer does not say "retry" (no answer, LIMIT, INTERNAL). */
static MpEnvelope *send_again(const char *endpoint, const char *ca, const struct tmerchant *as,
			      const uint8_t *stmt, size_t stmt_len, const char *what)
{
	MpSigned *s = mp_stmt_decode(stmt, stmt_len);
	ck_assert_ptr_nonnull(s);
	Micropay__V1__HandoffReq hreq = MICROPAY__V1__HANDOFF_REQ__INIT;
	Micropay__V1__CloseReq creq = MICROPAY__V1__CLOSE_REQ__INIT;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	if (as) {
		hreq.move = s;
		env.body_case = MP_BODY(HANDOFF_REQ);
		env.handoff_req = &hreq;
	} else {
		creq.request = s;
		env.body_case = MP_BODY(CLOSE_REQ);
		env.close_req = &creq;
	}
	MpEnvelope *resp = resend(endpoint, ca, as, &env, what);
	mp_stmt_free(s);
	return resp;
}

static bool same_bytes(const MpSigned *s, const uint8_t *want, size_t want_len)
{
	size_t len = 0;
	uint8_t *got = s ? mp_stmt_encode(s, &len) : NULL;
	bool same = got && len == want_len && memcmp(got, want, len) == 0;
	free(got);
	return same;
}

/* ---- Handoffs ---- */

/* The Move walletd signed for h (channel, the Handoff's segment, from epoch hseq - 1, to the
 * successor): the same bytes, or the test fails on the Handoff's move_hash. */
static void handoff_move(struct chaos_replays *r, const struct chaos_peers *p,
			 struct handoff_rec *h, const char *wallet, const char *hex)
{
	MpSigned *stmt = mp_stmt_decode(h->handoff, h->handoff_len);
	ck_assert_ptr_nonnull(stmt);
	Micropay__V1__Handoff *b =
	    micropay__v1__handoff__unpack(NULL, stmt->body.len, stmt->body.data);
	ck_assert_msg(b && b->point && b->hseq == h->hseq && b->to_mid.len == MP_ID_LEN &&
			  memcmp(b->to_mid.data, p->tm[h->successor].mid, MP_ID_LEN) == 0 &&
			  b->from_mid.len == MP_ID_LEN &&
			  memcmp(b->from_mid.data, p->tm[h->signer].mid, MP_ID_LEN) == 0,
		      "%s: %s's Handoff %u is not from %s to it", hex, p->tm[h->successor].name,
		      h->hseq, p->tm[h->signer].name);
	const struct mp_key *key = owner_key(r, p, h->id, b->point->seg_seq, wallet);
	ck_assert_ptr_nonnull(key);
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, h->id};
	mv.seg_seq = b->point->seg_seq;
	mv.from_epoch = h->hseq - 1;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)p->tm[h->successor].mid};
	MpSigned *move = mp_stmt_sign(key, MP_STMT_MOVE, &mv.base);
	ck_assert_ptr_nonnull(move);
	uint8_t hash[MP_HASH_LEN];
	mp_stmt_hash(move, hash);
	ck_assert_msg(b->move_hash.len == MP_HASH_LEN &&
			  memcmp(b->move_hash.data, hash, MP_HASH_LEN) == 0,
		      "%s: Handoff %u's move_hash is not the Move of %s's owner key (segment %u)",
		      hex, h->hseq, wallet, b->point->seg_seq);
	h->move = mp_stmt_encode(move, &h->move_len);
	ck_assert_ptr_nonnull(h->move);
	mp_stmt_free(move);
	micropay__v1__handoff__free_unpacked(b, NULL);
	mp_stmt_free(stmt);
}

const struct handoff_rec *chaos_handoff_record(struct chaos_replays *r, const struct chaos_peers *p,
					       const char *channel_hex, uint32_t hseq, int signer,
					       int successor, const char *wallet)
{
	if (r->n_handoffs == REPLAY_MAX)
		return NULL;
	struct handoff_rec *h = &r->handoffs[r->n_handoffs];
	*h = (struct handoff_rec){.hseq = hseq, .signer = signer, .successor = successor};
	hex_to_bytes(channel_hex, h->id, MP_ID_LEN);
	char path[700];
	store_file(p->net, p->tm[successor].name, "merchant.db", path, sizeof(path));
	h->handoff =
	    store_row_blob(path, "SELECT stmt FROM custody WHERE channel_id = ?1 AND hseq = ?2",
			   h->id, MP_ID_LEN, hseq, 0, &h->handoff_len);
	ck_assert_msg(h->handoff != NULL, "%s acknowledged a pay of %s but stored no Handoff %u",
		      p->tm[successor].name, channel_hex, hseq);
	handoff_move(r, p, h, wallet, channel_hex);
	r->n_handoffs++;
	return h;
}

static bool in_chain(const Micropay__V1__HandoffResp *resp, const struct handoff_rec *h)
{
	for (size_t i = 0; i < resp->n_custody; i++)
		if (same_bytes(resp->custody[i], h->handoff, h->handoff_len))
			return true;
	return false;
}

static void check_handoff_answer(struct chaos_replays *r, const Micropay__V1__HandoffResp *resp,
				 const struct handoff_rec *h, enum replay_expect expect,
				 bool closed, const char *where)
{
	MpCode code = resp->status->code;
	const char *detail = resp->status->detail ? resp->status->detail : "";
	switch (expect) {
	case EXPECT_SAME:
		ck_assert_msg(code == MP_ST(DUPLICATE_OK), "%s: %s %s, not DUPLICATE_OK", where,
			      mp_code_name(code), detail);
		ck_assert_msg(same_bytes(resp->handoff, h->handoff, h->handoff_len),
			      "%s: DUPLICATE_OK with another Handoff than the one acknowledged",
			      where);
		return;
	case EXPECT_IN_CHAIN:
		ck_assert_msg(code == MP_ST(HANDED_OFF), "%s: %s %s, not HANDED_OFF", where,
			      mp_code_name(code), detail);
		ck_assert_msg(in_chain(resp, h),
			      "%s: HANDED_OFF without the acknowledged Handoff in its chain",
			      where);
		return;
	case EXPECT_NO_STATEMENT:
		ck_assert_msg(closed ? code == MP_ST(CLOSED)
				     : code == MP_ST(NOT_HOLDER) || code == MP_ST(STALE_SEGMENT),
			      "%s (the signer holds the channel again%s): %s %s", where,
			      closed ? ", closed" : "", mp_code_name(code), detail);
		r->superseded++;
		return;
	}
}

void chaos_handoff_replay(struct chaos_replays *r, const struct chaos_peers *p,
			  const struct handoff_rec *h, enum replay_expect expect, bool closed)
{
	char hex[MP_HEX_ID_LEN + 1], where[200];
	mp_hex_encode(h->id, MP_ID_LEN, hex);
	snprintf(where, sizeof(where), "replayed HandoffReq for Handoff %u of %s (%s -> %s)",
		 h->hseq, hex, p->tm[h->signer].name, p->tm[h->successor].name);
	MpEnvelope *e =
	    send_again(p->ep[h->signer], p->ca, &p->tm[h->successor], h->move, h->move_len, where);
	check_handoff_answer(r, e->handoff_resp, h, expect, closed, where);
	micropay__v1__envelope__free_unpacked(e, NULL);
	r->handoff_replays++;
}

/* ---- Closes ---- */

const struct close_rec *chaos_close_record(struct chaos_replays *r, const struct chaos_peers *p,
					   const char *channel_hex, int holder,
					   const char *close_b64, const char *wallet)
{
	if (r->n_closes == REPLAY_MAX)
		return NULL;
	struct close_rec *c = &r->closes[r->n_closes];
	*c = (struct close_rec){.holder = holder};
	c->close = tmp_b64_decode(close_b64, &c->close_len);
	hex_to_bytes(channel_hex, c->id, MP_ID_LEN);
	c->request = wallet_blob(r, p, wallet, "SELECT request FROM closes WHERE channel_id = ?1",
				 c->id, &c->request_len);
	ck_assert_msg(c->request != NULL, "%s closed %s but stored no CloseRequest", wallet,
		      channel_hex);
	r->n_closes++;
	return c;
}

void chaos_close_replay(struct chaos_replays *r, const struct chaos_peers *p,
			const struct close_rec *c)
{
	char hex[MP_HEX_ID_LEN + 1], where[200];
	mp_hex_encode(c->id, MP_ID_LEN, hex);
	snprintf(where, sizeof(where), "replayed CloseRequest of %s at %s", hex,
		 p->tm[c->holder].name);
	MpEnvelope *e =
	    send_again(p->ep[c->holder], p->ca, NULL, c->request, c->request_len, where);
	const Micropay__V1__CloseResp *resp = e->close_resp;
	ck_assert_msg(resp->status->code == MP_ST(DUPLICATE_OK), "%s: %s %s, not DUPLICATE_OK",
		      where, mp_code_name(resp->status->code),
		      resp->status->detail ? resp->status->detail : "");
	ck_assert_msg(same_bytes(resp->close, c->close, c->close_len),
		      "%s: DUPLICATE_OK with another Close than the one the wallet got", where);
	micropay__v1__envelope__free_unpacked(e, NULL);
	r->close_replays++;
}

void chaos_replays_free(struct chaos_replays *r)
{
	for (int i = 0; i < r->n_handoffs; i++) {
		free(r->handoffs[i].move);
		free(r->handoffs[i].handoff);
	}
	for (int i = 0; i < r->n_closes; i++) {
		free(r->closes[i].request);
		free(r->closes[i].close);
	}
	for (int i = 0; i < r->n_keys; i++)
		mp_key_free(&r->keys[i].key);
	memset(r, 0, sizeof(*r));
}
