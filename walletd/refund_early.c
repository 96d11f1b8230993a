/* The early refund after a close (protocol.md section 6 "Close", section 10 wallet channel;
 * docs/close.md "The refund"): once the holder's Close is stored (close.c), the wallet asks the
 * broker for the refund on its own, with the Close and the custody chain it ends (Handoffs
 * 1..hseq, as the holder sent them). The RefundRequest is stored before it is first sent
 * (refund.c) and resent verbatim until the broker answers it; a request that got no answer, or
 * LIMIT / INTERNAL, is tried again after 1, 2, 4, ... seconds (at most REFUND_RETRY_MAX), also
 * after a restart.
 *
 *   CLOSING --Close stored--> CLOSED (shown REFUND_PENDING) --RefundRequest with the Close
 *     signed, stored, sent--> (broker) --OK / DUPLICATE_OK--> REFUNDED
 *   sent --no answer, LIMIT, INTERNAL--> retry timer (backoff) --> sent again (same bytes)
 *   sent --another refusal (CONFLICT, TOO_LATE, BAD_SIG, ...)--> stays REFUND_PENDING, logged;
 *     `refund channel_id=X` asks again by hand */
#include <event2/event.h>
#include <stdlib.h>

#include "log.h"
#include "stmt.h"
#include "store_close.h"
#include "wallet.h"

#define REFUND_RETRY_MAX 60 /* seconds */

Micropay__V1__CloseResp *wallet_refund_close_evidence(struct wallet *w, const struct wchannel *ch)
{
	struct wstore_close c;
	if (wstore_close_get(w->store, ch->channel_id, &c) != 1)
		return NULL;
	Micropay__V1__CloseResp *r =
	    c.resp ? (Micropay__V1__CloseResp *)protobuf_c_message_unpack(
			 &micropay__v1__close_resp__descriptor, NULL, c.resp_len, c.resp)
		   : NULL;
	wstore_close_clear(&c);
	if (r && !r->close) {
		protobuf_c_message_free_unpacked(&r->base, NULL);
		r = NULL;
	}
	return r;
}

bool wallet_refund_request_has_close(const MpSigned *request)
{
	Micropay__V1__RefundRequest *rq = (Micropay__V1__RefundRequest *)protobuf_c_message_unpack(
	    &micropay__v1__refund_request__descriptor, NULL, request->body.len, request->body.data);
	bool has = rq && rq->close;
	if (rq)
		protobuf_c_message_free_unpacked(&rq->base, NULL);
	return has;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct wchannel *ch = arg;
	struct wallet *w = ch->refund_wallet;
	if (w->stopping || ch->refunded || ch->state != WCH_CLOSED)
		return;
	if (ch->refund_busy || !w->registered) {
		wallet_refund_retry(w, ch);
		return;
	}
	wallet_refund_send(w, ch, NULL);
}

void wallet_refund_retry(struct wallet *w, struct wchannel *ch)
{
	if (w->stopping || ch->refunded)
		return;
	ch->refund_wallet = w;
	if (!wallet_backoff_arm(w, &ch->refund_retry, on_retry, ch, &ch->refund_backoff,
				REFUND_RETRY_MAX))
		log_err("refund: cannot schedule the retry of a closed channel's refund");
}

void wallet_refund_after_close(struct wallet *w, struct wchannel *ch)
{
	ch->refund_backoff = 0;
	if (!w->registered || ch->refund_busy)
		wallet_refund_retry(w, ch);
	else
		wallet_refund_send(w, ch, NULL);
}

void wallet_refund_retry_free(struct wchannel *ch)
{
	if (ch->refund_retry)
		event_free(ch->refund_retry);
	ch->refund_retry = NULL;
}
