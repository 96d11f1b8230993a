-- A key that does not open (protocol.md section 6 "Fair exchange"; docs/disputes.md "A key that
-- does not open").
--
-- An Offer binds its key by key_hash and its ciphertext by ciphertext_hash, a Merkle tree over
-- the sealed chunks (common/sealed_tree.h), and the nonce prefix is derived from the key. So a
-- merchant that releases a key matching key_hash which does not open its goods can be proven
-- wrong: brokerd checks a BadKeyProof (the key, one sealed chunk, its audit path) on its worker
-- pool, and mp_dispute_prove records it on the dispute, in one transaction under the channel's
-- row lock: OPEN or KEY_RELEASED -> OPEN with answer_by = now, the proof stored, the released
-- key cleared. The merchant can no longer answer it (mp_dispute_key: 16; mp_open_disputes does
-- not list it), and the next sweep refunds it as an unanswered dispute (mp_dispute_refund,
-- 0029), so the refund, its cover and the channel's finalisation follow the existing rules.
--
--   OPEN | KEY_RELEASED --mp_dispute_prove (window open, not FINALIZED)--> OPEN, proven
--     --the sweep (answer_by = now passed)--> REFUNDED
--   proven or REFUNDED --mp_dispute_prove again--> the stored answer (1), nothing changes

ALTER TABLE disputes
    ADD COLUMN bad_key_proof bytea,
    ADD COLUMN proven_at bigint;
ALTER TABLE disputes ADD CONSTRAINT disputes_proof_fields CHECK (
    (bad_key_proof IS NULL) = (proven_at IS NULL) AND
    (bad_key_proof IS NULL OR state <> 'KEY_RELEASED'));

-- Record a verified BadKeyProof (brokerd checked it against the Dispute's verified Offer) on
-- the stored dispute of (channel, order_ref) whose statement hashes to p_stmt_hash. 0: proven
-- now (OPEN, refunded by the next sweep); the stored answer (1, or 16 for another statement)
-- for a dispute already proven or REFUNDED; 13 past the Offer's dispute window, the channel's
-- redeem_until, or once FINALIZED; 17 no such dispute.
CREATE FUNCTION mp_dispute_prove(p_channel_id bytea, p_order_ref bytea, p_stmt_hash bytea,
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
    ELSIF p_now > p_deadline + p_window OR p_now >= v_ch.redeem_until
          OR v_ch.state = 'FINALIZED' THEN
        RETURN QUERY SELECT 13, ('the proof came after the dispute window ('
                                 || p_deadline + p_window || ') or the channel''s redemption ('
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

-- mp_dispute_key of 0027, and a proven dispute is no longer the merchant's to answer (16).
CREATE OR REPLACE FUNCTION mp_dispute_key(p_merchant_id bytea, p_channel_id bytea,
                                          p_order_ref bytea, p_key bytea, p_now bigint)
RETURNS TABLE (status int, detail text, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_d disputes%ROWTYPE;
BEGIN
    SELECT * INTO v_d FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref
       AND d.merchant_id = p_merchant_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'no dispute of this merchant for that channel and order_ref'
                                ::text, NULL::text;
    ELSIF sha256(p_key) <> v_d.key_hash THEN
        RETURN QUERY SELECT 16, 'SHA-256(key) is not the Offer''s key_hash'::text, v_d.state;
    ELSIF v_d.bad_key_proof IS NOT NULL THEN
        RETURN QUERY SELECT 16, 'the key was proven not to open the Offer''s ciphertext'::text,
                            v_d.state;
    ELSIF v_d.state = 'KEY_RELEASED' THEN
        RETURN QUERY SELECT 1, 'key already released'::text, v_d.state;
    ELSIF v_d.state = 'REFUNDED' THEN
        RETURN QUERY SELECT 13, 'the dispute was refunded'::text, v_d.state;
    ELSIF p_now > v_d.answer_by THEN
        RETURN QUERY SELECT 13, ('the answer time ended at ' || v_d.answer_by)::text,
                            v_d.state;
    ELSE
        UPDATE disputes d SET state = 'KEY_RELEASED', key = p_key, answered_at = p_now
         WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        RETURN QUERY SELECT 0, ''::text, 'KEY_RELEASED'::text;
    END IF;
END
$$;

-- mp_open_disputes of 0027 without the proven disputes (nothing for the merchant to answer).
CREATE OR REPLACE FUNCTION mp_open_disputes(p_merchant_id bytea, p_limit int)
RETURNS TABLE (channel_id bytea, order_ref bytea, answer_by bigint)
LANGUAGE sql STABLE AS $$
    SELECT d.channel_id, d.order_ref, d.answer_by FROM disputes d
     WHERE d.merchant_id = p_merchant_id AND d.state = 'OPEN' AND d.bad_key_proof IS NULL
     ORDER BY d.answer_by, d.channel_id, d.order_ref
     LIMIT greatest(p_limit, 1)
$$;
