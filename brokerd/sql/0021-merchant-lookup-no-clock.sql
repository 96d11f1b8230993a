-- brokerd migration 0021: mp_merchant_lookup(bytea) without the database clock.
--
-- brokerd calls the one-argument lookup for a Redeem (the merchant's key) and, through the
-- three-argument lookup of 0018, for RegisterMerchant; neither reads its renewal_due or db_now
-- columns, which 0005 computed from now(). They are dropped here, and with them the
-- two-argument mp_merchant_cert_renewal_due of 0005 that only they used: no function in the
-- merchant lookup path reads now() (renewal is decided at the broker's time p_now, 0018).
-- Behaviour unchanged.

DROP FUNCTION mp_merchant_lookup(bytea);
CREATE FUNCTION mp_merchant_lookup(p_merchant_id bytea)
RETURNS TABLE (found boolean, bond bigint, merchant_pk bytea, register_hash bytea, cert bytea,
               cert_valid_until bigint, cert_issued_at bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT true, m.bond, m.merchant_pk, m.register_hash, m.cert, m.cert_valid_until,
           mc.issued_at
      FROM merchants m
      LEFT JOIN merchant_certs mc
             ON mc.merchant_id = m.merchant_id AND mc.valid_until = m.cert_valid_until
     WHERE m.merchant_id = p_merchant_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::bytea, NULL::bytea, NULL::bytea,
                            NULL::bigint, NULL::bigint;
    END IF;
END
$$;

DROP FUNCTION mp_merchant_cert_renewal_due(bigint, bigint);
