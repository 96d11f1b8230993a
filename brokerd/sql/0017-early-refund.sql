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
RETURNS TABLE (status int, detail text, not_before bigint, refund bigint,
               payout_account bytea, spent int, unclaimed bigint, refunded_at bigint,
               stored_stmt bytea)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status, p_detail, NULL::bigint, p_r.amount, p_r.payout_account_id, p_r.spent,
           0::bigint, p_r.answered_at, NULL::bytea;
$$;

-- A refusal that stores nothing.
CREATE FUNCTION mp_early_refund_refused(p_status int, p_detail text)
RETURNS TABLE (status int, detail text, not_before bigint, refund bigint,
               payout_account bytea, spent int, unclaimed bigint, refunded_at bigint,
               stored_stmt bytea)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status, p_detail, NULL::bigint, NULL::bigint, NULL::bytea, NULL::int,
           NULL::bigint, NULL::bigint, NULL::bytea;
$$;

-- The early refund, its Close verified by brokerd (p_hseq: the epoch the Close ends, as the
-- custody chain brokerd verified says; p_final_index its index). In order:
--   unknown channel 17;
--   refund_id stored: same stmt_hash 1 + the result, other bytes 16 + the stored statement;
--   the channel already closed early (another refund_id): with the same Close 1 + the stored
--   result, with another Close 16 + the stored Close;
--   FINALIZED 13 (TOO_LATE: the RefundRequest without a Close answers finalisation's refund);
--   seg_seq not the last segment 8; a Handoff above p_hseq stored 6 (HANDED_OFF: the Close
--   ends an epoch that was handed on); no payout account recorded and none (valid) named 2/18;
--   otherwise the refund is paid, the channel is CLOSED_EARLY: 0 + the result.
CREATE FUNCTION mp_refund_early(p_refund_id bytea, p_channel_id bytea, p_seg_seq int,
                                p_stmt_hash bytea, p_stmt bytea, p_payout bytea,
                                p_close_hash bytea, p_close bytea, p_hseq int,
                                p_final_index int, p_now bigint)
RETURNS TABLE (status int, detail text, not_before bigint, refund bigint,
               payout_account bytea, spent int, unclaimed bigint, refunded_at bigint,
               stored_stmt bytea)
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
                            NULL::bigint, NULL::bytea, NULL::int, NULL::bigint, NULL::bigint,
                            v_r.stmt;
        RETURN;
    END IF;
    IF NOT FOUND THEN
        SELECT * INTO v_r FROM early_refunds r WHERE r.channel_id = p_channel_id;
        IF FOUND AND v_r.close_hash <> p_close_hash THEN
            RETURN QUERY SELECT 16, 'the channel was closed early with another Close'::text,
                                NULL::bigint, NULL::bigint, NULL::bytea, NULL::int,
                                NULL::bigint, NULL::bigint, v_r.close;
            RETURN;
        END IF;
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

-- ---- mp_redeem, split into helpers (one concern each) ----
-- mp_redeem as in 0014 with one change: a claim above the channel's stored close_index (the
-- Close of an early refund, docs/close.md) is refused OUT_OF_RANGE, and when it is the closer's
-- own epoch the conflict is recorded (claim_above_handoff, evidence the stored Close and the
-- Redeem), as brokerd does for a claim that carries the Close. Claims at or below it, by any
-- holder, are credited as before. A later migration re-creates only the helper it changes
-- (brokerd/sql/README.md).
--
--   mp_redeem: arrays checked -> mp_redeem_replay (a stored redeem_id) -> mp_redeem_lock
--   -> per claim: mp_redeem_claim (= mp_redeem_judge, then mp_redeem_credit) -> result stored

-- A stored (merchant, redeem_id): its rows replayed (same hash) or the CONFLICT row; no row if
-- the id was claimed now (the caller goes on).
CREATE FUNCTION mp_redeem_replay(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
                                 p_stmt bytea)
RETURNS TABLE (replayed boolean, conflict boolean, pos int, status int, credited_end int,
               credited_amount bigint, detail text, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_hash   bytea;
    v_stored bytea;
BEGIN
    -- Claim the redeem_id; a concurrent call with the same id waits here, then replays.
    INSERT INTO redeems (merchant_id, redeem_id, stmt_hash, stmt)
    VALUES (p_merchant_id, p_redeem_id, p_stmt_hash, p_stmt)
    ON CONFLICT (merchant_id, redeem_id) DO NOTHING;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT r.stmt_hash, r.stmt INTO v_hash, v_stored FROM redeems r
     WHERE r.merchant_id = p_merchant_id AND r.redeem_id = p_redeem_id;
    IF v_hash = p_stmt_hash THEN
        RETURN QUERY
        SELECT true, false, rr.pos, rr.status, rr.credited_end, rr.credited_amount, rr.detail,
               NULL::bytea
          FROM redeem_results rr
         WHERE rr.merchant_id = p_merchant_id AND rr.redeem_id = p_redeem_id
         ORDER BY rr.pos;
    ELSE
        RETURN QUERY SELECT false, true, NULL::int, 16, NULL::int, NULL::bigint,
                            'redeem_id used by another Redeem'::text, v_stored;
    END IF;
END
$$;

-- Lock every channel the Redeem may credit, in one global order, before touching any account:
-- concurrent redeems then cannot deadlock on escrow or pending accounts.
CREATE FUNCTION mp_redeem_lock(p_channel_ids bytea[], p_pre_status int[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM channels c
      WHERE c.channel_id = ANY (ARRAY(SELECT q.cid
                                        FROM unnest(p_channel_ids, p_pre_status) AS q(cid, st)
                                       WHERE q.st = 0))
      ORDER BY c.channel_id
      FOR NO KEY UPDATE;
END
$$;

-- A claim above the channel's Close (close_index): OUT_OF_RANGE detail, or NULL. A claim on
-- the epoch the Close ended is the closer's own claim above its Close: recorded as a conflict
-- (liable: the claimant; evidence: the stored Close and the Redeem).
CREATE FUNCTION mp_redeem_close_bound(p_ch channels, p_ep epochs, p_idx int,
                                      p_redeem_stmt bytea)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_r early_refunds%ROWTYPE;
BEGIN
    IF p_ch.close_index IS NULL OR p_idx <= p_ch.close_index THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_r FROM early_refunds r WHERE r.channel_id = p_ch.channel_id;
    IF FOUND AND v_r.hseq = p_ep.hseq AND p_ep.fork_of IS NULL THEN
        PERFORM mp_conflict_add('claim_above_handoff', p_ch.channel_id, p_ep.hseq,
                                p_ep.merchant_id, v_r.close, p_redeem_stmt, p_ep.merchant_id,
                                p_idx, 'claim at ' || p_idx || ' in epoch ' || p_ep.hseq
                                || ' above the claimant''s own Close at ' || p_ch.close_index);
    END IF;
    RETURN 'claim at ' || p_idx || ' above the channel''s Close at index ' || p_ch.close_index;
END
$$;

-- The checks of one claim before any money moves, on the locked channel: status 0 (go on to
-- the credit) or the refusal. ep/sg are the claimant's epoch of the claimed hseq (a fork
-- epoch when it holds one) and the claimed segment, read here.
CREATE FUNCTION mp_redeem_judge(p_merchant_id bytea, p_cid bytea, p_h int, p_seg int,
                                p_idx int, p_w bytea, p_redeem_stmt bytea,
                                OUT status int, OUT detail text, OUT ch channels,
                                OUT ep epochs, OUT credited_end int)
LANGUAGE plpgsql AS $$
DECLARE
    v_sg  segments%ROWTYPE;
    v_cap int;
    v_why text;
BEGIN
    detail := '';
    -- The credited end reported with a refusal: that of the claimed epoch if it is this
    -- merchant's, else 0.
    SELECT e.credited_end INTO credited_end FROM epochs e
     WHERE e.channel_id = p_cid AND e.hseq = p_h AND e.merchant_id = p_merchant_id;
    credited_end := coalesce(credited_end, 0);
    SELECT * INTO ch FROM channels c WHERE c.channel_id = p_cid;
    IF NOT FOUND THEN
        status := 17; detail := 'unknown channel'; RETURN;
    END IF;
    IF ch.state = 'FINALIZED' THEN
        status := 13; detail := 'channel finalized'; RETURN;
    END IF;
    SELECT * INTO ep FROM epochs e
     WHERE e.channel_id = p_cid AND e.hseq = p_h
     ORDER BY e.merchant_id = p_merchant_id DESC, e.fork_of IS NULL DESC
     LIMIT 1 FOR UPDATE;
    IF NOT FOUND OR ep.merchant_id <> p_merchant_id THEN
        status := 5; detail := 'not the holder of this epoch'; RETURN;
    END IF;
    credited_end := ep.credited_end;
    SELECT * INTO v_sg FROM segments s WHERE s.channel_id = p_cid AND s.seg_seq = p_seg;
    IF NOT FOUND THEN
        status := 12; detail := 'segment unknown'; RETURN;
    END IF;
    SELECT s.seg_start INTO v_cap FROM segments s
     WHERE s.channel_id = p_cid AND s.seg_seq = p_seg + 1 AND NOT s.voided;
    IF v_sg.voided THEN
        status := 16;
        detail := 'segment void: its Cap was signed after its signer''s own Handoff';
    ELSIF p_idx IS NULL OR p_idx < v_sg.seg_start OR p_idx > v_sg.seg_start::bigint + v_sg.len
          OR p_idx > ch.n OR p_idx > v_cap THEN
        status := 10; detail := 'index outside its segment';
    ELSIF p_idx < ep.start_index OR p_idx > coalesce(ep.end_index, ch.n) THEN
        status := 10; detail := 'index outside the epoch';
    ELSE
        v_why := mp_redeem_close_bound(ch, ep, p_idx, p_redeem_stmt);
        IF v_why IS NOT NULL THEN
            status := 10; detail := v_why;
        ELSIF p_idx <= ep.credited_end THEN
            status := 1; detail := 'already credited';
        ELSIF p_w IS NULL OR length(p_w) <> 32 THEN
            status := 2; detail := 'word must be 32 bytes';
        ELSE
            status := 0;
        END IF;
    END IF;
END
$$;

-- The credit of a judged claim: (idx - credited_end) * unit_value, of which the units also
-- credited on another branch of a fork (the excess) are collected from the liable signer
-- (mp_collect_liability) and the rest comes from the escrow; the epoch advances and the word
-- becomes a verified point. Not coverable: 14 and nothing moves; the liable signer claiming
-- units of its own fork: 16. Raises (rolling the whole Redeem back) if the escrow cannot cover
-- its part.
CREATE FUNCTION mp_redeem_credit(p_merchant_id bytea, p_pending bytea, p_ch channels,
                                 p_ep epochs, p_seg int, p_idx int, p_w bytea,
                                 OUT status int, OUT detail text, OUT amount bigint,
                                 OUT txn bigint, OUT credited_end int)
LANGUAGE plpgsql AS $$
DECLARE
    v_exc    bigint;
    v_liable bytea;
BEGIN
    status := 0; detail := ''; txn := NULL; credited_end := p_ep.credited_end;
    v_exc := mp_fork_excess_units(p_ch.channel_id, p_ep.hseq, p_ep.merchant_id,
                                  p_ep.fork_of IS NOT NULL, p_ep.credited_end, p_idx)
             * p_ch.unit_value;
    amount := (p_idx - p_ep.credited_end)::bigint * p_ch.unit_value;
    IF v_exc > 0 THEN
        v_liable := mp_fork_liable(p_ch.channel_id, p_ep.hseq, p_ep.merchant_id,
                                   p_ep.credited_end, p_idx);
        IF v_liable = p_merchant_id THEN
            status := 16; amount := 0;
            detail := 'units already credited on another branch of your own double handoff';
            RETURN;
        END IF;
    END IF;
    INSERT INTO transfers (kind, ref) VALUES ('redeem', p_ch.channel_id)
    RETURNING transfers.txn_id INTO txn;
    IF v_exc > 0 AND mp_collect_liability(txn, p_ch.channel_id, p_ep.hseq, v_liable,
                                          p_merchant_id, p_pending, v_exc) IS NULL THEN
        status := 14; amount := 0;
        detail := 'fork excess of ' || v_exc || ' not covered ('
                  || mp_liability_cover_text(v_liable) || '); claim again after '
                  || 'loss_reserve.fund';
        DELETE FROM transfers t WHERE t.txn_id = txn;
        txn := NULL;
        RETURN;
    END IF;
    IF amount > v_exc THEN
        PERFORM mp_post(txn, p_ch.escrow_account, p_pending, amount - v_exc);
    END IF;
    UPDATE epochs e
       SET credited_end = p_idx, credited_amount = e.credited_amount + amount
     WHERE e.channel_id = p_ch.channel_id AND e.hseq = p_ep.hseq
       AND e.merchant_id = p_ep.merchant_id;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    VALUES (p_ch.channel_id, p_seg, p_idx, p_w)
    ON CONFLICT DO NOTHING;
    credited_end := p_idx;
END
$$;

-- One claim of a Redeem, judged then credited; its result row stored.
CREATE FUNCTION mp_redeem_claim(p_merchant_id bytea, p_pending bytea, p_redeem_id bytea,
                                p_pos int, p_cid bytea, p_h int, p_seg int, p_idx int,
                                p_w bytea, p_pre_status int, p_pre_detail text,
                                p_redeem_stmt bytea,
                                OUT status int, OUT credited_end int, OUT amount bigint,
                                OUT detail text)
LANGUAGE plpgsql AS $$
DECLARE
    v_j   record;
    v_c   record;
    v_txn bigint;
BEGIN
    amount := 0;
    IF p_pre_status IS DISTINCT FROM 0 THEN
        SELECT e.credited_end INTO credited_end FROM epochs e
         WHERE e.channel_id = p_cid AND e.hseq = p_h AND e.merchant_id = p_merchant_id;
        credited_end := coalesce(credited_end, 0);
        status := coalesce(p_pre_status, 20);
        detail := coalesce(p_pre_detail, '');
    ELSE
        v_j := mp_redeem_judge(p_merchant_id, p_cid, p_h, p_seg, p_idx, p_w, p_redeem_stmt);
        status := v_j.status; detail := v_j.detail; credited_end := v_j.credited_end;
        IF status = 0 THEN
            v_c := mp_redeem_credit(p_merchant_id, p_pending, v_j.ch, v_j.ep, p_seg, p_idx,
                                    p_w);
            status := v_c.status; detail := v_c.detail; amount := v_c.amount;
            credited_end := v_c.credited_end; v_txn := v_c.txn;
        END IF;
    END IF;
    INSERT INTO redeem_results (merchant_id, redeem_id, pos, status, credited_end,
                                credited_amount, detail, channel_id, hseq, seg_seq, idx, txn_id)
    VALUES (p_merchant_id, p_redeem_id, p_pos, status, credited_end, amount, detail, p_cid, p_h,
            p_seg, p_idx, v_txn);
END
$$;

CREATE OR REPLACE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
                          p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                          p_indices int[], p_words bytea[], p_pre_status int[],
                          p_pre_detail text[], p_stmt bytea)
RETURNS TABLE (replayed boolean, conflict boolean, pos int, status int, credited_end int,
               credited_amount bigint, detail text, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_k       int := coalesce(cardinality(p_channel_ids), 0);
    v_pending bytea;
    v_done    boolean := false;
    v_r       record;
BEGIN
    IF coalesce(cardinality(p_hseqs), 0) <> v_k OR coalesce(cardinality(p_seg_seqs), 0) <> v_k
       OR coalesce(cardinality(p_indices), 0) <> v_k OR coalesce(cardinality(p_words), 0) <> v_k
       OR coalesce(cardinality(p_pre_status), 0) <> v_k
       OR coalesce(cardinality(p_pre_detail), 0) <> v_k THEN
        RAISE EXCEPTION 'mp_redeem: array lengths differ';
    END IF;
    SELECT m.pending_account INTO v_pending FROM merchants m WHERE m.merchant_id = p_merchant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mp_redeem: unknown merchant %', encode(p_merchant_id, 'hex');
    END IF;
    FOR v_r IN SELECT * FROM mp_redeem_replay(p_merchant_id, p_redeem_id, p_stmt_hash, p_stmt)
    LOOP
        v_done := true;
        RETURN QUERY SELECT v_r.replayed, v_r.conflict, v_r.pos, v_r.status, v_r.credited_end,
                            v_r.credited_amount, v_r.detail, v_r.stored_stmt;
    END LOOP;
    IF v_done THEN
        RETURN;
    END IF;
    PERFORM mp_redeem_lock(p_channel_ids, p_pre_status);
    FOR i IN 1 .. v_k LOOP
        v_r := mp_redeem_claim(p_merchant_id, v_pending, p_redeem_id, i, p_channel_ids[i],
                               p_hseqs[i], p_seg_seqs[i], p_indices[i], p_words[i],
                               p_pre_status[i], p_pre_detail[i], p_stmt);
        RETURN QUERY SELECT false, false, i, v_r.status, v_r.credited_end, v_r.amount,
                            v_r.detail, NULL::bytea;
    END LOOP;
END
$$;
