/* buy with delivery=key (docs/goods.md "Key release (the wallet)"): the holder's Offer, its
 * ciphertext fetched and checked against the Offer before anything is paid, exactly the
 * Offer's price paid in one Pay at pay_index, then the key, checked against the Offer's
 * key_hash, opens the ciphertext into OUT. The session (session.h) is open and its Pays are
 * resolved when this starts.
 *
 *   START --a stored PAID or PAYING offer of this item on the channel--> KEY (resumed; a
 *     PAYING offer's Pay is resent by the session's Open if it is still in flight)
 *   START --else--> OFFER: OfferReq{channel, item} --OK, the Offer checked (the holder's key,
 *     this channel and segment, after_index = our spent index, pay_index = after_index +
 *     ceil(price / unit_value) within max_jump, the deadline ahead, max_price)--> stored
 *     OFFERED (refused, nothing paid, if our store holds that Offer already: one we cancelled
 *     or paid is never bought again) --> FETCHING sealed chunk k (ChunkReq, purchase_id =
 * order_ref), written to OUT.sealed.part and hashed on the worker, for k = 0 .. chunks-1 FETCHING
 * --all written--> COMMITTING (fsync, rename to OUT.sealed) --SHA-256 of the sealed chunks =
 * ciphertext_hash, the deadline still KEY_PAY_MARGIN_S ahead--> stored PAYING (only from OFFERED: a
 * cancelled offer is never paid) --> PAYING pay_index - after_index units, order_ref = the Offer's
 * (one Pay, in flight on record first) --accepted--> stored PAID --> KEY KEY: KeyReq --OK,
 * SHA-256(key) = key_hash--> stored KEYED --> UNSEALING (worker: every chunk's tag verified, the
 * nonce prefix derived from the key) --> DONE (answered) UNSEALING --chunk k does not open under
 * the key--> stored KEY_BAD with a BadKeyProof (buy_unseal.h) --> FAILED, paid: after the deadline
 * the wallet disputes it with the proof and the broker refunds it (dispute.c) KEY --TOO_EARLY (the
 * Pay still committing)--> KeyReq again after 200 ms, a bounded number of times OFFER, FETCHING,
 * COMMITTING --refusal, bad answer, hash mismatch--> FAILED, nothing paid (OUT.sealed removed) KEY
 * --refusal, bad key, no answer--> FAILED, paid: the answer says so; the offer stays PAID, a new
 * buy of the item asks for the key again, and after the deadline the wallet disputes it at the
 * broker (dispute.c) */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "buy.h"
#include "buy_file.h"
#include "buy_unseal.h"
#include "log.h"
#include "offer.h"
#include "sealed_tree.h"
#include "session.h"
#include "stmt.h"
#include "store_key_offer.h"
#include "wallet.h"

#define KEY_EARLY_TRIES	   50
#define KEY_EARLY_DELAY_US 200000
/* An Offer whose deadline is this close is refused: fetching and paying must fit before it. */
#define KEY_DEADLINE_MARGIN_S 30
/* Nothing is paid when the deadline is this close after fetching: the Pay must arrive first. */
#define KEY_PAY_MARGIN_S 10
/* An Offer's deadline at most this far ahead (merchantd's own maximum key_deadline), and this
 * long before the channel's redeem_until, so that a dispute can still be filed and answered
 * (protocol.md section 6: disputes are taken before redeem_until). */
#define KEY_DEADLINE_MAX_S	    86400
#define KEY_DISPUTE_BEFORE_REDEEM_S (2 * 3600)

struct buy_key {
	struct wkey_offer o;   /* as stored; o.offer owned */
	struct mp_offer offer; /* o.offer opened */
	struct mp_sealed_hash *hash;
	struct buy_file *sealed; /* OUT.sealed.part while fetching */
	bool paid;		 /* PAID on record */
};

#define key_fail(x, ...) wallet_session_fail((x)->s, __VA_ARGS__)

static void ask_key(struct buy_op *x);
static void fetch(struct buy_op *x, uint32_t k);

void buy_key_free(struct buy_key *k)
{
	if (!k)
		return;
	buy_file_abandon(k->sealed);
	mp_sealed_hash_free(k->hash);
	wkey_offer_clear(&k->o);
	free(k);
}

static struct wallet *wallet_of(struct buy_op *x)
{
	return wallet_session_wallet(x->s);
}

static void sealed_path(const struct buy_op *x, char *out, size_t len)
{
	snprintf(out, len, "%s.sealed", x->key->o.out);
}

/* ---- the key, and the plaintext ---- */

static void on_unsealed(void *arg, const char *err, const uint8_t *proof, size_t proof_len)
{
	struct buy_op *x = arg;
	if (proof && !wstore_key_offer_bad_key(wallet_of(x)->store, x->ch->channel_id,
					       x->purchase_id, proof, proof_len)) {
		key_fail(x, "the key arrived and is stored, but %s; the proof cannot be stored",
			 err);
		return;
	}
	if (proof) {
		key_fail(x,
			 "paid up to %u, but the merchant's key does not open its goods (%s): the "
			 "proof is stored (KEY_BAD) and the wallet disputes it at the broker after "
			 "the deadline %llu",
			 x->key->offer.pay_index, err, (unsigned long long)x->key->offer.deadline);
		return;
	}
	if (err) {
		key_fail(x, "the key arrived and is stored, but %s", err);
		return;
	}
	x->answered = true;
	char ch_hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(x->ch->channel_id, MP_ID_LEN, ch_hex);
	const struct mp_offer *of = &x->key->offer;
	log_info("buy %s: %llu bytes in %s by key release (offer %s, paid up to %u)", x->item,
		 (unsigned long long)x->size, x->key->o.out, x->purchase_hex, of->pay_index);
	wallet_session_reply(
	    x->s,
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "item", x->item,
		      "delivery", "key", "order_ref", x->purchase_hex, "channel_id", ch_hex, "out",
		      x->key->o.out, "bytes", (json_int_t)x->size, "chunks", (json_int_t)x->chunks,
		      "price", (json_int_t)of->price, "after_index", (json_int_t)of->after_index,
		      "pay_index", (json_int_t)of->pay_index, "units_paid",
		      (json_int_t)wallet_session_units_paid(x->s), "issued", x->issued));
}

static void unseal(struct buy_op *x, const uint8_t key[MP_SEAL_KEY_LEN])
{
	struct buy_unseal_spec spec = {.overwrite = x->overwrite,
				       .size = x->size,
				       .chunk_size = x->chunk_size,
				       .chunks = x->chunks};
	snprintf(spec.out, sizeof(spec.out), "%s", x->key->o.out);
	memcpy(spec.key, key, MP_SEAL_KEY_LEN);
	if (!buy_unseal(wallet_of(x)->workers, &spec, on_unsealed, x))
		key_fail(x, "the key is stored but the decryption cannot be queued (workers busy)");
}

static void on_key_retry(evutil_socket_t fd, short what, void *arg)
{
	ask_key(arg);
}

/* A KeyResp that is OK: the key checked, stored, then the plaintext. */
static void take_key(struct buy_op *x, const Micropay__V1__KeyResp *r)
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	if (r->key.len != MP_SEAL_KEY_LEN || r->order_ref.len != MP_ID_LEN ||
	    memcmp(r->order_ref.data, x->purchase_id, MP_ID_LEN)) {
		key_fail(x, "paid up to %u, but the KeyResp is malformed (key or order_ref)",
			 x->key->offer.pay_index);
		return;
	}
	SHA256(r->key.data, MP_SEAL_KEY_LEN, h);
	if (CRYPTO_memcmp(h, x->key->offer.key_hash, sizeof(h))) {
		key_fail(x,
			 "paid up to %u, but the key the merchant sent is not the Offer's (its "
			 "SHA-256 differs from key_hash): dispute it after the deadline",
			 x->key->offer.pay_index);
		return;
	}
	if (!wstore_key_offer_set(wallet_of(x)->store, x->ch->channel_id, x->purchase_id, WKO_KEYED,
				  r->key.data, 0)) {
		key_fail(x, "the key arrived but cannot be stored");
		return;
	}
	unseal(x, r->key.data);
}

static void on_key(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return; /* the session reports why */
	struct buy_op *x = wallet_session_arg(s);
	char text[400];
	if (env->body_case != MP_BODY(KEY_RESP) || !env->key_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		key_fail(x, "paid up to %u; unexpected answer to KeyReq: %s",
			 x->key->offer.pay_index, text);
		return;
	}
	MpCode code = env->key_resp->status->code;
	wallet_status_text(env->key_resp->status, text, sizeof(text));
	struct timeval tv = {0, KEY_EARLY_DELAY_US};
	if (code == MP_ST(TOO_EARLY) && ++x->early_tries <= KEY_EARLY_TRIES) {
		if (evtimer_add(x->retry, &tv) != 0)
			key_fail(x, "paid; cannot arm the retry of KeyReq");
		return;
	}
	if (code != MP_ST(OK)) {
		key_fail(x,
			 "paid up to %u, but KeyReq refused: %s (the offer is kept: buy again to "
			 "ask for the key; after the deadline the wallet disputes it)",
			 x->key->offer.pay_index, text);
		return;
	}
	take_key(x, env->key_resp);
}

static void ask_key(struct buy_op *x)
{
	Micropay__V1__KeyReq req = MICROPAY__V1__KEY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, x->ch->channel_id};
	req.order_ref = (ProtobufCBinaryData){MP_ID_LEN, x->purchase_id};
	snprintf(x->what, sizeof(x->what), "KeyReq for offer %s", x->purchase_hex);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(KEY_REQ);
	env.key_req = &req;
	if (!wallet_session_call(x->s, &env, on_key, x->what))
		key_fail(x, "paid; cannot send the KeyReq");
}

/* ---- paying ---- */

static void on_offer_paid(struct pay_op *s, void *arg)
{
	struct buy_op *x = arg;
	if (!wstore_key_offer_set(wallet_of(x)->store, x->ch->channel_id, x->purchase_id, WKO_PAID,
				  NULL, 0)) {
		key_fail(x, "paid up to %u, but the offer's state cannot be stored",
			 x->key->offer.pay_index);
		return;
	}
	x->key->paid = true;
	log_info("buy %s: paid offer %s up to %u; asking for the key", x->item, x->purchase_hex,
		 x->key->offer.pay_index);
	ask_key(x);
}

/* The ciphertext is on disk: its hash decides whether anything is paid. */
static void on_sealed_committed(void *arg, const char *err)
{
	struct buy_op *x = arg;
	struct buy_key *k = x->key;
	uint8_t h[MP_HASH_LEN];
	if (!err)
		k->sealed = NULL; /* buy_file freed it */
	if (err || !mp_sealed_hash_final(k->hash, h)) {
		key_fail(x, "nothing paid: %s", err ? err : "cannot hash the ciphertext");
		return;
	}
	if (CRYPTO_memcmp(h, k->offer.ciphertext_hash, MP_HASH_LEN)) {
		char path[4200];
		sealed_path(x, path, sizeof(path));
		unlink(path);
		key_fail(
		    x, "nothing paid: the ciphertext the merchant sent does not match the Offer's "
		       "ciphertext_hash");
		return;
	}
	uint32_t units = k->offer.pay_index - k->offer.after_index;
	if (units > wallet_session_max_jump(x->s)) {
		key_fail(x, "nothing paid: the offer's %u units exceed the holder's max_jump %u",
			 units, wallet_session_max_jump(x->s));
		return;
	}
	if (wallet_now(wallet_of(x)) + KEY_PAY_MARGIN_S > k->offer.deadline) {
		key_fail(x, "nothing paid: the offer's deadline came too close while fetching");
		return;
	}
	if (!wstore_key_offer_paying(wallet_of(x)->store, x->ch->channel_id, x->purchase_id)) {
		key_fail(x, "nothing paid: the offer is no longer OFFERED on record (or the store "
			    "failed)");
		return;
	}
	wallet_session_pay(x->s, units, x->purchase_id, MP_ID_LEN, on_offer_paid);
}

/* ---- the ciphertext ---- */

static void on_sealed_written(void *arg, const char *err)
{
	struct buy_op *x = arg;
	if (err) {
		key_fail(x, "nothing paid: %s", err);
		return;
	}
	x->received++;
	buy_report(x);
	if (x->received < x->chunks) {
		fetch(x, x->received);
		return;
	}
	if (!buy_file_commit(x->key->sealed, true, on_sealed_committed, x))
		key_fail(x, "nothing paid: cannot queue the final write of the ciphertext");
}

static uint64_t plain_len(const struct buy_op *x, uint32_t k)
{
	return k + 1 < x->chunks ? x->chunk_size : x->size - (uint64_t)k * x->chunk_size;
}

static const char *check_sealed(const struct buy_op *x, const Micropay__V1__ChunkResp *r)
{
	if (!r->item || strcmp(r->item, x->item))
		return "it names another item";
	if (r->chunk != x->asked)
		return "it carries another chunk than the one asked for";
	if (r->purchase_id.len != MP_ID_LEN ||
	    memcmp(r->purchase_id.data, x->purchase_id, MP_ID_LEN))
		return "it names another offer";
	if (r->chunks != x->chunks || r->size != x->size || r->chunk_size != x->chunk_size)
		return "the item's chunks, size or chunk_size differ from the offer's";
	if (r->data.len != plain_len(x, x->asked) + MP_SEAL_TAG_LEN)
		return "the data is not the sealed chunk's length";
	return NULL;
}

static void on_sealed_chunk(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return;
	struct buy_op *x = wallet_session_arg(s);
	char text[400];
	if (env->body_case != MP_BODY(CHUNK_RESP) || !env->chunk_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		key_fail(x, "nothing paid; unexpected answer to ChunkReq for sealed chunk %u: %s",
			 x->asked, text);
		return;
	}
	const Micropay__V1__ChunkResp *r = env->chunk_resp;
	wallet_status_text(r->status, text, sizeof(text));
	const char *bad = r->status->code == MP_ST(OK) ? check_sealed(x, r) : NULL;
	if (r->status->code != MP_ST(OK))
		key_fail(x, "nothing paid; ChunkReq for sealed chunk %u refused: %s", x->asked,
			 text);
	else if (bad)
		key_fail(x, "nothing paid; the answer for sealed chunk %u does not check out: %s",
			 x->asked, bad);
	else if (!buy_file_write(x->key->sealed,
				 (uint64_t)x->asked * (x->chunk_size + MP_SEAL_TAG_LEN),
				 r->data.data, r->data.len, on_sealed_written, x))
		key_fail(x, "nothing paid; cannot queue the write of sealed chunk %u", x->asked);
}

static void fetch(struct buy_op *x, uint32_t k)
{
	Micropay__V1__ChunkReq req = MICROPAY__V1__CHUNK_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, x->ch->channel_id};
	req.item = x->item;
	req.purchase_id = (ProtobufCBinaryData){MP_ID_LEN, x->purchase_id};
	req.chunk = k;
	x->asked = k;
	snprintf(x->what, sizeof(x->what), "ChunkReq for sealed chunk %u of %s", k, x->item);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(CHUNK_REQ);
	env.chunk_req = &req;
	if (!wallet_session_call(x->s, &env, on_sealed_chunk, x->what))
		key_fail(x, "nothing paid; cannot send the ChunkReq for sealed chunk %u", k);
}

/* ---- the offer ---- */

/* The Offer's fields against our own state: NULL, or what is wrong. */
static const char *check_offer_fields(struct buy_op *x, const struct mp_offer *of)
{
	const struct wchannel *ch = x->ch;
	uint32_t spent = wallet_channel_spent(ch), units = 0;
	if (memcmp(of->merchant_id, ch->holder, MP_ID_LEN) ||
	    memcmp(of->channel_id, ch->channel_id, MP_ID_LEN))
		return "it names another merchant or channel";
	if (of->seg_seq != ch->seg_seq)
		return "it names another segment";
	if (of->after_index != spent)
		return "its after_index is not the channel's last paid index";
	if (!mp_offer_units(of->price, ch->unit_value, wallet_session_max_jump(x->s), &units) ||
	    of->pay_index != of->after_index + units)
		return "its pay_index is not after_index + ceil(price / unit_value) within "
		       "max_jump";
	if (of->pay_index > ch->n || of->pay_index > ch->seg_start + ch->seg_len)
		return "its pay_index is beyond the channel's chain";
	uint64_t now = wallet_now(wallet_of(x));
	if (of->deadline < now + KEY_DEADLINE_MARGIN_S)
		return "its deadline is passed or too close";
	if (of->deadline > now + KEY_DEADLINE_MAX_S ||
	    of->deadline + KEY_DISPUTE_BEFORE_REDEEM_S > ch->redeem_until)
		return "its deadline is so far ahead that a dispute could not be filed in time";
	return NULL;
}

/* OfferResp OK: NULL with the offer opened and its shape taken into x, or what is wrong. */
static const char *check_offer(struct buy_op *x, const Micropay__V1__OfferResp *r)
{
	uint8_t pk[MP_PK_LEN];
	struct buy_key *k = x->key;
	const char *bad =
	    x->ch->holder_cert
		? wallet_merchant_cert_check(wallet_of(x), x->ch->holder_cert, x->ch->holder, pk)
		: "the holder's MerchantCert is not known";
	if (bad)
		return bad;
	if ((bad = mp_offer_open(r->offer, pk, &k->offer)) ||
	    (bad = check_offer_fields(x, &k->offer)))
		return bad;
	if (!r->item || strcmp(r->item, x->item))
		return "it names another item";
	if (r->nonce_prefix.len != MP_SEAL_PREFIX_LEN)
		return "its nonce_prefix is not 8 bytes";
	if (r->chunk_size < 1024 || r->chunk_size > 512 * 1024 || r->size == 0 ||
	    (r->size + r->chunk_size - 1) / r->chunk_size != r->chunks)
		return "its size, chunk_size and chunks do not fit";
	if (x->has_max && k->offer.price > x->max_price)
		return "its price is above max_price";
	return NULL;
}

/* The checked offer on record (OFFERED), the sealed file opened: fetch chunk 0. */
static void record_offer(struct buy_op *x, const Micropay__V1__OfferResp *r)
{
	struct buy_key *k = x->key;
	char path[4200], err[4400];
	memcpy(x->purchase_id, k->offer.order_ref, MP_ID_LEN);
	mp_hex_encode(x->purchase_id, MP_ID_LEN, x->purchase_hex);
	x->size = r->size;
	x->chunk_size = r->chunk_size;
	x->chunks = r->chunks;
	x->total = k->offer.price;
	x->pinned = true;
	memcpy(k->o.channel_id, x->ch->channel_id, MP_ID_LEN);
	memcpy(k->o.order_ref, x->purchase_id, MP_ID_LEN);
	memcpy(k->o.prefix, r->nonce_prefix.data, MP_SEAL_PREFIX_LEN);
	snprintf(k->o.item, sizeof(k->o.item), "%s", x->item);
	snprintf(k->o.out, sizeof(k->o.out), "%s", x->out);
	k->o.size = r->size;
	k->o.chunk_size = r->chunk_size;
	k->o.chunks = r->chunks;
	k->o.deadline = k->offer.deadline;
	const MpSigned *custody = wallet_session_custody_event(x->s);
	if (!(k->o.offer = mp_stmt_copy(r->offer)) ||
	    (custody && !(k->o.custody = mp_stmt_copy(custody))) ||
	    !(k->hash = mp_sealed_hash_new())) {
		key_fail(x, "nothing paid: out of memory");
		return;
	}
	/* An Offer we hold already is never bought again: it may be one we cancelled (the holder
	 * would keep the payment and answer a dispute with our cancel) or paid. */
	enum wkey_offer_state known;
	int found =
	    wstore_key_offer_state(wallet_of(x)->store, k->o.channel_id, k->o.order_ref, &known);
	if (found < 0) {
		key_fail(x, "nothing paid: our offers cannot be read");
		return;
	}
	if (found > 0) {
		key_fail(x, "nothing paid: the holder sent an Offer we hold already (%s)",
			 wkey_offer_state_name(known));
		return;
	}
	if (!wstore_key_offer_put(wallet_of(x)->store, &k->o)) {
		key_fail(x, "nothing paid: the offer cannot be stored");
		return;
	}
	sealed_path(x, path, sizeof(path));
	if (!(k->sealed = buy_file_open(wallet_of(x)->workers, path, err, sizeof(err)))) {
		key_fail(x, "nothing paid: %s", err);
		return;
	}
	buy_file_hash(k->sealed, k->hash);
	log_info("buy %s: offer %s, price %llu, pay_index %u (after %u), %u sealed chunks", x->item,
		 x->purchase_hex, (unsigned long long)k->offer.price, k->offer.pay_index,
		 k->offer.after_index, x->chunks);
	fetch(x, 0);
}

static void on_offer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return;
	struct buy_op *x = wallet_session_arg(s);
	char text[400];
	if (env->body_case != MP_BODY(OFFER_RESP) || !env->offer_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		key_fail(x, "nothing paid; unexpected answer to OfferReq: %s", text);
		return;
	}
	const Micropay__V1__OfferResp *r = env->offer_resp;
	wallet_status_text(r->status, text, sizeof(text));
	const char *bad = r->status->code == MP_ST(OK) ? check_offer(x, r) : NULL;
	if (r->status->code == MP_ST(UNDERPAID))
		key_fail(x,
			 "nothing paid; OfferReq refused: %s (the holder makes offers only on a "
			 "channel with at least one paid unit)",
			 text);
	else if (r->status->code != MP_ST(OK))
		key_fail(x, "nothing paid; OfferReq refused: %s", text);
	else if (bad)
		key_fail(x, "nothing paid; the Offer does not check out: %s", bad);
	else
		record_offer(x, r);
}

static void ask_offer(struct buy_op *x)
{
	Micropay__V1__OfferReq req = MICROPAY__V1__OFFER_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, x->ch->channel_id};
	req.item = x->item;
	snprintf(x->what, sizeof(x->what), "OfferReq for %s", x->item);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(OFFER_REQ);
	env.offer_req = &req;
	if (!wallet_session_call(x->s, &env, on_offer, x->what))
		key_fail(x, "nothing paid; cannot send the OfferReq");
}

/* ---- resuming a paid offer ---- */

struct paid_search {
	const struct buy_op *x;
	struct wkey_offer *found;
};

static void match_paid(void *arg, const struct wkey_offer *o)
{
	struct paid_search *ps = arg;
	if (ps->found->offer || memcmp(o->channel_id, ps->x->ch->channel_id, MP_ID_LEN) ||
	    strcmp(o->item, ps->x->item))
		return;
	*ps->found = *o;
	ps->found->offer = mp_stmt_copy(o->offer);
	ps->found->custody = o->custody ? mp_stmt_copy(o->custody) : NULL;
}

/* A stored PAID (or PAYING) offer of this item on the channel: resume at the key. */
static bool resume_paid(struct buy_op *x)
{
	struct buy_key *k = x->key;
	struct paid_search ps = {x, &k->o};
	uint8_t pk[MP_PK_LEN];
	if (!wstore_key_offer_each(wallet_of(x)->store, false, WKO_PAID, match_paid, &ps) ||
	    (!k->o.offer &&
	     !wstore_key_offer_each(wallet_of(x)->store, false, WKO_PAYING, match_paid, &ps)) ||
	    !k->o.offer)
		return false;
	if (!x->ch->holder_cert ||
	    wallet_merchant_cert_check(wallet_of(x), x->ch->holder_cert, x->ch->holder, pk) ||
	    mp_offer_open(k->o.offer, pk, &k->offer)) {
		log_warn(
		    "buy %s: a paid offer is stored but cannot be checked against the holder's "
		    "cert; asking for a new offer",
		    x->item);
		wkey_offer_clear(&k->o);
		return false;
	}
	memcpy(x->purchase_id, k->o.order_ref, MP_ID_LEN);
	mp_hex_encode(x->purchase_id, MP_ID_LEN, x->purchase_hex);
	x->size = k->o.size;
	x->chunk_size = k->o.chunk_size;
	x->chunks = x->received = k->o.chunks;
	x->total = k->offer.price;
	x->pinned = k->paid = true;
	log_info("buy %s: offer %s is paid up to %u: asking for its key again", x->item,
		 x->purchase_hex, k->offer.pay_index);
	ask_key(x);
	return true;
}

void buy_key_start(struct buy_op *x)
{
	if (!(x->key = calloc(1, sizeof(*x->key))) ||
	    !(x->retry = evtimer_new(wallet_of(x)->base, on_key_retry, x))) {
		key_fail(x, "out of memory");
		return;
	}
	if (!resume_paid(x))
		ask_offer(x);
}
