-- The epochs of a Redeem's plain claims locked claim by claim (issue 9).
--
-- mp_redeem_plain of 0026 locked them with one join of the epochs and the claims, which the
-- planner ran from the epochs side whenever it believed the table small: every epoch of the
-- merchant matched against every claim. Right after a burst of issues (before autovacuum
-- analyzed epochs) a Redeem of 2,000 claims spent 3.0 s of its 3.5 s there (auto_explain:
-- a nested loop that removed 7,998,000 rows by its join filter), and the cost grows with the
-- merchant's epochs times the claims. mp_redeem_plain_lock walks the claims in (channel,
-- hseq) order and locks each epoch in a LATERAL subquery with FOR UPDATE, which can only run
-- as a nested loop from the claims (a subquery with FOR UPDATE is never flattened): once
-- epochs is more than a few pages that is one probe of a unique index on (channel_id, hseq)
-- per claim (20 ms for the same 2,000 claims); on a table of a few pages the planner may scan
-- it for each claim instead, which stays small. The lock order is the same as before.
--
-- mp_redeem_plain is re-created from 0026 with only that statement changed.

CREATE FUNCTION mp_redeem_plain_lock(p_merchant_id bytea, p_channel_ids bytea[], p_hseqs int[],
                                     p_pre_status int[])
RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*)
      FROM (SELECT DISTINCT q.cid, q.h
              FROM unnest(p_channel_ids, p_hseqs, p_pre_status) AS q(cid, h, st)
             WHERE q.st = 0
             ORDER BY q.cid, q.h) q
      CROSS JOIN LATERAL (SELECT 1 FROM epochs e
                           WHERE e.channel_id = q.cid AND e.hseq = q.h
                             AND e.merchant_id = p_merchant_id AND e.fork_of IS NULL
                             FOR UPDATE) l;
$$;

CREATE OR REPLACE FUNCTION mp_redeem_plain(p_merchant_id bytea, p_pending bytea, p_redeem_id bytea,
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
    PERFORM mp_redeem_plain_lock(p_merchant_id, p_channel_ids, p_hseqs, p_pre_status);
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
