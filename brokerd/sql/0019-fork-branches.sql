-- brokerd migration 0019: the whole second branch of a fork honoured (protocol.md section 7;
-- docs/custody.md "Forks").
--
-- 0014 honoured a fork for the second branch's first merchant only. Now a claim whose custody
-- forks from the stored (first-branch) chain at hseq f at or below its own epoch, where the
-- claim's Handoff f names another merchant than the stored Handoff f, is a claim on a second
-- branch. brokerd verified the claim's whole chain (common/custody.c) and passes its Handoffs
-- f, f+1, ... as that branch's statements, identified by `branch` = stmt_hash of its Handoff f
-- and liable: its signer (the double signer). Each is stored in fork_handoffs with its point
-- (chain_points: a verified word of the channel); Handoff f opens the fork epoch (f, its
-- to_mid) as in 0014; Handoff g > f ends the branch's epoch g-1 at its index and opens the
-- branch's epoch g for its to_mid, with fork_of = the branch and liable_mid = the double
-- signer. So every holder on the branch is paid its range; the units credited on more than one
-- branch are collected from the double signer as before (mp_fork_excess_units counts, for a
-- credit in an epoch, the epochs on any other branch than its own).
--
-- A different Handoff g on a branch that already has one (a fork within the second branch) is
-- recorded as a double handoff against its signer and nothing after it opens on that branch:
-- its successors' claims get NOT_HOLDER (not built: forks within a second branch).

CREATE TABLE fork_handoffs (
    channel_id  bytea NOT NULL REFERENCES channels (channel_id),
    branch      bytea NOT NULL CHECK (length(branch) = 32),
    hseq        int   NOT NULL CHECK (hseq >= 1),
    stmt_hash   bytea NOT NULL CHECK (length(stmt_hash) = 32),
    stmt        bytea NOT NULL,  -- the exact signed Handoff (Signed) bytes
    from_mid    bytea NOT NULL CHECK (length(from_mid) = 16),
    to_mid      bytea NOT NULL CHECK (length(to_mid) = 16),
    seg_seq     int   NOT NULL CHECK (seg_seq >= 0),
    at_index    int   NOT NULL CHECK (at_index >= 0),
    w_at        bytea NOT NULL CHECK (length(w_at) = 32),
    liable_mid  bytea NOT NULL CHECK (length(liable_mid) = 16),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, branch, hseq)
);

-- One Handoff g of a second branch (the caller holds the channel's lock): stored, its point
-- recorded, the branch's epochs ended and opened. Returns 1 if it was new, 0 for a replay, -1
-- for a second Handoff g on the branch (recorded as a double handoff; the caller stops
-- following the branch).
CREATE FUNCTION mp_fork_branch_step(p_channel bytea, p_branch bytea, p_liable bytea, p_hseq int,
                                    p_stmt bytea, p_hash bytea, p_from bytea, p_to bytea,
                                    p_seg int, p_idx int, p_w bytea)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v_old fork_handoffs%ROWTYPE;
BEGIN
    INSERT INTO fork_handoffs (channel_id, branch, hseq, stmt_hash, stmt, from_mid, to_mid,
                               seg_seq, at_index, w_at, liable_mid)
    VALUES (p_channel, p_branch, p_hseq, p_hash, p_stmt, p_from, p_to, p_seg, p_idx, p_w,
            p_liable)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_old FROM fork_handoffs f
         WHERE f.channel_id = p_channel AND f.branch = p_branch AND f.hseq = p_hseq;
        IF v_old.stmt_hash = p_hash THEN
            RETURN 0;
        END IF;
        PERFORM mp_conflict_add('double_handoff', p_channel, p_hseq, p_from, v_old.stmt, p_stmt,
                                NULL, NULL, 'two Handoffs with one hseq on a second branch');
        RETURN -1;
    END IF;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    VALUES (p_channel, p_seg, p_idx, p_w)
    ON CONFLICT DO NOTHING;
    IF p_hash <> p_branch THEN
        -- Not the fork Handoff itself: it ends the branch's epoch before it.
        UPDATE epochs e SET end_index = p_idx
         WHERE e.channel_id = p_channel AND e.hseq = p_hseq - 1 AND e.merchant_id = p_from
           AND e.fork_of = p_branch AND e.end_index IS NULL AND e.start_index <= p_idx;
    END IF;
    IF EXISTS (SELECT 1 FROM merchants m WHERE m.merchant_id = p_to) THEN
        INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index,
                            credited_end, fork_of, liable_mid)
        VALUES (p_channel, p_hseq, p_to, p_idx, NULL, p_idx, p_branch, p_liable)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN 1;
END
$$;

-- mp_custody_record (0014) then the second branches' Handoffs, in one transaction: p_b_*
-- in (channel, branch, hseq) order, each branch from its fork Handoff on.
CREATE FUNCTION mp_custody_record_branches(p_claimant bytea, p_redeem bytea,
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
    v_skip    bytea := NULL; -- a branch (channel || branch) not followed further
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
        CONTINUE WHEN v_skip = p_b_channel[i] || p_b_branch[i];
        v_step := mp_fork_branch_step(p_b_channel[i], p_b_branch[i], p_b_liable[i],
                                      p_b_hseq[i], p_b_stmt[i], p_b_hash[i], p_b_from[i],
                                      p_b_to[i], p_b_seg[i], p_b_idx[i], p_b_w[i]);
        IF v_step < 0 THEN
            v_skip := p_b_channel[i] || p_b_branch[i];
        ELSE
            v_new := v_new + v_step;
        END IF;
    END LOOP;
    SELECT count(*) INTO v_after FROM conflicts;
    RETURN QUERY SELECT v_new, v_conf + (v_after - v_before)::int;
END
$$;

-- Units of (p_from, p_to] credited in an epoch on another branch than epoch (p_hseq, p_mid):
-- for an epoch of a second branch, every epoch not on that branch (the first branch, the
-- epochs below the fork, other branches); for a first-branch epoch, the second branches'.
-- p_fork is kept for the callers (mp_redeem); the epoch's own fork_of decides. 0 for a
-- channel without forks.
CREATE OR REPLACE FUNCTION mp_fork_excess_units(p_channel bytea, p_hseq int, p_mid bytea,
                                                p_fork boolean, p_from int, p_to int)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(upper(r) - lower(r)), 0)::bigint
      FROM unnest((SELECT range_agg(int4range(e.start_index, e.credited_end, '(]'))
                     FROM epochs e
                    WHERE e.channel_id = p_channel AND e.credited_end > e.start_index
                      AND NOT (e.hseq = p_hseq AND e.merchant_id = p_mid)
                      AND e.fork_of IS DISTINCT FROM
                          (SELECT m.fork_of FROM epochs m
                            WHERE m.channel_id = p_channel AND m.hseq = p_hseq
                              AND m.merchant_id = p_mid))
                   * int4multirange(int4range(p_from, p_to, '(]'))) AS r
     WHERE EXISTS (SELECT 1 FROM epochs f WHERE f.channel_id = p_channel
                                            AND f.fork_of IS NOT NULL)
$$;

-- The audit: 'fork_epochs_are_recorded_conflicts' now finds the double handoff at the
-- branch's fork hseq (an epoch further down a second branch rests on its branch's fork);
-- mp_audit of 0017 kept as mp_audit_0017.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0017;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0017() a
                  WHERE a.check_name <> 'fork_epochs_are_recorded_conflicts';
    RETURN QUERY SELECT * FROM mp_audit_check('fork_epochs_are_recorded_conflicts', $q$
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
               || encode(e.merchant_id, 'hex') || ' (no double_handoff against '
               || encode(e.liable_mid, 'hex') || ' at its branch''s fork)' AS what
          FROM epochs e
         WHERE e.fork_of IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM conflicts k
                WHERE k.kind = 'double_handoff' AND k.channel_id = e.channel_id
                  AND k.liable_mid = e.liable_mid
                  AND k.hseq = coalesce((SELECT f.hseq FROM fork_handoffs f
                                          WHERE f.channel_id = e.channel_id
                                            AND f.stmt_hash = e.fork_of
                                            AND f.branch = e.fork_of), e.hseq)) $q$);
END
$$;
