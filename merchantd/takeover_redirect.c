#include "takeover_redirect.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "stmt.h"

static void refuse(struct takeover_check *tc, MpCode code, const char *detail)
{
	tc->code = code;
	snprintf(tc->detail, sizeof(tc->detail), "%s", detail);
}

static bool have_cert_of(const struct takeover_check *tc, const uint8_t mid[MP_ID_LEN])
{
	for (size_t i = 0; i < tc->n_cert_rows; i++)
		if (!memcmp(tc->cert_rows[i].mid, mid, MP_ID_LEN))
			return true;
	return false;
}

void takeover_redirect_conclude(struct takeover_check *tc, const struct mp_custody_event *events)
{
	const struct mp_custody_event *last = &events[tc->n_chain];
	const struct mp_custody_event *signer = &events[tc->n_chain - 1];
	uint8_t a[MP_HASH_LEN], b[MP_HASH_LEN];
	mp_stmt_hash(tc->chain[tc->n_chain - 1], a);
	mp_stmt_hash(tc->handoff, b);
	if (memcmp(a, b, MP_HASH_LEN))
		refuse(tc, MP_ST(MALFORMED), "the Handoff is not the last of the chain");
	else if (memcmp(signer->merchant_id, tc->asked, MP_ID_LEN))
		refuse(tc, MP_ST(MALFORMED), "the Handoff was not signed by the merchant asked");
	else if (last->hseq <= tc->from_epoch)
		refuse(tc, MP_ST(MALFORMED),
		       "the Handoff does not end the Move's epoch or a later one");
	else if (last->hseq <= tc->highest)
		refuse(tc, MP_ST(STALE_INDEX), "hseq not above the highest recorded here");
	else if (!memcmp(last->merchant_id, tc->mid, MP_ID_LEN))
		refuse(tc, MP_ST(MALFORMED), "the Handoff names this merchant: not a redirect");
	else if (!have_cert_of(tc, last->merchant_id))
		refuse(tc, MP_ST(HANDED_OFF),
		       "no MerchantCert of the merchant the Handoff names came with it: the new "
		       "holder cannot be reached");
	else {
		tc->code = MP_ST(OK);
		tc->hseq = last->hseq;
		tc->at_index = last->point.index;
		memcpy(tc->new_holder, last->merchant_id, MP_ID_LEN);
	}
}

void takeover_redirect_reply(struct merchant *m, struct mp_conn *wallet, uint64_t request_id,
			     const struct takeover_check *tc, const char *holder_hex)
{
	char detail[200], to_hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(tc->new_holder, MP_ID_LEN, to_hex);
	snprintf(detail, sizeof(detail),
		 "m-%s handed the channel to m-%s (Handoff %u): sign a Move from epoch %u",
		 holder_hex, to_hex, tc->hseq, tc->hseq);
	Micropay__V1__HandoffResp redirect = MICROPAY__V1__HANDOFF_RESP__INIT;
	redirect.handoff = tc->handoff;
	redirect.custody = tc->chain;
	redirect.n_custody = tc->n_chain;
	redirect.merchant_certs = tc->certs;
	redirect.n_merchant_certs = tc->n_certs;
	redirect.segments = tc->segments;
	redirect.n_segments = tc->n_segments;
	redirect.bind = tc->bind;
	Micropay__V1__OpenAck ack = MICROPAY__V1__OPEN_ACK__INIT;
	MpStatus st;
	ack.status = merchant_status(&st, MP_ST(HANDED_OFF), detail);
	st.evidence = tc->handoff;
	ack.redirect = &redirect;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_ACK);
	env.open_ack = &ack;
	m->stats.handoff_redirects++;
	log_info("%s: Open answered HANDED_OFF: %s", mp_conn_peer(wallet), detail);
	merchant_send(wallet, request_id, &env);
}
