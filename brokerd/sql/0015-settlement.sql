-- brokerd migration 0015: the channel lifecycle at the broker, finalisation and the refund
-- request (protocol.md sections 6 "Finalisation and refund", 8 and 10; docs/settlement.md).
--
--   OPEN --pay_until <= now--> EXPIRED --finalize_at <= now--> FINALIZED
--     |                          |                                ^
--     +--(Close, later)--> CLOSED_EARLY --finalize_at <= now------+
--   (OPEN and CLOSED_EARLY reach FINALIZED directly once finalize_at has passed)
--
-- "now" is always the broker's effective time p_now (its clock, with the test clock's offset
-- under --test-clock), never the database's now(): every deadline below is evaluated against
-- it. brokerd's sweep (brokerd/sweep.c) lists due channels with mp_sweep_due and moves each
-- with mp_sweep_channel, one transaction per channel under the channel's row lock, so it is
-- idempotent and a crash between two channels loses nothing.
--
-- Finalisation (mp_finalize_locked), in the transaction that flips the state, under the lock
-- mp_redeem also takes (so a claim is either credited before the refund is computed, or
-- answered TOO_LATE after):
--   spent     = max(highest credited index of any epoch, close_index)
--   refund    = (n - spent) * unit_value - early_refund, to the payout account of the last
--               (not void) segment: the issuing account for segment 0, the SegmentClaim's after
--               a transfer; if that segment has none recorded, the refund stays in the escrow
--               until its owner names one in a RefundRequest (mp_refund_request)
--   unclaimed = what else is left in the escrow (units spent but never redeemed)
--   every merchant's pending credit from this channel moves to its available account (less
--   what fork liabilities, migration 0014, already took from it).

ALTER TABLE channels
    ADD COLUMN close_index  int    CHECK (close_index >= 0),   -- CLOSED_EARLY (later piece)
    ADD COLUMN early_refund bigint NOT NULL DEFAULT 0 CHECK (early_refund >= 0),
    ADD COLUMN expired_at   bigint;  -- the effective time the sweep marked it EXPIRED

-- The sweep walks the channels not yet finalised in channel_id order (finalised ones, the
-- bulk of an old database, are never scanned again).
CREATE INDEX channels_unfinalized_idx ON channels (channel_id) WHERE state <> 'FINALIZED';

-- The result of each channel's finalisation (one row, written with the state flip).
CREATE TABLE finalizations (
    channel_id     bytea  PRIMARY KEY REFERENCES channels (channel_id),
    finalized_at   bigint NOT NULL,          -- the broker's effective time
    spent          int    NOT NULL CHECK (spent >= 0),
    credited       bigint NOT NULL CHECK (credited >= 0),   -- moved pending -> available
    refund         bigint NOT NULL CHECK (refund >= 0),
    unclaimed      bigint NOT NULL CHECK (unclaimed >= 0),
    refund_seg     int    NOT NULL CHECK (refund_seg >= 0), -- the last segment
    refund_account bytea  REFERENCES accounts (id),         -- NULL: none recorded yet
    refund_txn     bigint REFERENCES transfers (txn_id),    -- NULL: not paid yet
    refunded_at    bigint,
    CONSTRAINT finalizations_paid CHECK ((refund_txn IS NULL) = (refunded_at IS NULL)
                                         AND (refund_txn IS NULL OR refund_account IS NOT NULL))
);

-- RefundRequests (statement 12), idempotent by refund_id; one answered request per channel.
CREATE TABLE refund_requests (
    refund_id         bytea PRIMARY KEY CHECK (length(refund_id) = 16),
    channel_id        bytea NOT NULL UNIQUE REFERENCES channels (channel_id),
    seg_seq           int   NOT NULL,
    stmt_hash         bytea NOT NULL CHECK (length(stmt_hash) = 32),
    stmt              bytea NOT NULL,  -- the exact signed RefundRequest bytes
    payout_account_id bytea REFERENCES accounts (id),
    answered_at       bigint NOT NULL
);

-- The last segment of a channel that counts (void segments do not) and its payout account.
CREATE FUNCTION mp_last_segment(p_channel_id bytea)
RETURNS TABLE (seg_seq int, owner_pk bytea, payout_account bytea)
LANGUAGE sql STABLE AS $$
    SELECT s.seg_seq, s.owner_pk,
           CASE WHEN s.seg_seq = 0 THEN c.account_id ELSE t.payout_account_id END
      FROM segments s
      JOIN channels c ON c.channel_id = s.channel_id
      LEFT JOIN segment_transfers t ON t.channel_id = s.channel_id AND t.seg_seq = s.seg_seq
     WHERE s.channel_id = p_channel_id AND NOT s.voided
     ORDER BY s.seg_seq DESC
     LIMIT 1;
$$;

-- Up to p_limit channels with a due step (EXPIRED at pay_until, FINALIZED at finalize_at),
-- in channel_id order after p_after (a pass walks them all even if some fail).
CREATE FUNCTION mp_sweep_due(p_now bigint, p_after bytea, p_limit int)
RETURNS TABLE (channel_id bytea)
LANGUAGE sql STABLE AS $$
    SELECT c.channel_id FROM channels c
     WHERE c.state <> 'FINALIZED'
       AND c.channel_id > coalesce(p_after, '\x'::bytea)
       AND ((c.state = 'OPEN' AND c.pay_until <= p_now) OR c.finalize_at <= p_now)
     ORDER BY c.channel_id
     LIMIT greatest(p_limit, 1);
$$;

-- Finalise a channel whose row the caller holds FOR UPDATE. Returns the finalizations row.
CREATE FUNCTION mp_finalize_locked(p_ch channels, p_now bigint)
RETURNS finalizations
LANGUAGE plpgsql AS $$
DECLARE
    v_f        finalizations%ROWTYPE;
    v_last     record;
    v_escrow   bigint;
    v_txn      bigint;
    v_m        record;
BEGIN
    -- Liabilities from forks (protocol.md section 7) were collected when the excess was
    -- credited (mp_collect_liability, migration 0014): the escrow paid only units credited
    -- once, so what is left in it is exact; the pending credit they took is not released.
    v_f.channel_id := p_ch.channel_id;
    v_f.finalized_at := p_now;
    SELECT greatest(coalesce(max(e.credited_end), 0), coalesce(p_ch.close_index, 0)),
           coalesce(sum(e.credited_amount), 0)
      INTO v_f.spent, v_f.credited
      FROM epochs e WHERE e.channel_id = p_ch.channel_id;
    v_f.refund := (p_ch.n - v_f.spent)::bigint * p_ch.unit_value - p_ch.early_refund;
    IF v_f.refund < 0 THEN
        RAISE EXCEPTION 'mp_finalize: channel % early refund % above the refund owed',
            encode(p_ch.channel_id, 'hex'), p_ch.early_refund;
    END IF;
    SELECT * INTO v_last FROM mp_last_segment(p_ch.channel_id);
    v_f.refund_seg := v_last.seg_seq;
    v_f.refund_account := v_last.payout_account;
    SELECT a.balance INTO v_escrow FROM accounts a WHERE a.id = p_ch.escrow_account FOR UPDATE;
    v_f.unclaimed := v_escrow - v_f.refund;
    IF v_f.unclaimed < 0 THEN
        RAISE EXCEPTION 'mp_finalize: channel % escrow % below the refund %',
            encode(p_ch.channel_id, 'hex'), v_escrow, v_f.refund;
    END IF;

    IF v_f.refund > 0 AND v_f.refund_account IS NOT NULL THEN
        INSERT INTO transfers (kind, ref) VALUES ('refund', p_ch.channel_id)
        RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, p_ch.escrow_account, v_f.refund_account, v_f.refund);
        v_f.refund_txn := v_txn;
        v_f.refunded_at := p_now;
    END IF;
    IF v_f.unclaimed > 0 THEN
        INSERT INTO transfers (kind, ref) VALUES ('unclaimed', p_ch.channel_id)
        RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, p_ch.escrow_account,
                        mp_system_account_id('unclaimed', p_ch.currency), v_f.unclaimed);
    END IF;
    -- Pending credit -> available, per merchant, in merchant order: its credit from this
    -- channel less what fork liabilities (0014) already took from that credit.
    FOR v_m IN
        SELECT m.pending_account, m.available_account,
               sum(e.credited_amount) - mp_pending_collected(m.merchant_id, p_ch.channel_id)
               AS amount
          FROM epochs e JOIN merchants m ON m.merchant_id = e.merchant_id
         WHERE e.channel_id = p_ch.channel_id AND e.credited_amount > 0
         GROUP BY m.merchant_id, m.pending_account, m.available_account
        HAVING sum(e.credited_amount) - mp_pending_collected(m.merchant_id, p_ch.channel_id) > 0
         ORDER BY m.merchant_id
    LOOP
        INSERT INTO transfers (kind, ref) VALUES ('release', p_ch.channel_id)
        RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, v_m.pending_account, v_m.available_account, v_m.amount::bigint);
    END LOOP;

    INSERT INTO finalizations VALUES (v_f.*);
    UPDATE channels SET state = 'FINALIZED' WHERE channel_id = p_ch.channel_id;
    RETURN v_f;
END
$$;
REVOKE ALL ON FUNCTION mp_finalize_locked(channels, bigint) FROM PUBLIC;

-- One step of the sweep for one channel, in its own transaction under the channel's row lock:
-- 'finalized' once finalize_at has passed, else 'expired' once pay_until has passed, else
-- 'none' (already done, or not due: a repeated call changes nothing).
CREATE FUNCTION mp_sweep_channel(p_channel_id bytea, p_now bigint)
RETURNS TABLE (action text, state text, spent int, refund bigint, unclaimed bigint,
               refund_paid boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch channels%ROWTYPE;
    v_f  finalizations%ROWTYPE;
BEGIN
    IF p_now IS NULL THEN
        RAISE EXCEPTION 'mp_sweep_channel: no time given';
    END IF;
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::int, NULL::bigint, NULL::bigint,
                            NULL::boolean;
        RETURN;
    END IF;
    IF v_ch.state <> 'FINALIZED' AND v_ch.finalize_at <= p_now THEN
        v_f := mp_finalize_locked(v_ch, p_now);
        RETURN QUERY SELECT 'finalized'::text, 'FINALIZED'::text, v_f.spent, v_f.refund,
                            v_f.unclaimed, v_f.refund_txn IS NOT NULL;
        RETURN;
    END IF;
    IF v_ch.state = 'OPEN' AND v_ch.pay_until <= p_now THEN
        UPDATE channels c SET state = 'EXPIRED', expired_at = p_now
         WHERE c.channel_id = p_channel_id;
        RETURN QUERY SELECT 'expired'::text, 'EXPIRED'::text, NULL::int, NULL::bigint,
                            NULL::bigint, NULL::boolean;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'none'::text, v_ch.state, NULL::int, NULL::bigint, NULL::bigint,
                        NULL::boolean;
END
$$;

-- What brokerd needs to verify a RefundRequest: the last segment and its owner key, and for
-- segment 0 the issuing account's key (either may sign). No row if the channel is unknown.
CREATE FUNCTION mp_refund_lookup(p_channel_id bytea)
RETURNS TABLE (seg_seq int, owner_pk bytea, account_pk bytea)
LANGUAGE sql STABLE AS $$
    SELECT l.seg_seq, l.owner_pk, CASE WHEN l.seg_seq = 0 THEN cu.account_pk END
      FROM channels c
      JOIN customers cu ON cu.account_id = c.account_id
      CROSS JOIN LATERAL mp_last_segment(c.channel_id) l
     WHERE c.channel_id = p_channel_id;
$$;

-- RefundRequest (statement 12), its signature verified by brokerd under the owner of the last
-- segment (or the issuing account for segment 0). In order:
--   refund_id stored: same stmt_hash 1 + the result, another 16 + the stored statement;
--   unknown channel 17; seg_seq not the last segment 8; not FINALIZED 12 (TOO_EARLY, with
--   not_before = finalize_at), nothing stored;
--   FINALIZED and the refund still in the escrow (no payout account was recorded): p_payout
--   must name a customer account of the channel's currency (2 if absent, 18 if not such an
--   account); the refund is paid to it now;
--   another refund_id for a channel whose refund was already answered: 1 + the result (not
--   stored again); otherwise stored, 0 + the result.
-- The result: refund (amount), payout account, spent, unclaimed, refunded_at.
CREATE FUNCTION mp_refund_request(p_refund_id bytea, p_channel_id bytea, p_seg_seq int,
                                  p_stmt_hash bytea, p_stmt bytea, p_payout bytea,
                                  p_now bigint)
RETURNS TABLE (status int, detail text, not_before bigint, refund bigint,
               payout_account bytea, spent int, unclaimed bigint, refunded_at bigint,
               stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r   refund_requests%ROWTYPE;
    v_ch  channels%ROWTYPE;
    v_f   finalizations%ROWTYPE;
    v_seg int;
    v_acc accounts%ROWTYPE;
    v_txn bigint;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'unknown channel'::text, NULL::bigint, NULL::bigint,
                            NULL::bytea, NULL::int, NULL::bigint, NULL::bigint, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_r FROM refund_requests r WHERE r.refund_id = p_refund_id;
    IF FOUND AND v_r.stmt_hash <> p_stmt_hash THEN
        RETURN QUERY SELECT 16, 'refund_id used by another RefundRequest'::text, NULL::bigint,
                            NULL::bigint, NULL::bytea, NULL::int, NULL::bigint, NULL::bigint,
                            v_r.stmt;
        RETURN;
    END IF;
    IF NOT FOUND THEN
        SELECT l.seg_seq INTO v_seg FROM mp_last_segment(p_channel_id) l;
        IF v_seg IS DISTINCT FROM p_seg_seq THEN
            RETURN QUERY SELECT 8, ('segment ' || p_seg_seq || ' is not the last segment '
                                    || v_seg)::text, NULL::bigint, NULL::bigint, NULL::bytea,
                                NULL::int, NULL::bigint, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
        IF v_ch.state <> 'FINALIZED' THEN
            RETURN QUERY SELECT 12, ('not finalised before ' || v_ch.finalize_at)::text,
                                v_ch.finalize_at, NULL::bigint, NULL::bytea, NULL::int,
                                NULL::bigint, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO v_f FROM finalizations f WHERE f.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mp_refund_request: FINALIZED channel % without its finalisation',
            encode(p_channel_id, 'hex');
    END IF;
    IF v_r.refund_id IS NOT NULL THEN
        RETURN QUERY SELECT 1, 'already answered'::text, NULL::bigint, v_f.refund,
                            v_f.refund_account, v_f.spent, v_f.unclaimed, v_f.refunded_at,
                            NULL::bytea;
        RETURN;
    END IF;

    IF v_f.refund_txn IS NULL AND v_f.refund > 0 THEN
        IF p_payout IS NULL OR length(p_payout) = 0 THEN
            RETURN QUERY SELECT 2, 'no payout account recorded for the last segment: name one'
                                ::text, NULL::bigint, v_f.refund, NULL::bytea, v_f.spent,
                                v_f.unclaimed, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
        SELECT * INTO v_acc FROM accounts a WHERE a.id = p_payout AND a.kind = 'customer';
        IF NOT FOUND OR v_acc.currency <> v_ch.currency THEN
            RETURN QUERY SELECT 18, 'payout account is not a customer account of the channel''s'
                                || ' currency'::text, NULL::bigint, NULL::bigint, NULL::bytea,
                                NULL::int, NULL::bigint, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
        INSERT INTO transfers (kind, ref) VALUES ('refund', p_channel_id)
        RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, v_ch.escrow_account, p_payout, v_f.refund);
        UPDATE finalizations f
           SET refund_account = p_payout, refund_txn = v_txn, refunded_at = p_now
         WHERE f.channel_id = p_channel_id
        RETURNING * INTO v_f;
    END IF;

    INSERT INTO refund_requests (refund_id, channel_id, seg_seq, stmt_hash, stmt,
                                 payout_account_id, answered_at)
    VALUES (p_refund_id, p_channel_id, p_seg_seq, p_stmt_hash, p_stmt,
            CASE WHEN v_txn IS NOT NULL THEN p_payout END, p_now)
    ON CONFLICT (channel_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 1, 'refund already answered'::text, NULL::bigint, v_f.refund,
                            v_f.refund_account, v_f.spent, v_f.unclaimed, v_f.refunded_at,
                            NULL::bytea;
        RETURN;
    END IF;
    RETURN QUERY SELECT 0, ''::text, NULL::bigint, v_f.refund, v_f.refund_account, v_f.spent,
                        v_f.unclaimed, v_f.refunded_at, NULL::bytea;
END
$$;

-- A claim for a FINALIZED channel's segments is TOO_LATE: mp_segment_record (0011) refuses a
-- new segment or SegmentClaim once the refund was computed, under the same row lock.
ALTER FUNCTION mp_segment_record(bytea, text, int, int[], int[], int[], bytea[], bytea[],
                                 bytea[], bytea[], bytea[], bytea[], bytea[], int[], bytea[],
                                 bytea[], int[], bytea, bytea, bytea)
    RENAME TO mp_segment_record_0011;
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
    v_state text;
BEGIN
    SELECT c.state INTO v_state FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF v_state = 'FINALIZED' THEN
        RETURN QUERY SELECT 13, 'channel finalized'::text, NULL::bytea, 0, 0;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM mp_segment_record_0011(p_channel_id, p_source, p_main_seg,
        p_seg, p_start, p_len, p_nonce, p_root, p_owner, p_transfer, p_t_hash, p_cap,
        p_c_hash, p_hseq, p_w_cap, p_holder, p_declared, p_claim, p_claim_hash, p_payout);
END
$$;

-- Admin `channel.show` gains the settlement: finalize_at, close_index, early_refund and the
-- finalisation (jsonb, null until FINALIZED).
CREATE FUNCTION mp_channel_settlement(p_channel_id bytea)
RETURNS TABLE (state text, pay_until bigint, redeem_until bigint, finalize_at bigint,
               expired_at bigint, close_index int, early_refund bigint, finalization jsonb,
               refund_request jsonb)
LANGUAGE sql STABLE AS $$
    SELECT c.state, c.pay_until, c.redeem_until, c.finalize_at, c.expired_at, c.close_index,
           c.early_refund,
           (SELECT jsonb_build_object('finalized_at', f.finalized_at, 'spent', f.spent,
                       'credited', f.credited, 'refund', f.refund, 'unclaimed', f.unclaimed,
                       'refund_seg', f.refund_seg,
                       'refund_account', encode(f.refund_account, 'hex'),
                       'refund_paid', f.refund_txn IS NOT NULL, 'refunded_at', f.refunded_at)
              FROM finalizations f WHERE f.channel_id = c.channel_id),
           (SELECT jsonb_build_object('refund_id', encode(r.refund_id, 'hex'),
                       'seg_seq', r.seg_seq, 'answered_at', r.answered_at)
              FROM refund_requests r WHERE r.channel_id = c.channel_id)
      FROM channels c WHERE c.channel_id = p_channel_id;
$$;

-- Channels per state, for the metrics.
CREATE FUNCTION mp_channel_states()
RETURNS TABLE (state text, channels bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.state, (SELECT count(*) FROM channels c WHERE c.state = s.state)
      FROM unnest(ARRAY['OPEN', 'EXPIRED', 'CLOSED_EARLY', 'FINALIZED']) AS s(state);
$$;

-- The audit gains the settlement invariants (mp_audit of 0014 kept as mp_audit_0014):
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0014;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM mp_audit_0014();

    -- Per channel: credited + refunded + unclaimed (+ a refund still owed in the escrow) <=
    -- n * unit_value, equal once FINALIZED, when the escrow holds exactly the refund owed.
    RETURN QUERY SELECT * FROM mp_audit_check('channel_settlement_within_escrow', $q$
        WITH t AS (
            SELECT c.channel_id, c.state, c.n::numeric * c.unit_value AS face,
                   a.balance::numeric AS escrow,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id)
                   - (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                       WHERE li.channel_id = c.channel_id) AS credited,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'refund')
                   AS refunded,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE l.debit_account = c.escrow_account AND x.kind = 'unclaimed')
                   AS unclaimed,
                   (SELECT coalesce(sum(f.refund::numeric), 0) FROM finalizations f
                     WHERE f.channel_id = c.channel_id AND f.refund_txn IS NULL) AS owed
              FROM channels c JOIN accounts a ON a.id = c.escrow_account)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (' || state || ': credited ' || credited
               || ' + refunded ' || refunded || ' + unclaimed ' || unclaimed || ' + owed '
               || owed || ' vs face ' || face || ', escrow ' || escrow || ')' AS what
          FROM t
         WHERE credited + refunded + unclaimed + owed > face
            OR (state = 'FINALIZED' AND (credited + refunded + unclaimed + owed <> face
                                         OR escrow <> owed)) $q$);

    -- Per finalised channel: its stored finalisation is the arithmetic of section 6 and
    -- matches the ledger (refund paid once, unclaimed, pending credit released).
    RETURN QUERY SELECT * FROM mp_audit_check('finalization_matches_ledger', $q$
        WITH t AS (
            SELECT c.channel_id, c.n, c.unit_value, c.early_refund, f.spent, f.credited, f.refund,
                   f.unclaimed, f.refund_txn,
                   (SELECT coalesce(sum(e.credited_amount::numeric), 0) FROM epochs e
                     WHERE e.channel_id = c.channel_id) AS epoch_credit,
                   (SELECT coalesce(sum(li.amount::numeric), 0) FROM liabilities li
                     WHERE li.channel_id = c.channel_id) AS excess,
                   (SELECT coalesce(sum(s.amount::numeric), 0) FROM liability_sources s
                     WHERE s.channel_id = c.channel_id) AS collected,
                   (SELECT greatest(coalesce(max(e.credited_end), 0),
                                    coalesce(c.close_index, 0))
                      FROM epochs e WHERE e.channel_id = c.channel_id) AS epoch_spent,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'refund') AS l_refund,
                   (SELECT count(*) FROM transfers x
                     WHERE x.ref = c.channel_id AND x.kind = 'refund') AS n_refund,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'unclaimed') AS l_unclaimed,
                   (SELECT coalesce(sum(l.amount::numeric), 0)
                      FROM ledger l JOIN transfers x ON x.txn_id = l.txn_id
                     WHERE x.ref = c.channel_id AND x.kind = 'release') AS l_release
              FROM channels c JOIN finalizations f ON f.channel_id = c.channel_id)
        SELECT encode(channel_id, 'hex') AS id,
               encode(channel_id, 'hex') || ' (spent ' || spent || '/' || epoch_spent
               || ', refund ' || refund || ' ledger ' || l_refund || ' in ' || n_refund
               || ', unclaimed ' || unclaimed || ' ledger ' || l_unclaimed || ', credited '
               || credited || ' epochs ' || epoch_credit || ' released ' || l_release || ')'
               AS what
          FROM t
         WHERE spent <> epoch_spent OR credited <> epoch_credit
            OR l_release <> epoch_credit - collected
            OR refund::numeric <> (n - spent)::numeric * unit_value - early_refund
            OR unclaimed::numeric <> spent::numeric * unit_value - (epoch_credit - excess)
            OR l_unclaimed <> unclaimed
            OR (refund_txn IS NULL AND (l_refund <> 0 OR n_refund <> 0))
            OR (refund_txn IS NOT NULL AND (l_refund <> refund OR n_refund <> 1)) $q$);

    -- Only FINALIZED channels have a finalisation, and every FINALIZED channel has one.
    RETURN QUERY SELECT * FROM mp_audit_check('finalized_channels_have_finalization', $q$
        SELECT encode(c.channel_id, 'hex') AS id,
               encode(c.channel_id, 'hex') || ' (' || c.state || ', finalisation '
               || CASE WHEN f.channel_id IS NULL THEN 'missing' ELSE 'present' END || ')'
               AS what
          FROM channels c LEFT JOIN finalizations f ON f.channel_id = c.channel_id
         WHERE (c.state = 'FINALIZED') <> (f.channel_id IS NOT NULL) $q$);

    -- No redeem credit was booked after its channel's finalisation.
    RETURN QUERY SELECT * FROM mp_audit_check('no_credit_after_finalization', $q$
        SELECT encode(c.channel_id, 'hex') AS id,
               encode(c.channel_id, 'hex') || ' (redeem transfer ' || x.txn_id
               || ' after the release)' AS what
          FROM channels c JOIN transfers x ON x.ref = c.channel_id AND x.kind = 'redeem'
         WHERE x.txn_id > (SELECT min(r.txn_id) FROM transfers r
                            WHERE r.ref = c.channel_id
                              AND r.kind IN ('release', 'unclaimed', 'refund')
                              AND c.state = 'FINALIZED') $q$);
END
$$;
