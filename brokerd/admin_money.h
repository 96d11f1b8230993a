/* brokerd's admin methods for money out: payouts, merchant bonds, the loss reserve
 * (brokerd/sql/0013-payouts-bonds.sql; docs/operations.md "Money out"). */
#pragma once
#include <jansson.h>

struct mp_admin_req;

/* {account, amount, payout_id} -> {status, payout_id, account, amount, balance, created_at}:
 * status OK or DUPLICATE_OK (the stored payout); CONFLICT carries the stored account and
 * amount in its message; INSUFFICIENT_FUNDS and refusals change nothing. */
void admin_account_payout(struct mp_admin_req *req, json_t *params, void *ctx);
/* {account?} -> {payouts: [{payout_id, account, kind, amount, created_at}]}, oldest first,
 * an array even when empty. */
void admin_payouts(struct mp_admin_req *req, json_t *params, void *ctx);
/* {merchant, amount, op_id} -> {status, op_id, merchant, bond, available}. */
void admin_bond_post(struct mp_admin_req *req, json_t *params, void *ctx);
void admin_bond_release(struct mp_admin_req *req, json_t *params, void *ctx);
/* {amount, fund_id} -> {status, fund_id, balance}: external -> loss_reserve. */
void admin_loss_reserve_fund(struct mp_admin_req *req, json_t *params, void *ctx);
