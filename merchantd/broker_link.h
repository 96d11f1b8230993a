/* merchantd's one connection to brokerd (mutual TLS), kept usable under a slow, stalled or
 * restarting broker: the host name is resolved with evdns on the loop; resolving, connecting
 * and the TLS handshake together have one deadline; every call has an answer deadline, and a
 * call not answered in time closes the connection (its caller then sees no answer, resends the
 * same bytes later: every merchant-to-broker request is idempotent); a failed attempt is
 * retried only after a backoff that doubles up to [broker] reconnect_max.
 *
 *   IDLE --want--> CONNECTING --handshake done, peer is the broker--> UP
 *   CONNECTING --cannot resolve / refused / deadline / not the broker--> BACKOFF (on_down)
 *   UP --closed by the peer or idle--> IDLE (on_down)
 *   UP --an answer deadline passed--> BACKOFF (on_down)
 *   BACKOFF --timer--> CONNECTING if wanted meanwhile, else IDLE
 * on_up and on_down are never called from inside broker_link_want or broker_link_call. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "net.h"

struct merchant;
struct broker_link;

struct broker_link_ops {
	void (*on_up)(void *arg);
	void (*on_down)(void *arg, const char *reason);
};

struct broker_link_stats {
	uint64_t connects_ok, connects_failed, answer_timeouts, disconnects;
};

struct broker_link *broker_link_new(struct merchant *m, const struct broker_link_ops *ops,
				    void *arg);
void broker_link_free(struct broker_link *l);
/* Ask for the connection; on_up follows when it is up. Nothing happens if it is up already
 * (check broker_link_is_up) or an attempt is under way. */
void broker_link_want(struct broker_link *l);
bool broker_link_is_up(const struct broker_link *l);
/* Send a request, fn gets the answer or NULL (connection lost, answer deadline passed). -1 if
 * the link is not up or the request cannot be sent; fn is then never called. */
int broker_link_call(struct broker_link *l, MpEnvelope *env, mp_reply_fn fn, void *arg);
const struct broker_link_stats *broker_link_stats(const struct broker_link *l);
