-- brokerd migration 0008: settlement of custody chains (protocol.md sections 4, 6 and 7;
-- docs/custody.md).
--
-- brokerd verifies each claim's custody chain (common/custody.c, on its worker pool) against
-- what it already knows, then stores here, in one transaction before the crediting call:
-- every verified Handoff (handoffs; its point joins chain_points), the epoch it opens and the
-- end it gives the epoch before (epochs), and the conflicts it found (conflicts). mp_redeem
-- then credits within the stored epochs as before.

CREATE TABLE handoffs (
    channel_id  bytea NOT NULL REFERENCES channels (channel_id),
    hseq        int   NOT NULL CHECK (hseq >= 1),
    stmt_hash   bytea NOT NULL CHECK (length(stmt_hash) = 32),
    stmt        bytea NOT NULL,  -- the exact signed Handoff (Signed) bytes
    from_mid    bytea NOT NULL CHECK (length(from_mid) = 16),
    to_mid      bytea NOT NULL CHECK (length(to_mid) = 16),
    seg_seq     int   NOT NULL CHECK (seg_seq >= 0),
    at_index    int   NOT NULL CHECK (at_index >= 0),
    w_at        bytea NOT NULL CHECK (length(w_at) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, hseq)
);

-- Evidence of misbehaviour (section 7): the liable signer's statement (stmt_a) and the second
-- statement (stmt_b: the other Handoff of a double handoff, or the claimant's Redeem), the
-- claimed index of a claim conflict. evidence_key makes recording idempotent.
CREATE TABLE conflicts (
    conflict_id  bigserial PRIMARY KEY,
    kind         text  NOT NULL CHECK (kind IN ('double_handoff', 'claim_above_handoff',
                                                'omitted_custody', 'bad_w_at')),
    channel_id   bytea NOT NULL CHECK (length(channel_id) = 16),
    hseq         int   NOT NULL CHECK (hseq >= 0),
    liable_mid   bytea NOT NULL CHECK (length(liable_mid) = 16),
    stmt_a       bytea NOT NULL,
    stmt_b       bytea,
    claimant_mid bytea CHECK (length(claimant_mid) = 16),
    claim_index  int,
    detail       text  NOT NULL DEFAULT '',
    evidence_key bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conflicts_liable_idx ON conflicts (liable_mid);

CREATE FUNCTION mp_conflict_add(p_kind text, p_channel_id bytea, p_hseq int, p_liable bytea,
                                p_a bytea, p_b bytea, p_claimant bytea, p_index int,
                                p_detail text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO conflicts (kind, channel_id, hseq, liable_mid, stmt_a, stmt_b, claimant_mid,
                           claim_index, detail, evidence_key)
    VALUES (p_kind, p_channel_id, p_hseq, p_liable, p_a, p_b, p_claimant, p_index, p_detail,
            sha256(convert_to(p_kind, 'UTF8') || p_channel_id || int4send(p_hseq) || p_liable
                   || sha256(p_a) || sha256(coalesce(p_b, ''::bytea))
                   || int4send(coalesce(p_index, -1))))
    ON CONFLICT (evidence_key) DO NOTHING;
$$;

-- What brokerd needs to verify the custody chains of a Redeem, as typed rows:
--   'chan'    per channel that has stored Handoffs or is in p_with_custody: n, finalize_at,
--             holder0, segment 0's nonce and root, the cert's exact bytes (bytes_a)
--   'handoff' per stored Handoff of those channels, by hseq: stmt (bytes_a), from/to, point
--   'key'     per merchant: the key of its cert valid the longest (valid_until)
CREATE FUNCTION mp_custody_prepare(p_channel_ids bytea[], p_with_custody bytea[])
RETURNS TABLE (kind text, channel_id bytea, hseq int, n int, finalize_at bigint,
               merchant_id bytea, to_mid bytea, nonce bytea, root bytea, bytes_a bytea,
               seg_seq int, idx int, w bytea, valid_until bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH ch AS (
        SELECT DISTINCT c.channel_id, c.n, c.finalize_at, c.holder0, c.cert
          FROM channels c
         WHERE c.channel_id = ANY (p_channel_ids)
           AND (c.channel_id = ANY (p_with_custody)
                OR EXISTS (SELECT 1 FROM handoffs h WHERE h.channel_id = c.channel_id)))
    SELECT 'chan'::text, ch.channel_id, NULL::int, ch.n, ch.finalize_at, ch.holder0, NULL::bytea,
           s.nonce, s.root, ch.cert, 0, NULL::int, NULL::bytea, NULL::bigint
      FROM ch JOIN segments s ON s.channel_id = ch.channel_id AND s.seg_seq = 0
    UNION ALL
    SELECT 'handoff', h.channel_id, h.hseq, NULL, NULL, h.from_mid, h.to_mid, NULL, NULL,
           h.stmt, h.seg_seq, h.at_index, h.w_at, NULL
      FROM handoffs h JOIN ch ON ch.channel_id = h.channel_id
    UNION ALL
    SELECT 'key', NULL, NULL, NULL, NULL, kk.merchant_id, NULL, NULL, NULL, kk.merchant_pk,
           NULL, NULL, NULL, kk.valid_until
      FROM (SELECT DISTINCT ON (k.merchant_id) k.merchant_id, k.merchant_pk, k.valid_until
              FROM merchant_certs k ORDER BY k.merchant_id, k.valid_until DESC) kk
     WHERE EXISTS (SELECT 1 FROM ch);
END
$$;

-- Store verified Handoffs (in hseq order per channel) and the conflicts brokerd found.
-- A Handoff already stored with the same hash is a replay; with another hash it is a double
-- handoff (recorded, the stored one stays). A new Handoff h opens epoch h of its to_mid at its
-- point and ends epoch h-1 there; an epoch h-1 already credited above that point is a claim
-- above the claimant's own handoff (recorded against the signer of Handoff h).
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
         WHERE e.channel_id = p_h_channel[i] AND e.hseq = p_h_hseq[i] - 1 FOR UPDATE;
        IF FOUND THEN
            UPDATE epochs e SET end_index = p_h_idx[i]
             WHERE e.channel_id = p_h_channel[i] AND e.hseq = p_h_hseq[i] - 1
               AND e.end_index IS NULL AND e.start_index <= p_h_idx[i];
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

-- mp_redeem_prepare now reads the claimed epoch (p_hseqs), not only epoch 0.
DROP FUNCTION mp_redeem_prepare(bytea[], int[], int[]);
CREATE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                                  p_indices int[])
RETURNS TABLE (pos int, found boolean, state text, n int, unit_value bigint, seg_found boolean,
               seg_start int, seg_len int, nonce bytea, epoch_merchant bytea, credited_end int,
               lo_idx int, lo_w bytea, hi_idx int, hi_w bytea)
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
           e.merchant_id, e.credited_end, lo.idx, lo.w, hi.idx, hi.w
      FROM unnest(p_channel_ids, p_hseqs, p_seg_seqs, p_indices) WITH ORDINALITY
           AS q(cid, h, seg, ix, pos)
      LEFT JOIN channels c ON c.channel_id = q.cid
      LEFT JOIN segments s ON s.channel_id = q.cid AND s.seg_seq = q.seg
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

-- The admin method `conflicts`: every recorded conflict, oldest first.
CREATE FUNCTION mp_conflicts_list()
RETURNS TABLE (conflict_id bigint, kind text, channel_id bytea, hseq int, liable_mid bytea,
               claimant_mid bytea, claim_index int, detail text, stmt_a bytea, stmt_b bytea,
               created_at bigint)
LANGUAGE sql STABLE AS $$
    SELECT k.conflict_id, k.kind, k.channel_id, k.hseq, k.liable_mid, k.claimant_mid,
           k.claim_index, k.detail, k.stmt_a, k.stmt_b, extract(epoch FROM k.created_at)::bigint
      FROM conflicts k ORDER BY k.conflict_id;
$$;
