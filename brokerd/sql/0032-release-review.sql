-- brokerd migration 0032: the 2026-12-01 review of forced release (docs/release.md).
--
-- 1. A channel closed early (by its holder's Close or the broker's ForcedClose) takes no new
--    segment and no new SegmentClaim: mp_segment_record answers 7 (CLOSED) and stores no
--    segment, point, Transfer/Cap or claim, so nobody buys the rest of a refunded channel. A Cap
--    new to the broker, of the epoch of a (not void) ForcedClose, is recorded as the conflict
--    cap_after_forced_close (liable: its signer, the epoch's holder; evidence: the ForcedClose
--    and the Cap): protocol.md section 6, "anything it signs in that epoch afterwards is a
--    conflict". The same stored pair or SegmentClaim again still answers as before.
-- 2. Releases are keyed by (channel, seg_seq, epoch): a DONE release no longer blocks a later
--    one (a later epoch after a Handoff, a later owner after a transfer). At most one release of
--    a channel is PENDING or FORCED (releases_live_uq). The same statement again answers its
--    stored state; another statement while one is live, or for the (seg_seq, epoch) of a DONE
--    one, is 16 with the stored one.
-- 3. A PENDING release is DONE once its segment is no longer the channel's current segment
--    (the channel was given to another customer: the release would refund the new owner, who
--    never asked).
-- 4. A release whose early refund is refused (e.g. no payout account recorded) records the
--    attempt (tried_at, tried_detail); mp_release_due lists untried releases first, then the
--    least recently tried, so a stuck release does not starve the others.
--
--   (none) --mp_release_request--> PENDING --settle (Handoff epoch+1, the holder's Close, the
--   channel finalised, its segment no longer current)--> DONE
--   PENDING --sweep: prepare, sign, force--> FORCED | --early refund refused--> PENDING (tried)

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('double_handoff', 'claim_above_handoff', 'omitted_custody', 'bad_w_at',
                    'double_cap', 'cap_after_handoff', 'close_after_handoff',
                    'claim_above_forced_close', 'cap_after_forced_close'));

ALTER TABLE releases DROP CONSTRAINT releases_pkey;
ALTER TABLE releases ADD PRIMARY KEY (channel_id, seg_seq, epoch);
CREATE UNIQUE INDEX releases_live_uq ON releases (channel_id) WHERE state <> 'DONE';
CREATE INDEX releases_stmt_idx ON releases (channel_id, stmt_hash);
ALTER TABLE releases ADD COLUMN tried_at bigint;
ALTER TABLE releases ADD COLUMN tried_detail text;

-- ---- 1. no new segment or SegmentClaim on a channel closed early ----

-- The conflicts of the Caps new to the broker of a ForcedClose's epoch (p_e: the channel's
-- early refund under the release's refund_id, not void); how many were new.
CREATE FUNCTION mp_caps_after_forced_close(p_channel_id bytea, p_e early_refunds, p_seg int[],
                                           p_start int[], p_cap bytea[], p_hseq int[],
                                           p_holder bytea[])
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v_before bigint;
BEGIN
    SELECT count(*) INTO v_before FROM conflicts;
    FOR i IN 1 .. coalesce(cardinality(p_seg), 0) LOOP
        CONTINUE WHEN p_hseq[i] <> p_e.hseq OR EXISTS (
            SELECT 1 FROM segment_transfers t
             WHERE t.channel_id = p_channel_id AND t.seg_seq = p_seg[i]);
        PERFORM mp_conflict_add('cap_after_forced_close', p_channel_id, p_hseq[i], p_holder[i],
                                p_e.close, p_cap[i], NULL, p_start[i],
                                'Cap of segment ' || p_seg[i] || ' at ' || p_start[i]
                                || ' in epoch ' || p_hseq[i] || ' after the broker''s '
                                || 'ForcedClose at ' || p_e.final_index);
    END LOOP;
    RETURN ((SELECT count(*) FROM conflicts) - v_before)::int;
END
$$;

ALTER FUNCTION mp_segment_record(bytea, text, int, int[], int[], int[], bytea[], bytea[],
                                 bytea[], bytea[], bytea[], bytea[], bytea[], int[], bytea[],
                                 bytea[], int[], bytea, bytea, bytea)
    RENAME TO mp_segment_record_0015;
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
    v_e      early_refunds%ROWTYPE;
    v_forced boolean := false;
    v_conf   int := 0;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND OR v_ch.state <> 'CLOSED_EARLY' OR (
           NOT EXISTS (SELECT 1 FROM unnest(p_seg) s(seg)
                        WHERE NOT EXISTS (SELECT 1 FROM segment_transfers t
                                           WHERE t.channel_id = p_channel_id
                                             AND t.seg_seq = s.seg))
           AND (p_claim IS NULL OR EXISTS (
                   SELECT 1 FROM segment_transfers t
                    WHERE t.channel_id = p_channel_id AND t.seg_seq = p_main_seg
                      AND t.claim_hash = p_claim_hash))) THEN
        RETURN QUERY SELECT * FROM mp_segment_record_0015(p_channel_id, p_source, p_main_seg,
            p_seg, p_start, p_len, p_nonce, p_root, p_owner, p_transfer, p_t_hash, p_cap,
            p_c_hash, p_hseq, p_w_cap, p_holder, p_declared, p_claim, p_claim_hash, p_payout);
        RETURN;
    END IF;
    SELECT * INTO v_e FROM early_refunds e WHERE e.channel_id = p_channel_id;
    v_forced := FOUND AND v_e.refund_id = mp_release_refund_id(p_channel_id)
                AND v_e.voided_by IS NULL;
    IF v_forced THEN
        v_conf := mp_caps_after_forced_close(p_channel_id, v_e, p_seg, p_start, p_cap, p_hseq,
                                             p_holder);
    END IF;
    RETURN QUERY SELECT 7, ('channel closed early'
                            || coalesce(' at index ' || v_ch.close_index, '')
                            || CASE WHEN v_forced THEN ' by the broker''s ForcedClose of epoch '
                                                       || v_e.hseq ELSE '' END
                            || ': no new segment or SegmentClaim')::text,
                        CASE WHEN v_forced THEN v_e.close END, 0, v_conf;
END
$$;

-- ---- 3. a release ends when its segment is no longer current ----

CREATE OR REPLACE FUNCTION mp_release_settle(p_channel_id bytea, p_now bigint)
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
                        WHERE c.channel_id = r.channel_id AND c.state = 'FINALIZED')
            OR (SELECT l.seg_seq FROM mp_last_segment(r.channel_id) l)
               IS DISTINCT FROM r.seg_seq);
$$;

-- ---- 2. keyed by (channel, seg_seq, epoch) ----

-- The release a request meets, if any: the same statement; else the live one (PENDING or
-- FORCED); else a DONE one of the same segment and epoch.
CREATE FUNCTION mp_release_stored(p_channel_id bytea, p_stmt_hash bytea, p_seg_seq int,
                                  p_epoch int)
RETURNS SETOF releases
LANGUAGE sql STABLE AS $$
    SELECT * FROM releases r
     WHERE r.channel_id = p_channel_id
       AND (r.stmt_hash = p_stmt_hash OR r.state <> 'DONE'
            OR (r.seg_seq = p_seg_seq AND r.epoch = p_epoch))
     ORDER BY r.stmt_hash = p_stmt_hash DESC, r.state <> 'DONE' DESC
     LIMIT 1
$$;

-- mp_release_request of 0028 with the stored release read by mp_release_stored (the rest as
-- it was: the checks in the same order, the same answers).
CREATE OR REPLACE FUNCTION mp_release_request(p_channel_id bytea, p_stmt_hash bytea,
                                              p_stmt bytea, p_seg_seq int, p_epoch int,
                                              p_to_mid bytea, p_close boolean, p_wait bigint,
                                              p_now bigint)
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
    SELECT * INTO v_r FROM mp_release_stored(p_channel_id, p_stmt_hash, p_seg_seq, p_epoch);
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

-- The channel's release the sweep works on: the PENDING one, else the newest.
CREATE FUNCTION mp_release_current(p_channel_id bytea)
RETURNS SETOF releases
LANGUAGE sql STABLE AS $$
    SELECT * FROM releases r WHERE r.channel_id = p_channel_id
     ORDER BY r.state = 'PENDING' DESC, r.requested_at DESC, r.epoch DESC, r.seg_seq DESC
     LIMIT 1
$$;

-- mp_release_prepare of 0028 reading mp_release_current.
CREATE OR REPLACE FUNCTION mp_release_prepare(p_channel_id bytea, p_now bigint)
RETURNS TABLE (go boolean, state text, epoch int, seg_seq int, final_index int, w bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r  releases%ROWTYPE;
    v_pt record;
BEGIN
    PERFORM 1 FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    PERFORM mp_release_settle(p_channel_id, p_now);
    SELECT * INTO v_r FROM mp_release_current(p_channel_id);
    IF NOT FOUND OR v_r.state <> 'PENDING' OR v_r.release_at > p_now THEN
        RETURN QUERY SELECT false, v_r.state, v_r.epoch, NULL::int, NULL::int, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_pt FROM mp_release_point(p_channel_id, v_r.epoch);
    RETURN QUERY SELECT v_pt.w IS NOT NULL, v_r.state, v_r.epoch, v_pt.seg_seq,
                        v_pt.final_index, v_pt.w;
END
$$;

-- mp_release_force of 0028 reading mp_release_current, updating that release only, and
-- recording a refused early refund's attempt (4.).
CREATE OR REPLACE FUNCTION mp_release_force(p_channel_id bytea, p_seg_seq int,
                                            p_final_index int, p_w bytea,
                                            p_forced_close bytea, p_now bigint)
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
    SELECT * INTO v_r FROM mp_release_current(p_channel_id);
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
         WHERE r.channel_id = p_channel_id AND r.seg_seq = v_r.seg_seq
           AND r.epoch = v_r.epoch;
        RETURN QUERY SELECT 'DONE'::text, NULL::bigint, v_e.detail;
        RETURN;
    ELSIF v_e.status <> 0 THEN
        UPDATE releases r SET tried_at = p_now, tried_detail = v_e.status || ': ' || v_e.detail
         WHERE r.channel_id = p_channel_id AND r.seg_seq = v_r.seg_seq
           AND r.epoch = v_r.epoch;
        RETURN QUERY SELECT 'refused'::text, NULL::bigint, v_e.status || ': ' || v_e.detail;
        RETURN;
    END IF;
    UPDATE releases r
       SET state = 'FORCED', ended_at = p_now, forced_close = p_forced_close,
           final_index = p_final_index
     WHERE r.channel_id = p_channel_id AND r.seg_seq = v_r.seg_seq AND r.epoch = v_r.epoch;
    RETURN QUERY SELECT 'FORCED'::text, v_e.refund, ''::text;
END
$$;

-- ---- 4. untried first ----

CREATE OR REPLACE FUNCTION mp_release_due(p_now bigint, p_limit int)
RETURNS TABLE (channel_id bytea)
LANGUAGE sql STABLE AS $$
    SELECT r.channel_id FROM releases r
     WHERE r.state = 'PENDING' AND r.release_at <= p_now
     ORDER BY r.tried_at NULLS FIRST, r.release_at, r.channel_id
     LIMIT greatest(p_limit, 1)
$$;

-- What brokerd needs before verifying a ReleaseRequest, and whether these exact bytes are
-- stored already (verified when they were recorded: asked again, they answer the release's
-- state without a new verification, also once the channel has another owner).
CREATE FUNCTION mp_release_lookup(p_channel_id bytea, p_stmt_hash bytea)
RETURNS TABLE (seg_seq int, owner_pk bytea, stored boolean)
LANGUAGE sql STABLE AS $$
    SELECT l.seg_seq, l.owner_pk,
           EXISTS (SELECT 1 FROM releases r
                    WHERE r.channel_id = c.channel_id AND r.stmt_hash = p_stmt_hash)
      FROM channels c
      LEFT JOIN LATERAL mp_last_segment(c.channel_id) l ON true
     WHERE c.channel_id = p_channel_id
$$;

-- The PENDING releases a merchant is the holder of (ForcedClosesResp.pending_releases): how
-- many, and the first release_at.
CREATE INDEX releases_pending_holder_idx ON releases (holder_mid) WHERE state = 'PENDING';
CREATE FUNCTION mp_release_pending_of(p_merchant_id bytea)
RETURNS TABLE (pending bigint, first_release_at bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*), coalesce(min(r.release_at), 0) FROM releases r
     WHERE r.holder_mid = p_merchant_id AND r.state = 'PENDING'
$$;

-- ---- 6. paging the ForcedCloses ----

-- Every FORCED release gets the next forced_seq when it is forced (the old ones in the order
-- they were forced): a merchant pages through its ForcedCloses after a cursor, oldest first.
CREATE SEQUENCE releases_forced_seq;
ALTER TABLE releases ADD COLUMN forced_seq bigint;
UPDATE releases r SET forced_seq = o.seq
  FROM (SELECT channel_id, seg_seq, epoch,
               nextval('releases_forced_seq') AS seq
          FROM (SELECT channel_id, seg_seq, epoch FROM releases WHERE state = 'FORCED'
                 ORDER BY ended_at, channel_id) f) o
 WHERE r.channel_id = o.channel_id AND r.seg_seq = o.seg_seq AND r.epoch = o.epoch;
ALTER TABLE releases ADD CONSTRAINT releases_forced_seq_set
    CHECK ((state = 'FORCED') = (forced_seq IS NOT NULL));
CREATE INDEX releases_forced_seq_idx ON releases (holder_mid, forced_seq)
    WHERE state = 'FORCED';

CREATE FUNCTION mp_release_forced_seq()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'FORCED' AND NEW.forced_seq IS NULL THEN
        NEW.forced_seq := nextval('releases_forced_seq');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER releases_forced_seq BEFORE UPDATE OF state ON releases
    FOR EACH ROW EXECUTE FUNCTION mp_release_forced_seq();

-- The ForcedCloses of epochs a merchant held recorded after p_after, the oldest first, at
-- most p_limit.
CREATE FUNCTION mp_forced_closes_after(p_merchant_id bytea, p_after bigint, p_limit int)
RETURNS TABLE (channel_id bytea, forced_close bytea, forced_seq bigint)
LANGUAGE sql STABLE AS $$
    SELECT r.channel_id, r.forced_close, r.forced_seq FROM releases r
     WHERE r.holder_mid = p_merchant_id AND r.state = 'FORCED' AND r.forced_seq > p_after
     ORDER BY r.forced_seq
     LIMIT greatest(p_limit, 1)
$$;
