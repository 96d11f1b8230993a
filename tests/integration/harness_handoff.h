/* The network of the handoff suites (handoff, handoff_redirect, handoff_robust): deploy/mpnet
 * with merchants m1..m3 and walletd w1, the merchants' identities and endpoints, and what those
 * suites read and sign around a handoff: a merchant's and the wallet's view of a channel, a
 * test channel held by m1, the customer's Move and a Pay's status. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "harness_merchant.h"

struct handoff_net {
	struct net net;
	char ca[700], broker_ep[128];
	struct tmerchant tm[4]; /* 1..3 */
	char ep[4][128];
};

/* Up with merchants m2 and m3 added; identities and endpoints loaded. */
void handoff_net_up(struct handoff_net *h);
void handoff_net_down(struct handoff_net *h);
/* Register walletd w1 at the broker; its account id (hex) into account. */
void handoff_wallet_register(const struct handoff_net *h, char *account, size_t len);

/* merchantd `merchant`'s view of the channel (admin `channels`): state, epoch and last; false
 * if it does not list it. */
bool merchant_channel_state(const struct net *n, const char *merchant, const char *channel,
			    char *state, size_t len, int64_t *epoch, int64_t *last);
/* merchantd `merchant` lists the channel in this state, epoch and last. */
void expect_merchant_channel(const struct net *n, const char *merchant, const char *channel,
			     const char *state, int64_t epoch, int64_t last);
/* walletd `wallet`'s holder (hex) and epoch of the channel; fails the test if it does not list
 * it. */
void wallet_channel_holder(const struct net *n, const char *wallet, const char *channel,
			   char *holder, size_t len, int64_t *epoch);

/* A test wallet's funded channel of n units of 1 with holder0 = m1; its id into id. */
void handoff_channel(const struct handoff_net *h, struct twallet *tw, struct tchannel *ch,
		     uint8_t id[MP_ID_LEN], uint32_t n);
/* The customer's Move of channel id from epoch from_epoch to merchant to, signed by key. */
MpSigned *sign_move(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t from_epoch,
		    const uint8_t to[MP_ID_LEN]);
/* Pay index j of ch on w (an order nobody created); the PayAck's status. */
MpCode pay_status(const struct tchannel *ch, struct wire *w, uint32_t j);
/* The merchant accepted the Pay (OK, or UNDERPAID for an order not covered). */
bool pay_accepted(MpCode c);

/* Send an Open of ch at the connected merchant with a Move naming holder `hint` (NULL: none)
 * and its MerchantCert; handoff_open_ack reads the answer (fails the test if it is not an
 * OpenAck; the caller frees it). */
void handoff_open_send(struct wire *w, const struct tchannel *ch, const MpSigned *move,
		       const uint8_t hint[MP_ID_LEN], const MpSigned *hint_cert);
MpEnvelope *handoff_open_ack(struct wire *w);
/* Handoff hseq of channel id from `from` to `to` at index at (segment 0) with word w, signed by
 * key (an honest one or not), segments_head head, linked to prev, move_hash move_hash. */
MpSigned *handoff_forge(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t hseq,
			const uint8_t from[MP_ID_LEN], const uint8_t to[MP_ID_LEN], uint32_t at,
			const uint8_t w[MP_HASH_LEN], const uint8_t head[MP_HASH_LEN],
			const uint8_t prev[MP_HASH_LEN], const uint8_t move_hash[MP_HASH_LEN]);
