/* transfer.offer (docs/transfer.md, "B: transfer.offer"): B's side of receiving a channel. A
 * fresh owner key, chain seed and nonce, a chain of len words, all stored durably before the
 * offer is shown; asking again for the same channel shows the same stored offer.
 *
 *   (none) --transfer.offer: secrets and chain stored--> OFFERED
 *   OFFERED --transfer.accept: bundle verified, channel stored--> the channel ACTIVE in segment s
 *
 * The offer's chain is stored under its own chain_key (not the channel id), so that its
 * relative indices never mix with another chain of the same channel. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "log.h"
#include "store.h"
#include "wallet.h"

#define OFFER_LEN_DEFAULT 10000

struct gen_arg {
	struct wstore *store;
	const uint8_t *chain_key;
};

static int store_checkpoint(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN])
{
	struct gen_arg *g = arg;
	return wstore_checkpoint_put(g->store, g->chain_key, index, w) ? 0 : -1;
}

static uint8_t *pack_offer(const struct wstore_offer *o, const uint8_t owner_pk[MP_PK_LEN],
			   const uint8_t root[MP_HASH_LEN], size_t *len)
{
	Micropay__V1__TransferOffer m = MICROPAY__V1__TRANSFER_OFFER__INIT;
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)o->channel_id};
	m.owner_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)owner_pk};
	m.nonce = (ProtobufCBinaryData){MP_NONCE_LEN, (uint8_t *)o->nonce};
	m.root = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)root};
	m.len = o->len;
	*len = protobuf_c_message_get_packed_size(&m.base);
	uint8_t *buf = malloc(*len ? *len : 1);
	if (buf)
		protobuf_c_message_pack(&m.base, buf);
	return buf;
}

/* Secrets, chain, checkpoints and the offer bytes, durably, in one transaction. */
static const char *create_offer(struct wallet *w, struct wstore_offer *o)
{
	uint8_t chain_seed[MP_SEED_LEN], owner_seed[MP_SK_LEN], root[MP_HASH_LEN];
	struct mp_key owner = {0};
	if (!mp_random_bytes(o->chain_key, MP_ID_LEN) ||
	    !mp_random_bytes(chain_seed, MP_SEED_LEN) || !mp_random_bytes(o->nonce, MP_NONCE_LEN) ||
	    !mp_key_generate(&owner, owner_seed))
		return "the random generator failed";
	const char *why = NULL;
	struct gen_arg g = {w->store, o->chain_key};
	if (!wstore_begin(w->store))
		why = "cannot write to the store";
	else if (mp_chain_generate(w->hasher, chain_seed, o->nonce, o->len, o->interval,
				   store_checkpoint, &g, root) != 0)
		why = "cannot store the chain's checkpoints";
	else if (!(o->offer = pack_offer(o, owner.pk, root, &o->offer_len)))
		why = "out of memory";
	else if (!wstore_offer_drop_accepted(w->store, o->channel_id) ||
		 !wstore_offer_insert(w->store, o, chain_seed, owner_seed) ||
		 !wstore_commit(w->store))
		why = "cannot store the offer";
	if (why)
		wstore_rollback(w->store);
	OPENSSL_cleanse(chain_seed, sizeof(chain_seed));
	OPENSSL_cleanse(owner_seed, sizeof(owner_seed));
	mp_key_free(&owner);
	return why;
}

static void reply_offer(struct mp_admin_req *req, const struct wstore_offer *o)
{
	char *text = mp_b64_encode(o->offer, o->offer_len);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o->channel_id, MP_ID_LEN, hex);
	if (!text) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "transfer.offer: out of memory");
		return;
	}
	mp_admin_reply(req, json_pack("{s:s,s:s,s:I,s:b}", "offer", text, "channel_id", hex, "len",
				      (json_int_t)o->len, "accepted", o->bundle != NULL));
	free(text);
}

/* A channel this wallet gave away may come back to it in a new segment (docs/transfer.md
 * "Receiving a channel back"): an offer for it is made with a fresh key like any other, and
 * replaces an earlier offer of ours for it that was accepted. */
static bool comes_back(const struct wchannel *have)
{
	return have && have->state == WCH_TRANSFERRED_OUT;
}

void wallet_admin_transfer_offer(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	struct wstore_offer o = {.len = OFFER_LEN_DEFAULT, .interval = w->cfg.checkpoint_interval};
	uint64_t len = OFFER_LEN_DEFAULT;
	if (!wallet_param_hex(req, params, "channel_id", o.channel_id, MP_ID_LEN, true, NULL) ||
	    !mp_admin_param_u64(req, params, "len", &len, false))
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o.channel_id, MP_ID_LEN, hex);
	const struct wchannel *have = wallet_channel_find(w, o.channel_id);
	struct wstore_offer stored;
	int found = wstore_offer_get(w->store, o.channel_id, &stored);
	if (found < 0) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "transfer.offer: cannot read the store");
	} else if (found == 1 && !(stored.bundle && comes_back(have))) {
		reply_offer(req, &stored); /* the same offer again, never a new key */
	} else if (have && !comes_back(have)) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "transfer.offer: channel %s is already in this wallet (%s)", hex,
			      wch_state_name(have->state));
	} else if (len < 1 || len > WALLET_N_MAX) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "transfer.offer: len must be 1 .. %u",
			      WALLET_N_MAX);
	} else if (w->stopping) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE, "transfer.offer: walletd is stopping");
	} else {
		o.len = (uint32_t)len;
		const char *why = create_offer(w, &o);
		if (why) {
			log_err("channel %s: transfer.offer: %s", hex, why);
			mp_admin_fail(req, MP_ADMIN_INTERNAL, "transfer.offer: %s", why);
		} else {
			log_info("channel %s: OFFERED (chain of %u words)", hex, o.len);
			reply_offer(req, &o);
		}
		wstore_offer_clear(&o);
	}
	if (found == 1)
		wstore_offer_clear(&stored);
}

static void offer_json(void *arg, const struct wstore_offer *o)
{
	if (o->bundle) /* accepted: the channel lists it */
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(o->channel_id, MP_ID_LEN, hex);
	json_array_append_new(arg, json_pack("{s:s,s:s,s:I,s:I}", "channel_id", hex, "state",
					     "OFFERED", "len", (json_int_t)o->len, "created_at",
					     (json_int_t)o->created_at));
}

json_t *wallet_offers_json(struct wallet *w)
{
	json_t *list = json_array();
	if (list && !wstore_offers_each(w->store, offer_json, list)) {
		json_decref(list);
		return NULL;
	}
	return list;
}
