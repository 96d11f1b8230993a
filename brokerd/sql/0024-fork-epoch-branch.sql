-- brokerd migration 0024: a merchant holding the same hseq on two branches of a fork is
-- credited on each (protocol.md section 7; docs/custody.md "Forks").
--
-- Until now epochs were keyed by (channel, hseq, merchant): when m1 signed Handoff 1 to m2 and
-- to m3, and both handed the channel on to m4 (Handoff 2 on each branch), m4's second-branch
-- epoch 2 was never opened (the insert met m4's first-branch epoch 2) and every claim of m4 on
-- epoch 2 was credited in the first branch's epoch only: m4 lost its range on the second
-- branch. Now the branch joins the key everywhere:
--
-- * epochs are unique by (channel, hseq, merchant, branch), branch = fork_of ('' on the first
--   branch); each hseq still has one first-branch epoch (epochs_first_branch_uq);
-- * a claim names its epoch: brokerd passes, per claim, the stmt_hash of the claim's own
--   Handoff hseq_in when its custody puts it on a second branch ('' otherwise), and
--   mp_claim_epoch reads the epoch that Handoff opened on its branch (fork_handoffs);
--   mp_redeem_prepare, mp_redeem_judge and mp_redeem_claim take that array;
-- * redeem_results.fork_of records the branch of the epoch a claim was credited in; the audit's
--   epoch_credits_match_redeems matches results to epochs with it;
-- * the excess (units credited on another branch) and its liable signer are computed for the
--   epoch itself (mp_fork_excess_in, mp_fork_liable_in), not for (hseq, merchant); the credit
--   advances that epoch only; a branch Handoff ends its own branch's epoch only
--   (mp_fork_branch_end).
--
--   Redeem claim --(custody: second branch, own Handoff h = X)--> mp_claim_epoch(h, M, X)
--        |                                                         = epoch X opened
--        +--(first branch or no custody: '')------------------> the first branch's epoch h

ALTER TABLE epochs DROP CONSTRAINT epochs_pkey;
CREATE UNIQUE INDEX epochs_branch_uq
    ON epochs (channel_id, hseq, merchant_id, coalesce(fork_of, '\x'::bytea));

ALTER TABLE redeem_results ADD COLUMN fork_of bytea CHECK (length(fork_of) = 32);
-- Before 0024 a merchant held at most one epoch per (channel, hseq).
UPDATE redeem_results rr SET fork_of = e.fork_of
  FROM epochs e
 WHERE e.channel_id = rr.channel_id AND e.hseq = rr.hseq AND e.merchant_id = rr.merchant_id
   AND e.fork_of IS NOT NULL;

-- The epoch of hseq p_h a claim of p_merchant means (at most one row). p_opener: the
-- stmt_hash of the claim's own Handoff p_h when its custody puts it on a second branch, else
-- NULL. With an opener: the claimant's epoch that Handoff opened on its branch, else one of
-- its second-branch epochs of p_h (a second Handoff p_h to the same merchant on a branch is one
-- epoch either way), else its first-branch one. Without: as before 0024, the claimant's
-- first-branch epoch, else its other one. Neither: the first branch's epoch of p_h (another
-- merchant's: the caller answers NOT_HOLDER).
CREATE FUNCTION mp_claim_epoch(p_cid bytea, p_h int, p_merchant bytea, p_opener bytea)
RETURNS SETOF epochs
LANGUAGE sql STABLE AS $$
    SELECT e.* FROM epochs e
      LEFT JOIN fork_handoffs f ON f.channel_id = e.channel_id AND f.branch = e.fork_of
                               AND f.hseq = e.hseq AND f.to_mid = e.merchant_id
     WHERE e.channel_id = p_cid AND e.hseq = p_h
     ORDER BY e.merchant_id = p_merchant DESC,
              coalesce(f.stmt_hash = p_opener, false) DESC,
              (e.fork_of IS NOT NULL) = (p_opener IS NOT NULL) DESC,
              e.fork_of IS NULL DESC, e.start_index, e.fork_of
     LIMIT 1
$$;

-- Units of (p_from, p_to] credited in an epoch on another branch than p_ep's: for an epoch of
-- a second branch, every epoch not on that branch (the first branch, the epochs below the
-- fork, other branches, the same merchant's epochs there included); for a first-branch epoch,
-- the second branches'. 0 for a channel without forks. (0019's mp_fork_excess_units named the
-- epoch by (hseq, merchant), which two branches can share.)
CREATE FUNCTION mp_fork_excess_in(p_ep epochs, p_from int, p_to int)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(upper(r) - lower(r)), 0)::bigint
      FROM unnest((SELECT range_agg(int4range(e.start_index, e.credited_end, '(]'))
                     FROM epochs e
                    WHERE e.channel_id = p_ep.channel_id AND e.credited_end > e.start_index
                      AND e.fork_of IS DISTINCT FROM p_ep.fork_of)
                   * int4multirange(int4range(p_from, p_to, '(]'))) AS r
     WHERE EXISTS (SELECT 1 FROM epochs f WHERE f.channel_id = p_ep.channel_id
                                            AND f.fork_of IS NOT NULL)
$$;

-- The liable signer of an excess in p_ep: a fork epoch's own liable_mid, or, for a
-- first-branch epoch, the signer of the earliest fork epoch of the channel whose credited
-- range overlaps (p_from, p_to] (0014's mp_fork_liable, for the epoch itself).
CREATE FUNCTION mp_fork_liable_in(p_ep epochs, p_from int, p_to int)
RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        p_ep.liable_mid,
        (SELECT f.liable_mid FROM epochs f
          WHERE f.channel_id = p_ep.channel_id AND f.fork_of IS NOT NULL
            AND int4range(f.start_index, f.credited_end, '(]')
                && int4range(p_from, p_to, '(]')
          ORDER BY f.hseq, f.merchant_id LIMIT 1))
$$;

-- mp_fork_branch_end of 0020, for the branch's own epoch only: the same merchant's epoch g-1
-- on another branch keeps its end; the evidence is the Redeem credited on this branch.
CREATE OR REPLACE FUNCTION mp_fork_branch_end(p_channel bytea, p_branch bytea, p_hseq int,
                                              p_from bytea, p_idx int, p_stmt bytea)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_ep   epochs%ROWTYPE;
    v_stmt bytea;
BEGIN
    SELECT * INTO v_ep FROM epochs e
     WHERE e.channel_id = p_channel AND e.hseq = p_hseq - 1 AND e.merchant_id = p_from
       AND e.fork_of = p_branch AND e.end_index IS NULL AND e.start_index <= p_idx
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE epochs e SET end_index = p_idx
     WHERE e.channel_id = p_channel AND e.hseq = p_hseq - 1 AND e.merchant_id = p_from
       AND e.fork_of = p_branch;
    IF v_ep.credited_end > p_idx THEN
        SELECT r.stmt INTO v_stmt FROM redeem_results rr
          JOIN redeems r ON r.merchant_id = rr.merchant_id AND r.redeem_id = rr.redeem_id
         WHERE rr.channel_id = p_channel AND rr.hseq = p_hseq - 1 AND rr.merchant_id = p_from
           AND rr.fork_of = p_branch AND rr.idx = v_ep.credited_end
           AND rr.txn_id IS NOT NULL
         LIMIT 1;
        PERFORM mp_conflict_add('claim_above_handoff', p_channel, p_hseq - 1, p_from, p_stmt,
                                v_stmt, p_from, v_ep.credited_end,
                                'credited above the signer''s own Handoff on a second branch');
    END IF;
END
$$;

-- mp_redeem_prepare of 0014 with each claim's epoch read by mp_claim_epoch (p_openers: per
-- claim the stmt_hash of its own Handoff on a second branch, or '' for none), so that the
-- credited end that decides whether its word is hashed is that of the epoch it is credited in.
CREATE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                                  p_indices int[], p_merchant_id bytea, p_openers bytea[])
RETURNS TABLE (pos int, found boolean, state text, n int, unit_value bigint, seg_found boolean,
               seg_start int, seg_len int, nonce bytea, epoch_merchant bytea, credited_end int,
               lo_idx int, lo_w bytea, hi_idx int, hi_w bytea, seg_end int)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF coalesce(cardinality(p_seg_seqs), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_hseqs), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_indices), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_openers), 0) <> coalesce(cardinality(p_channel_ids), 0) THEN
        RAISE EXCEPTION 'mp_redeem_prepare: array lengths differ';
    END IF;
    RETURN QUERY
    SELECT q.pos::int, c.channel_id IS NOT NULL, c.state, c.n, c.unit_value,
           s.channel_id IS NOT NULL, s.seg_start, s.len, s.nonce,
           e.merchant_id, e.credited_end, lo.idx, lo.w, hi.idx, hi.w, nx.seg_start
      FROM unnest(p_channel_ids, p_hseqs, p_seg_seqs, p_indices, p_openers) WITH ORDINALITY
           AS q(cid, h, seg, ix, opener, pos)
      LEFT JOIN channels c ON c.channel_id = q.cid
      LEFT JOIN segments s ON s.channel_id = q.cid AND s.seg_seq = q.seg
      LEFT JOIN segments nx ON nx.channel_id = q.cid AND nx.seg_seq = q.seg + 1
                           AND NOT nx.voided
      LEFT JOIN LATERAL mp_claim_epoch(q.cid, q.h, p_merchant_id,
                                       nullif(q.opener, '\x'::bytea)) e ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx <= q.ix
                          ORDER BY p.idx DESC LIMIT 1) lo ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx >= q.ix
                          ORDER BY p.idx ASC LIMIT 1) hi ON true
     ORDER BY q.pos;
END
$$;

-- The five-argument form (no claim on a second branch names its epoch).
CREATE OR REPLACE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_hseqs int[],
                                             p_seg_seqs int[], p_indices int[],
                                             p_merchant_id bytea)
RETURNS TABLE (pos int, found boolean, state text, n int, unit_value bigint, seg_found boolean,
               seg_start int, seg_len int, nonce bytea, epoch_merchant bytea, credited_end int,
               lo_idx int, lo_w bytea, hi_idx int, hi_w bytea, seg_end int)
LANGUAGE sql STABLE AS $$
    SELECT * FROM mp_redeem_prepare(p_channel_ids, p_hseqs, p_seg_seqs, p_indices,
                                    p_merchant_id,
                                    array_fill(''::bytea,
                                               ARRAY[coalesce(cardinality(p_channel_ids), 0)]))
$$;

-- mp_redeem_judge of 0020 with the claim's epoch read by mp_claim_epoch (p_opener: NULL, or
-- the claim's own Handoff p_h on a second branch) and locked.
DROP FUNCTION mp_redeem_judge(bytea, bytea, int, int, int, bytea, bytea);
CREATE FUNCTION mp_redeem_judge(p_merchant_id bytea, p_cid bytea, p_h int, p_seg int,
                                p_idx int, p_w bytea, p_redeem_stmt bytea, p_opener bytea,
                                OUT status int, OUT detail text, OUT ch channels,
                                OUT ep epochs, OUT credited_end int)
LANGUAGE plpgsql AS $$
DECLARE
    v_sg  segments%ROWTYPE;
    v_cap int;
    v_why text;
BEGIN
    detail := '';
    credited_end := 0;
    SELECT * INTO ch FROM channels c WHERE c.channel_id = p_cid;
    IF NOT FOUND THEN
        status := 17; detail := 'unknown channel'; RETURN;
    END IF;
    IF ch.state = 'FINALIZED' THEN
        status := 13; detail := 'channel finalized'; RETURN;
    END IF;
    SELECT * INTO ep FROM mp_claim_epoch(p_cid, p_h, p_merchant_id, p_opener);
    IF NOT FOUND OR ep.merchant_id <> p_merchant_id THEN
        status := 5; detail := 'not the holder of this epoch'; RETURN;
    END IF;
    -- The credited end reported, with a refusal too: that of the claimed epoch.
    SELECT * INTO ep FROM epochs e
     WHERE e.channel_id = p_cid AND e.hseq = p_h AND e.merchant_id = p_merchant_id
       AND e.fork_of IS NOT DISTINCT FROM ep.fork_of
       FOR UPDATE;
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
        status := 10;
        detail := coalesce(mp_redeem_branch_end(ch, ep, p_idx, p_redeem_stmt),
                           'index outside the epoch');
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

-- mp_redeem_credit of 0022 for the epoch p_ep itself: its excess and liable signer
-- (mp_fork_excess_in, mp_fork_liable_in), and only that epoch advances.
CREATE OR REPLACE FUNCTION mp_redeem_credit(p_merchant_id bytea, p_pending bytea,
                                            p_ch channels, p_ep epochs, p_seg int, p_idx int,
                                            p_w bytea,
                                            OUT status int, OUT detail text, OUT amount bigint,
                                            OUT txn bigint, OUT credited_end int)
LANGUAGE plpgsql AS $$
DECLARE
    v_exc    bigint;
    v_liable bytea;
    v_void   record;
    v_vexc   bigint;
BEGIN
    status := 0; detail := ''; txn := NULL; credited_end := p_ep.credited_end;
    v_void := mp_void_close_excess(p_ch.channel_id, p_ep.credited_end, p_idx);
    v_vexc := v_void.units::bigint * p_ch.unit_value;
    v_exc := mp_fork_excess_in(p_ep, p_ep.credited_end,
                               least(p_idx, greatest(p_ep.credited_end, v_void.base)))
             * p_ch.unit_value;
    amount := (p_idx - p_ep.credited_end)::bigint * p_ch.unit_value;
    IF v_exc > 0 THEN
        v_liable := mp_fork_liable_in(p_ep, p_ep.credited_end, p_idx);
        IF v_liable = p_merchant_id THEN
            status := 16; amount := 0;
            detail := 'units already credited on another branch of your own double handoff';
            RETURN;
        END IF;
    END IF;
    IF v_vexc > 0 AND v_void.liable = p_merchant_id THEN
        status := 16; amount := 0;
        detail := 'units above your own Close, refunded early; that Close is void: you had '
                  || 'handed the channel on';
        RETURN;
    END IF;
    BEGIN
        INSERT INTO transfers (kind, ref) VALUES ('redeem', p_ch.channel_id)
        RETURNING transfers.txn_id INTO txn;
        IF v_exc > 0 AND mp_collect_liability(txn, p_ch.channel_id, p_ep.hseq, v_liable,
                                              p_merchant_id, p_pending, v_exc) IS NULL THEN
            detail := 'fork excess of ' || v_exc || ' not covered ('
                      || mp_liability_cover_text(v_liable) || ')';
            RAISE EXCEPTION USING ERRCODE = 'MP014';
        END IF;
        IF v_vexc > 0 AND mp_collect_liability(txn, p_ch.channel_id, p_ep.hseq, v_void.liable,
                                               p_merchant_id, p_pending, v_vexc) IS NULL THEN
            detail := 'excess of ' || v_vexc || ' above a void Close not covered ('
                      || mp_liability_cover_text(v_void.liable) || ')';
            RAISE EXCEPTION USING ERRCODE = 'MP014';
        END IF;
    EXCEPTION WHEN SQLSTATE 'MP014' THEN
        status := 14; amount := 0; txn := NULL;
        detail := detail || '; claim again after loss_reserve.fund';
        RETURN;
    END;
    IF amount > v_exc + v_vexc THEN
        PERFORM mp_post(txn, p_ch.escrow_account, p_pending, amount - v_exc - v_vexc);
    END IF;
    UPDATE epochs e
       SET credited_end = p_idx, credited_amount = e.credited_amount + amount
     WHERE e.channel_id = p_ch.channel_id AND e.hseq = p_ep.hseq
       AND e.merchant_id = p_ep.merchant_id AND e.fork_of IS NOT DISTINCT FROM p_ep.fork_of;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    VALUES (p_ch.channel_id, p_seg, p_idx, p_w)
    ON CONFLICT DO NOTHING;
    credited_end := p_idx;
END
$$;

-- mp_redeem_claim of 0017 with the claim's opener; its result row records the branch of the
-- epoch it was judged in.
DROP FUNCTION mp_redeem_claim(bytea, bytea, bytea, int, bytea, int, int, int, bytea, int, text,
                              bytea);
CREATE FUNCTION mp_redeem_claim(p_merchant_id bytea, p_pending bytea, p_redeem_id bytea,
                                p_pos int, p_cid bytea, p_h int, p_seg int, p_idx int,
                                p_w bytea, p_pre_status int, p_pre_detail text,
                                p_redeem_stmt bytea, p_opener bytea,
                                OUT status int, OUT credited_end int, OUT amount bigint,
                                OUT detail text)
LANGUAGE plpgsql AS $$
DECLARE
    v_j    record;
    v_c    record;
    v_txn  bigint;
    v_fork bytea;
BEGIN
    amount := 0;
    IF p_pre_status IS DISTINCT FROM 0 THEN
        SELECT e.credited_end, e.fork_of INTO credited_end, v_fork
          FROM mp_claim_epoch(p_cid, p_h, p_merchant_id, p_opener) e
         WHERE e.merchant_id = p_merchant_id;
        credited_end := coalesce(credited_end, 0);
        status := coalesce(p_pre_status, 20);
        detail := coalesce(p_pre_detail, '');
    ELSE
        v_j := mp_redeem_judge(p_merchant_id, p_cid, p_h, p_seg, p_idx, p_w, p_redeem_stmt,
                               p_opener);
        status := v_j.status; detail := v_j.detail; credited_end := v_j.credited_end;
        v_fork := (v_j.ep).fork_of;
        IF status = 0 THEN
            v_c := mp_redeem_credit(p_merchant_id, p_pending, v_j.ch, v_j.ep, p_seg, p_idx,
                                    p_w);
            status := v_c.status; detail := v_c.detail; amount := v_c.amount;
            credited_end := v_c.credited_end; v_txn := v_c.txn;
        END IF;
    END IF;
    INSERT INTO redeem_results (merchant_id, redeem_id, pos, status, credited_end,
                                credited_amount, detail, channel_id, hseq, seg_seq, idx, txn_id,
                                fork_of)
    VALUES (p_merchant_id, p_redeem_id, p_pos, status, credited_end, amount, detail, p_cid, p_h,
            p_seg, p_idx, v_txn, v_fork);
END
$$;

-- mp_redeem of 0017 with p_openers (per claim: the stmt_hash of its own Handoff on a second
-- branch, or '' for none).
CREATE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
                          p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                          p_indices int[], p_words bytea[], p_pre_status int[],
                          p_pre_detail text[], p_stmt bytea, p_openers bytea[])
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
       OR coalesce(cardinality(p_pre_detail), 0) <> v_k
       OR coalesce(cardinality(p_openers), 0) <> v_k THEN
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
                               p_pre_status[i], p_pre_detail[i], p_stmt,
                               nullif(p_openers[i], '\x'::bytea));
        RETURN QUERY SELECT false, false, i, v_r.status, v_r.credited_end, v_r.amount,
                            v_r.detail, NULL::bytea;
    END LOOP;
END
$$;

-- The eleven-argument form (no claim on a second branch names its epoch).
CREATE OR REPLACE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
                          p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                          p_indices int[], p_words bytea[], p_pre_status int[],
                          p_pre_detail text[], p_stmt bytea)
RETURNS TABLE (replayed boolean, conflict boolean, pos int, status int, credited_end int,
               credited_amount bigint, detail text, stored_stmt bytea)
LANGUAGE sql AS $$
    SELECT * FROM mp_redeem(p_merchant_id, p_redeem_id, p_stmt_hash, p_channel_ids, p_hseqs,
                            p_seg_seqs, p_indices, p_words, p_pre_status, p_pre_detail, p_stmt,
                            array_fill(''::bytea,
                                       ARRAY[coalesce(cardinality(p_channel_ids), 0)]))
$$;

-- 0019's mp_fork_excess_units and 0014's mp_fork_liable, for callers that name an epoch by
-- (hseq, merchant): that merchant's first-branch epoch of hseq if it has one, else its other.
CREATE OR REPLACE FUNCTION mp_fork_excess_units(p_channel bytea, p_hseq int, p_mid bytea,
                                                p_fork boolean, p_from int, p_to int)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT mp_fork_excess_in(e, p_from, p_to)
                       FROM mp_claim_epoch(p_channel, p_hseq, p_mid, NULL) e
                      WHERE e.merchant_id = p_mid), 0)
$$;
CREATE OR REPLACE FUNCTION mp_fork_liable(p_channel bytea, p_hseq int, p_mid bytea, p_from int,
                                          p_to int)
RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT mp_fork_liable_in(e, p_from, p_to)
      FROM mp_claim_epoch(p_channel, p_hseq, p_mid, NULL) e
     WHERE e.merchant_id = p_mid
$$;

-- The audit: epoch_credits_match_redeems matches redeem results to epochs by their branch too;
-- the set-based audit of 0023 is kept as mp_audit_0023 and its other invariants and their
-- order are unchanged.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0023;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' AS $$
SELECT coalesce(n.check_name, o.check_name), coalesce(n.ok, o.ok), coalesce(n.detail, o.detail),
       coalesce(n.offenders, o.offenders)
  FROM mp_audit_0023() WITH ORDINALITY AS o(check_name, ok, detail, offenders, pos)
  LEFT JOIN mp_audit_check('epoch_credits_match_redeems', $q$
    WITH lt AS (
        SELECT l.txn_id, sum(l.amount) AS amount FROM ledger l
         WHERE l.txn_id IN (SELECT rr.txn_id FROM redeem_results rr)
         GROUP BY l.txn_id),
    r AS (
        SELECT rr.channel_id, rr.hseq, rr.merchant_id, rr.fork_of,
               sum(rr.credited_amount) AS results, sum(lt.amount) AS ledger
          FROM redeem_results rr LEFT JOIN lt ON lt.txn_id = rr.txn_id
         WHERE rr.txn_id IS NOT NULL
         GROUP BY rr.channel_id, rr.hseq, rr.merchant_id, rr.fork_of)
    SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
           encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
           || encode(e.merchant_id, 'hex') || ' (credited ' || e.credited_amount
           || ', results ' || coalesce(r.results, 0) || ', ledger '
           || coalesce(r.ledger, 0) || ', range ' || e.start_index || '..'
           || e.credited_end || ')' AS what
      FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
      LEFT JOIN r ON r.channel_id = e.channel_id AND r.hseq = e.hseq
                 AND r.merchant_id = e.merchant_id
                 AND r.fork_of IS NOT DISTINCT FROM e.fork_of
     WHERE e.credited_amount <> coalesce(r.results, 0)
        OR e.credited_amount <> coalesce(r.ledger, 0)
        OR e.credited_amount <> (e.credited_end - e.start_index)::numeric * c.unit_value $q$)
       AS n ON n.check_name = o.check_name
 ORDER BY o.pos;
$$;
