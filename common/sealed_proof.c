/* Checking a BadKeyProof (sealed_proof.h). */
#include "sealed_proof.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "sealed.h"
#include "sealed_tree.h"

static bool fields_ok(const Micropay__V1__BadKeyProof *p)
{
	if (p->key.len != MP_SEAL_KEY_LEN || p->chunk_index >= p->chunk_count ||
	    p->sealed_chunk.len < MP_SEAL_TAG_LEN || p->sealed_chunk.len > MP_PROOF_CHUNK_MAX ||
	    p->n_path > MP_SEALED_PATH_MAX)
		return false;
	for (size_t i = 0; i < p->n_path; i++)
		if (p->path[i].len != MP_SEALED_HASH_LEN)
			return false;
	return true;
}

static bool in_offer(const Micropay__V1__BadKeyProof *p, const uint8_t ciphertext_hash[32])
{
	uint8_t(*path)[MP_SEALED_HASH_LEN] = calloc(p->n_path + 1, MP_SEALED_HASH_LEN);
	if (!path)
		return false;
	for (size_t i = 0; i < p->n_path; i++)
		memcpy(path[i], p->path[i].data, MP_SEALED_HASH_LEN);
	bool ok = mp_sealed_path_check(ciphertext_hash, p->chunk_count, p->chunk_index,
				       p->sealed_chunk.data, p->sealed_chunk.len,
				       (const uint8_t(*)[MP_SEALED_HASH_LEN])path, p->n_path);
	free(path);
	return ok;
}

/* False also when memory is short: a proof is never taken on a failure. */
static bool key_opens(const Micropay__V1__BadKeyProof *p, bool *opens)
{
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	uint8_t *plain = malloc(p->sealed_chunk.len - MP_SEAL_TAG_LEN + 1);
	if (!plain)
		return false;
	mp_sealed_prefix(p->key.data, prefix);
	*opens = mp_open_chunk(p->key.data, prefix, p->chunk_index, p->sealed_chunk.data,
			       p->sealed_chunk.len, plain);
	OPENSSL_cleanse(plain, p->sealed_chunk.len - MP_SEAL_TAG_LEN);
	free(plain);
	return true;
}

enum mp_bad_key_verdict mp_bad_key_check(const Micropay__V1__BadKeyProof *p,
					 const uint8_t key_hash[32],
					 const uint8_t ciphertext_hash[32])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	if (!fields_ok(p))
		return MP_BAD_KEY_MALFORMED;
	SHA256(p->key.data, p->key.len, h);
	if (CRYPTO_memcmp(h, key_hash, sizeof(h)))
		return MP_BAD_KEY_NOT_THE_KEY;
	if (!in_offer(p, ciphertext_hash))
		return MP_BAD_KEY_NOT_IN_OFFER;
	bool opens = true;
	if (!key_opens(p, &opens))
		return MP_BAD_KEY_MALFORMED;
	return opens ? MP_BAD_KEY_OPENS : MP_BAD_KEY_PROVEN;
}

const char *mp_bad_key_verdict_text(enum mp_bad_key_verdict v)
{
	switch (v) {
	case MP_BAD_KEY_PROVEN:
		return "the Offer's key does not open the chunk: proven";
	case MP_BAD_KEY_MALFORMED:
		return "bad_key: a 32-byte key, chunk_index < chunk_count, a sealed chunk of 16 .. "
		       "524304 bytes and 32-byte path hashes (at most 32) required";
	case MP_BAD_KEY_NOT_THE_KEY:
		return "bad_key: SHA-256(key) is not the Offer's key_hash";
	case MP_BAD_KEY_NOT_IN_OFFER:
		return "bad_key: the chunk and path do not hash to the Offer's ciphertext_hash";
	case MP_BAD_KEY_OPENS:
		return "bad_key: the key opens that chunk; nothing to dispute";
	}
	return "bad_key: ?";
}
