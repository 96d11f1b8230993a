#include "bind_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody.h"
#include "stmt.h"

static void fail(struct bind_check *bc, MpCode code, const char *detail)
{
	bc->code = code;
	snprintf(bc->detail, sizeof(bc->detail), "%s", detail);
}

/* No merchant held the channel: no merchant key verifies anything in its chain. */
static bool no_merchant_key(void *arg, const uint8_t mid[MP_ID_LEN], uint64_t valid_until,
			    uint8_t pk[MP_PK_LEN])
{
	return false;
}

struct bind_check *bind_check_new(const uint8_t *cert, size_t cert_len, MpSigned *const *segments,
				  size_t n_segments, const MpSigned *move,
				  const uint8_t broker_pk[MP_PK_LEN], const uint8_t mid[MP_ID_LEN],
				  uint64_t t_grace)
{
	struct bind_check *bc = calloc(1, sizeof(*bc));
	if (!bc)
		return NULL;
	bc->cert = malloc(cert_len ? cert_len : 1);
	bc->segments = calloc(n_segments + 1, sizeof(*bc->segments));
	bc->move = move ? mp_stmt_copy(move) : NULL;
	bool ok = bc->cert && bc->segments && bc->move;
	for (size_t i = 0; ok && i < n_segments; i++) {
		ok = (bc->segments[i] = mp_stmt_copy(segments[i])) != NULL;
		bc->n_segments += ok ? 1 : 0;
	}
	if (!ok) {
		bind_check_free(bc);
		return NULL;
	}
	memcpy(bc->cert, cert, cert_len);
	bc->cert_len = cert_len;
	memcpy(bc->broker_pk, broker_pk, MP_PK_LEN);
	memcpy(bc->mid, mid, MP_ID_LEN);
	bc->t_grace = t_grace;
	return bc;
}

/* The channel as custody.c describes it: issued without holder0, not bound yet. */
static bool describe(struct bind_check *bc, struct mp_custody_channel *ch,
		     struct mp_custody_segment *seg0)
{
	MpSigned *s = mp_stmt_decode(bc->cert, bc->cert_len);
	Micropay__V1__ChannelCert *cc =
	    s ? (Micropay__V1__ChannelCert *)mp_strict_unpack(
		    &micropay__v1__channel_cert__descriptor, s->body.data, s->body.len)
	      : NULL;
	bool ok = cc && cc->holder0.len == 0 && mp_bytes_len_is(cc->channel_id, MP_ID_LEN) &&
		  mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) &&
		  mp_bytes_len_is(cc->root, MP_HASH_LEN) &&
		  mp_bytes_len_is(cc->owner_pk, MP_PK_LEN);
	if (ok) {
		memset(ch, 0, sizeof(*ch));
		memset(seg0, 0, sizeof(*seg0));
		memcpy(ch->channel_id, cc->channel_id.data, MP_ID_LEN);
		mp_stmt_hash(s, ch->cert_hash);
		ch->issued_unbound = true;
		memcpy(ch->broker_pk, bc->broker_pk, MP_PK_LEN);
		ch->n = cc->n;
		ch->key_valid_until = cc->redeem_until + bc->t_grace;
		seg0->len = cc->n;
		memcpy(seg0->nonce, cc->chain_nonce.data, MP_NONCE_LEN);
		memcpy(seg0->root, cc->root.data, MP_HASH_LEN);
		memcpy(seg0->head, ch->cert_hash, MP_HASH_LEN);
		memcpy(seg0->owner_pk, cc->owner_pk.data, MP_PK_LEN);
		ch->segments = seg0;
		ch->n_segments = 1;
	} else {
		fail(bc, MP_ST(INTERNAL), "cannot read the channel's cert");
	}
	if (cc)
		micropay__v1__channel_cert__free_unpacked(cc, NULL);
	mp_stmt_free(s);
	return ok;
}

/* The Move is the consent of the owner of the last verified segment cur, for it, to us. */
static void check_move(struct bind_check *bc, const struct mp_custody_channel *ch,
		       const struct mp_custody_segment *cur)
{
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(bc->move, MP_STMT_MOVE, cur->owner_pk,
				   &micropay__v1__move__descriptor, &body);
	const Micropay__V1__Move *mv = (const Micropay__V1__Move *)body;
	if (code != MP_ST(OK))
		fail(bc, code == MP_ST(BAD_SIG) ? MP_ST(BAD_SIG) : MP_ST(MALFORMED),
		     "the Move is not signed by the owner of the channel's last segment");
	else if (!mp_bytes_len_is(mv->channel_id, MP_ID_LEN) ||
		 memcmp(mv->channel_id.data, ch->channel_id, MP_ID_LEN) != 0)
		fail(bc, MP_ST(MALFORMED), "the Move names another channel");
	else if (!mp_bytes_len_is(mv->to_mid, MP_ID_LEN) ||
		 memcmp(mv->to_mid.data, bc->mid, MP_ID_LEN) != 0)
		fail(bc, MP_ST(MALFORMED), "the Move names another merchant");
	else if (mv->seg_seq != cur->seg_seq)
		fail(bc, MP_ST(STALE_SEGMENT), "the Move is not for the channel's last segment");
	else if (mv->from_epoch != 0)
		fail(bc, MP_ST(MALFORMED), "a Move for a Bind must have from_epoch 0");
	else
		bc->code = MP_ST(OK);
	if (body)
		protobuf_c_message_free_unpacked(body, NULL);
}

/* Rows to store: every verified pair. */
static bool rows_of(struct bind_check *bc)
{
	size_t n = bc->n_segments / 2;
	bc->rows = calloc(n + 1, sizeof(*bc->rows));
	if (!bc->rows)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!segment_row_from(&bc->rows[i], bc->segments[2 * i], bc->segments[2 * i + 1]))
			return false;
		bc->n_rows++;
	}
	return true;
}

static void verify(struct bind_check *bc, const struct mp_custody_channel *ch, struct mp_hasher *h,
		   const atomic_bool *stop)
{
	size_t n_pairs = bc->n_segments / 2;
	struct mp_custody_event events[1];
	struct mp_custody_segment *segments = calloc(n_pairs + 2, sizeof(*segments));
	struct mp_custody_cap *caps = calloc(n_pairs + 1, sizeof(*caps));
	struct mp_custody_result res = {0};
	struct mp_custody_evidence ev = {.segment_stmts = bc->segments,
					 .n_segment_stmts = bc->n_segments};
	if (!segments || !caps) {
		fail(bc, MP_ST(INTERNAL), "out of memory");
	} else if (bc->n_segments == 0) {
		fail(bc, MP_ST(MALFORMED), "no segment statements");
	} else {
		enum mp_custody_rule rule = mp_custody_verify_all(
		    ch, &ev, no_merchant_key, NULL, h, stop, events, segments, caps, &res);
		if (rule != MP_CUSTODY_OK) {
			bc->code = mp_custody_rule_code(rule);
			snprintf(bc->detail, sizeof(bc->detail), "segments: segment %u: %s%s%s",
				 res.seg_seq, mp_custody_rule_name(rule), res.detail[0] ? ": " : "",
				 res.detail);
		} else {
			check_move(bc, ch, &segments[n_pairs]);
			if (bc->code == MP_ST(OK) && !rows_of(bc))
				fail(bc, MP_ST(INTERNAL), "out of memory");
		}
	}
	free(segments);
	free(caps);
}

void bind_check_run(struct bind_check *bc, const atomic_bool *stop)
{
	struct mp_custody_channel ch;
	struct mp_custody_segment seg0;
	struct mp_hasher *h = mp_hasher_new();
	fail(bc, MP_ST(INTERNAL), "out of memory");
	if (h && describe(bc, &ch, &seg0))
		verify(bc, &ch, h, stop);
	mp_hasher_free(h);
}

void bind_check_free(struct bind_check *bc)
{
	if (!bc)
		return;
	free(bc->cert);
	for (size_t i = 0; bc->segments && i < bc->n_segments; i++)
		mp_stmt_free(bc->segments[i]);
	free(bc->segments);
	mp_stmt_free(bc->move);
	segment_rows_free(bc->rows, bc->n_rows);
	free(bc);
}
