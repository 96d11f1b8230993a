#include "chan_sign.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sign_job.h"

struct chan_job {
	struct merchant *m;
	uint8_t channel_id[MP_ID_LEN];
	struct mp_conn *conn; /* referenced until done */
	uint64_t request_id;
	uint32_t hseq, seg_seq, last; /* the point the body was built at */
	chan_signed_fn done;
	void *ctx;
};

/* The channel's point is still the one the body was built at (SIGNING keeps it so). */
static bool point_kept(const struct chan_job *j, const struct channel *ch)
{
	return ch->hseq == j->hseq && ch->seg_seq == j->seg_seq && ch->last == j->last;
}

static void on_signed(void *arg, MpSigned *stmt)
{
	struct chan_job *j = arg;
	struct merchant *m = j->m;
	struct channel *ch = channel_find(&m->channels, j->channel_id);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(j->channel_id, MP_ID_LEN, hex);
	if (ch)
		ch->signing = false;
	if (stmt)
		merchant_count_worker_signature(m);
	else
		log_err("channel %s: a statement could not be signed (or the pool stopped)", hex);
	if (stmt && (!ch || !point_kept(j, ch))) {
		log_err("channel %s: its point moved while its statement was signed; dropped", hex);
		mp_stmt_free(stmt);
		stmt = NULL;
	}
	j->done(m, ch, j->conn, j->request_id, stmt, j->ctx);
	mp_stmt_free(stmt);
	mp_conn_unref(j->conn);
	free(j);
}

bool chan_sign_submit(struct merchant *m, struct channel *ch, struct mp_conn *c,
		      uint64_t request_id, enum mp_stmt_type type, const ProtobufCMessage *body,
		      chan_signed_fn done, void *ctx)
{
	struct chan_job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	*j = (struct chan_job){.m = m,
			       .conn = c,
			       .request_id = request_id,
			       .hseq = ch->hseq,
			       .seg_seq = ch->seg_seq,
			       .last = ch->last,
			       .done = done,
			       .ctx = ctx};
	memcpy(j->channel_id, ch->id, MP_ID_LEN);
	mp_conn_ref(c);
	if (!mp_sign_job_submit(m->workers, &m->key, type, body, on_signed, j)) {
		mp_conn_unref(c);
		free(j);
		return false;
	}
	ch->signing = true;
	return true;
}

bool chan_sign_custody_write(struct custody_write *cw, const struct merchant *m,
			     const struct channel *ch, uint32_t hseq, const MpSigned *s)
{
	cw->handoff.hseq = hseq;
	memcpy(cw->handoff.mid, m->mid, MP_ID_LEN);
	cw->handoff.data = mp_stmt_encode(s, &cw->handoff.len);
	cw->closed_hseq = ch->hseq;
	cw->end_seg = ch->seg_seq;
	cw->end_index = ch->last;
	memcpy(cw->w_end, ch->w_last, MP_HASH_LEN);
	cw->redeemed_end = ch->redeemed_end;
	return cw->handoff.data != NULL;
}
