-- brokerd migration 0011: a Cap by a former holder (protocol.md section 7; docs/custody.md
-- "Conflicts").
--
-- A Cap of epoch h is consistent with its signer's own Handoff h+1 when the Handoff's
-- segments_head includes the Cap's Transfer (the Handoff's point lies in the Cap's new segment
-- or later) and its at_index is at or above the cap index. An inconsistent Cap was signed by a
-- merchant that had already handed the channel off (or the Handoff contradicts it): it is
-- recorded as a `cap_after_handoff` conflict against its signer and it is void for settlement,
-- whichever of the two statements the broker learns first:
--   * Handoff first: mp_segment_record keeps the pair as evidence, marks its segment void at
--     once and answers 16 with the Handoff as evidence;
--   * Cap first: when mp_custody_record stores the Handoff, the segment the Cap started (and
--     every later one, which rests on it) is marked void.
-- A void segment keeps its rows (its Transfer and Cap stay as evidence, its points stay
-- verified words, the audit's invariants hold); it no longer ends the segment before it
-- (mp_redeem, mp_redeem_prepare), mp_custody_prepare no longer offers its pair or points to the
-- verifier, and a claim in it is refused (16, "segment void"). No money moves.

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('double_handoff', 'claim_above_handoff', 'omitted_custody', 'bad_w_at',
                    'double_cap', 'cap_after_handoff'));

ALTER TABLE segments ADD COLUMN voided boolean NOT NULL DEFAULT false;
ALTER TABLE segments ADD CONSTRAINT segments_zero_not_void CHECK (seg_seq > 0 OR NOT voided);

-- Record every Cap of these channels that is inconsistent with its signer's stored Handoff
-- h+1 (cap_after_handoff, liable: the Cap's signer; stmt_a the Cap, stmt_b the Handoff) and
-- void the segment it started and every later one. Idempotent: void segments are skipped and
-- conflicts are keyed by their evidence. Returns the number of segments voided now. The caller
-- holds the channels' row locks.
CREATE FUNCTION mp_caps_void(p_channel_ids bytea[])
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r      record;
    v_void int := 0;
    v_n    int;
BEGIN
    FOR r IN
        SELECT t.channel_id, t.seg_seq, t.cap_hseq, t.cap_index, t.holder_mid, t.cap,
               h.stmt AS h_stmt, h.seg_seq AS h_seg, h.at_index
          FROM segment_transfers t
          JOIN segments s ON s.channel_id = t.channel_id AND s.seg_seq = t.seg_seq
          JOIN handoffs h ON h.channel_id = t.channel_id AND h.hseq = t.cap_hseq + 1
         WHERE t.channel_id = ANY (p_channel_ids) AND NOT s.voided
           AND h.from_mid = t.holder_mid
           AND (h.seg_seq < t.seg_seq OR h.at_index < t.cap_index)
         ORDER BY t.channel_id, t.seg_seq
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM segments s WHERE s.channel_id = r.channel_id
                                 AND s.seg_seq = r.seg_seq AND s.voided);
        PERFORM mp_conflict_add('cap_after_handoff', r.channel_id, r.cap_hseq, r.holder_mid,
                                r.cap, r.h_stmt, NULL, NULL,
                                'Cap of segment ' || r.seg_seq || ' at ' || r.cap_index
                                || ' in epoch ' || r.cap_hseq || ' inconsistent with the '
                                || 'signer''s own Handoff ' || (r.cap_hseq + 1) || ' at ('
                                || r.h_seg || ', ' || r.at_index || ')');
        UPDATE segments s SET voided = true
         WHERE s.channel_id = r.channel_id AND s.seg_seq >= r.seg_seq AND NOT s.voided;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_void := v_void + v_n;
    END LOOP;
    RETURN v_void;
END
$$;

-- mp_segment_record as in 0010, then the Caps checked against the stored Handoffs: a main pair
-- that is (or was already) void answers 16 with the signer's own Handoff as evidence.
ALTER FUNCTION mp_segment_record(bytea, text, int, int[], int[], int[], bytea[], bytea[],
                                 bytea[], bytea[], bytea[], bytea[], bytea[], int[], bytea[],
                                 bytea[], int[], bytea, bytea, bytea)
    RENAME TO mp_segment_record_0010;
CREATE FUNCTION mp_segment_record(p_channel_id bytea, p_source text, p_main_seg int,
                                  p_seg int[], p_start int[], p_len int[], p_nonce bytea[],
                                  p_root bytea[], p_owner bytea[], p_transfer bytea[],
                                  p_t_hash bytea[], p_cap bytea[], p_c_hash bytea[],
                                  p_hseq int[], p_w_cap bytea[], p_holder bytea[],
                                  p_declared int[], p_claim bytea, p_claim_hash bytea,
                                  p_payout bytea)
RETURNS TABLE (status int, detail text, evidence bytea, pairs_new int, conflicts_new int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r      record;
    v_before bigint;
    v_h      bytea;
    v_hseq   int;
BEGIN
    SELECT count(*) INTO v_before FROM conflicts;
    SELECT * INTO v_r FROM mp_segment_record_0010(p_channel_id, p_source, p_main_seg, p_seg,
        p_start, p_len, p_nonce, p_root, p_owner, p_transfer, p_t_hash, p_cap, p_c_hash,
        p_hseq, p_w_cap, p_holder, p_declared, p_claim, p_claim_hash, p_payout);
    IF v_r.status IN (0, 1) THEN
        PERFORM mp_caps_void(ARRAY[p_channel_id]);
        SELECT h.stmt, t.cap_hseq + 1 INTO v_h, v_hseq
          FROM segment_transfers t
          JOIN segments s ON s.channel_id = t.channel_id AND s.seg_seq = t.seg_seq
          JOIN handoffs h ON h.channel_id = t.channel_id AND h.hseq = t.cap_hseq + 1
         WHERE t.channel_id = p_channel_id AND t.seg_seq = p_main_seg AND s.voided;
        IF FOUND THEN
            RETURN QUERY SELECT 16, ('segment ' || p_main_seg || ' void: its Cap was signed '
                                     || 'after its signer''s own Handoff ' || v_hseq)::text,
                                v_h, v_r.pairs_new,
                                ((SELECT count(*) FROM conflicts) - v_before)::int;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_r.status, v_r.detail, v_r.evidence, v_r.pairs_new,
                        ((SELECT count(*) FROM conflicts) - v_before)::int;
END
$$;

-- mp_custody_record as in 0008, then the Caps of the channels checked against the Handoffs
-- (a Handoff stored now may void a Cap recorded before).
ALTER FUNCTION mp_custody_record(bytea, bytea, bytea[], int[], bytea[], bytea[], bytea[],
                                 bytea[], int[], int[], bytea[], text[], bytea[], int[],
                                 bytea[], bytea[], bytea[], int[], text[])
    RENAME TO mp_custody_record_0008;
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
    v_before bigint;
    v_new    int;
BEGIN
    SELECT count(*) INTO v_before FROM conflicts;
    SELECT r.handoffs_new INTO v_new
      FROM mp_custody_record_0008(p_claimant, p_redeem, p_h_channel, p_h_hseq, p_h_stmt,
                                  p_h_hash, p_h_from, p_h_to, p_h_seg, p_h_idx, p_h_w,
                                  p_c_kind, p_c_channel, p_c_hseq, p_c_liable, p_c_stmt,
                                  p_c_other, p_c_index, p_c_detail) r;
    PERFORM mp_caps_void(p_h_channel);
    RETURN QUERY SELECT v_new, ((SELECT count(*) FROM conflicts) - v_before)::int;
END
$$;

-- mp_custody_prepare as in 0010, without the pairs and points of void segments.
DROP FUNCTION mp_custody_prepare(bytea[], bytea[]);
CREATE FUNCTION mp_custody_prepare(p_channel_ids bytea[], p_with_custody bytea[])
RETURNS TABLE (kind text, channel_id bytea, hseq int, n int, finalize_at bigint,
               merchant_id bytea, to_mid bytea, nonce bytea, root bytea, bytes_a bytea,
               seg_seq int, idx int, w bytea, valid_until bigint, bytes_b bytea)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH ch AS (
        SELECT DISTINCT c.channel_id, c.n, c.finalize_at, c.holder0, c.cert
          FROM channels c
         WHERE c.channel_id = ANY (p_channel_ids)
           AND (c.channel_id = ANY (p_with_custody)
                OR EXISTS (SELECT 1 FROM handoffs h WHERE h.channel_id = c.channel_id)
                OR EXISTS (SELECT 1 FROM segment_transfers t
                            WHERE t.channel_id = c.channel_id)))
    SELECT 'chan'::text, ch.channel_id, NULL::int, ch.n, ch.finalize_at, ch.holder0, NULL::bytea,
           s.nonce, s.root, ch.cert, 0, NULL::int, b.stmt_hash, NULL::bigint, s.owner_pk
      FROM ch JOIN segments s ON s.channel_id = ch.channel_id AND s.seg_seq = 0
      LEFT JOIN binds b ON b.channel_id = ch.channel_id
    UNION ALL
    SELECT 'handoff', h.channel_id, h.hseq, NULL, NULL, h.from_mid, h.to_mid, NULL, NULL,
           h.stmt, h.seg_seq, h.at_index, h.w_at, NULL, NULL
      FROM handoffs h JOIN ch ON ch.channel_id = h.channel_id
    UNION ALL
    SELECT 'pair', t.channel_id, t.cap_hseq, NULL, NULL, t.holder_mid, NULL, NULL, NULL,
           t.transfer, t.seg_seq, t.cap_index, t.w_cap, NULL, t.cap
      FROM segment_transfers t JOIN ch ON ch.channel_id = t.channel_id
      JOIN segments sv ON sv.channel_id = t.channel_id AND sv.seg_seq = t.seg_seq
     WHERE NOT sv.voided
    UNION ALL
    SELECT 'point', p.channel_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p.seg_seq,
           p.idx, p.w, NULL, NULL
      FROM chain_points p JOIN ch ON ch.channel_id = p.channel_id
      JOIN segments sv ON sv.channel_id = p.channel_id AND sv.seg_seq = p.seg_seq
     WHERE NOT sv.voided
    UNION ALL
    SELECT 'key', NULL, NULL, NULL, NULL, kk.merchant_id, NULL, NULL, NULL, kk.merchant_pk,
           NULL, NULL, NULL, kk.valid_until, NULL
      FROM (SELECT DISTINCT ON (k.merchant_id) k.merchant_id, k.merchant_pk, k.valid_until
              FROM merchant_certs k ORDER BY k.merchant_id, k.valid_until DESC) kk
     WHERE EXISTS (SELECT 1 FROM ch);
END
$$;

-- mp_redeem_prepare as in 0010: a void segment does not end the one before it.
DROP FUNCTION mp_redeem_prepare(bytea[], int[], int[], int[]);
CREATE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                                  p_indices int[])
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
      LEFT JOIN epochs e ON e.channel_id = q.cid AND e.hseq = q.h
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx <= q.ix
                          ORDER BY p.idx DESC LIMIT 1) lo ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx >= q.ix
                          ORDER BY p.idx ASC LIMIT 1) hi ON true
     ORDER BY q.pos;
END
$$;

-- mp_redeem as in 0010: a void segment does not end the one before it; a claim in a void
-- segment is refused (16).
DROP FUNCTION mp_redeem(bytea, bytea, bytea, bytea[], int[], int[], int[], bytea[], int[], text[],
                        bytea);
CREATE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
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
                   FOR UPDATE;
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
                        v_amt := (v_idx - v_ep.credited_end)::bigint * v_ch.unit_value;
                        INSERT INTO transfers (kind, ref) VALUES ('redeem', v_cid)
                        RETURNING txn_id INTO v_txn;
                        -- Raises (rolling the whole Redeem back) if the escrow cannot cover it.
                        PERFORM mp_post(v_txn, v_ch.escrow_account, v_pending, v_amt);
                        UPDATE epochs e
                           SET credited_end = v_idx, credited_amount = e.credited_amount + v_amt
                         WHERE e.channel_id = v_cid AND e.hseq = v_h;
                        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
                        VALUES (v_cid, v_seg, v_idx, v_w)
                        ON CONFLICT DO NOTHING;
                        v_end := v_idx;
                        v_st := 0;
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

-- Admin `channel.segments` gains `voided`; a void segment does not give the one before it a
-- cap_index.
DROP FUNCTION mp_channel_segments(bytea);
CREATE FUNCTION mp_channel_segments(p_channel_id bytea)
RETURNS TABLE (seg_seq int, seg_start int, len int, owner_pk bytea, payout_account bytea,
               cap_index int, cap_hseq int, holder bytea, noticed_at bigint, claimed_at bigint,
               voided boolean)
LANGUAGE sql STABLE AS $$
    SELECT s.seg_seq, s.seg_start, s.len, s.owner_pk,
           CASE WHEN s.seg_seq = 0 THEN c.account_id ELSE t.payout_account_id END,
           nt.cap_index, t.cap_hseq, t.holder_mid,
           extract(epoch FROM t.noticed_at)::bigint, extract(epoch FROM t.claimed_at)::bigint,
           s.voided
      FROM segments s
      JOIN channels c ON c.channel_id = s.channel_id
      LEFT JOIN segment_transfers t ON t.channel_id = s.channel_id AND t.seg_seq = s.seg_seq
      LEFT JOIN segment_transfers nt ON nt.channel_id = s.channel_id
                                    AND nt.seg_seq = s.seg_seq + 1
                                    AND NOT EXISTS (SELECT 1 FROM segments v
                                                     WHERE v.channel_id = nt.channel_id
                                                       AND v.seg_seq = nt.seg_seq
                                                       AND v.voided)
     WHERE s.channel_id = p_channel_id
     ORDER BY s.seg_seq;
$$;
