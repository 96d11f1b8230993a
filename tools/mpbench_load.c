/* The load engine (state diagram in mpbench_load.h). One event loop, one thread: the client
 * side costs as little as the project's own connection code (common/net.c) allows. */
#include "mpbench_load.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "frame.h"
#include "net.h"
#include "tls.h"

#define DRAIN_DEADLINE_S 30.0
#define PACE_MS		 1    /* the paced load's timer */
#define PACE_BURST_MS	 10.0 /* tokens kept at most: this long's worth of requests */

enum conn_state { CONN_CONNECTING, CONN_RUNNING, CONN_DRAINING, CONN_IDLE, CONN_DEAD };

struct load_conn {
	struct load *l;
	struct mp_conn *c;
	unsigned index;
	unsigned in_flight;
	unsigned parked; /* paced: slots waiting for a token */
	enum conn_state state;
};

struct slot {
	double sent_at;
	struct load_conn *lc;
};

struct load {
	const struct load_spec *spec;
	struct event_base *base;
	struct evdns_base *dns;
	struct load_conn *conns;
	struct slot *slots;
	struct event *tick;
	struct event *pace;	/* paced loads only */
	unsigned *parked_slots; /* paced: a stack of slots waiting for a token */
	unsigned n_parked;
	double tokens, last_refill;
	struct load_result *out;
	double started, ends_at, last_answer, drain_until, last_progress;
	uint64_t last_done;
	bool stopping;
};

static void fill(struct load_conn *lc);

static bool all_finished(const struct load *l)
{
	for (unsigned i = 0; i < l->spec->conns; i++)
		if (l->conns[i].state == CONN_CONNECTING || l->conns[i].state == CONN_RUNNING ||
		    l->conns[i].state == CONN_DRAINING)
			return false;
	return true;
}

static void finish_if_done(struct load *l)
{
	if (all_finished(l))
		event_base_loopbreak(l->base);
}

static void settle_conn(struct load_conn *lc)
{
	if (lc->in_flight == 0 && lc->parked == 0 &&
	    (lc->state == CONN_DRAINING || lc->state == CONN_RUNNING))
		lc->state = CONN_IDLE;
	finish_if_done(lc->l);
}

static void park(struct load *l, struct load_conn *lc, unsigned slot)
{
	l->parked_slots[l->n_parked++] = slot;
	lc->parked++;
}

static void on_answer(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct slot *s = arg;
	struct load_conn *lc = s->lc;
	struct load *l = lc->l;
	lc->in_flight--;
	if (!env) {
		l->out->lost++;
		settle_conn(lc);
		return;
	}
	double now = bench_now();
	l->last_answer = now;
	hist_add(&l->out->latency, (uint64_t)((now - s->sent_at) * 1e6));
	unsigned slot = (unsigned)(s - l->slots);
	enum load_outcome o = l->spec->ops->answer(l->spec->arg, slot, env);
	switch (o) {
	case LOAD_DONE:
		l->out->done++;
		break;
	case LOAD_FAIL:
		l->out->failed++;
		break;
	case LOAD_RETRY:
		l->out->retried++;
		if (!l->stopping && lc->state == CONN_RUNNING &&
		    l->spec->ops->again(l->spec->arg, l, c, slot))
			return;
		break;
	}
	if (lc->state == CONN_RUNNING && !l->stopping && l->spec->rate > 0) {
		park(l, lc, slot); /* the pacer sends its next request */
		return;
	}
	if (lc->state == CONN_RUNNING && !l->stopping &&
	    l->spec->ops->next(l->spec->arg, l, c, slot))
		return;
	settle_conn(lc);
}

bool load_send(struct load *l, struct mp_conn *c, unsigned slot, MpEnvelope *env)
{
	struct slot *s = &l->slots[slot];
	env->version = MP_PROTOCOL_VERSION;
	s->sent_at = bench_now();
	if (mp_conn_call(c, env, on_answer, s) != 0)
		return false;
	s->lc->in_flight++;
	return true;
}

static void fill(struct load_conn *lc)
{
	struct load *l = lc->l;
	unsigned w = l->spec->window;
	for (unsigned i = 0; i < w && !l->stopping; i++) {
		if (l->spec->rate > 0)
			park(l, lc, lc->index * w + i);
		else
			l->spec->ops->next(l->spec->arg, l, lc->c, lc->index * w + i);
	}
	if (lc->in_flight == 0 && lc->parked == 0)
		lc->state = CONN_IDLE;
}

/* Paced loads: tokens at the rate, each one sends a parked slot's next request; tokens that
 * overflow the burst found no parked slot in time and are counted as behind. */
static void on_pace(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;
	double now = bench_now(), burst = l->spec->rate * PACE_BURST_MS / 1000.0;
	if (l->stopping || l->started == 0 || l->last_refill < l->started) {
		l->last_refill = now;
		return;
	}
	l->tokens += (now - l->last_refill) * l->spec->rate;
	l->last_refill = now;
	if (burst < 1)
		burst = 1;
	while (l->tokens >= 1 && l->n_parked > 0) {
		unsigned slot = l->parked_slots[--l->n_parked];
		struct load_conn *lc = l->slots[slot].lc;
		lc->parked--;
		if (lc->state == CONN_RUNNING && l->spec->ops->next(l->spec->arg, l, lc->c, slot))
			l->tokens -= 1;
		else
			settle_conn(lc);
	}
	if (l->tokens > burst) {
		l->out->behind += (uint64_t)(l->tokens - burst);
		l->tokens = burst;
	}
}

static void on_open(struct mp_conn *c, void *arg)
{
	struct load_conn *lc = arg;
	struct load *l = lc->l;
	lc->state = CONN_RUNNING;
	l->out->conns_open++;
	if (l->started == 0) {
		l->started = bench_now();
		if (l->spec->duration > 0)
			l->ends_at = l->started + l->spec->duration;
	}
	fill(lc);
	finish_if_done(l);
}

static void on_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct load_conn *lc = arg;
	if (lc->state != CONN_IDLE || !lc->l->stopping)
		fprintf(stderr, "mpbench: %s: connection %u closed: %s\n", lc->l->spec->name,
			lc->index, reason);
	lc->state = CONN_DEAD;
	lc->c = NULL;
	finish_if_done(lc->l);
}

static const struct mp_conn_ops conn_ops = {
    .on_open = on_open, .on_envelope = NULL, .on_close = on_close};

static void progress(struct load *l, double now)
{
	if (l->spec->quiet || now - l->last_progress < 1.0 || l->started == 0)
		return;
	double rate = (double)(l->out->done - l->last_done) / (now - l->last_progress);
	fprintf(stderr, "mpbench: %s: %.0f s, %llu done, %.0f/s now, %llu retried, %llu failed\n",
		l->spec->name, now - l->started, (unsigned long long)l->out->done, rate,
		(unsigned long long)l->out->retried, (unsigned long long)l->out->failed);
	l->last_progress = now;
	l->last_done = l->out->done;
}

static void start_draining(struct load *l, double now)
{
	l->stopping = true;
	l->drain_until = now + DRAIN_DEADLINE_S;
	l->n_parked = 0;
	for (unsigned i = 0; i < l->spec->conns; i++) {
		struct load_conn *lc = &l->conns[i];
		lc->parked = 0;
		if (lc->state == CONN_RUNNING)
			lc->state = lc->in_flight ? CONN_DRAINING : CONN_IDLE;
	}
	finish_if_done(l);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;
	double now = bench_now();
	progress(l, now);
	if (!l->stopping && l->ends_at > 0 && now >= l->ends_at)
		start_draining(l, now);
	if (l->stopping && now >= l->drain_until) {
		fprintf(stderr, "mpbench: %s: answers still missing after %.0f s; stopping\n",
			l->spec->name, DRAIN_DEADLINE_S);
		event_base_loopbreak(l->base);
	}
	if (l->started == 0 && now - l->last_progress > DRAIN_DEADLINE_S) {
		fprintf(stderr, "mpbench: %s: no connection opened within %.0f s\n", l->spec->name,
			DRAIN_DEADLINE_S);
		event_base_loopbreak(l->base);
	}
}

static bool connect_all(struct load *l, SSL_CTX *ctx)
{
	char host[2][256];
	uint16_t port[2];
	const char *endpoint[2] = {l->spec->endpoint,
				   l->spec->endpoint2 ? l->spec->endpoint2 : l->spec->endpoint};
	for (unsigned e = 0; e < 2; e++)
		if (!mp_split_endpoint(endpoint[e], host[e], sizeof(host[e]), &port[e])) {
			fprintf(stderr, "mpbench: bad endpoint '%s'\n", endpoint[e]);
			return false;
		}
	struct mp_net_opts opts = {.max_frame = MP_FRAME_MAX_MERCHANT, .name = "mpbench"};
	for (unsigned i = 0; i < l->spec->conns; i++) {
		struct load_conn *lc = &l->conns[i];
		*lc = (struct load_conn){.l = l, .index = i, .state = CONN_CONNECTING};
		for (unsigned s = 0; s < l->spec->window; s++)
			l->slots[i * l->spec->window + s].lc = lc;
		lc->c = mp_connect(l->base, l->dns, ctx, host[i % 2], port[i % 2], &opts, &conn_ops,
				   lc);
		if (!lc->c)
			lc->state = CONN_DEAD;
	}
	return true;
}

static void close_all(struct load *l)
{
	for (unsigned i = 0; i < l->spec->conns; i++) {
		struct load_conn *lc = &l->conns[i];
		if (lc->c && lc->state != CONN_DEAD) {
			l->out->lost += lc->in_flight;
			lc->state = CONN_IDLE;
			mp_conn_close(lc->c, "benchmark over");
		}
	}
}

static bool setup(struct load *l, const struct load_spec *spec, struct load_result *out)
{
	*l = (struct load){.spec = spec, .out = out};
	l->base = event_base_new();
	l->dns = l->base ? mp_dns_new(l->base, NULL) : NULL;
	l->conns = calloc(spec->conns, sizeof(*l->conns));
	l->slots = calloc((size_t)spec->conns * spec->window, sizeof(*l->slots));
	l->tick = l->base ? event_new(l->base, -1, EV_PERSIST, on_tick, l) : NULL;
	if (spec->rate > 0) {
		l->parked_slots = calloc((size_t)spec->conns * spec->window, sizeof(unsigned));
		l->pace = l->base ? event_new(l->base, -1, EV_PERSIST, on_pace, l) : NULL;
		if (!l->parked_slots || !l->pace)
			return false;
	}
	return l->dns && l->conns && l->slots && l->tick;
}

static void teardown(struct load *l)
{
	if (l->tick)
		event_free(l->tick);
	if (l->pace)
		event_free(l->pace);
	free(l->parked_slots);
	if (l->dns)
		mp_dns_free(l->dns);
	/* Connections closed above free themselves on the loop: let it run them out. */
	if (l->base) {
		event_base_loop(l->base, EVLOOP_NONBLOCK);
		event_base_free(l->base);
	}
	free(l->conns);
	free(l->slots);
}

struct load_spec load_spec_for(const struct bench_opts *o, const struct bench_net *n,
			       const char *name, const char *endpoint, const struct load_ops *ops,
			       void *arg)
{
	return (struct load_spec){.name = name,
				  .endpoint = endpoint,
				  .ca = n->ca,
				  .cert = o->cert,
				  .key = o->key,
				  .conns = o->conns,
				  .window = o->window,
				  .duration = o->duration,
				  .rate = o->rate,
				  .quiet = o->quiet,
				  .ops = ops,
				  .arg = arg};
}

bool load_run(const struct load_spec *spec, struct load_result *out)
{
	*out = (struct load_result){0};
	char err[512];
	SSL_CTX *ctx = mp_tls_client_ctx(spec->ca, spec->cert, spec->key, err, sizeof(err));
	if (!ctx) {
		fprintf(stderr, "mpbench: TLS: %s\n", err);
		return false;
	}
	struct load l;
	bool ok = setup(&l, spec, out) && connect_all(&l, ctx);
	if (ok) {
		struct timeval tv = {0, 100000};
		l.last_progress = l.last_refill = bench_now();
		event_add(l.tick, &tv);
		struct timeval pace = {0, PACE_MS * 1000};
		if (l.pace)
			event_add(l.pace, &pace);
		event_base_dispatch(l.base);
		double end = l.last_answer > l.started ? l.last_answer : bench_now();
		out->seconds = l.started > 0 ? end - l.started : 0;
		l.stopping = true;
		close_all(&l);
	}
	teardown(&l);
	SSL_CTX_free(ctx);
	if (ok && out->conns_open == 0) {
		fprintf(stderr, "mpbench: %s: no connection to %s opened\n", spec->name,
			spec->endpoint);
		return false;
	}
	return ok;
}

/* The latency distribution as [[quantile, µs], ...] (for a CDF plot). */
static json_t *latency_cdf(const struct hist *h)
{
	static const double q[] = {0.001, 0.01, 0.05, 0.1,  0.2,  0.3,	 0.4,	0.5, 0.6,
				   0.7,	  0.8,	0.9,  0.95, 0.99, 0.995, 0.999, 1.0};
	json_t *cdf = json_array();
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		json_array_append_new(cdf, json_pack("[f, f]", q[i], hist_quantile(h, q[i])));
	return cdf;
}

json_t *load_json(const struct load_result *r, const char *rate_name)
{
	double rate = r->seconds > 0 ? (double)r->done / r->seconds : 0;
	json_t *out = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:{s:f, s:f, s:f, s:f}}", "count",
	    (json_int_t)r->done, "failed", (json_int_t)r->failed, "behind", (json_int_t)r->behind,
	    "retried", (json_int_t)r->retried, "lost", (json_int_t)r->lost, "seconds", r->seconds,
	    rate_name, rate, "latency_us", "p50", hist_quantile(&r->latency, 0.5), "p99",
	    hist_quantile(&r->latency, 0.99), "p999", hist_quantile(&r->latency, 0.999), "max",
	    hist_quantile(&r->latency, 1.0));
	if (out)
		json_object_set_new(out, "latency_cdf_us", latency_cdf(&r->latency));
	return out;
}
