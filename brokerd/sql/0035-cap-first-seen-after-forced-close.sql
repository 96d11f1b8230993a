-- brokerd migration 0035: what a cap_after_forced_close conflict says (docs/release.md "After
-- the ForcedClose").
--
-- A Cap carries no time. A Cap of a ForcedClose's epoch that the broker first sees after the
-- ForcedClose was either signed after it (what PROTOCOL's "anything it signs in that epoch
-- afterwards is a conflict" names) or signed before it and shown to the broker only now (an
-- honest holder that was down before it could send its CapNotice, the buyer's SegmentClaim
-- arriving late). The broker cannot tell the two apart, so the record (kind unchanged, liable
-- the epoch's holder, evidence the ForcedClose and the Cap, no money moves) now says what it
-- knows: first seen after the ForcedClose, not signed after it. The records written before
-- say the same from now on.

UPDATE conflicts
   SET detail = replace(detail, ' after the broker''s ForcedClose at ',
                        ' first seen by the broker after its ForcedClose at ')
                || ' (a Cap carries no time: signed after the ForcedClose, or before it and '
                || 'shown only now)'
 WHERE kind = 'cap_after_forced_close' AND detail NOT LIKE '%first seen by the broker%';

CREATE OR REPLACE FUNCTION mp_caps_after_forced_close(p_channel_id bytea, p_e early_refunds,
                                                      p_seg int[], p_start int[], p_cap bytea[],
                                                      p_hseq int[], p_holder bytea[])
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
                                || ' in epoch ' || p_hseq[i] || ' first seen by the broker '
                                || 'after its ForcedClose at ' || p_e.final_index
                                || ' (a Cap carries no time: signed after the ForcedClose, '
                                || 'or before it and shown only now)');
    END LOOP;
    RETURN ((SELECT count(*) FROM conflicts) - v_before)::int;
END
$$;
