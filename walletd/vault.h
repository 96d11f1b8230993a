/* The wallet store's encryption (docs/wallet-store.md): a random 256-bit data key seals every
 * secret the store keeps (AES-256-GCM, a fresh 96-bit nonce per value, the secret's identity as
 * associated data); the data key is kept wrapped (AES-256-GCM again) under a key derived from the
 * operator's passphrase by scrypt, with the salt and parameters stored beside it.
 *
 * Pure functions of their inputs (no store, no loop): the store (store_vault.c) and the tests
 * call them. Every key buffer the caller passes is the caller's to wipe. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WVAULT_KEY_LEN	 32
#define WVAULT_SALT_LEN	 16
#define WVAULT_NONCE_LEN 12
#define WVAULT_TAG_LEN	 16
/* A sealed value: nonce | ciphertext | tag. */
#define WVAULT_SEALED_LEN(n) ((n) + WVAULT_NONCE_LEN + WVAULT_TAG_LEN)
/* The stored vault record: version | log2 N | r (be32) | p (be32) | salt | wrapped data key. */
#define WVAULT_RECORD_LEN (1 + 1 + 4 + 4 + WVAULT_SALT_LEN + WVAULT_SEALED_LEN(WVAULT_KEY_LEN))
/* The passphrase read from [wallet] passphrase_file: at most this many bytes. */
#define WVAULT_PASSPHRASE_MAX 1024

/* scrypt's cost. The defaults (N = 2^17, r = 8, p = 1: 128 MiB, about 0.4 s on an idle core
 * and 1.5 .. 2 s on this project's loaded build machine) are docs/wallet-store.md's choice; the
 * tests use a small N. */
struct wvault_kdf {
	uint8_t log2_n; /* 10 .. 20 */
	uint32_t r, p;
	uint8_t salt[WVAULT_SALT_LEN];
};
#define WVAULT_LOG2_N_DEFAULT 17
#define WVAULT_R_DEFAULT      8
#define WVAULT_P_DEFAULT      1

/* What a sealed secret is: the associated data names it, so that a value copied to another row
 * (another channel, another chain, another checkpoint index, another column) does not open. */
enum wvault_kind {
	WVAULT_ACCOUNT_SEED = 1,
	WVAULT_CHAIN_SEED = 2,
	WVAULT_OWNER_SEED = 3,
	WVAULT_CHECKPOINT = 4,
};
struct wvault_ad {
	uint8_t bytes[4 + 1 + 16 + 16 + 4];
};
/* channel_id and chain_key may be NULL (zeros: the account seed has neither). */
void wvault_ad_make(struct wvault_ad *ad, enum wvault_kind kind, const uint8_t *channel_id,
		    const uint8_t *chain_key, uint32_t index);

/* Default parameters with a fresh random salt; false if the generator failed. */
bool wvault_kdf_new(struct wvault_kdf *kdf, uint8_t log2_n);
/* The key-encryption key from a passphrase (scrypt through EVP_KDF). Slow by design: never on an
 * event loop that serves. False (err set) on bad parameters or when OpenSSL fails. */
bool wvault_derive(const struct wvault_kdf *kdf, const char *passphrase, size_t len,
		   uint8_t kek[WVAULT_KEY_LEN], char *err, size_t errlen);

/* The record for a data key wrapped under kek (the KDF parameters are its associated data). */
bool wvault_wrap(const struct wvault_kdf *kdf, const uint8_t kek[WVAULT_KEY_LEN],
		 const uint8_t dk[WVAULT_KEY_LEN], uint8_t record[WVAULT_RECORD_LEN]);
/* The KDF parameters of a stored record; false if it is not a record this version reads. */
bool wvault_record_kdf(const uint8_t *record, size_t len, struct wvault_kdf *kdf);
/* The data key from a record: false if kek is not the one it was wrapped under (a wrong
 * passphrase) or the record was altered, GCM's tag tells which (both the same to us). */
bool wvault_unwrap(const uint8_t record[WVAULT_RECORD_LEN], const uint8_t kek[WVAULT_KEY_LEN],
		   uint8_t dk[WVAULT_KEY_LEN]);

/* Seal len bytes into out (WVAULT_SEALED_LEN(len) bytes) with a fresh random nonce. */
bool wvault_seal(const uint8_t dk[WVAULT_KEY_LEN], const struct wvault_ad *ad, const uint8_t *in,
		 size_t len, uint8_t *out);
/* Open a sealed value of sealed_len bytes into out (sealed_len - 28 bytes); false if it does
 * not verify (altered, another row's, or another key's). out is wiped on failure. */
bool wvault_open(const uint8_t dk[WVAULT_KEY_LEN], const struct wvault_ad *ad, const uint8_t *in,
		 size_t sealed_len, uint8_t *out);
