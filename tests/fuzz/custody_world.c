#include "custody_world.h"

#include <stdlib.h>
#include <string.h>

static bool make_key(struct mp_key *k, uint8_t fill)
{
	uint8_t seed[MP_SK_LEN];
	memset(seed, fill, sizeof(seed));
	return mp_key_from_seed(k, seed);
}

/* words[k] for k = 0..len of the chain of seed fill and nonce. */
static void make_chain(struct mp_hasher *h, uint8_t fill, const uint8_t nonce[MP_NONCE_LEN],
		       uint32_t len, uint8_t (*words)[MP_HASH_LEN])
{
	uint8_t seed[MP_SEED_LEN];
	memset(seed, fill, sizeof(seed));
	mp_chain_top(h, seed, nonce, words[len]);
	for (uint32_t k = len; k > 0; k--)
		mp_chain_link(h, nonce, k, words[k], words[k - 1]);
}

bool world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->hasher = mp_hasher_new();
	bool ok = w->hasher && make_key(&w->broker, 0xb0);
	for (int m = 1; m <= WORLD_MERCHANTS; m++) {
		ok = ok && make_key(&w->merchant[m], (uint8_t)(0x30 + m));
		memset(w->mid[m], 0xa0 + m, MP_ID_LEN);
	}
	for (int o = 0; o < WORLD_OWNERS; o++)
		ok = ok && make_key(&w->owner[o], (uint8_t)(0x70 + o));
	if (!ok)
		return false;
	memset(w->channel_id, 0xc1, MP_ID_LEN);
	memset(w->cert_hash, 0xce, MP_HASH_LEN);
	memset(w->nonce0, 0x11, MP_NONCE_LEN);
	memset(w->nonce1, 0x22, MP_NONCE_LEN);
	make_chain(w->hasher, 0x01, w->nonce0, WORLD_N, w->w0);
	make_chain(w->hasher, 0x02, w->nonce1, WORLD_NEW_LEN, w->w1);
	w->seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = WORLD_N};
	memcpy(w->seg0.nonce, w->nonce0, MP_NONCE_LEN);
	memcpy(w->seg0.root, w->w0[0], MP_HASH_LEN);
	memcpy(w->seg0.head, w->cert_hash, MP_HASH_LEN);
	memcpy(w->seg0.owner_pk, w->owner[0].pk, MP_PK_LEN);
	w->ch = (struct mp_custody_channel){.n = WORLD_N,
					    .key_valid_until = WORLD_KEY_VALID,
					    .segments = &w->seg0,
					    .n_segments = 1};
	memcpy(w->ch.channel_id, w->channel_id, MP_ID_LEN);
	memcpy(w->ch.cert_hash, w->cert_hash, MP_HASH_LEN);
	memcpy(w->ch.holder0, w->mid[1], MP_ID_LEN);
	memcpy(w->ch.broker_pk, w->broker.pk, MP_PK_LEN);
	return true;
}

void world_free(struct world *w)
{
	for (int m = 1; m <= WORLD_MERCHANTS; m++)
		mp_key_free(&w->merchant[m]);
	for (int o = 0; o < WORLD_OWNERS; o++)
		mp_key_free(&w->owner[o]);
	mp_key_free(&w->broker);
	mp_hasher_free(w->hasher);
}

bool world_key(void *arg, const uint8_t merchant_id[MP_ID_LEN], uint64_t valid_until,
	       uint8_t pk[MP_PK_LEN])
{
	const struct world *w = arg;
	for (int m = 1; m <= WORLD_MERCHANTS; m++)
		if (memcmp(merchant_id, w->mid[m], MP_ID_LEN) == 0) {
			memcpy(pk, w->merchant[m].pk, MP_PK_LEN);
			return true;
		}
	return false;
}

MpSigned *world_sign(const struct mp_key *key, uint32_t type, const uint8_t *body, size_t len)
{
	uint8_t *msg = malloc(6 + len);
	if (!msg)
		return NULL;
	memcpy(msg, "MPAY1", 5);
	msg[5] = (uint8_t)type;
	memcpy(msg + 6, body, len);
	uint8_t sig[MP_SIG_LEN];
	bool ok = mp_sign(key, msg, 6 + len, sig);
	free(msg);
	return ok ? mp_stmt_from_parts(type, body, len, key->pk, sig) : NULL;
}
