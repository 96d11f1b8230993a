-- brokerd migration 0010: customer-to-customer transfers (protocol.md sections 4, 6 and 7;
-- docs/transfer.md "The broker").
--
-- Segment s >= 1 of a channel is established by Transfer s (signed by the owner of segment s-1)
-- and the Cap that ended segment s-1 (signed by the holder of the Cap's epoch). brokerd
-- verifies both (common/custody.c mp_custody_verify_all, on its worker pool) when it learns
-- them from a holder's CapNoticeReq, a wallet's SegmentClaimReq or the segments of a Redeem's
-- claims, then records here, in one transaction: the segments row (start = cap_index, the new
-- owner's len, nonce, root and key), its base point (cap_index, new_root), the cap point
-- (s-1, cap_index, w_cap) that ends segment s-1, and the exact statements (segment_transfers:
-- the ledger already owns the name `transfers`). A transfer moves no money.

CREATE TABLE segment_transfers (
    channel_id        bytea NOT NULL REFERENCES channels (channel_id),
    seg_seq           int   NOT NULL CHECK (seg_seq >= 1 AND seg_seq <= 15),
    transfer_hash     bytea NOT NULL CHECK (length(transfer_hash) = 32),
    transfer          bytea NOT NULL,  -- the exact signed Transfer (Signed) bytes
    cap_hash          bytea NOT NULL CHECK (length(cap_hash) = 32),
    cap               bytea NOT NULL,  -- the exact signed Cap (Signed) bytes
    cap_hseq          int   NOT NULL CHECK (cap_hseq >= 0),
    cap_index         int   NOT NULL CHECK (cap_index >= 0),
    w_cap             bytea NOT NULL CHECK (length(w_cap) = 32),
    holder_mid        bytea NOT NULL CHECK (length(holder_mid) = 16),
    declared_last     int   NOT NULL CHECK (declared_last >= cap_index),
    payout_account_id bytea REFERENCES accounts (id),
    claim_hash        bytea CHECK (length(claim_hash) = 32),
    claim             bytea,  -- the exact signed SegmentClaim (Signed) bytes
    noticed_at        timestamptz,  -- first CapNoticeReq from a holder
    claimed_at        timestamptz,  -- the SegmentClaim acknowledged
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seg_seq),
    FOREIGN KEY (channel_id, seg_seq) REFERENCES segments (channel_id, seg_seq),
    CONSTRAINT segment_transfers_claim CHECK ((claim IS NULL) = (claim_hash IS NULL)
                                              AND (claim IS NULL) = (claimed_at IS NULL)
                                              AND (claim IS NULL) = (payout_account_id IS NULL))
);

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('double_handoff', 'claim_above_handoff', 'omitted_custody', 'bad_w_at',
                    'double_cap'));

-- What brokerd needs to verify custody and segment evidence, as typed rows (0008's rows plus
-- 'pair' and 'point'; a 'chan' row also carries the stmt_hash of the channel's Bind in w, NULL
-- if it has none, and segment 0's owner key in bytes_b):
--   'chan'    per channel that has stored Handoffs or pairs, or is in p_with_custody
--   'handoff' per stored Handoff of those channels
--   'pair'    per recorded segment s >= 1: seg_seq, Transfer (bytes_a), Cap (bytes_b)
--   'point'   per verified point of those channels: seg_seq, idx, w
--   'key'     per merchant: the key of its cert valid the longest (valid_until)
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
    UNION ALL
    SELECT 'point', p.channel_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p.seg_seq,
           p.idx, p.w, NULL, NULL
      FROM chain_points p JOIN ch ON ch.channel_id = p.channel_id
    UNION ALL
    SELECT 'key', NULL, NULL, NULL, NULL, kk.merchant_id, NULL, NULL, NULL, kk.merchant_pk,
           NULL, NULL, NULL, kk.valid_until, NULL
      FROM (SELECT DISTINCT ON (k.merchant_id) k.merchant_id, k.merchant_pk, k.valid_until
              FROM merchant_certs k ORDER BY k.merchant_id, k.valid_until DESC) kk
     WHERE EXISTS (SELECT 1 FROM ch);
END
$$;

-- Record verified Transfer/Cap pairs of one channel, in seg_seq order, and optionally the
-- SegmentClaim of segment p_main_seg (p_claim NULL: none). p_source: 'notice' (a holder's
-- CapNoticeReq), 'claim' (a wallet's SegmentClaimReq) or 'redeem' (pairs carried by claims).
-- Pair i: segment p_seg[i] starts at p_start[i] (= its Cap's index) with p_len, p_nonce,
-- p_root, p_owner from the Transfer; the Cap (hash p_c_hash, epoch p_hseq, signer's merchant
-- p_holder) ends segment p_seg[i]-1 at p_start[i] with word p_w_cap.
-- The first problem ends the call (pairs before it stay recorded: each was verified):
--   17 unknown channel; 18 the claim's payout account is not a customer account of the
--   channel's currency (checked first: nothing recorded); 16 a recorded segment with another
--   pair (a double_cap conflict is recorded against the second Cap's signer; evidence = the
--   stored Cap); 12 segment s-1 unknown; 19 seg_seq above 15; 2 'reused' (owner key, nonce or
--   root of any segment); a claim of a segment claimed with another SegmentClaim: 16 with the
--   stored one. Otherwise 0, or 1 when the main pair (and the claim, if any) was recorded
--   before with the same bytes. pairs_new / conflicts_new count what this call added.
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
    v_ch     channels%ROWTYPE;
    v_t      segment_transfers%ROWTYPE;
    v_new    int := 0;
    v_status int := 0;
    v_main   boolean;
    v_conf   bigint;
BEGIN
    IF p_source NOT IN ('notice', 'claim', 'redeem') THEN
        RAISE EXCEPTION 'mp_segment_record: source %', p_source;
    END IF;
    -- Serialise with mp_redeem and mp_custody_record on the channel.
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'unknown channel'::text, NULL::bytea, 0, 0;
        RETURN;
    END IF;
    IF p_claim IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM accounts a WHERE a.id = p_payout AND a.kind = 'customer'
               AND a.currency = v_ch.currency) THEN
        RETURN QUERY SELECT 18, 'payout account unknown'::text, NULL::bytea, 0, 0;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_seg), 0) LOOP
        v_main := p_seg[i] = p_main_seg;
        SELECT * INTO v_t FROM segment_transfers t
         WHERE t.channel_id = p_channel_id AND t.seg_seq = p_seg[i];
        IF FOUND THEN
            IF v_t.transfer_hash = p_t_hash[i] AND v_t.cap_hash = p_c_hash[i] THEN
                IF p_source = 'notice' AND v_t.noticed_at IS NULL THEN
                    UPDATE segment_transfers t SET noticed_at = now()
                     WHERE t.channel_id = p_channel_id AND t.seg_seq = p_seg[i];
                END IF;
                IF v_main THEN
                    v_status := 1;
                END IF;
                CONTINUE;
            END IF;
            SELECT count(*) INTO v_conf FROM conflicts;
            PERFORM mp_conflict_add('double_cap', p_channel_id, p_hseq[i], p_holder[i],
                                    p_cap[i], v_t.cap, NULL, NULL,
                                    'two Caps for segment ' || p_seg[i]);
            RETURN QUERY SELECT 16, ('segment ' || p_seg[i]
                                     || ' recorded with another Transfer/Cap')::text,
                                v_t.cap, v_new, ((SELECT count(*) FROM conflicts) - v_conf)::int;
            RETURN;
        END IF;
        IF p_seg[i] > 15 THEN
            RETURN QUERY SELECT 19, 'at most 15 transfers per channel'::text, NULL::bytea,
                                v_new, 0;
            RETURN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM segments s WHERE s.channel_id = p_channel_id
                                                  AND s.seg_seq = p_seg[i] - 1)
           OR p_start[i] > v_ch.n THEN
            RETURN QUERY SELECT 12, ('segment ' || (p_seg[i] - 1) || ' unknown')::text,
                                NULL::bytea, v_new, 0;
            RETURN;
        END IF;
        BEGIN
            INSERT INTO segments (channel_id, seg_seq, seg_start, len, nonce, root, owner_pk)
            VALUES (p_channel_id, p_seg[i], p_start[i], p_len[i], p_nonce[i], p_root[i],
                    p_owner[i]);
        EXCEPTION WHEN unique_violation THEN
            RETURN QUERY SELECT 2, ('reused: segment ' || p_seg[i]
                                    || '''s owner key, nonce or root')::text, NULL::bytea,
                                v_new, 0;
            RETURN;
        END;
        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
        VALUES (p_channel_id, p_seg[i], p_start[i], p_root[i]),
               (p_channel_id, p_seg[i] - 1, p_start[i], p_w_cap[i])
        ON CONFLICT DO NOTHING;
        INSERT INTO segment_transfers (channel_id, seg_seq, transfer_hash, transfer, cap_hash,
                                       cap, cap_hseq, cap_index, w_cap, holder_mid,
                                       declared_last, noticed_at)
        VALUES (p_channel_id, p_seg[i], p_t_hash[i], p_transfer[i], p_c_hash[i], p_cap[i],
                p_hseq[i], p_start[i], p_w_cap[i], p_holder[i], p_declared[i],
                CASE WHEN p_source = 'notice' THEN now() END);
        v_new := v_new + 1;
    END LOOP;
    IF p_claim IS NOT NULL THEN
        SELECT * INTO v_t FROM segment_transfers t
         WHERE t.channel_id = p_channel_id AND t.seg_seq = p_main_seg FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 12, 'segment unknown'::text, NULL::bytea, v_new, 0;
            RETURN;
        ELSIF v_t.claim_hash = p_claim_hash THEN
            RETURN QUERY SELECT 1, 'segment claimed before'::text, NULL::bytea, v_new, 0;
            RETURN;
        ELSIF v_t.claim_hash IS NOT NULL THEN
            RETURN QUERY SELECT 16, 'segment claimed with another SegmentClaim'::text,
                                v_t.claim, v_new, 0;
            RETURN;
        END IF;
        UPDATE segment_transfers t
           SET payout_account_id = p_payout, claim_hash = p_claim_hash, claim = p_claim,
               claimed_at = now()
         WHERE t.channel_id = p_channel_id AND t.seg_seq = p_main_seg;
        v_status := 0;
    END IF;
    RETURN QUERY SELECT v_status, CASE v_status WHEN 1 THEN 'segment recorded before'
                                                ELSE '' END, NULL::bytea, v_new, 0;
END
$$;

-- mp_redeem_prepare also returns seg_end: the index the next segment's Cap ended the claimed
-- segment at (NULL while it is the last one).
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

-- mp_redeem as in 0004, with segments: a claim in a segment the broker does not know is
-- TOO_EARLY ('segment unknown'); a claim in segment s-1 above the index where Cap s ended it
-- is OUT_OF_RANGE ('index outside its segment').
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
                         WHERE s.channel_id = v_cid AND s.seg_seq = v_seg + 1;
                    END IF;
                    IF v_sg.channel_id IS NULL THEN
                        v_st := 12;
                        v_det := 'segment unknown';
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

-- The audit gains one invariant (0006's mp_audit is kept as mp_audit_0006 and extended):
-- segments are contiguous and each segment s >= 1 is backed by its recorded Transfer/Cap
-- (segment_transfers row with cap_index = seg_start, and the cap point of segment s-1).
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0006;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0006();
    RETURN QUERY SELECT * FROM mp_audit_check('segments_backed_by_transfers', $q$
        SELECT encode(s.channel_id, 'hex') || '/' || s.seg_seq AS id,
               encode(s.channel_id, 'hex') || '/' || s.seg_seq || ' (start ' || s.seg_start
               || ', cap ' || coalesce(t.cap_index::text, 'none') || ', segment before '
               || CASE WHEN p.channel_id IS NULL THEN 'missing' ELSE 'present' END
               || ', cap point ' || CASE WHEN cp.channel_id IS NULL THEN 'missing'
                                         ELSE 'present' END || ')' AS what
          FROM segments s
          LEFT JOIN segment_transfers t ON t.channel_id = s.channel_id
                                       AND t.seg_seq = s.seg_seq
          LEFT JOIN segments p ON p.channel_id = s.channel_id AND p.seg_seq = s.seg_seq - 1
          LEFT JOIN chain_points cp ON cp.channel_id = s.channel_id
                                   AND cp.seg_seq = s.seg_seq - 1 AND cp.idx = s.seg_start
         WHERE s.seg_seq >= 1
           AND (t.channel_id IS NULL OR t.cap_index <> s.seg_start OR p.channel_id IS NULL
                OR cp.channel_id IS NULL OR cp.w <> t.w_cap) $q$);
END
$$;

-- Admin `channel.segments`: every segment of a channel in order (segment 0 from the cert).
-- payout_account: the issuing account for segment 0, the SegmentClaim's after a transfer;
-- cap_index: where the next segment's Cap ended this one (NULL while it is the last);
-- cap_hseq, holder: the epoch and merchant of the Cap that started it (NULL for segment 0).
CREATE FUNCTION mp_channel_segments(p_channel_id bytea)
RETURNS TABLE (seg_seq int, seg_start int, len int, owner_pk bytea, payout_account bytea,
               cap_index int, cap_hseq int, holder bytea, noticed_at bigint, claimed_at bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.seg_seq, s.seg_start, s.len, s.owner_pk,
           CASE WHEN s.seg_seq = 0 THEN c.account_id ELSE t.payout_account_id END,
           nt.cap_index, t.cap_hseq, t.holder_mid,
           extract(epoch FROM t.noticed_at)::bigint, extract(epoch FROM t.claimed_at)::bigint
      FROM segments s
      JOIN channels c ON c.channel_id = s.channel_id
      LEFT JOIN segment_transfers t ON t.channel_id = s.channel_id AND t.seg_seq = s.seg_seq
      LEFT JOIN segment_transfers nt ON nt.channel_id = s.channel_id
                                    AND nt.seg_seq = s.seg_seq + 1
     WHERE s.channel_id = p_channel_id
     ORDER BY s.seg_seq;
$$;
