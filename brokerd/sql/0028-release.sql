-- Forced release (protocol.md section 6 "Release", statements 17 and 18; docs/release.md).
--
-- The owner of the channel's current segment asks the broker to release the channel from the
-- holder of the latest epoch the broker knows (ReleaseRequest). If the holder hands it off
-- (a Handoff epoch+1 recorded) or closes it (an early refund with its Close) before
-- release_at, the release is DONE. Otherwise the sweep signs a ForcedClose at the holder's
-- highest credited point in that epoch (its start point if it redeemed nothing) and stores it
-- with the early refund of mp_refund_early itself (refund_id mp_release_refund_id, the
-- ReleaseRequest as its statement, the ForcedClose as its Close): CLOSED_EARLY, close_index =
-- final_index, so finalisation does not refund twice and every later claim above it is refused
-- (mp_redeem_close_bound, conflict claim_above_forced_close against the holder).
--
--   (none) --mp_release_request--> PENDING (release_at = now + [broker] release_wait)
--   PENDING --Handoff epoch+1 or a Close of the epoch recorded (mp_release_settle)--> DONE
--   PENDING --sweep at/after release_at: mp_release_prepare (the point), ForcedClose signed,
--             mp_release_force (the same point still the highest, the early refund)--> FORCED

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('double_handoff', 'claim_above_handoff', 'omitted_custody', 'bad_w_at',
                    'double_cap', 'cap_after_handoff', 'close_after_handoff',
                    'claim_above_forced_close'));

CREATE TABLE releases (
    channel_id   bytea  PRIMARY KEY REFERENCES channels (channel_id),
    stmt_hash    bytea  NOT NULL CHECK (length(stmt_hash) = 32),
    stmt         bytea  NOT NULL,  -- the exact signed ReleaseRequest bytes
    seg_seq      int    NOT NULL CHECK (seg_seq >= 0),
    epoch        int    NOT NULL CHECK (epoch >= 0),
    holder_mid   bytea  NOT NULL REFERENCES merchants (merchant_id),
    to_mid       bytea  CHECK (length(to_mid) = 16),
    close        boolean NOT NULL,
    state        text   NOT NULL CHECK (state IN ('PENDING', 'DONE', 'FORCED')),
    requested_at bigint NOT NULL,
    release_at   bigint NOT NULL,
    ended_at     bigint,
    forced_close bytea,  -- the exact signed ForcedClose bytes
    final_index  int    CHECK (final_index >= 0),
    CONSTRAINT releases_state_fields CHECK (
        (state = 'FORCED') = (forced_close IS NOT NULL) AND
        (state = 'FORCED') = (final_index IS NOT NULL) AND
        (state = 'PENDING') = (ended_at IS NULL))
);
CREATE INDEX releases_pending_due_idx ON releases (release_at) WHERE state = 'PENDING';
CREATE INDEX releases_forced_holder_idx ON releases (holder_mid, ended_at)
    WHERE state = 'FORCED';

-- The refund_id under which a forced release's early refund is stored.
CREATE FUNCTION mp_release_refund_id(p_channel_id bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT substring(sha256(convert_to('MPAY1-RELEASE', 'UTF8') || p_channel_id) FROM 1 FOR 16)
$$;

-- What brokerd needs before verifying a ReleaseRequest: the channel's current segment and its
-- owner key. No row if the channel is unknown.
CREATE FUNCTION mp_release_lookup(p_channel_id bytea)
RETURNS TABLE (seg_seq int, owner_pk bytea)
LANGUAGE sql STABLE AS $$
    SELECT l.seg_seq, l.owner_pk FROM channels c
      LEFT JOIN LATERAL mp_last_segment(c.channel_id) l ON true
     WHERE c.channel_id = p_channel_id
$$;

-- A PENDING release whose holder answered (a Handoff epoch+1, or an early refund with the
-- holder's Close of the epoch) or whose channel was finalised becomes DONE. Caller holds the
-- channel's row lock.
CREATE FUNCTION mp_release_settle(p_channel_id bytea, p_now bigint)
RETURNS void
LANGUAGE sql AS $$
    UPDATE releases r SET state = 'DONE', ended_at = p_now
     WHERE r.channel_id = p_channel_id AND r.state = 'PENDING'
       AND (EXISTS (SELECT 1 FROM handoffs h
                     WHERE h.channel_id = r.channel_id AND h.hseq > r.epoch)
            OR EXISTS (SELECT 1 FROM early_refunds e
                        WHERE e.channel_id = r.channel_id
                          AND e.refund_id <> mp_release_refund_id(r.channel_id))
            OR EXISTS (SELECT 1 FROM channels c
                        WHERE c.channel_id = r.channel_id AND c.state = 'FINALIZED'));
$$;

-- The answer for a stored release: 1 for the same statement, 16 + the stored one for another.
CREATE FUNCTION mp_release_answer(p_r releases, p_stmt_hash bytea)
RETURNS TABLE (status int, detail text, state text, release_at bigint, forced_close bytea,
               stored_stmt bytea)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_r.stmt_hash = p_stmt_hash THEN 1 ELSE 16 END,
           CASE WHEN p_r.stmt_hash = p_stmt_hash THEN 'release already recorded'
                ELSE 'another ReleaseRequest recorded for this channel' END,
           p_r.state, p_r.release_at, p_r.forced_close,
           CASE WHEN p_r.stmt_hash = p_stmt_hash THEN NULL ELSE p_r.stmt END
$$;

CREATE FUNCTION mp_release_refused(p_status int, p_detail text)
RETURNS TABLE (status int, detail text, state text, release_at bigint, forced_close bytea,
               stored_stmt bytea)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status, p_detail, NULL::text, NULL::bigint, NULL::bytea, NULL::bytea
$$;

-- Record a verified ReleaseRequest (signed by the owner of segment p_seg_seq, as brokerd
-- checked), in one transaction under the channel's row lock. In order: unknown channel 17; a
-- stored release: its answer (settled first); FINALIZED 13; CLOSED_EARLY 7; p_seg_seq not the
-- current segment 8; p_epoch below the latest Handoff the broker knows 6 (that holder handed
-- the channel on), above it 10; no holder of the epoch 5; otherwise PENDING, release_at =
-- p_now + p_wait: 0.
CREATE FUNCTION mp_release_request(p_channel_id bytea, p_stmt_hash bytea, p_stmt bytea,
                                   p_seg_seq int, p_epoch int, p_to_mid bytea, p_close boolean,
                                   p_wait bigint, p_now bigint)
RETURNS TABLE (status int, detail text, state text, release_at bigint, forced_close bytea,
               stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch     channels%ROWTYPE;
    v_r      releases%ROWTYPE;
    v_latest int;
    v_holder bytea;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mp_release_refused(17, 'unknown channel');
        RETURN;
    END IF;
    PERFORM mp_release_settle(p_channel_id, p_now);
    SELECT * INTO v_r FROM releases r WHERE r.channel_id = p_channel_id;
    IF FOUND THEN
        RETURN QUERY SELECT * FROM mp_release_answer(v_r, p_stmt_hash);
        RETURN;
    END IF;
    IF v_ch.state = 'FINALIZED' THEN
        RETURN QUERY SELECT * FROM mp_release_refused(13, 'channel finalised');
        RETURN;
    ELSIF v_ch.state = 'CLOSED_EARLY' THEN
        RETURN QUERY SELECT * FROM mp_release_refused(7, 'channel already closed at index '
                                                      || coalesce(v_ch.close_index, 0));
        RETURN;
    ELSIF (SELECT l.seg_seq FROM mp_last_segment(p_channel_id) l) IS DISTINCT FROM p_seg_seq
    THEN
        RETURN QUERY SELECT * FROM mp_release_refused(8, 'segment ' || p_seg_seq
                                                      || ' is not the current segment');
        RETURN;
    END IF;
    SELECT coalesce(max(h.hseq), 0) INTO v_latest FROM handoffs h
     WHERE h.channel_id = p_channel_id;
    IF p_epoch < v_latest THEN
        RETURN QUERY SELECT * FROM mp_release_refused(6, 'epoch ' || p_epoch
                                                      || ' was handed off; the latest is '
                                                      || v_latest);
        RETURN;
    ELSIF p_epoch > v_latest THEN
        RETURN QUERY SELECT * FROM mp_release_refused(10, 'the broker knows epochs up to '
                                                       || v_latest || ' only');
        RETURN;
    END IF;
    SELECT coalesce((SELECT h.to_mid FROM handoffs h
                      WHERE h.channel_id = p_channel_id AND h.hseq = p_epoch),
                    (SELECT e.merchant_id FROM epochs e
                      WHERE e.channel_id = p_channel_id AND e.hseq = p_epoch
                        AND e.fork_of IS NULL LIMIT 1))
      INTO v_holder;
    IF v_holder IS NULL THEN
        RETURN QUERY SELECT * FROM mp_release_refused(5, 'no holder of epoch ' || p_epoch);
        RETURN;
    END IF;
    INSERT INTO releases (channel_id, stmt_hash, stmt, seg_seq, epoch, holder_mid, to_mid,
                          close, state, requested_at, release_at)
    VALUES (p_channel_id, p_stmt_hash, p_stmt, p_seg_seq, p_epoch, v_holder,
            nullif(p_to_mid, ''::bytea), p_close, 'PENDING', p_now, p_now + p_wait);
    RETURN QUERY SELECT 0, ''::text, 'PENDING'::text, p_now + p_wait, NULL::bytea,
                        NULL::bytea;
END
$$;

-- The holder's highest credited point in the epoch (its first-branch epoch), or the epoch's
-- start point (the Handoff's point; segment 0's root for epoch 0) if it redeemed nothing.
CREATE FUNCTION mp_release_point(p_channel_id bytea, p_epoch int,
                                 OUT seg_seq int, OUT final_index int, OUT w bytea)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ep epochs%ROWTYPE;
BEGIN
    SELECT * INTO v_ep FROM epochs e
     WHERE e.channel_id = p_channel_id AND e.hseq = p_epoch AND e.fork_of IS NULL;
    IF FOUND AND v_ep.credited_end > v_ep.start_index THEN
        SELECT p.seg_seq, p.idx, p.w INTO seg_seq, final_index, w FROM chain_points p
         WHERE p.channel_id = p_channel_id AND p.idx = v_ep.credited_end
         ORDER BY p.seg_seq LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    IF p_epoch = 0 THEN
        SELECT s.seg_seq, s.seg_start, s.root INTO seg_seq, final_index, w FROM segments s
         WHERE s.channel_id = p_channel_id AND s.seg_seq = 0;
    ELSE
        SELECT h.seg_seq, h.at_index, h.w_at INTO seg_seq, final_index, w FROM handoffs h
         WHERE h.channel_id = p_channel_id AND h.hseq = p_epoch;
    END IF;
END
$$;

-- Up to p_limit PENDING releases due at p_now, the oldest first.
CREATE FUNCTION mp_release_due(p_now bigint, p_limit int)
RETURNS TABLE (channel_id bytea)
LANGUAGE sql STABLE AS $$
    SELECT r.channel_id FROM releases r
     WHERE r.state = 'PENDING' AND r.release_at <= p_now
     ORDER BY r.release_at, r.channel_id
     LIMIT greatest(p_limit, 1)
$$;

-- The sweep's first step for a due release, under the channel's row lock: settle it (DONE if
-- the holder answered); still PENDING and due: the point to sign (go = true).
CREATE FUNCTION mp_release_prepare(p_channel_id bytea, p_now bigint)
RETURNS TABLE (go boolean, state text, epoch int, seg_seq int, final_index int, w bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r  releases%ROWTYPE;
    v_pt record;
BEGIN
    PERFORM 1 FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    PERFORM mp_release_settle(p_channel_id, p_now);
    SELECT * INTO v_r FROM releases r WHERE r.channel_id = p_channel_id;
    IF NOT FOUND OR v_r.state <> 'PENDING' OR v_r.release_at > p_now THEN
        RETURN QUERY SELECT false, v_r.state, v_r.epoch, NULL::int, NULL::int, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_pt FROM mp_release_point(p_channel_id, v_r.epoch);
    RETURN QUERY SELECT v_pt.w IS NOT NULL, v_r.state, v_r.epoch, v_pt.seg_seq,
                        v_pt.final_index, v_pt.w;
END
$$;

-- The sweep's second step, one transaction under the channel's row lock: the release still
-- PENDING and due, and the signed point still the holder's highest (else 'moved': nothing
-- changes, the next pass signs again); then the early refund of mp_refund_early itself, with
-- the ReleaseRequest as its statement and the ForcedClose as its Close: FORCED. If the early
-- refund is refused because the holder answered or the channel was finalised meanwhile: DONE.
CREATE FUNCTION mp_release_force(p_channel_id bytea, p_seg_seq int, p_final_index int,
                                 p_w bytea, p_forced_close bytea, p_now bigint)
RETURNS TABLE (outcome text, refund bigint, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r    releases%ROWTYPE;
    v_pt   record;
    v_last record;
    v_e    record;
BEGIN
    PERFORM 1 FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    PERFORM mp_release_settle(p_channel_id, p_now);
    SELECT * INTO v_r FROM releases r WHERE r.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND OR v_r.state <> 'PENDING' OR v_r.release_at > p_now THEN
        RETURN QUERY SELECT coalesce(v_r.state, 'none'), NULL::bigint, ''::text;
        RETURN;
    END IF;
    SELECT * INTO v_pt FROM mp_release_point(p_channel_id, v_r.epoch);
    IF v_pt.seg_seq IS DISTINCT FROM p_seg_seq OR v_pt.final_index IS DISTINCT FROM p_final_index
       OR v_pt.w IS DISTINCT FROM p_w THEN
        RETURN QUERY SELECT 'moved'::text, NULL::bigint,
                            'the holder''s highest point moved; signing again'::text;
        RETURN;
    END IF;
    SELECT * INTO v_last FROM mp_last_segment(p_channel_id);
    SELECT * INTO v_e FROM mp_refund_early(mp_release_refund_id(p_channel_id), p_channel_id,
        v_last.seg_seq, v_r.stmt_hash, v_r.stmt, NULL, sha256(p_forced_close), p_forced_close,
        v_r.epoch, p_final_index, p_now, v_r.holder_mid);
    IF v_e.status IN (6, 13) THEN
        UPDATE releases r SET state = 'DONE', ended_at = p_now
         WHERE r.channel_id = p_channel_id;
        RETURN QUERY SELECT 'DONE'::text, NULL::bigint, v_e.detail;
        RETURN;
    ELSIF v_e.status <> 0 THEN
        RETURN QUERY SELECT 'refused'::text, NULL::bigint, v_e.status || ': ' || v_e.detail;
        RETURN;
    END IF;
    UPDATE releases r
       SET state = 'FORCED', ended_at = p_now, forced_close = p_forced_close,
           final_index = p_final_index
     WHERE r.channel_id = p_channel_id;
    RETURN QUERY SELECT 'FORCED'::text, v_e.refund, ''::text;
END
$$;

-- The ForcedCloses of epochs a merchant held, the newest first, at most p_limit.
CREATE FUNCTION mp_forced_closes(p_merchant_id bytea, p_limit int)
RETURNS TABLE (channel_id bytea, forced_close bytea)
LANGUAGE sql STABLE AS $$
    SELECT r.channel_id, r.forced_close FROM releases r
     WHERE r.holder_mid = p_merchant_id AND r.state = 'FORCED'
     ORDER BY r.ended_at DESC, r.channel_id
     LIMIT greatest(p_limit, 1)
$$;

-- mp_redeem_close_bound of 0017 with one change: on a channel whose Close is a ForcedClose,
-- the claim of its epoch's holder above it is recorded as claim_above_forced_close (liable:
-- the holder; evidence: the ForcedClose and the Redeem).
CREATE OR REPLACE FUNCTION mp_redeem_close_bound(p_ch channels, p_ep epochs, p_idx int,
                                                 p_redeem_stmt bytea)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_r      early_refunds%ROWTYPE;
    v_forced boolean;
BEGIN
    IF p_ch.close_index IS NULL OR p_idx <= p_ch.close_index THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_r FROM early_refunds r WHERE r.channel_id = p_ch.channel_id;
    v_forced := FOUND AND v_r.refund_id = mp_release_refund_id(p_ch.channel_id);
    IF FOUND AND v_r.hseq = p_ep.hseq AND p_ep.fork_of IS NULL THEN
        PERFORM mp_conflict_add(
            CASE WHEN v_forced THEN 'claim_above_forced_close' ELSE 'claim_above_handoff' END,
            p_ch.channel_id, p_ep.hseq, p_ep.merchant_id, v_r.close, p_redeem_stmt,
            p_ep.merchant_id, p_idx,
            'claim at ' || p_idx || ' in epoch ' || p_ep.hseq || ' above the claimant''s own '
            || CASE WHEN v_forced THEN 'ForcedClose' ELSE 'Close' END || ' at '
            || p_ch.close_index);
    END IF;
    RETURN 'claim at ' || p_idx || ' above the channel''s '
           || CASE WHEN v_forced THEN 'ForcedClose' ELSE 'Close' END || ' at index '
           || p_ch.close_index;
END
$$;

-- The audit (mp_audit of 0027 kept as mp_audit_0027) adds
--   forced_release_matches_early_refund: a FORCED release has exactly its early refund (the
--     refund_id mp_release_refund_id, its ForcedClose as the Close, its epoch and
--     final_index; the ledger side is early_refund_matches_ledger's) and, unless that Close
--     was voided by a later Handoff, no credit of its epoch above final_index; no early refund
--     under a release's refund_id without a FORCED release.
ALTER FUNCTION mp_audit() RENAME TO mp_audit_0027;
CREATE FUNCTION mp_audit()
RETURNS TABLE (check_name text, ok boolean, detail text, offenders text[])
LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' AS $$
SELECT * FROM mp_audit_0027()
UNION ALL
SELECT * FROM mp_audit_check('forced_release_matches_early_refund', $q$
    WITH t AS (
        SELECT coalesce(r.channel_id, e.channel_id) AS channel_id, r.state, r.epoch,
               r.final_index, r.forced_close, e.refund_id IS NOT NULL AS refunded, e.hseq,
               e.final_index AS e_final, e.close, e.voided_by,
               (SELECT max(ep.credited_end) FROM epochs ep
                 WHERE ep.channel_id = r.channel_id AND ep.hseq = r.epoch
                   AND ep.fork_of IS NULL) AS credited_end
          FROM (SELECT * FROM releases WHERE state = 'FORCED') r
          FULL JOIN (SELECT * FROM early_refunds
                      WHERE refund_id = mp_release_refund_id(channel_id)) e
            ON e.channel_id = r.channel_id)
    SELECT encode(channel_id, 'hex') AS id,
           encode(channel_id, 'hex') || ' (release ' || coalesce(state, 'none')
           || ', final_index ' || coalesce(final_index::text, 'none') || ', early refund '
           || CASE WHEN refunded THEN 'at ' || e_final ELSE 'none' END
           || ', epoch credited to ' || coalesce(credited_end::text, 'none') || ')' AS what
      FROM t
     WHERE state IS NULL OR NOT refunded OR hseq <> epoch OR e_final <> final_index
        OR close <> forced_close
        OR (voided_by IS NULL AND coalesce(credited_end, 0) > final_index) $q$)
$$;
