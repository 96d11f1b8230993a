/* issue.c: a channel the wallet issues for itself (buy within a budget, buy_budget.c), with the
 * same steps as the admin method issue: stored ISSUING with its exact signed request before it
 * leaves, then ACTIVE once the cert checks out; every resend sends the same bytes. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct wallet;
struct wchannel;

struct wallet_issue_spec {
	uint8_t holder0[MP_ID_LEN]; /* all zero: unbound */
	uint32_t n, days;
	uint64_t unit_value;
};
/* Runs inside the store transaction that inserts the channel; false rolls it back. */
typedef bool (*wallet_issue_tx_fn)(void *arg, const struct wchannel *ch);
/* The broker's answer: err NULL once the channel is ACTIVE; else why not (it is FAILED when
 * refused, else still ISSUING and may finish on a resend). */
typedef void (*wallet_issue_fn)(void *arg, struct wchannel *ch, const char *err);
/* A new ISSUING channel, stored and in w->channels; NULL with *why on failure (nothing
 * stored). */
struct wchannel *wallet_issue_new(struct wallet *w, const struct wallet_issue_spec *spec,
				  wallet_issue_tx_fn in_tx, void *arg, const char **why);
/* Send (or resend) the channel's stored IssueRequest; done(arg, ...) once, possibly before this
 * returns. */
void wallet_issue_send(struct wallet *w, struct wchannel *ch, wallet_issue_fn done, void *arg);
