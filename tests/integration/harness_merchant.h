/* Acting as a merchant towards the broker in integration tests: a merchant's identity from a
 * deploy/mpnet folder (its Ed25519 key and its TLS certificate), signed Redeems built claim by
 * claim, and a wire client that sends a request and reads its answer later. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

struct tmerchant {
	char name[16]; /* its daemon's name in the network: "m1", ... */
	uint8_t mid[MP_ID_LEN];
	char mid_hex[MP_HEX_ID_LEN + 1];
	struct mp_key key;
	char cert[700], tls_key[700];
};

/* Merchant NAME of the network (made by `mpnet merchant DIR NAME`, or m1). */
void tmerchant_load(struct tmerchant *tm, const struct net *n, const char *name);
void tmerchant_free(struct tmerchant *tm);
/* Mutual TLS to the broker with the merchant's certificate; fails the test if impossible. */
void tmerchant_connect(const struct tmerchant *tm, struct wire *w, const char *broker_ep,
		       const char *ca);

/* A funded test wallet (registered here) with a channel of n units held by merchant NAME,
 * issued at the broker and opened on w (a fresh connection to NAME). */
void tchannel_opened(const struct net *net, const char *name, struct twallet *tw,
		     struct tchannel *ch, uint32_t n, struct wire *w);
/* The row of m1's admin listing `method` (its array `method`, e.g. "purchases") whose field
 * `field` is the hex of the 16 bytes id (json, to free); the test fails if none is. */
json_t *listed_row(const struct net *n, const char *method, const char *field,
		   const uint8_t id[16]);
/* ChunkReq{channel id, item (NULL: none), purchase_id (16 bytes, or NULL), chunk} on w: its
 * ChunkResp (the test fails without one). */
MpEnvelope *chunk_req_call(struct wire *w, const uint8_t id[MP_ID_LEN], const char *item,
			   const uint8_t *purchase, uint32_t chunk);
/* The same with units of `unit` minor units (tchannel_opened: 1). */
void tchannel_opened_unit(const struct net *net, const char *name, struct twallet *tw,
			  struct tchannel *ch, uint32_t n, uint64_t unit, struct wire *w);

struct tclaim {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t index;
	uint8_t w[MP_HASH_LEN];
};
/* A Redeem of these claims (epoch 0, segment 0) signed with the merchant's key. */
MpSigned *tmerchant_redeem(const struct tmerchant *tm, const uint8_t redeem_id[MP_ID_LEN],
			   const struct tclaim *claims, size_t n);
/* A Redeem by tm of count claims at `index` of ch with random words: each costs `index`
 * hashes from the root and ends BAD_CHAIN (charged to tm's bad-chain budget). */
MpSigned *junk_redeem(const struct tmerchant *tm, const struct tchannel *ch, uint32_t index,
		      size_t count);
/* Send a RedeemReq carrying stmt and wait for its RedeemResp (fails the test otherwise). */
MpEnvelope *redeem_call(struct wire *w, const MpSigned *stmt);

/* Send env (version and request_id set here) without waiting, whatever its size; false on
 * failure. */
bool wire_send(struct wire *w, MpEnvelope *env);
/* The next envelope on the connection; NULL on EOF or timeout. */
MpEnvelope *wire_recv(struct wire *w);
/* Receive timeout of the connection (wire_connect sets 10 s). */
void wire_set_timeout(struct wire *w, int seconds);
