-- brokerd migration 0012: a channel issued without holder0 and not bound yet is transferred
-- through the broker (docs/transfer.md "Unbound channels"; protocol.md section 6).
--
-- Wallet A sends its Transfer to brokerd; brokerd verifies it under the owner key of the
-- channel's current segment (from its own records, mp_unbound_transfer_lookup), signs
-- Cap{channel_id, s, transfer_hash, hseq 0, (s-1, 0, root of segment s-1)} and records the
-- pair with mp_unbound_transfer, which takes the channel row lock mp_bind takes: a Bind and a
-- broker Cap of one channel are serialised, and whichever commits first decides (a bound
-- channel's Transfer goes to its holder: NOT_HOLDER with the Bind). The pair is recorded by
-- 0010's mp_segment_record, exactly as a CapNotice would record it, then marked by_broker.
-- A transfer moves no money.

ALTER TABLE segment_transfers ADD COLUMN by_broker boolean NOT NULL DEFAULT false;

-- One row per segment of the channel, in seg_seq order, with the channel's columns repeated:
-- cert_holder0 (the cert names holder0), bind (the stored Bind, NULL while unbound), cert,
-- n; per segment its start, owner key, root and, for s >= 1, the recorded Transfer and Cap.
CREATE FUNCTION mp_unbound_transfer_lookup(p_channel_id bytea)
RETURNS TABLE (cert_holder0 boolean, bind bytea, cert bytea, n int, seg_seq int,
               seg_start int, owner_pk bytea, root bytea, transfer bytea, cap bytea)
LANGUAGE sql STABLE AS $$
    SELECT c.holder0 IS NOT NULL AND b.channel_id IS NULL, b.stmt, c.cert, c.n, s.seg_seq,
           s.seg_start, s.owner_pk, s.root, t.transfer, t.cap
      FROM channels c
      JOIN segments s ON s.channel_id = c.channel_id
      LEFT JOIN segment_transfers t ON t.channel_id = s.channel_id AND t.seg_seq = s.seg_seq
      LEFT JOIN binds b ON b.channel_id = c.channel_id
     WHERE c.channel_id = p_channel_id
     ORDER BY s.seg_seq
$$;

-- Record the broker's Cap p_cap (hash p_c_hash) for Transfer p_transfer (hash p_t_hash), which
-- brokerd verified under p_prev_owner, the owner key of segment p_seg - 1 when it looked.
-- Status (protobuf StatusCode numbers): 0 recorded (cap = p_cap); 1 the same Transfer was
-- capped before (cap = the stored Cap); 16 another Transfer was capped for p_seg (transfer,
-- cap = the stored pair); 5 NOT_HOLDER: bound (bind = the stored Bind) or the cert names
-- holder0; 17 unknown channel; 2 MALFORMED (segment p_seg - 1 is not the current one or has
-- another owner now; reused owner key, nonce or root); 11 EXPIRED (channel not OPEN, database
-- clock at or past pay_until - p_delta_xfer or p_valid_until); 19 LIMIT (more than 15).
CREATE FUNCTION mp_unbound_transfer(p_channel_id bytea, p_seg int, p_prev_owner bytea,
                                    p_transfer bytea, p_t_hash bytea, p_cap bytea,
                                    p_c_hash bytea, p_len int, p_nonce bytea, p_root bytea,
                                    p_owner bytea, p_declared int, p_w_cap bytea,
                                    p_valid_until bigint, p_delta_xfer bigint)
RETURNS TABLE (status int, detail text, transfer bytea, cap bytea, bind bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ch  channels%ROWTYPE;
    v_b   binds%ROWTYPE;
    v_t   segment_transfers%ROWTYPE;
    v_cur segments%ROWTYPE;
    v_rec record;
    v_now numeric := extract(epoch FROM now());
BEGIN
    -- Compare-and-set on the row mp_bind locks.
    SELECT * INTO v_ch FROM channels c WHERE c.channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 17, 'unknown channel'::text, NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_t FROM segment_transfers t
     WHERE t.channel_id = p_channel_id AND t.seg_seq = p_seg;
    IF FOUND THEN
        IF v_t.transfer_hash = p_t_hash THEN
            RETURN QUERY SELECT 1, 'the stored Cap'::text, v_t.transfer, v_t.cap, NULL::bytea;
        ELSE
            RETURN QUERY SELECT 16, ('segment ' || p_seg || ' already capped')::text,
                                v_t.transfer, v_t.cap, NULL::bytea;
        END IF;
        RETURN;
    END IF;
    SELECT * INTO v_b FROM binds b WHERE b.channel_id = p_channel_id;
    IF FOUND THEN
        RETURN QUERY SELECT 5, ('bound to merchant ' || encode(v_b.merchant_id, 'hex')
                                || ': ask the holder')::text, NULL::bytea, NULL::bytea, v_b.stmt;
        RETURN;
    END IF;
    IF v_ch.holder0 IS NOT NULL THEN
        RETURN QUERY SELECT 5, ('the cert names holder0 ' || encode(v_ch.holder0, 'hex'))::text,
                            NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO v_cur FROM segments s WHERE s.channel_id = p_channel_id
     ORDER BY s.seg_seq DESC LIMIT 1;
    IF v_cur.seg_seq <> p_seg - 1 OR v_cur.owner_pk <> p_prev_owner OR v_cur.seg_start <> 0 THEN
        RETURN QUERY SELECT 2, 'new_seg_seq is not the current segment + 1'::text,
                            NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF p_seg > 15 THEN
        RETURN QUERY SELECT 19, 'at most 15 transfers per channel'::text, NULL::bytea,
                            NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    IF v_ch.state <> 'OPEN' OR p_delta_xfer IS NULL OR p_valid_until IS NULL
       OR v_now >= v_ch.pay_until - p_delta_xfer OR v_now >= p_valid_until THEN
        RETURN QUERY SELECT 11, 'past pay_until - δ_xfer or the Transfer''s valid_until'::text,
                            NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    -- Holder of the Cap's epoch: none (all zero, as common/custody.h's by_broker cap).
    SELECT * INTO v_rec FROM mp_segment_record(
        p_channel_id, 'redeem', p_seg, ARRAY[p_seg], ARRAY[0], ARRAY[p_len], ARRAY[p_nonce],
        ARRAY[p_root], ARRAY[p_owner], ARRAY[p_transfer], ARRAY[p_t_hash], ARRAY[p_cap],
        ARRAY[p_c_hash], ARRAY[0], ARRAY[p_w_cap], ARRAY['\x00000000000000000000000000000000'::bytea],
        ARRAY[p_declared], NULL, NULL, NULL);
    IF v_rec.status <> 0 THEN
        RETURN QUERY SELECT v_rec.status, v_rec.detail, NULL::bytea, NULL::bytea, NULL::bytea;
        RETURN;
    END IF;
    UPDATE segment_transfers t SET by_broker = true
     WHERE t.channel_id = p_channel_id AND t.seg_seq = p_seg;
    RETURN QUERY SELECT 0, ''::text, p_transfer, p_cap, NULL::bytea;
END
$$;
