-- brokerd migration 0020: forks within a second branch honoured, and claims above one's own
-- Handoff on a second branch recorded (protocol.md section 7; docs/custody.md "Forks").
--
-- 0019 followed a second branch (identified by `branch`, the stmt_hash of its fork Handoff f)
-- Handoff by Handoff, and stopped at a second, different Handoff g on it. Now:
--
-- * A different Handoff g on branch B naming another merchant than B's stored Handoff g (its
--   signer, the holder of B's epoch g-1, signed two) is a fork within the second branch: the
--   double handoff is recorded against that signer and the Handoff opens a new branch B'
--   (`branch` = its stmt_hash, liable: its signer), stored in fork_handoffs at (B', g) with its
--   epoch (g, its to_mid, fork_of = B'). The claim's later Handoffs g+1, ... that continue it
--   (hseq one above, from the merchant the previous one named) are followed on B'
--   (mp_custody_record_branches), and so on for a fork within B'. Each holder on B' is paid
--   its range; the units also credited on any other branch are collected from B's double
--   signer (the epoch's liable_mid) as in 0014.
-- * A different Handoff g on B naming the same merchant as the stored one is one epoch g
--   either way (as two Handoffs h to one merchant at the fork, 0019): the double handoff is
--   recorded and the claim's chain goes on being compared with B's.
-- * A Handoff g on a branch that ends an epoch g-1 already credited above its index records
--   claim_above_handoff against its signer (as mp_custody_record does on the first branch).
-- * A claim on a second branch's epoch above the epoch's end (the claimant's own Handoff on
--   the branch, stored from a successor's claim) is refused as before (10) and recorded as
--   claim_above_handoff against the claimant, evidence that Handoff and the Redeem
--   (mp_redeem_branch_end, called by mp_redeem_judge).
--
-- mp_fork_branch_step now returns (status, next_branch): 1 new or 0 a replay (or one epoch
-- either way), and the branch the claim's chain goes on in.

DROP FUNCTION mp_fork_branch_step(bytea, bytea, bytea, int, bytea, bytea, bytea, bytea, int,
                                  int, bytea);

-- The epoch g-1 of branch p_branch that Handoff (p_hseq, p_from, at p_idx) ends: ended, and
-- if it was credited above p_idx, claim_above_handoff against p_from (evidence: the Handoff
-- and the Redeem that credited it).
CREATE FUNCTION mp_fork_branch_end(p_channel bytea, p_branch bytea, p_hseq int, p_from bytea,
                                   p_idx int, p_stmt bytea)
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
     WHERE e.channel_id = p_channel AND e.hseq = p_hseq - 1 AND e.merchant_id = p_from;
    IF v_ep.credited_end > p_idx THEN
        SELECT r.stmt INTO v_stmt FROM redeem_results rr
          JOIN redeems r ON r.merchant_id = rr.merchant_id AND r.redeem_id = rr.redeem_id
         WHERE rr.channel_id = p_channel AND rr.hseq = p_hseq - 1 AND rr.merchant_id = p_from
           AND rr.idx = v_ep.credited_end AND rr.txn_id IS NOT NULL
         LIMIT 1;
        PERFORM mp_conflict_add('claim_above_handoff', p_channel, p_hseq - 1, p_from, p_stmt,
                                v_stmt, p_from, v_ep.credited_end,
                                'credited above the signer''s own Handoff on a second branch');
    END IF;
END
$$;

-- One Handoff g of a second branch (the caller holds the channel's lock): stored, its point
-- recorded, the branch's epochs ended and opened. status 1 if it was new, 0 for a replay (or a
-- second Handoff g to the merchant the stored one names: one epoch either way); next_branch:
-- the branch the claim's chain goes on in (p_branch, or after a fork within it the new
-- branch, p_hash, which the caller follows).
CREATE FUNCTION mp_fork_branch_step(p_channel bytea, p_branch bytea, p_liable bytea, p_hseq int,
                                    p_stmt bytea, p_hash bytea, p_from bytea, p_to bytea,
                                    p_seg int, p_idx int, p_w bytea,
                                    OUT status int, OUT next_branch bytea)
LANGUAGE plpgsql AS $$
DECLARE
    v_old fork_handoffs%ROWTYPE;
BEGIN
    status := 1;
    next_branch := p_branch;
    -- At most twice: into p_branch, then (a fork within it) into the branch p_hash starts,
    -- whose Handoff g can only be p_hash itself.
    LOOP
        INSERT INTO fork_handoffs (channel_id, branch, hseq, stmt_hash, stmt, from_mid, to_mid,
                                   seg_seq, at_index, w_at, liable_mid)
        VALUES (p_channel, p_branch, p_hseq, p_hash, p_stmt, p_from, p_to, p_seg, p_idx, p_w,
                p_liable)
        ON CONFLICT DO NOTHING;
        EXIT WHEN FOUND;
        SELECT * INTO v_old FROM fork_handoffs f
         WHERE f.channel_id = p_channel AND f.branch = p_branch AND f.hseq = p_hseq;
        IF v_old.stmt_hash = p_hash THEN
            status := 0;
            RETURN;
        END IF;
        PERFORM mp_conflict_add('double_handoff', p_channel, p_hseq, p_from, v_old.stmt, p_stmt,
                                NULL, NULL, 'two Handoffs with one hseq on a second branch');
        IF v_old.to_mid = p_to THEN
            status := 0;
            RETURN;
        END IF;
        -- A fork within the branch: p_hash starts a branch of its own, liable its signer.
        p_branch := p_hash;
        p_liable := p_from;
        next_branch := p_hash;
    END LOOP;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    VALUES (p_channel, p_seg, p_idx, p_w)
    ON CONFLICT DO NOTHING;
    IF p_hash <> p_branch THEN
        -- Not the fork Handoff itself: it ends the branch's epoch before it.
        PERFORM mp_fork_branch_end(p_channel, p_branch, p_hseq, p_from, p_idx, p_stmt);
    END IF;
    IF EXISTS (SELECT 1 FROM merchants m WHERE m.merchant_id = p_to) THEN
        INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index,
                            credited_end, fork_of, liable_mid)
        VALUES (p_channel, p_hseq, p_to, p_idx, NULL, p_idx, p_branch, p_liable)
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- mp_custody_record (0014) then the second branches' Handoffs, in one transaction: p_b_*
-- in (channel, branch, hseq) order, each branch from its fork Handoff on. A fork within a
-- branch is followed: the rows after it that continue the claim's chain (next hseq, from the
-- merchant the previous Handoff named) go to the new branch.
CREATE OR REPLACE FUNCTION mp_custody_record_branches(p_claimant bytea, p_redeem bytea,
                                  p_h_channel bytea[], p_h_hseq int[], p_h_stmt bytea[],
                                  p_h_hash bytea[], p_h_from bytea[], p_h_to bytea[],
                                  p_h_seg int[], p_h_idx int[], p_h_w bytea[],
                                  p_c_kind text[], p_c_channel bytea[], p_c_hseq int[],
                                  p_c_liable bytea[], p_c_stmt bytea[], p_c_other bytea[],
                                  p_c_index int[], p_c_detail text[],
                                  p_b_channel bytea[], p_b_branch bytea[], p_b_liable bytea[],
                                  p_b_hseq int[], p_b_stmt bytea[], p_b_hash bytea[],
                                  p_b_from bytea[], p_b_to bytea[], p_b_seg int[],
                                  p_b_idx int[], p_b_w bytea[])
RETURNS TABLE (handoffs_new int, conflicts_new int)
LANGUAGE plpgsql AS $$
DECLARE
    v_new     int;
    v_conf    int;
    v_before  bigint;
    v_after   bigint;
    v_step    int;
    v_branch  bytea;
    v_liable  bytea;
    v_next    bytea;
    -- The branch being followed instead of (channel || branch) after a fork within it, and
    -- the last Handoff followed there (hseq, to_mid).
    v_map_key bytea := NULL;
    v_map_to_branch bytea;
    v_map_liable bytea;
    v_map_hseq int;
    v_map_to  bytea;
BEGIN
    IF coalesce(cardinality(p_b_branch), 0) <> coalesce(cardinality(p_b_channel), 0)
       OR coalesce(cardinality(p_b_hseq), 0) <> coalesce(cardinality(p_b_channel), 0)
       OR coalesce(cardinality(p_b_w), 0) <> coalesce(cardinality(p_b_channel), 0) THEN
        RAISE EXCEPTION 'mp_custody_record_branches: array lengths differ';
    END IF;
    SELECT r.handoffs_new, r.conflicts_new INTO v_new, v_conf
      FROM mp_custody_record(p_claimant, p_redeem, p_h_channel, p_h_hseq, p_h_stmt, p_h_hash,
                             p_h_from, p_h_to, p_h_seg, p_h_idx, p_h_w, p_c_kind, p_c_channel,
                             p_c_hseq, p_c_liable, p_c_stmt, p_c_other, p_c_index,
                             p_c_detail) r;
    SELECT count(*) INTO v_before FROM conflicts;
    PERFORM 1 FROM channels c
      WHERE c.channel_id = ANY (p_b_channel) ORDER BY c.channel_id FOR NO KEY UPDATE;
    FOR i IN 1 .. coalesce(cardinality(p_b_channel), 0) LOOP
        v_branch := p_b_branch[i];
        v_liable := p_b_liable[i];
        IF v_map_key = p_b_channel[i] || p_b_branch[i] AND p_b_hseq[i] = v_map_hseq + 1
           AND p_b_from[i] = v_map_to THEN
            v_branch := v_map_to_branch;
            v_liable := v_map_liable;
        END IF;
        SELECT s.status, s.next_branch INTO v_step, v_next
          FROM mp_fork_branch_step(p_b_channel[i], v_branch, v_liable, p_b_hseq[i],
                                   p_b_stmt[i], p_b_hash[i], p_b_from[i], p_b_to[i],
                                   p_b_seg[i], p_b_idx[i], p_b_w[i]) s;
        v_new := v_new + v_step;
        IF v_next <> v_branch THEN
            -- A fork within the branch: the claim's chain goes on in the new one.
            v_map_key := p_b_channel[i] || p_b_branch[i];
            v_map_to_branch := v_next;
            v_map_liable := p_b_from[i];
        END IF;
        IF v_map_key = p_b_channel[i] || p_b_branch[i]
           AND (v_next <> v_branch OR v_branch <> p_b_branch[i]) THEN
            v_map_hseq := p_b_hseq[i];
            v_map_to := p_b_to[i];
        END IF;
    END LOOP;
    SELECT count(*) INTO v_after FROM conflicts;
    RETURN QUERY SELECT v_new, v_conf + (v_after - v_before)::int;
END
$$;

-- A claim above the end of its second-branch epoch: the claimant's own Handoff on the branch
-- ended it (stored from a successor's claim; the worker does not read a branch's Handoffs).
-- Recorded once as claim_above_handoff against the claimant (evidence: that Handoff and the
-- Redeem); the refusal's detail, or NULL when the epoch is not a second branch's or is not
-- ended by such a Handoff.
CREATE FUNCTION mp_redeem_branch_end(p_ch channels, p_ep epochs, p_idx int, p_redeem_stmt bytea)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_h fork_handoffs%ROWTYPE;
BEGIN
    IF p_ep.fork_of IS NULL OR p_ep.end_index IS NULL OR p_idx <= p_ep.end_index THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_h FROM fork_handoffs f
     WHERE f.channel_id = p_ch.channel_id AND f.hseq = p_ep.hseq + 1
       AND f.from_mid = p_ep.merchant_id AND f.at_index = p_ep.end_index
       AND f.branch = p_ep.fork_of;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM mp_conflict_add('claim_above_handoff', p_ch.channel_id, p_ep.hseq,
                            p_ep.merchant_id, v_h.stmt, p_redeem_stmt, p_ep.merchant_id, p_idx,
                            'claim at ' || p_idx || ' in epoch ' || p_ep.hseq
                            || ' of a second branch above the claimant''s own Handoff at '
                            || p_ep.end_index);
    RETURN 'claim at ' || p_idx || ' above your own Handoff ' || (p_ep.hseq + 1)
           || ' at index ' || p_ep.end_index;
END
$$;

-- mp_redeem_judge of 0017 with a claim above a second-branch epoch's end recorded
-- (mp_redeem_branch_end).
CREATE OR REPLACE FUNCTION mp_redeem_judge(p_merchant_id bytea, p_cid bytea, p_h int, p_seg int,
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
