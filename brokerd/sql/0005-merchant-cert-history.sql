-- brokerd migration 0005: MerchantCert renewal, with every cert kept (docs/operations.md,
-- "MerchantCert renewal").
--
-- merchants.cert and merchants.cert_valid_until stay the current (latest) cert: the holder0
-- check of mp_issue reads them. merchant_certs keeps every cert ever issued to a merchant, so
-- that a cert backing a channel (valid until the channel's redeem_until + T_grace) is never
-- lost when a newer one replaces it as current; custody checks of later issues (a Handoff is
-- signed by the merchant_pk of "a MerchantCert of that merchant valid until at least the
-- channel's redeem_until + T_grace", protocol.md section 4) look a key up here.
--
-- The rule: a RegisterMerchant identical to the stored one (same register_hash) gets the stored
-- cert (DUPLICATE_OK) while it has at least a third of its life left, and a fresh cert (same
-- key and endpoint, valid_until = now + lifetime, database clock) once it has less (OK). A
-- different RegisterMerchant for a registered merchant_id is CONFLICT with the stored cert.

CREATE TABLE merchant_certs (
    merchant_id  bytea       NOT NULL REFERENCES merchants (merchant_id),
    valid_until  bigint      NOT NULL,
    issued_at    bigint      NOT NULL,  -- database clock when brokerd signed it
    merchant_pk  bytea       NOT NULL CHECK (length(merchant_pk) = 32),
    cert         bytea       NOT NULL,  -- the exact signed MerchantCert bytes
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, valid_until),
    CONSTRAINT merchant_certs_life CHECK (issued_at < valid_until)
);

-- Certs signed before this migration lived 90 days from their issue.
INSERT INTO merchant_certs (merchant_id, valid_until, issued_at, merchant_pk, cert)
SELECT m.merchant_id, m.cert_valid_until, m.cert_valid_until - 90 * 86400, m.merchant_pk, m.cert
  FROM merchants m
 WHERE m.cert IS NOT NULL;

-- A cert is due for renewal once less than a third of its life (issued_at .. valid_until) is
-- left, in the database clock.
CREATE FUNCTION mp_merchant_cert_renewal_due(p_valid_until bigint, p_issued_at bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (p_valid_until - extract(epoch FROM now())) * 3 < p_valid_until - p_issued_at
$$;

-- Exactly one row; found = false (and NULLs) for an unknown merchant. db_now is the database
-- clock (whole seconds) brokerd signs a new cert's valid_until from.
DROP FUNCTION mp_merchant_lookup(bytea);
CREATE FUNCTION mp_merchant_lookup(p_merchant_id bytea)
RETURNS TABLE (found boolean, bond bigint, merchant_pk bytea, register_hash bytea, cert bytea,
               cert_valid_until bigint, cert_issued_at bigint, renewal_due boolean,
               db_now bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT true, m.bond, m.merchant_pk, m.register_hash, m.cert, m.cert_valid_until,
           mc.issued_at,
           coalesce(mp_merchant_cert_renewal_due(m.cert_valid_until, mc.issued_at), false),
           floor(extract(epoch FROM now()))::bigint
      FROM merchants m
      LEFT JOIN merchant_certs mc
             ON mc.merchant_id = m.merchant_id AND mc.valid_until = m.cert_valid_until
     WHERE m.merchant_id = p_merchant_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::bytea, NULL::bytea, NULL::bytea,
                            NULL::bigint, NULL::bigint, false,
                            floor(extract(epoch FROM now()))::bigint;
    END IF;
END
$$;

-- RegisterMerchant: brokerd looked the merchant up (mp_merchant_lookup), signed a MerchantCert
-- with the bond it read and valid_until = p_issued_at (the lookup's db_now) + lifetime, and
-- stores it here, deciding again under the merchant's row lock:
--   unknown merchant                                  18, NULL
--   registered, another register_hash                 16 (CONFLICT), the stored cert
--   registered, same request, not due (or not newer)  1 (DUPLICATE_OK), the stored cert
--   bond changed since the lookup                     20, NULL (brokerd: INTERNAL, retry)
--   registered, same request, due                     0, p_cert (renewed; history kept)
--   merchant_pk registered by another merchant        16 (CONFLICT), that merchant's cert
--   else                                              0, p_cert (registered)
DROP FUNCTION mp_register_merchant(bytea, bytea, text, bytea, bigint, bytea, bigint);
CREATE FUNCTION mp_register_merchant(p_merchant_id bytea, p_merchant_pk bytea, p_endpoint text,
                                     p_register_hash bytea, p_bond bigint, p_cert bytea,
                                     p_valid_until bigint, p_issued_at bigint)
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
        IF NOT coalesce(mp_merchant_cert_renewal_due(m.cert_valid_until, v_issued), false)
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
