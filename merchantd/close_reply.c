#include "close_reply.h"

#include <string.h>

#include "custody_reply.h"
#include "log.h"
#include "segments.h"
#include "stmt.h"

struct close_evidence {
	MpSigned *close;
	MpSigned **custody, **certs, **segments;
	size_t n_custody, n_certs, n_segments;
};

static void evidence_free(struct close_evidence *ev)
{
	mp_stmt_free(ev->close);
	stmts_free(ev->custody, ev->n_custody);
	stmts_free(ev->certs, ev->n_certs);
	segment_stmts_free(ev->segments, ev->n_segments);
	memset(ev, 0, sizeof(*ev));
}

/* The Close ends our epoch ch->hseq: the chain up to it proves we held that epoch. */
static bool evidence_load(struct merchant *m, const struct channel *ch, struct close_evidence *ev)
{
	memset(ev, 0, sizeof(*ev));
	bool ok = ch->close && (ev->close = mp_stmt_decode(ch->close, ch->close_len)) &&
		  custody_reply_load(m, ch->id, ch->hseq, &ev->custody, &ev->n_custody, &ev->certs,
				     &ev->n_certs) &&
		  segment_stmts(ch, 1, ch->seg_seq, &ev->segments, &ev->n_segments);
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->id, MP_ID_LEN, hex);
		log_err("channel %s: the stored Close or its evidence (epoch %u) is unreadable",
			hex, ch->hseq);
		evidence_free(ev);
	}
	return ok;
}

void close_reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		 const char *detail, const struct channel *ch)
{
	Micropay__V1__CloseResp resp = MICROPAY__V1__CLOSE_RESP__INIT;
	MpStatus st;
	struct close_evidence ev = {0};
	bool with = ch && (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK));
	if (with && !evidence_load(m, ch, &ev)) {
		code = MP_ST(INTERNAL);
		detail = "stored Close unreadable";
	}
	resp.status = merchant_status(&st, code, detail);
	resp.close = ev.close;
	resp.custody = ev.custody;
	resp.n_custody = ev.n_custody;
	resp.merchant_certs = ev.certs;
	resp.n_merchant_certs = ev.n_certs;
	resp.segments = ev.segments;
	resp.n_segments = ev.n_segments;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CLOSE_RESP);
	env.close_resp = &resp;
	merchant_send(c, request_id, &env);
	evidence_free(&ev);
}
