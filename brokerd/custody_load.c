/* What the broker knows of the channels whose evidence it verifies: mp_custody_prepare rows
 * (brokerd/sql/0010-segments.sql) into custody_chan records, and the helpers both the Redeem
 * custody step and the segment intake (CapNoticeReq, SegmentClaimReq) build their verifier
 * inputs with. */
#include <stdlib.h>
#include <string.h>

#include "custody_verify.h"
#include "db.h"
#include "stmt.h"

static struct custody_chan *chan_of(struct custody_chan *chans, size_t n, const PGresult *res,
				    int row)
{
	uint8_t cid[MP_ID_LEN];
	if (!db_get_bytes(res, row, "channel_id", cid, MP_ID_LEN))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (memcmp(chans[i].channel_id, cid, MP_ID_LEN) == 0)
			return &chans[i];
	return NULL;
}

static MpSigned *row_stmt(const PGresult *res, int row, const char *col)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, row, col, &len);
	MpSigned *s = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	return s;
}

static bool load_chan(struct custody_chan *ch, const PGresult *res, int row)
{
	ch->n = (uint32_t)db_get_i64(res, row, "n");
	ch->finalize_at = (uint64_t)db_get_i64(res, row, "finalize_at");
	ch->has_holder0 = db_get_bytes(res, row, "merchant_id", ch->holder0, MP_ID_LEN);
	ch->bound = !db_is_null(res, row, "w");
	if (ch->bound && !db_get_bytes(res, row, "w", ch->bind_hash, MP_HASH_LEN))
		return false;
	ch->seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = ch->n};
	ch->cert = row_stmt(res, row, "bytes_a");
	if (!ch->cert)
		return false;
	mp_stmt_hash(ch->cert, ch->seg0.head);
	return db_get_bytes(res, row, "channel_id", ch->channel_id, MP_ID_LEN) &&
	       db_get_bytes(res, row, "nonce", ch->seg0.nonce, MP_NONCE_LEN) &&
	       db_get_bytes(res, row, "root", ch->seg0.root, MP_HASH_LEN) &&
	       db_get_bytes(res, row, "bytes_b", ch->seg0.owner_pk, MP_PK_LEN);
}

static bool load_handoff(struct custody_chan *ch, const PGresult *res, int row)
{
	struct custody_stored *grown = realloc(ch->stored, (ch->n_stored + 1) * sizeof(*grown));
	if (!grown)
		return false;
	ch->stored = grown;
	struct custody_stored *s = &ch->stored[ch->n_stored];
	*s = (struct custody_stored){.hseq = (uint32_t)db_get_i64(res, row, "hseq")};
	s->pt.seg_seq = (uint32_t)db_get_i64(res, row, "seg_seq");
	s->pt.index = (uint32_t)db_get_i64(res, row, "idx");
	s->stmt = row_stmt(res, row, "bytes_a");
	if (!s->stmt)
		return false;
	ch->n_stored++;
	mp_stmt_hash(s->stmt, s->hash);
	return db_get_bytes(res, row, "merchant_id", s->from, MP_ID_LEN) &&
	       db_get_bytes(res, row, "to_mid", s->to, MP_ID_LEN) &&
	       db_get_bytes(res, row, "w", s->pt.w, MP_HASH_LEN);
}

static bool load_pair(struct custody_chan *ch, const PGresult *res, int row)
{
	struct custody_pair *grown = realloc(ch->pairs, (ch->n_pairs + 1) * sizeof(*grown));
	if (!grown)
		return false;
	ch->pairs = grown;
	struct custody_pair *p = &ch->pairs[ch->n_pairs];
	*p = (struct custody_pair){.seg_seq = (uint32_t)db_get_i64(res, row, "seg_seq")};
	p->transfer = row_stmt(res, row, "bytes_a");
	p->cap = row_stmt(res, row, "bytes_b");
	ch->n_pairs++;
	if (!p->transfer || !p->cap)
		return false;
	mp_stmt_hash(p->transfer, p->t_hash);
	mp_stmt_hash(p->cap, p->c_hash);
	return true;
}

static bool load_point(struct custody_chan *ch, const PGresult *res, int row)
{
	struct mp_custody_point *grown = realloc(ch->known, (ch->n_known + 1) * sizeof(*grown));
	if (!grown)
		return false;
	ch->known = grown;
	struct mp_custody_point *p = &ch->known[ch->n_known++];
	p->seg_seq = (uint32_t)db_get_i64(res, row, "seg_seq");
	p->index = (uint32_t)db_get_i64(res, row, "idx");
	return db_get_bytes(res, row, "w", p->w, MP_HASH_LEN);
}

static int by_hseq(const void *a, const void *b)
{
	const struct custody_stored *x = a, *y = b;
	return (x->hseq > y->hseq) - (x->hseq < y->hseq);
}

static int by_seg(const void *a, const void *b)
{
	const struct custody_pair *x = a, *y = b;
	return (x->seg_seq > y->seg_seq) - (x->seg_seq < y->seg_seq);
}

/* Stored Handoffs in hseq order and pairs in seg_seq order; only the contiguous runs from 1
 * count (they always are). */
static void order_stored(struct custody_chan *ch)
{
	if (ch->n_stored)
		qsort(ch->stored, ch->n_stored, sizeof(*ch->stored), by_hseq);
	size_t k = 0;
	while (k < ch->n_stored && ch->stored[k].hseq == k + 1)
		k++;
	for (size_t i = k; i < ch->n_stored; i++)
		mp_stmt_free(ch->stored[i].stmt);
	ch->n_stored = k;
	if (ch->n_pairs)
		qsort(ch->pairs, ch->n_pairs, sizeof(*ch->pairs), by_seg);
	for (k = 0; k < ch->n_pairs && ch->pairs[k].seg_seq == k + 1;)
		k++;
	for (size_t i = k; i < ch->n_pairs; i++)
		mp_stmt_free(ch->pairs[i].transfer), mp_stmt_free(ch->pairs[i].cap);
	ch->n_pairs = k;
}

static bool load_row(struct custody_chan *chans, size_t n_chans, const PGresult *res, int row)
{
	const char *kind = db_get_text(res, row, "kind");
	struct custody_chan *ch = chan_of(chans, n_chans, res, row);
	if (!kind || !ch)
		return true;
	if (strcmp(kind, "handoff") == 0)
		return load_handoff(ch, res, row);
	if (strcmp(kind, "pair") == 0)
		return load_pair(ch, res, row);
	if (strcmp(kind, "point") == 0)
		return load_point(ch, res, row);
	return true;
}

bool custody_load(const PGresult *res, struct custody_chan **chans, size_t *n_chans,
		  struct custody_key **keys, size_t *n_keys)
{
	int rows = PQntuples(res);
	*n_chans = *n_keys = 0;
	*chans = calloc((size_t)rows + 1, sizeof(**chans));
	*keys = calloc((size_t)rows + 1, sizeof(**keys));
	if (!*chans || !*keys)
		return false;
	for (int i = 0; i < rows; i++) {
		const char *kind = db_get_text(res, i, "kind");
		if (kind && strcmp(kind, "chan") == 0) {
			if (!load_chan(&(*chans)[(*n_chans)++], res, i))
				return false;
		} else if (kind && strcmp(kind, "key") == 0) {
			struct custody_key *k = &(*keys)[(*n_keys)++];
			k->valid_until = (uint64_t)db_get_i64(res, i, "valid_until");
			if (!db_get_bytes(res, i, "merchant_id", k->mid, MP_ID_LEN) ||
			    !db_get_bytes(res, i, "bytes_a", k->pk, MP_PK_LEN))
				return false;
		}
	}
	for (int i = 0; i < rows; i++)
		if (!load_row(*chans, *n_chans, res, i))
			return false;
	for (size_t i = 0; i < *n_chans; i++)
		order_stored(&(*chans)[i]);
	return true;
}

void custody_chans_free(struct custody_chan *chans, size_t n_chans)
{
	for (size_t i = 0; chans && i < n_chans; i++) {
		mp_stmt_free(chans[i].cert);
		for (size_t k = 0; k < chans[i].n_stored; k++)
			mp_stmt_free(chans[i].stored[k].stmt);
		free(chans[i].stored);
		for (size_t k = 0; k < chans[i].n_pairs; k++)
			mp_stmt_free(chans[i].pairs[k].transfer),
			    mp_stmt_free(chans[i].pairs[k].cap);
		free(chans[i].pairs);
		free(chans[i].known);
	}
	free(chans);
}

bool custody_key_find(const struct custody_key *keys, size_t n_keys, const uint8_t mid[MP_ID_LEN],
		      uint64_t valid_until, uint8_t pk[MP_PK_LEN])
{
	for (size_t i = 0; i < n_keys; i++)
		if (memcmp(keys[i].mid, mid, MP_ID_LEN) == 0 &&
		    keys[i].valid_until >= valid_until) {
			memcpy(pk, keys[i].pk, MP_PK_LEN);
			return true;
		}
	return false;
}

void custody_channel_desc(const struct custody_chan *ch, struct mp_custody_channel *desc)
{
	*desc = (struct mp_custody_channel){.n = ch->n,
					    .key_valid_until = ch->finalize_at,
					    .segments = &ch->seg0,
					    .n_segments = 1,
					    .known = ch->known,
					    .n_known = ch->n_known};
	memcpy(desc->channel_id, ch->channel_id, MP_ID_LEN);
	memcpy(desc->cert_hash, ch->seg0.head, MP_HASH_LEN);
	memcpy(desc->holder0, ch->holder0, MP_ID_LEN);
	desc->bound = ch->bound;
	memcpy(desc->bind_hash, ch->bind_hash, MP_HASH_LEN);
	/* Issued without holder0: unbound now, or bound later by our Bind. Such a channel may
	 * have segments capped by the broker (unbound_transfer.c) under the key that signed its
	 * cert, which is ours. */
	desc->issued_unbound = !ch->has_holder0 || ch->bound;
	if (desc->issued_unbound && mp_bytes_len_is(ch->cert->signer_pk, MP_PK_LEN))
		memcpy(desc->broker_pk, ch->cert->signer_pk.data, MP_PK_LEN);
}

size_t custody_segment_evidence(const struct custody_chan *ch, MpSigned *const *given,
				size_t n_given, uint32_t upto, MpSigned **out)
{
	size_t n = n_given < MP_MAX_SEGMENT_STMTS ? n_given : MP_MAX_SEGMENT_STMTS;
	for (size_t i = 0; i < n; i++)
		out[i] = given[i];
	if (n % 2)
		return n; /* not pairs: the verifier refuses them (segments_odd) */
	for (size_t k = n / 2 + 1; k <= ch->n_pairs && k <= upto && n + 2 <= MP_MAX_SEGMENT_STMTS;
	     k++) {
		out[n++] = ch->pairs[k - 1].transfer;
		out[n++] = ch->pairs[k - 1].cap;
	}
	return n;
}
