/* Requests the broker does not serve (a wallet's or merchant's message sent to the broker):
 * answered MALFORMED "not a broker request", counted, and logged without letting a peer flood
 * the log. A peer can send tens of thousands a second (60,000 lines were seen):
 *   first on a connection     --> one line with its kind (the reason is never lost)
 *   later on that connection  --> counted; at most one line every UNROUTABLE_LOG_EVERY_S for the
 *                                 whole broker, saying how many went unlogged since the last
 *   connection closes         --> one line with that connection's count, if it sent more than one
 */
#include <stdio.h>
#include <stdlib.h>

#include "broker.h"
#include "broker_peer.h"
#include "log.h"
#include "util.h"

#define UNROUTABLE_LOG_EVERY_S 10

void broker_peer_open(struct mp_conn *c)
{
	/* Without it (out of memory) every unroutable request goes through the broker-wide
	 * limit: nothing is lost but the first-per-connection line. */
	mp_conn_set_data(c, calloc(1, sizeof(struct broker_peer)));
}

void broker_peer_close(struct mp_conn *c)
{
	struct broker_peer *p = mp_conn_data(c);
	if (p && p->unroutable > 1)
		log_info("%s: %llu requests not served by the broker on this connection",
			 mp_conn_peer(c), (unsigned long long)p->unroutable);
	free(p);
	mp_conn_set_data(c, NULL);
}

static void log_unroutable(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct broker_peer *p = mp_conn_data(c);
	struct unroutable_log *ul = &b->unroutable_log;
	if (p && ++p->unroutable == 1) {
		log_info("%s: request %llu of kind %d is not served by the broker", mp_conn_peer(c),
			 (unsigned long long)env->request_id, (int)env->body_case);
		return;
	}
	uint64_t now = mp_monotonic_s();
	ul->unlogged++;
	if (ul->logged_at && now < ul->logged_at + UNROUTABLE_LOG_EVERY_S)
		return;
	log_info("%s: request %llu of kind %d is not served by the broker; %llu such requests "
		 "(after the first of their connection) since the last such line",
		 mp_conn_peer(c), (unsigned long long)env->request_id, (int)env->body_case,
		 (unsigned long long)ul->unlogged);
	ul->logged_at = now;
	ul->unlogged = 0;
}

void handle_unroutable(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	b->stats.unroutable_requests++;
	log_unroutable(b, c, env);
	MpStatus st;
	MpEnvelope out = MICROPAY__V1__ENVELOPE__INIT;
	out.version = MP_PROTOCOL_VERSION;
	out.request_id = env->request_id;
	out.body_case = MP_BODY(ERROR);
	out.error = broker_status(&st, MP_ST(MALFORMED), "not a broker request");
	if (mp_conn_send(c, &out) != 0)
		mp_conn_close(c, "cannot send the refusal of request %llu",
			      (unsigned long long)env->request_id);
}
