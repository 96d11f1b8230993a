-- brokerd migration 0014: both branches of a fork honoured (protocol.md section 7;
-- docs/custody.md "Forks").
--
-- When the holder X of epoch h-1 signs two Handoffs h (to M2 and to M3), the first stored
-- defines epoch h as before (the first branch); the second opens a *fork epoch*: a row of
-- `epochs` for (channel, h, M3) with `fork_of` = stmt_hash of its Handoff and `liable_mid` = X.
-- Epochs are now keyed by (channel_id, hseq, merchant_id); one first-branch epoch per hseq.
-- A fork epoch is a leaf: it is open until finalisation (its merchant's own Handoff h+1, if its
-- Redeem carries it, ends the claim's range there, but the branch is not followed further).
--
-- Excess: a unit j of a channel is credited on more than one branch when j lies in the
-- credited ranges (start_index, credited_end] of a fork epoch and of another epoch of the
-- channel. Each credit (a, b] in an epoch e moves
--   escrow part = units of (a, b] not credited in any epoch on another branch than e (every
--                 other epoch if e is a fork epoch; the fork epochs if e is a first-branch one)
--   excess      = the other units of (a, b]
-- escrow -> the claimant's pending for the escrow part (as before) and, for the excess, in the
-- same ledger transfer, from the liable signer's pending credit (attributed to its
-- unfinalised channels, `liability_sources`), then its bond account, then the loss reserve
-- (mp_collect_liability, recorded in `liabilities`). If the three together cannot cover the
-- excess, nothing moves and the claim is answered INSUFFICIENT_FUNDS ("waits": the merchant
-- claims again after the operator funds the loss reserve); money is never created and the
-- loss reserve never goes negative. Escrow therefore pays each unit at most once.

ALTER TABLE epochs ADD COLUMN fork_of bytea CHECK (length(fork_of) = 32);
ALTER TABLE epochs ADD COLUMN liable_mid bytea CHECK (length(liable_mid) = 16);
ALTER TABLE epochs ADD CONSTRAINT epochs_fork_liable CHECK ((fork_of IS NULL) = (liable_mid IS NULL));
ALTER TABLE epochs DROP CONSTRAINT epochs_pkey;
ALTER TABLE epochs ADD PRIMARY KEY (channel_id, hseq, merchant_id);
CREATE UNIQUE INDEX epochs_first_branch_uq ON epochs (channel_id, hseq) WHERE fork_of IS NULL;

-- One collection per credit with an excess: what the liable signer owed and where it came
-- from. txn_id is the redeem transfer that carries the credit and these ledger rows.
CREATE TABLE liabilities (
    liability_id  bigserial PRIMARY KEY,
    channel_id    bytea  NOT NULL REFERENCES channels (channel_id),
    hseq          int    NOT NULL,
    liable_mid    bytea  NOT NULL REFERENCES merchants (merchant_id),
    creditor_mid  bytea  NOT NULL REFERENCES merchants (merchant_id),
    txn_id        bigint NOT NULL REFERENCES transfers (txn_id),
    amount        bigint NOT NULL CHECK (amount > 0),
    from_pending  bigint NOT NULL CHECK (from_pending >= 0),
    from_bond     bigint NOT NULL CHECK (from_bond >= 0),
    from_reserve  bigint NOT NULL CHECK (from_reserve >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT liabilities_sum CHECK (from_pending + from_bond + from_reserve = amount)
);
CREATE INDEX liabilities_liable_idx ON liabilities (liable_mid);
CREATE INDEX liabilities_channel_idx ON liabilities (channel_id);

-- The channels whose (unfinalised) credit of the liable signer a collection from its pending
-- account took, so that finalisation releases only what is left: a merchant's pending balance
-- = its credit in unfinalised channels - what was collected from it there
-- (mp_pending_collected).
CREATE TABLE liability_sources (
    liability_id  bigint NOT NULL REFERENCES liabilities (liability_id),
    merchant_id   bytea  NOT NULL REFERENCES merchants (merchant_id),
    channel_id    bytea  NOT NULL REFERENCES channels (channel_id),
    amount        bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (liability_id, channel_id)
);
CREATE INDEX liability_sources_mc_idx ON liability_sources (merchant_id, channel_id);

-- What was collected from p_merchant's pending credit of channel p_channel. Finalisation
-- moves (credit - this) from pending to available.
CREATE FUNCTION mp_pending_collected(p_merchant bytea, p_channel bytea) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(s.amount), 0)::bigint FROM liability_sources s
     WHERE s.merchant_id = p_merchant AND s.channel_id = p_channel
$$;

-- A merchant's unsettled liabilities: what the loss reserve paid for it. A bond release may
-- not leave the bond below this (mp_bond_move, migration 0013).
CREATE OR REPLACE FUNCTION mp_merchant_unsettled(p_merchant_id bytea) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(l.from_reserve), 0)::bigint FROM liabilities l
     WHERE l.liable_mid = p_merchant_id
$$;

-- Units of (p_from, p_to] of channel p_channel already credited in an epoch on another branch
-- than epoch (p_hseq, p_mid): every other epoch when that one is a fork epoch, else the fork
-- epochs. 0 for a channel without forks.
CREATE FUNCTION mp_fork_excess_units(p_channel bytea, p_hseq int, p_mid bytea, p_fork boolean,
                                     p_from int, p_to int) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(upper(r) - lower(r)), 0)::bigint
      FROM unnest((SELECT range_agg(int4range(e.start_index, e.credited_end, '(]'))
                     FROM epochs e
                    WHERE e.channel_id = p_channel AND e.credited_end > e.start_index
                      AND NOT (e.hseq = p_hseq AND e.merchant_id = p_mid)
                      AND (p_fork OR e.fork_of IS NOT NULL))
                   * int4multirange(int4range(p_from, p_to, '(]'))) AS r
     WHERE EXISTS (SELECT 1 FROM epochs f WHERE f.channel_id = p_channel
                                            AND f.fork_of IS NOT NULL)
$$;

-- The liable signer of an excess in epoch (p_hseq, p_mid): the fork epoch's own signer, or,
-- for a first-branch epoch, the signer of the earliest fork epoch of the channel whose
-- credited range overlaps (p_from, p_to].
CREATE FUNCTION mp_fork_liable(p_channel bytea, p_hseq int, p_mid bytea, p_from int, p_to int)
RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT e.liable_mid FROM epochs e
          WHERE e.channel_id = p_channel AND e.hseq = p_hseq AND e.merchant_id = p_mid
            AND e.fork_of IS NOT NULL),
        (SELECT f.liable_mid FROM epochs f
          WHERE f.channel_id = p_channel AND f.fork_of IS NOT NULL
            AND int4range(f.start_index, f.credited_end, '(]')
                && int4range(p_from, p_to, '(]')
          ORDER BY f.hseq, f.merchant_id LIMIT 1))
$$;

-- Collect p_amount owed by p_liable into account p_to (the creditor's pending account) as
-- ledger rows of transfer p_txn: first from the liable signer's pending credit (its
-- unfinalised channels in channel_id order, skipping channels another transaction holds),
-- then its bond account, then the loss reserve of the currency. Records the liability and
-- returns its id; returns NULL and moves nothing when the three cannot cover p_amount.
-- Callers: mp_redeem (a credit with an excess); finalisation may call it too.
CREATE FUNCTION mp_collect_liability(p_txn bigint, p_channel bytea, p_hseq int, p_liable bytea,
                                     p_creditor bytea, p_to bytea, p_amount bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    m         merchants%ROWTYPE;
    v_res     bytea;
    v_left    bigint := p_amount;
    v_pend    bigint := 0;
    v_bond    bigint := 0;
    v_rsv     bigint := 0;
    v_take    bigint;
    v_src     record;
    v_state   text;
    v_chans   bytea[] := '{}';
    v_takes   bigint[] := '{}';
    v_id      bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'mp_collect_liability: amount must be > 0, got %', p_amount;
    END IF;
    SELECT * INTO m FROM merchants WHERE merchant_id = p_liable FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mp_collect_liability: unknown merchant %', encode(p_liable, 'hex');
    END IF;
    v_res := mp_system_account_id('loss_reserve', m.currency);
    FOR v_src IN
        SELECT DISTINCT e.channel_id FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
         WHERE e.merchant_id = p_liable AND e.credited_amount > 0 AND c.state <> 'FINALIZED'
         ORDER BY e.channel_id
    LOOP
        EXIT WHEN v_left = 0;
        SELECT c.state INTO v_state FROM channels c WHERE c.channel_id = v_src.channel_id
           FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND OR v_state = 'FINALIZED';
        SELECT least(v_left, coalesce(sum(e.credited_amount), 0)
                             - mp_pending_collected(p_liable, v_src.channel_id))
          INTO v_take FROM epochs e
         WHERE e.channel_id = v_src.channel_id AND e.merchant_id = p_liable;
        CONTINUE WHEN v_take <= 0;
        v_chans := v_chans || v_src.channel_id;
        v_takes := v_takes || v_take;
        v_pend := v_pend + v_take;
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 AND m.bond_account IS NOT NULL THEN
        SELECT least(v_left, a.balance) INTO v_bond FROM accounts a
         WHERE a.id = m.bond_account FOR UPDATE;
        v_left := v_left - v_bond;
    END IF;
    IF v_left > 0 THEN
        SELECT least(v_left, a.balance) INTO v_rsv FROM accounts a WHERE a.id = v_res FOR UPDATE;
        v_left := v_left - coalesce(v_rsv, 0);
    END IF;
    IF v_left > 0 THEN
        RETURN NULL;
    END IF;
    IF v_pend > 0 THEN
        PERFORM mp_post(p_txn, m.pending_account, p_to, v_pend);
    END IF;
    IF v_bond > 0 THEN
        PERFORM mp_post(p_txn, m.bond_account, p_to, v_bond);
        UPDATE merchants SET bond = bond - v_bond WHERE merchant_id = p_liable;
    END IF;
    IF v_rsv > 0 THEN
        PERFORM mp_post(p_txn, v_res, p_to, v_rsv);
    END IF;
    INSERT INTO liabilities (channel_id, hseq, liable_mid, creditor_mid, txn_id, amount,
                             from_pending, from_bond, from_reserve)
    VALUES (p_channel, p_hseq, p_liable, p_creditor, p_txn, p_amount, v_pend, v_bond, v_rsv)
    RETURNING liability_id INTO v_id;
    INSERT INTO liability_sources (liability_id, merchant_id, channel_id, amount)
    SELECT v_id, p_liable, c, t FROM unnest(v_chans, v_takes) AS x(c, t);
    RETURN v_id;
END
$$;

-- What a credit with an excess could collect now, for the refusal's detail.
CREATE FUNCTION mp_liability_cover_text(p_liable bytea) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'liable signer ' || encode(m.merchant_id, 'hex') || ': pending ' || p.balance
           || ', bond ' || coalesce(b.balance, 0) || ', loss reserve ' || r.balance
      FROM merchants m JOIN accounts p ON p.id = m.pending_account
      LEFT JOIN accounts b ON b.id = m.bond_account
      JOIN accounts r ON r.id = mp_system_account_id('loss_reserve', m.currency)
     WHERE m.merchant_id = p_liable
$$;

-- 0008's recording, with epochs of the first branch only: a first-branch Handoff h+1 ends
-- the first-branch epoch h, never a fork epoch.
CREATE OR REPLACE FUNCTION mp_custody_record_0008(p_claimant bytea, p_redeem bytea,
                                  p_h_channel bytea[], p_h_hseq int[], p_h_stmt bytea[],
                                  p_h_hash bytea[], p_h_from bytea[], p_h_to bytea[],
                                  p_h_seg int[], p_h_idx int[], p_h_w bytea[],
                                  p_c_kind text[], p_c_channel bytea[], p_c_hseq int[],
                                  p_c_liable bytea[], p_c_stmt bytea[], p_c_other bytea[],
                                  p_c_index int[], p_c_detail text[])
RETURNS TABLE (handoffs_new int, conflicts_new int)
LANGUAGE plpgsql AS $$
DECLARE
    v_new    int := 0;
    v_before bigint;
    v_after  bigint;
    v_old    handoffs%ROWTYPE;
    v_ep     epochs%ROWTYPE;
    v_stmt   bytea;
BEGIN
    SELECT count(*) INTO v_before FROM conflicts;
    -- Serialise with mp_redeem on each channel touched (same global order).
    PERFORM 1 FROM channels c
      WHERE c.channel_id = ANY (p_h_channel) ORDER BY c.channel_id FOR NO KEY UPDATE;
    FOR i IN 1 .. coalesce(cardinality(p_h_channel), 0) LOOP
        INSERT INTO handoffs (channel_id, hseq, stmt_hash, stmt, from_mid, to_mid, seg_seq,
                              at_index, w_at)
        VALUES (p_h_channel[i], p_h_hseq[i], p_h_hash[i], p_h_stmt[i], p_h_from[i],
                p_h_to[i], p_h_seg[i], p_h_idx[i], p_h_w[i])
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_old FROM handoffs h
             WHERE h.channel_id = p_h_channel[i] AND h.hseq = p_h_hseq[i];
            IF v_old.stmt_hash <> p_h_hash[i] THEN
                PERFORM mp_conflict_add('double_handoff', p_h_channel[i], p_h_hseq[i],
                                        p_h_from[i], v_old.stmt, p_h_stmt[i], NULL, NULL,
                                        'two Handoffs with one hseq');
            END IF;
            CONTINUE;
        END IF;
        v_new := v_new + 1;
        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
        VALUES (p_h_channel[i], p_h_seg[i], p_h_idx[i], p_h_w[i])
        ON CONFLICT DO NOTHING;
        -- End epoch h-1 at the point; a credit above it was a claim above that handoff.
        SELECT * INTO v_ep FROM epochs e
         WHERE e.channel_id = p_h_channel[i] AND e.hseq = p_h_hseq[i] - 1
           AND e.fork_of IS NULL FOR UPDATE;
        IF FOUND THEN
            UPDATE epochs e SET end_index = p_h_idx[i]
             WHERE e.channel_id = p_h_channel[i] AND e.hseq = p_h_hseq[i] - 1
               AND e.fork_of IS NULL AND e.end_index IS NULL AND e.start_index <= p_h_idx[i];
            IF v_ep.credited_end > p_h_idx[i] THEN
                SELECT r.stmt INTO v_stmt FROM redeem_results rr
                  JOIN redeems r ON r.merchant_id = rr.merchant_id
                                AND r.redeem_id = rr.redeem_id
                 WHERE rr.channel_id = p_h_channel[i] AND rr.hseq = p_h_hseq[i] - 1
                   AND rr.idx = v_ep.credited_end AND rr.txn_id IS NOT NULL
                 LIMIT 1;
                PERFORM mp_conflict_add('claim_above_handoff', p_h_channel[i],
                                        p_h_hseq[i] - 1, p_h_from[i], p_h_stmt[i], v_stmt,
                                        v_ep.merchant_id, v_ep.credited_end,
                                        'credited above the signer''s own Handoff');
            END IF;
        END IF;
        IF EXISTS (SELECT 1 FROM merchants m WHERE m.merchant_id = p_h_to[i]) THEN
            INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index,
                                credited_end)
            VALUES (p_h_channel[i], p_h_hseq[i], p_h_to[i], p_h_idx[i], NULL, p_h_idx[i])
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(p_c_kind), 0) LOOP
        -- stmt_b: the other Handoff of a double handoff, else the claimant's Redeem.
        PERFORM mp_conflict_add(p_c_kind[i], p_c_channel[i], p_c_hseq[i], p_c_liable[i],
                                p_c_stmt[i],
                                coalesce(nullif(p_c_other[i], ''::bytea), p_redeem),
                                p_claimant, nullif(p_c_index[i], -1), p_c_detail[i]);
    END LOOP;
    SELECT count(*) INTO v_after FROM conflicts;
    RETURN QUERY SELECT v_new, (v_after - v_before)::int;
END
$$;
-- mp_custody_record: 0011's (kept as mp_custody_record_0011), then each given Handoff h that
-- differs from the stored Handoff h and names the claimant (brokerd passes the fork Handoff
-- of a claim on the second branch, docs/custody.md "Forks") opens a fork epoch for the
-- claimant at its point, liable: its signer. Not when the first branch's epoch h is the
-- claimant's own (two Handoffs to one merchant: the first stands). Idempotent.
ALTER FUNCTION mp_custody_record(bytea, bytea, bytea[], int[], bytea[], bytea[], bytea[],
                                 bytea[], int[], int[], bytea[], text[], bytea[], int[],
                                 bytea[], bytea[], bytea[], int[], text[])
    RENAME TO mp_custody_record_0011;
CREATE FUNCTION mp_custody_record(p_claimant bytea, p_redeem bytea,
                                  p_h_channel bytea[], p_h_hseq int[], p_h_stmt bytea[],
                                  p_h_hash bytea[], p_h_from bytea[], p_h_to bytea[],
                                  p_h_seg int[], p_h_idx int[], p_h_w bytea[],
                                  p_c_kind text[], p_c_channel bytea[], p_c_hseq int[],
                                  p_c_liable bytea[], p_c_stmt bytea[], p_c_other bytea[],
                                  p_c_index int[], p_c_detail text[])
RETURNS TABLE (handoffs_new int, conflicts_new int)
LANGUAGE plpgsql AS $$
DECLARE
    v_new   int;
    v_conf  int;
    v_forks int := 0;
BEGIN
    SELECT r.handoffs_new, r.conflicts_new INTO v_new, v_conf
      FROM mp_custody_record_0011(p_claimant, p_redeem, p_h_channel, p_h_hseq, p_h_stmt,
                                  p_h_hash, p_h_from, p_h_to, p_h_seg, p_h_idx, p_h_w,
                                  p_c_kind, p_c_channel, p_c_hseq, p_c_liable, p_c_stmt,
                                  p_c_other, p_c_index, p_c_detail) r;
    FOR i IN 1 .. coalesce(cardinality(p_h_channel), 0) LOOP
        CONTINUE WHEN p_h_to[i] <> p_claimant
            OR NOT EXISTS (SELECT 1 FROM handoffs h
                            WHERE h.channel_id = p_h_channel[i] AND h.hseq = p_h_hseq[i]
                              AND h.stmt_hash <> p_h_hash[i])
            OR EXISTS (SELECT 1 FROM epochs e
                        WHERE e.channel_id = p_h_channel[i] AND e.hseq = p_h_hseq[i]
                          AND e.merchant_id = p_claimant);
        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
        VALUES (p_h_channel[i], p_h_seg[i], p_h_idx[i], p_h_w[i])
        ON CONFLICT DO NOTHING;
        INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index,
                            credited_end, fork_of, liable_mid)
        VALUES (p_h_channel[i], p_h_hseq[i], p_claimant, p_h_idx[i], NULL, p_h_idx[i],
                p_h_hash[i], p_h_from[i])
        ON CONFLICT DO NOTHING;
        v_forks := v_forks + 1;
    END LOOP;
    RETURN QUERY SELECT v_new + v_forks, v_conf;
END
$$;

-- mp_redeem_prepare reads the claimant's epoch of the claimed hseq (a fork epoch when it holds
-- one), else the first branch's: the 0011 version with the claimant as fifth argument.
CREATE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                                  p_indices int[], p_merchant_id bytea)
RETURNS TABLE (pos int, found boolean, state text, n int, unit_value bigint, seg_found boolean,
               seg_start int, seg_len int, nonce bytea, epoch_merchant bytea, credited_end int,
               lo_idx int, lo_w bytea, hi_idx int, hi_w bytea, seg_end int)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF coalesce(cardinality(p_seg_seqs), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_hseqs), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_indices), 0) <> coalesce(cardinality(p_channel_ids), 0) THEN
        RAISE EXCEPTION 'mp_redeem_prepare: array lengths differ';
    END IF;
    RETURN QUERY
    SELECT q.pos::int, c.channel_id IS NOT NULL, c.state, c.n, c.unit_value,
           s.channel_id IS NOT NULL, s.seg_start, s.len, s.nonce,
           e.merchant_id, e.credited_end, lo.idx, lo.w, hi.idx, hi.w, nx.seg_start
      FROM unnest(p_channel_ids, p_hseqs, p_seg_seqs, p_indices) WITH ORDINALITY
           AS q(cid, h, seg, ix, pos)
      LEFT JOIN channels c ON c.channel_id = q.cid
      LEFT JOIN segments s ON s.channel_id = q.cid AND s.seg_seq = q.seg
      LEFT JOIN segments nx ON nx.channel_id = q.cid AND nx.seg_seq = q.seg + 1
                           AND NOT nx.voided
      LEFT JOIN LATERAL (SELECT * FROM epochs e1
                          WHERE e1.channel_id = q.cid AND e1.hseq = q.h
                          ORDER BY e1.merchant_id = p_merchant_id DESC, e1.fork_of IS NULL DESC
                          LIMIT 1) e ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx <= q.ix
                          ORDER BY p.idx DESC LIMIT 1) lo ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx >= q.ix
                          ORDER BY p.idx ASC LIMIT 1) hi ON true
     ORDER BY q.pos;
END
$$;

-- mp_redeem as in 0011, with forks: the claimant's epoch of the claimed hseq (its fork epoch
-- when it holds one); a credit's excess (units credited on another branch) is collected by
-- mp_collect_liability in the same transfer and only the rest comes from the escrow; not
-- coverable: 14 and nothing moves; the liable signer claiming units of its own fork: 16.
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
    v_hash    bytea;
    v_stored  bytea;
    v_cid     bytea;
    v_h       int;
    v_seg     int;
    v_idx     int;
    v_w       bytea;
    v_st      int;
    v_det     text;
    v_end     int;
    v_amt     bigint;
    v_txn     bigint;
    v_ch      channels%ROWTYPE;
    v_ep      epochs%ROWTYPE;
    v_sg      segments%ROWTYPE;
    v_cap     int;
    v_exc     bigint;
    v_liable  bytea;
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

    -- Claim the redeem_id; a concurrent call with the same id waits here, then replays.
    INSERT INTO redeems (merchant_id, redeem_id, stmt_hash, stmt)
    VALUES (p_merchant_id, p_redeem_id, p_stmt_hash, p_stmt)
    ON CONFLICT (merchant_id, redeem_id) DO NOTHING;
    IF NOT FOUND THEN
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
        RETURN;
    END IF;

    -- Lock every channel this call may credit, in one global order, before touching any
    -- account: concurrent redeems then cannot deadlock on escrow or pending accounts.
    PERFORM 1 FROM channels c
      WHERE c.channel_id = ANY (ARRAY(SELECT q.cid
                                        FROM unnest(p_channel_ids, p_pre_status) AS q(cid, st)
                                       WHERE q.st = 0))
      ORDER BY c.channel_id
      FOR NO KEY UPDATE;

    FOR i IN 1 .. v_k LOOP
        v_cid := p_channel_ids[i];
        v_h := p_hseqs[i];
        v_seg := p_seg_seqs[i];
        v_idx := p_indices[i];
        v_w := p_words[i];
        v_amt := 0;
        v_txn := NULL;
        v_det := '';
        v_sg := NULL;
        v_cap := NULL;
        -- The credited end reported with a refusal: that of the claimed epoch if it is this
        -- merchant's, else 0.
        SELECT e.credited_end INTO v_end FROM epochs e
         WHERE e.channel_id = v_cid AND e.hseq = v_h AND e.merchant_id = p_merchant_id;
        v_end := coalesce(v_end, 0);

        IF p_pre_status[i] IS DISTINCT FROM 0 THEN
            v_st := coalesce(p_pre_status[i], 20);
            v_det := coalesce(p_pre_detail[i], '');
        ELSE
            SELECT * INTO v_ch FROM channels c WHERE c.channel_id = v_cid;
            IF NOT FOUND THEN
                v_st := 17;
                v_det := 'unknown channel';
            ELSIF v_ch.state = 'FINALIZED' THEN
                v_st := 13;
                v_det := 'channel finalized';
            ELSE
                SELECT * INTO v_ep FROM epochs e
                 WHERE e.channel_id = v_cid AND e.hseq = v_h
                 ORDER BY e.merchant_id = p_merchant_id DESC, e.fork_of IS NULL DESC
                 LIMIT 1 FOR UPDATE;
                IF NOT FOUND OR v_ep.merchant_id <> p_merchant_id THEN
                    v_st := 5;
                    v_det := 'not the holder of this epoch';
                ELSE
                    v_end := v_ep.credited_end;
                    SELECT * INTO v_sg FROM segments s
                     WHERE s.channel_id = v_cid AND s.seg_seq = v_seg;
                    IF FOUND THEN
                        SELECT s.seg_start INTO v_cap FROM segments s
                         WHERE s.channel_id = v_cid AND s.seg_seq = v_seg + 1
                           AND NOT s.voided;
                    END IF;
                    IF v_sg.channel_id IS NULL THEN
                        v_st := 12;
                        v_det := 'segment unknown';
                    ELSIF v_sg.voided THEN
                        v_st := 16;
                        v_det := 'segment void: its Cap was signed after its signer''s own '
                                 || 'Handoff';
                    ELSIF v_idx IS NULL OR v_idx < v_sg.seg_start
                       OR v_idx > v_sg.seg_start::bigint + v_sg.len OR v_idx > v_ch.n
                       OR v_idx > v_cap THEN
                        v_st := 10;
                        v_det := 'index outside its segment';
                    ELSIF v_idx < v_ep.start_index
                          OR v_idx > coalesce(v_ep.end_index, v_ch.n) THEN
                        v_st := 10;
                        v_det := 'index outside the epoch';
                    ELSIF v_idx <= v_ep.credited_end THEN
                        v_st := 1;
                        v_det := 'already credited';
                    ELSIF v_w IS NULL OR length(v_w) <> 32 THEN
                        v_st := 2;
                        v_det := 'word must be 32 bytes';
                    ELSE
                        -- Units also credited on another branch of a fork: the excess.
                        v_exc := mp_fork_excess_units(v_cid, v_h, v_ep.merchant_id,
                                                      v_ep.fork_of IS NOT NULL,
                                                      v_ep.credited_end, v_idx)
                                 * v_ch.unit_value;
                        v_amt := (v_idx - v_ep.credited_end)::bigint * v_ch.unit_value;
                        v_liable := NULL;
                        IF v_exc > 0 THEN
                            v_liable := mp_fork_liable(v_cid, v_h, v_ep.merchant_id,
                                                       v_ep.credited_end, v_idx);
                        END IF;
                        IF v_exc > 0 AND v_liable = p_merchant_id THEN
                            v_st := 16;
                            v_det := 'units already credited on another branch of your own '
                                     || 'double handoff';
                            v_amt := 0;
                        ELSE
                            INSERT INTO transfers (kind, ref) VALUES ('redeem', v_cid)
                            RETURNING txn_id INTO v_txn;
                            IF v_exc > 0 AND mp_collect_liability(v_txn, v_cid, v_h, v_liable,
                                                 p_merchant_id, v_pending, v_exc) IS NULL THEN
                                v_st := 14;
                                v_det := 'fork excess of ' || v_exc || ' not covered ('
                                         || mp_liability_cover_text(v_liable)
                                         || '); claim again after loss_reserve.fund';
                                v_amt := 0;
                                DELETE FROM transfers t WHERE t.txn_id = v_txn;
                                v_txn := NULL;
                            END IF;
                        END IF;
                        IF v_amt > 0 THEN
                            -- Raises (rolling the whole Redeem back) if the escrow cannot
                            -- cover its part.
                            IF v_amt > v_exc THEN
                                PERFORM mp_post(v_txn, v_ch.escrow_account, v_pending,
                                                v_amt - v_exc);
                            END IF;
                            UPDATE epochs e
                               SET credited_end = v_idx,
                                   credited_amount = e.credited_amount + v_amt
                             WHERE e.channel_id = v_cid AND e.hseq = v_h
                               AND e.merchant_id = v_ep.merchant_id;
                            INSERT INTO chain_points (channel_id, seg_seq, idx, w)
                            VALUES (v_cid, v_seg, v_idx, v_w)
                            ON CONFLICT DO NOTHING;
                            v_end := v_idx;
                            v_st := 0;
                        END IF;
                    END IF;
                END IF;
            END IF;
        END IF;

        INSERT INTO redeem_results (merchant_id, redeem_id, pos, status, credited_end,
                                    credited_amount, detail, channel_id, hseq, seg_seq, idx,
                                    txn_id)
        VALUES (p_merchant_id, p_redeem_id, i, v_st, v_end, v_amt, v_det, v_cid, v_h, v_seg,
                v_idx, v_txn);
        RETURN QUERY SELECT false, false, i, v_st, v_end, v_amt, v_det, NULL::bytea;
    END LOOP;
END
$$;
-- The audit with forks (0013's mp_audit kept as mp_audit_0013). Four invariants of 0006 are
-- replaced by versions that know fork epochs and liabilities (same names), and four are new.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0013;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0013() a
                  WHERE a.check_name NOT IN ('epoch_credits_match_redeems',
                                             'channel_credit_matches_epochs',
                                             'channel_escrow_plus_credit_is_face',
                                             'merchant_pending_is_unfinalised_credit');
    -- Per epoch (first branch or fork): credited_amount = the sum of its stored redeem credits
    -- = the sum of the ledger rows of those redeem transfers (escrow part and collections)
    -- = (credited_end - start_index) * unit_value.
    RETURN QUERY SELECT * FROM mp_audit_check('epoch_credits_match_redeems', $q$
        WITH r AS (
            SELECT rr.channel_id, rr.hseq, rr.merchant_id,
                   sum(rr.credited_amount::numeric) AS results,
                   sum((SELECT sum(l.amount::numeric) FROM ledger l
                         WHERE l.txn_id = rr.txn_id)) AS ledger
              FROM redeem_results rr WHERE rr.txn_id IS NOT NULL
             GROUP BY rr.channel_id, rr.hseq, rr.merchant_id)
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
               || encode(e.merchant_id, 'hex') || ' (credited ' || e.credited_amount
               || ', results ' || coalesce(r.results, 0) || ', ledger '
               || coalesce(r.ledger, 0) || ', range ' || e.start_index || '..'
               || e.credited_end || ')' AS what
          FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
          LEFT JOIN r ON r.channel_id = e.channel_id AND r.hseq = e.hseq
                     AND r.merchant_id = e.merchant_id
         WHERE e.credited_amount <> coalesce(r.results, 0)
            OR e.credited_amount <> coalesce(r.ledger, 0)
            OR e.credited_amount <> (e.credited_end - e.start_index)::numeric * c.unit_value $q$);

    -- Per channel: the redeem ledger rows out of its escrow = the epochs' ranges minus the
    -- excess collected from liable signers (liabilities).
    RETURN QUERY SELECT * FROM mp_audit_check('channel_credit_matches_epochs', $q$
        WITH t AS (
            SELECT c.channel_id,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'redeem') AS ledger,
                   (SELECT coalesce(sum((e.credited_end - e.start_index)::numeric), 0)
                      FROM epochs e WHERE e.channel_id = c.channel_id) * c.unit_value AS epochs,
                   (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                     WHERE li.channel_id = c.channel_id) AS excess
              FROM channels c)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (credited from escrow ' || ledger
               || ', by the epochs'' ranges ' || epochs || ' - excess ' || excess || ')' AS what
          FROM t WHERE ledger <> epochs - excess $q$);

    -- Per channel: escrow + (credited - excess) + other outflows = n * unit_value.
    RETURN QUERY SELECT * FROM mp_audit_check('channel_escrow_plus_credit_is_face', $q$
        WITH t AS (
            SELECT c.channel_id, c.n::numeric * c.unit_value AS face,
                   a.balance::numeric AS escrow,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id) AS credited,
                   (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                     WHERE li.channel_id = c.channel_id) AS excess,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind <> 'redeem') AS other_out
              FROM channels c JOIN accounts a ON a.id = c.escrow_account)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (escrow ' || escrow || ' + credited ' || credited
               || ' - excess ' || excess || ' + other ' || other_out || ' <> ' || face || ')'
               AS what
          FROM t WHERE escrow + credited - excess + other_out <> face $q$);

    -- Per merchant: pending = its credited claims in unfinalised channels - what liabilities
    -- collected from that credit.
    RETURN QUERY SELECT * FROM mp_audit_check('merchant_pending_is_unfinalised_credit', $q$
        WITH credit AS (
            SELECT rr.merchant_id, sum(rr.credited_amount::numeric) AS amount
              FROM redeem_results rr JOIN channels c ON c.channel_id = rr.channel_id
             WHERE rr.txn_id IS NOT NULL AND c.state <> 'FINALIZED'
             GROUP BY rr.merchant_id),
        taken AS (
            SELECT s.merchant_id, sum(s.amount::numeric) AS amount
              FROM liability_sources s JOIN channels c ON c.channel_id = s.channel_id
             WHERE c.state <> 'FINALIZED'
             GROUP BY s.merchant_id)
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (pending ' || a.balance
               || ', credited claims not finalised ' || coalesce(cr.amount, 0)
               || ', collected from them ' || coalesce(tk.amount, 0) || ')' AS what
          FROM merchants m JOIN accounts a ON a.id = m.pending_account
          LEFT JOIN credit cr ON cr.merchant_id = m.merchant_id
          LEFT JOIN taken tk ON tk.merchant_id = m.merchant_id
         WHERE a.balance::numeric <> coalesce(cr.amount, 0) - coalesce(tk.amount, 0) $q$);

    -- Per channel: credit sourced from the escrow (its redeem rows) <= what entered it, and
    -- it is exactly the units credited at least once: no unit is paid twice from an escrow
    -- of a channel with a fork.
    RETURN QUERY SELECT * FROM mp_audit_check('escrow_sourced_credit_within_escrow', $q$
        WITH t AS (
            SELECT c.channel_id, c.unit_value,
                   (SELECT coalesce(sum(l.amount::numeric), 0) FROM ledger l
                     WHERE l.credit_account = c.escrow_account) AS into_escrow,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'redeem') AS sourced,
                   EXISTS (SELECT 1 FROM epochs f WHERE f.channel_id = c.channel_id
                                                    AND f.fork_of IS NOT NULL) AS forked,
                   (SELECT coalesce(sum(upper(r) - lower(r)), 0)
                      FROM unnest((SELECT range_agg(int4range(e.start_index, e.credited_end,
                                                              '(]'))
                                     FROM epochs e WHERE e.channel_id = c.channel_id
                                      AND e.credited_end > e.start_index)) AS r) AS units
              FROM channels c)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (from escrow ' || sourced || ', into escrow '
               || into_escrow || ', units credited ' || units || ')' AS what
          FROM t
         WHERE sourced > into_escrow OR (forked AND sourced <> units * unit_value) $q$);

    -- Per channel: the excess credited (credited - escrow-sourced) = the sum of its liability
    -- collections, and each collection is exactly its ledger rows from the liable signer's
    -- pending and bond accounts and the loss reserve to the creditor's pending account.
    RETURN QUERY SELECT * FROM mp_audit_check('liability_collections_match_ledger', $q$
        SELECT li.liability_id::text AS id,
               'liability ' || li.liability_id || ' (pending ' || li.from_pending || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.pending_account), 0)
               || ', bond ' || li.from_bond || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.bond_account), 0)
               || ', reserve ' || li.from_reserve || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = mp_system_account_id(
                                                     'loss_reserve', m.currency)), 0)
               || ', sources ' || coalesce((SELECT sum(s.amount) FROM liability_sources s
                                             WHERE s.liability_id = li.liability_id), 0)
               || ')' AS what
          FROM liabilities li JOIN merchants m ON m.merchant_id = li.liable_mid
          JOIN merchants cm ON cm.merchant_id = li.creditor_mid
          LEFT JOIN ledger l ON l.txn_id = li.txn_id AND l.credit_account = cm.pending_account
         GROUP BY li.liability_id, li.from_pending, li.from_bond, li.from_reserve,
                  m.pending_account, m.bond_account, m.currency
        HAVING coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.pending_account), 0)
                   <> li.from_pending
            OR coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.bond_account), 0)
                   <> li.from_bond
            OR coalesce(sum(l.amount) FILTER (WHERE l.debit_account = mp_system_account_id(
                                                  'loss_reserve', m.currency)), 0)
                   <> li.from_reserve
            OR coalesce((SELECT sum(s.amount) FROM liability_sources s
                          WHERE s.liability_id = li.liability_id), 0) <> li.from_pending $q$);

    RETURN QUERY SELECT * FROM mp_audit_check('fork_excess_is_liability_collections', $q$
        WITH t AS (
            SELECT c.channel_id,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id)
                   - (SELECT coalesce(sum(l.amount::numeric), 0)
                        FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                       WHERE l.debit_account = c.escrow_account AND x.kind = 'redeem')
                     AS excess,
                   (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                     WHERE li.channel_id = c.channel_id) AS collected
              FROM channels c)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (excess credited ' || excess || ', collected '
               || collected || ')' AS what
          FROM t WHERE excess <> collected $q$);

    -- Every fork epoch rests on a recorded double handoff of its liable signer.
    RETURN QUERY SELECT * FROM mp_audit_check('fork_epochs_are_recorded_conflicts', $q$
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
               || encode(e.merchant_id, 'hex') || ' (no double_handoff against '
               || encode(e.liable_mid, 'hex') || ')' AS what
          FROM epochs e
         WHERE e.fork_of IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM conflicts k
                            WHERE k.kind = 'double_handoff' AND k.channel_id = e.channel_id
                              AND k.hseq = e.hseq AND k.liable_mid = e.liable_mid) $q$);
END
$$;
