/* The last step of a key-release buy (buy_key.c): OUT.sealed, the ciphertext the wallet
 * fetched and checked against the Offer, opened chunk by chunk with the key (each chunk's GCM
 * tag verified) into OUT.part, flushed, renamed to OUT, and OUT.sealed removed; all of it on
 * a worker thread (the loop never waits for the disk or the cipher).
 *
 *   QUEUED --worker: every chunk opened and written, fsync, rename--> done(NULL)
 *   QUEUED --a tag that does not verify, a short read, a write error--> done(why): OUT.part
 *   removed, OUT.sealed kept (the key and the ciphertext stay, so it can be tried again)
 *   QUEUED --chunk k's tag does not verify under the key--> also a BadKeyProof built from
 *   OUT.sealed (every chunk's leaf hash, chunk k and its audit path: common/sealed_proof.h),
 *   packed, passed to done for the broker
 * The nonce prefix is the key's (mp_sealed_prefix), whatever the merchant said. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "sealed.h"

struct mp_workers;

struct buy_unseal_spec {
	char out[4096]; /* OUT; the ciphertext is OUT.sealed */
	bool overwrite;
	uint8_t key[MP_SEAL_KEY_LEN];
	uint64_t size;
	uint32_t chunk_size, chunks;
};

/* err NULL: OUT written. proof (proof_len bytes, the packed BadKeyProof): set only when a chunk
 * does not open under the key. */
typedef void (*buy_unseal_fn)(void *arg, const char *err, const uint8_t *proof, size_t proof_len);

/* Queue the job; done(arg, ...) on the loop afterwards. False if it cannot be queued. */
bool buy_unseal(struct mp_workers *workers, const struct buy_unseal_spec *spec, buy_unseal_fn done,
		void *arg);
