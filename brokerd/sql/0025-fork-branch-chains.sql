-- brokerd migration 0025: every chain of a Redeem followed on its own branch (protocol.md
-- section 7; docs/custody.md "Forks").
--
-- mp_custody_record_branches of 0020 followed a fork within a second branch with one map per
-- (channel, branch): the rows after the fork that continue "the last Handoff followed there"
-- went to the new branch. When one Redeem carried several chains splitting inside one second
-- branch (a merchant's complete record holding both of its own Handoffs g, or claims on
-- several sub-branches), the rows of all but one chain went to the root branch: a double
-- Handoff there was not recorded against its signer and the epochs it opened were put on the
-- root branch, liable to the root's double signer.
--
-- Now brokerd passes, per branch row, the stmt_hash of the Handoff before it in the claim's
-- chain (`p_b_prev`; its prev_handoff_hash, verified). Rows come in (channel, branch, hseq)
-- order, so a row's predecessor, when it is a branch row of this call, was followed before it;
-- each row goes on the branch its predecessor ended up on (after a fork within a branch: the
-- new one, liable its signer), else on the branch brokerd named. Any number of chains, each
-- followed on its own branch:
--
--   row (hash, prev) --(prev followed in this call)--> prev's branch and liable signer
--        |                                             --> mp_fork_branch_step --> its branch
--        +--(otherwise)--> the branch brokerd named ---^       recorded for its successors
--
-- The 30-argument mp_custody_record_branches of 0020 stays for callers without branch rows
-- (mp_refund_early).

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
                                  p_b_idx int[], p_b_w bytea[], p_b_prev bytea[])
RETURNS TABLE (handoffs_new int, conflicts_new int)
LANGUAGE plpgsql AS $$
DECLARE
    v_new    int;
    v_conf   int;
    v_before bigint;
    v_after  bigint;
    v_step   int;
    v_next   bytea;
    v_branch bytea;
    v_liable bytea;
    v_k      int;
    -- Each branch row followed in this call: its hash, the branch it went on, that branch's
    -- liable signer.
    v_done   bytea[] := '{}';
    v_on     bytea[] := '{}';
    v_by     bytea[] := '{}';
BEGIN
    IF coalesce(cardinality(p_b_branch), 0) <> coalesce(cardinality(p_b_channel), 0)
       OR coalesce(cardinality(p_b_hseq), 0) <> coalesce(cardinality(p_b_channel), 0)
       OR coalesce(cardinality(p_b_w), 0) <> coalesce(cardinality(p_b_channel), 0)
       OR coalesce(cardinality(p_b_prev), 0) <> coalesce(cardinality(p_b_channel), 0) THEN
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
        v_k := array_position(v_done, p_b_prev[i]);
        IF v_k IS NOT NULL THEN
            v_branch := v_on[v_k];
            v_liable := v_by[v_k];
        END IF;
        SELECT s.status, s.next_branch INTO v_step, v_next
          FROM mp_fork_branch_step(p_b_channel[i], v_branch, v_liable, p_b_hseq[i],
                                   p_b_stmt[i], p_b_hash[i], p_b_from[i], p_b_to[i],
                                   p_b_seg[i], p_b_idx[i], p_b_w[i]) s;
        v_new := v_new + v_step;
        v_done := v_done || p_b_hash[i];
        v_on := v_on || v_next;
        -- A fork within the branch: the new one is liable to this row's signer.
        v_by := v_by || CASE WHEN v_next <> v_branch THEN p_b_from[i] ELSE v_liable END;
    END LOOP;
    SELECT count(*) INTO v_after FROM conflicts;
    RETURN QUERY SELECT v_new, v_conf + (v_after - v_before)::int;
END
$$;
