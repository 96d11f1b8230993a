-- brokerd migration 0003: the functions brokerd calls (one per operation, each a single
-- statement in an implicit transaction; brokerd answers only after it has committed).
--
-- Status codes are the protobuf StatusCode numbers: OK=0, DUPLICATE_OK=1, MALFORMED=2,
-- BAD_SIG=3, BAD_CHAIN=4, NOT_HOLDER=5, OUT_OF_RANGE=10, EXPIRED=11, TOO_LATE=13,
-- INSUFFICIENT_FUNDS=14, CONFLICT=16, UNKNOWN_CHANNEL=17, UNKNOWN_ACCOUNT=18, LIMIT=19,
-- INTERNAL=20. A raised error rolls the whole call back; brokerd answers INTERNAL.
--
-- Concurrency: READ COMMITTED; each function takes row locks (FOR UPDATE) on the rows it
-- decides on before it reads the state it decides with, and inserts on unique keys with
-- ON CONFLICT so that a concurrent duplicate waits and then sees the committed row.

-- RegisterAccount: the same key again returns the same account id (created = false).
CREATE FUNCTION mp_register_account(p_account_pk bytea, p_new_account_id bytea, p_stmt bytea,
                                    p_currency text)
RETURNS TABLE (account_id bytea, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id bytea;
BEGIN
    INSERT INTO customers AS c (account_id, account_pk, register_stmt)
    VALUES (p_new_account_id, p_account_pk, p_stmt)
    ON CONFLICT (account_pk) DO NOTHING
    RETURNING c.account_id INTO v_id;
    IF v_id IS NOT NULL THEN
        INSERT INTO accounts (id, kind, currency) VALUES (v_id, 'customer', p_currency);
        RETURN QUERY SELECT v_id, true;
        RETURN;
    END IF;
    SELECT c.account_id INTO v_id FROM customers c WHERE c.account_pk = p_account_pk;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'mp_register_account: key vanished';
    END IF;
    RETURN QUERY SELECT v_id, false;
END
$$;

-- Operator: create a merchant with its available and pending accounts. Raises if any id
-- exists already.
CREATE FUNCTION mp_create_merchant(p_merchant_id bytea, p_available bytea, p_pending bytea,
                                   p_currency text, p_bond bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts (id, kind, currency)
    VALUES (p_available, 'merchant_available', p_currency),
           (p_pending, 'merchant_pending', p_currency);
    INSERT INTO merchants (merchant_id, available_account, pending_account, bond, currency)
    VALUES (p_merchant_id, p_available, p_pending, coalesce(p_bond, 0), p_currency);
END
$$;

-- Exactly one row; found = false (and NULLs) for an unknown merchant.
CREATE FUNCTION mp_merchant_lookup(p_merchant_id bytea)
RETURNS TABLE (found boolean, bond bigint, merchant_pk bytea, register_hash bytea, cert bytea,
               cert_valid_until bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT true, m.bond, m.merchant_pk, m.register_hash, m.cert, m.cert_valid_until
      FROM merchants m WHERE m.merchant_id = p_merchant_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::bytea, NULL::bytea, NULL::bytea,
                            NULL::bigint;
    END IF;
END
$$;

-- RegisterMerchant: brokerd looked the merchant up (mp_merchant_lookup), signed a MerchantCert
-- with the bond it read, and stores it here. The same request again gets the stored cert.
CREATE FUNCTION mp_register_merchant(p_merchant_id bytea, p_merchant_pk bytea, p_endpoint text,
                                     p_register_hash bytea, p_bond bigint, p_cert bytea,
                                     p_valid_until bigint)
RETURNS TABLE (status int, cert bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m merchants%ROWTYPE;
BEGIN
    SELECT * INTO m FROM merchants WHERE merchant_id = p_merchant_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, NULL::bytea;                 -- UNKNOWN_ACCOUNT
        RETURN;
    END IF;
    IF m.register_hash IS NOT NULL THEN
        IF m.register_hash = p_register_hash THEN
            RETURN QUERY SELECT 1, m.cert;                   -- DUPLICATE_OK
        ELSE
            RETURN QUERY SELECT 16, m.cert;                  -- CONFLICT
        END IF;
        RETURN;
    END IF;
    IF m.bond IS DISTINCT FROM p_bond THEN
        RETURN QUERY SELECT 20, NULL::bytea;                 -- INTERNAL: bond changed, retry
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM merchants o
                WHERE o.merchant_pk = p_merchant_pk AND o.merchant_id <> p_merchant_id) THEN
        RETURN QUERY SELECT 16, NULL::bytea;                 -- CONFLICT: key of another merchant
        RETURN;
    END IF;
    BEGIN
        UPDATE merchants
           SET merchant_pk = p_merchant_pk, endpoint = p_endpoint,
               register_hash = p_register_hash, cert = p_cert, cert_valid_until = p_valid_until
         WHERE merchant_id = p_merchant_id;
    EXCEPTION WHEN unique_violation THEN                     -- a concurrent registration
        RETURN QUERY SELECT 16, NULL::bytea;
        RETURN;
    END;
    RETURN QUERY SELECT 0, p_cert;
END
$$;

-- Operator funding: a transfer from the `external` account of the account's currency.
CREATE FUNCTION mp_fund(p_fund_id bytea, p_account_id bytea, p_amount bigint)
RETURNS TABLE (status int, detail text, balance bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_acc accounts%ROWTYPE;
    v_f   fundings%ROWTYPE;
    v_ext bytea;
    v_txn bigint;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RETURN QUERY SELECT 2, 'amount must be > 0', NULL::bigint;
        RETURN;
    END IF;
    IF p_fund_id IS NULL OR length(p_fund_id) <> 16 THEN
        RETURN QUERY SELECT 2, 'fund_id must be 16 bytes', NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO v_acc FROM accounts
     WHERE id = p_account_id AND kind IN ('customer', 'merchant_available')
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'no customer or merchant account with this id', NULL::bigint;
        RETURN;
    END IF;
    v_ext := mp_system_account_id('external', v_acc.currency);
    IF NOT EXISTS (SELECT 1 FROM accounts WHERE id = v_ext) THEN
        RAISE EXCEPTION 'mp_fund: no external account for % (mp_ensure_system_accounts)',
            v_acc.currency;
    END IF;
    -- Claim the fund_id first: a concurrent call with the same id waits here.
    v_txn := nextval(pg_get_serial_sequence('transfers', 'txn_id'));
    INSERT INTO fundings (fund_id, account_id, amount, txn_id)
    VALUES (p_fund_id, p_account_id, p_amount, v_txn)
    ON CONFLICT (fund_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_f FROM fundings WHERE fund_id = p_fund_id;
        IF v_f.account_id = p_account_id AND v_f.amount = p_amount THEN
            RETURN QUERY SELECT 1, 'already funded', v_acc.balance;
        ELSE
            RETURN QUERY SELECT 16, 'fund_id already used for another funding', v_acc.balance;
        END IF;
        RETURN;
    END IF;
    INSERT INTO transfers (txn_id, kind, ref) VALUES (v_txn, 'fund', p_fund_id);
    PERFORM mp_post(v_txn, v_ext, p_account_id, p_amount);
    RETURN QUERY SELECT 0, '', a.balance FROM accounts a WHERE a.id = p_account_id;
END
$$;

-- IssueRequest (protocol.md section 6, "Issue"). brokerd has verified the signature, parsed
-- the request, checked the bounds (p_bounds_status/p_bounds_detail, 0 = fine), computed
-- channel_id, drawn the escrow account id and signed the ChannelCert (p_cert) with its own
-- clock p_broker_now. Nothing is stored unless the answer is OK.
CREATE FUNCTION mp_issue(p_account_id bytea, p_issue_req_id bytea, p_req_hash bytea,
                         p_request bytea, p_bounds_status int, p_bounds_detail text,
                         p_channel_id bytea, p_escrow_account bytea, p_owner_pk bytea,
                         p_nonce bytea, p_root bytea, p_n int, p_unit_value bigint,
                         p_currency text, p_holder0 bytea, p_issued_at bigint,
                         p_pay_until bigint, p_redeem_until bigint, p_t_grace bigint,
                         p_broker_now bigint, p_max_offset bigint, p_cert bytea)
RETURNS TABLE (status int, detail text, cert bytea, request bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_acc    accounts%ROWTYPE;
    v_ch     channels%ROWTYPE;
    v_m      merchants%ROWTYPE;
    v_amount numeric;
    v_txn    bigint;
    v_con    text;
BEGIN
    -- 1. Serialise on the customer account.
    SELECT a.* INTO v_acc
      FROM accounts a JOIN customers c ON c.account_id = a.id
     WHERE a.id = p_account_id AND a.kind = 'customer'
       FOR UPDATE OF a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'unknown account', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 2. Idempotency on (account, issue_req_id).
    SELECT * INTO v_ch FROM channels
     WHERE account_id = p_account_id AND issue_req_id = p_issue_req_id;
    IF FOUND THEN
        IF v_ch.req_hash = p_req_hash THEN
            RETURN QUERY SELECT 1, 'already issued', v_ch.cert, NULL::bytea;
        ELSE
            RETURN QUERY SELECT 16, 'issue_req_id used by another request', NULL::bytea,
                                v_ch.request;
        END IF;
        RETURN;
    END IF;

    -- 3. Bounds decided by brokerd.
    IF p_bounds_status IS DISTINCT FROM 0 THEN
        RETURN QUERY SELECT coalesce(p_bounds_status, 20), coalesce(p_bounds_detail, ''),
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 4. brokerd's clock (issued_at) against the database clock.
    IF p_broker_now IS NULL OR p_max_offset IS NULL
       OR abs(extract(epoch FROM now()) - p_broker_now) > p_max_offset THEN
        RETURN QUERY SELECT 20, 'clock offset', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 5. Currency of the account.
    IF p_currency IS DISTINCT FROM v_acc.currency THEN
        RETURN QUERY SELECT 2, 'currency differs from the account''s', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 6. holder0: a registered merchant of this currency whose MerchantCert lasts until
    --    redeem_until + T_grace.
    IF p_holder0 IS NULL OR length(p_holder0) = 0 THEN           -- until Bind (issue B)
        RETURN QUERY SELECT 2, 'holder0 missing', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_m FROM merchants WHERE merchant_id = p_holder0;
    IF NOT FOUND OR v_m.cert IS NULL THEN
        RETURN QUERY SELECT 2, 'holder0 is not a registered merchant', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF v_m.currency <> p_currency THEN
        RETURN QUERY SELECT 2, 'holder0 uses another currency', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF p_redeem_until IS NULL OR p_t_grace IS NULL
       OR v_m.cert_valid_until < p_redeem_until::numeric + p_t_grace THEN
        RETURN QUERY SELECT 2, 'holder0 certificate expires before redeem_until + T_grace',
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 7. Fresh owner key, nonce and root.
    IF EXISTS (SELECT 1 FROM segments s
                WHERE s.owner_pk = p_owner_pk OR s.nonce = p_nonce OR s.root = p_root) THEN
        RETURN QUERY SELECT 2, 'reused', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 8. Funds (the product in numeric: no bigint overflow).
    v_amount := p_n::numeric * p_unit_value;
    IF v_amount IS NULL OR v_amount < 1 OR v_amount > 9223372036854775807 THEN
        RETURN QUERY SELECT 2, 'n * unit_value out of range', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF v_acc.balance < v_amount THEN
        RETURN QUERY SELECT 14, 'balance ' || v_acc.balance || ' < ' || v_amount,
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- brokerd derives channel_id = SHA256("MPAY1-CID" || account_id || issue_req_id)[0..16].
    IF p_channel_id IS DISTINCT FROM substring(sha256(convert_to('MPAY1-CID', 'UTF8')
                                   || p_account_id || p_issue_req_id) FROM 1 FOR 16) THEN
        RETURN QUERY SELECT 20, 'channel_id mismatch', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 9. Store and move the escrow.
    BEGIN
        INSERT INTO accounts (id, kind, currency) VALUES (p_escrow_account, 'escrow', p_currency);
        INSERT INTO channels (channel_id, account_id, issue_req_id, req_hash, request, cert,
                              escrow_account, n, unit_value, currency, holder0, issued_at,
                              pay_until, redeem_until, finalize_at)
        VALUES (p_channel_id, p_account_id, p_issue_req_id, p_req_hash, p_request, p_cert,
                p_escrow_account, p_n, p_unit_value, p_currency, p_holder0, p_issued_at,
                p_pay_until, p_redeem_until, p_redeem_until + p_t_grace);
        INSERT INTO segments (channel_id, seg_seq, seg_start, len, nonce, root, owner_pk)
        VALUES (p_channel_id, 0, 0, p_n, p_nonce, p_root, p_owner_pk);
        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
        VALUES (p_channel_id, 0, 0, p_root);
        INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index, credited_end)
        VALUES (p_channel_id, 0, p_holder0, 0, NULL, 0);
        INSERT INTO transfers (kind, ref) VALUES ('issue', p_channel_id) RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, p_account_id, p_escrow_account, v_amount::bigint);
    EXCEPTION WHEN unique_violation THEN
        -- A concurrent issue took the same owner key, nonce or root first.
        GET STACKED DIAGNOSTICS v_con = CONSTRAINT_NAME;
        IF v_con IN ('segments_nonce_key', 'segments_root_key', 'segments_owner_pk_key') THEN
            RETURN QUERY SELECT 2, 'reused', NULL::bytea, NULL::bytea;
            RETURN;
        END IF;
        RAISE;
    END;
    RETURN QUERY SELECT 0, '', p_cert, NULL::bytea;
END
$$;

-- Read-only: what brokerd needs to check each claim point before hashing. One row per input
-- position (pos is 1-based). lo/hi: the verified points of that segment nearest to the index
-- from below (idx <= index) and above (idx >= index). credited_end/epoch0_merchant: epoch 0.
CREATE FUNCTION mp_redeem_prepare(p_channel_ids bytea[], p_seg_seqs int[], p_indices int[])
RETURNS TABLE (pos int, found boolean, state text, n int, unit_value bigint, seg_found boolean,
               seg_start int, seg_len int, nonce bytea, epoch0_merchant bytea, credited_end int,
               lo_idx int, lo_w bytea, hi_idx int, hi_w bytea)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF coalesce(cardinality(p_seg_seqs), 0) <> coalesce(cardinality(p_channel_ids), 0)
       OR coalesce(cardinality(p_indices), 0) <> coalesce(cardinality(p_channel_ids), 0) THEN
        RAISE EXCEPTION 'mp_redeem_prepare: array lengths differ';
    END IF;
    RETURN QUERY
    SELECT q.pos::int, c.channel_id IS NOT NULL, c.state, c.n, c.unit_value,
           s.channel_id IS NOT NULL, s.seg_start, s.len, s.nonce,
           e.merchant_id, e.credited_end, lo.idx, lo.w, hi.idx, hi.w
      FROM unnest(p_channel_ids, p_seg_seqs, p_indices) WITH ORDINALITY AS q(cid, seg, ix, pos)
      LEFT JOIN channels c ON c.channel_id = q.cid
      LEFT JOIN segments s ON s.channel_id = q.cid AND s.seg_seq = q.seg
      LEFT JOIN epochs e ON e.channel_id = q.cid AND e.hseq = 0
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx <= q.ix
                          ORDER BY p.idx DESC LIMIT 1) lo ON true
      LEFT JOIN LATERAL (SELECT p.idx, p.w FROM chain_points p
                          WHERE p.channel_id = q.cid AND p.seg_seq = q.seg AND p.idx >= q.ix
                          ORDER BY p.idx ASC LIMIT 1) hi ON true
     ORDER BY q.pos;
END
$$;

-- Redeem (protocol.md section 6, "Redemption"). brokerd has verified the signature, checked
-- the limits, and for each claim either decided a refusal (p_pre_status <> 0) or verified the
-- word against a stored point (p_pre_status = 0; claims at or below the credited end may come
-- unverified: they are answered DUPLICATE_OK and their word is not stored). The results are
-- stored under (merchant, redeem_id) and replayed verbatim.
CREATE FUNCTION mp_redeem(p_merchant_id bytea, p_redeem_id bytea, p_stmt_hash bytea,
                          p_channel_ids bytea[], p_hseqs int[], p_seg_seqs int[],
                          p_indices int[], p_words bytea[], p_pre_status int[],
                          p_pre_detail text[])
RETURNS TABLE (replayed boolean, conflict boolean, pos int, status int, credited_end int,
               credited_amount bigint, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_k       int := coalesce(cardinality(p_channel_ids), 0);
    v_pending bytea;
    v_hash    bytea;
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
    INSERT INTO redeems (merchant_id, redeem_id, stmt_hash)
    VALUES (p_merchant_id, p_redeem_id, p_stmt_hash)
    ON CONFLICT (merchant_id, redeem_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT r.stmt_hash INTO v_hash FROM redeems r
         WHERE r.merchant_id = p_merchant_id AND r.redeem_id = p_redeem_id;
        IF v_hash = p_stmt_hash THEN
            RETURN QUERY
            SELECT true, false, rr.pos, rr.status, rr.credited_end, rr.credited_amount, rr.detail
              FROM redeem_results rr
             WHERE rr.merchant_id = p_merchant_id AND rr.redeem_id = p_redeem_id
             ORDER BY rr.pos;
        ELSE
            RETURN QUERY SELECT false, true, NULL::int, 16, NULL::int, NULL::bigint,
                                'redeem_id used by another Redeem'::text;
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
        RETURN QUERY SELECT false, false, i, v_st, v_end, v_amt, v_det;
    END LOOP;
END
$$;

-- Consistency checks of the ledger and the channels: one row per check; detail names at most
-- 10 offenders (hex ids).
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_n    bigint;
    v_list text;
BEGIN
    -- (a) every balance equals its credits minus its debits.
    WITH flows AS (
        SELECT acc, sum(amt) AS net FROM (
            SELECT l.credit_account AS acc, l.amount::numeric AS amt FROM ledger l
            UNION ALL
            SELECT l.debit_account, -l.amount::numeric FROM ledger l) x
        GROUP BY acc),
    bad AS (
        SELECT encode(a.id, 'hex') || ' (' || a.kind || ': balance ' || a.balance
               || ', ledger ' || coalesce(f.net, 0) || ')' AS what
          FROM accounts a LEFT JOIN flows f ON f.acc = a.id
         WHERE a.balance <> coalesce(f.net, 0))
    SELECT count(*), (SELECT string_agg(what, '; ') FROM (SELECT what FROM bad LIMIT 10) t)
      INTO v_n, v_list FROM bad;
    RETURN QUERY SELECT 'account_balances_match_ledger', v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE v_n || ' accounts: ' || v_list END;

    -- (b) money is conserved: the balances of each currency sum to zero (the `external`
    -- account holds minus what the operator funded).
    WITH bad AS (
        SELECT a.currency || ' ' || sum(a.balance::numeric) AS what
          FROM accounts a GROUP BY a.currency HAVING sum(a.balance::numeric) <> 0)
    SELECT count(*), (SELECT string_agg(what, '; ') FROM (SELECT what FROM bad LIMIT 10) t)
      INTO v_n, v_list FROM bad;
    RETURN QUERY SELECT 'balances_sum_to_zero', v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE 'currencies: ' || v_list END;

    -- (c) per channel: what left the escrow (merchant credit, refunds, any final credit) does
    -- not exceed what entered it, which is at most n * unit_value; escrow balance >= 0.
    WITH io AS (
        SELECT c.channel_id, c.n::numeric * c.unit_value AS face, a.balance,
               (SELECT coalesce(sum(l.amount::numeric), 0) FROM ledger l
                 WHERE l.credit_account = c.escrow_account) AS into_escrow,
               (SELECT coalesce(sum(l.amount::numeric), 0) FROM ledger l
                 WHERE l.debit_account = c.escrow_account) AS out_of_escrow
          FROM channels c JOIN accounts a ON a.id = c.escrow_account),
    bad AS (
        SELECT encode(channel_id, 'hex') || ' (in ' || into_escrow || ', out ' || out_of_escrow
               || ', balance ' || balance || ', face ' || face || ')' AS what
          FROM io
         WHERE out_of_escrow > into_escrow OR into_escrow > face OR balance < 0)
    SELECT count(*), (SELECT string_agg(what, '; ') FROM (SELECT what FROM bad LIMIT 10) t)
      INTO v_n, v_list FROM bad;
    RETURN QUERY SELECT 'escrow_outflows_within_inflows', v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE v_n || ' channels: ' || v_list END;

    -- (d) per epoch: credited_amount = the sum of its stored redeem credits = the sum of the
    -- ledger rows of those redeem transfers = (credited_end - start_index) * unit_value.
    WITH r AS (
        SELECT rr.channel_id, rr.hseq, sum(rr.credited_amount::numeric) AS results,
               sum((SELECT sum(l.amount::numeric) FROM ledger l
                     WHERE l.txn_id = rr.txn_id)) AS ledger
          FROM redeem_results rr WHERE rr.txn_id IS NOT NULL
         GROUP BY rr.channel_id, rr.hseq),
    bad AS (
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq || ' (credited '
               || e.credited_amount || ', results ' || coalesce(r.results, 0) || ', ledger '
               || coalesce(r.ledger, 0) || ', range ' || e.start_index || '..'
               || e.credited_end || ')' AS what
          FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
          LEFT JOIN r ON r.channel_id = e.channel_id AND r.hseq = e.hseq
         WHERE e.credited_amount <> coalesce(r.results, 0)
            OR e.credited_amount <> coalesce(r.ledger, 0)
            OR e.credited_amount <> (e.credited_end - e.start_index)::numeric * c.unit_value)
    SELECT count(*), (SELECT string_agg(what, '; ') FROM (SELECT what FROM bad LIMIT 10) t)
      INTO v_n, v_list FROM bad;
    RETURN QUERY SELECT 'epoch_credits_match_redeems', v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE v_n || ' epochs: ' || v_list END;

    -- (e) per channel: escrow balance + credited to merchants + every other outflow of the
    -- escrow (refunds, unclaimed, ... in later issues) = n * unit_value.
    WITH t AS (
        SELECT c.channel_id, c.n::numeric * c.unit_value AS face, a.balance::numeric AS escrow,
               (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                 WHERE e.channel_id = c.channel_id) AS credited,
               (SELECT coalesce(sum(l.amount::numeric), 0)
                  FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                 WHERE l.debit_account = c.escrow_account AND x.kind <> 'redeem') AS other_out
          FROM channels c JOIN accounts a ON a.id = c.escrow_account),
    bad AS (
        SELECT encode(channel_id, 'hex') || ' (escrow ' || escrow || ' + credited ' || credited
               || ' + other ' || other_out || ' <> ' || face || ')' AS what
          FROM t WHERE escrow + credited + other_out <> face)
    SELECT count(*), (SELECT string_agg(what, '; ') FROM (SELECT what FROM bad LIMIT 10) t2)
      INTO v_n, v_list FROM bad;
    RETURN QUERY SELECT 'channel_escrow_plus_credit_is_face', v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE v_n || ' channels: ' || v_list END;
END
$$;

-- Admin: one account. For a merchant's available or pending account, related_* is the other
-- one; for a merchant_id, the row is its available account with the pending one as related.
-- No row if unknown.
CREATE FUNCTION mp_account_show(p_account_id bytea)
RETURNS TABLE (kind text, currency text, balance bigint, related_account bytea,
               related_kind text, related_balance bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.kind, a.currency, a.balance, r.id, r.kind, r.balance
      FROM accounts a
      LEFT JOIN merchants m ON a.id IN (m.available_account, m.pending_account)
      LEFT JOIN accounts r ON r.id = CASE WHEN a.id = m.available_account
                                          THEN m.pending_account ELSE m.available_account END
     WHERE a.id = p_account_id;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT a.kind, a.currency, a.balance, r.id, r.kind, r.balance
      FROM merchants m
      JOIN accounts a ON a.id = m.available_account
      JOIN accounts r ON r.id = m.pending_account
     WHERE m.merchant_id = p_account_id;
END
$$;

-- Admin: one channel with its epochs (jsonb array, ids in hex). No row if unknown.
CREATE FUNCTION mp_channel_show(p_channel_id bytea)
RETURNS TABLE (state text, n int, unit_value bigint, currency text, holder0 bytea,
               escrow_balance bigint, pay_until bigint, redeem_until bigint, epochs jsonb)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT c.state, c.n, c.unit_value, c.currency, c.holder0, a.balance, c.pay_until,
           c.redeem_until,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'hseq', e.hseq,
                         'merchant_id', encode(e.merchant_id, 'hex'),
                         'start_index', e.start_index,
                         'end_index', e.end_index,
                         'credited_end', e.credited_end,
                         'credited_amount', e.credited_amount) ORDER BY e.hseq)
                       FROM epochs e WHERE e.channel_id = c.channel_id), '[]'::jsonb)
      FROM channels c JOIN accounts a ON a.id = c.escrow_account
     WHERE c.channel_id = p_channel_id;
END
$$;
