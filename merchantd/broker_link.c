/* The merchant's connection to brokerd: deadlines, backoff, asynchronous resolution (state
 * diagram in broker_link.h). */
#include "broker_link.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "log.h"
#include "merchant.h"
#include "tls.h"

#define BROKER_FRAME_MAX  (16u << 20) /* protocol.md section 11: merchant <-> broker */
#define BACKOFF_MAX_SHIFT 16

enum link_state { LINK_IDLE, LINK_CONNECTING, LINK_UP, LINK_BACKOFF };

struct broker_link {
	struct merchant *m;
	const struct broker_link_ops *ops;
	void *arg;
	struct evdns_base *dns;
	enum link_state state;
	struct mp_conn *conn;
	struct event *connect_deadline;
	struct event *backoff;
	struct event *notify; /* on_down for an attempt that failed inside broker_link_want */
	char notify_reason[128];
	bool wanted;	  /* asked for during BACKOFF */
	bool answer_late; /* the connection is being closed for a late answer */
	bool freeing;
	unsigned failures; /* attempts failed in a row */
	struct broker_link_stats stats;
};

/* One request in flight: its answer deadline. */
struct link_call {
	struct broker_link *l;
	struct mp_conn *conn;
	mp_reply_fn fn;
	void *arg;
	struct event *deadline;
};

static void link_connect(struct broker_link *l);

static const char *state_name(enum link_state s)
{
	switch (s) {
	case LINK_IDLE:
		return "idle";
	case LINK_CONNECTING:
		return "connecting";
	case LINK_UP:
		return "up";
	case LINK_BACKOFF:
		return "waiting to reconnect";
	}
	return "?";
}

/* A failed attempt or a connection closed for a late answer: wait before the next one. */
static void enter_backoff(struct broker_link *l)
{
	if (l->failures < BACKOFF_MAX_SHIFT)
		l->failures++;
	uint64_t delay = (uint64_t)1 << (l->failures - 1);
	if (delay > l->m->cfg.broker_reconnect_max)
		delay = l->m->cfg.broker_reconnect_max;
	l->state = LINK_BACKOFF;
	struct timeval tv = {(time_t)delay, 0};
	if (evtimer_add(l->backoff, &tv) != 0) {
		log_err("broker %s: cannot arm the reconnection timer; next attempt on demand",
			l->m->cfg.broker);
		l->state = LINK_IDLE;
		return;
	}
	log_info("broker %s: next connection attempt in %llu s (%u failed in a row)",
		 l->m->cfg.broker, (unsigned long long)delay, l->failures);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct broker_link *l = arg;
	l->state = LINK_IDLE;
	if (l->wanted) {
		l->wanted = false;
		link_connect(l);
	}
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct broker_link *l = arg;
	l->ops->on_down(l->arg, l->notify_reason);
}

static void on_connect_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct broker_link *l = arg;
	if (l->conn)
		mp_conn_close(l->conn,
			      "not connected within %u s (resolve, connect, TLS handshake)",
			      l->m->cfg.broker_connect_timeout);
}

static void on_open(struct mp_conn *c, void *arg)
{
	struct broker_link *l = arg;
	if (c != l->conn)
		return;
	if (!mp_tls_peer_is_broker(mp_conn_ssl(c))) {
		mp_conn_close(c, "peer certificate is not the broker's");
		return;
	}
	evtimer_del(l->connect_deadline);
	l->state = LINK_UP;
	l->failures = 0;
	l->stats.connects_ok++;
	log_info("broker %s: connected", mp_conn_peer(c));
	l->ops->on_up(l->arg);
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct broker_link *l = arg;
	if (c != l->conn)
		return;
	l->conn = NULL;
	mp_conn_unref(c);
	evtimer_del(l->connect_deadline);
	bool failed = l->state == LINK_CONNECTING || l->answer_late;
	if (l->state == LINK_CONNECTING)
		l->stats.connects_failed++;
	else
		l->stats.disconnects++;
	l->answer_late = false;
	if (l->freeing)
		return;
	if (failed) {
		log_warn("broker %s: %s", l->m->cfg.broker, reason);
		enter_backoff(l);
	} else {
		l->state = LINK_IDLE;
	}
	l->ops->on_down(l->arg, reason);
}

static const struct mp_conn_ops conn_ops = {
    .on_open = on_open,
    .on_close = on_close,
};

/* IDLE -> CONNECTING; a failure seen at once goes to BACKOFF and reports on_down later. */
static void link_connect(struct broker_link *l)
{
	struct merchant *m = l->m;
	char host[256];
	uint16_t port;
	struct mp_net_opts opts = {.max_frame = BROKER_FRAME_MAX, .name = "broker"};
	struct timeval tv = {(time_t)m->cfg.broker_connect_timeout, 0};
	l->state = LINK_CONNECTING;
	/* The deadline first: no attempt without one. */
	if (mp_split_endpoint(m->cfg.broker, host, sizeof(host), &port) &&
	    evtimer_add(l->connect_deadline, &tv) == 0)
		l->conn =
		    mp_connect(m->base, l->dns, m->client_tls, host, port, &opts, &conn_ops, l);
	if (!l->conn) {
		evtimer_del(l->connect_deadline);
		l->stats.connects_failed++;
		snprintf(l->notify_reason, sizeof(l->notify_reason), "cannot connect to %s",
			 m->cfg.broker);
		log_warn("broker: %s", l->notify_reason);
		enter_backoff(l);
		event_active(l->notify, 0, 0);
		return;
	}
	mp_conn_ref(l->conn);
}

void broker_link_want(struct broker_link *l)
{
	switch (l->state) {
	case LINK_IDLE:
		link_connect(l);
		return;
	case LINK_BACKOFF:
		l->wanted = true;
		return;
	case LINK_CONNECTING:
	case LINK_UP:
		return;
	}
}

bool broker_link_is_up(const struct broker_link *l)
{
	return l->state == LINK_UP;
}

static void call_free(struct link_call *lc)
{
	event_free(lc->deadline);
	free(lc);
}

static void on_reply(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct link_call *lc = arg;
	mp_reply_fn fn = lc->fn;
	void *fn_arg = lc->arg;
	call_free(lc);
	fn(c, env, fn_arg);
}

static void on_answer_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct link_call *lc = arg;
	struct broker_link *l = lc->l;
	l->stats.answer_timeouts++;
	l->answer_late = true;
	/* The answer may still come, but never on this connection: the caller resends. */
	mp_conn_close(lc->conn, "no answer within %u s", l->m->cfg.broker_answer_timeout);
}

int broker_link_call(struct broker_link *l, MpEnvelope *env, mp_reply_fn fn, void *arg)
{
	if (l->state != LINK_UP)
		return -1;
	struct link_call *lc = calloc(1, sizeof(*lc));
	if (!lc)
		return -1;
	*lc = (struct link_call){l, l->conn, fn, arg,
				 evtimer_new(l->m->base, on_answer_deadline, lc)};
	struct timeval tv = {(time_t)l->m->cfg.broker_answer_timeout, 0};
	/* The deadline first: no request goes out without one. */
	bool sent = lc->deadline && evtimer_add(lc->deadline, &tv) == 0 &&
		    mp_conn_call(l->conn, env, on_reply, lc) == 0;
	if (!sent) {
		if (lc->deadline)
			event_free(lc->deadline);
		free(lc);
		return -1;
	}
	return 0;
}

const struct broker_link_stats *broker_link_stats(const struct broker_link *l)
{
	return &l->stats;
}

struct broker_link *broker_link_new(struct merchant *m, const struct broker_link_ops *ops,
				    void *arg)
{
	struct broker_link *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	*l = (struct broker_link){.m = m, .ops = ops, .arg = arg, .state = LINK_IDLE};
	l->dns = mp_dns_new(m->base, m->cfg.broker_resolv_conf);
	l->connect_deadline = evtimer_new(m->base, on_connect_deadline, l);
	l->backoff = evtimer_new(m->base, on_backoff, l);
	l->notify = event_new(m->base, -1, 0, on_notify, l);
	if (!l->dns || !l->connect_deadline || !l->backoff || !l->notify) {
		log_err("broker link: out of memory");
		broker_link_free(l);
		return NULL;
	}
	return l;
}

void broker_link_free(struct broker_link *l)
{
	if (!l)
		return;
	l->freeing = true;
	if (l->conn) {
		log_info("broker link: closing (%s)", state_name(l->state));
		mp_conn_close(l->conn, "shutting down");
	}
	if (l->connect_deadline)
		event_free(l->connect_deadline);
	if (l->backoff)
		event_free(l->backoff);
	if (l->notify)
		event_free(l->notify);
	mp_dns_free(l->dns); /* after the connection: it may have been resolving */
	free(l);
}
