/* A daemon's metrics registry and its Prometheus text exposition (format 0.0.4).
 *
 * Written by hand because no Debian C library for Prometheus fits the project's dependency
 * list (docs/metrics.md). One registry per daemon, made at start-up and kept in the daemon's
 * context struct; there is no global state here.
 *
 * Every series is registered once, at start-up, with its family's name, HELP text, type and a
 * fixed label set. Registration allocates; updating never does. A series reads its value from
 * one of:
 *   - storage the registry owns (mp_metrics_counter, mp_metrics_gauge, mp_metrics_histogram):
 *     updated with the inline helpers below, on the event loop thread only, without locks;
 *   - a field the owner keeps (mp_metrics_u64, mp_metrics_u32, mp_metrics_i64): the owner's
 *     existing stats struct, updated by its code on the loop thread;
 *   - an atomic the owner keeps (mp_metrics_atomic): for values a worker or store thread
 *     updates (relaxed loads at exposition);
 *   - a function called at exposition (mp_metrics_fn): values computed from state, e.g. the
 *     unredeemed amount; it runs on the loop thread and must not block.
 * A registration that fails (out of memory, a bad name, a family registered twice with another
 * type) marks the registry failed (mp_metrics_ok) and hands back a sink owned by the registry,
 * so that callers never get NULL; the daemon refuses to start on a failed registry.
 *
 * Exposition writes each family once: HELP, TYPE, then its series in registration order;
 * histograms as cumulative _bucket{le} series ending with le="+Inf", then _sum and _count.
 * Label values and HELP texts are escaped as the format requires (\\, \", \n). */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct mp_metrics;

enum mp_metric_type { MP_METRIC_COUNTER, MP_METRIC_GAUGE, MP_METRIC_HISTOGRAM };

#define MP_HISTOGRAM_MAX_BUCKETS 20

struct mp_counter {
	uint64_t value;
};

struct mp_gauge {
	int64_t value;
};

/* Fixed buckets: bounds (upper, inclusive, increasing) are given at registration and must
 * outlive the registry (a static const array). counts[i] holds observations in
 * (bounds[i-1], bounds[i]]; counts[n_bounds] those above the last bound. */
struct mp_histogram {
	const double *bounds;
	size_t n_bounds;
	uint64_t counts[MP_HISTOGRAM_MAX_BUCKETS + 1];
	uint64_t count;
	double sum;
};

static inline void mp_counter_inc(struct mp_counter *c)
{
	c->value++;
}

static inline void mp_counter_add(struct mp_counter *c, uint64_t n)
{
	c->value += n;
}

static inline void mp_gauge_set(struct mp_gauge *g, int64_t v)
{
	g->value = v;
}

/* Loop thread only; no allocation: a linear scan of at most MP_HISTOGRAM_MAX_BUCKETS. */
void mp_histogram_observe(struct mp_histogram *h, double v);

struct mp_metrics *mp_metrics_new(void);
void mp_metrics_free(struct mp_metrics *reg);
/* False once any registration failed (logged with the metric's name). */
bool mp_metrics_ok(const struct mp_metrics *reg);

/* labels: NULL, or name/value pairs ending with NULL: (const char *[]){"listener", "wallet",
 * NULL}. Names and labels are copied; help must be a string literal (or outlive the registry). */
struct mp_counter *mp_metrics_counter(struct mp_metrics *reg, const char *name, const char *help,
				      const char *const *labels);
struct mp_gauge *mp_metrics_gauge(struct mp_metrics *reg, const char *name, const char *help,
				  const char *const *labels);
struct mp_histogram *mp_metrics_histogram(struct mp_metrics *reg, const char *name,
					  const char *help, const char *const *labels,
					  const double *bounds, size_t n_bounds);

void mp_metrics_u64(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const uint64_t *value);
void mp_metrics_u32(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const unsigned *value);
void mp_metrics_i64(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const int64_t *value);
void mp_metrics_atomic(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		       const char *help, const char *const *labels, const _Atomic uint64_t *value);
void mp_metrics_fn(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		   const char *help, const char *const *labels, double (*fn)(const void *arg),
		   const void *arg);

/* Append the exposition to out. False only if the buffer could not grow. */
bool mp_metrics_write(const struct mp_metrics *reg, struct evbuffer *out);
/* The exposition as a NUL-terminated heap string (free()), or NULL. */
char *mp_metrics_text(const struct mp_metrics *reg);

/* The escaping the format uses, exposed for tests: a label value (\\ \" \n) or a HELP text
 * (\\ \n) appended to out. */
bool mp_metrics_escape(struct evbuffer *out, const char *text, bool label_value);

/* Monotonic microseconds, for latency measurements (no allocation, no syscall on Linux). */
uint64_t mp_metrics_now_us(void);
