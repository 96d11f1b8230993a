-- brokerd migration 0002: customers, merchants, fundings, channels, segments, verified chain
-- points, custody epochs and redemptions (protocol.md sections 4-6).
--
-- Room for later issues: channels.holder0 is nullable (Bind, issue B); segments are keyed by
-- (channel_id, seg_seq) for customer transfers (issue B); epochs are keyed by (channel_id, hseq)
-- with a nullable end_index for Handoff/Close/ForcedClose (issues B, C, G); channels.state
-- already allows CLOSED_EARLY and FINALIZED (issue C). The ledger table `transfers` holds money
-- transfers; statement tables of later issues should use other names (e.g. binds, handoffs,
-- segment_transfers, caps, closes, segment_claims, refunds, disputes, forced_closes).

CREATE TABLE customers (
    -- Deferred: mp_register_account inserts this row first (the race-safe step on the key)
    -- and the account row second.
    account_id    bytea PRIMARY KEY CHECK (length(account_id) = 16)
                  REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED,
    account_pk    bytea NOT NULL UNIQUE CHECK (length(account_pk) = 32),
    register_stmt bytea,  -- the exact signed RegisterAccount bytes
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchants (
    merchant_id       bytea  PRIMARY KEY CHECK (length(merchant_id) = 16),
    available_account bytea  NOT NULL UNIQUE REFERENCES accounts (id),
    pending_account   bytea  NOT NULL UNIQUE REFERENCES accounts (id),
    bond              bigint NOT NULL DEFAULT 0 CHECK (bond >= 0),
    currency          text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Set by RegisterMerchant (all together):
    merchant_pk       bytea  UNIQUE CHECK (length(merchant_pk) = 32),
    endpoint          text,
    register_hash     bytea  CHECK (length(register_hash) = 32),
    cert              bytea,   -- serialised signed MerchantCert
    cert_valid_until  bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT merchants_registered_together CHECK (
        (merchant_pk IS NULL) = (register_hash IS NULL) AND
        (merchant_pk IS NULL) = (cert IS NULL) AND
        (merchant_pk IS NULL) = (cert_valid_until IS NULL)),
    CONSTRAINT merchants_accounts_distinct CHECK (available_account <> pending_account)
);

CREATE TABLE fundings (
    fund_id     bytea  PRIMARY KEY CHECK (length(fund_id) = 16),
    account_id  bytea  NOT NULL REFERENCES accounts (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    -- Deferred: mp_fund claims the fund_id before it creates the transfer.
    txn_id      bigint NOT NULL REFERENCES transfers (txn_id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
    channel_id     bytea  PRIMARY KEY CHECK (length(channel_id) = 16),
    account_id     bytea  NOT NULL REFERENCES customers (account_id),
    issue_req_id   bytea  NOT NULL CHECK (length(issue_req_id) = 16),
    req_hash       bytea  NOT NULL CHECK (length(req_hash) = 32),
    request        bytea  NOT NULL,  -- the exact signed IssueRequest bytes
    cert           bytea  NOT NULL,  -- the exact signed ChannelCert bytes
    escrow_account bytea  NOT NULL UNIQUE REFERENCES accounts (id),
    n              int    NOT NULL CHECK (n >= 1),
    unit_value     bigint NOT NULL CHECK (unit_value >= 1),
    currency       text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    holder0        bytea  REFERENCES merchants (merchant_id),  -- NULL until Bind (issue B)
    issued_at      bigint NOT NULL,
    pay_until      bigint NOT NULL,
    redeem_until   bigint NOT NULL,
    finalize_at    bigint NOT NULL,  -- redeem_until + T_grace at issue (database clock)
    state          text   NOT NULL DEFAULT 'OPEN'
                   CHECK (state IN ('OPEN', 'EXPIRED', 'CLOSED_EARLY', 'FINALIZED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT channels_issue_req_uq UNIQUE (account_id, issue_req_id),
    CONSTRAINT channels_times CHECK (pay_until > issued_at AND redeem_until >= pay_until
                                     AND finalize_at >= redeem_until)
);
CREATE INDEX channels_holder0_idx ON channels (holder0);

-- Segment 0 comes from the cert (seg_start 0, len n); later segments from customer transfers.
-- An owner key, nonce or root is never accepted twice, by any channel or segment.
CREATE TABLE segments (
    channel_id  bytea NOT NULL REFERENCES channels (channel_id),
    seg_seq     int   NOT NULL CHECK (seg_seq >= 0),
    seg_start   int   NOT NULL CHECK (seg_start >= 0),
    len         int   NOT NULL CHECK (len >= 1),
    nonce       bytea NOT NULL CHECK (length(nonce) = 16),
    root        bytea NOT NULL CHECK (length(root) = 32),
    owner_pk    bytea NOT NULL CHECK (length(owner_pk) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seg_seq),
    CONSTRAINT segments_nonce_key UNIQUE (nonce),
    CONSTRAINT segments_root_key UNIQUE (root),
    CONSTRAINT segments_owner_pk_key UNIQUE (owner_pk)
);

-- Points (absolute index) the broker has verified; the base point (seg_start, root) is
-- inserted with the segment. A new point is verified against the nearest one.
CREATE TABLE chain_points (
    channel_id  bytea NOT NULL,
    seg_seq     int   NOT NULL,
    idx         int   NOT NULL CHECK (idx >= 0),
    w           bytea NOT NULL CHECK (length(w) = 32),
    PRIMARY KEY (channel_id, seg_seq, idx),
    FOREIGN KEY (channel_id, seg_seq) REFERENCES segments (channel_id, seg_seq)
);

-- Custody epochs: epoch h is held by the merchant named by custody event h. Range
-- (start_index, end_index]; end_index NULL = open until finalisation.
CREATE TABLE epochs (
    channel_id      bytea  NOT NULL REFERENCES channels (channel_id),
    hseq            int    NOT NULL CHECK (hseq >= 0),
    merchant_id     bytea  NOT NULL REFERENCES merchants (merchant_id),
    start_index     int    NOT NULL CHECK (start_index >= 0),
    end_index       int    CHECK (end_index >= start_index),
    credited_end    int    NOT NULL CHECK (credited_end >= start_index),
    credited_amount bigint NOT NULL DEFAULT 0 CHECK (credited_amount >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, hseq)
);
CREATE INDEX epochs_merchant_idx ON epochs (merchant_id);

-- Redeem statements by (merchant, redeem_id) and their stored per-claim results, replayed
-- verbatim on retry.
CREATE TABLE redeems (
    merchant_id bytea NOT NULL REFERENCES merchants (merchant_id),
    redeem_id   bytea NOT NULL CHECK (length(redeem_id) = 16),
    stmt_hash   bytea NOT NULL CHECK (length(stmt_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, redeem_id)
);

CREATE TABLE redeem_results (
    merchant_id     bytea  NOT NULL,
    redeem_id       bytea  NOT NULL,
    pos             int    NOT NULL CHECK (pos >= 1),
    status          int    NOT NULL,
    credited_end    int    NOT NULL,
    credited_amount bigint NOT NULL DEFAULT 0 CHECK (credited_amount >= 0),
    detail          text   NOT NULL DEFAULT '',
    -- The claim as sent (no foreign key: an unknown channel is recorded too) and the ledger
    -- transfer of a credit, for the audit.
    channel_id      bytea,
    hseq            int,
    seg_seq         int,
    idx             int,
    txn_id          bigint REFERENCES transfers (txn_id),
    PRIMARY KEY (merchant_id, redeem_id, pos),
    FOREIGN KEY (merchant_id, redeem_id) REFERENCES redeems (merchant_id, redeem_id)
);
CREATE INDEX redeem_results_epoch_idx ON redeem_results (channel_id, hseq)
    WHERE txn_id IS NOT NULL;
