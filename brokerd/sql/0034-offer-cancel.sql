-- A dispute ended by the buyer's OfferCancel (statement 21; docs/disputes.md "Cancelling an
-- offer"). A payword does not name its order: a buyer who let an Offer lapse unpaid could pay
-- its indices for other orders and then dispute the Offer with a word it paid for something
-- else. merchantd therefore pays nothing past a lapsed Offer's after_index until the buyer
-- gives the Offer up with an OfferCancel signed by the owner key of the Offer's segment, and
-- shows that cancel to the broker when the buyer disputes the Offer anyway.
--
--   OPEN --mp_dispute_cancel (brokerd checked the cancel under the Dispute's signer key and
--          its fields against the Offer), not past answer_by, not proven--> CANCELLED (final:
--          nothing refunded; the payword's credit stays the merchant's)
--   CANCELLED --the same or another cancel--> 1 (DUPLICATE_OK); KEY_RELEASED --> 16;
--   REFUNDED or past answer_by --> 13; proven (bad_key_proof) --> 16
--
-- A CANCELLED dispute is neither OPEN (the sweep's refunds, the finalisation gate, the
-- merchant's list) nor refunded: the audit's dispute invariants hold as they are.

ALTER TABLE disputes DROP CONSTRAINT disputes_state_check;
ALTER TABLE disputes ADD CONSTRAINT disputes_state_check
    CHECK (state IN ('OPEN', 'KEY_RELEASED', 'REFUNDED', 'CANCELLED'));
ALTER TABLE disputes ADD COLUMN cancel bytea;
ALTER TABLE disputes ADD CONSTRAINT disputes_cancel_fields
    CHECK ((state = 'CANCELLED') = (cancel IS NOT NULL));

-- The stored Dispute of this merchant for (channel_id, order_ref): its bytes, for brokerd to
-- check a cancel against the Dispute's signer and Offer. No row: none.
CREATE FUNCTION mp_dispute_stmt(p_merchant_id bytea, p_channel_id bytea, p_order_ref bytea)
RETURNS TABLE (stmt bytea)
LANGUAGE sql STABLE AS $$
    SELECT d.stmt FROM disputes d
     WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref
       AND d.merchant_id = p_merchant_id
$$;

CREATE FUNCTION mp_dispute_cancel(p_merchant_id bytea, p_channel_id bytea, p_order_ref bytea,
                                  p_cancel bytea, p_now bigint)
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
    ELSIF v_d.state = 'CANCELLED' THEN
        RETURN QUERY SELECT 1, 'the dispute was cancelled before'::text, v_d.state;
    ELSIF v_d.bad_key_proof IS NOT NULL THEN
        RETURN QUERY SELECT 16, 'the key was proven not to open the Offer''s ciphertext'::text,
                            v_d.state;
    ELSIF v_d.state = 'KEY_RELEASED' THEN
        RETURN QUERY SELECT 16, 'the key was released for this dispute'::text, v_d.state;
    ELSIF v_d.state = 'REFUNDED' THEN
        RETURN QUERY SELECT 13, 'the dispute was refunded'::text, v_d.state;
    ELSIF p_now > v_d.answer_by THEN
        RETURN QUERY SELECT 13, ('the answer time ended at ' || v_d.answer_by)::text,
                            v_d.state;
    ELSE
        UPDATE disputes d SET state = 'CANCELLED', cancel = p_cancel, answered_at = p_now
         WHERE d.channel_id = p_channel_id AND d.order_ref = p_order_ref;
        RETURN QUERY SELECT 0, ''::text, 'CANCELLED'::text;
    END IF;
END
$$;

-- mp_dispute_key of 0031, and a cancelled dispute takes no key (16).
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
    ELSIF v_d.state = 'CANCELLED' THEN
        RETURN QUERY SELECT 16, 'the dispute was cancelled by the buyer''s OfferCancel'::text,
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

-- mp_dispute_prove of 0033, and a cancelled dispute takes no proof (its stored answer: the
-- buyer gave the Offer up, so it never paid for a key).
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
    ELSIF v_d.stmt_hash <> p_stmt_hash OR v_d.state IN ('REFUNDED', 'CANCELLED')
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

-- mp_open_disputes of 0031 with each Dispute's bytes: brokerd hands the merchant the word at
-- pay_index, which merchantd takes as the Offer's payment before it releases the key (an
-- unpaid Offer holds its channel; paid through the dispute it no longer does, and the channel
-- goes on after pay_index, never paying those indices twice).
DROP FUNCTION mp_open_disputes(bytea, int);
CREATE FUNCTION mp_open_disputes(p_merchant_id bytea, p_limit int)
RETURNS TABLE (channel_id bytea, order_ref bytea, answer_by bigint, stmt bytea)
LANGUAGE sql STABLE AS $$
    SELECT d.channel_id, d.order_ref, d.answer_by, d.stmt FROM disputes d
     WHERE d.merchant_id = p_merchant_id AND d.state = 'OPEN' AND d.bad_key_proof IS NULL
     ORDER BY d.answer_by, d.channel_id, d.order_ref
     LIMIT greatest(p_limit, 1)
$$;
