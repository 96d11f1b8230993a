#include "takeover_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody.h"
#include "custody_store.h"
#include "stmt.h"
#include "takeover_redirect.h"

struct signer {
	uint8_t mid[MP_ID_LEN];
	uint8_t pk[MP_PK_LEN];
	uint64_t valid_until;
};

struct signers {
	struct signer *list;
	size_t n;
};

static bool key_lookup(void *arg, const uint8_t mid[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	const struct signers *s = arg;
	for (size_t i = 0; i < s->n; i++) {
		if (!memcmp(s->list[i].mid, mid, MP_ID_LEN) &&
		    s->list[i].valid_until >= valid_until) {
			memcpy(pk, s->list[i].pk, MP_PK_LEN);
			return true;
		}
	}
	return false;
}

/* The MerchantCerts that verify under the broker key (others are ignored: a key lookup then
 * fails for their merchant), each also kept as a row to store. */
static bool open_certs(struct takeover_check *tc, struct signers *s)
{
	s->list = calloc(tc->n_certs + 1, sizeof(*s->list));
	tc->cert_rows = calloc(tc->n_certs + 1, sizeof(*tc->cert_rows));
	if (!s->list || !tc->cert_rows)
		return false;
	for (size_t i = 0; i < tc->n_certs; i++) {
		ProtobufCMessage *body = NULL;
		if (mp_stmt_open(tc->certs[i], MP_STMT_MERCHANT_CERT, tc->broker_pk,
				 &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
			continue;
		Micropay__V1__MerchantCert *mc = (Micropay__V1__MerchantCert *)body;
		if (mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
		    mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN)) {
			struct signer *sg = &s->list[s->n++];
			memcpy(sg->mid, mc->merchant_id.data, MP_ID_LEN);
			memcpy(sg->pk, mc->merchant_pk.data, MP_PK_LEN);
			sg->valid_until = mc->valid_until;
			struct custody_blob *row = &tc->cert_rows[tc->n_cert_rows];
			memcpy(row->mid, sg->mid, MP_ID_LEN);
			row->data = mp_stmt_encode(tc->certs[i], &row->len);
			if (!row->data) {
				protobuf_c_message_free_unpacked(body, NULL);
				return false;
			}
			tc->n_cert_rows++;
		}
		protobuf_c_message_free_unpacked(body, NULL);
	}
	return true;
}

static void fail(struct takeover_check *tc, MpCode code, const char *detail)
{
	tc->code = code;
	snprintf(tc->detail, sizeof(tc->detail), "%s", detail);
}

/* Event 0 of a cert without holder0: the Bind, signed by the broker (type 4), for this
 * channel, naming a merchant; holder0 and bind_hash of ch from it. */
static bool check_bind(struct takeover_check *tc, struct mp_custody_channel *ch)
{
	ProtobufCMessage *body = NULL;
	if (!tc->bind) {
		fail(tc, MP_ST(MALFORMED),
		     "the channel has no holder0 and the holder sent no Bind");
		return false;
	}
	MpCode code = mp_stmt_open(tc->bind, MP_STMT_BIND, tc->broker_pk,
				   &micropay__v1__bind__descriptor, &body);
	Micropay__V1__Bind *b = (Micropay__V1__Bind *)body;
	bool ok = code == MP_ST(OK) && mp_bytes_len_is(b->channel_id, MP_ID_LEN) &&
		  !memcmp(b->channel_id.data, ch->channel_id, MP_ID_LEN) &&
		  mp_bytes_len_is(b->merchant_id, MP_ID_LEN);
	if (ok) {
		ch->bound = true;
		mp_stmt_hash(tc->bind, ch->bind_hash);
		memcpy(ch->holder0, b->merchant_id.data, MP_ID_LEN);
		tc->bound = true;
		memcpy(tc->bind_mid, b->merchant_id.data, MP_ID_LEN);
	} else {
		fail(tc, code == MP_ST(OK) ? MP_ST(MALFORMED) : code,
		     "the holder's Bind is not the broker's Bind of this channel");
	}
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
	return ok;
}

/* The channel as custody.c describes it, from our verified cert (and the Bind if it has no
 * holder0). */
static bool describe(struct takeover_check *tc, struct mp_custody_channel *ch,
		     struct mp_custody_segment *seg0)
{
	MpSigned *s = mp_stmt_decode(tc->cert, tc->cert_len);
	Micropay__V1__ChannelCert *cc =
	    s ? (Micropay__V1__ChannelCert *)mp_strict_unpack(
		    &micropay__v1__channel_cert__descriptor, s->body.data, s->body.len)
	      : NULL;
	bool unbound = cc && cc->holder0.len == 0;
	bool ok = cc && mp_bytes_len_is(cc->channel_id, MP_ID_LEN) &&
		  (unbound || mp_bytes_len_is(cc->holder0, MP_ID_LEN)) &&
		  mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) &&
		  mp_bytes_len_is(cc->root, MP_HASH_LEN) &&
		  mp_bytes_len_is(cc->owner_pk, MP_PK_LEN);
	if (ok) {
		memset(ch, 0, sizeof(*ch));
		memset(seg0, 0, sizeof(*seg0));
		memcpy(ch->channel_id, cc->channel_id.data, MP_ID_LEN);
		mp_stmt_hash(s, ch->cert_hash);
		if (!unbound)
			memcpy(ch->holder0, cc->holder0.data, MP_ID_LEN);
		ch->issued_unbound = unbound;
		memcpy(ch->broker_pk, tc->broker_pk, MP_PK_LEN);
		ch->n = cc->n;
		ch->key_valid_until = cc->redeem_until + tc->t_grace;
		seg0->len = cc->n;
		memcpy(seg0->nonce, cc->chain_nonce.data, MP_NONCE_LEN);
		memcpy(seg0->root, cc->root.data, MP_HASH_LEN);
		memcpy(seg0->head, ch->cert_hash, MP_HASH_LEN);
		memcpy(seg0->owner_pk, cc->owner_pk.data, MP_PK_LEN);
		ch->segments = seg0;
		ch->n_segments = 1;
		ok = !unbound || check_bind(tc, ch);
	}
	if (cc)
		micropay__v1__channel_cert__free_unpacked(cc, NULL);
	mp_stmt_free(s);
	return ok;
}

/* The last Handoff is the one our Move asked for. */
static void check_last(struct takeover_check *tc, const struct mp_custody_event *last)
{
	uint8_t a[MP_HASH_LEN], b[MP_HASH_LEN];
	MpSigned *final = tc->chain[tc->n_chain - 1];
	mp_stmt_hash(final, a);
	mp_stmt_hash(tc->handoff, b);
	Micropay__V1__Handoff *h = (Micropay__V1__Handoff *)mp_strict_unpack(
	    &micropay__v1__handoff__descriptor, final->body.data, final->body.len);
	if (memcmp(a, b, MP_HASH_LEN))
		fail(tc, MP_ST(MALFORMED), "the Handoff is not the last of the chain");
	else if (!h || memcmp(last->merchant_id, tc->mid, MP_ID_LEN))
		fail(tc, MP_ST(MALFORMED), "the Handoff does not name this merchant");
	else if (!mp_bytes_len_is(h->move_hash, MP_HASH_LEN) ||
		 memcmp(h->move_hash.data, tc->move_hash, MP_HASH_LEN))
		fail(tc, MP_ST(MALFORMED), "the Handoff does not carry our Move");
	else if (last->hseq != tc->from_epoch + 1)
		fail(tc, MP_ST(MALFORMED), "the Handoff does not end the Move's epoch");
	else if (last->hseq <= tc->highest)
		fail(tc, MP_ST(STALE_INDEX), "hseq not above the highest recorded here");
	else {
		tc->code = MP_ST(OK);
		tc->hseq = last->hseq;
		tc->at_index = last->point.index;
		memcpy(tc->w_at, last->point.w, MP_HASH_LEN);
	}
	if (h)
		micropay__v1__handoff__free_unpacked(h, NULL);
}

/* The last Handoff points into the last verified segment, whose owner signed our Move: that
 * segment is the channel's current one from now on. */
static void check_segment(struct takeover_check *tc, const struct mp_custody_event *last,
			  const struct mp_custody_segment *cur)
{
	ProtobufCMessage *body = NULL;
	if (last->point.seg_seq != cur->seg_seq) {
		fail(tc, MP_ST(MALFORMED), "the Handoff is not in the channel's last segment");
	} else if (tc->move_seg != cur->seg_seq) {
		fail(tc, MP_ST(STALE_SEGMENT), "the Move is not for the channel's last segment");
	} else if (mp_stmt_open(tc->move, MP_STMT_MOVE, cur->owner_pk,
				&micropay__v1__move__descriptor, &body) != MP_ST(OK)) {
		fail(tc, MP_ST(BAD_SIG), "the Move is not signed by the last segment's owner");
	} else {
		tc->seg_seq = cur->seg_seq;
		tc->seg_start = cur->start;
	}
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
}

/* Rows to store: every verified Transfer/Cap pair. */
static bool seg_rows(struct takeover_check *tc)
{
	size_t n = tc->n_segments / 2;
	tc->seg_rows = calloc(n + 1, sizeof(*tc->seg_rows));
	if (!tc->seg_rows)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!segment_row_from(&tc->seg_rows[i], tc->segments[2 * i],
				      tc->segments[2 * i + 1]))
			return false;
		tc->n_seg_rows++;
	}
	return true;
}

/* Rows to store: every Handoff of the chain with the merchant that signed it. */
static bool chain_rows(struct takeover_check *tc, const struct mp_custody_event *events)
{
	tc->chain_rows = calloc(tc->n_chain, sizeof(*tc->chain_rows));
	if (!tc->chain_rows)
		return false;
	for (size_t i = 0; i < tc->n_chain; i++) {
		struct custody_blob *row = &tc->chain_rows[i];
		row->hseq = (uint32_t)(i + 1);
		memcpy(row->mid, events[i].merchant_id, MP_ID_LEN);
		row->data = mp_stmt_encode(tc->chain[i], &row->len);
		tc->n_chain_rows++;
		if (!row->data)
			return false;
	}
	return true;
}

/* Verified: the last Handoff is ours, the segments lead to it; the rows to store. */
static void conclude(struct takeover_check *tc, const struct mp_custody_event *events,
		     const struct mp_custody_segment *segments)
{
	if (tc->redirect) {
		takeover_redirect_conclude(tc, events);
		return;
	}
	check_last(tc, &events[tc->n_chain]);
	if (tc->code == MP_ST(OK))
		check_segment(tc, &events[tc->n_chain], &segments[tc->n_segments / 2]);
	if (tc->code == MP_ST(OK) && (!chain_rows(tc, events) || !seg_rows(tc)))
		fail(tc, MP_ST(INTERNAL), "out of memory");
}

static void verify(struct takeover_check *tc, const struct signers *signers,
		   const struct mp_custody_channel *ch, struct mp_hasher *h,
		   const atomic_bool *stop, struct mp_custody_event *events)
{
	size_t n_pairs = tc->n_segments / 2;
	struct mp_custody_segment *segments = calloc(n_pairs + 1, sizeof(*segments));
	struct mp_custody_cap *caps = calloc(n_pairs + 1, sizeof(*caps));
	struct mp_custody_result res = {0};
	struct mp_custody_evidence ev = {.handoffs = tc->chain,
					 .n_handoffs = tc->n_chain,
					 .segment_stmts = tc->segments,
					 .n_segment_stmts = tc->n_segments};
	if (!segments || !caps) {
		fail(tc, MP_ST(INTERNAL), "out of memory");
	} else {
		enum mp_custody_rule rule = mp_custody_verify_all(
		    ch, &ev, key_lookup, (void *)signers, h, stop, events, segments, caps, &res);
		if (rule != MP_CUSTODY_OK) {
			tc->code = mp_custody_rule_code(rule);
			snprintf(tc->detail, sizeof(tc->detail),
				 "custody chain: Handoff %u, segment %u: %s%s%s", res.hseq,
				 res.seg_seq, mp_custody_rule_name(rule), res.detail[0] ? ": " : "",
				 res.detail);
		} else {
			conclude(tc, events, segments);
		}
	}
	free(segments);
	free(caps);
}

void takeover_check_run(struct takeover_check *tc, const atomic_bool *stop)
{
	struct signers signers = {0};
	struct mp_custody_channel ch;
	struct mp_custody_segment seg0;
	struct mp_custody_event *events = calloc(tc->n_chain + 1, sizeof(*events));
	struct mp_hasher *h = mp_hasher_new();
	fail(tc, MP_ST(INTERNAL), "out of memory");
	if (tc->n_chain == 0 || !tc->handoff)
		fail(tc, MP_ST(MALFORMED), "no custody chain");
	else if (events && h && open_certs(tc, &signers) && describe(tc, &ch, &seg0))
		verify(tc, &signers, &ch, h, stop, events);
	free(signers.list);
	free(events);
	mp_hasher_free(h);
}

void takeover_check_free(struct takeover_check *tc)
{
	if (!tc)
		return;
	free(tc->cert);
	for (size_t i = 0; i < tc->n_chain; i++)
		mp_stmt_free(tc->chain[i]);
	free(tc->chain);
	mp_stmt_free(tc->handoff);
	for (size_t i = 0; i < tc->n_segments; i++)
		mp_stmt_free(tc->segments[i]);
	free(tc->segments);
	mp_stmt_free(tc->move);
	mp_stmt_free(tc->bind);
	segment_rows_free(tc->seg_rows, tc->n_seg_rows);
	for (size_t i = 0; i < tc->n_certs; i++)
		mp_stmt_free(tc->certs[i]);
	free(tc->certs);
	custody_blobs_free(tc->chain_rows, tc->n_chain_rows);
	custody_blobs_free(tc->cert_rows, tc->n_cert_rows);
	free(tc);
}
