/* Sealed goods for key release (docs/goods.md "Key release"): an item is sealed chunk by chunk
 * with AES-256-GCM (OpenSSL EVP) under one fresh 32-byte key per offer. Chunk k (0-based) uses
 * the 12-byte nonce prefix[8] || be32(k), no associated data, and is carried as its ciphertext
 * followed by its 16-byte tag, so a chunk of len bytes seals to len + 16. A nonce is never
 * reused under a key: every offer draws its own key, and k differs per chunk. The nonce prefix is
 * derived from the key (mp_sealed_prefix), and the Offer's ciphertext_hash is a Merkle tree over
 * the sealed chunks (sealed_tree.h), so a key that matches key_hash but does not open a chunk
 * can be proven to the broker.
 *
 * Thread-safe: nothing is shared; merchantd seals on its worker pool, walletd opens on its. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_SEAL_KEY_LEN	   32
#define MP_SEAL_PREFIX_LEN 8
#define MP_SEAL_TAG_LEN	   16

/* Seal chunk k of len bytes (in) into out (len + MP_SEAL_TAG_LEN bytes; in and out may not
 * overlap). False on an OpenSSL failure (logged). */
bool mp_seal_chunk(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t prefix[MP_SEAL_PREFIX_LEN],
		   uint32_t k, const uint8_t *in, size_t len, uint8_t *out);

/* Open sealed chunk k (in: sealed_len >= MP_SEAL_TAG_LEN bytes, ciphertext then tag) into out
 * (sealed_len - MP_SEAL_TAG_LEN bytes). False when the tag does not verify (wrong key, chunk,
 * prefix or bytes) or on an OpenSSL failure; out's contents are then undefined. */
bool mp_open_chunk(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t prefix[MP_SEAL_PREFIX_LEN],
		   uint32_t k, const uint8_t *in, size_t sealed_len, uint8_t *out);

/* The nonce prefix of an offer sealed under key: the first 8 bytes of
 * SHA-256("MPAY1-SEALED-PREFIX" || key). Derived, not drawn, so the key alone fixes how every
 * chunk opens. */
void mp_sealed_prefix(const uint8_t key[MP_SEAL_KEY_LEN], uint8_t prefix[MP_SEAL_PREFIX_LEN]);
