/* Ed25519 keys and signatures (OpenSSL EVP, RFC 8032). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_PK_LEN     32
#define MP_SK_LEN     32
#define MP_SIG_LEN    64
#define MP_KEY_ID_LEN 8

struct mp_token_key;

/* A signing key: in memory (pkey), or in a PKCS#11 token (token; common/sig_token.h). */
struct mp_key {
	void *pkey; /* EVP_PKEY */
	struct mp_token_key *token;
	uint8_t pk[MP_PK_LEN];
};

bool mp_key_from_seed(struct mp_key *key, const uint8_t seed[MP_SK_LEN]);
bool mp_key_generate(struct mp_key *key, uint8_t seed_out[MP_SK_LEN]);
/* Key files hold the 32-byte seed as 64 hex digits; they are written with mode 0600. A name
 * starting "pkcs11:" is a PKCS#11 URI instead: the key stays in the token (sig_token.h). */
bool mp_key_load(struct mp_key *key, const char *path, char *err, size_t errlen);
bool mp_key_save_seed(const uint8_t seed[MP_SK_LEN], const char *path, char *err, size_t errlen);
void mp_key_free(struct mp_key *key);

bool mp_sign(const struct mp_key *key, const uint8_t *msg, size_t len, uint8_t sig[MP_SIG_LEN]);
bool mp_verify(const uint8_t pk[MP_PK_LEN], const uint8_t *msg, size_t len,
	       const uint8_t sig[MP_SIG_LEN]);

/* broker_key_id: the first 8 bytes of SHA256(pk). */
void mp_key_id(const uint8_t pk[MP_PK_LEN], uint8_t out[MP_KEY_ID_LEN]);
