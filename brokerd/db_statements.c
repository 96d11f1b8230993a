/* Every statement brokerd prepares: one SQL function per state-changing operation
 * (brokerd/sql/0003-functions.sql), plus the read helpers of the admin socket. */
#include "broker.h"
#include "db.h"

const struct db_statement broker_statements[] = {
    {"customer_key", "SELECT account_pk FROM customers WHERE account_id = $1", 1},
    {"register_account", "SELECT * FROM mp_register_account($1, $2, $3, $4)", 4},
    {"create_merchant", "SELECT 1 AS done FROM mp_create_merchant($1, $2, $3, $4, $5)", 5},
    {"merchant_lookup", "SELECT * FROM mp_merchant_lookup($1)", 1},
    {"merchant_lookup_renewal", "SELECT * FROM mp_merchant_lookup($1, $2, $3)", 3},
    {"register_merchant",
     "SELECT * FROM mp_register_merchant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 9},
    {"fund", "SELECT * FROM mp_fund($1, $2, $3)", 3},
    {"issue_batch",
     "SELECT * FROM mp_issue_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
     "$15, $16, $17, $18, $19, $20, $21, $22)",
     22},
    {"bind_lookup", "SELECT * FROM mp_bind_lookup($1)", 1},
    {"bind", "SELECT * FROM mp_bind($1, $2, $3, $4, $5, $6, $7)", 7},
    {"unbound_transfer_lookup", "SELECT * FROM mp_unbound_transfer_lookup($1)", 1},
    {"unbound_transfer",
     "SELECT * FROM mp_unbound_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
     "$14, $15, $16)",
     16},
    {"redeem_prepare", "SELECT * FROM mp_redeem_prepare($1, $2, $3, $4, $5, $6)", 6},
    {"custody_prepare", "SELECT * FROM mp_custody_prepare($1, $2)", 2},
    {"custody_record",
     "SELECT * FROM mp_custody_record_branches($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
     "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, "
     "$29, $30, $31)",
     31},
    {"conflicts", "SELECT * FROM mp_conflicts_list()", 0},
    {"segment_record",
     "SELECT * FROM mp_segment_record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
     "$14, $15, $16, $17, $18, $19, $20)",
     20},
    {"channel_segments", "SELECT * FROM mp_channel_segments($1)", 1},
    {"redeem", "SELECT * FROM mp_redeem($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", 12},
    {"sweep_due", "SELECT * FROM mp_sweep_due($1, $2, $3)", 3},
    {"sweep_channel", "SELECT * FROM mp_sweep_channel($1, $2)", 2},
    {"channel_settlement", "SELECT * FROM mp_channel_settlement($1)", 1},
    {"channel_states", "SELECT * FROM mp_channel_states()", 0},
    {"refund_lookup", "SELECT * FROM mp_refund_lookup($1)", 1},
    {"refund_request", "SELECT * FROM mp_refund_request($1, $2, $3, $4, $5, $6, $7)", 7},
    {"refund_early",
     "SELECT * FROM mp_refund_early($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
     "$12, $13, $14, $15, $16, $17, $18, $19, $20)",
     20},
    {"dispute_lookup", "SELECT * FROM mp_dispute_lookup($1, $2, $3)", 3},
    /* The Handoffs before a Dispute's carried custody chain (dispute_evidence.c). */
    {"dispute_handoffs",
     "SELECT hseq, stmt FROM handoffs WHERE channel_id = $1 AND hseq < $2 ORDER BY hseq", 2},
    {"dispute_check", "SELECT * FROM mp_dispute_check($1, $2, $3, $4, $5, $6, $7)", 7},
    {"dispute_open",
     "SELECT * FROM mp_dispute_open($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
     "$14, $15, $16, $17)",
     17},
    {"dispute_prove", "SELECT * FROM mp_dispute_prove($1, $2, $3, $4, $5, $6, $7)", 7},
    {"dispute_key", "SELECT * FROM mp_dispute_key($1, $2, $3, $4, $5)", 5},
    /* One dispute of a merchant, read only (dispute_key.c, DisputeStateReq). */
    {"dispute_state",
     "SELECT state, stmt, bad_key_proof IS NOT NULL AS proven FROM disputes WHERE merchant_id "
     "= $1 AND channel_id = $2 AND order_ref = $3",
     3},
    {"open_disputes", "SELECT * FROM mp_open_disputes($1, $2)", 2},
    {"dispute_stmt", "SELECT * FROM mp_dispute_stmt($1, $2, $3)", 3},
    {"dispute_cancel", "SELECT * FROM mp_dispute_cancel($1, $2, $3, $4, $5)", 5},
    {"dispute_due", "SELECT * FROM mp_dispute_due($1, $2)", 2},
    {"dispute_refund", "SELECT * FROM mp_dispute_refund($1, $2, $3)", 3},
    /* Forced release (release.c, release_sweep.c, release_deliver.c; docs/release.md). */
    {"release_lookup", "SELECT * FROM mp_release_lookup($1, $2)", 2},
    {"release_request", "SELECT * FROM mp_release_request($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9},
    {"release_due", "SELECT * FROM mp_release_due($1, $2)", 2},
    {"release_prepare", "SELECT * FROM mp_release_prepare($1, $2)", 2},
    {"release_force", "SELECT * FROM mp_release_force($1, $2, $3, $4, $5, $6)", 6},
    {"forced_closes", "SELECT * FROM mp_forced_closes($1, $2)", 2},
    {"release_pending_of", "SELECT * FROM mp_release_pending_of($1)", 1},
    {"forced_closes_after", "SELECT * FROM mp_forced_closes_after($1, $2, $3)", 3},
    {"audit", "SELECT * FROM mp_audit()", 0},
    {"payout", "SELECT * FROM mp_payout($1, $2, $3)", 3},
    {"payouts_list", "SELECT * FROM mp_payouts_list($1)", 1},
    /* Paged admin listings (admin_lists.c): newest ledger entries first, ids ascending. */
    {"account_ledger",
     "WITH a AS (SELECT acc.id, acc.kind, acc.currency, acc.balance FROM accounts acc "
     "WHERE acc.id = COALESCE((SELECT m.available_account FROM merchants m "
     "WHERE m.merchant_id = $1), $1)) "
     "SELECT a.id AS account_id, a.kind AS account_kind, a.currency, a.balance, e.* FROM a "
     "LEFT JOIN LATERAL (SELECT l.entry_id, l.txn_id, t.kind, t.ref, "
     "extract(epoch FROM t.created_at)::bigint AS created_at, "
     "CASE WHEN l.credit_account = a.id THEN 'in' ELSE 'out' END AS direction, "
     "CASE WHEN l.credit_account = a.id THEN l.debit_account ELSE l.credit_account END "
     "AS counterparty, l.amount FROM ledger l JOIN transfers t ON t.txn_id = l.txn_id "
     "WHERE (l.debit_account = a.id OR l.credit_account = a.id) "
     "AND ($2::bigint IS NULL OR l.entry_id < $2::bigint) "
     "ORDER BY l.entry_id DESC LIMIT $3::int) e ON true ORDER BY e.entry_id DESC",
     3},
    {"accounts_list",
     "SELECT id, kind, currency, balance, extract(epoch FROM created_at)::bigint AS created_at "
     "FROM accounts WHERE ($1::text IS NULL OR kind = $1::text) "
     "AND ($2::bytea IS NULL OR id > $2::bytea) ORDER BY id LIMIT $3::int",
     3},
    {"channels_list",
     "SELECT c.channel_id, c.state, c.n, c.unit_value, c.currency, c.holder0, c.account_id, "
     "a.balance AS escrow_balance, c.issued_at, c.pay_until, c.redeem_until, c.finalize_at "
     "FROM channels c JOIN accounts a ON a.id = c.escrow_account "
     "WHERE ($1::text IS NULL OR c.state = $1::text) "
     "AND ($2::bytea IS NULL OR c.channel_id > $2::bytea) ORDER BY c.channel_id LIMIT $3::int",
     3},
    {"bond_move", "SELECT * FROM mp_bond_move($1, $2, $3, $4)", 4},
    {"loss_reserve_fund", "SELECT * FROM mp_loss_reserve_fund($1, $2, $3)", 3},
    {"account_show", "SELECT * FROM mp_account_show($1)", 1},
    {"channel_show", "SELECT * FROM mp_channel_show($1)", 1},
    {"ensure_system_accounts", "SELECT 1 AS done FROM mp_ensure_system_accounts($1)", 1},
    {NULL, NULL, 0},
};
