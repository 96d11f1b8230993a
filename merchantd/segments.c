#include "segments.h"

#include <stdlib.h>
#include <string.h>

#include "stmt.h"

static uint8_t *dup_bytes(const uint8_t *data, size_t len)
{
	uint8_t *out = malloc(len ? len : 1);
	if (out && len)
		memcpy(out, data, len);
	return out;
}

bool segment_row_copy(struct segment_row *out, const struct segment_row *row)
{
	*out = *row;
	out->transfer = dup_bytes(row->transfer, row->transfer_len);
	out->cap = dup_bytes(row->cap, row->cap_len);
	if (out->transfer && out->cap)
		return true;
	segment_row_clear(out);
	return false;
}

void segment_row_clear(struct segment_row *row)
{
	free(row->transfer);
	free(row->cap);
	row->transfer = row->cap = NULL;
}

void segment_rows_free(struct segment_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		segment_row_clear(&rows[i]);
	free(rows);
}

static bool transfer_fields(struct segment_row *row, const MpSigned *transfer)
{
	Micropay__V1__Transfer *t = (Micropay__V1__Transfer *)mp_strict_unpack(
	    &micropay__v1__transfer__descriptor, transfer->body.data, transfer->body.len);
	bool ok = t && mp_bytes_len_is(t->to_owner_pk, MP_PK_LEN) &&
		  mp_bytes_len_is(t->new_nonce, MP_NONCE_LEN) &&
		  mp_bytes_len_is(t->new_root, MP_HASH_LEN);
	if (ok) {
		row->seg_seq = t->new_seg_seq;
		row->len = t->new_len;
		row->declared_last = t->declared_last;
		memcpy(row->owner_pk, t->to_owner_pk.data, MP_PK_LEN);
		memcpy(row->nonce, t->new_nonce.data, MP_NONCE_LEN);
		memcpy(row->root, t->new_root.data, MP_HASH_LEN);
		mp_stmt_hash(transfer, row->transfer_hash);
	}
	if (t)
		micropay__v1__transfer__free_unpacked(t, NULL);
	return ok;
}

static bool cap_fields(struct segment_row *row, const MpSigned *cap)
{
	Micropay__V1__Cap *c = (Micropay__V1__Cap *)mp_strict_unpack(&micropay__v1__cap__descriptor,
								     cap->body.data, cap->body.len);
	bool ok = c && c->point && mp_bytes_len_is(c->point->w, MP_HASH_LEN) &&
		  c->new_seg_seq == row->seg_seq;
	if (ok) {
		row->hseq = c->hseq;
		row->start = c->point->index;
		memcpy(row->w_cap, c->point->w.data, MP_HASH_LEN);
	}
	if (c)
		micropay__v1__cap__free_unpacked(c, NULL);
	return ok;
}

bool segment_row_from(struct segment_row *row, const MpSigned *transfer, const MpSigned *cap)
{
	memset(row, 0, sizeof(*row));
	if (!transfer || !cap || !transfer_fields(row, transfer) || !cap_fields(row, cap))
		return false;
	row->transfer = mp_stmt_encode(transfer, &row->transfer_len);
	row->cap = mp_stmt_encode(cap, &row->cap_len);
	if (row->transfer && row->cap)
		return true;
	segment_row_clear(row);
	return false;
}

static void make_current(struct channel *ch, const struct segment_row *row)
{
	ch->seg_seq = row->seg_seq;
	ch->seg_start = row->start;
	memcpy(ch->nonce, row->nonce, MP_NONCE_LEN);
	memcpy(ch->root, row->root, MP_HASH_LEN);
	memcpy(ch->owner_pk, row->owner_pk, MP_PK_LEN);
	memcpy(ch->seg_head, row->transfer_hash, MP_HASH_LEN);
}

bool channel_push_segment(struct channel *ch, const struct segment_row *row)
{
	if (row->seg_seq != ch->seg_seq + 1)
		return false;
	struct segment_row *grown = realloc(ch->segs, (ch->seg_seq + 1) * sizeof(*grown));
	if (!grown)
		return false;
	ch->segs = grown;
	if (!segment_row_copy(&grown[ch->seg_seq], row))
		return false;
	make_current(ch, row);
	return true;
}

void channel_segment0(struct channel *ch)
{
	ch->seg_seq = 0;
	ch->seg_start = 0;
	memcpy(ch->nonce, ch->nonce0, MP_NONCE_LEN);
	memcpy(ch->root, ch->root0, MP_HASH_LEN);
	memcpy(ch->owner_pk, ch->owner0_pk, MP_PK_LEN);
	memcpy(ch->seg_head, ch->cert_hash, MP_HASH_LEN);
}

const uint8_t *channel_segment_owner(const struct channel *ch, uint32_t k)
{
	if (k == 0)
		return ch->owner0_pk;
	return k <= ch->seg_seq ? ch->segs[k - 1].owner_pk : NULL;
}

void segment_stmts_free(MpSigned **stmts, size_t n)
{
	for (size_t i = 0; stmts && i < n; i++)
		mp_stmt_free(stmts[i]);
	free(stmts);
}

bool segment_stmts(const struct channel *ch, uint32_t first, uint32_t last, MpSigned ***out,
		   size_t *n)
{
	*out = NULL;
	*n = 0;
	if (first < 1 || last > ch->seg_seq || first > last)
		return true;
	MpSigned **stmts = calloc(2 * (last - first + 1), sizeof(*stmts));
	if (!stmts)
		return false;
	size_t k = 0;
	for (uint32_t s = first; s <= last; s++) {
		const struct segment_row *row = &ch->segs[s - 1];
		stmts[k] = mp_stmt_decode(row->transfer, row->transfer_len);
		if (stmts[k])
			stmts[++k] = mp_stmt_decode(row->cap, row->cap_len);
		if (!stmts[k]) {
			segment_stmts_free(stmts, k);
			return false;
		}
		k++;
	}
	*out = stmts;
	*n = k;
	return true;
}
