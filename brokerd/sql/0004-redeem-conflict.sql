-- brokerd migration 0004: a Redeem CONFLICT carries the stored statement (protocol.md
-- sections 3 and 5: "reused with another stmt_hash it gets CONFLICT carrying the stored
-- statement"). redeems keeps the exact signed bytes of each Redeem, and mp_redeem takes them
-- (p_stmt) and returns them (stored_stmt) in its CONFLICT row. Redeems stored before this
-- migration have no bytes: their CONFLICT carries none.

ALTER TABLE redeems ADD COLUMN stmt bytea;

DROP FUNCTION mp_redeem(bytea, bytea, bytea, bytea[], int[], int[], int[], bytea[], int[], text[]);

-- Redeem (protocol.md section 6, "Redemption"). brokerd has verified the signature, checked
-- the limits, and for each claim either decided a refusal (p_pre_status <> 0) or verified the
-- word against a stored point (p_pre_status = 0; claims at or below the credited end may come
-- unverified: they are answered DUPLICATE_OK and their word is not stored). The results are
-- stored under (merchant, redeem_id) and replayed verbatim; the Redeem's exact signed bytes
-- (p_stmt) are stored with them, and a CONFLICT returns them in stored_stmt.
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
                    IF NOT FOUND OR v_idx IS NULL OR v_idx < v_sg.seg_start
                       OR v_idx > v_sg.seg_start::bigint + v_sg.len OR v_idx > v_ch.n THEN
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
