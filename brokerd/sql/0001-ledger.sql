-- brokerd migration 0001: the double-entry ledger (protocol.md section 2, "Ledger").
-- Applied by brokerd in its own transaction; no BEGIN/COMMIT here, no psql meta-commands.
--
-- Every movement of money is one ledger row inside one transfer. A row moves `amount` from
-- debit_account (balance decreases) to credit_account (balance increases). Balances are kept
-- on the account rows; the CHECK constraints make an over-debit impossible: mp_post raises and
-- the whole calling transaction rolls back. Only the `external` account (operator funding)
-- may go below zero.

CREATE TABLE accounts (
    id          bytea       PRIMARY KEY CHECK (length(id) = 16),
    kind        text        NOT NULL CHECK (kind IN ('customer', 'merchant_available',
                                'merchant_pending', 'escrow', 'external', 'unclaimed',
                                'loss_reserve')),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance     bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_balance_nonneg CHECK (balance >= 0 OR kind = 'external')
);

-- One system account of each kind per currency (their ids are derived, see below).
CREATE UNIQUE INDEX accounts_system_uq ON accounts (kind, currency)
    WHERE kind IN ('external', 'unclaimed', 'loss_reserve');

-- A transfer groups the ledger rows of one operation. kind: 'fund', 'issue', 'redeem' (later
-- issues add e.g. 'refund', 'finalize', 'dispute', 'liability'); ref names the object (fund_id,
-- channel_id, ...).
CREATE TABLE transfers (
    txn_id      bigserial   PRIMARY KEY,
    kind        text        NOT NULL,
    ref         bytea,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger (
    entry_id        bigserial PRIMARY KEY,
    txn_id          bigint    NOT NULL REFERENCES transfers (txn_id),
    debit_account   bytea     NOT NULL REFERENCES accounts (id),
    credit_account  bytea     NOT NULL REFERENCES accounts (id),
    amount          bigint    NOT NULL CHECK (amount > 0),
    CONSTRAINT ledger_distinct_accounts CHECK (debit_account <> credit_account)
);
CREATE INDEX ledger_txn_idx ON ledger (txn_id);
CREATE INDEX ledger_debit_idx ON ledger (debit_account);
CREATE INDEX ledger_credit_idx ON ledger (credit_account);

-- Deterministic id of a system account: the first 16 bytes of
-- SHA256("mpay-system:" || kind || ":" || currency).
CREATE FUNCTION mp_system_account_id(p_kind text, p_currency text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT substring(sha256(convert_to('mpay-system:' || p_kind || ':' || p_currency, 'UTF8'))
                     FROM 1 FOR 16)
$$;

-- Create (idempotently) the external, unclaimed and loss_reserve accounts of a currency.
-- brokerd calls it at start for its configured currency.
CREATE FUNCTION mp_ensure_system_accounts(p_currency text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_currency IS NULL OR p_currency !~ '^[A-Z]{3}$' THEN
        RAISE EXCEPTION 'mp_ensure_system_accounts: bad currency %', p_currency;
    END IF;
    INSERT INTO accounts (id, kind, currency)
    SELECT mp_system_account_id(k, p_currency), k, p_currency
      FROM unnest(ARRAY['external', 'unclaimed', 'loss_reserve']) AS k
    ON CONFLICT DO NOTHING;
END
$$;

-- Private helper: move p_amount from p_from to p_to as one ledger row of transfer p_txn.
-- Raises (rolling the caller back) on an unknown account, a currency mismatch, an amount
-- <= 0, or an over-debit (accounts_balance_nonneg).
CREATE FUNCTION mp_post(p_txn bigint, p_from bytea, p_to bytea, p_amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_cur_from text;
    v_cur_to   text;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'mp_post: amount must be > 0, got %', p_amount;
    END IF;
    UPDATE accounts SET balance = balance - p_amount WHERE id = p_from
        RETURNING currency INTO v_cur_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mp_post: unknown account %', encode(p_from, 'hex');
    END IF;
    UPDATE accounts SET balance = balance + p_amount WHERE id = p_to
        RETURNING currency INTO v_cur_to;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mp_post: unknown account %', encode(p_to, 'hex');
    END IF;
    IF v_cur_from <> v_cur_to THEN
        RAISE EXCEPTION 'mp_post: currency mismatch % -> %', v_cur_from, v_cur_to;
    END IF;
    INSERT INTO ledger (txn_id, debit_account, credit_account, amount)
    VALUES (p_txn, p_from, p_to, p_amount);
END
$$;
REVOKE ALL ON FUNCTION mp_post(bigint, bytea, bytea, bigint) FROM PUBLIC;
