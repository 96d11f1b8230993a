/* The two ceilings every other figure is compared with:
 *  - chain: raw chain links per second with the project's own hash code (common/chain.c), on
 *    this thread: what verifying one unit costs at best;
 *  - tls: frames per second over TLS that a daemon answers with no work. The request is an
 *    Envelope with no body sent to brokerd: every daemon routes it to its "not served here"
 *    answer (error MALFORMED) without touching storage; brokerd is asked because it logs such
 *    requests at most once per connection and period (merchantd logs each one). */
#include <stdio.h>
#include <string.h>

#include "chain.h"
#include "mpbench_load.h"

#define CHAIN_BATCH 65536u

json_t *scenario_chain(const struct bench_opts *o)
{
	struct mp_hasher *h = mp_hasher_new();
	if (!h)
		return NULL;
	uint8_t nonce[MP_NONCE_LEN] = {0}, x[MP_HASH_LEN] = {0}, y[MP_HASH_LEN];
	double seconds = o->duration > 1 ? o->duration : 1, t0 = bench_now(), t = t0;
	uint64_t links = 0;
	while (t - t0 < seconds) {
		for (uint32_t k = CHAIN_BATCH; k > 0; k--) {
			mp_chain_link(h, nonce, k, x, y);
			memcpy(x, y, sizeof(x));
		}
		links += CHAIN_BATCH;
		t = bench_now();
	}
	mp_hasher_free(h);
	return json_pack("{s:s, s:I, s:f, s:f, s:i}", "unit", "chain links", "count",
			 (json_int_t)links, "seconds", t - t0, "per_second",
			 (double)links / (t - t0), "last_byte", x[0]);
}

static bool tls_next(void *arg, struct load *l, struct mp_conn *c, unsigned slot)
{
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	return load_send(l, c, slot, &env);
}

static enum load_outcome tls_answer(void *arg, unsigned slot, const MpEnvelope *env)
{
	return env->body_case == MP_BODY(ERROR) ? LOAD_DONE : LOAD_FAIL;
}

static const struct load_ops tls_ops = {tls_next, tls_next, tls_answer};

json_t *scenario_tls(const struct bench_opts *o, const struct bench_net *n)
{
	struct load_spec spec = load_spec_for(o, n, "tls", n->broker, &tls_ops, NULL);
	struct load_result r;
	struct bench_cpu c0, c1;
	cpu_sample(n, &c0);
	if (!load_run(&spec, &r))
		return NULL;
	cpu_sample(n, &c1);
	json_t *out = load_json(&r, "per_second");
	json_object_set_new(out, "unit", json_string("frames echoed"));
	json_object_set_new(out, "request",
			    json_string("Envelope without a body to brokerd (error MALFORMED)"));
	json_object_set_new(out, "cpu_seconds", cpu_delta(n, &c0, &c1));
	return out;
}
