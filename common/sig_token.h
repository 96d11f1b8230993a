/* Ed25519 signing keys held in a PKCS#11 token (docs/keys.md): the daemon names the key by a
 * PKCS#11 URI (RFC 7512) where a key file would go, and never holds the private key; every
 * signature is made by the token (CKM_EDDSA). p11-kit parses the URI and loads the module.
 *
 * URI: pkcs11:token=LABEL;object=KEY_LABEL[;id=%01]?module-path=/path/module.so&pin-source=FILE
 * module-path is required (the token's PKCS#11 library); the user PIN is read from pin-source,
 * a file with no group or other permission (pin-value is refused: a URI ends up in logs and
 * process listings). The token must hold the private key and its public key object with the
 * same label/id; the public key is read from CKA_EC_POINT.
 *
 * Opening: parse URI -> load + initialise module -> find the one token matching the URI ->
 * open a session -> log in with the PIN -> find the one private key and its public key ->
 * sign a probe and verify it with the public key (a mismatched pair is refused at start). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sig.h"

#define MP_TOKEN_URI_PREFIX "pkcs11:"

struct mp_token_key;

/* True when `name` is a PKCS#11 URI rather than a key file path. */
bool mp_token_uri(const char *name);
/* Opens the key named by uri and writes its public key; NULL with a message in err. */
struct mp_token_key *mp_token_key_open(const char *uri, uint8_t pk[MP_PK_LEN], char *err,
				       size_t errlen);
/* Signs msg in the token; safe to call from several threads (one session, serialised). */
bool mp_token_sign(struct mp_token_key *k, const uint8_t *msg, size_t len, uint8_t sig[MP_SIG_LEN]);
void mp_token_key_close(struct mp_token_key *k);
