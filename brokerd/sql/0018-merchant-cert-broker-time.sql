-- brokerd migration 0018: MerchantCert renewal on the broker's protocol time (issue 7: "pass
-- the effective time into the SQL functions rather than calling now() inside them";
-- docs/operations.md "MerchantCert renewal", docs/settlement.md "Time").
--
-- Until now the renewal rule (0005, 0007) compared a cert's valid_until with the database's
-- now(), and brokerd signed a renewed cert's valid_until from the lookup's db_now: under
-- --test-clock the broker's time (and every channel deadline) moved on while its certs did not
-- age. brokerd now passes p_now, its protocol time, and issues the cert from it. The versions
-- that read now() are dropped, so nothing in the renewal path reads the database clock.

CREATE FUNCTION mp_merchant_cert_renewal_due(p_valid_until bigint, p_issued_at bigint,
                                             p_channel_need bigint, p_now bigint)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_valid_until - p_now
           < greatest((p_valid_until - p_issued_at) / 3,
                      least(p_channel_need, (p_valid_until - p_issued_at) / 2))
$$;

-- The lookup for RegisterMerchant: as mp_merchant_lookup(bytea, bigint) of 0007, renewal due
-- at p_now; broker_now echoes p_now (the issue time of a new cert).
DROP FUNCTION mp_merchant_lookup(bytea, bigint);
CREATE FUNCTION mp_merchant_lookup(p_merchant_id bytea, p_channel_need bigint, p_now bigint)
RETURNS TABLE (found boolean, bond bigint, merchant_pk bytea, register_hash bytea, cert bytea,
               cert_valid_until bigint, cert_issued_at bigint, renewal_due boolean,
               broker_now bigint)
LANGUAGE sql STABLE AS $$
    SELECT l.found, l.bond, l.merchant_pk, l.register_hash, l.cert, l.cert_valid_until,
           l.cert_issued_at,
           l.found AND coalesce(mp_merchant_cert_renewal_due(l.cert_valid_until,
                                                             l.cert_issued_at,
                                                             p_channel_need, p_now), false),
           p_now
      FROM mp_merchant_lookup(p_merchant_id) l
$$;

-- RegisterMerchant as in 0007, deciding renewal at p_now.
DROP FUNCTION mp_register_merchant(bytea, bytea, text, bytea, bigint, bytea, bigint, bigint,
                                   bigint);
DROP FUNCTION mp_merchant_cert_renewal_due(bigint, bigint, bigint);
CREATE FUNCTION mp_register_merchant(p_merchant_id bytea, p_merchant_pk bytea, p_endpoint text,
                                     p_register_hash bytea, p_bond bigint, p_cert bytea,
                                     p_valid_until bigint, p_issued_at bigint,
                                     p_channel_need bigint, p_now bigint)
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
        IF NOT coalesce(mp_merchant_cert_renewal_due(m.cert_valid_until, v_issued, p_channel_need,
                                                    p_now), false)
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
