-- brokerd migration 0022: a Close by a merchant that had handed the channel on is void
-- (protocol.md section 7: "a Close and a Handoff h+1 are never consistent"; "an inconsistent
-- Cap or Close is void for settlement"; docs/close.md "A Close after a Handoff").
--
-- The early refund's Handoffs 1..H are stored as custody evidence (mp_refund_early calls
-- mp_custody_record_branches, as a Redeem's custody is stored), so the epoch its Close ends
-- is anchored in the broker's chain. A Close of epoch H and a Handoff H+1 have one signer
-- (the holder of epoch H); whichever the broker learns second, the Close is void:
--
--   Handoff H+1 stored, then the RefundRequest --mp_refund_early--> HANDED_OFF, nothing paid,
--     conflict close_after_handoff (liable: the signer; the Close and the Handoff)
--   early refund paid, then Handoff H+1 stored (any path: a Redeem's custody, a SegmentClaim)
--     --trigger handoffs_void_close--> early_refunds.voided_by = the Handoff's hash,
--     liable_mid = its signer, channels.close_index = NULL, the same conflict recorded
--
-- After the void: claims above the old close_index are judged as if there had been no Close
-- (the honest successor's range is its own). The escrow no longer holds the units above the
-- early refund's base (early_refunds.spent): a credit of such units is collected from the
-- liable signer (mp_collect_liability: its pending credit, then its bond, then the loss
-- reserve; 14 and nothing moves if they cannot cover it; 16 when the signer claims them
-- itself). The early refund stays paid (refunds are never reduced). Finalisation: spent =
-- the highest credited index, refund = max(0, (n - spent) * unit_value - early_refund).

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('double_handoff', 'claim_above_handoff', 'omitted_custody', 'bad_w_at',
                    'double_cap', 'cap_after_handoff', 'close_after_handoff'));

ALTER TABLE early_refunds ADD COLUMN voided_by bytea CHECK (length(voided_by) = 32);
ALTER TABLE early_refunds ADD COLUMN liable_mid bytea REFERENCES merchants (merchant_id);
ALTER TABLE early_refunds ADD CONSTRAINT early_refunds_void_liable
    CHECK ((voided_by IS NULL) = (liable_mid IS NULL));

-- The conflict of a Close of epoch p_hseq and the signer's own Handoff p_hseq+1 (p_handoff).
CREATE FUNCTION mp_close_after_handoff(p_channel bytea, p_hseq int, p_close bytea,
                                       p_final_index int, p_handoff handoffs)
RETURNS void
LANGUAGE sql AS $$
    SELECT mp_conflict_add('close_after_handoff', p_channel, p_hseq, p_handoff.from_mid,
                           p_close, p_handoff.stmt, NULL, NULL,
                           'Close of epoch ' || p_hseq || ' at ' || p_final_index
                           || ' by the signer of Handoff ' || p_handoff.hseq || ' at '
                           || p_handoff.at_index || ': the Close is void');
$$;

-- A Handoff h+1 stored after the early refund of a Close of epoch h voids that Close.
CREATE FUNCTION mp_close_void_on_handoff()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_r early_refunds%ROWTYPE;
BEGIN
    UPDATE early_refunds r SET voided_by = NEW.stmt_hash, liable_mid = NEW.from_mid
     WHERE r.channel_id = NEW.channel_id AND r.hseq = NEW.hseq - 1 AND r.voided_by IS NULL
    RETURNING r.* INTO v_r;
    IF FOUND THEN
        UPDATE channels c SET close_index = NULL WHERE c.channel_id = NEW.channel_id;
        PERFORM mp_close_after_handoff(NEW.channel_id, v_r.hseq, v_r.close, v_r.final_index,
                                       NEW);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER handoffs_void_close AFTER INSERT ON handoffs
    FOR EACH ROW EXECUTE FUNCTION mp_close_void_on_handoff();

-- Units of (p_from, p_to] above the base of a void Close's early refund (refunded at once,
-- no longer in the escrow) and who owes them; 0 and NULL without a void Close.
CREATE FUNCTION mp_void_close_excess(p_channel bytea, p_from int, p_to int,
                                     OUT units int, OUT base int, OUT liable bytea)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r.channel_id IS NULL THEN 0
                ELSE greatest(0, p_to - greatest(p_from, r.spent)) END,
           coalesce(r.spent, p_to), r.liable_mid
      FROM (SELECT 1) one
      LEFT JOIN early_refunds r ON r.channel_id = p_channel AND r.voided_by IS NOT NULL
$$;

-- mp_redeem_credit of 0017 with the excess of a void Close: units above the early refund's
-- base are collected from the Close's signer (the fork excess is counted below the base only,
-- so no unit is collected twice); both collections, or neither, in the redeem transfer.
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
    v_exc := mp_fork_excess_units(p_ch.channel_id, p_ep.hseq, p_ep.merchant_id,
                                  p_ep.fork_of IS NOT NULL, p_ep.credited_end,
                                  least(p_idx, greatest(p_ep.credited_end, v_void.base)))
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
       AND e.merchant_id = p_ep.merchant_id;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    VALUES (p_ch.channel_id, p_seg, p_idx, p_w)
    ON CONFLICT DO NOTHING;
    credited_end := p_idx;
END
$$;

-- Finalisation after a void Close: mp_finalize_locked of 0015 (kept as
-- mp_finalize_locked_0015) computes refund = (n - spent) * unit_value - early_refund with spent
-- the highest credited index (close_index is NULL); the early refund may exceed that (the
-- signer paid the rest), so it is counted only up to it: the refund is then 0, never negative.
ALTER FUNCTION mp_finalize_locked(channels, bigint) RENAME TO mp_finalize_locked_0015;
CREATE FUNCTION mp_finalize_locked(p_ch channels, p_now bigint)
RETURNS finalizations
LANGUAGE plpgsql AS $$
DECLARE
    v_ch    channels := p_ch;
    v_spent int;
BEGIN
    IF EXISTS (SELECT 1 FROM early_refunds r
                WHERE r.channel_id = p_ch.channel_id AND r.voided_by IS NOT NULL) THEN
        SELECT coalesce(max(e.credited_end), 0) INTO v_spent
          FROM epochs e WHERE e.channel_id = p_ch.channel_id;
        v_ch.early_refund := least(v_ch.early_refund,
                                   (v_ch.n - v_spent)::bigint * v_ch.unit_value);
    END IF;
    RETURN mp_finalize_locked_0015(v_ch, p_now);
END
$$;
REVOKE ALL ON FUNCTION mp_finalize_locked(channels, bigint) FROM PUBLIC;

-- The early refund storing its Handoffs: mp_refund_early of 0017 (kept as
-- mp_refund_early_0017, which decides and pays under the channel's row lock), then in the same
-- transaction:
--   OK (0): the Handoffs p_h_* the broker had not stored (1..H, verified by brokerd; p_closer:
--     the Close's signer) are stored as custody evidence, as a Redeem's are;
--   HANDED_OFF (6: Handoff p_hseq+1 stored): the Close is void, the conflict
--     close_after_handoff is recorded against its signer;
--   any other answer as 0017's.
ALTER FUNCTION mp_refund_early(bytea, bytea, int, bytea, bytea, bytea, bytea, bytea, int, int,
                               bigint) RENAME TO mp_refund_early_0017;
CREATE FUNCTION mp_refund_early(p_refund_id bytea, p_channel_id bytea, p_seg_seq int,
                                p_stmt_hash bytea, p_stmt bytea, p_payout bytea,
                                p_close_hash bytea, p_close bytea, p_hseq int,
                                p_final_index int, p_now bigint,
                                p_closer bytea DEFAULT NULL,
                                p_h_hseq int[] DEFAULT '{}', p_h_stmt bytea[] DEFAULT '{}',
                                p_h_hash bytea[] DEFAULT '{}', p_h_from bytea[] DEFAULT '{}',
                                p_h_to bytea[] DEFAULT '{}', p_h_seg int[] DEFAULT '{}',
                                p_h_idx int[] DEFAULT '{}', p_h_w bytea[] DEFAULT '{}')
RETURNS TABLE (status int, detail text, not_before bigint, refund bigint,
               payout_account bytea, spent int, unclaimed bigint, refunded_at bigint,
               stored_stmt bytea)
LANGUAGE plpgsql AS $$
DECLARE
    v_r record;
    v_h handoffs%ROWTYPE;
    v_k int := coalesce(cardinality(p_h_hseq), 0);
BEGIN
    SELECT * INTO v_r FROM mp_refund_early_0017(p_refund_id, p_channel_id, p_seg_seq,
        p_stmt_hash, p_stmt, p_payout, p_close_hash, p_close, p_hseq, p_final_index, p_now) r;
    IF v_r.status = 0 AND v_k > 0 THEN
        PERFORM mp_custody_record_branches(p_closer, p_stmt, array_fill(p_channel_id, ARRAY[v_k]),
            p_h_hseq, p_h_stmt, p_h_hash, p_h_from, p_h_to, p_h_seg, p_h_idx, p_h_w,
            '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
            '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
    ELSIF v_r.status = 6 THEN
        SELECT * INTO v_h FROM handoffs h
         WHERE h.channel_id = p_channel_id AND h.hseq = p_hseq + 1;
        IF FOUND THEN
            PERFORM mp_close_after_handoff(p_channel_id, p_hseq, p_close, p_final_index, v_h);
        END IF;
    END IF;
    RETURN QUERY SELECT v_r.status, v_r.detail, v_r.not_before, v_r.refund,
                        v_r.payout_account, v_r.spent, v_r.unclaimed, v_r.refunded_at,
                        v_r.stored_stmt;
END
$$;

-- The audit (mp_audit of 0019 kept as mp_audit_0019): finalisation's refund at least 0 and
-- unclaimed what the escrow kept (a void Close); an early refund's channel keeps close_index
-- unless the Close is void; every void Close is a recorded conflict against its signer.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0019;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0019() a
                  WHERE a.check_name NOT IN ('finalization_matches_ledger',
                                             'early_refund_matches_ledger');
    RETURN QUERY SELECT * FROM mp_audit_check('finalization_matches_ledger', $q$
        WITH t AS (
            SELECT c.channel_id, c.n, c.unit_value, c.early_refund, f.spent, f.credited, f.refund,
                   f.unclaimed, f.refund_txn,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id) AS epoch_credit,
                   (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                     WHERE li.channel_id = c.channel_id) AS excess,
                   (SELECT coalesce(sum(s.amount::numeric), 0) FROM liability_sources s
                     WHERE s.channel_id = c.channel_id) AS collected,
                   (SELECT greatest(coalesce(max(e.credited_end), 0),
                                    coalesce(c.close_index, 0))
                      FROM epochs e WHERE e.channel_id = c.channel_id) AS epoch_spent,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'refund') AS l_refund,
                   (SELECT count(*) FROM transfers x
                     WHERE x.ref = c.channel_id AND x.kind = 'refund') AS n_refund,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'unclaimed') AS l_unclaimed,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'release') AS l_release
              FROM channels c JOIN finalizations f ON f.channel_id = c.channel_id)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (spent ' || spent || '/' || epoch_spent
               || ', refund ' || refund || ' ledger ' || l_refund || ' in ' || n_refund
               || ', unclaimed ' || unclaimed || ' ledger ' || l_unclaimed || ', credited '
               || credited || ' epochs ' || epoch_credit || ' released ' || l_release || ')'
               AS what
          FROM t
         WHERE spent <> epoch_spent OR credited <> epoch_credit
            OR l_release <> epoch_credit - collected
            OR refund::numeric <> greatest(0, (n - spent)::numeric * unit_value - early_refund)
            OR unclaimed::numeric <> n::numeric * unit_value - early_refund - refund
                                     - (epoch_credit - excess)
            OR l_unclaimed <> unclaimed
            OR (refund_txn IS NULL AND (l_refund <> 0 OR n_refund <> 0))
            OR (refund_txn IS NOT NULL AND (l_refund <> refund OR n_refund <> 1)) $q$);

    RETURN QUERY SELECT * FROM mp_audit_check('early_refund_matches_ledger', $q$
        WITH t AS (
            SELECT c.channel_id, c.state, c.close_index, c.early_refund, r.final_index,
                   r.amount, r.refund_id IS NOT NULL AS stored, r.voided_by IS NOT NULL AS void,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'early_refund') AS l_early,
                   (SELECT count(*) FROM transfers x
                     WHERE x.ref = c.channel_id AND x.kind = 'early_refund') AS n_early
              FROM channels c LEFT JOIN early_refunds r ON r.channel_id = c.channel_id)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (' || state || ', early refund '
               || coalesce(amount::text, 'none') || ' ledger ' || l_early || ' in ' || n_early
               || ', close_index ' || coalesce(close_index::text, 'none')
               || CASE WHEN void THEN ', Close void' ELSE '' END || ')' AS what
          FROM t
         WHERE (NOT stored AND (l_early <> 0 OR n_early <> 0 OR early_refund <> 0
                                OR close_index IS NOT NULL OR state = 'CLOSED_EARLY'))
            OR (stored AND (l_early <> amount OR n_early <> (amount > 0)::int
                            OR early_refund <> amount
                            OR close_index IS DISTINCT FROM
                               CASE WHEN void THEN NULL ELSE final_index END
                            OR state NOT IN ('CLOSED_EARLY', 'FINALIZED'))) $q$);

    -- Every void Close is a recorded close_after_handoff conflict against its signer.
    RETURN QUERY SELECT * FROM mp_audit_check('void_closes_are_recorded_conflicts', $q$
        SELECT encode(r.channel_id, 'hex') AS id,
               encode(r.channel_id, 'hex') || ' (Close of epoch ' || r.hseq
               || ' void, no close_after_handoff against ' || encode(r.liable_mid, 'hex')
               || ')' AS what
          FROM early_refunds r
         WHERE r.voided_by IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM conflicts k
                            WHERE k.kind = 'close_after_handoff'
                              AND k.channel_id = r.channel_id AND k.hseq = r.hseq
                              AND k.liable_mid = r.liable_mid AND k.stmt_a = r.close) $q$);
END
$$;
