-- brokerd migration 0023: the audit in set-based queries (issue 9).
--
-- Until 0022 mp_audit was a chain of wrappers (0006 -> 0010 -> ... -> 0022): every wrapper ran
-- the one before it, so the checks a later migration replaced still ran and were discarded,
-- and most per-channel invariants were correlated subqueries run once per channel, several of
-- them scanning `transfers` by `ref`, which had no index: the audit grew with the square of
-- the channels and ran past brokerd's statement timeout with about 2,000 redeemed channels on
-- a loaded machine. This migration keeps that audit as mp_audit_0022 (not called by brokerd:
-- the audit suite compares the new one with it on corrupted states) and re-creates mp_audit
-- flat, with the same 24 invariants, the same names, offenders and details:
--   * the figures of every channel (escrow flows by transfer kind, its epochs, liabilities,
--     finalisation owed, the transfers that name it) are computed once, each by one grouped
--     pass over its table (mp_audit_channel_figures), and every per-channel invariant reads
--     them in one statement (mp_audit_checks);
--   * the other invariants are joins against grouped tables instead of per-row subqueries;
--   * transfers gain an index on (ref, kind), for the audit's few per-channel lookups.
-- The invariants' meaning is unchanged: docs/operations.md "The audit".

CREATE INDEX transfers_ref_kind_idx ON transfers (ref, kind);

ALTER FUNCTION mp_audit() RENAME TO mp_audit_0022;

-- Several invariants in one query: p_violations lists (chk, id, what) for every violation of
-- any of p_names; one row per name, in the order of p_names, as mp_audit_check gives for one.
CREATE FUNCTION mp_audit_checks(p_names text[], p_violations text)
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE
        'WITH v AS MATERIALIZED (' || p_violations || '), '
        'r AS (SELECT v.chk, v.id, v.what, '
        '             row_number() OVER (PARTITION BY v.chk ORDER BY v.id) AS k, '
        '             count(*) OVER (PARTITION BY v.chk) AS n FROM v) '
        'SELECT u.name, coalesce(max(r.n), 0) = 0, '
        '       CASE WHEN coalesce(max(r.n), 0) = 0 THEN '''' '
        '            ELSE max(r.n) || '' offenders: '' '
        '                 || string_agg(r.what, ''; '' ORDER BY r.id, r.k) '
        '                        FILTER (WHERE r.k <= 10) END, '
        '       coalesce(array_agg(r.id ORDER BY r.id, r.k) FILTER (WHERE r.k <= 100), '
        '                ''{}''::text[]) '
        '  FROM unnest($1) WITH ORDINALITY AS u(name, ord) '
        '  LEFT JOIN r ON r.chk = u.name '
        ' GROUP BY u.name, u.ord ORDER BY u.ord'
        USING p_names;
END
$$;

-- One row per channel with every figure its invariants compare; each sum is one grouped pass
-- over its table (hash joins, no per-channel subquery). Amounts are numeric, absent sums 0.
--   into_escrow / out_escrow: ledger rows into / out of its escrow account; out_redeem,
--     out_other (kind <> 'redeem'), out_refunded ('refund', 'early_refund'), out_unclaimed:
--     the rows out of the escrow by the kind of their transfer;
--   epoch_credit, epoch_units, epoch_max_end, forked: its epochs' credited_amount and
--     credited_end - start_index summed, the greatest credited_end, a fork epoch exists;
--   excess / collected: its liabilities' amounts / its liability sources' amounts;
--   owed: a finalisation's refund not paid yet;
--   l_refund, n_refund, l_unclaimed, l_release, l_early, n_early: the ledger rows and the
--     number of the transfers of that kind whose ref is the channel.
CREATE FUNCTION mp_audit_channel_figures()
RETURNS TABLE (channel_id bytea, state text, n int, unit_value bigint, face numeric,
               escrow numeric, close_index int, early_refund bigint, into_escrow numeric,
               out_escrow numeric, out_redeem numeric, out_other numeric,
               out_refunded numeric, out_unclaimed numeric, epoch_credit numeric,
               epoch_units numeric, epoch_max_end int, forked boolean, excess numeric,
               collected numeric, owed numeric, l_refund numeric, n_refund bigint,
               l_unclaimed numeric, l_release numeric, l_early numeric, n_early bigint)
LANGUAGE sql STABLE AS $$
    WITH ins AS (
        SELECT c.channel_id, sum(l.amount) AS amount
          FROM ledger l JOIN channels c ON c.escrow_account = l.credit_account
         GROUP BY c.channel_id),
    outs AS (
        SELECT c.channel_id, sum(l.amount) AS total,
               sum(l.amount) FILTER (WHERE x.kind = 'redeem') AS redeem,
               sum(l.amount) FILTER (WHERE x.kind <> 'redeem') AS other,
               sum(l.amount) FILTER (WHERE x.kind IN ('refund', 'early_refund'))
                   AS refunded,
               sum(l.amount) FILTER (WHERE x.kind = 'unclaimed') AS unclaimed
          FROM ledger l JOIN channels c ON c.escrow_account = l.debit_account
          JOIN transfers x ON x.txn_id = l.txn_id
         GROUP BY c.channel_id),
    eps AS (
        SELECT e.channel_id, sum(e.credited_amount) AS credit,
               sum(e.credited_end - e.start_index) AS units,
               max(e.credited_end) AS max_end, bool_or(e.fork_of IS NOT NULL) AS forked
          FROM epochs e GROUP BY e.channel_id),
    lia AS (
        SELECT li.channel_id, sum(li.amount) AS amount
          FROM liabilities li GROUP BY li.channel_id),
    src AS (
        SELECT s.channel_id, sum(s.amount) AS amount
          FROM liability_sources s GROUP BY s.channel_id),
    fin AS (
        SELECT f.channel_id, sum(f.refund) AS owed
          FROM finalizations f WHERE f.refund_txn IS NULL GROUP BY f.channel_id),
    refs AS (
        SELECT x.ref, x.kind, x.txn_id FROM transfers x
         WHERE x.kind IN ('refund', 'unclaimed', 'release', 'early_refund')),
    ref_sums AS (
        SELECT r.ref, r.kind, sum(l.amount) AS amount
          FROM refs r JOIN ledger l ON l.txn_id = r.txn_id GROUP BY r.ref, r.kind),
    ref_counts AS (
        SELECT r.ref, r.kind, count(*) AS transfers FROM refs r GROUP BY r.ref, r.kind),
    byref AS (
        SELECT k.ref,
               sum(sm.amount) FILTER (WHERE k.kind = 'refund') AS l_refund,
               sum(k.transfers) FILTER (WHERE k.kind = 'refund') AS n_refund,
               sum(sm.amount) FILTER (WHERE k.kind = 'unclaimed') AS l_unclaimed,
               sum(sm.amount) FILTER (WHERE k.kind = 'release') AS l_release,
               sum(sm.amount) FILTER (WHERE k.kind = 'early_refund') AS l_early,
               sum(k.transfers) FILTER (WHERE k.kind = 'early_refund') AS n_early
          FROM ref_counts k
          LEFT JOIN ref_sums sm ON sm.ref = k.ref AND sm.kind = k.kind
         GROUP BY k.ref)
    SELECT c.channel_id, c.state, c.n, c.unit_value, c.n::numeric * c.unit_value,
           a.balance::numeric, c.close_index, c.early_refund, coalesce(ins.amount, 0),
           coalesce(outs.total, 0), coalesce(outs.redeem, 0), coalesce(outs.other, 0),
           coalesce(outs.refunded, 0), coalesce(outs.unclaimed, 0), coalesce(eps.credit, 0),
           coalesce(eps.units, 0)::numeric, coalesce(eps.max_end, 0), coalesce(eps.forked, false),
           coalesce(lia.amount, 0), coalesce(src.amount, 0), coalesce(fin.owed, 0),
           coalesce(b.l_refund, 0), coalesce(b.n_refund, 0)::bigint,
           coalesce(b.l_unclaimed, 0), coalesce(b.l_release, 0), coalesce(b.l_early, 0),
           coalesce(b.n_early, 0)::bigint
      FROM channels c JOIN accounts a ON a.id = c.escrow_account
      LEFT JOIN ins ON ins.channel_id = c.channel_id
      LEFT JOIN outs ON outs.channel_id = c.channel_id
      LEFT JOIN eps ON eps.channel_id = c.channel_id
      LEFT JOIN lia ON lia.channel_id = c.channel_id
      LEFT JOIN src ON src.channel_id = c.channel_id
      LEFT JOIN fin ON fin.channel_id = c.channel_id
      LEFT JOIN byref b ON b.ref = c.channel_id
$$;

-- The per-channel invariants of 0006/0014/0015/0017/0022 (their comments there), each the same
-- condition on the same figures as before, all from one evaluation of the figures.
CREATE FUNCTION mp_audit_channels()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE AS $$
    SELECT * FROM mp_audit_checks(ARRAY['escrow_outflows_within_inflows',
        'channel_credit_matches_epochs', 'channel_escrow_plus_credit_is_face',
        'escrow_sourced_credit_within_escrow', 'fork_excess_is_liability_collections',
        'channel_settlement_within_escrow', 'finalization_matches_ledger',
        'early_refund_matches_ledger'], $q$
    WITH f AS MATERIALIZED (SELECT * FROM mp_audit_channel_figures())
    SELECT 'escrow_outflows_within_inflows' AS chk, encode(f.channel_id, 'hex') AS id,
           encode(f.channel_id, 'hex') || ' (in ' || f.into_escrow || ', out ' || f.out_escrow
           || ', balance ' || f.escrow || ', face ' || f.face || ')' AS what
      FROM f
     WHERE f.out_escrow > f.into_escrow OR f.into_escrow > f.face OR f.escrow < 0
    UNION ALL
    SELECT 'channel_credit_matches_epochs', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (credited from escrow ' || f.out_redeem
           || ', by the epochs'' ranges ' || f.epoch_units * f.unit_value || ' - excess '
           || f.excess || ')'
      FROM f WHERE f.out_redeem <> f.epoch_units * f.unit_value - f.excess
    UNION ALL
    SELECT 'channel_escrow_plus_credit_is_face', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (escrow ' || f.escrow || ' + credited '
           || f.epoch_credit || ' - excess ' || f.excess || ' + other ' || f.out_other
           || ' <> ' || f.face || ')'
      FROM f WHERE f.escrow + f.epoch_credit - f.excess + f.out_other <> f.face
    UNION ALL
    SELECT 'escrow_sourced_credit_within_escrow', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (from escrow ' || f.out_redeem || ', into escrow '
           || f.into_escrow || ', units credited ' || u.units || ')'
      FROM f CROSS JOIN LATERAL (
               SELECT coalesce(sum(upper(r) - lower(r)), 0) AS units
                 FROM unnest((SELECT range_agg(int4range(e.start_index, e.credited_end, '(]'))
                                FROM epochs e WHERE e.channel_id = f.channel_id
                                 AND e.credited_end > e.start_index)) AS r) u
     WHERE (f.out_redeem > f.into_escrow OR f.forked)
       AND (f.out_redeem > f.into_escrow OR (f.forked AND f.out_redeem <> u.units * f.unit_value))
    UNION ALL
    SELECT 'fork_excess_is_liability_collections', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (excess credited ' || f.epoch_credit - f.out_redeem
           || ', collected ' || f.excess || ')'
      FROM f WHERE f.epoch_credit - f.out_redeem <> f.excess
    UNION ALL
    SELECT 'channel_settlement_within_escrow', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (' || f.state || ': credited '
           || f.epoch_credit - f.excess || ' + refunded ' || f.out_refunded || ' + unclaimed '
           || f.out_unclaimed || ' + owed ' || f.owed || ' vs face ' || f.face || ', escrow '
           || f.escrow || ')'
      FROM f
     WHERE f.epoch_credit - f.excess + f.out_refunded + f.out_unclaimed + f.owed > f.face
        OR (f.state = 'FINALIZED'
            AND (f.epoch_credit - f.excess + f.out_refunded + f.out_unclaimed + f.owed <> f.face
                 OR f.escrow <> f.owed))
    UNION ALL
    SELECT 'finalization_matches_ledger', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (spent ' || z.spent || '/'
           || greatest(f.epoch_max_end, coalesce(f.close_index, 0)) || ', refund ' || z.refund
           || ' ledger ' || f.l_refund || ' in ' || f.n_refund || ', unclaimed ' || z.unclaimed
           || ' ledger ' || f.l_unclaimed || ', credited ' || z.credited || ' epochs '
           || f.epoch_credit || ' released ' || f.l_release || ')'
      FROM f JOIN finalizations z ON z.channel_id = f.channel_id
     WHERE z.spent <> greatest(f.epoch_max_end, coalesce(f.close_index, 0))
        OR z.credited <> f.epoch_credit
        OR f.l_release <> f.epoch_credit - f.collected
        OR z.refund::numeric <> greatest(0, (f.n - z.spent)::numeric * f.unit_value
                                            - f.early_refund)
        OR z.unclaimed::numeric <> f.n::numeric * f.unit_value - f.early_refund - z.refund
                                   - (f.epoch_credit - f.excess)
        OR f.l_unclaimed <> z.unclaimed
        OR (z.refund_txn IS NULL AND (f.l_refund <> 0 OR f.n_refund <> 0))
        OR (z.refund_txn IS NOT NULL AND (f.l_refund <> z.refund OR f.n_refund <> 1))
    UNION ALL
    SELECT 'early_refund_matches_ledger', encode(f.channel_id, 'hex'),
           encode(f.channel_id, 'hex') || ' (' || f.state || ', early refund '
           || coalesce(r.amount::text, 'none') || ' ledger ' || f.l_early || ' in '
           || f.n_early || ', close_index ' || coalesce(f.close_index::text, 'none')
           || CASE WHEN r.voided_by IS NOT NULL THEN ', Close void' ELSE '' END || ')'
      FROM f LEFT JOIN early_refunds r ON r.channel_id = f.channel_id
     WHERE (r.channel_id IS NULL
            AND (f.l_early <> 0 OR f.n_early <> 0 OR f.early_refund <> 0
                 OR f.close_index IS NOT NULL OR f.state = 'CLOSED_EARLY'))
        OR (r.channel_id IS NOT NULL
            AND (f.l_early <> r.amount OR f.n_early <> (r.amount > 0)::int
                 OR f.early_refund <> r.amount
                 OR f.close_index IS DISTINCT FROM
                    CASE WHEN r.voided_by IS NOT NULL THEN NULL ELSE r.final_index END
                 OR f.state NOT IN ('CLOSED_EARLY', 'FINALIZED'))) $q$);
$$;

-- The audit: every invariant of mp_audit_0022, in its order (docs/operations.md "The audit").
-- The queries not per channel are those of their migrations (0006, 0010, 0013, 0014, 0015,
-- 0019, 0022) except epoch_credits_match_redeems and no_credit_after_finalization, whose
-- per-row subqueries became joins against grouped tables.
-- JIT is off for the audit: its plans cost enough to be JIT-compiled, which took longer than
-- the queries themselves (30 s at 100,000 channels on a loaded machine); work_mem is raised so
-- that its hash tables stay in memory up to about 100,000 channels (it spills to disk above).
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' AS $$
SELECT a.check_name, a.ok, a.detail, a.offenders FROM (
    SELECT * FROM mp_audit_check('account_balances_match_ledger', $q$
        WITH cr AS (SELECT l.credit_account AS acc, sum(l.amount) AS amount FROM ledger l
                     GROUP BY l.credit_account),
             db AS (SELECT l.debit_account AS acc, sum(l.amount) AS amount FROM ledger l
                     GROUP BY l.debit_account)
        SELECT encode(a.id, 'hex') AS id,
               encode(a.id, 'hex') || ' (' || a.kind || ': balance ' || a.balance
               || ', ledger ' || coalesce(cr.amount, 0) - coalesce(db.amount, 0) || ')' AS what
          FROM accounts a LEFT JOIN cr ON cr.acc = a.id LEFT JOIN db ON db.acc = a.id
         WHERE a.balance <> coalesce(cr.amount, 0) - coalesce(db.amount, 0) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('balances_sum_to_zero', $q$
        SELECT a.currency AS id, a.currency || ' ' || sum(a.balance::numeric) AS what
          FROM accounts a GROUP BY a.currency HAVING sum(a.balance::numeric) <> 0 $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('fundings_match_ledger', $q$
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
            OR (SELECT count(*) FROM ledger l2 WHERE l2.txn_id = f.txn_id) <> 1 $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('credited_end_is_verified_point', $q$
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' (credited_end '
               || e.credited_end || ' has no verified point)' AS what
          FROM epochs e
         WHERE NOT EXISTS (SELECT 1 FROM chain_points p
                            WHERE p.channel_id = e.channel_id AND p.idx = e.credited_end) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('segments_backed_by_transfers', $q$
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
                OR cp.channel_id IS NULL OR cp.w <> t.w_cap) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('external_is_payouts_minus_fundings', $q$
        SELECT x.currency AS id,
               x.currency || ' (funded ' || coalesce(f.amt, 0) || ', paid out '
               || coalesce(p.amt, 0) || ', external balance ' || x.balance || ')' AS what
          FROM accounts x
          LEFT JOIN (SELECT a.currency, sum(f.amount::numeric) AS amt
                       FROM fundings f JOIN accounts a ON a.id = f.account_id
                      GROUP BY a.currency) f ON f.currency = x.currency
          LEFT JOIN (SELECT a.currency, sum(p.amount::numeric) AS amt
                       FROM payouts p JOIN accounts a ON a.id = p.account_id
                      GROUP BY a.currency) p ON p.currency = x.currency
         WHERE x.kind = 'external'
           AND x.balance::numeric <> coalesce(p.amt, 0) - coalesce(f.amt, 0) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('payouts_match_ledger', $q$
        SELECT encode(p.payout_id, 'hex') AS id,
               encode(p.payout_id, 'hex') || ' (amount ' || p.amount || ', ledger rows '
               || count(l.entry_id) || ')' AS what
          FROM payouts p JOIN accounts a ON a.id = p.account_id
          LEFT JOIN ledger l ON l.txn_id = p.txn_id AND l.debit_account = p.account_id
                            AND l.credit_account = mp_system_account_id('external', a.currency)
                            AND l.amount = p.amount
         GROUP BY p.payout_id, p.amount, p.txn_id
        HAVING count(l.entry_id) <> 1
            OR (SELECT count(*) FROM ledger l2 WHERE l2.txn_id = p.txn_id) <> 1 $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('payouts_from_payable_accounts', $q$
        SELECT encode(p.payout_id, 'hex') AS id,
               encode(p.payout_id, 'hex') || ' (from a ' || a.kind || ' account)' AS what
          FROM payouts p JOIN accounts a ON a.id = p.account_id
         WHERE a.kind NOT IN ('customer', 'merchant_available') $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('merchant_bond_matches_account', $q$
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (bond ' || m.bond || ', bond account '
               || coalesce(a.balance::text, 'none') || ')' AS what
          FROM merchants m LEFT JOIN accounts a ON a.id = m.bond_account
         WHERE m.bond <> coalesce(a.balance, 0)
            OR (a.id IS NOT NULL AND a.kind <> 'merchant_bond') $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('epoch_credits_match_redeems', $q$
        WITH lt AS (
            SELECT l.txn_id, sum(l.amount) AS amount FROM ledger l
             WHERE l.txn_id IN (SELECT rr.txn_id FROM redeem_results rr)
             GROUP BY l.txn_id),
        r AS (
            SELECT rr.channel_id, rr.hseq, rr.merchant_id,
                   sum(rr.credited_amount) AS results, sum(lt.amount) AS ledger
              FROM redeem_results rr LEFT JOIN lt ON lt.txn_id = rr.txn_id
             WHERE rr.txn_id IS NOT NULL
             GROUP BY rr.channel_id, rr.hseq, rr.merchant_id)
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
               || encode(e.merchant_id, 'hex') || ' (credited ' || e.credited_amount
               || ', results ' || coalesce(r.results, 0) || ', ledger '
               || coalesce(r.ledger, 0) || ', range ' || e.start_index || '..'
               || e.credited_end || ')' AS what
          FROM epochs e JOIN channels c ON c.channel_id = e.channel_id
          LEFT JOIN r ON r.channel_id = e.channel_id AND r.hseq = e.hseq
                     AND r.merchant_id = e.merchant_id
         WHERE e.credited_amount <> coalesce(r.results, 0)
            OR e.credited_amount <> coalesce(r.ledger, 0)
            OR e.credited_amount <> (e.credited_end - e.start_index)::numeric * c.unit_value $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('merchant_pending_is_unfinalised_credit', $q$
        WITH credit AS (
            SELECT rr.merchant_id, sum(rr.credited_amount::numeric) AS amount
              FROM redeem_results rr JOIN channels c ON c.channel_id = rr.channel_id
             WHERE rr.txn_id IS NOT NULL AND c.state <> 'FINALIZED'
             GROUP BY rr.merchant_id),
        taken AS (
            SELECT s.merchant_id, sum(s.amount::numeric) AS amount
              FROM liability_sources s JOIN channels c ON c.channel_id = s.channel_id
             WHERE c.state <> 'FINALIZED'
             GROUP BY s.merchant_id)
        SELECT encode(m.merchant_id, 'hex') AS id,
               encode(m.merchant_id, 'hex') || ' (pending ' || a.balance
               || ', credited claims not finalised ' || coalesce(cr.amount, 0)
               || ', collected from them ' || coalesce(tk.amount, 0) || ')' AS what
          FROM merchants m JOIN accounts a ON a.id = m.pending_account
          LEFT JOIN credit cr ON cr.merchant_id = m.merchant_id
          LEFT JOIN taken tk ON tk.merchant_id = m.merchant_id
         WHERE a.balance::numeric <> coalesce(cr.amount, 0) - coalesce(tk.amount, 0) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('liability_collections_match_ledger', $q$
        SELECT li.liability_id::text AS id,
               'liability ' || li.liability_id || ' (pending ' || li.from_pending || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.pending_account), 0)
               || ', bond ' || li.from_bond || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.bond_account), 0)
               || ', reserve ' || li.from_reserve || '/'
               || coalesce(sum(l.amount) FILTER (WHERE l.debit_account = mp_system_account_id(
                                                     'loss_reserve', m.currency)), 0)
               || ', sources ' || coalesce((SELECT sum(s.amount) FROM liability_sources s
                                             WHERE s.liability_id = li.liability_id), 0)
               || ')' AS what
          FROM liabilities li JOIN merchants m ON m.merchant_id = li.liable_mid
          JOIN merchants cm ON cm.merchant_id = li.creditor_mid
          LEFT JOIN ledger l ON l.txn_id = li.txn_id AND l.credit_account = cm.pending_account
         GROUP BY li.liability_id, li.from_pending, li.from_bond, li.from_reserve,
                  m.pending_account, m.bond_account, m.currency
        HAVING coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.pending_account), 0)
                   <> li.from_pending
            OR coalesce(sum(l.amount) FILTER (WHERE l.debit_account = m.bond_account), 0)
                   <> li.from_bond
            OR coalesce(sum(l.amount) FILTER (WHERE l.debit_account = mp_system_account_id(
                                                  'loss_reserve', m.currency)), 0)
                   <> li.from_reserve
            OR coalesce((SELECT sum(s.amount) FROM liability_sources s
                          WHERE s.liability_id = li.liability_id), 0) <> li.from_pending $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('finalized_channels_have_finalization', $q$
        SELECT encode(c.channel_id, 'hex') AS id,
               encode(c.channel_id, 'hex') || ' (' || c.state || ', finalisation '
               || CASE WHEN f.channel_id IS NULL THEN 'missing' ELSE 'present' END || ')'
               AS what
          FROM channels c LEFT JOIN finalizations f ON f.channel_id = c.channel_id
         WHERE (c.state = 'FINALIZED') <> (f.channel_id IS NOT NULL) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('no_credit_after_finalization', $q$
        WITH fin AS (
            SELECT r.ref, min(r.txn_id) AS txn_id FROM transfers r
             WHERE r.kind IN ('release', 'unclaimed', 'refund')
             GROUP BY r.ref)
        SELECT encode(c.channel_id, 'hex') AS id,
               encode(c.channel_id, 'hex') || ' (redeem transfer ' || x.txn_id
               || ' after the release)' AS what
          FROM channels c JOIN fin ON fin.ref = c.channel_id
          JOIN transfers x ON x.ref = c.channel_id AND x.kind = 'redeem'
         WHERE c.state = 'FINALIZED' AND x.txn_id > fin.txn_id $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('fork_epochs_are_recorded_conflicts', $q$
        SELECT encode(e.channel_id, 'hex') || '/' || e.hseq AS id,
               encode(e.channel_id, 'hex') || '/' || e.hseq || ' of '
               || encode(e.merchant_id, 'hex') || ' (no double_handoff against '
               || encode(e.liable_mid, 'hex') || ' at its branch''s fork)' AS what
          FROM epochs e
         WHERE e.fork_of IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM conflicts k
                WHERE k.kind = 'double_handoff' AND k.channel_id = e.channel_id
                  AND k.liable_mid = e.liable_mid
                  AND k.hseq = coalesce((SELECT f.hseq FROM fork_handoffs f
                                          WHERE f.channel_id = e.channel_id
                                            AND f.stmt_hash = e.fork_of
                                            AND f.branch = e.fork_of), e.hseq)) $q$)
    UNION ALL
    SELECT * FROM mp_audit_check('void_closes_are_recorded_conflicts', $q$
        SELECT encode(r.channel_id, 'hex') AS id,
               encode(r.channel_id, 'hex') || ' (Close of epoch ' || r.hseq
               || ' void, no close_after_handoff against ' || encode(r.liable_mid, 'hex')
               || ')' AS what
          FROM early_refunds r
         WHERE r.voided_by IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM conflicts k
                            WHERE k.kind = 'close_after_handoff'
                              AND k.channel_id = r.channel_id AND k.hseq = r.hseq
                              AND k.liable_mid = r.liable_mid AND k.stmt_a = r.close) $q$)
    UNION ALL
    SELECT * FROM mp_audit_channels()) a
 ORDER BY array_position(ARRAY['account_balances_match_ledger', 'balances_sum_to_zero',
    'fundings_match_ledger', 'escrow_outflows_within_inflows', 'credited_end_is_verified_point',
    'segments_backed_by_transfers', 'external_is_payouts_minus_fundings', 'payouts_match_ledger',
    'payouts_from_payable_accounts', 'merchant_bond_matches_account',
    'epoch_credits_match_redeems', 'channel_credit_matches_epochs',
    'channel_escrow_plus_credit_is_face', 'merchant_pending_is_unfinalised_credit',
    'escrow_sourced_credit_within_escrow', 'liability_collections_match_ledger',
    'fork_excess_is_liability_collections', 'finalized_channels_have_finalization',
    'no_credit_after_finalization', 'channel_settlement_within_escrow',
    'fork_epochs_are_recorded_conflicts', 'finalization_matches_ledger',
    'early_refund_matches_ledger', 'void_closes_are_recorded_conflicts'], a.check_name);
$$;
