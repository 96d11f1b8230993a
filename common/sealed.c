#include "sealed.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "log.h"

#define NONCE_LEN (MP_SEAL_PREFIX_LEN + 4)

static void chunk_nonce(const uint8_t prefix[MP_SEAL_PREFIX_LEN], uint32_t k,
			uint8_t nonce[NONCE_LEN])
{
	memcpy(nonce, prefix, MP_SEAL_PREFIX_LEN);
	nonce[8] = (uint8_t)(k >> 24);
	nonce[9] = (uint8_t)(k >> 16);
	nonce[10] = (uint8_t)(k >> 8);
	nonce[11] = (uint8_t)k;
}

/* An AES-256-GCM context set up for chunk k, encrypting (enc = 1) or decrypting (0). */
static EVP_CIPHER_CTX *chunk_ctx(const uint8_t key[MP_SEAL_KEY_LEN],
				 const uint8_t prefix[MP_SEAL_PREFIX_LEN], uint32_t k, int enc)
{
	uint8_t nonce[NONCE_LEN];
	chunk_nonce(prefix, k, nonce);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx || EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* EVP lengths are int: a chunk is at most 512 KiB (docs/goods.md), far below. */
static bool len_fits(size_t len)
{
	return len <= (size_t)INT32_MAX - MP_SEAL_TAG_LEN;
}

bool mp_seal_chunk(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t prefix[MP_SEAL_PREFIX_LEN],
		   uint32_t k, const uint8_t *in, size_t len, uint8_t *out)
{
	if (!len_fits(len))
		return false;
	EVP_CIPHER_CTX *ctx = chunk_ctx(key, prefix, k, 1);
	int n = 0, fin = 0;
	bool ok = ctx && (len == 0 || EVP_EncryptUpdate(ctx, out, &n, in, (int)len) == 1) &&
		  EVP_EncryptFinal_ex(ctx, out + n, &fin) == 1 && (size_t)(n + fin) == len &&
		  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, MP_SEAL_TAG_LEN, out + len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		log_err("sealed: AES-256-GCM sealing of chunk %u failed", k);
	return ok;
}

bool mp_open_chunk(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t prefix[MP_SEAL_PREFIX_LEN],
		   uint32_t k, const uint8_t *in, size_t sealed_len, uint8_t *out)
{
	if (sealed_len < MP_SEAL_TAG_LEN || !len_fits(sealed_len))
		return false;
	size_t len = sealed_len - MP_SEAL_TAG_LEN;
	uint8_t tag[MP_SEAL_TAG_LEN];
	memcpy(tag, in + len, MP_SEAL_TAG_LEN);
	EVP_CIPHER_CTX *ctx = chunk_ctx(key, prefix, k, 0);
	int n = 0, fin = 0;
	bool ok = ctx && (len == 0 || EVP_DecryptUpdate(ctx, out, &n, in, (int)len) == 1) &&
		  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, MP_SEAL_TAG_LEN, tag) == 1 &&
		  EVP_DecryptFinal_ex(ctx, out + n, &fin) == 1 && (size_t)(n + fin) == len;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

void mp_sealed_prefix(const uint8_t key[MP_SEAL_KEY_LEN], uint8_t prefix[MP_SEAL_PREFIX_LEN])
{
	static const char label[] = "MPAY1-SEALED-PREFIX";
	uint8_t in[sizeof(label) - 1 + MP_SEAL_KEY_LEN], h[SHA256_DIGEST_LENGTH];
	memcpy(in, label, sizeof(label) - 1);
	memcpy(in + sizeof(label) - 1, key, MP_SEAL_KEY_LEN);
	SHA256(in, sizeof(in), h);
	memcpy(prefix, h, MP_SEAL_PREFIX_LEN);
	OPENSSL_cleanse(in, sizeof(in));
}
