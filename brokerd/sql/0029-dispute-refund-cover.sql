-- A dispute refund covered like a liability (protocol.md section 1 G2, section 7;
-- docs/disputes.md "Refund").
--
-- mp_dispute_refund of 0027 moved the dispute's whole amount from the merchant's pending
-- account. When liabilities (mp_collect_liability) had already taken this channel's credit of
-- that merchant, the pending account could be short: mp_post's CHECK failed, the dispute stayed
-- OPEN, its channel never finalised and, the due list being oldest first, a batch of such
-- failures blocked every later refund. Now the refund is taken, in one 'dispute_refund'
-- transfer to the payout account,
--   1. from the merchant's pending account, at most what this channel's credit to it still
--      holds there (credited - mp_pending_collected: liabilities and refunded disputes),
--   2. then from the merchant's bond account (merchants.bond follows),
--   3. then from the currency's loss reserve (an unsettled liability of the merchant: its bond
--      may not be released below it, mp_merchant_unsettled),
-- recorded in disputes.from_pending / from_bond / from_reserve (their sum = refunded). Only
-- from_pending counts as taken from the channel's credit (mp_pending_collected, the audit's
-- channel figures and merchant_pending_is_unfinalised_credit). When the three cannot cover the
-- amount, or the refund fails otherwise, nothing moves, the dispute stays OPEN with
-- refund_tried_at / refund_detail set, and mp_dispute_due lists it after the disputes not yet
-- tried (then the oldest tried first), so a failing refund never blocks the others.
--
--   OPEN --mp_dispute_refund, covered--> REFUNDED
--   OPEN --mp_dispute_refund, not covered or failed--> OPEN (refund_tried_at = now; retried
--         by a later pass after the untried ones)

ALTER TABLE disputes
    ADD COLUMN from_pending bigint NOT NULL DEFAULT 0 CHECK (from_pending >= 0),
    ADD COLUMN from_bond bigint NOT NULL DEFAULT 0 CHECK (from_bond >= 0),
    ADD COLUMN from_reserve bigint NOT NULL DEFAULT 0 CHECK (from_reserve >= 0),
    ADD COLUMN refund_tried_at bigint,
    ADD COLUMN refund_detail text;
UPDATE disputes SET from_pending = refunded WHERE state = 'REFUNDED';
ALTER TABLE disputes ADD CONSTRAINT disputes_refund_sources
    CHECK (from_pending + from_bond + from_reserve = refunded);

-- The parts of p_amount a refund of merchant p_mid's dispute on channel p_channel takes from
-- its pending credit of that channel, its bond and the loss reserve; `short` > 0 when the
-- three cannot cover it. Reads the balances under the caller's locks.
CREATE FUNCTION mp_dispute_refund_cover(p_mid bytea, p_channel bytea, p_amount bigint)
RETURNS TABLE (from_pending bigint, from_bond bigint, from_reserve bigint, short bigint)
LANGUAGE plpgsql AS $$
DECLARE
    m      merchants%ROWTYPE;
    v_left bigint := p_amount;
    v_pend bigint;
    v_bond bigint := 0;
    v_rsv  bigint := 0;
BEGIN
    SELECT * INTO m FROM merchants WHERE merchant_id = p_mid FOR UPDATE;
    SELECT greatest(0, least(v_left, coalesce(sum(e.credited_amount), 0)
                                     - mp_pending_collected(p_mid, p_channel)))
      INTO v_pend FROM epochs e WHERE e.channel_id = p_channel AND e.merchant_id = p_mid;
    v_left := v_left - v_pend;
    IF v_left > 0 AND m.bond_account IS NOT NULL THEN
        SELECT least(v_left, a.balance) INTO v_bond FROM accounts a
         WHERE a.id = m.bond_account FOR UPDATE;
        v_left := v_left - v_bond;
    END IF;
    IF v_left > 0 THEN
        SELECT least(v_left, a.balance) INTO v_rsv FROM accounts a
         WHERE a.id = mp_system_account_id('loss_reserve', m.currency) FOR UPDATE;
        v_rsv := coalesce(v_rsv, 0);
        v_left := v_left - v_rsv;
    END IF;
    RETURN QUERY SELECT v_pend, v_bond, v_rsv, v_left;
END
$$;

-- Refund one OPEN dispute past its answer time (the covered parts, above), under its
-- channel's and its own row lock. (true, NULL): REFUNDED now. (false, NULL): no longer OPEN or
-- not due, nothing changes. (false, detail): not covered or failed; nothing moved, the
-- attempt recorded (refund_tried_at, refund_detail).
DROP FUNCTION mp_dispute_refund(bytea, bytea, bigint);
CREATE FUNCTION mp_dispute_refund(p_channel_id bytea, p_order_ref bytea, p_now bigint)
RETURNS TABLE (refunded boolean, detail text)
LANGUAGE plpgsql AS $$
DECLARE
    v_d   disputes%ROWTYPE;
    v_c   record;
    v_txn bigint;
    v_err text;
BEGIN
    -- The channel first (the order every writer of this channel locks in), then the dispute.
    PERFORM 1 FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref FOR UPDATE;
    IF NOT FOUND OR v_d.state <> 'OPEN' OR v_d.answer_by > p_now THEN
        RETURN QUERY SELECT false, NULL::text;
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO v_c FROM mp_dispute_refund_cover(v_d.merchant_id, p_channel_id, v_d.amount);
        IF v_c.short > 0 THEN
            v_err := 'not covered: short ' || v_c.short || ' of ' || v_d.amount
                     || ' (channel credit left ' || v_c.from_pending || ', bond '
                     || v_c.from_bond || ', loss reserve ' || v_c.from_reserve
                     || '); retried after loss_reserve.fund';
        ELSE
            INSERT INTO transfers (kind, ref) VALUES ('dispute_refund', p_channel_id)
            RETURNING txn_id INTO v_txn;
            PERFORM mp_dispute_refund_post(v_txn, v_d, v_c.from_pending, v_c.from_bond,
                                           v_c.from_reserve);
            UPDATE disputes d
               SET state = 'REFUNDED', refunded = v_d.amount, refund_txn = v_txn,
                   refunded_at = p_now, from_pending = v_c.from_pending,
                   from_bond = v_c.from_bond, from_reserve = v_c.from_reserve,
                   refund_detail = NULL
             WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_err := 'failed: ' || SQLERRM;
    END;
    IF v_err IS NOT NULL THEN
        UPDATE disputes d SET refund_tried_at = p_now, refund_detail = v_err
         WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        RETURN QUERY SELECT false, v_err;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, NULL::text;
END
$$;

-- The ledger rows of a covered refund: each non-zero part to the payout account.
CREATE FUNCTION mp_dispute_refund_post(p_txn bigint, p_d disputes, p_pend bigint, p_bond bigint,
                                       p_rsv bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m merchants%ROWTYPE;
BEGIN
    SELECT * INTO m FROM merchants WHERE merchant_id = p_d.merchant_id;
    IF p_pend > 0 THEN
        PERFORM mp_post(p_txn, m.pending_account, p_d.payout_account, p_pend);
    END IF;
    IF p_bond > 0 THEN
        PERFORM mp_post(p_txn, m.bond_account, p_d.payout_account, p_bond);
        UPDATE merchants SET bond = bond - p_bond WHERE merchant_id = p_d.merchant_id;
    END IF;
    IF p_rsv > 0 THEN
        PERFORM mp_post(p_txn, mp_system_account_id('loss_reserve', m.currency),
                        p_d.payout_account, p_rsv);
    END IF;
END
$$;

-- Up to p_limit OPEN disputes past answer_by: the ones never tried first (oldest answer time
-- first), then the tried ones, the longest ago first.
CREATE OR REPLACE FUNCTION mp_dispute_due(p_now bigint, p_limit int)
RETURNS TABLE (channel_id bytea, order_ref bytea)
LANGUAGE sql STABLE AS $$
    SELECT d.channel_id, d.order_ref FROM disputes d
     WHERE d.state = 'OPEN' AND d.answer_by <= p_now
     ORDER BY coalesce(d.refund_tried_at, -1), d.answer_by, d.channel_id, d.order_ref
     LIMIT greatest(p_limit, 1)
$$;

-- Pending credit of a merchant from a channel already taken: fork liabilities (0014) and the
-- part of refunded disputes taken from pending. Finalisation releases the rest.
CREATE OR REPLACE FUNCTION mp_pending_collected(p_merchant bytea, p_channel bytea)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ((SELECT coalesce(sum(s.amount), 0) FROM liability_sources s
              WHERE s.merchant_id = p_merchant AND s.channel_id = p_channel)
            + (SELECT coalesce(sum(d.from_pending), 0) FROM disputes d
                WHERE d.merchant_id = p_merchant AND d.channel_id = p_channel))::bigint
$$;

-- A merchant's unsettled liabilities: what the loss reserve paid for it, for forks and for
-- dispute refunds. A bond release may not leave the bond below this (mp_bond_move).
CREATE OR REPLACE FUNCTION mp_merchant_unsettled(p_merchant_id bytea) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ((SELECT coalesce(sum(l.from_reserve), 0) FROM liabilities l
              WHERE l.liable_mid = p_merchant_id)
            + (SELECT coalesce(sum(d.from_reserve), 0) FROM disputes d
                WHERE d.merchant_id = p_merchant_id))::bigint
$$;

-- The audit's channel figures: `collected` counts the pending part of refunded disputes.
CREATE OR REPLACE FUNCTION mp_audit_channel_figures()
RETURNS TABLE (channel_id bytea, state text, n int, unit_value bigint, face numeric,
               escrow numeric, close_index int, early_refund bigint, into_escrow numeric,
               out_escrow numeric, out_redeem numeric, out_other numeric,
               out_refunded numeric, out_unclaimed numeric, epoch_credit numeric,
               epoch_units numeric, epoch_max_end int, forked boolean, excess numeric,
               collected numeric, owed numeric, l_refund numeric, n_refund bigint,
               l_unclaimed numeric, l_release numeric, l_early numeric, n_early bigint)
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT d.channel_id, sum(d.from_pending) AS taken FROM disputes d
                GROUP BY d.channel_id)
    SELECT f.channel_id, f.state, f.n, f.unit_value, f.face, f.escrow, f.close_index,
           f.early_refund, f.into_escrow, f.out_escrow, f.out_redeem, f.out_other,
           f.out_refunded, f.out_unclaimed, f.epoch_credit, f.epoch_units, f.epoch_max_end,
           f.forked, f.excess, f.collected + coalesce(d.taken, 0), f.owed, f.l_refund,
           f.n_refund, f.l_unclaimed, f.l_release, f.l_early, f.n_early
      FROM mp_audit_channel_figures_0023() f LEFT JOIN d ON d.channel_id = f.channel_id
$$;

-- The audit of 0028 (kept as mp_audit_0028) with two checks replaced in place:
--   merchant_pending_is_unfinalised_credit: refunded disputes take their from_pending only;
--   dispute_refunds_match_ledger: a REFUNDED dispute's 'dispute_refund' transfer has, to its
--     payout account, from_pending from the merchant's pending account, from_bond from its
--     bond account, from_reserve from the loss reserve and nothing else; refunded = amount =
--     their sum; every 'dispute_refund' transfer is a dispute's.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0028;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' AS $$
SELECT coalesce(n.check_name, o.check_name), coalesce(n.ok, o.ok),
       coalesce(n.detail, o.detail), coalesce(n.offenders, o.offenders)
  FROM mp_audit_0028() WITH ORDINALITY AS o(check_name, ok, detail, offenders, pos)
  LEFT JOIN (
    SELECT * FROM mp_audit_check('merchant_pending_is_unfinalised_credit', $q$
        WITH credit AS (
            SELECT rr.merchant_id, sum(rr.credited_amount::numeric) AS amount
              FROM redeem_results rr JOIN channels c ON c.channel_id = rr.channel_id
             WHERE rr.txn_id IS NOT NULL AND c.state <> 'FINALIZED'
             GROUP BY rr.merchant_id),
        taken AS (
            SELECT t.merchant_id, sum(t.amount) AS amount FROM (
                SELECT s.merchant_id, s.amount::numeric AS amount
                  FROM liability_sources s JOIN channels c ON c.channel_id = s.channel_id
                 WHERE c.state <> 'FINALIZED'
                UNION ALL
                SELECT d.merchant_id, d.from_pending::numeric
                  FROM disputes d JOIN channels c ON c.channel_id = d.channel_id
                 WHERE c.state <> 'FINALIZED' AND d.from_pending > 0) t
             GROUP BY t.merchant_id)
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (pending ' || a.balance
               || ', credited claims not finalised ' || coalesce(cr.amount, 0)
               || ', collected from them ' || coalesce(tk.amount, 0) || ')' AS what
          FROM merchants m JOIN accounts a ON a.id = m.pending_account
          LEFT JOIN credit cr ON cr.merchant_id = m.merchant_id
          LEFT JOIN taken tk ON tk.merchant_id = m.merchant_id
         WHERE a.balance::numeric <> coalesce(cr.amount, 0) - coalesce(tk.amount, 0) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('dispute_refunds_match_ledger', $q$
        WITH rows AS (
            SELECT x.txn_id, count(l.entry_id) AS n, sum(l.amount) AS amount,
                   array_agg(DISTINCT l.credit_account) AS credits,
                   array_agg(l.debit_account) AS debits, array_agg(l.amount) AS amounts
              FROM transfers x LEFT JOIN ledger l ON l.txn_id = x.txn_id
             WHERE x.kind = 'dispute_refund' GROUP BY x.txn_id),
        parts AS (
            SELECT r.txn_id, r.n, r.amount, r.credits,
                   coalesce(sum(u.amt) FILTER (WHERE u.deb = m.pending_account), 0) AS pend,
                   coalesce(sum(u.amt) FILTER (WHERE u.deb = m.bond_account), 0) AS bond,
                   coalesce(sum(u.amt) FILTER (WHERE u.deb = mp_system_account_id(
                                                   'loss_reserve', m.currency)), 0) AS rsv
              FROM rows r JOIN disputes d ON d.refund_txn = r.txn_id
              JOIN merchants m ON m.merchant_id = d.merchant_id
              LEFT JOIN LATERAL unnest(r.debits, r.amounts) AS u(deb, amt) ON true
             GROUP BY r.txn_id, r.n, r.amount, r.credits)
        SELECT encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') AS id,
               encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') || ' ('
               || d.state || ', amount ' || d.amount || ', refunded ' || d.refunded
               || ' = pending ' || d.from_pending || ' + bond ' || d.from_bond
               || ' + reserve ' || d.from_reserve || ', ledger '
               || coalesce(p.amount::text, 'none') || ' in ' || coalesce(p.n, 0)
               || ' rows: pending ' || coalesce(p.pend, 0) || ', bond ' || coalesce(p.bond, 0)
               || ', reserve ' || coalesce(p.rsv, 0) || ')' AS what
          FROM disputes d LEFT JOIN parts p ON p.txn_id = d.refund_txn
         WHERE (d.state = 'REFUNDED'
                AND (p.txn_id IS NULL OR p.amount <> d.amount OR d.refunded <> d.amount
                     OR p.credits <> ARRAY[d.payout_account] OR p.pend <> d.from_pending
                     OR p.bond <> d.from_bond OR p.rsv <> d.from_reserve
                     OR p.pend + p.bond + p.rsv <> p.amount))
            OR (d.state <> 'REFUNDED' AND (d.refund_txn IS NOT NULL OR d.refunded <> 0))
        UNION ALL
        SELECT 'txn ' || r.txn_id, 'dispute_refund transfer ' || r.txn_id || ' of no dispute'
          FROM rows r
         WHERE NOT EXISTS (SELECT 1 FROM disputes d WHERE d.refund_txn = r.txn_id) $q$)
  ) AS n ON n.check_name = o.check_name
 ORDER BY o.pos;
$$;
