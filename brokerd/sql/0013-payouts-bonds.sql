-- brokerd migration 0013: money out (payouts) and merchant bonds (protocol.md section 7).
--
-- Payouts: admin `account.payout` moves money from a customer account or a merchant's
-- *available* account to the `external` account of its currency, one `payout` transfer per
-- payout_id (idempotent: the same id with the same account and amount is a duplicate, with
-- another account or amount a CONFLICT). Pending credit is never paid out.
--
-- Bonds: each merchant gets a `merchant_bond` account (created by its first bond.post; its id
-- is derived from the merchant id). `bond.post` moves money from the merchant's available
-- account to it, `bond.release` back, each idempotent by op_id. `merchants.bond`, the figure
-- put into a MerchantCert when one is issued or renewed, is kept equal to the bond account's
-- balance in the same transaction as every movement of it (audit `merchant_bond_matches_account`).
-- A release may not leave the bond below the merchant's unsettled liabilities
-- (mp_merchant_unsettled; liabilities come with forks honoured, migration 0014).
--
-- Loss reserve: `loss_reserve.fund` funds the broker's loss_reserve account from `external`
-- as a funding (the `fundings` table, so the funding invariants cover it).

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
    CHECK (kind IN ('customer', 'merchant_available', 'merchant_pending', 'merchant_bond',
                    'escrow', 'external', 'unclaimed', 'loss_reserve'));

ALTER TABLE merchants ADD COLUMN bond_account bytea UNIQUE REFERENCES accounts (id);
-- A bond figure without money behind it (account.create took one before this migration) is
-- not a bond: certs issued or renewed from now on carry the posted bond only.
UPDATE merchants SET bond = 0 WHERE bond <> 0;

CREATE TABLE payouts (
    payout_id   bytea  PRIMARY KEY CHECK (length(payout_id) = 16),
    account_id  bytea  NOT NULL REFERENCES accounts (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    -- Deferred: mp_payout claims the payout_id before it creates the transfer.
    txn_id      bigint NOT NULL REFERENCES transfers (txn_id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_account_idx ON payouts (account_id);

CREATE TABLE bond_ops (
    op_id       bytea  PRIMARY KEY CHECK (length(op_id) = 16),
    merchant_id bytea  NOT NULL REFERENCES merchants (merchant_id),
    direction   text   NOT NULL CHECK (direction IN ('post', 'release')),
    amount      bigint NOT NULL CHECK (amount > 0),
    txn_id      bigint NOT NULL REFERENCES transfers (txn_id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The bond account id of a merchant: the first 16 bytes of SHA256("mpay-bond:" || merchant_id).
CREATE FUNCTION mp_bond_account_id(p_merchant_id bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT substring(sha256(convert_to('mpay-bond:', 'UTF8') || p_merchant_id) FROM 1 FOR 16)
$$;

-- What a merchant still owes for conflicts it signed (0 until migration 0014 records
-- liabilities). A bond release may not leave the bond below it.
CREATE FUNCTION mp_merchant_unsettled(p_merchant_id bytea) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT 0::bigint
$$;

-- Admin `account.payout`. p_account: a customer account, a merchant's available account, or a
-- merchant id (its available account). Status: 2 bad amount/id or a pending/bond/system
-- account ("pending credit cannot be paid out"), 18 unknown account, 1 the same payout_id with
-- the same account and amount (stored result, nothing moves), 16 the payout_id used for
-- another account or amount (the stored one returned), 14 balance below the amount (nothing
-- stored: the same id may be retried later), 0 paid. Returns the stored payout's account and
-- amount and the account's balance after the call.
CREATE FUNCTION mp_payout(p_payout_id bytea, p_account bytea, p_amount bigint)
RETURNS TABLE (status int, detail text, account_id bytea, amount bigint, balance bigint,
               created_at bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_acc accounts%ROWTYPE;
    v_p   payouts%ROWTYPE;
    v_id  bytea;
    v_txn bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RETURN QUERY SELECT 2, 'amount must be > 0', NULL::bytea, NULL::bigint, NULL::bigint,
                            NULL::bigint;
        RETURN;
    END IF;
    IF p_payout_id IS NULL OR length(p_payout_id) <> 16 THEN
        RETURN QUERY SELECT 2, 'payout_id must be 16 bytes', NULL::bytea, NULL::bigint,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT coalesce((SELECT m.available_account FROM merchants m
                      WHERE m.merchant_id = p_account), p_account) INTO v_id;
    SELECT * INTO v_acc FROM accounts a WHERE a.id = v_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'no such account or merchant', NULL::bytea, NULL::bigint,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF v_acc.kind NOT IN ('customer', 'merchant_available') THEN
        RETURN QUERY SELECT 2, CASE v_acc.kind WHEN 'merchant_pending'
                    THEN 'pending credit cannot be paid out (it becomes available at finalisation)'
                    ELSE 'a ' || v_acc.kind || ' account cannot be paid out' END,
                    NULL::bytea, NULL::bigint, v_acc.balance, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO v_p FROM payouts p WHERE p.payout_id = p_payout_id;
    IF NOT FOUND THEN
        IF v_acc.balance < p_amount THEN
            RETURN QUERY SELECT 14, 'balance ' || v_acc.balance || ' below ' || p_amount,
                                NULL::bytea, NULL::bigint, v_acc.balance, NULL::bigint;
            RETURN;
        END IF;
        -- Claim the id: a concurrent payout with the same id (on another account, whose row
        -- lock we do not share) waits here and then sees the committed row.
        v_txn := nextval(pg_get_serial_sequence('transfers', 'txn_id'));
        INSERT INTO payouts (payout_id, account_id, amount, txn_id)
        VALUES (p_payout_id, v_id, p_amount, v_txn)
        ON CONFLICT (payout_id) DO NOTHING;
        IF FOUND THEN
            INSERT INTO transfers (txn_id, kind, ref) VALUES (v_txn, 'payout', p_payout_id);
            PERFORM mp_post(v_txn, v_id, mp_system_account_id('external', v_acc.currency),
                            p_amount);
            RETURN QUERY SELECT 0, '', v_id, p_amount, a.balance,
                                extract(epoch FROM p.created_at)::bigint
                           FROM accounts a, payouts p
                          WHERE a.id = v_id AND p.payout_id = p_payout_id;
            RETURN;
        END IF;
        SELECT * INTO v_p FROM payouts p WHERE p.payout_id = p_payout_id;
    END IF;
    RETURN QUERY SELECT CASE WHEN v_p.account_id = v_id AND v_p.amount = p_amount THEN 1
                             ELSE 16 END,
                        CASE WHEN v_p.account_id = v_id AND v_p.amount = p_amount
                             THEN 'already paid out'
                             ELSE 'payout_id already used for another account or amount' END,
                        v_p.account_id, v_p.amount, v_acc.balance,
                        extract(epoch FROM v_p.created_at)::bigint;
END
$$;

-- Admin `payouts`: every payout (of one account or merchant when p_account is not NULL),
-- oldest first.
CREATE FUNCTION mp_payouts_list(p_account bytea)
RETURNS TABLE (payout_id bytea, account_id bytea, kind text, amount bigint, created_at bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.payout_id, p.account_id, a.kind, p.amount, extract(epoch FROM p.created_at)::bigint
      FROM payouts p JOIN accounts a ON a.id = p.account_id
     WHERE p_account IS NULL OR p.account_id = p_account
        OR p.account_id = (SELECT m.available_account FROM merchants m
                            WHERE m.merchant_id = p_account)
     ORDER BY p.created_at, p.txn_id
$$;

-- Admin `bond.post` (p_direction 'post': available -> bond) and `bond.release` ('release':
-- bond -> available) under the merchant's row lock. Status: 2 bad amount/id/direction, 18
-- unknown merchant, 1 the same op_id with the same merchant, direction and amount (nothing
-- moves), 16 the op_id used for another operation, 14 the source balance below the amount or
-- a release that would leave the bond below the merchant's unsettled liabilities (nothing
-- stored), 0 done. Returns the bond and available balances after the call.
CREATE FUNCTION mp_bond_move(p_op_id bytea, p_merchant_id bytea, p_amount bigint,
                             p_direction text)
RETURNS TABLE (status int, detail text, bond bigint, available bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m          merchants%ROWTYPE;
    v_op       bond_ops%ROWTYPE;
    v_bond     bigint;
    v_avail    bigint;
    v_owed     bigint;
    v_txn      bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 OR p_op_id IS NULL OR length(p_op_id) <> 16
       OR p_direction IS NULL OR p_direction NOT IN ('post', 'release') THEN
        RETURN QUERY SELECT 2, 'amount must be > 0, op_id 16 bytes, direction post or release',
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO m FROM merchants WHERE merchant_id = p_merchant_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'no such merchant', NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO v_op FROM bond_ops o WHERE o.op_id = p_op_id;
    IF FOUND THEN
        RETURN QUERY
        SELECT CASE WHEN v_op.merchant_id = p_merchant_id AND v_op.direction = p_direction
                         AND v_op.amount = p_amount THEN 1 ELSE 16 END,
               CASE WHEN v_op.merchant_id = p_merchant_id AND v_op.direction = p_direction
                         AND v_op.amount = p_amount THEN 'already done'
                    ELSE 'op_id already used for ' || v_op.direction || ' of ' || v_op.amount
                         || ' by merchant ' || encode(v_op.merchant_id, 'hex') END,
               coalesce((SELECT balance FROM accounts WHERE id = m.bond_account), 0),
               (SELECT balance FROM accounts WHERE id = m.available_account);
        RETURN;
    END IF;
    SELECT balance INTO v_bond FROM accounts WHERE id = m.bond_account FOR UPDATE;
    v_bond := coalesce(v_bond, 0);
    SELECT balance INTO v_avail FROM accounts WHERE id = m.available_account FOR UPDATE;
    IF p_direction = 'post' AND v_avail < p_amount THEN
        RETURN QUERY SELECT 14, 'available ' || v_avail || ' below ' || p_amount, v_bond, v_avail;
        RETURN;
    END IF;
    IF p_direction = 'release' THEN
        IF v_bond < p_amount THEN
            RETURN QUERY SELECT 14, 'bond ' || v_bond || ' below ' || p_amount, v_bond, v_avail;
            RETURN;
        END IF;
        v_owed := mp_merchant_unsettled(p_merchant_id);
        IF v_bond - p_amount < v_owed THEN
            RETURN QUERY SELECT 14, 'release would leave the bond at ' || (v_bond - p_amount)
                                || ', below the merchant''s unsettled liabilities of ' || v_owed,
                                v_bond, v_avail;
            RETURN;
        END IF;
    END IF;
    v_txn := nextval(pg_get_serial_sequence('transfers', 'txn_id'));
    INSERT INTO bond_ops (op_id, merchant_id, direction, amount, txn_id)
    VALUES (p_op_id, p_merchant_id, p_direction, p_amount, v_txn)
    ON CONFLICT (op_id) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent op with this id for another merchant committed first.
        RETURN QUERY SELECT 16, 'op_id already used', v_bond, v_avail;
        RETURN;
    END IF;
    IF m.bond_account IS NULL THEN
        -- The first bond.post creates the bond account (a release found a zero bond above).
        INSERT INTO accounts (id, kind, currency)
        VALUES (mp_bond_account_id(p_merchant_id), 'merchant_bond', m.currency);
        UPDATE merchants SET bond_account = mp_bond_account_id(p_merchant_id)
         WHERE merchant_id = p_merchant_id RETURNING * INTO m;
    END IF;
    INSERT INTO transfers (txn_id, kind, ref) VALUES (v_txn, 'bond_' || p_direction, p_op_id);
    IF p_direction = 'post' THEN
        PERFORM mp_post(v_txn, m.available_account, m.bond_account, p_amount);
    ELSE
        PERFORM mp_post(v_txn, m.bond_account, m.available_account, p_amount);
    END IF;
    UPDATE merchants SET bond = (SELECT balance FROM accounts WHERE id = m.bond_account)
     WHERE merchant_id = p_merchant_id;
    RETURN QUERY SELECT 0, '', (SELECT balance FROM accounts WHERE id = m.bond_account),
                        (SELECT balance FROM accounts WHERE id = m.available_account);
END
$$;

-- Admin `loss_reserve.fund`: the operator funds the loss reserve of a currency from
-- `external`, as a funding (same rules as mp_fund: 1 duplicate, 16 another funding).
CREATE FUNCTION mp_loss_reserve_fund(p_fund_id bytea, p_currency text, p_amount bigint)
RETURNS TABLE (status int, detail text, balance bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_res bytea := mp_system_account_id('loss_reserve', p_currency);
    v_f   fundings%ROWTYPE;
    v_txn bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 OR p_fund_id IS NULL OR length(p_fund_id) <> 16 THEN
        RETURN QUERY SELECT 2, 'amount must be > 0 and fund_id 16 bytes', NULL::bigint;
        RETURN;
    END IF;
    PERFORM 1 FROM accounts WHERE id = v_res FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'no loss_reserve account for ' || p_currency, NULL::bigint;
        RETURN;
    END IF;
    v_txn := nextval(pg_get_serial_sequence('transfers', 'txn_id'));
    INSERT INTO fundings (fund_id, account_id, amount, txn_id)
    VALUES (p_fund_id, v_res, p_amount, v_txn)
    ON CONFLICT (fund_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_f FROM fundings WHERE fund_id = p_fund_id;
        RETURN QUERY SELECT CASE WHEN v_f.account_id = v_res AND v_f.amount = p_amount
                                 THEN 1 ELSE 16 END,
                            CASE WHEN v_f.account_id = v_res AND v_f.amount = p_amount
                                 THEN 'already funded'
                                 ELSE 'fund_id already used for another funding' END,
                            a.balance FROM accounts a WHERE a.id = v_res;
        RETURN;
    END IF;
    INSERT INTO transfers (txn_id, kind, ref) VALUES (v_txn, 'fund', p_fund_id);
    PERFORM mp_post(v_txn, mp_system_account_id('external', p_currency), v_res, p_amount);
    RETURN QUERY SELECT 0, '', a.balance FROM accounts a WHERE a.id = v_res;
END
$$;

-- Admin `account.show` also lists a merchant's bond account (after the pending one) and
-- returns the id of the account shown (a merchant id shows its available account).
DROP FUNCTION mp_account_show(bytea);
CREATE FUNCTION mp_account_show(p_account_id bytea)
RETURNS TABLE (account_id bytea, kind text, currency text, balance bigint,
               related_account bytea, related_kind text, related_balance bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_mid bytea;
BEGIN
    SELECT m.merchant_id INTO v_mid FROM merchants m
     WHERE p_account_id IN (m.merchant_id, m.available_account, m.pending_account,
                            m.bond_account);
    IF NOT FOUND THEN
        RETURN QUERY SELECT a.id, a.kind, a.currency, a.balance, NULL::bytea, NULL::text,
                            NULL::bigint FROM accounts a WHERE a.id = p_account_id;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT a.id, a.kind, a.currency, a.balance, r.id, r.kind, r.balance
      FROM merchants m
      JOIN accounts a ON a.id = CASE WHEN p_account_id = m.merchant_id THEN m.available_account
                                     ELSE p_account_id END
      JOIN accounts r ON r.id IN (m.available_account, m.pending_account, m.bond_account)
                     AND r.id <> a.id
     WHERE m.merchant_id = v_mid
     ORDER BY CASE r.kind WHEN 'merchant_available' THEN 0 WHEN 'merchant_pending' THEN 1
                          ELSE 2 END;
END
$$;

-- The audit: `external` also pays out (payouts), a funding may go to the loss reserve, and
-- the bond figure of every merchant equals its bond account. 0006's invariant
-- funding_total_is_minus_external is replaced by external_is_payouts_minus_fundings.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0010;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0010() a
                  WHERE a.check_name <> 'funding_total_is_minus_external';
    -- The external balance of a currency = paid out - funded.
    RETURN QUERY SELECT * FROM mp_audit_check('external_is_payouts_minus_fundings', $q$
        SELECT x.currency AS id,
               x.currency || ' (funded ' || coalesce(f.amt, 0) || ', paid out '
               || coalesce(p.amt, 0) || ', external balance ' || x.balance || ')' AS what
          FROM accounts x
          LEFT JOIN (SELECT a.currency, sum(f.amount::numeric) AS amt
                       FROM fundings f JOIN accounts a ON a.id = f.account_id
                      GROUP BY a.currency) f ON f.currency = x.currency
          LEFT JOIN (SELECT a.currency, sum(p.amount::numeric) AS amt
                       FROM payouts p JOIN accounts a ON a.id = p.account_id
                      GROUP BY a.currency) p ON p.currency = x.currency
         WHERE x.kind = 'external'
           AND x.balance::numeric <> coalesce(p.amt, 0) - coalesce(f.amt, 0) $q$);
    -- Every payout is exactly one ledger row of its amount from its account to external.
    RETURN QUERY SELECT * FROM mp_audit_check('payouts_match_ledger', $q$
        SELECT encode(p.payout_id, 'hex') AS id,
               encode(p.payout_id, 'hex') || ' (amount ' || p.amount || ', ledger rows '
               || count(l.entry_id) || ')' AS what
          FROM payouts p JOIN accounts a ON a.id = p.account_id
          LEFT JOIN ledger l ON l.txn_id = p.txn_id AND l.debit_account = p.account_id
                            AND l.credit_account = mp_system_account_id('external', a.currency)
                            AND l.amount = p.amount
         GROUP BY p.payout_id, p.amount, p.txn_id
        HAVING count(l.entry_id) <> 1
            OR (SELECT count(*) FROM ledger l2 WHERE l2.txn_id = p.txn_id) <> 1 $q$);
    -- Only customer and merchant_available accounts are paid out.
    RETURN QUERY SELECT * FROM mp_audit_check('payouts_from_payable_accounts', $q$
        SELECT encode(p.payout_id, 'hex') AS id,
               encode(p.payout_id, 'hex') || ' (from a ' || a.kind || ' account)' AS what
          FROM payouts p JOIN accounts a ON a.id = p.account_id
         WHERE a.kind NOT IN ('customer', 'merchant_available') $q$);
    -- The bond in a merchant's row (the MerchantCert figure) is its bond account's balance.
    RETURN QUERY SELECT * FROM mp_audit_check('merchant_bond_matches_account', $q$
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (bond ' || m.bond || ', bond account '
               || coalesce(a.balance::text, 'none') || ')' AS what
          FROM merchants m LEFT JOIN accounts a ON a.id = m.bond_account
         WHERE m.bond <> coalesce(a.balance, 0)
            OR (a.id IS NOT NULL AND a.kind <> 'merchant_bond') $q$);
END
$$;
