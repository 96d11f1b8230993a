/* brokerd's paged admin listings: accounts, channels, and the ledger entries of one account.
 * Each page holds at most `limit` rows (1 .. ADMIN_LIST_MAX, default ADMIN_LIST_DEFAULT) and
 * says where the next one starts (null on the last page); lists are arrays even when empty. */
#pragma once
#include <jansson.h>

#include "admin.h"

#define ADMIN_LIST_DEFAULT 100
#define ADMIN_LIST_MAX	   1000

extern const struct mp_admin_param admin_ledger_params[];
extern const struct mp_admin_param admin_accounts_params[];
extern const struct mp_admin_param admin_channels_params[];

/* {account, kind, currency, balance, entries: [{entry_id, txn_id, kind, ref, created_at,
 * direction: in|out, counterparty, amount}], next_before}: newest first; the account id or a
 * merchant id (its available account). */
void admin_account_ledger(struct mp_admin_req *req, json_t *params, void *ctx);
/* {accounts: [{account, kind, currency, balance, created_at}], next_after}: by id. */
void admin_accounts(struct mp_admin_req *req, json_t *params, void *ctx);
/* {channels: [{channel, state, n, unit_value, currency, holder0, account, escrow_balance,
 * issued_at, pay_until, redeem_until, finalize_at}], next_after}: by id. */
void admin_channels(struct mp_admin_req *req, json_t *params, void *ctx);
