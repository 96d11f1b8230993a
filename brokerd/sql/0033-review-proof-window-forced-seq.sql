-- Review fixes to 0031 and 0032 (docs/disputes.md "A key that does not open",
-- docs/release.md "Delivery to the holder").
--
-- 1. A proof against a key the merchant released through the broker late (answer_by can fall
--    after the Offer's deadline + T_dispute) is taken until T_dispute after that answer, not
--    only until the deadline + T_dispute: otherwise a merchant could release a key that does
--    not open the goods after the window and keep the payment. Still refused at redeem_until
--    and once FINALIZED.
-- 2. A ForcedClose's forced_seq is drawn under its holder's merchants row lock, held to the
--    commit, so one holder's ForcedCloses commit in forced_seq order even when several brokerd
--    processes force at once; a holder paging with a cursor (mp_forced_closes after p_after)
--    then never skips one that commits late. Lock order as everywhere: the channel, then the
--    merchant.

CREATE OR REPLACE FUNCTION mp_dispute_prove(p_channel_id bytea, p_order_ref bytea, p_stmt_hash bytea,
                                 p_proof bytea, p_deadline bigint, p_window bigint,
                                 p_now bigint)
RETURNS TABLE (status int, detail text, state text, key bytea, refunded bigint,
               answer_by bigint, stored_stmt bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch channels%ROWTYPE;
    v_d  disputes%ROWTYPE;
BEGIN
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'no dispute of that channel and order_ref'::text, NULL::text,
                            NULL::bytea, NULL::bigint, NULL::bigint, NULL::bytea;
    ELSIF v_d.stmt_hash <> p_stmt_hash OR v_d.state = 'REFUNDED'
          OR v_d.bad_key_proof IS NOT NULL THEN
        RETURN QUERY SELECT * FROM mp_dispute_answer(v_d, p_stmt_hash);
    ELSIF p_now > greatest(p_deadline, coalesce(v_d.answered_at, 0)) + p_window
          OR p_now >= v_ch.redeem_until OR v_ch.state = 'FINALIZED' THEN
        RETURN QUERY SELECT 13, ('the proof came after the dispute window ('
                                 || greatest(p_deadline, coalesce(v_d.answered_at, 0))
                                    + p_window
                                 || ') or the channel''s redemption ('
                                 || v_ch.redeem_until || ') ended')::text,
                            v_d.state, v_d.key, v_d.refunded, v_d.answer_by, NULL::bytea;
    ELSE
        UPDATE disputes d
           SET state = 'OPEN', key = NULL, answered_at = NULL, bad_key_proof = p_proof,
               proven_at = p_now, answer_by = p_now
         WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        RETURN QUERY SELECT 0, 'the Offer''s key does not open its ciphertext: refunded by the '
                               'next sweep'::text, 'OPEN'::text, NULL::bytea, 0::bigint, p_now,
                            NULL::bytea;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION mp_release_forced_seq()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'FORCED' AND NEW.forced_seq IS NULL THEN
        PERFORM 1 FROM merchants m WHERE m.merchant_id = NEW.holder_mid FOR UPDATE;
        NEW.forced_seq := nextval('releases_forced_seq');
    END IF;
    RETURN NEW;
END
$$;
