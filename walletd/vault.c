/* AES-256-GCM and scrypt for the wallet store (vault.h), through OpenSSL 3's EVP interfaces. */
#include "vault.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define RECORD_VERSION 1
#define RECORD_KDF_LEN (1 + 1 + 4 + 4 + WVAULT_SALT_LEN)
/* The memory scrypt may use: 128 * r * N bytes and some; 2^20 * 8 * 128 = 1 GiB at most. */
#define SCRYPT_MAXMEM ((uint64_t)1 << 31)

static const uint8_t ad_magic[4] = {'m', 'p', 'w', '1'};

void wvault_ad_make(struct wvault_ad *ad, enum wvault_kind kind, const uint8_t *channel_id,
		    const uint8_t *chain_key, uint32_t index)
{
	memset(ad, 0, sizeof(*ad));
	memcpy(ad->bytes, ad_magic, 4);
	ad->bytes[4] = (uint8_t)kind;
	if (channel_id)
		memcpy(ad->bytes + 5, channel_id, 16);
	if (chain_key)
		memcpy(ad->bytes + 21, chain_key, 16);
	mp_put_be32(ad->bytes + 37, index);
}

bool wvault_kdf_new(struct wvault_kdf *kdf, uint8_t log2_n)
{
	kdf->log2_n = log2_n;
	kdf->r = WVAULT_R_DEFAULT;
	kdf->p = WVAULT_P_DEFAULT;
	return mp_random_bytes(kdf->salt, WVAULT_SALT_LEN);
}

static bool kdf_sane(const struct wvault_kdf *kdf)
{
	return kdf->log2_n >= 10 && kdf->log2_n <= 20 && kdf->r >= 1 && kdf->r <= 32 &&
	       kdf->p >= 1 && kdf->p <= 16;
}

bool wvault_derive(const struct wvault_kdf *kdf, const char *passphrase, size_t len,
		   uint8_t kek[WVAULT_KEY_LEN], char *err, size_t errlen)
{
	if (!kdf_sane(kdf)) {
		snprintf(err, errlen, "scrypt parameters out of range (log2 N %u, r %u, p %u)",
			 kdf->log2_n, kdf->r, kdf->p);
		return false;
	}
	uint64_t n = (uint64_t)1 << kdf->log2_n, maxmem = SCRYPT_MAXMEM;
	uint32_t r = kdf->r, p = kdf->p;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)passphrase, len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)kdf->salt,
					      WVAULT_SALT_LEN),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
	    OSSL_PARAM_construct_end(),
	};
	EVP_KDF *alg = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	EVP_KDF_CTX *ctx = alg ? EVP_KDF_CTX_new(alg) : NULL;
	bool ok = ctx && EVP_KDF_derive(ctx, kek, WVAULT_KEY_LEN, params) == 1;
	EVP_KDF_CTX_free(ctx); /* clears its copy of the passphrase */
	EVP_KDF_free(alg);
	if (!ok) {
		OPENSSL_cleanse(kek, WVAULT_KEY_LEN);
		snprintf(err, errlen, "scrypt failed (out of memory? N = 2^%u, r %u)", kdf->log2_n,
			 kdf->r);
	}
	return ok;
}

/* One AES-256-GCM operation: enc seals in (len) to out, else opens in to out with the tag. */
static bool gcm(bool enc, const uint8_t key[WVAULT_KEY_LEN], const uint8_t nonce[WVAULT_NONCE_LEN],
		const uint8_t *ad, size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
		uint8_t tag[WVAULT_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	bool ok =
	    ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc ? 1 : 0) == 1 &&
	    EVP_CipherUpdate(ctx, NULL, &n, ad, (int)ad_len) == 1 &&
	    EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1 && (size_t)n == len &&
	    (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, WVAULT_TAG_LEN, tag) == 1) &&
	    EVP_CipherFinal_ex(ctx, out + len, &fin) == 1 && fin == 0 &&
	    (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, WVAULT_TAG_LEN, tag) == 1);
	EVP_CIPHER_CTX_free(ctx); /* clears the key schedule */
	if (!ok)
		OPENSSL_cleanse(out, len);
	return ok;
}

static bool seal_raw(const uint8_t key[WVAULT_KEY_LEN], const uint8_t *ad, size_t ad_len,
		     const uint8_t *in, size_t len, uint8_t *out)
{
	return mp_random_bytes(out, WVAULT_NONCE_LEN) &&
	       gcm(true, key, out, ad, ad_len, in, len, out + WVAULT_NONCE_LEN,
		   out + WVAULT_NONCE_LEN + len);
}

static bool open_raw(const uint8_t key[WVAULT_KEY_LEN], const uint8_t *ad, size_t ad_len,
		     const uint8_t *in, size_t sealed_len, uint8_t *out)
{
	if (sealed_len < WVAULT_SEALED_LEN(0))
		return false;
	size_t len = sealed_len - WVAULT_SEALED_LEN(0);
	uint8_t tag[WVAULT_TAG_LEN];
	memcpy(tag, in + WVAULT_NONCE_LEN + len, WVAULT_TAG_LEN);
	return gcm(false, key, in, ad, ad_len, in + WVAULT_NONCE_LEN, len, out, tag);
}

static void record_kdf_put(const struct wvault_kdf *kdf, uint8_t *p)
{
	p[0] = RECORD_VERSION;
	p[1] = kdf->log2_n;
	mp_put_be32(p + 2, kdf->r);
	mp_put_be32(p + 6, kdf->p);
	memcpy(p + 10, kdf->salt, WVAULT_SALT_LEN);
}

bool wvault_wrap(const struct wvault_kdf *kdf, const uint8_t kek[WVAULT_KEY_LEN],
		 const uint8_t dk[WVAULT_KEY_LEN], uint8_t record[WVAULT_RECORD_LEN])
{
	record_kdf_put(kdf, record);
	return seal_raw(kek, record, RECORD_KDF_LEN, dk, WVAULT_KEY_LEN, record + RECORD_KDF_LEN);
}

bool wvault_record_kdf(const uint8_t *record, size_t len, struct wvault_kdf *kdf)
{
	if (len != WVAULT_RECORD_LEN || record[0] != RECORD_VERSION)
		return false;
	kdf->log2_n = record[1];
	kdf->r = mp_get_be32(record + 2);
	kdf->p = mp_get_be32(record + 6);
	memcpy(kdf->salt, record + 10, WVAULT_SALT_LEN);
	return kdf_sane(kdf);
}

bool wvault_unwrap(const uint8_t record[WVAULT_RECORD_LEN], const uint8_t kek[WVAULT_KEY_LEN],
		   uint8_t dk[WVAULT_KEY_LEN])
{
	return open_raw(kek, record, RECORD_KDF_LEN, record + RECORD_KDF_LEN,
			WVAULT_SEALED_LEN(WVAULT_KEY_LEN), dk);
}

bool wvault_seal(const uint8_t dk[WVAULT_KEY_LEN], const struct wvault_ad *ad, const uint8_t *in,
		 size_t len, uint8_t *out)
{
	return seal_raw(dk, ad->bytes, sizeof(ad->bytes), in, len, out);
}

bool wvault_open(const uint8_t dk[WVAULT_KEY_LEN], const struct wvault_ad *ad, const uint8_t *in,
		 size_t sealed_len, uint8_t *out)
{
	return open_raw(dk, ad->bytes, sizeof(ad->bytes), in, sealed_len, out);
}
