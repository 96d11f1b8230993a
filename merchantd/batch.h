/* Group commit of everything the pay path must make durable before it answers: accepted Pays,
 * the record of a newly held channel (before its OpenAck) and newly priced orders (before
 * order.create answers). Entries wait in the filling batch; one SQLite transaction on the store
 * thread makes a batch durable; only then does the loop advance the durable view (channel
 * durable_*, order paid_durable) and answer the batch's entries. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "merchant.h"

struct mp_admin_req;

enum entry_kind {
	ENTRY_PAY,     /* a fresh payment: journalled, channel row updated, order marked paid */
	ENTRY_RETRY,   /* an identical retry of a Pay still pending: answered with the batch */
	ENTRY_OPEN,    /* an Open answered once the channel's record is durable (inserted if new) */
	ENTRY_ORDER,   /* order.create: the order is recorded, then the admin call answered */
	ENTRY_HANDOFF, /* a Handoff we signed: custody row, our epoch closed, channel HANDED_OFF;
			* the HandoffResp is sent after the commit (handoff.c) */
	ENTRY_TAKEOVER, /* a verified chain naming us: custody rows, signers' MerchantCerts, the
			 * channel row in the new epoch; the OpenAck after the commit (takeover.c)
			 */
	ENTRY_CAP,   /* a Cap we signed: the Transfer/Cap pair, the channel row in the new segment,
		      * a Cap outbox row; the TransferResp after the commit (transfer.c) */
	ENTRY_CLOSE, /* a Close we signed: the Close, our epoch's end, the channel CLOSED; the
		      * CloseResp after the commit (close.c) */
	ENTRY_PURCHASE,	    /* a new purchase's row (purchase.h); its chunk 0 is read and sent after
			     * the commit (chunk.c) */
	ENTRY_OFFER,	    /* a new offer's row with its key (offer.h); the Offer is sent after the
			     * commit (offer.c) */
	ENTRY_OFFER_CANCEL, /* the buyer's OfferCancel into its offer's row (offer_cancel.c) */
};

struct segment_row;
struct gw_call;
struct purchase;
struct offer;

/* One stored statement of a custody chain (a Handoff), or a MerchantCert (mid = its merchant). */
struct custody_blob {
	uint32_t hseq;
	uint8_t mid[MP_ID_LEN];
	uint8_t *data;
	size_t len;
};

/* What a HANDOFF or TAKEOVER entry writes; heap, owned by the entry, freed once answered. */
struct custody_write {
	/* HANDOFF: our signed Handoff (hseq = the epoch we close + 1) and the closed epoch's end.
	 * CLOSE: the same with our signed Close in handoff (hseq = the epoch it ends). */
	struct custody_blob handoff;
	uint32_t closed_hseq, end_seg, end_index, redeemed_end;
	uint8_t w_end[MP_HASH_LEN];
	/* TAKEOVER: the chain (Handoffs 1..h), the signers' certs, the new epoch's start.
	 * HANDOFF: certs holds the requester's MerchantCert when it sent one (kept to pass on in
	 * HANDED_OFF answers). */
	struct custody_blob *chain, *certs;
	size_t n_chain, n_certs;
	struct segment_row *segs; /* the Transfer/Cap pairs 1..n_segs (the last is current) */
	size_t n_segs;
	bool insert; /* the channel is new here (row written from the entry's row) */
	uint32_t hseq, at_index;
	uint8_t w_at[MP_HASH_LEN];
};
void custody_write_free(struct custody_write *cw);

/* The channel record written when a channel is first held. cert points at the channel's own
 * cert bytes, which never change while the daemon runs. */
struct channel_row {
	uint8_t id[MP_ID_LEN];
	const uint8_t *cert;
	size_t cert_len;
	const uint8_t *bind; /* the channel's Bind (unbound cert), stored with the row; or NULL */
	size_t bind_len;
	enum channel_state state;
	uint32_t hseq, seg_seq, seg_start;
	uint8_t w_last[MP_HASH_LEN];
	uint64_t redeem_until;
};

/* Self-contained for the store thread: it reads channel_id and the values, never ch or order,
 * which belong to the loop. */
struct batch_entry {
	enum entry_kind kind;
	uint8_t channel_id[MP_ID_LEN];
	struct channel *ch;  /* loop only */
	struct order *order; /* loop only: the order this Pay paid, or the order created */
	uint32_t seg_seq, j;
	uint8_t w[MP_HASH_LEN];
	uint8_t order_ref[MP_ORDER_REF_MAX];
	uint8_t order_ref_len;
	MpCode code;	 /* PAY: OK or UNDERPAID; RETRY: the pending Pay's answer */
	uint64_t credit; /* channel credit after this payment */
	uint64_t price;	 /* the order's price when this Pay paid it (ORDER: its price), else 0 */
	int64_t journal_seq; /* PAY: its journal row, set by the store thread */
	uint64_t journal_at; /* PAY: the protocol time stamped on that row, set with it */
	bool insert;	     /* OPEN: the channel is new; row is written */
	struct channel_row row;
	struct mp_conn *conn; /* PAY, RETRY, OPEN: where the answer goes (referenced) */
	uint64_t request_id;
	uint64_t read_us;	  /* PAY, RETRY: mp_metrics_now_us() when the Pay was taken from its
				   * frame, for the pay latency histogram */
	struct mp_admin_req *req; /* ORDER */
	struct gw_call *http;	  /* PAY: a paid HTTP request (gateway.h), answered once durable */
	struct custody_write *custody; /* HANDOFF, TAKEOVER, OPEN: its pairs (segs; owned) */
	struct segment_row *seg;       /* CAP: the pair we signed (owned) */
	struct purchase *purchase_row; /* PURCHASE: a copy of the new purchase (owned) */
	bool pays_purchase;	       /* PAY: it paid chunks of the channel's purchase ... */
	uint8_t purchase_id[16];       /* ... this one ... */
	uint32_t purchase_paid;	       /* ... which has this many chunks paid after it */
	struct offer *offer_row;       /* OFFER: a copy of the new offer; OFFER_CANCEL: a copy of
					* the offer with its cancel (owned) */
	bool pays_offer;	       /* PAY: it paid the channel's offer ... */
	uint8_t offer_ref[16];	       /* ... this one ... */
	bool offer_by_dispute;	       /* ... with a Dispute's word (pay_from_dispute) */
};

/* True if the filling batch can take one more entry. When it is full the previous batch is
 * still committing: the caller refuses (LIMIT) instead of queueing without bound. */
bool batch_has_room(const struct merchant *m);
/* Queue an entry (takes a reference on e->conn). The caller checked batch_has_room. */
void batch_add(struct merchant *m, const struct batch_entry *e);
/* The pending fresh Pay of channel ch in segment seg_seq at index j, in the committing or the
 * filling batch. */
const struct batch_entry *batch_find(const struct merchant *m, const struct channel *ch,
				     uint32_t seg_seq, uint32_t j);
/* Commit everything queued, wait for it and answer it: at shutdown, outside the loop. */
void batch_drain(struct merchant *m);
/* Nothing filling, nothing committing. */
bool batch_is_idle(const struct merchant *m);

/* Answers sent once an entry is durable (open.c, admin.c). */
void open_acknowledge(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		      const struct channel *ch);
void order_acknowledge(struct merchant *m, struct mp_admin_req *req, const struct order *o);
void handoff_acknowledge(struct merchant *m, struct batch_entry *e);
void takeover_acknowledge(struct merchant *m, struct batch_entry *e);
void transfer_acknowledge(struct merchant *m, struct batch_entry *e);
void purchase_acknowledge(struct merchant *m, struct batch_entry *e);
void offer_acknowledge(struct merchant *m, struct batch_entry *e);
void offer_cancel_acknowledge(struct merchant *m, struct batch_entry *e);
void close_acknowledge(struct merchant *m, struct batch_entry *e);
/* Whether a CLOSED channel's stored Close is the broker's ForcedClose (release_poll.c). */
bool channel_closed_by_broker(const struct channel *ch);
