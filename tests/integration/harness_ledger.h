/* Money as the broker's admin socket shows it, and the few admin calls that move it, for the
 * integration suites: funding customer accounts, reading balances, a merchant's pending credit,
 * and priced orders at a merchant. Accounts are named by lower-case hex id: a customer account
 * id, or a merchant id (whose own accounts are listed as "related" by account.show). */
#pragma once
#include <stdint.h>

#include "harness.h"

/* account.fund from external with a fresh random fund_id; fails the test if refused. */
void net_fund(const struct net *n, const char *account_hex, uint64_t amount);
/* The same for an account id in bytes. */
void net_fund_id(const struct net *n, const uint8_t account[MP_ID_LEN], uint64_t amount);
/* The balance of the account itself (for a merchant id: its available account). */
int64_t net_balance(const struct net *n, const char *account_hex);
/* The balance of the merchant's related account of that kind, e.g. "merchant_pending";
 * fails the test if the merchant has none. */
int64_t net_merchant_balance(const struct net *n, const char *merchant_hex, const char *kind);
/* The merchant's pending credit (redeemed, not yet finalised). */
int64_t net_pending(const struct net *n, const char *merchant_hex);
/* account.fund of the merchant's available account (found through account.show). */
void net_merchant_fund(const struct net *n, const char *merchant_hex, uint64_t amount);
/* net_merchant_fund of amount, then bond.post of it with a fresh op_id (docs/operations.md
 * "Money out"); fails the test if refused. */
void net_post_bond(const struct net *n, const char *merchant_hex, uint64_t amount);
/* walletd `wallet`'s admin issue of a channel of n units of unit_value at merchant_hex (one
 * day); fails the test unless it is ACTIVE; its channel id in hex into channel. */
void net_wallet_issue(const struct net *n, const char *wallet, const char *merchant_hex,
		      uint32_t units, uint64_t unit_value, char *channel, size_t len);
/* order.create {price} at merchant `daemon` ("m1", ...): its order_ref in hex into out. */
void net_new_order(const struct net *n, const char *daemon, uint64_t price, char *out, size_t len);
