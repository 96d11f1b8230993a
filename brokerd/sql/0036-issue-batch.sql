-- Issues settled in batches (issue 9): brokerd sends the IssueRequests that wait for the
-- database as one call, mp_issue_batch, in one transaction. Each request is decided exactly as
-- mp_issue (0009) decides it alone, in the order of the arrays:
--
--   arrays --(lock every named customer account, in id order)--> locked
--     locked --(plain? see below, one query for all)--> flags
--     flags --(plain ones: one INSERT per table, balances updated once per account)--> stored
--       | an error (a concurrent issue took a key first): nothing of it stays, every request
--       | goes one by one instead
--     stored --(every other request: mp_issue, in order)--> one row per request, in order
--
-- A plain request: in bounds (brokerd's check), brokerd's clock within max_offset of the
-- database's, a customer account of its currency, holder0 empty or a registered merchant of
-- that currency whose cert lasts until redeem_until + T_grace, n * unit_value in range, the
-- derived channel_id, its (account, issue_req_id) never used, its owner key, nonce and root
-- used by no segment, each of the four named once in the batch, and the plain requests of its
-- account covered together by the balance. Anything else (a retry, a conflict, a refusal, two
-- requests naming the same key, an account whose balance covers only some) goes through
-- mp_issue one by one, in order, after the plain ones: the answers are those of the requests
-- one by one in that order (plain requests share no key or id with any other, and an account
-- whose plain requests its balance does not cover has none). A request whose mp_issue raises
-- an error is answered 20 (INTERNAL) with the error, in a subtransaction of its own, so one
-- bad request never fails the others; the same goes for an error storing the plain ones,
-- after which every request goes one by one.
--
-- The account rows are locked in id order, so two batches on two connections (or two brokerd
-- processes) never wait on each other in a cycle. The set-based statements are SQL functions,
-- planned at each call with the tables' current sizes: a plpgsql plan cached while the tables
-- were small would go on scanning them whole once they are not (measured: mp_issue's cached
-- reuse check did, until the next ANALYZE).

CREATE TYPE mp_issue_item AS (
    ord          int,
    account_id   bytea,
    issue_req_id bytea,
    req_hash     bytea,
    request      bytea,
    bounds       int,
    bounds_text  text,
    channel_id   bytea,
    escrow       bytea,
    owner_pk     bytea,
    nonce        bytea,
    root         bytea,
    n            int,
    unit_value   bigint,
    currency     text,
    holder0      bytea,
    issued_at    bigint,
    pay_until    bigint,
    redeem_until bigint,
    cert         bytea,
    amount       numeric,
    plain        boolean
);

-- The requests as items, each with its plain flag (see above), in array order.
CREATE FUNCTION mp_issue_batch_items(
    p_account_id bytea[], p_issue_req_id bytea[], p_req_hash bytea[], p_request bytea[],
    p_bounds_status int[], p_bounds_detail text[], p_channel_id bytea[],
    p_escrow_account bytea[], p_owner_pk bytea[], p_nonce bytea[], p_root bytea[], p_n int[],
    p_unit_value bigint[], p_currency text[], p_holder0 bytea[], p_issued_at bigint[],
    p_pay_until bigint[], p_redeem_until bigint[], p_t_grace bigint, p_clock_ok boolean,
    p_cert bytea[])
RETURNS mp_issue_item[]
LANGUAGE sql STABLE AS $$
    WITH item AS (
        SELECT u.*, nullif(u.h0, ''::bytea) AS holder0, u.n::numeric * u.unit_value AS amount
          FROM unnest(p_account_id, p_issue_req_id, p_req_hash, p_request, p_bounds_status,
                      p_bounds_detail, p_channel_id, p_escrow_account, p_owner_pk, p_nonce,
                      p_root, p_n, p_unit_value, p_currency, p_holder0, p_issued_at,
                      p_pay_until, p_redeem_until, p_cert)
               WITH ORDINALITY AS u(account_id, issue_req_id, req_hash, request, bounds,
                                    bounds_text, channel_id, escrow, owner_pk, nonce, root, n,
                                    unit_value, currency, h0, issued_at, pay_until,
                                    redeem_until, cert, ord)
    ), judged AS (
        SELECT i.*, a.balance,
               (p_clock_ok AND i.bounds = 0 AND a.id IS NOT NULL AND a.currency = i.currency
                AND (i.holder0 IS NULL
                     OR (m.cert IS NOT NULL AND m.currency = i.currency
                         AND i.redeem_until IS NOT NULL AND p_t_grace IS NOT NULL
                         AND m.cert_valid_until >= i.redeem_until::numeric + p_t_grace))
                AND i.amount >= 1 AND i.amount <= 9223372036854775807
                AND i.channel_id = substring(sha256(convert_to('MPAY1-CID', 'UTF8')
                                             || i.account_id || i.issue_req_id) FROM 1 FOR 16)
                AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.account_id = i.account_id
                                   AND c.issue_req_id = i.issue_req_id)
                AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.owner_pk = i.owner_pk)
                AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.nonce = i.nonce)
                AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.root = i.root)
                AND NOT EXISTS (SELECT 1 FROM accounts e WHERE e.id = i.escrow)) AS alone_ok
          FROM item i
          LEFT JOIN accounts a ON a.id = i.account_id AND a.kind = 'customer'
                              AND EXISTS (SELECT 1 FROM customers c WHERE c.account_id = a.id)
          LEFT JOIN merchants m ON m.merchant_id = i.holder0
    ), counted AS (
        SELECT j.*,
               count(*) OVER (PARTITION BY j.account_id, j.issue_req_id) AS same_req,
               count(*) OVER (PARTITION BY j.owner_pk) AS same_pk,
               count(*) OVER (PARTITION BY j.nonce) AS same_nonce,
               count(*) OVER (PARTITION BY j.root) AS same_root,
               count(*) OVER (PARTITION BY j.escrow) AS same_escrow
          FROM judged j
    ), single AS (
        SELECT c.*, c.alone_ok AND c.same_req = 1 AND c.same_pk = 1 AND c.same_nonce = 1
                    AND c.same_root = 1 AND c.same_escrow = 1 AS ok
          FROM counted c
    ), covered AS (
        SELECT s.*,
               sum(CASE WHEN s.ok THEN s.amount ELSE 0 END)
                   OVER (PARTITION BY s.account_id) AS account_total
          FROM single s
    )
    SELECT array_agg(ROW(c.ord::int, c.account_id, c.issue_req_id, c.req_hash, c.request, c.bounds,
                         c.bounds_text, c.channel_id, c.escrow, c.owner_pk, c.nonce, c.root,
                         c.n, c.unit_value, c.currency, c.holder0, c.issued_at, c.pay_until,
                         c.redeem_until, c.cert, c.amount,
                         c.ok AND c.account_total <= c.balance)::mp_issue_item
                     ORDER BY c.ord)
      FROM covered c
$$;

-- Stores the plain items together: the same rows mp_issue writes for each, one statement per
-- table (the customer accounts debited once each with their sum, each escrow account created
-- with its amount, one transfer and one ledger entry per channel).
CREATE FUNCTION mp_issue_batch_store(p_items mp_issue_item[], p_t_grace bigint)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO accounts (id, kind, currency, balance)
    SELECT i.escrow, 'escrow', i.currency, i.amount::bigint
      FROM unnest(p_items) i WHERE i.plain;
    INSERT INTO channels (channel_id, account_id, issue_req_id, req_hash, request, cert,
                          escrow_account, n, unit_value, currency, holder0, issued_at,
                          pay_until, redeem_until, finalize_at)
    SELECT i.channel_id, i.account_id, i.issue_req_id, i.req_hash, i.request, i.cert, i.escrow,
           i.n, i.unit_value, i.currency, i.holder0, i.issued_at, i.pay_until, i.redeem_until,
           i.redeem_until + p_t_grace
      FROM unnest(p_items) i WHERE i.plain;
    INSERT INTO segments (channel_id, seg_seq, seg_start, len, nonce, root, owner_pk)
    SELECT i.channel_id, 0, 0, i.n, i.nonce, i.root, i.owner_pk
      FROM unnest(p_items) i WHERE i.plain;
    INSERT INTO chain_points (channel_id, seg_seq, idx, w)
    SELECT i.channel_id, 0, 0, i.root FROM unnest(p_items) i WHERE i.plain;
    INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index, credited_end)
    SELECT i.channel_id, 0, i.holder0, 0, NULL, 0
      FROM unnest(p_items) i WHERE i.plain AND i.holder0 IS NOT NULL;
    WITH t AS (
        INSERT INTO transfers (kind, ref)
        SELECT 'issue', i.channel_id FROM unnest(p_items) i WHERE i.plain ORDER BY i.ord
        RETURNING txn_id, ref
    )
    INSERT INTO ledger (txn_id, debit_account, credit_account, amount)
    SELECT t.txn_id, i.account_id, i.escrow, i.amount::bigint
      FROM t JOIN unnest(p_items) i ON i.plain AND i.channel_id = t.ref
     ORDER BY t.txn_id;
    UPDATE accounts a SET balance = a.balance - s.total
      FROM (SELECT i.account_id, sum(i.amount)::bigint AS total
              FROM unnest(p_items) i WHERE i.plain GROUP BY i.account_id) s
     WHERE a.id = s.account_id;
$$;

-- Locks the named customer accounts in id order; returns how many.
CREATE FUNCTION mp_issue_batch_lock(p_account_id bytea[])
RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM (
        SELECT 1 FROM accounts a
         WHERE a.id = ANY (p_account_id) AND a.kind = 'customer'
         ORDER BY a.id FOR UPDATE) l;
$$;

-- The batch: one row per request (ord = its position, from 1), each as mp_issue answers it.
CREATE FUNCTION mp_issue_batch(
    p_account_id bytea[], p_issue_req_id bytea[], p_req_hash bytea[], p_request bytea[],
    p_bounds_status int[], p_bounds_detail text[], p_channel_id bytea[],
    p_escrow_account bytea[], p_owner_pk bytea[], p_nonce bytea[], p_root bytea[], p_n int[],
    p_unit_value bigint[], p_currency text[], p_holder0 bytea[], p_issued_at bigint[],
    p_pay_until bigint[], p_redeem_until bigint[], p_t_grace bigint, p_broker_now bigint,
    p_max_offset bigint, p_cert bytea[])
RETURNS TABLE (ord int, status int, detail text, cert bytea, request bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_count int := coalesce(cardinality(p_account_id), 0);
    v_items mp_issue_item[];
    v_it    mp_issue_item;
    v_clock boolean;
BEGIN
    IF v_count = 0 THEN
        RETURN;
    END IF;
    IF v_count <> ANY (ARRAY[cardinality(p_issue_req_id), cardinality(p_req_hash),
                          cardinality(p_request), cardinality(p_bounds_status),
                          cardinality(p_bounds_detail), cardinality(p_channel_id),
                          cardinality(p_escrow_account), cardinality(p_owner_pk),
                          cardinality(p_nonce), cardinality(p_root), cardinality(p_n),
                          cardinality(p_unit_value), cardinality(p_currency),
                          cardinality(p_holder0), cardinality(p_issued_at),
                          cardinality(p_pay_until), cardinality(p_redeem_until),
                          cardinality(p_cert)]) IS NOT FALSE THEN
        RAISE EXCEPTION 'mp_issue_batch: arrays of different lengths';
    END IF;

    PERFORM mp_issue_batch_lock(p_account_id);

    v_clock := p_broker_now IS NOT NULL AND p_max_offset IS NOT NULL
               AND abs(extract(epoch FROM now()) - p_broker_now) <= p_max_offset;
    v_items := mp_issue_batch_items(p_account_id, p_issue_req_id, p_req_hash, p_request,
                                    p_bounds_status, p_bounds_detail, p_channel_id,
                                    p_escrow_account, p_owner_pk, p_nonce, p_root, p_n,
                                    p_unit_value, p_currency, p_holder0, p_issued_at,
                                    p_pay_until, p_redeem_until, p_t_grace, v_clock, p_cert);
    IF EXISTS (SELECT 1 FROM unnest(v_items) i WHERE i.plain) THEN
        BEGIN
            PERFORM mp_issue_batch_store(v_items, p_t_grace);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'mp_issue_batch: stored one by one after: %', SQLERRM;
            SELECT array_agg(ROW(i.ord, i.account_id, i.issue_req_id, i.req_hash, i.request,
                                 i.bounds, i.bounds_text, i.channel_id, i.escrow, i.owner_pk,
                                 i.nonce, i.root, i.n, i.unit_value, i.currency, i.holder0,
                                 i.issued_at, i.pay_until, i.redeem_until, i.cert, i.amount,
                                 false)::mp_issue_item ORDER BY i.ord)
              INTO v_items FROM unnest(v_items) i;
        END;
    END IF;

    FOREACH v_it IN ARRAY v_items LOOP
        IF v_it.plain THEN
            RETURN QUERY SELECT v_it.ord, 0, ''::text, v_it.cert, NULL::bytea;
        ELSE
            BEGIN
                RETURN QUERY
                SELECT v_it.ord, r.status, r.detail, r.cert, r.request
                  FROM mp_issue(v_it.account_id, v_it.issue_req_id, v_it.req_hash,
                                v_it.request, v_it.bounds, v_it.bounds_text, v_it.channel_id,
                                v_it.escrow, v_it.owner_pk, v_it.nonce, v_it.root, v_it.n,
                                v_it.unit_value, v_it.currency,
                                coalesce(v_it.holder0, ''::bytea), v_it.issued_at,
                                v_it.pay_until, v_it.redeem_until, p_t_grace, p_broker_now,
                                p_max_offset, v_it.cert) r;
            EXCEPTION WHEN OTHERS THEN
                RETURN QUERY SELECT v_it.ord, 20, 'database error: ' || SQLERRM, NULL::bytea,
                                    NULL::bytea;
            END;
        END IF;
    END LOOP;
END
$$;
