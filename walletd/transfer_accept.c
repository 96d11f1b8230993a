/* transfer.accept (docs/transfer.md, "B: transfer.accept"): B takes the channel A gave it.
 *
 *   OFFERED --bundle: cert under the broker key, our offer in its last Transfer (loop)
 *     --> VERIFYING (worker: mp_custody_verify_all, w_cap may cost up to n hashes)
 *     --> channel ACTIVE in segment s, SegmentClaimReq stored (one transaction)
 *     --> CLAIMING (broker) --OK / DUPLICATE_OK--> acknowledged
 *   accepted --transfer.accept with the same bundle--> the same channel; the claim is sent again
 *     until the broker acknowledged it
 *
 * The signers' keys come from the bundle's MerchantCerts, each verified under the broker key
 * and valid until redeem_until + T_grace; the expected signer of every statement is derived by
 * mp_custody_verify_all, never taken from the statement. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "b64.h"
#include "cert_renewal.h"
#include "certcheck.h"
#include "custody.h"
#include "frame.h"
#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"
#include "workers.h"

struct signer {
	uint8_t mid[MP_ID_LEN];
	uint8_t pk[MP_PK_LEN];
	uint64_t valid_until;
};

struct accept_job {
	struct wallet *w;
	struct mp_admin_req *req;
	char hex[MP_HEX_ID_LEN + 1];
	uint8_t *bytes; /* the bundle exactly as given */
	size_t len;
	Micropay__V1__TransferBundle *b;
	Micropay__V1__ChannelCert *cc;
	struct wstore_offer offer;
	struct signer *signers;
	size_t n_signers;
	bool unheld;	/* no holder0, no Bind: transferred through the broker, no holder yet */
	bool returning; /* the channel is in this wallet, TRANSFERRED_OUT: it comes back */
	/* verification (the worker owns these while it runs) */
	struct mp_custody_channel chan;
	struct mp_custody_segment seg0;
	struct mp_custody_event *events;
	struct mp_custody_segment *segs;
	struct mp_custody_cap *caps;
	struct mp_custody_result res;
};

static void job_free(struct accept_job *j)
{
	if (j->b)
		protobuf_c_message_free_unpacked(&j->b->base, NULL);
	if (j->cc)
		protobuf_c_message_free_unpacked(&j->cc->base, NULL);
	wstore_offer_clear(&j->offer);
	free(j->bytes);
	free(j->signers);
	free(j->events);
	free(j->segs);
	free(j->caps);
	free(j);
}

/* ---- checks on the loop (no hashing beyond signatures) ---- */

static const char *open_cert(struct accept_job *j)
{
	ProtobufCMessage *body = NULL;
	if (!j->b->cert ||
	    mp_stmt_open(j->b->cert, MP_STMT_CHANNEL_CERT, j->w->cfg.broker_pk,
			 &micropay__v1__channel_cert__descriptor, &body) != MP_ST(OK))
		return "the bundle's cert is not a ChannelCert signed by the broker";
	j->cc = (Micropay__V1__ChannelCert *)body;
	const Micropay__V1__ChannelCert *cc = j->cc;
	if (!mp_bytes_len_is(cc->channel_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) ||
	    !mp_bytes_len_is(cc->root, MP_HASH_LEN) || !mp_bytes_len_is(cc->owner_pk, MP_PK_LEN) ||
	    (cc->holder0.len != 0 && !mp_bytes_len_is(cc->holder0, MP_ID_LEN)) || cc->n < 1 ||
	    cc->n > WALLET_N_MAX || !cc->currency || strlen(cc->currency) != 3)
		return "the bundle's ChannelCert has a field of the wrong length";
	mp_hex_encode(cc->channel_id.data, MP_ID_LEN, j->hex);
	return NULL;
}

/* The last pair's Transfer names what we offered (parsed only: its signature is checked by
 * mp_custody_verify_all with the expected signer). */
static const char *check_offer(struct accept_job *j)
{
	const Micropay__V1__TransferBundle *b = j->b;
	if (b->n_segments < 2 || b->n_segments % 2)
		return "the bundle carries no Transfer/Cap pairs";
	const MpSigned *last = b->segments[b->n_segments - 2];
	Micropay__V1__TransferOffer *o = (Micropay__V1__TransferOffer *)mp_strict_unpack(
	    &micropay__v1__transfer_offer__descriptor, j->offer.offer, j->offer.offer_len);
	Micropay__V1__Transfer *t =
	    last && last->type == MP_STMT_TRANSFER
		? (Micropay__V1__Transfer *)mp_strict_unpack(&micropay__v1__transfer__descriptor,
							     last->body.data, last->body.len)
		: NULL;
	const char *bad = NULL;
	if (!o)
		bad = "our stored offer is unreadable";
	else if (!t)
		bad = "the bundle's last pair does not start with a Transfer";
	else if (t->to_owner_pk.len != o->owner_pk.len ||
		 memcmp(t->to_owner_pk.data, o->owner_pk.data, o->owner_pk.len) ||
		 t->new_nonce.len != o->nonce.len ||
		 memcmp(t->new_nonce.data, o->nonce.data, o->nonce.len) ||
		 t->new_root.len != o->root.len ||
		 memcmp(t->new_root.data, o->root.data, o->root.len) || t->new_len != o->len)
		bad = "the bundle's Transfer is not for our offer (owner key, nonce, root or len "
		      "differ)";
	if (o)
		protobuf_c_message_free_unpacked(&o->base, NULL);
	if (t)
		protobuf_c_message_free_unpacked(&t->base, NULL);
	return bad;
}

static const char *add_signer(struct accept_job *j, const MpSigned *cert)
{
	ProtobufCMessage *body = NULL;
	if (!cert || mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, j->w->cfg.broker_pk,
				  &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return "a MerchantCert of the bundle is not signed by the broker";
	Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)body;
	const char *bad = NULL;
	if (!mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) ||
	    !mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN)) {
		bad = "a MerchantCert of the bundle has a field of the wrong length";
	} else {
		struct signer *s = &j->signers[j->n_signers++];
		memcpy(s->mid, mc->merchant_id.data, MP_ID_LEN);
		memcpy(s->pk, mc->merchant_pk.data, MP_PK_LEN);
		s->valid_until = mc->valid_until;
	}
	protobuf_c_message_free_unpacked(body, NULL);
	return bad;
}

static const char *open_signers(struct accept_job *j)
{
	const Micropay__V1__TransferBundle *b = j->b;
	j->signers = calloc(b->n_merchant_certs + 1, sizeof(*j->signers));
	if (!j->signers)
		return "out of memory";
	for (size_t i = 0; i < b->n_merchant_certs; i++) {
		const char *bad = add_signer(j, b->merchant_certs[i]);
		if (bad)
			return bad;
	}
	if (j->unheld)
		return NULL; /* only the broker signed Caps: its key is in our configuration */
	return b->holder_cert ? add_signer(j, b->holder_cert)
			      : "the bundle carries no MerchantCert of the holder";
}

static bool key_lookup(void *arg, const uint8_t mid[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	const struct accept_job *j = arg;
	for (size_t i = 0; i < j->n_signers; i++) {
		if (!memcmp(j->signers[i].mid, mid, MP_ID_LEN) &&
		    j->signers[i].valid_until >= valid_until) {
			memcpy(pk, j->signers[i].pk, MP_PK_LEN);
			return true;
		}
	}
	return false;
}

/* The verifier's channel: segment 0 from the cert; event 0 from holder0 or the bundle's Bind. */
static const char *describe(struct accept_job *j)
{
	const Micropay__V1__ChannelCert *cc = j->cc;
	struct mp_custody_channel *ch = &j->chan;
	memcpy(ch->channel_id, cc->channel_id.data, MP_ID_LEN);
	mp_stmt_hash(j->b->cert, ch->cert_hash);
	ch->n = cc->n;
	ch->key_valid_until = cc->redeem_until + MP_T_GRACE_S;
	j->seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = cc->n};
	memcpy(j->seg0.nonce, cc->chain_nonce.data, MP_NONCE_LEN);
	memcpy(j->seg0.root, cc->root.data, MP_HASH_LEN);
	memcpy(j->seg0.head, ch->cert_hash, MP_HASH_LEN);
	memcpy(j->seg0.owner_pk, cc->owner_pk.data, MP_PK_LEN);
	ch->segments = &j->seg0;
	ch->n_segments = 1;
	if (cc->holder0.len) {
		memcpy(ch->holder0, cc->holder0.data, MP_ID_LEN);
		return NULL;
	}
	/* Issued unbound: Caps in epoch 0 at index 0 may be the broker's (transferred before any
	 * Bind); with no Bind at all, no merchant holds it and only the broker signed. */
	ch->issued_unbound = true;
	memcpy(ch->broker_pk, j->w->cfg.broker_pk, MP_PK_LEN);
	if (j->unheld)
		return j->b->n_custody ? "a channel without a Bind has no Handoffs" : NULL;
	struct wchannel probe = {0};
	memcpy(probe.channel_id, ch->channel_id, MP_ID_LEN);
	const char *bad = wallet_bind_check(j->w, &probe, j->b->bind, ch->holder0);
	if (bad)
		return "the channel has no holder0 and the bundle no valid Bind";
	ch->bound = true;
	mp_stmt_hash(j->b->bind, ch->bind_hash);
	return NULL;
}

/* ---- verification on a worker ---- */

static void verify_work(void *arg, const atomic_bool *stop)
{
	struct accept_job *j = arg;
	struct mp_hasher *h = mp_hasher_new();
	if (!h) {
		j->res = (struct mp_custody_result){.rule = MP_CUSTODY_STOPPED};
		snprintf(j->res.detail, sizeof(j->res.detail), "out of memory");
		return;
	}
	struct mp_custody_evidence ev = {j->b->custody, j->b->n_custody, j->b->segments,
					 j->b->n_segments};
	mp_custody_verify_all(&j->chan, &ev, key_lookup, j, h, stop, j->events, j->segs, j->caps,
			      &j->res);
	mp_hasher_free(h);
}

static void accept_fail(struct accept_job *j, int code, const char *fmt, const char *what)
{
	log_warn("channel %s: transfer.accept refused: %s", j->hex[0] ? j->hex : "?", what);
	mp_admin_fail(j->req, code, fmt, what);
	job_free(j);
}

/* The SegmentClaimReq: SegmentClaim{s, Transfer s, Cap s, custody, our account} signed by the
 * new segment's key, and the pairs before s. Packed (malloc'd). */
static uint8_t *claim_request(struct accept_job *j, uint32_t s, size_t *len)
{
	uint8_t seed[MP_SK_LEN];
	struct mp_key key = {0};
	bool have = wstore_offer_seed(j->w->store, j->chan.channel_id, seed) == 1 &&
		    mp_key_from_seed(&key, seed);
	OPENSSL_cleanse(seed, sizeof(seed));
	if (!have)
		return NULL;
	Micropay__V1__SegmentClaim c = MICROPAY__V1__SEGMENT_CLAIM__INIT;
	c.channel_id = (ProtobufCBinaryData){MP_ID_LEN, j->chan.channel_id};
	c.seg_seq = s;
	c.transfer = j->b->segments[2 * s - 2];
	c.cap = j->b->segments[2 * s - 1];
	c.n_custody = j->b->n_custody;
	c.custody = j->b->custody;
	c.payout_account_id = (ProtobufCBinaryData){MP_ID_LEN, j->w->account_id};
	MpSigned *stmt = mp_stmt_sign(&key, MP_STMT_SEGMENT_CLAIM, &c.base);
	mp_key_free(&key);
	if (!stmt)
		return NULL;
	Micropay__V1__SegmentClaimReq r = MICROPAY__V1__SEGMENT_CLAIM_REQ__INIT;
	r.stmt = stmt;
	r.n_segments = 2 * (size_t)s - 2;
	r.segments = j->b->segments;
	*len = protobuf_c_message_get_packed_size(&r.base);
	uint8_t *buf = malloc(*len);
	if (buf)
		protobuf_c_message_pack(&r.base, buf);
	mp_stmt_free(stmt);
	return buf;
}

/* The received channel in memory, as it is stored. */
static struct wchannel *received_channel(struct accept_job *j, uint32_t s)
{
	const Micropay__V1__ChannelCert *cc = j->cc;
	const struct mp_custody_segment *seg = &j->segs[s];
	const struct mp_custody_event *holder = &j->events[j->b->n_custody];
	struct wchannel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	memcpy(ch->channel_id, cc->channel_id.data, MP_ID_LEN);
	if (cc->holder0.len)
		memcpy(ch->holder0, cc->holder0.data, MP_ID_LEN);
	memcpy(ch->holder, holder->merchant_id, MP_ID_LEN);
	ch->epoch = holder->hseq;
	memcpy(ch->nonce, j->offer.nonce, MP_NONCE_LEN);
	ch->n = cc->n;
	ch->unit_value = cc->unit_value;
	memcpy(ch->currency, cc->currency, 4);
	ch->days = (uint32_t)((cc->pay_until - cc->issued_at) / WALLET_DAY);
	ch->interval = j->offer.interval;
	ch->state = WCH_ACTIVE;
	ch->last = ch->sent = seg->start;
	ch->issued_at = cc->issued_at;
	ch->pay_until = cc->pay_until;
	ch->redeem_until = cc->redeem_until;
	ch->seg_seq = s;
	ch->seg_start = seg->start;
	ch->seg_len = j->offer.len;
	memcpy(ch->chain_key, j->offer.chain_key, MP_ID_LEN);
	ch->claim_state = 0;
	ch->cert = mp_stmt_copy(j->b->cert);
	ch->holder_cert = j->unheld ? NULL : mp_stmt_copy(j->b->holder_cert);
	ch->segments = calloc(2 * (size_t)s, sizeof(*ch->segments));
	bool ok = ch->cert && (ch->holder_cert || j->unheld) && ch->segments;
	for (size_t i = 0; ok && i < 2 * (size_t)s; i++) {
		ch->segments[i] = mp_stmt_copy(j->b->segments[i]);
		ch->n_segments = i + 1;
		ok = ch->segments[i] != NULL;
	}
	if (!ok) {
		wallet_channel_free(ch);
		return NULL;
	}
	wchain_init(&ch->chain, ch->nonce, ch->seg_len, ch->interval);
	return ch;
}

/* Verified: check the holder's cert, store everything, then claim the segment. */
static void verified(struct accept_job *j)
{
	uint32_t s = (uint32_t)(j->b->n_segments / 2);
	const struct mp_custody_event *holder = &j->events[j->b->n_custody];
	if (!j->unheld &&
	    wallet_merchant_cert_check(j->w, j->b->holder_cert, holder->merchant_id, NULL)) {
		accept_fail(j, MP_ADMIN_FAILED, "transfer.accept: %s",
			    "the bundle's holder_cert is not the holder's MerchantCert");
		return;
	}
	size_t req_len = 0;
	uint8_t *claim = claim_request(j, s, &req_len);
	struct wchannel *ch = claim ? received_channel(j, s) : NULL;
	struct wstore_accept a = {j->b->segments, 2 * (size_t)s, claim,	      req_len,
				  j->bytes,	  j->len,	 j->returning};
	if (!ch || !wstore_accept(j->w->store, ch, &a)) {
		free(claim);
		wallet_channel_free(ch);
		accept_fail(j, MP_ADMIN_INTERNAL, "transfer.accept: %s",
			    "cannot build or store the received channel");
		return;
	}
	free(claim);
	struct wchannel **tail = &j->w->channels;
	while (*tail && memcmp((*tail)->channel_id, ch->channel_id, MP_ID_LEN))
		tail = &(*tail)->next;
	if (*tail) { /* it comes back: the new segment replaces the one we gave away */
		ch->next = (*tail)->next;
		wallet_channel_free(*tail);
	}
	*tail = ch;
	log_info("channel %s: received, ACTIVE in segment %u from index %u (holder epoch %u)",
		 j->hex, s, ch->seg_start, ch->epoch);
	wallet_segment_claim_send(j->w, ch, j->req);
	job_free(j);
}

static void verify_done(void *arg, enum mp_job_outcome outcome)
{
	struct accept_job *j = arg;
	char why[300];
	if (outcome != MP_JOB_DONE || j->res.rule == MP_CUSTODY_STOPPED) {
		accept_fail(j, MP_ADMIN_UNAVAILABLE, "transfer.accept: %s",
			    "verification did not finish (walletd stopping?); retry");
	} else if (j->res.rule != MP_CUSTODY_OK) {
		snprintf(why, sizeof(why), "the bundle does not verify: %s (%s)",
			 mp_custody_rule_name(j->res.rule), j->res.detail);
		accept_fail(j, MP_ADMIN_FAILED, "transfer.accept: %s", why);
	} else {
		verified(j);
	}
}

/* ---- the admin method ---- */

/* Accepted before: the same bundle answers the same channel (and retries the claim). */
static void accepted_again(struct accept_job *j)
{
	struct wchannel *ch = wallet_channel_find(j->w, j->cc->channel_id.data);
	bool same = j->offer.bundle_len == j->len && !memcmp(j->offer.bundle, j->bytes, j->len);
	if (!same)
		accept_fail(j, MP_ADMIN_FAILED, "transfer.accept: %s",
			    "this channel was already accepted from another bundle");
	else if (!ch)
		accept_fail(j, MP_ADMIN_INTERNAL, "transfer.accept: %s",
			    "the accepted channel is missing from memory");
	else {
		wallet_segment_claim_send(j->w, ch, j->req);
		job_free(j);
	}
}

/* Everything the loop checks before the worker hashes; NULL or the refusal. */
static const char *precheck(struct accept_job *j, int *code)
{
	const char *bad = open_cert(j);
	if (bad)
		return bad;
	int found = wstore_offer_get(j->w->store, j->cc->channel_id.data, &j->offer);
	*code = MP_ADMIN_FAILED;
	if (found < 0) {
		*code = MP_ADMIN_INTERNAL;
		return "cannot read the store";
	}
	if (found == 0)
		return "no offer stored for this channel (call transfer.offer first)";
	if (j->offer.bundle)
		return NULL; /* accepted before: accepted_again */
	const struct wchannel *have = wallet_channel_find(j->w, j->cc->channel_id.data);
	if (have && (have->state != WCH_TRANSFERRED_OUT || have->busy))
		return "the channel is already in this wallet";
	j->returning = have != NULL; /* we gave it away; it comes back in a new segment */
	if (strcmp(j->cc->currency, j->w->cfg.currency))
		return "the channel's currency is not this wallet's";
	if (!j->w->registered)
		return "the wallet is not registered (call register): the broker records our "
		       "account for the refund";
	j->unheld = j->cc->holder0.len == 0 && !j->b->bind && !j->b->holder_cert;
	if ((bad = check_offer(j)) || (bad = open_signers(j)) || (bad = describe(j)))
		return bad;
	size_t n_pairs = j->b->n_segments / 2;
	j->events = calloc(j->b->n_custody + 1, sizeof(*j->events));
	j->segs = calloc(n_pairs + 1, sizeof(*j->segs));
	j->caps = calloc(n_pairs, sizeof(*j->caps));
	if (!j->events || !j->segs || !j->caps) {
		*code = MP_ADMIN_INTERNAL;
		return "out of memory";
	}
	return NULL;
}

void wallet_admin_transfer_accept(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	const char *text;
	if (!mp_admin_param_str(req, params, "bundle", &text, true))
		return;
	struct accept_job *j = calloc(1, sizeof(*j));
	if (!j) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return;
	}
	j->w = w;
	j->req = req;
	int code = MP_ADMIN_BAD_PARAMS;
	const char *bad = NULL;
	if (w->stopping) {
		bad = "walletd is stopping";
		code = MP_ADMIN_UNAVAILABLE;
	} else if (!(j->bytes = mp_b64_decode(text, MP_FRAME_MAX_WALLET, &j->len))) {
		bad = "bundle is not base64 (of at most 1 MiB)";
	} else if (!(j->b = (Micropay__V1__TransferBundle *)mp_strict_unpack(
			 &micropay__v1__transfer_bundle__descriptor, j->bytes, j->len))) {
		bad = "bundle is not a TransferBundle";
	} else {
		code = MP_ADMIN_FAILED;
		bad = precheck(j, &code);
	}
	if (bad) {
		accept_fail(j, code, "transfer.accept: %s", bad);
	} else if (j->offer.bundle) {
		accepted_again(j);
	} else if (!mp_workers_submit(w->workers, verify_work, verify_done, j)) {
		accept_fail(j, MP_ADMIN_UNAVAILABLE, "transfer.accept: %s",
			    "too many verifications waiting; retry");
	}
}
