/* Test-only fault injection (docs/operations.md, "Fault injection (tests only)"): the
 * environment variable MP_FAULT, read once at start-up into struct merchant's `fault`, names a
 * point where merchantd ends itself with _exit(MP_FAULT_EXIT) to simulate a crash there, or a
 * dishonest seller's behaviour (the key-release faults). Unset
 * (the production case) nothing ever happens. */
#pragma once
#include <stdbool.h>

#define MP_FAULT_EXIT 77

enum mp_fault {
	MP_FAULT_NONE = 0,
	/* right after the batch holding a signed Handoff committed, before it is answered */
	MP_FAULT_HANDOFF_AFTER_COMMIT,
	/* right after the batch holding a signed Cap committed, before the TransferResp is sent */
	MP_FAULT_CAP_AFTER_COMMIT,
	/* right after the batch holding a signed Close committed, before it is answered */
	MP_FAULT_CLOSE_AFTER_COMMIT,
	/* a dishonest seller: every sealed chunk of an offer is sent with one byte flipped, so it
	 * does not match the Offer's ciphertext_hash */
	MP_FAULT_OFFER_TAMPER_CHUNK,
	/* a seller that withholds keys: KeyReq for a paid offer is answered INTERNAL, no key */
	MP_FAULT_KEY_WITHHOLD,
	/* a seller whose key does not open its goods: chunks are sealed under SHA-256(K) while
	 * the Offer's key_hash and every released key are K's (offer_sealing_copy) */
	MP_FAULT_OFFER_WRONG_KEY,
};

/* MP_FAULT from the environment; false (and the reason logged) for an unknown name. */
bool mp_fault_from_env(enum mp_fault *out);
