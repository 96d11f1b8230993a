-- brokerd migration 0017: the early refund with a Close (protocol.md section 6 "Close" and
-- "Finalisation and refund"; docs/close.md, docs/settlement.md).
--
-- A RefundRequest carrying a Close and its custody chain (brokerd verifies both on the worker
-- pool: the Close signed by the holder of epoch p_hseq per the custody chain, for the last
-- segment, w_final verifying; the RefundRequest signed by that segment's owner) pays at once
--   early_refund = (n - max(final_index, spent)) * unit_value
-- (spent: the highest credited index of any epoch) to the last segment's recorded payout
-- account, else the request's, and ends the channel early:
--
--   OPEN | EXPIRED --mp_refund_early--> CLOSED_EARLY (close_index, early_refund set)
--        --finalize_at <= now (sweep)--> FINALIZED (refund = (n - spent) * uv - early_refund)
--
-- all in one transaction under the channel's row lock, so a claim is either credited before
-- the early refund is computed or judged against close_index afterwards. The early refund is a
-- transfer of kind 'early_refund' (finalisation's own refund stays kind 'refund'); the audit
-- counts both as refunded.

CREATE TABLE early_refunds (
    channel_id        bytea  PRIMARY KEY REFERENCES channels (channel_id),
    refund_id         bytea  NOT NULL UNIQUE CHECK (length(refund_id) = 16),
    seg_seq           int    NOT NULL CHECK (seg_seq >= 0),
    stmt_hash         bytea  NOT NULL CHECK (length(stmt_hash) = 32),
    stmt              bytea  NOT NULL,  -- the exact signed RefundRequest bytes
    close_hash        bytea  NOT NULL CHECK (length(close_hash) = 32),
    close             bytea  NOT NULL,  -- the exact signed Close bytes
    hseq              int    NOT NULL CHECK (hseq >= 0),
    final_index       int    NOT NULL CHECK (final_index >= 0),
    spent             int    NOT NULL CHECK (spent >= final_index),
    amount            bigint NOT NULL CHECK (amount >= 0),
    payout_account_id bytea  NOT NULL REFERENCES accounts (id),
    txn_id            bigint REFERENCES transfers (txn_id),  -- NULL: nothing left to refund
    answered_at       bigint NOT NULL
);

-- The answer of a stored early refund.
CREATE FUNCTION mp_early_refund_result(p_status int, p_detail text, p_r early_refunds)
RETURNS TABLE (status int, detail text, refund bigint, payout_account bytea, spent int,
               refunded_at bigint, stored_stmt bytea)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status, p_detail, p_r.amount, p_r.payout_account_id, p_r.spent, p_r.answered_at,
           NULL::bytea;
$$;

-- A refusal that stores nothing.
CREATE FUNCTION mp_early_refund_refused(p_status int, p_detail text)
RETURNS TABLE (status int, detail text, refund bigint, payout_account bytea, spent int,
               refunded_at bigint, stored_stmt bytea)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status, p_detail, NULL::bigint, NULL::bytea, NULL::int, NULL::bigint,
           NULL::bytea;
$$;

-- The early refund, its Close verified by brokerd (p_hseq: the epoch the Close ends, as the
-- custody chain brokerd verified says; p_final_index its index). In order:
--   unknown channel 17;
--   refund_id stored: same stmt_hash 1 + the result, other bytes 16 + the stored statement;
--   the channel already closed early (another refund_id): 1 + the stored result;
--   FINALIZED 13 (TOO_LATE: the RefundRequest without a Close answers finalisation's refund);
--   seg_seq not the last segment 8; a Handoff above p_hseq stored 6 (HANDED_OFF: the Close
--   ends an epoch that was handed on); no payout account recorded and none (valid) named 2/18;
--   otherwise the refund is paid, the channel is CLOSED_EARLY: 0 + the result.
CREATE FUNCTION mp_refund_early(p_refund_id bytea, p_channel_id bytea, p_seg_seq int,
                                p_stmt_hash bytea, p_stmt bytea, p_payout bytea,
                                p_close_hash bytea, p_close bytea, p_hseq int,
                                p_final_index int, p_now bigint)
RETURNS TABLE (status int, detail text, refund bigint, payout_account bytea, spent int,
               refunded_at bigint, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch   channels%ROWTYPE;
    v_r    early_refunds%ROWTYPE;
    v_last record;
    v_acc  accounts%ROWTYPE;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(17, 'unknown channel');
        RETURN;
    END IF;
    SELECT * INTO v_r FROM early_refunds r WHERE r.refund_id = p_refund_id;
    IF FOUND AND v_r.stmt_hash <> p_stmt_hash THEN
        RETURN QUERY SELECT 16, 'refund_id used by another RefundRequest'::text, NULL::bigint,
                            NULL::bytea, NULL::int, NULL::bigint, v_r.stmt;
        RETURN;
    END IF;
    IF NOT FOUND THEN
        SELECT * INTO v_r FROM early_refunds r WHERE r.channel_id = p_channel_id;
    END IF;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM mp_early_refund_result(1, 'already refunded early', v_r);
        RETURN;
    END IF;
    IF v_ch.state = 'FINALIZED' THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(13,
            'channel finalised: ask for its refund without a Close');
        RETURN;
    END IF;
    SELECT * INTO v_last FROM mp_last_segment(p_channel_id);
    IF v_last.seg_seq IS DISTINCT FROM p_seg_seq THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(8, 'segment ' || p_seg_seq
            || ' is not the last segment ' || v_last.seg_seq);
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM handoffs h WHERE h.channel_id = p_channel_id AND h.hseq > p_hseq)
    THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(6, 'the Close ends epoch ' || p_hseq
            || ', which was handed off');
        RETURN;
    END IF;
    v_r.payout_account_id := coalesce(v_last.payout_account, nullif(p_payout, ''::bytea));
    IF v_r.payout_account_id IS NULL THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(2,
            'no payout account recorded for the last segment: name one');
        RETURN;
    END IF;
    SELECT * INTO v_acc FROM accounts a
     WHERE a.id = v_r.payout_account_id AND a.kind = 'customer';
    IF NOT FOUND OR v_acc.currency <> v_ch.currency THEN
        RETURN QUERY SELECT * FROM mp_early_refund_refused(18,
            'payout account is not a customer account of the channel''s currency');
        RETURN;
    END IF;

    SELECT greatest(coalesce(max(e.credited_end), 0), p_final_index) INTO v_r.spent
      FROM epochs e WHERE e.channel_id = p_channel_id;
    v_r.amount := (v_ch.n - least(v_r.spent, v_ch.n))::bigint * v_ch.unit_value;
    IF v_r.amount > 0 THEN
        INSERT INTO transfers (kind, ref) VALUES ('early_refund', p_channel_id)
        RETURNING txn_id INTO v_r.txn_id;
        PERFORM mp_post(v_r.txn_id, v_ch.escrow_account, v_r.payout_account_id, v_r.amount);
    END IF;
    UPDATE channels c
       SET state = 'CLOSED_EARLY', close_index = p_final_index, early_refund = v_r.amount
     WHERE c.channel_id = p_channel_id;
    v_r.channel_id := p_channel_id;
    v_r.refund_id := p_refund_id;
    v_r.seg_seq := p_seg_seq;
    v_r.stmt_hash := p_stmt_hash;
    v_r.stmt := p_stmt;
    v_r.close_hash := p_close_hash;
    v_r.close := p_close;
    v_r.hseq := p_hseq;
    v_r.final_index := p_final_index;
    v_r.answered_at := p_now;
    INSERT INTO early_refunds SELECT v_r.*;
    RETURN QUERY SELECT * FROM mp_early_refund_result(0, '', v_r);
END
$$;

-- The audit (mp_audit of 0015 kept as mp_audit_0015) counts the early refund as refunded in
-- the per-channel settlement check, and checks each early refund against the ledger and its
-- channel.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0015;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0015() a
                  WHERE a.check_name <> 'channel_settlement_within_escrow';

    -- Per channel: credited + refunded (early and at finalisation) + unclaimed (+ a refund
    -- still owed in the escrow) <= n * unit_value, equal once FINALIZED, when the escrow holds
    -- exactly the refund owed.
    RETURN QUERY SELECT * FROM mp_audit_check('channel_settlement_within_escrow', $q$
        WITH t AS (
            SELECT c.channel_id, c.state, c.n::numeric * c.unit_value AS face,
                   a.balance::numeric AS escrow,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id)
                   - (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                       WHERE li.channel_id = c.channel_id) AS credited,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account
                       AND x.kind IN ('refund', 'early_refund')) AS refunded,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'unclaimed')
                   AS unclaimed,
                   (SELECT coalesce(sum(f.refund::numeric), 0) FROM finalizations f
                     WHERE f.channel_id = c.channel_id AND f.refund_txn IS NULL) AS owed
              FROM channels c JOIN accounts a ON a.id = c.escrow_account)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (' || state || ': credited ' || credited
               || ' + refunded ' || refunded || ' + unclaimed ' || unclaimed || ' + owed '
               || owed || ' vs face ' || face || ', escrow ' || escrow || ')' AS what
          FROM t
         WHERE credited + refunded + unclaimed + owed > face
            OR (state = 'FINALIZED' AND (credited + refunded + unclaimed + owed <> face
                                         OR escrow <> owed)) $q$);

    -- Per channel: an early refund is paid once, as stored, and its channel says so
    -- (close_index, early_refund, CLOSED_EARLY or FINALIZED); no early refund without one.
    RETURN QUERY SELECT * FROM mp_audit_check('early_refund_matches_ledger', $q$
        WITH t AS (
            SELECT c.channel_id, c.state, c.close_index, c.early_refund, r.final_index,
                   r.amount, r.refund_id IS NOT NULL AS stored,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'early_refund') AS l_early,
                   (SELECT count(*) FROM transfers x
                     WHERE x.ref = c.channel_id AND x.kind = 'early_refund') AS n_early
              FROM channels c LEFT JOIN early_refunds r ON r.channel_id = c.channel_id)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (' || state || ', early refund '
               || coalesce(amount::text, 'none') || ' ledger ' || l_early || ' in ' || n_early
               || ', close_index ' || coalesce(close_index::text, 'none') || ')' AS what
          FROM t
         WHERE (NOT stored AND (l_early <> 0 OR n_early <> 0 OR early_refund <> 0
                                OR close_index IS NOT NULL OR state = 'CLOSED_EARLY'))
            OR (stored AND (l_early <> amount OR n_early <> (amount > 0)::int
                            OR early_refund <> amount
                            OR close_index IS DISTINCT FROM final_index
                            OR state NOT IN ('CLOSED_EARLY', 'FINALIZED'))) $q$);
END
$$;
