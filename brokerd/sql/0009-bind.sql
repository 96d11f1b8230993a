-- brokerd migration 0009: Bind-on-first-use (protocol.md sections 4 and 6, "Bind").
--
-- A channel may be issued without holder0 (mp_issue below, as in 0003 except that an empty
-- holder0 is stored as NULL and epoch 0 is not created). The first merchant that asks the
-- broker binds it: mp_bind, by compare-and-set on the channel row, stores the broker-signed
-- Bind{channel_id, merchant_id} (custody event 0), sets channels.holder0 and opens epoch 0 for
-- that merchant, all in one transaction; brokerd sends the Bind only after COMMIT. The same
-- merchant asking again gets the stored bytes; any other merchant gets the stored Bind.

CREATE TABLE binds (
    channel_id  bytea PRIMARY KEY REFERENCES channels (channel_id),
    merchant_id bytea NOT NULL REFERENCES merchants (merchant_id),
    stmt_hash   bytea NOT NULL CHECK (length(stmt_hash) = 32),
    stmt        bytea NOT NULL,  -- the exact signed Bind (Signed) bytes
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What brokerd needs before it verifies a BindReq's Move (expected signer from its own
-- state): the owner key of the channel's current segment and the stored Bind, if any.
CREATE FUNCTION mp_bind_lookup(p_channel_id bytea)
RETURNS TABLE (found boolean, cert_holder0 boolean, seg_seq int, owner_pk bytea,
               bound_mid bytea, bind bytea)
LANGUAGE sql STABLE AS $$
    SELECT true, c.holder0 IS NOT NULL AND b.channel_id IS NULL, s.seg_seq, s.owner_pk,
           b.merchant_id, b.stmt
      FROM channels c
      JOIN LATERAL (SELECT s.seg_seq, s.owner_pk FROM segments s
                     WHERE s.channel_id = c.channel_id
                     ORDER BY s.seg_seq DESC LIMIT 1) s ON true
      LEFT JOIN binds b ON b.channel_id = c.channel_id
     WHERE c.channel_id = p_channel_id
$$;

-- Bind p_channel_id to p_merchant_id (the peer certificate) with the Bind brokerd signed
-- (p_bind, hash p_hash). p_owner_pk is the key the Move was verified under: it must still be
-- the current segment's owner. Status: 0 bound now; 1 the same merchant's stored Bind; 5
-- NOT_HOLDER with the stored Bind of another merchant (or none: holder0 is in the cert);
-- 17 unknown channel; 11 EXPIRED (database clock at or past pay_until); 2 MALFORMED (merchant
-- unregistered, another currency, cert too short); 3 BAD_SIG (consent under an old key).
CREATE FUNCTION mp_bind(p_channel_id bytea, p_merchant_id bytea, p_owner_pk bytea,
                        p_hash bytea, p_bind bytea, p_t_grace bigint)
RETURNS TABLE (status int, detail text, bind bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch channels%ROWTYPE;
    v_b  binds%ROWTYPE;
    v_m  merchants%ROWTYPE;
BEGIN
    -- Compare-and-set: the channel row is the lock every binder of this channel waits on.
    SELECT * INTO v_ch FROM channels WHERE channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'unknown channel', NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_b FROM binds WHERE channel_id = p_channel_id;
    IF FOUND THEN
        IF v_b.merchant_id = p_merchant_id THEN
            RETURN QUERY SELECT 1, 'already bound to this merchant', v_b.stmt;
        ELSE
            RETURN QUERY SELECT 5, 'bound to merchant ' || encode(v_b.merchant_id, 'hex'),
                                v_b.stmt;
        END IF;
        RETURN;
    END IF;
    IF v_ch.holder0 IS NOT NULL THEN
        RETURN QUERY SELECT 5, 'the cert names holder0 ' || encode(v_ch.holder0, 'hex'),
                            NULL::bytea;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM segments s WHERE s.channel_id = p_channel_id
                      AND s.owner_pk = p_owner_pk
                      AND s.seg_seq = (SELECT max(x.seg_seq) FROM segments x
                                        WHERE x.channel_id = p_channel_id)) THEN
        RETURN QUERY SELECT 3, 'Move not signed by the current segment''s owner', NULL::bytea;
        RETURN;
    END IF;
    IF v_ch.state <> 'OPEN' OR extract(epoch FROM now()) >= v_ch.pay_until THEN
        RETURN QUERY SELECT 11, 'channel no longer payable', NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_m FROM merchants WHERE merchant_id = p_merchant_id;
    IF NOT FOUND OR v_m.cert IS NULL THEN
        RETURN QUERY SELECT 2, 'not a registered merchant', NULL::bytea;
        RETURN;
    END IF;
    IF v_m.currency <> v_ch.currency THEN
        RETURN QUERY SELECT 2, 'merchant uses another currency', NULL::bytea;
        RETURN;
    END IF;
    IF p_t_grace IS NULL OR v_m.cert_valid_until < v_ch.redeem_until::numeric + p_t_grace THEN
        RETURN QUERY SELECT 2, 'merchant certificate expires before redeem_until + T_grace',
                            NULL::bytea;
        RETURN;
    END IF;
    INSERT INTO binds (channel_id, merchant_id, stmt_hash, stmt)
    VALUES (p_channel_id, p_merchant_id, p_hash, p_bind);
    UPDATE channels SET holder0 = p_merchant_id WHERE channel_id = p_channel_id;
    INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index, credited_end)
    VALUES (p_channel_id, 0, p_merchant_id, 0, NULL, 0);
    RETURN QUERY SELECT 0, '', p_bind;
END
$$;

-- Issue as in 0003, with an empty holder0 allowed (unbound until mp_bind).
CREATE OR REPLACE FUNCTION mp_issue(p_account_id bytea, p_issue_req_id bytea, p_req_hash bytea,
                         p_request bytea, p_bounds_status int, p_bounds_detail text,
                         p_channel_id bytea, p_escrow_account bytea, p_owner_pk bytea,
                         p_nonce bytea, p_root bytea, p_n int, p_unit_value bigint,
                         p_currency text, p_holder0 bytea, p_issued_at bigint,
                         p_pay_until bigint, p_redeem_until bigint, p_t_grace bigint,
                         p_broker_now bigint, p_max_offset bigint, p_cert bytea)
RETURNS TABLE (status int, detail text, cert bytea, request bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_acc    accounts%ROWTYPE;
    v_ch     channels%ROWTYPE;
    v_m      merchants%ROWTYPE;
    v_amount numeric;
    v_txn    bigint;
    v_con    text;
BEGIN
    -- 1. Serialise on the customer account.
    SELECT a.* INTO v_acc
      FROM accounts a JOIN customers c ON c.account_id = a.id
     WHERE a.id = p_account_id AND a.kind = 'customer'
       FOR UPDATE OF a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, 'unknown account', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 2. Idempotency on (account, issue_req_id).
    SELECT * INTO v_ch FROM channels
     WHERE account_id = p_account_id AND issue_req_id = p_issue_req_id;
    IF FOUND THEN
        IF v_ch.req_hash = p_req_hash THEN
            RETURN QUERY SELECT 1, 'already issued', v_ch.cert, NULL::bytea;
        ELSE
            RETURN QUERY SELECT 16, 'issue_req_id used by another request', NULL::bytea,
                                v_ch.request;
        END IF;
        RETURN;
    END IF;

    -- 3. Bounds decided by brokerd.
    IF p_bounds_status IS DISTINCT FROM 0 THEN
        RETURN QUERY SELECT coalesce(p_bounds_status, 20), coalesce(p_bounds_detail, ''),
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 4. brokerd's clock (issued_at) against the database clock.
    IF p_broker_now IS NULL OR p_max_offset IS NULL
       OR abs(extract(epoch FROM now()) - p_broker_now) > p_max_offset THEN
        RETURN QUERY SELECT 20, 'clock offset', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 5. Currency of the account.
    IF p_currency IS DISTINCT FROM v_acc.currency THEN
        RETURN QUERY SELECT 2, 'currency differs from the account''s', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 6. holder0: empty = unbound (the first merchant to ask gets a Bind, mp_bind); else a
    --    registered merchant of this currency whose MerchantCert lasts until
    --    redeem_until + T_grace.
    IF p_holder0 IS NOT NULL AND length(p_holder0) = 0 THEN
        p_holder0 := NULL;
    END IF;
    IF p_holder0 IS NOT NULL THEN
    SELECT * INTO v_m FROM merchants WHERE merchant_id = p_holder0;
    IF NOT FOUND OR v_m.cert IS NULL THEN
        RETURN QUERY SELECT 2, 'holder0 is not a registered merchant', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF v_m.currency <> p_currency THEN
        RETURN QUERY SELECT 2, 'holder0 uses another currency', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF p_redeem_until IS NULL OR p_t_grace IS NULL
       OR v_m.cert_valid_until < p_redeem_until::numeric + p_t_grace THEN
        RETURN QUERY SELECT 2, 'holder0 certificate expires before redeem_until + T_grace',
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    END IF;

    -- 7. Fresh owner key, nonce and root.
    IF EXISTS (SELECT 1 FROM segments s
                WHERE s.owner_pk = p_owner_pk OR s.nonce = p_nonce OR s.root = p_root) THEN
        RETURN QUERY SELECT 2, 'reused', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 8. Funds (the product in numeric: no bigint overflow).
    v_amount := p_n::numeric * p_unit_value;
    IF v_amount IS NULL OR v_amount < 1 OR v_amount > 9223372036854775807 THEN
        RETURN QUERY SELECT 2, 'n * unit_value out of range', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF v_acc.balance < v_amount THEN
        RETURN QUERY SELECT 14, 'balance ' || v_acc.balance || ' < ' || v_amount,
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- brokerd derives channel_id = SHA256("MPAY1-CID" || account_id || issue_req_id)[0..16].
    IF p_channel_id IS DISTINCT FROM substring(sha256(convert_to('MPAY1-CID', 'UTF8')
                                   || p_account_id || p_issue_req_id) FROM 1 FOR 16) THEN
        RETURN QUERY SELECT 20, 'channel_id mismatch', NULL::bytea, NULL::bytea;
        RETURN;
    END IF;

    -- 9. Store and move the escrow.
    BEGIN
        INSERT INTO accounts (id, kind, currency) VALUES (p_escrow_account, 'escrow', p_currency);
        INSERT INTO channels (channel_id, account_id, issue_req_id, req_hash, request, cert,
                              escrow_account, n, unit_value, currency, holder0, issued_at,
                              pay_until, redeem_until, finalize_at)
        VALUES (p_channel_id, p_account_id, p_issue_req_id, p_req_hash, p_request, p_cert,
                p_escrow_account, p_n, p_unit_value, p_currency, p_holder0, p_issued_at,
                p_pay_until, p_redeem_until, p_redeem_until + p_t_grace);
        INSERT INTO segments (channel_id, seg_seq, seg_start, len, nonce, root, owner_pk)
        VALUES (p_channel_id, 0, 0, p_n, p_nonce, p_root, p_owner_pk);
        INSERT INTO chain_points (channel_id, seg_seq, idx, w)
        VALUES (p_channel_id, 0, 0, p_root);
        IF p_holder0 IS NOT NULL THEN  -- an unbound channel gets epoch 0 from mp_bind
            INSERT INTO epochs (channel_id, hseq, merchant_id, start_index, end_index,
                                credited_end)
            VALUES (p_channel_id, 0, p_holder0, 0, NULL, 0);
        END IF;
        INSERT INTO transfers (kind, ref) VALUES ('issue', p_channel_id) RETURNING txn_id INTO v_txn;
        PERFORM mp_post(v_txn, p_account_id, p_escrow_account, v_amount::bigint);
    EXCEPTION WHEN unique_violation THEN
        -- A concurrent issue took the same owner key, nonce or root first.
        GET STACKED DIAGNOSTICS v_con = CONSTRAINT_NAME;
        IF v_con IN ('segments_nonce_key', 'segments_root_key', 'segments_owner_pk_key') THEN
            RETURN QUERY SELECT 2, 'reused', NULL::bytea, NULL::bytea;
            RETURN;
        END IF;
        RAISE;
    END;
    RETURN QUERY SELECT 0, '', p_cert, NULL::bytea;
END
$$;
