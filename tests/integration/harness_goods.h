/* Goods files for the buying suites (buy, buy_key, offer): a deterministic file to sell, and
 * byte-for-byte comparison of what a wallet wrote with its source. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "proto.h"
#include "util.h"

struct net;

/* DIR/REL with `bytes` bytes of a pattern that differs by seed and from chunk to chunk. */
void goods_write(const char *dir, const char *rel, size_t bytes, unsigned seed);
/* The whole file (malloc'd, NUL added; *len its size); fails the test if unreadable. */
char *goods_slurp(const char *path, size_t *len);
/* Fails the test unless a and b hold the same bytes. */
void goods_same_file(const char *a, const char *b);
/* Something (a file, a link) is at path. */
bool goods_exists(const char *path);
/* WALLET's view of one of its channels (`channels`; json, to free); fails the test if absent. */
json_t *goods_wallet_channel(const struct net *n, const char *wallet, const char *channel);
/* The buyer's OfferCancel of offer (its fields in o), signed by key, sent on w in an
 * OfferCancelReq; the OfferCancelResp's code (fails the test on any other answer). */
struct wire;
struct mp_key;
struct mp_offer;
int goods_offer_cancel(struct wire *w, const struct mp_key *key, const MpSigned *offer,
		       const struct mp_offer *o);
/* KeyReq for the offer ref (16 bytes) of channel id on w: the KeyResp (fails the test on any
 * other answer; the caller frees it), or its code (a refusal carries no key). */
MpEnvelope *goods_key_call(struct wire *w, const uint8_t id[MP_ID_LEN], const uint8_t ref[16]);
MpCode goods_key_code(struct wire *w, const uint8_t id[MP_ID_LEN], const uint8_t ref[16]);
/* The value the channel has spent at its holder: last * unit_value - credit. */
int64_t goods_spent_value(const struct net *n, const char *wallet, const char *channel);
