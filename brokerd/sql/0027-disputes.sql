-- Disputes (protocol.md section 6 "Fair exchange", statement 16; docs/disputes.md).
--
-- A wallet that paid an Offer's pay_index and got no key files a Dispute. brokerd verifies
-- the statement, the Offer, the custody and w_pay_index (brokerd/dispute*.c), then
-- mp_dispute_open, in one transaction under the channel's row lock, re-checks the time and
-- the payout account, credits the payword at pay_index to the Offer's merchant exactly as a
-- redeemed claim (mp_redeem itself, under a redeem_id derived from the dispute key, the
-- Dispute's bytes as its statement) and records the dispute OPEN. The merchant answers with
-- the key (mp_dispute_key: KEY_RELEASED, it keeps its credit); an OPEN dispute past answer_by
-- is refunded by the sweep (mp_dispute_refund_due: `amount` from the merchant's pending credit
-- to the payout account, transfer kind 'dispute_refund', REFUNDED). A channel with an OPEN
-- dispute is not finalised (mp_sweep_due, mp_sweep_channel); its finalisation releases the
-- merchant's credit less the refunded disputes (mp_pending_collected).
--
--   (none) --mp_dispute_open--> OPEN --mp_dispute_key (SHA-256(key) = key_hash)--> KEY_RELEASED
--                                 \--mp_dispute_refund_due (answer_by passed)------> REFUNDED

CREATE TABLE disputes (
    channel_id     bytea  NOT NULL REFERENCES channels (channel_id),
    order_ref      bytea  NOT NULL CHECK (length(order_ref) = 16),
    stmt_hash      bytea  NOT NULL CHECK (length(stmt_hash) = 32),
    stmt           bytea  NOT NULL,
    merchant_id    bytea  NOT NULL REFERENCES merchants (merchant_id),
    redeem_id      bytea  NOT NULL CHECK (length(redeem_id) = 16),
    seg_seq        int    NOT NULL CHECK (seg_seq >= 0),
    hseq           int    NOT NULL CHECK (hseq >= 0),
    after_index    int    NOT NULL CHECK (after_index >= 1),
    pay_index      int    NOT NULL CHECK (pay_index > after_index),
    amount         bigint NOT NULL CHECK (amount > 0),
    key_hash       bytea  NOT NULL CHECK (length(key_hash) = 32),
    payout_account bytea  NOT NULL REFERENCES accounts (id),
    state          text   NOT NULL CHECK (state IN ('OPEN', 'KEY_RELEASED', 'REFUNDED')),
    opened_at      bigint NOT NULL,
    answer_by      bigint NOT NULL,
    key            bytea  CHECK (length(key) = 32),
    answered_at    bigint,
    refunded       bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    refund_txn     bigint UNIQUE REFERENCES transfers (txn_id),
    refunded_at    bigint,
    PRIMARY KEY (channel_id, order_ref),
    CONSTRAINT disputes_state_fields CHECK (
        (state = 'KEY_RELEASED') = (key IS NOT NULL) AND
        (state = 'REFUNDED') = (refund_txn IS NOT NULL) AND
        (state = 'REFUNDED' OR refunded = 0))
);
CREATE INDEX disputes_open_due_idx ON disputes (answer_by) WHERE state = 'OPEN';
CREATE INDEX disputes_open_merchant_idx ON disputes (merchant_id, answer_by)
    WHERE state = 'OPEN';

-- The redeem_id under which a dispute's evidence is redeemed for its merchant.
CREATE FUNCTION mp_dispute_redeem_id(p_channel_id bytea, p_order_ref bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT substring(sha256(convert_to('MPAY1-DISPUTE', 'UTF8') || p_channel_id || p_order_ref)
                     FROM 1 FOR 16)
$$;

-- What brokerd needs before verifying a Dispute: the channel, the owner key of the Offer's
-- segment (not void) and the Offer's merchant's key. No row if the channel is unknown.
CREATE FUNCTION mp_dispute_lookup(p_channel_id bytea, p_seg_seq int, p_merchant_id bytea)
RETURNS TABLE (n int, unit_value bigint, owner_pk bytea, merchant_pk bytea)
LANGUAGE sql STABLE AS $$
    SELECT c.n, c.unit_value, s.owner_pk, m.merchant_pk
      FROM channels c
      LEFT JOIN segments s ON s.channel_id = c.channel_id AND s.seg_seq = p_seg_seq
                          AND NOT s.voided
      LEFT JOIN merchants m ON m.merchant_id = p_merchant_id
     WHERE c.channel_id = p_channel_id
$$;

-- The answer for a stored dispute (status 1 for the same statement, 16 + its bytes for
-- another).
CREATE FUNCTION mp_dispute_answer(p_d disputes, p_stmt_hash bytea)
RETURNS TABLE (status int, detail text, state text, key bytea, refunded bigint,
               answer_by bigint, stored_stmt bytea)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_d.stmt_hash = p_stmt_hash THEN 1 ELSE 16 END,
           CASE WHEN p_d.stmt_hash = p_stmt_hash THEN 'dispute already recorded'
                ELSE 'another Dispute recorded for this channel and order_ref' END,
           p_d.state, p_d.key, p_d.refunded, p_d.answer_by,
           CASE WHEN p_d.stmt_hash = p_stmt_hash THEN NULL ELSE p_d.stmt END
$$;

-- The checks that need no verification: a stored dispute of that key (its answer), the time
-- window (now >= deadline, now <= deadline + window, now < redeem_until, not FINALIZED) and
-- the payout account (a customer account of the channel's currency). Status 0: go on.
CREATE FUNCTION mp_dispute_check(p_channel_id bytea, p_order_ref bytea, p_stmt_hash bytea,
                                 p_deadline bigint, p_payout bytea, p_window bigint,
                                 p_now bigint)
RETURNS TABLE (status int, detail text, state text, key bytea, refunded bigint,
               answer_by bigint, stored_stmt bytea)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_d  disputes%ROWTYPE;
    v_ch channels%ROWTYPE;
BEGIN
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM mp_dispute_answer(v_d, p_stmt_hash);
        RETURN;
    END IF;
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'unknown channel'::text, NULL::text, NULL::bytea,
                            NULL::bigint, NULL::bigint, NULL::bytea;
    ELSIF p_now < p_deadline THEN
        RETURN QUERY SELECT 12, ('the merchant has until the Offer''s deadline '
                                 || p_deadline)::text, NULL::text, NULL::bytea, NULL::bigint,
                            p_deadline, NULL::bytea;
    ELSIF p_now > p_deadline + p_window THEN
        RETURN QUERY SELECT 13, ('disputes of this Offer ended at ' || p_deadline + p_window)
                                ::text, NULL::text, NULL::bytea, NULL::bigint, NULL::bigint,
                            NULL::bytea;
    ELSIF p_now >= v_ch.redeem_until OR v_ch.state = 'FINALIZED' THEN
        RETURN QUERY SELECT 13, ('the channel''s redemption ended at ' || v_ch.redeem_until)
                                ::text, NULL::text, NULL::bytea, NULL::bigint, NULL::bigint,
                            NULL::bytea;
    ELSIF NOT EXISTS (SELECT 1 FROM accounts a
                       WHERE a.id = p_payout AND a.kind = 'customer'
                         AND a.currency = v_ch.currency) THEN
        RETURN QUERY SELECT 18, 'payout account is not a customer account of the channel''s '
                                'currency'::text, NULL::text, NULL::bytea, NULL::bigint,
                            NULL::bigint, NULL::bytea;
    ELSE
        RETURN QUERY SELECT 0, ''::text, NULL::text, NULL::bytea, NULL::bigint, NULL::bigint,
                            NULL::bytea;
    END IF;
END
$$;

-- Record a verified dispute, in one transaction under the channel's row lock: the checks of
-- mp_dispute_check again, the Offer's signer's epoch p_hseq (its first-branch epoch, or the
-- one p_opener names) must start at or below after_index, then the payword at pay_index is
-- redeemed for the merchant by mp_redeem (one claim, pre-status 0); a claim it refuses
-- refuses the dispute and nothing of it stays (the subtransaction is rolled back). Then the
-- dispute row, OPEN, answer_by = p_now + p_answer_s.
CREATE FUNCTION mp_dispute_open(p_channel_id bytea, p_order_ref bytea, p_stmt_hash bytea,
                                p_stmt bytea, p_merchant_id bytea, p_seg_seq int, p_hseq int,
                                p_after int, p_pay int, p_w bytea, p_key_hash bytea,
                                p_deadline bigint, p_payout bytea, p_window bigint,
                                p_answer_s bigint, p_now bigint, p_opener bytea)
RETURNS TABLE (status int, detail text, state text, key bytea, refunded bigint,
               answer_by bigint, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch    channels%ROWTYPE;
    v_check record;
    v_start int;
    v_r     record;
    v_rid   bytea := mp_dispute_redeem_id(p_channel_id, p_order_ref);
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    SELECT * INTO v_check FROM mp_dispute_check(p_channel_id, p_order_ref, p_stmt_hash,
                                                p_deadline, p_payout, p_window, p_now);
    IF v_check.status <> 0 THEN
        RETURN QUERY SELECT v_check.status, v_check.detail, v_check.state, v_check.key,
                            v_check.refunded, v_check.answer_by, v_check.stored_stmt;
        RETURN;
    END IF;
    SELECT max(e.start_index) INTO v_start FROM epochs e
     WHERE e.channel_id = p_channel_id AND e.hseq = p_hseq AND e.merchant_id = p_merchant_id
       AND ((p_opener IS NULL AND e.fork_of IS NULL) OR e.fork_of = p_opener);
    IF v_start IS NULL OR v_start > p_after THEN
        RETURN QUERY SELECT 5, 'the Offer''s signer did not hold the epoch containing '
                               'after_index'::text, NULL::text, NULL::bytea, NULL::bigint,
                            NULL::bigint, NULL::bytea;
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO v_r FROM mp_redeem(p_merchant_id, v_rid, p_stmt_hash, ARRAY[p_channel_id],
                                         ARRAY[p_hseq], ARRAY[p_seg_seq], ARRAY[p_pay],
                                         ARRAY[p_w], ARRAY[0], ARRAY[''], p_stmt,
                                         ARRAY[coalesce(p_opener, '\x'::bytea)]);
        IF v_r.conflict OR v_r.replayed OR v_r.status NOT IN (0, 1) THEN
            RAISE EXCEPTION USING ERRCODE = 'MPD01',
                MESSAGE = CASE WHEN v_r.conflict OR v_r.replayed
                               THEN '20:evidence redeem_id already used'
                               ELSE v_r.status || ':' || v_r.detail END;
        END IF;
    EXCEPTION WHEN SQLSTATE 'MPD01' THEN
        RETURN QUERY SELECT split_part(SQLERRM, ':', 1)::int,
                            ('pay_index as a claim: ' || substr(SQLERRM, strpos(SQLERRM, ':') + 1))
                            ::text, NULL::text, NULL::bytea, NULL::bigint, NULL::bigint,
                            NULL::bytea;
        RETURN;
    END;
    INSERT INTO disputes (channel_id, order_ref, stmt_hash, stmt, merchant_id, redeem_id,
                          seg_seq, hseq, after_index, pay_index, amount, key_hash,
                          payout_account, state, opened_at, answer_by)
    VALUES (p_channel_id, p_order_ref, p_stmt_hash, p_stmt, p_merchant_id, v_rid, p_seg_seq,
            p_hseq, p_after, p_pay, (p_pay - p_after)::bigint * v_ch.unit_value, p_key_hash,
            p_payout, 'OPEN', p_now, p_now + p_answer_s);
    RETURN QUERY SELECT 0, ''::text, 'OPEN'::text, NULL::bytea, 0::bigint,
                        p_now + p_answer_s, NULL::bytea;
END
$$;

-- The merchant's key (brokerd checked its peer certificate names p_merchant_id):
-- SHA-256(key) = the Offer's key_hash while OPEN and not past answer_by -> KEY_RELEASED (0);
-- the same key again 1; a wrong key 16 (nothing changes); REFUNDED or past answer_by 13;
-- no such dispute of this merchant 17.
CREATE FUNCTION mp_dispute_key(p_merchant_id bytea, p_channel_id bytea, p_order_ref bytea,
                               p_key bytea, p_now bigint)
RETURNS TABLE (status int, detail text, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_d disputes%ROWTYPE;
BEGIN
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref
       AND d.merchant_id = p_merchant_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'no dispute of this merchant for that channel and order_ref'
                                ::text, NULL::text;
    ELSIF sha256(p_key) <> v_d.key_hash THEN
        RETURN QUERY SELECT 16, 'SHA-256(key) is not the Offer''s key_hash'::text, v_d.state;
    ELSIF v_d.state = 'KEY_RELEASED' THEN
        RETURN QUERY SELECT 1, 'key already released'::text, v_d.state;
    ELSIF v_d.state = 'REFUNDED' THEN
        RETURN QUERY SELECT 13, 'the dispute was refunded'::text, v_d.state;
    ELSIF p_now > v_d.answer_by THEN
        RETURN QUERY SELECT 13, ('the answer time ended at ' || v_d.answer_by)::text,
                            v_d.state;
    ELSE
        UPDATE disputes d SET state = 'KEY_RELEASED', key = p_key, answered_at = p_now
         WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        RETURN QUERY SELECT 0, ''::text, 'KEY_RELEASED'::text;
    END IF;
END
$$;

-- The disputes open against a merchant, oldest answer time first, at most p_limit.
CREATE FUNCTION mp_open_disputes(p_merchant_id bytea, p_limit int)
RETURNS TABLE (channel_id bytea, order_ref bytea, answer_by bigint)
LANGUAGE sql STABLE AS $$
    SELECT d.channel_id, d.order_ref, d.answer_by FROM disputes d
     WHERE d.merchant_id = p_merchant_id AND d.state = 'OPEN'
     ORDER BY d.answer_by, d.channel_id, d.order_ref
     LIMIT greatest(p_limit, 1)
$$;

-- Refund one OPEN dispute past its answer time, under its row lock: `amount` from the
-- merchant's pending account to the payout account (transfer 'dispute_refund', ref the
-- channel), REFUNDED. A dispute no longer OPEN or not due: false, nothing changes.
CREATE FUNCTION mp_dispute_refund(p_channel_id bytea, p_order_ref bytea, p_now bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_d   disputes%ROWTYPE;
    v_txn bigint;
BEGIN
    -- The channel first (the order every writer of this channel locks in), then the dispute.
    PERFORM 1 FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref FOR UPDATE;
    IF NOT FOUND OR v_d.state <> 'OPEN' OR v_d.answer_by > p_now THEN
        RETURN false;
    END IF;
    INSERT INTO transfers (kind, ref) VALUES ('dispute_refund', p_channel_id)
    RETURNING txn_id INTO v_txn;
    PERFORM mp_post(v_txn, (SELECT m.pending_account FROM merchants m
                             WHERE m.merchant_id = v_d.merchant_id),
                    v_d.payout_account, v_d.amount);
    UPDATE disputes d
       SET state = 'REFUNDED', refunded = v_d.amount, refund_txn = v_txn, refunded_at = p_now
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
    RETURN true;
END
$$;

-- Up to p_limit OPEN disputes past answer_by, oldest first (the sweep refunds each).
CREATE FUNCTION mp_dispute_due(p_now bigint, p_limit int)
RETURNS TABLE (channel_id bytea, order_ref bytea)
LANGUAGE sql STABLE AS $$
    SELECT d.channel_id, d.order_ref FROM disputes d
     WHERE d.state = 'OPEN' AND d.answer_by <= p_now
     ORDER BY d.answer_by, d.channel_id, d.order_ref
     LIMIT greatest(p_limit, 1)
$$;

-- The sweep skips a channel with an OPEN dispute (protocol.md: a disputed channel is not
-- finalised until the dispute is resolved).
CREATE OR REPLACE FUNCTION mp_sweep_due(p_now bigint, p_after bytea, p_limit int)
RETURNS TABLE (channel_id bytea)
LANGUAGE sql STABLE AS $$
    SELECT c.channel_id FROM channels c
     WHERE c.state <> 'FINALIZED'
       AND c.channel_id > coalesce(p_after, '\x'::bytea)
       AND ((c.state = 'OPEN' AND c.pay_until <= p_now) OR c.finalize_at <= p_now)
       AND NOT (c.finalize_at <= p_now
                AND EXISTS (SELECT 1 FROM disputes d
                             WHERE d.channel_id = c.channel_id AND d.state = 'OPEN'))
     ORDER BY c.channel_id
     LIMIT greatest(p_limit, 1);
$$;

-- mp_sweep_channel of 0015 (kept as mp_sweep_channel_0015), not finalising under an OPEN
-- dispute: under the channel's row lock, 'disputed' and nothing changes.
ALTER FUNCTION mp_sweep_channel(bytea, bigint) RENAME TO mp_sweep_channel_0015;
CREATE FUNCTION mp_sweep_channel(p_channel_id bytea, p_now bigint)
RETURNS TABLE (action text, state text, spent int, refund bigint, unclaimed bigint,
               refund_paid boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch channels%ROWTYPE;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF FOUND AND v_ch.state <> 'FINALIZED' AND v_ch.finalize_at <= p_now
       AND EXISTS (SELECT 1 FROM disputes d
                    WHERE d.channel_id = p_channel_id AND d.state = 'OPEN') THEN
        RETURN QUERY SELECT 'disputed'::text, v_ch.state, NULL::int, NULL::bigint,
                            NULL::bigint, NULL::boolean;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM mp_sweep_channel_0015(p_channel_id, p_now);
END
$$;

-- Pending credit of a merchant from a channel already taken: fork liabilities (0014) and
-- refunded disputes. Finalisation releases the rest.
CREATE OR REPLACE FUNCTION mp_pending_collected(p_merchant bytea, p_channel bytea)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ((SELECT coalesce(sum(s.amount), 0) FROM liability_sources s
              WHERE s.merchant_id = p_merchant AND s.channel_id = p_channel)
            + (SELECT coalesce(sum(d.refunded), 0) FROM disputes d
                WHERE d.merchant_id = p_merchant AND d.channel_id = p_channel))::bigint
$$;

-- The audit's channel figures of 0023 (kept as mp_audit_channel_figures_0023), `collected`
-- counting refunded disputes too: what finalisation releases is the credit less both.
ALTER FUNCTION mp_audit_channel_figures() RENAME TO mp_audit_channel_figures_0023;
CREATE FUNCTION mp_audit_channel_figures()
RETURNS TABLE (channel_id bytea, state text, n int, unit_value bigint, face numeric,
               escrow numeric, close_index int, early_refund bigint, into_escrow numeric,
               out_escrow numeric, out_redeem numeric, out_other numeric,
               out_refunded numeric, out_unclaimed numeric, epoch_credit numeric,
               epoch_units numeric, epoch_max_end int, forked boolean, excess numeric,
               collected numeric, owed numeric, l_refund numeric, n_refund bigint,
               l_unclaimed numeric, l_release numeric, l_early numeric, n_early bigint)
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT d.channel_id, sum(d.refunded) AS refunded FROM disputes d
                GROUP BY d.channel_id)
    SELECT f.channel_id, f.state, f.n, f.unit_value, f.face, f.escrow, f.close_index,
           f.early_refund, f.into_escrow, f.out_escrow, f.out_redeem, f.out_other,
           f.out_refunded, f.out_unclaimed, f.epoch_credit, f.epoch_units, f.epoch_max_end,
           f.forked, f.excess, f.collected + coalesce(d.refunded, 0), f.owed, f.l_refund,
           f.n_refund, f.l_unclaimed, f.l_release, f.l_early, f.n_early
      FROM mp_audit_channel_figures_0023() f LEFT JOIN d ON d.channel_id = f.channel_id
$$;

-- The audit of 0024 (kept as mp_audit_0024) with merchant_pending_is_unfinalised_credit
-- counting refunded disputes as taken from pending (replaced in place, as 0024 replaced its
-- check), and three dispute invariants after the others:
--   dispute_refunds_match_ledger: a REFUNDED dispute has exactly one ledger row in its
--     'dispute_refund' transfer, of its amount, from its merchant's pending account to its
--     payout account, and refunded = amount; every 'dispute_refund' transfer is a dispute's;
--   no_open_dispute_on_finalized_channel;
--   dispute_keys_match_offers: a released key hashes to the Offer's key_hash.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0024;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' AS $$
SELECT a.check_name, a.ok, a.detail, a.offenders FROM (
    SELECT coalesce(n.check_name, o.check_name) AS check_name, coalesce(n.ok, o.ok) AS ok,
           coalesce(n.detail, o.detail) AS detail, coalesce(n.offenders, o.offenders)
           AS offenders, o.pos
      FROM mp_audit_0024() WITH ORDINALITY AS o(check_name, ok, detail, offenders, pos)
      LEFT JOIN mp_audit_check('merchant_pending_is_unfinalised_credit', $q$
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
                SELECT d.merchant_id, d.refunded::numeric
                  FROM disputes d JOIN channels c ON c.channel_id = d.channel_id
                 WHERE c.state <> 'FINALIZED' AND d.refunded > 0) t
             GROUP BY t.merchant_id)
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (pending ' || a.balance
               || ', credited claims not finalised ' || coalesce(cr.amount, 0)
               || ', collected from them ' || coalesce(tk.amount, 0) || ')' AS what
          FROM merchants m JOIN accounts a ON a.id = m.pending_account
          LEFT JOIN credit cr ON cr.merchant_id = m.merchant_id
          LEFT JOIN taken tk ON tk.merchant_id = m.merchant_id
         WHERE a.balance::numeric <> coalesce(cr.amount, 0) - coalesce(tk.amount, 0) $q$)
           AS n ON n.check_name = o.check_name
    UNION ALL
    SELECT x.check_name, x.ok, x.detail, x.offenders,
           1000 + array_position(ARRAY['dispute_refunds_match_ledger',
                                       'no_open_dispute_on_finalized_channel',
                                       'dispute_keys_match_offers'], x.check_name)
      FROM (
        SELECT * FROM mp_audit_check('dispute_refunds_match_ledger', $q$
            WITH rows AS (
                SELECT x.txn_id, count(l.entry_id) AS n, sum(l.amount) AS amount,
                       (array_agg(l.debit_account))[1] AS debit,
                       (array_agg(l.credit_account))[1] AS credit
                  FROM transfers x LEFT JOIN ledger l ON l.txn_id = x.txn_id
                 WHERE x.kind = 'dispute_refund' GROUP BY x.txn_id)
            SELECT encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') AS id,
                   encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') || ' ('
                   || d.state || ', amount ' || d.amount || ', refunded ' || d.refunded
                   || ', ledger ' || coalesce(r.amount::text, 'none') || ' in '
                   || coalesce(r.n, 0) || ' rows)' AS what
              FROM disputes d JOIN merchants m ON m.merchant_id = d.merchant_id
              LEFT JOIN rows r ON r.txn_id = d.refund_txn
             WHERE (d.state = 'REFUNDED'
                    AND (r.txn_id IS NULL OR r.n <> 1 OR r.amount <> d.amount
                         OR d.refunded <> d.amount OR r.debit <> m.pending_account
                         OR r.credit <> d.payout_account))
                OR (d.state <> 'REFUNDED' AND (d.refund_txn IS NOT NULL OR d.refunded <> 0))
            UNION ALL
            SELECT 'txn ' || r.txn_id, 'dispute_refund transfer ' || r.txn_id || ' of no dispute'
              FROM rows r
             WHERE NOT EXISTS (SELECT 1 FROM disputes d WHERE d.refund_txn = r.txn_id) $q$)
        UNION ALL
        SELECT * FROM mp_audit_check('no_open_dispute_on_finalized_channel', $q$
            SELECT encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') AS id,
                   encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex')
                   || ' (OPEN on a FINALIZED channel)' AS what
              FROM disputes d JOIN channels c ON c.channel_id = d.channel_id
             WHERE d.state = 'OPEN' AND c.state = 'FINALIZED' $q$)
        UNION ALL
        SELECT * FROM mp_audit_check('dispute_keys_match_offers', $q$
            SELECT encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex') AS id,
                   encode(d.channel_id, 'hex') || '/' || encode(d.order_ref, 'hex')
                   || ' (released key does not hash to key_hash)' AS what
              FROM disputes d
             WHERE d.state = 'KEY_RELEASED' AND sha256(d.key) <> d.key_hash $q$)) x) a
 ORDER BY a.pos;
$$;
