#include "custody_reply.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "segments.h"
#include "stmt.h"

bool stmt_push(MpSigned ***arr, size_t *n, const uint8_t *data, size_t len)
{
	MpSigned *s = mp_stmt_decode(data, len);
	MpSigned **grown = s ? realloc(*arr, (*n + 1) * sizeof(**arr)) : NULL;
	if (!grown) {
		mp_stmt_free(s);
		return false;
	}
	*arr = grown;
	grown[(*n)++] = s;
	return true;
}

void stmts_free(MpSigned **arr, size_t n)
{
	for (size_t i = 0; arr && i < n; i++)
		mp_stmt_free(arr[i]);
	free(arr);
}

static bool push_cert_of(struct merchant *m, const uint8_t mid[MP_ID_LEN], MpSigned ***certs,
			 size_t *n_certs)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	bool found = !memcmp(mid, m->mid, MP_ID_LEN)
			 ? merchant_own_cert(m, &bytes, &len)
			 : custody_store_peer_cert(m->store, mid, &bytes, &len);
	bool ok = found && stmt_push(certs, n_certs, bytes, len);
	free(bytes);
	return ok;
}

bool certs_push(struct merchant *m, const struct custody_blob *chain, size_t n, MpSigned ***certs,
		size_t *n_certs)
{
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = !memcmp(chain[k].mid, chain[i].mid, MP_ID_LEN);
		if (!seen && !push_cert_of(m, chain[i].mid, certs, n_certs))
			return false;
	}
	return true;
}

bool certs_push_named(struct merchant *m, const struct custody_blob *chain, size_t n,
		      MpSigned ***certs, size_t *n_certs)
{
	if (n == 0)
		return true;
	MpSigned *s = mp_stmt_decode(chain[n - 1].data, chain[n - 1].len);
	Micropay__V1__Handoff *h =
	    s ? (Micropay__V1__Handoff *)mp_strict_unpack(&micropay__v1__handoff__descriptor,
							  s->body.data, s->body.len)
	      : NULL;
	bool ok = h && mp_bytes_len_is(h->to_mid, MP_ID_LEN);
	bool have = false;
	for (size_t i = 0; ok && i < n && !have; i++)
		have = !memcmp(chain[i].mid, h->to_mid.data, MP_ID_LEN);
	if (ok && !have)
		push_cert_of(m, h->to_mid.data, certs, n_certs); /* absent: nothing to add */
	if (h)
		micropay__v1__handoff__free_unpacked(h, NULL);
	mp_stmt_free(s);
	return ok;
}

bool custody_reply_load(struct merchant *m, const uint8_t channel_id[MP_ID_LEN], uint32_t upto,
			MpSigned ***custody, size_t *n_custody, MpSigned ***certs, size_t *n_certs)
{
	struct custody_blob *chain = NULL;
	size_t n = 0;
	bool ok = custody_store_chain(m->store, channel_id, &chain, &n);
	bool ours = false;
	for (size_t i = 0; ok && i < n; i++) {
		ours = ours || !memcmp(chain[i].mid, m->mid, MP_ID_LEN);
		if (chain[i].hseq <= upto)
			ok = chain[i].hseq == i + 1 &&
			     stmt_push(custody, n_custody, chain[i].data, chain[i].len);
	}
	ok = ok && *n_custody == upto && certs_push(m, chain, n, certs, n_certs);
	if (ok && !ours)
		ok = push_cert_of(m, m->mid, certs, n_certs);
	custody_blobs_free(chain, n);
	return ok;
}

void handoff_resp_clear(Micropay__V1__HandoffResp *resp)
{
	stmts_free(resp->custody, resp->n_custody);
	stmts_free(resp->merchant_certs, resp->n_merchant_certs);
	segment_stmts_free(resp->segments, resp->n_segments);
	mp_stmt_free(resp->bind);
	resp->handoff = NULL;
	resp->custody = resp->merchant_certs = resp->segments = NULL;
	resp->n_custody = resp->n_merchant_certs = resp->n_segments = 0;
	resp->bind = NULL;
}

bool handoff_resp_load(struct merchant *m, const struct channel *ch, uint32_t hseq, bool named,
		       Micropay__V1__HandoffResp *resp)
{
	struct custody_blob *chain = NULL;
	size_t n = 0;
	bool ok = custody_store_chain(m->store, ch->id, &chain, &n);
	while (ok && n > 0 && chain[n - 1].hseq > hseq)
		free(chain[--n].data);
	ok = ok && n == hseq && chain[n - 1].hseq == hseq;
	for (size_t i = 0; ok && i < n; i++)
		ok = stmt_push(&resp->custody, &resp->n_custody, chain[i].data, chain[i].len);
	ok = ok && certs_push(m, chain, n, &resp->merchant_certs, &resp->n_merchant_certs);
	/* where the merchant the last Handoff names is reached (docs/custody.md) */
	ok = ok && (!named ||
		    certs_push_named(m, chain, n, &resp->merchant_certs, &resp->n_merchant_certs));
	ok = ok && segment_stmts(ch, 1, ch->seg_seq, &resp->segments, &resp->n_segments);
	custody_blobs_free(chain, n);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->id, MP_ID_LEN, hex);
	if (!ok) {
		log_err("channel %s: the stored custody chain (hseq %u) is unreadable", hex, hseq);
		handoff_resp_clear(resp);
		return false;
	}
	resp->handoff = resp->custody[n - 1];
	/* event 0 of a cert without holder0: the successor verifies the chain from it */
	if (ch->unbound && !(resp->bind = mp_stmt_decode(ch->bind, ch->bind_len)))
		log_err("channel %s: the stored Bind is unreadable", hex);
	return true;
}
