-- brokerd migration 0007: MerchantCert renewal early enough for the longest channel
-- (docs/operations.md, "MerchantCert renewal"; the same rule as common/cert_renewal.c).
--
-- With renewal at a third of the life left, a 90-day cert could not back a 30-day channel
-- (30 d + redeem window 48 h + T_grace) in the last days before renewal. A cert is now due once
-- less than greatest(life / 3, least(p_channel_need, life / 2)) is left, p_channel_need being
-- what brokerd computes from its T_grace (the longest channel's need plus a day of margin).

CREATE FUNCTION mp_merchant_cert_renewal_due(p_valid_until bigint, p_issued_at bigint,
                                             p_channel_need bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_valid_until - extract(epoch FROM now())
           < greatest((p_valid_until - p_issued_at) / 3,
                      least(p_channel_need, (p_valid_until - p_issued_at) / 2))
$$;

-- The lookup with the channel need; the one-argument form (used where renewal does not matter)
-- answers with a need of 0, i.e. the third alone.
CREATE FUNCTION mp_merchant_lookup(p_merchant_id bytea, p_channel_need bigint)
RETURNS TABLE (found boolean, bond bigint, merchant_pk bytea, register_hash bytea, cert bytea,
               cert_valid_until bigint, cert_issued_at bigint, renewal_due boolean,
               db_now bigint)
LANGUAGE sql STABLE AS $$
    SELECT l.found, l.bond, l.merchant_pk, l.register_hash, l.cert, l.cert_valid_until,
           l.cert_issued_at,
           l.found AND coalesce(mp_merchant_cert_renewal_due(l.cert_valid_until,
                                                             l.cert_issued_at,
                                                             p_channel_need), false),
           l.db_now
      FROM mp_merchant_lookup(p_merchant_id) l
$$;

-- RegisterMerchant as in 0005, deciding renewal with the channel need.
DROP FUNCTION mp_register_merchant(bytea, bytea, text, bytea, bigint, bytea, bigint, bigint);
CREATE FUNCTION mp_register_merchant(p_merchant_id bytea, p_merchant_pk bytea, p_endpoint text,
                                     p_register_hash bytea, p_bond bigint, p_cert bytea,
                                     p_valid_until bigint, p_issued_at bigint,
                                     p_channel_need bigint)
RETURNS TABLE (status int, cert bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m        merchants%ROWTYPE;
    v_issued bigint;
    v_other  bytea;
BEGIN
    SELECT * INTO m FROM merchants WHERE merchant_id = p_merchant_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 18, NULL::bytea;                 -- UNKNOWN_ACCOUNT
        RETURN;
    END IF;
    IF m.register_hash IS NOT NULL THEN
        IF m.register_hash <> p_register_hash THEN
            RETURN QUERY SELECT 16, m.cert;                  -- CONFLICT
            RETURN;
        END IF;
        SELECT mc.issued_at INTO v_issued FROM merchant_certs mc
         WHERE mc.merchant_id = p_merchant_id AND mc.valid_until = m.cert_valid_until;
        IF NOT coalesce(mp_merchant_cert_renewal_due(m.cert_valid_until, v_issued, p_channel_need), false)
           OR p_valid_until <= m.cert_valid_until THEN
            RETURN QUERY SELECT 1, m.cert;                   -- DUPLICATE_OK
            RETURN;
        END IF;
    END IF;
    IF m.bond IS DISTINCT FROM p_bond THEN
        RETURN QUERY SELECT 20, NULL::bytea;                 -- INTERNAL: bond changed, retry
        RETURN;
    END IF;
    IF m.register_hash IS NULL THEN
        SELECT o.cert INTO v_other FROM merchants o
         WHERE o.merchant_pk = p_merchant_pk AND o.merchant_id <> p_merchant_id;
        IF FOUND THEN
            RETURN QUERY SELECT 16, v_other;                 -- CONFLICT: key of another merchant
            RETURN;
        END IF;
    END IF;
    BEGIN
        UPDATE merchants
           SET merchant_pk = p_merchant_pk, endpoint = p_endpoint,
               register_hash = p_register_hash, cert = p_cert, cert_valid_until = p_valid_until
         WHERE merchant_id = p_merchant_id;
    EXCEPTION WHEN unique_violation THEN
        -- Another merchant registered this key concurrently (and committed).
        SELECT o.cert INTO v_other FROM merchants o
         WHERE o.merchant_pk = p_merchant_pk AND o.merchant_id <> p_merchant_id;
        RETURN QUERY SELECT 16, v_other;
        RETURN;
    END;
    INSERT INTO merchant_certs (merchant_id, valid_until, issued_at, merchant_pk, cert)
    VALUES (p_merchant_id, p_valid_until, p_issued_at, p_merchant_pk, p_cert);
    RETURN QUERY SELECT 0, p_cert;
END
$$;
