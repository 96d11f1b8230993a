-- brokerd migration 0016: the deadlines mp_bind (0009) and mp_unbound_transfer (0012) evaluate
-- are taken against the broker's protocol time p_now (its clock, plus the test clock's offset
-- under --test-clock; docs/settlement.md "Time"), not the database's now().
--
-- Each keeps its earlier version (renamed *_0009, *_0012) for every other check and wraps it in
-- a subtransaction: when the earlier version would bind or cap, but p_now is already past the
-- deadline, the subtransaction is rolled back and the answer is 11 EXPIRED, exactly as the
-- earlier version answers past its own clock's deadline. The test clock only moves forward, so
-- the earlier version's own now() check never refuses what p_now allows.

ALTER FUNCTION mp_bind(bytea, bytea, bytea, bytea, bytea, bigint) RENAME TO mp_bind_0009;
CREATE FUNCTION mp_bind(p_channel_id bytea, p_merchant_id bytea, p_owner_pk bytea,
                        p_hash bytea, p_bind bytea, p_t_grace bigint, p_now bigint)
RETURNS TABLE (status int, detail text, bind bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r record;
BEGIN
    BEGIN
        SELECT * INTO v_r FROM mp_bind_0009(p_channel_id, p_merchant_id, p_owner_pk, p_hash,
                                            p_bind, p_t_grace);
        IF v_r.status = 0 AND (p_now IS NULL OR p_now >= (SELECT c.pay_until FROM channels c
                                                          WHERE c.channel_id = p_channel_id))
        THEN
            RAISE EXCEPTION USING ERRCODE = 'MP011', MESSAGE = 'past pay_until';
        END IF;
    EXCEPTION WHEN SQLSTATE 'MP011' THEN
        RETURN QUERY SELECT 11, 'channel no longer payable'::text, NULL::bytea;
        RETURN;
    END;
    RETURN QUERY SELECT v_r.status, v_r.detail, v_r.bind;
END
$$;

ALTER FUNCTION mp_unbound_transfer(bytea, int, bytea, bytea, bytea, bytea, bytea, int, bytea,
                                   bytea, bytea, int, bytea, bigint, bigint)
    RENAME TO mp_unbound_transfer_0012;
CREATE FUNCTION mp_unbound_transfer(p_channel_id bytea, p_seg int, p_prev_owner bytea,
                                    p_transfer bytea, p_t_hash bytea, p_cap bytea,
                                    p_c_hash bytea, p_len int, p_nonce bytea, p_root bytea,
                                    p_owner bytea, p_declared int, p_w_cap bytea,
                                    p_valid_until bigint, p_delta_xfer bigint, p_now bigint)
RETURNS TABLE (status int, detail text, transfer bytea, cap bytea, bind bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_r record;
BEGIN
    BEGIN
        SELECT * INTO v_r FROM mp_unbound_transfer_0012(p_channel_id, p_seg, p_prev_owner,
            p_transfer, p_t_hash, p_cap, p_c_hash, p_len, p_nonce, p_root, p_owner, p_declared,
            p_w_cap, p_valid_until, p_delta_xfer);
        IF v_r.status = 0 AND (p_now IS NULL OR p_now >= p_valid_until
                               OR p_now >= (SELECT c.pay_until - p_delta_xfer FROM channels c
                                             WHERE c.channel_id = p_channel_id)) THEN
            RAISE EXCEPTION USING ERRCODE = 'MP011', MESSAGE = 'past pay_until - delta_xfer';
        END IF;
    EXCEPTION WHEN SQLSTATE 'MP011' THEN
        RETURN QUERY SELECT 11, 'past pay_until - δ_xfer or the Transfer''s valid_until'::text,
                            NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END;
    RETURN QUERY SELECT v_r.status, v_r.detail, v_r.transfer, v_r.cap, v_r.bind;
END
$$;
