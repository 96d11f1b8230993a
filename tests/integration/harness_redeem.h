/* Helpers for the redemption tests: test channels paid at a merchant, the broker's view of a
 * merchant's credit, daemon signals, metrics, logs, and a DNS server that answers slowly. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

/* The broker's pending balance of merchant mid_hex (its merchant_pending account). */
int64_t broker_pending(const struct net *n, const char *mid_hex);
/* Fund a customer account (fresh fund_id). */
void broker_fund(const struct net *n, const uint8_t account[MP_ID_LEN], uint64_t amount);
/* The broker's audit reports no violated invariant. */
void broker_audit_clean(const struct net *n);

/* A registered, funded test wallet with a channel of n units of `unit` held by merchant `name`,
 * opened there and paid with one Pay per index in pays[] (increasing, each jump within
 * MAX_JUMP), for an order never covered (every Pay is UNDERPAID and kept as credit). */
void paid_channel(const struct net *n, const char *name, struct twallet *tw, struct tchannel *ch,
		  uint32_t units, uint64_t unit, const uint32_t *pays, size_t n_pays);
/* Open ch at merchant `name` on a new connection and pay it once per index in pays[] (as
 * paid_channel does, for a new order). */
void pay_channel_underpaid(const struct net *n, const char *name, const struct tchannel *ch,
			   const uint32_t *pays, size_t n_pays);
/* The merchant's redeemed_end of a channel (admin `channels`); -1 if unknown. */
int64_t merchant_redeemed_end(const struct net *n, const char *name, const struct tchannel *ch);

/* The value of an unlabelled line "metric value" in the daemon's admin `metrics`; aborts the
 * test if absent. */
int64_t metric(const struct net *n, const char *daemon, const char *name);
/* Whether DIR/DAEMON/log contains text. */
bool log_contains(const struct net *n, const char *daemon, const char *text);
/* Poll pred every 100 ms for at most timeout_ms; true as soon as it holds. */
bool wait_for(bool (*pred)(void *arg), void *arg, unsigned timeout_ms);
uint64_t now_ms(void);

/* A DNS server on 127.0.0.1 (UDP) that knows one name (A 127.0.0.1, no AAAA) and holds its
 * first answer for delay_ms; while it holds it, it measures how long the admin socket at
 * probe_socket takes to answer `status`. */
struct slow_dns;
struct slow_dns *slow_dns_start(const char *name, unsigned delay_ms, const char *probe_socket);
uint16_t slow_dns_port(const struct slow_dns *d);
/* Stop it; *queries: questions seen; *probe_ms: the admin answer time measured while the first
 * answer was held (-1: no query came, or the probe failed). */
void slow_dns_stop(struct slow_dns *d, unsigned *queries, int64_t *probe_ms);
