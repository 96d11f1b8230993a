#include "sig.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sig_token.h"
#include "util.h"

bool mp_key_from_seed(struct mp_key *key, const uint8_t seed[MP_SK_LEN])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, MP_SK_LEN);
	if (!pkey)
		return false;
	size_t pklen = MP_PK_LEN;
	if (EVP_PKEY_get_raw_public_key(pkey, key->pk, &pklen) != 1 || pklen != MP_PK_LEN) {
		EVP_PKEY_free(pkey);
		return false;
	}
	key->pkey = pkey;
	key->token = NULL;
	return true;
}

bool mp_key_generate(struct mp_key *key, uint8_t seed_out[MP_SK_LEN])
{
	if (!mp_random_bytes(seed_out, MP_SK_LEN))
		return false;
	return mp_key_from_seed(key, seed_out);
}

bool mp_key_load(struct mp_key *key, const char *path, char *err, size_t errlen)
{
	if (mp_token_uri(path)) {
		key->pkey = NULL;
		key->token = mp_token_key_open(path, key->pk, err, errlen);
		return key->token != NULL;
	}
	char hex[2 * MP_SK_LEN + 2] = {0};
	if (mp_read_secret_line(path, hex, sizeof(hex), err, errlen) < 0)
		return false;
	uint8_t seed[MP_SK_LEN];
	bool decoded = mp_hex_decode(hex, seed, sizeof(seed));
	OPENSSL_cleanse(hex, sizeof(hex));
	if (!decoded) {
		snprintf(err, errlen, "%s: expected 64 hex digits (an Ed25519 seed)", path);
		return false;
	}
	bool ok = mp_key_from_seed(key, seed);
	OPENSSL_cleanse(seed, sizeof(seed));
	if (!ok)
		snprintf(err, errlen, "%s: OpenSSL refused the Ed25519 seed", path);
	return ok;
}

bool mp_key_save_seed(const uint8_t seed[MP_SK_LEN], const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	char hex[2 * MP_SK_LEN + 2];
	mp_hex_encode(seed, MP_SK_LEN, hex);
	hex[2 * MP_SK_LEN] = '\n';
	bool ok = write(fd, hex, 2 * MP_SK_LEN + 1) == 2 * MP_SK_LEN + 1 && fsync(fd) == 0;
	if (!ok)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	close(fd);
	OPENSSL_cleanse(hex, sizeof(hex));
	return ok;
}

void mp_key_free(struct mp_key *key)
{
	EVP_PKEY_free(key->pkey); /* OpenSSL wipes the private key it holds */
	mp_token_key_close(key->token);
	OPENSSL_cleanse(key, sizeof(*key));
}

bool mp_sign(const struct mp_key *key, const uint8_t *msg, size_t len, uint8_t sig[MP_SIG_LEN])
{
	if (key->token)
		return mp_token_sign(key->token, msg, len, sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return false;
	size_t siglen = MP_SIG_LEN;
	bool ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
		  EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == MP_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}

bool mp_verify(const uint8_t pk[MP_PK_LEN], const uint8_t *msg, size_t len,
	       const uint8_t sig[MP_SIG_LEN])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pk, MP_PK_LEN);
	if (!pkey)
		return false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig, MP_SIG_LEN, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

void mp_key_id(const uint8_t pk[MP_PK_LEN], uint8_t out[MP_KEY_ID_LEN])
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	SHA256(pk, MP_PK_LEN, digest);
	memcpy(out, digest, MP_KEY_ID_LEN);
}
