#include "transfer_reply.h"

#include <string.h>

#include "custody_reply.h"
#include "log.h"
#include "segments.h"
#include "stmt.h"

void transfer_evidence_free(struct transfer_evidence *ev)
{
	mp_stmt_free(ev->transfer);
	mp_stmt_free(ev->cap);
	stmts_free(ev->custody, ev->n_custody);
	stmts_free(ev->certs, ev->n_certs);
	segment_stmts_free(ev->segments, ev->n_segments);
	memset(ev, 0, sizeof(*ev));
}

bool transfer_evidence_load(struct merchant *m, const struct channel *ch, uint32_t s,
			    struct transfer_evidence *ev)
{
	memset(ev, 0, sizeof(*ev));
	const struct segment_row *row = &ch->segs[s - 1];
	ev->transfer = mp_stmt_decode(row->transfer, row->transfer_len);
	ev->cap = mp_stmt_decode(row->cap, row->cap_len);
	bool ok = ev->transfer && ev->cap &&
		  custody_reply_load(m, ch->id, row->hseq, &ev->custody, &ev->n_custody, &ev->certs,
				     &ev->n_certs) &&
		  segment_stmts(ch, 1, s - 1, &ev->segments, &ev->n_segments);
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
		log_err("channel %s: the evidence of segment %u (custody to epoch %u) is "
			"unreadable",
			hex, s, row->hseq);
		transfer_evidence_free(ev);
	}
	return ok;
}

void transfer_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		    const char *detail, const struct channel *ch, uint32_t s)
{
	Micropay__V1__TransferResp resp = MICROPAY__V1__TRANSFER_RESP__INIT;
	MpStatus st;
	struct transfer_evidence ev = {0};
	if (s > 0 && !transfer_evidence_load(m, ch, s, &ev)) {
		code = MP_ST(INTERNAL);
		detail = "stored evidence unreadable";
	}
	resp.status = merchant_status(&st, code, detail);
	resp.transfer = ev.transfer;
	resp.cap = ev.cap;
	if (code == MP_ST(CONFLICT)) {
		st.evidence = ev.cap;
	} else {
		resp.custody = ev.custody;
		resp.n_custody = ev.n_custody;
		resp.merchant_certs = ev.certs;
		resp.n_merchant_certs = ev.n_certs;
		resp.segments = ev.segments;
		resp.n_segments = ev.n_segments;
		/* event 0 of a cert without holder0: B verifies the custody chain from it */
		if (s > 0 && ch->unbound && !(resp.bind = mp_stmt_decode(ch->bind, ch->bind_len)))
			log_err("%s: transfer: the channel's stored Bind is unreadable",
				mp_conn_peer(c));
	}
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_RESP);
	env.transfer_resp = &resp;
	merchant_send(c, request_id, &env);
	mp_stmt_free(resp.bind);
	transfer_evidence_free(&ev);
}
