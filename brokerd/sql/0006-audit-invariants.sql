-- brokerd migration 0006: the audit checks invariants, not only sums, and names its offenders.
--
-- mp_audit() returns one row per invariant: check_name, ok, detail (a readable account of at
-- most 10 offenders) and offenders (the ids of at most 100 offenders: hex account, channel,
-- merchant or fund ids; "channel/hseq" for an epoch; the currency code for a per-currency
-- check). Each invariant is one query listing its violations as (id, what); mp_audit_check
-- runs it. The queries are constants of this file, never built from input.

CREATE FUNCTION mp_audit_check(p_name text, p_violations text)
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_n    bigint;
    v_list text;
    v_ids  text[];
BEGIN
    EXECUTE 'WITH v AS (' || p_violations || ') '
            'SELECT count(*), '
            '(SELECT string_agg(what, ''; '') FROM (SELECT what FROM v ORDER BY id LIMIT 10) t), '
            '(SELECT array_agg(id) FROM (SELECT id FROM v ORDER BY id LIMIT 100) t) FROM v'
       INTO v_n, v_list, v_ids;
    RETURN QUERY SELECT p_name, v_n = 0,
        CASE WHEN v_n = 0 THEN '' ELSE v_n || ' offenders: ' || v_list END,
        coalesce(v_ids, '{}'::text[]);
END
$$;

DROP FUNCTION mp_audit();
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- Every balance equals its credits minus its debits.
    RETURN QUERY SELECT * FROM mp_audit_check('account_balances_match_ledger', $q$
        WITH flows AS (
            SELECT acc, sum(amt) AS net FROM (
                SELECT l.credit_account AS acc, l.amount::numeric AS amt FROM ledger l
                UNION ALL
                SELECT l.debit_account, -l.amount::numeric FROM ledger l) x
            GROUP BY acc)
        SELECT encode(a.id, 'hex') AS id,
               encode(a.id, 'hex') || ' (' || a.kind || ': balance ' || a.balance
               || ', ledger ' || coalesce(f.net, 0) || ')' AS what
          FROM accounts a LEFT JOIN flows f ON f.acc = a.id
         WHERE a.balance <> coalesce(f.net, 0) $q$);

    -- Money is conserved: the balances of each currency sum to zero.
    RETURN QUERY SELECT * FROM mp_audit_check('balances_sum_to_zero', $q$
        SELECT a.currency AS id, a.currency || ' ' || sum(a.balance::numeric) AS what
          FROM accounts a GROUP BY a.currency HAVING sum(a.balance::numeric) <> 0 $q$);

    -- Operator funding: every funding's transfer is exactly one ledger row of its amount from
    -- the external account of its currency into the funded account ...
    RETURN QUERY SELECT * FROM mp_audit_check('fundings_match_ledger', $q$
        SELECT encode(f.fund_id, 'hex') AS id,
               encode(f.fund_id, 'hex') || ' (amount ' || f.amount || ', ledger rows '
               || count(l.entry_id) || ' of ' || coalesce(sum(l.amount::numeric), 0) || ')'
               AS what
          FROM fundings f JOIN accounts a ON a.id = f.account_id
          LEFT JOIN ledger l ON l.txn_id = f.txn_id
                            AND l.debit_account = mp_system_account_id('external', a.currency)
                            AND l.credit_account = f.account_id
         GROUP BY f.fund_id, f.amount, f.txn_id
        HAVING count(l.entry_id) <> 1 OR sum(l.amount::numeric) <> f.amount
            OR (SELECT count(*) FROM ledger l2 WHERE l2.txn_id = f.txn_id) <> 1 $q$);

    -- ... and the total funded in a currency is minus the balance of its external account.
    RETURN QUERY SELECT * FROM mp_audit_check('funding_total_is_minus_external', $q$
        SELECT x.currency AS id,
               x.currency || ' (funded ' || coalesce(t.funded, 0) || ', external balance '
               || x.balance || ')' AS what
          FROM accounts x
          LEFT JOIN (SELECT a.currency, sum(f.amount::numeric) AS funded
                       FROM fundings f JOIN accounts a ON a.id = f.account_id
                      GROUP BY a.currency) t ON t.currency = x.currency
         WHERE x.kind = 'external' AND coalesce(t.funded, 0) <> -x.balance::numeric $q$);

    -- Per channel: what left the escrow does not exceed what entered it, which is at most
    -- n * unit_value; the escrow balance is not negative.
    RETURN QUERY SELECT * FROM mp_audit_check('escrow_outflows_within_inflows', $q$
        WITH io AS (
            SELECT c.channel_id, c.n::numeric * c.unit_value AS face, a.balance,
                   (SELECT coalesce(sum(l.amount::numeric), 0) FROM ledger l
                     WHERE l.credit_account = c.escrow_account) AS into_escrow,
                   (SELECT coalesce(sum(l.amount::numeric), 0) FROM ledger l
                     WHERE l.debit_account = c.escrow_account) AS out_of_escrow
              FROM channels c JOIN accounts a ON a.id = c.escrow_account)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (in ' || into_escrow || ', out ' || out_of_escrow
               || ', balance ' || balance || ', face ' || face || ')' AS what
          FROM io
         WHERE out_of_escrow > into_escrow OR into_escrow > face OR balance < 0 $q$);

    -- Per epoch: credited_amount = the sum of its stored redeem credits = the sum of the ledger
    -- rows of those redeem transfers = (credited_end - start_index) * unit_value.
    RETURN QUERY SELECT * FROM mp_audit_check('epoch_credits_match_redeems', $q$
        WITH r AS (
            SELECT rr.channel_id, rr.hseq, sum(rr.credited_amount::numeric) AS results,
                   sum((SELECT sum(l.amount::numeric) FROM ledger l
                         WHERE l.txn_id = rr.txn_id)) AS ledger
              FROM redeem_results rr WHERE rr.txn_id IS NOT NULL
             GROUP BY rr.channel_id, rr.hseq)
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' (credited '
               || e.credited_amount || ', results ' || coalesce(r.results, 0) || ', ledger '
               || coalesce(r.ledger, 0) || ', range ' || e.start_index || '..'
               || e.credited_end || ')' AS what
          FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
          LEFT JOIN r ON r.channel_id = e.channel_id AND r.hseq = e.hseq
         WHERE e.credited_amount <> coalesce(r.results, 0)
            OR e.credited_amount <> coalesce(r.ledger, 0)
            OR e.credited_amount <> (e.credited_end - e.start_index)::numeric * c.unit_value $q$);

    -- Per channel: the money credited out of its escrow (the ledger rows of its redeem
    -- transfers) = the sum over its epochs of (credited_end - start_index) * unit_value.
    RETURN QUERY SELECT * FROM mp_audit_check('channel_credit_matches_epochs', $q$
        WITH t AS (
            SELECT c.channel_id,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'redeem') AS ledger,
                   (SELECT coalesce(sum((e.credited_end - e.start_index)::numeric), 0)
                      FROM epochs e WHERE e.channel_id = c.channel_id) * c.unit_value AS epochs
              FROM channels c)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (credited in the ledger ' || ledger
               || ', by the epochs'' ranges ' || epochs || ')' AS what
          FROM t WHERE ledger <> epochs $q$);

    -- Per epoch: its credited_end is a point the broker verified and stored (the epoch's start
    -- when nothing was credited: the segment root or the handoff point).
    RETURN QUERY SELECT * FROM mp_audit_check('credited_end_is_verified_point', $q$
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' (credited_end '
               || e.credited_end || ' has no verified point)' AS what
          FROM epochs e
         WHERE NOT EXISTS (SELECT 1 FROM chain_points p
                            WHERE p.channel_id = e.channel_id AND p.idx = e.credited_end) $q$);

    -- Per merchant: its pending balance = the sum of its credited claims in channels not yet
    -- finalised.
    RETURN QUERY SELECT * FROM mp_audit_check('merchant_pending_is_unfinalised_credit', $q$
        WITH credit AS (
            SELECT rr.merchant_id, sum(rr.credited_amount::numeric) AS amount
              FROM redeem_results rr JOIN channels c ON c.channel_id = rr.channel_id
             WHERE rr.txn_id IS NOT NULL AND c.state <> 'FINALIZED'
             GROUP BY rr.merchant_id)
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (pending ' || a.balance
               || ', credited claims not finalised ' || coalesce(cr.amount, 0) || ')' AS what
          FROM merchants m JOIN accounts a ON a.id = m.pending_account
          LEFT JOIN credit cr ON cr.merchant_id = m.merchant_id
         WHERE a.balance::numeric <> coalesce(cr.amount, 0) $q$);

    -- Per channel: escrow balance + credited to merchants + every other outflow of the escrow
    -- (refunds, unclaimed, ... in later issues) = n * unit_value.
    RETURN QUERY SELECT * FROM mp_audit_check('channel_escrow_plus_credit_is_face', $q$
        WITH t AS (
            SELECT c.channel_id, c.n::numeric * c.unit_value AS face,
                   a.balance::numeric AS escrow,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id) AS credited,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind <> 'redeem') AS other_out
              FROM channels c JOIN accounts a ON a.id = c.escrow_account)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (escrow ' || escrow || ' + credited ' || credited
               || ' + other ' || other_out || ' <> ' || face || ')' AS what
          FROM t WHERE escrow + credited + other_out <> face $q$);
END
$$;
