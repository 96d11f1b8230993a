/* One request to the holder on an open session (transfer.send's TransferReq, close's
 * CloseReq) with its own answer deadline, [wallet] idle_timeout less 250 ms from the send (so it
 * comes before the connection's own idle timeout and names the request): a holder that
 * answers nothing, trickles its answer or sends frames that answer no request (each byte resets
 * the connection's idle timeout) would otherwise hold the session, and the channel, for ever.
 *
 *   SENT --answer--> fn(answer)
 *        --connection closed--> fn(NULL) (the session reports why)
 *        --deadline--> the session fails "no answer to <what> ..." --> fn(NULL) */
#include <event2/event.h>
#include <stdlib.h>

#include "session.h"
#include "wallet.h"

struct session_call {
	struct pay_op *s;
	mp_reply_fn fn; /* called with s as its argument */
	struct event *deadline;
	const char *what; /* e.g. "TransferReq (still TRANSFERRING; retry)" */
};

static void on_reply(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct session_call *call = arg;
	mp_reply_fn fn = call->fn;
	struct pay_op *s = call->s;
	event_free(call->deadline);
	free(call);
	fn(c, env, s);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session_call *call = arg;
	struct wallet *w = wallet_session_wallet(call->s);
	/* Closes the connection: on_reply then runs with no answer and frees call. */
	wallet_session_fail(call->s, "no answer to %s within %u s (idle_timeout)", call->what,
			    w->cfg.idle_timeout);
}

bool wallet_session_call(struct pay_op *s, MpEnvelope *env, mp_reply_fn fn, const char *what)
{
	struct wallet *w = wallet_session_wallet(s);
	struct session_call *call = calloc(1, sizeof(*call));
	if (!call)
		return false;
	*call = (struct session_call){s, fn, NULL, what};
	/* A quarter second before the connection's own idle timeout, armed by the same send: the
	 * two would otherwise expire together, and the failure should name the request. */
	struct timeval tv = {(time_t)w->cfg.idle_timeout - 1, 750000};
	if (!(call->deadline = evtimer_new(w->base, on_deadline, call)) ||
	    mp_conn_call(wallet_session_conn(s), env, on_reply, call) != 0) {
		if (call->deadline)
			event_free(call->deadline);
		free(call);
		return false;
	}
	if (evtimer_add(call->deadline, &tv) != 0) /* sent: on_reply frees call at the close */
		wallet_session_fail(s, "cannot arm the deadline of the %s", what);
	return true;
}
