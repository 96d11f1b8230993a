#include "custody_arrays.h"

#include <stdlib.h>

#include "stmt.h"

struct pg_array *custody_handoff_array(struct handoff_arrays *a, int i)
{
	struct pg_array *all[HANDOFF_ARRAYS] = {&a->cid, &a->hseq, &a->stmt, &a->hash, &a->from,
						&a->to,	 &a->seg,  &a->idx,  &a->w};
	return all[i];
}

void custody_array_stmt(struct pg_array *a, const MpSigned *s)
{
	size_t len = 0;
	uint8_t *bytes = s ? mp_stmt_encode(s, &len) : NULL;
	if (s && !bytes)
		a->failed = true;
	pg_array_bytea(a, bytes, len);
	free(bytes);
}

void custody_fill_handoff(struct handoff_arrays *a, const struct custody_new *nw)
{
	pg_array_bytea(&a->cid, nw->channel_id, MP_ID_LEN);
	pg_array_int(&a->hseq, nw->hseq);
	custody_array_stmt(&a->stmt, nw->stmt);
	pg_array_bytea(&a->hash, nw->hash, MP_HASH_LEN);
	pg_array_bytea(&a->from, nw->from, MP_ID_LEN);
	pg_array_bytea(&a->to, nw->to, MP_ID_LEN);
	pg_array_int(&a->seg, nw->pt.seg_seq);
	pg_array_int(&a->idx, nw->pt.index);
	pg_array_bytea(&a->w, nw->pt.w, MP_HASH_LEN);
}
