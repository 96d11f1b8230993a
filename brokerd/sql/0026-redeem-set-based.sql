-- Claims settled in set-based SQL (issue 9). A Redeem of 10,000 claims ran past brokerd's
-- statement timeout: mp_redeem judged and credited claim by claim, and each credit's mp_post
-- updated the merchant's pending account, so that one row got 10,000 versions in one
-- transaction (each update walking the versions before it: the cost grew with the square of
-- the claims). Since 0026 mp_redeem first settles the plain claims together
-- (mp_redeem_plain), then the others one by one as before (mp_redeem_claim, in position
-- order), then returns the stored results in position order.
--
-- A plain claim is one whose judgement and credit cannot take any branch but "credit it":
-- not decided by brokerd (pre-status 0), no opener, its channel named once in the Redeem, not
-- FINALIZED, without a Close (close_index) or a void Close, without fork epochs; the claimant's
-- first-branch epoch hseq_in exists; the segment is known, not void, and the index lies in it
-- (below the next segment's start), in the epoch and above its credited end; the word is 32
-- bytes; the escrow and pending accounts have the channel's currency. Its credit is exactly
-- what mp_redeem_claim does for it (mp_redeem_judge status 0; mp_redeem_credit with no fork
-- excess, no void Close, no liability): one `redeem` transfer, the escrow -> pending ledger
-- row of (index - credited_end) * unit_value, the epoch advanced, the word a verified point,
-- the result row (status 0, detail '', txn). Every other claim goes the per-claim way, so
-- every refusal, conflict and collection keeps its rule and its detail.
--
-- The writes are one statement per table: transfers, ledger, the escrow accounts (each once),
-- the pending account (once, with the sum: the same amounts as one mp_post per claim, the
-- ledger rows those of mp_post), epochs, chain_points, redeem_results. An escrow that cannot
-- cover its credit violates accounts_balance_nonneg and the whole call rolls back, as before.

CREATE FUNCTION mp_redeem_plain(p_merchant_id bytea, p_pending bytea, p_redeem_id bytea,
                                p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                                p_indices int[], p_words bytea[], p_pre_status int[],
                                p_openers bytea[])
RETURNS int[]
LANGUAGE plpgsql AS $$
DECLARE
    v_cur    text;
    v_pos    int[];
    v_cid    bytea[];
    v_h      int[];
    v_seg    int[];
    v_idx    int[];
    v_w      bytea[];
    v_amt    bigint[];
    v_escrow bytea[];
    v_txn    bigint[];
BEGIN
    SELECT a.currency INTO v_cur FROM accounts a WHERE a.id = p_pending;
    -- The candidates' epochs, locked in one order before they are read (the channels are
    -- locked already: mp_redeem_lock).
    PERFORM 1 FROM epochs e
      JOIN unnest(p_channel_ids, p_hseqs, p_pre_status) AS q(cid, h, st)
        ON e.channel_id = q.cid AND e.hseq = q.h
     WHERE q.st = 0 AND e.merchant_id = p_merchant_id AND e.fork_of IS NULL
     ORDER BY e.channel_id, e.hseq
       FOR UPDATE OF e;
    SELECT array_agg(q.pos ORDER BY q.pos), array_agg(q.cid ORDER BY q.pos),
           array_agg(q.h ORDER BY q.pos), array_agg(q.seg ORDER BY q.pos),
           array_agg(q.ix ORDER BY q.pos), array_agg(q.w ORDER BY q.pos),
           array_agg((q.ix - e.credited_end)::bigint * c.unit_value ORDER BY q.pos),
           array_agg(c.escrow_account ORDER BY q.pos)
      INTO v_pos, v_cid, v_h, v_seg, v_idx, v_w, v_amt, v_escrow
      FROM (SELECT u.*, count(*) OVER (PARTITION BY u.cid) AS named
              FROM unnest(p_channel_ids, p_hseqs, p_seg_seqs, p_indices, p_words, p_pre_status,
                          p_openers) WITH ORDINALITY AS u(cid, h, seg, ix, w, st, op, pos)) q
      JOIN channels c ON c.channel_id = q.cid
      JOIN accounts ea ON ea.id = c.escrow_account
      JOIN epochs e ON e.channel_id = q.cid AND e.hseq = q.h AND e.merchant_id = p_merchant_id
                   AND e.fork_of IS NULL
      JOIN segments s ON s.channel_id = q.cid AND s.seg_seq = q.seg AND NOT s.voided
      LEFT JOIN segments nx ON nx.channel_id = q.cid AND nx.seg_seq = q.seg + 1
                           AND NOT nx.voided
     WHERE q.named = 1 AND q.st = 0 AND coalesce(q.op, '\x'::bytea) = '\x'::bytea
       AND c.state <> 'FINALIZED' AND c.close_index IS NULL
       AND c.currency = v_cur AND ea.currency = v_cur
       AND q.ix IS NOT NULL AND q.ix >= s.seg_start AND q.ix <= s.seg_start::bigint + s.len
       AND q.ix <= c.n AND (nx.seg_start IS NULL OR q.ix <= nx.seg_start)
       AND q.ix >= e.start_index AND q.ix <= coalesce(e.end_index, c.n)
       AND q.ix > e.credited_end
       AND q.w IS NOT NULL AND length(q.w) = 32
       AND NOT EXISTS (SELECT 1 FROM epochs f
                        WHERE f.channel_id = q.cid AND f.fork_of IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM early_refunds r
                        WHERE r.channel_id = q.cid AND r.voided_by IS NOT NULL);
    IF v_pos IS NULL THEN
        RETURN '{}';
    END IF;
    -- One transfer per claim, numbered in position order.
    WITH t AS (
        INSERT INTO transfers (kind, ref)
        SELECT 'redeem', k.cid FROM unnest(v_cid) WITH ORDINALITY AS k(cid, ord) ORDER BY k.ord
        RETURNING txn_id, ref)
    SELECT array_agg(t.txn_id ORDER BY k.ord) INTO v_txn
      FROM unnest(v_cid) WITH ORDINALITY AS k(cid, ord) JOIN t ON t.ref = k.cid;
    INSERT INTO ledger (txn_id, debit_account, credit_account, amount)
    SELECT u.txn, u.escrow, p_pending, u.amt FROM unnest(v_txn, v_escrow, v_amt) AS u(txn, escrow, amt);
    UPDATE accounts a SET balance = a.balance - u.amt
      FROM unnest(v_escrow, v_amt) AS u(id, amt)
     WHERE a.id = u.id;
    UPDATE accounts a SET balance = a.balance + (SELECT sum(x) FROM unnest(v_amt) AS x)
     WHERE a.id = p_pending;
    UPDATE epochs e
       SET credited_end = u.ix, credited_amount = e.credited_amount + u.amt
      FROM unnest(v_cid, v_h, v_idx, v_amt) AS u(cid, h, ix, amt)
     WHERE e.channel_id = u.cid AND e.hseq = u.h AND e.merchant_id = p_merchant_id
       AND e.fork_of IS NULL;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    SELECT * FROM unnest(v_cid, v_seg, v_idx, v_w)
    ON CONFLICT DO NOTHING;
    INSERT INTO redeem_results (merchant_id, redeem_id, pos, status, credited_end,
                                credited_amount, detail, channel_id, hseq, seg_seq, idx, txn_id,
                                fork_of)
    SELECT p_merchant_id, p_redeem_id, u.pos, 0, u.ix, u.amt, '', u.cid, u.h, u.seg, u.ix,
           u.txn, NULL
      FROM unnest(v_pos, v_cid, v_h, v_seg, v_idx, v_amt, v_txn)
           AS u(pos, cid, h, seg, ix, amt, txn);
    RETURN v_pos;
END
$$;

-- mp_redeem of 0024: the plain claims first (mp_redeem_plain), then the others in position
-- order (mp_redeem_claim); the results, stored, returned in position order.
CREATE OR REPLACE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea,
                                     p_stmt_hash bytea, p_channel_ids bytea[], p_hseqs int[],
                                     p_seg_seqs int[], p_indices int[], p_words bytea[],
                                     p_pre_status int[], p_pre_detail text[], p_stmt bytea,
                                     p_openers bytea[])
RETURNS TABLE (replayed boolean, conflict boolean, pos int, status int, credited_end int,
               credited_amount bigint, detail text, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_k       int := coalesce(cardinality(p_channel_ids), 0);
    v_pending bytea;
    v_done    boolean := false;
    v_plain   int[];
    v_r       record;
    i         int;
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
    v_plain := mp_redeem_plain(p_merchant_id, v_pending, p_redeem_id, p_channel_ids, p_hseqs,
                               p_seg_seqs, p_indices, p_words, p_pre_status, p_openers);
    FOR i IN SELECT g.i FROM generate_series(1, v_k) AS g(i)
              WHERE NOT EXISTS (SELECT 1 FROM unnest(v_plain) AS d(i) WHERE d.i = g.i)
              ORDER BY g.i
    LOOP
        PERFORM mp_redeem_claim(p_merchant_id, v_pending, p_redeem_id, i, p_channel_ids[i],
                                p_hseqs[i], p_seg_seqs[i], p_indices[i], p_words[i],
                                p_pre_status[i], p_pre_detail[i], p_stmt,
                                nullif(p_openers[i], '\x'::bytea));
    END LOOP;
    RETURN QUERY
    SELECT false, false, rr.pos, rr.status, rr.credited_end, rr.credited_amount, rr.detail,
           NULL::bytea
      FROM redeem_results rr
     WHERE rr.merchant_id = p_merchant_id AND rr.redeem_id = p_redeem_id
     ORDER BY rr.pos;
END
$$;
